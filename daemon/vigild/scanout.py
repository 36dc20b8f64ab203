"""``vigild scan``'s output: the totals, findings as lines or JSON, the progress line.

File names are the uploader's choice: every plain line goes through
``textform.escape``, every JSON object through ``textform.json_record``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

from vigild import textform
from vigild.reasons import Reason

if TYPE_CHECKING:
    from vigild.detector import Finding


@dataclass
class Totals:
    """What a scan did. A file is in exactly one of files (scanned), skipped,
    errors, excluded, special or symlinks; ``bytes`` counts scanned bytes only."""

    files: int = 0  # scanned: a verdict came from the rules and hashes
    bytes: int = 0  # bytes the rules ran over (a truncated file: its head)
    found: int = 0
    errors: int = 0  # files that could not be opened, read or scanned; failed actions
    skipped: int = 0  # not scanned: too large, or timed out with policy allow
    limited: int = 0  # scanned, but an archive inside was not fully unpacked
    excluded: int = 0  # --exclude, --exclude-dir, the config's exclude_paths, vigild's own
    filesystems: int = 0  # mounts not entered: pseudo filesystems, --one-file-system
    special: int = 0  # FIFOs, sockets, devices
    symlinks: int = 0  # symbolic links not followed
    acted: int = 0  # findings moved, removed or quarantined
    interrupted: int = 0  # the signal that stopped the scan (2: Ctrl-C, 15: SIGTERM), else 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 something found, 2 errors (as clamscan); 128 + signal when stopped."""
        if self.interrupted:
            return 128 + self.interrupted
        if self.found:
            return 1
        return 2 if self.errors else 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


# what a file that got no verdict is called in the output
_INCONCLUSIVE = {
    Reason.TOO_LARGE: "SKIPPED",
    Reason.SCAN_TIMEOUT: "SKIPPED",
    Reason.SCAN_ERROR: "ERROR",
    Reason.UNPACK_LIMIT: "LIMIT",  # an archive not fully unpacked: its members past the limit
}


class Show(StrEnum):
    """Which lines a scan prints: clamscan's default, --infected, --quiet."""

    ALL = "all"  # findings, skipped and limited files, errors, actions
    INFECTED = "infected"  # findings, their actions and errors
    QUIET = "quiet"  # errors only


class Reporter:
    """Prints findings as plain lines or JSON objects; thread-safe.

    File names are the uploader's choice: a plain line shows them escaped
    (no newline or terminal sequence gets through), a JSON object in the
    lossless form (``path`` plus ``path_b64`` when not UTF-8); see textform.
    Every line also goes to ``log`` (--log) when there is one.
    """

    def __init__(
        self,
        out: IO[str],
        as_json: bool,
        totals: Totals,
        show: Show = Show.ALL,
        log: IO[str] | None = None,
    ) -> None:
        self.out = out
        self.as_json = as_json
        self.totals = totals
        self.show = show
        self.log = log
        self.lock = threading.Lock()
        self.progress: Progress | None = None

    def _emit(self, *lines: str) -> None:
        """Write whole lines: JSON as built, plain text escaped."""
        if not self.as_json:
            lines = tuple(textform.escape(line) for line in lines)
        text = "".join(line + "\n" for line in lines)
        with self.lock:
            if self.log:
                self.log.write(text)
                self.log.flush()
            if self.progress:
                self.progress.clear()
            self.out.write(text)
            self.out.flush()

    def _count(self, what: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.totals, what, getattr(self.totals, what) + n)

    def error(self, path: str, message: str) -> None:
        self._count("errors")
        self._emit(
            self._json("error", path=path, error=message)
            if self.as_json
            else f"{path}: ERROR {message}"
        )

    def clean(self, scanned_bytes: int) -> None:
        with self.lock:
            self.totals.files += 1
            self.totals.bytes += scanned_bytes

    def finding(self, f: Finding, scanned_bytes: int) -> None:
        v = f.verdict
        if v.reason is Reason.SCAN_ERROR:
            self.error(f.path, v.detail)
            return
        if v.reason in (Reason.TOO_LARGE, Reason.SCAN_TIMEOUT) and not v.malicious:
            self._count("skipped")
        else:
            with self.lock:
                self.totals.files += 1
                self.totals.bytes += scanned_bytes
                self.totals.found += v.malicious
                self.totals.limited += v.reason is Reason.UNPACK_LIMIT
        if v.malicious:
            if self.show is not Show.QUIET:
                self._emit(self._found(f))
        elif v.reason in _INCONCLUSIVE and self.show is Show.ALL:
            self._inconclusive(f.path, v.reason, v.detail)

    def limited(self, path: str, detail: str, scanned_bytes: int) -> None:
        """An archive not fully unpacked, as the clean cache remembers it (no Finding)."""
        with self.lock:
            self.totals.files += 1
            self.totals.bytes += scanned_bytes
            self.totals.limited += 1
        if self.show is Show.ALL:
            self._inconclusive(path, Reason.UNPACK_LIMIT, detail)

    def _inconclusive(self, path: str, reason: Reason, detail: str) -> None:
        word = _INCONCLUSIVE[reason]
        if self.as_json:
            self._emit(self._json(word.lower(), path=path, reason=reason.value, error=detail))
        else:
            self._emit(f"{path}: {word} {detail}")

    def acted(self, path: str, action: str, what: str) -> None:
        """A finding moved, removed or quarantined: ``what`` says where to."""
        self._count("acted")
        if self.show is Show.QUIET:
            return
        if self.as_json:
            self._emit(self._json("action", path=path, action=action, detail=what))
        else:
            self._emit(f"{path}: {what}")

    def _found(self, f: Finding) -> str:
        if not self.as_json:
            return f"{f.path}: FOUND {f.verdict.detail} ({f.verdict.reason.value})"
        rules = [
            {
                "rule": m.rule,
                "file": m.namespace,
                "severity": m.get("severity"),
                "description": m.get("description"),
                "tags": list(m.tags),
            }
            for m in f.matches
        ]
        return self._json(
            "finding",
            path=f.path,
            size=f.size,
            sha256=f.sha256,
            reason=f.verdict.reason.value,
            name=f.verdict.detail,
            rules=rules,
        )

    @staticmethod
    def _json(kind: str, **fields: Any) -> str:
        return json.dumps(textform.json_record({"type": kind, **fields}), sort_keys=False)

    def summary(self, extra: dict[str, Any]) -> None:
        t = self.totals
        rates = {
            "files_per_s": round(t.files / t.seconds, 1),
            "mb_per_s": round(t.bytes / t.seconds / 1e6, 2),
        }
        if self.as_json:
            data = {k: v for k, v in asdict(t).items() if k != "started"}
            data.update(seconds=round(t.seconds, 3), exit_code=t.exit_code, **rates, **extra)
            self._emit(self._json("summary", **data))
            return
        lines = [
            "----------- SCAN SUMMARY -----------",
            f"Engine: {extra['engine']}, {extra['rules']} rules, "
            f"{extra['hash_entries']} known-bad hashes",
            f"Files scanned: {t.files}",
            f"Data scanned: {_human(t.bytes)}",
            f"Found: {t.found}",
            f"Errors: {t.errors}",
            f"Not scanned (too large or timed out): {t.skipped}",
            f"Skipped: {t.special} special files, {t.symlinks} symlinks not followed, "
            f"{t.excluded} excluded, {t.filesystems} filesystems not entered",
        ]
        if t.limited:
            lines.append(f"Archives not fully unpacked: {t.limited}")
        if t.acted:
            lines.append(f"Moved, removed or quarantined: {t.acted}")
        lines.append(
            f"Time: {t.seconds:.2f} s ({rates['files_per_s']} files/s, {rates['mb_per_s']} MB/s)"
        )
        if t.interrupted:
            lines.append("Interrupted: the scan did not finish")
        self._emit(*lines)


class Progress:
    """A one-line progress display on a terminal, redrawn ten times a second."""

    def __init__(
        self, stream: IO[str], totals: Totals, walked: Totals, lock: threading.Lock
    ) -> None:
        self.stream = stream
        self.totals = totals
        self.walked = walked  # files and bytes found by the walker so far
        self.walk_done = False
        self.lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigild-progress", daemon=True)
        self._width = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        with self.lock:
            self.clear()

    def clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def _line(self) -> str:
        t, s = self.totals, self.totals.seconds
        done = f"{t.files}" + (f"/{self.walked.files}" if self.walk_done else "")
        if self.walk_done and self.walked.bytes:
            frac = min(t.bytes / self.walked.bytes, 1.0)
            bar = "#" * int(frac * 20)
            head = f"[{bar:<20}] {frac * 100:5.1f}%"
        else:
            head = "[ walking...         ]"
        return (
            f"{head} {done} files {_human(t.bytes)}  "
            f"{t.files / s:.0f} files/s {t.bytes / s / 1e6:.1f} MB/s  "
            f"found {t.found} errors {t.errors}"
        )

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with self.lock:
                line = self._line()
                self.stream.write("\r" + line.ljust(self._width))
                self.stream.flush()
                self._width = len(line)


# ------------------------------------------------------------------ driving
