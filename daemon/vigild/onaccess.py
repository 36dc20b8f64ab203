"""On-access workers: take an event, examine the file, answer, then report.

Each worker blocks in C for the next job (the GIL released), examines the
file through the event's fd, and answers the kernel before anything else:
alerts, quarantine and caching all come after the answer. The one thing
done before answering a detection is reading the opener's details from
/proc (it is blocked on us, so certainly alive); it never touches the
journal.

Every job is released with ``done`` in a ``finally``: an exception in a
worker costs one answer by policy, never a hung opener. Workers read the
current Detector once per job, so a reload swaps rules between jobs,
never in the middle of one.

In detect mode the same workers take file paths from the inotify source
instead, and every detection is quarantined: nothing was blocked.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from vigild import native, safepath
from vigild.alert import Alert, Alerts, Kind
from vigild.config import EventKind, OnAccessConfig, PolicyConfig
from vigild.detector import Detector, Finding
from vigild.procinfo import process_fields
from vigild.quarantine import QuarantineError, Store
from vigild.verdict import Action, Policy, Reason, ScanResult, ScanStatus, Verdict, decide

log = logging.getLogger(__name__)


class PathSource(Protocol):
    """Where detect-mode workers get paths (events.InotifySource)."""

    paths: queue.Queue[str]

    def done(self, path: str) -> None: ...


KIND_OF = {
    native.EV_OPEN: EventKind.OPEN,
    native.EV_EXEC: EventKind.EXEC,
    native.EV_CLOSE_WRITE: EventKind.CLOSE_WRITE,
}
_CACHEABLE = (Reason.CLEAN, Reason.CACHED_CLEAN)


def _repeats(verdict: Verdict) -> bool:
    """Whether this answer is the same for the unchanged file under these rules and policy.

    A file too large to scan, allowed by policy, is allowed again; the
    generation carries the limits and the policy, so a reload that changes
    them retires the cached answer.
    """
    if verdict.reason in _CACHEABLE:
        return True
    return verdict.reason is Reason.TOO_LARGE and verdict.action is Action.ALLOW


@dataclass
class Counters:
    """What the workers did; read by status without locks (ints, GIL-atomic)."""

    scanned: int = 0
    detections: int = 0
    quarantined: int = 0
    late: int = 0
    errors: int = 0
    last_progress: float = field(default_factory=time.monotonic)


def _named(name: str, loop: Callable[[], None]) -> Callable[[], None]:
    """``loop``, run in a thread that ps and top show as ``name``."""

    def run() -> None:
        native.name_thread(name)
        loop()

    return run


class Workers:
    """The worker threads, for fanotify jobs or (detect mode) inotify paths."""

    def __init__(
        self,
        detector: Callable[[], Detector],
        onaccess: OnAccessConfig,
        policy: PolicyConfig,
        alerts: Alerts,
        store: Store,
    ) -> None:
        self.detector = detector
        self.alerts = alerts
        self.store = store
        self.counters = Counters()
        self.policies = {
            kind: Policy.from_config(policy, quarantine=kind in onaccess.quarantine_on)
            for kind in EventKind
        }
        # detect mode blocks nothing, so every detection is quarantined
        self.detect_policy = Policy.from_config(policy, quarantine=True)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # -------------------------------------------------------------- running

    def start_fanotify(self, fan: native.Fanotify, count: int) -> None:
        self._start(count, lambda: self._fanotify_loop(fan))

    def start_paths(self, source: PathSource, count: int) -> None:
        self._start(count, lambda: self._path_loop(source))

    def _start(self, count: int, loop: Callable[[], None]) -> None:
        for i in range(count):
            name = f"vigild-worker-{i}"
            t = threading.Thread(target=_named(name, loop), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 20.0) -> None:
        """Ask the workers to end (fanotify ones end when the group stops); join them
        all within ``timeout`` in total (systemd's TimeoutStopSec= is 30 s)."""
        self._stop.set()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def _tick(self) -> None:
        self.counters.last_progress = time.monotonic()

    # ------------------------------------------------------------- fanotify

    def _fanotify_loop(self, fan: native.Fanotify) -> None:
        while True:
            try:
                job = fan.next(500)
            except native.Shutdown:
                return
            self._tick()
            if job is not None:
                self._handle_job(fan, job)
                self._tick()

    def _examine(
        self, det: Detector, fd: int, path: str, policy: Policy
    ) -> tuple[Verdict, Finding | None]:
        try:
            finding = det.examine(fd, path, policy)
        except Exception as e:  # a bug here must cost one answer by policy, nothing more
            self.counters.errors += 1
            failed = ScanResult(ScanStatus.ERROR, error=f"internal error: {e!r}")
            return decide(None, failed, policy), None
        return finding.verdict, finding

    def _handle_job(self, fan: native.Fanotify, job: native.Job) -> None:
        det = self.detector()
        kind = KIND_OF[job.kind]
        verdict, finding = self._examine(det, job.fd, job.path, self.policies[kind])
        cache = 0
        if not det.path_dependent and (verdict.malicious or _repeats(verdict)):
            # rules that read the name see a hard link differently from its
            # twin, and an ignore mark outlives a rename: no caching for them
            cache = native.CACHE_VERDICT | native.CACHE_MARK
        try:
            who = process_fields(job.pid) if verdict.malicious else {}
            late = fan.answer(job, verdict.action is Action.ALLOW, cache, det.ruleset.generation)
            self.counters.scanned += 1
            self._report(kind, job.fd, job.path, verdict, finding, late, who, det)
        finally:
            fan.done(job)

    # --------------------------------------------------------- detect mode

    def _path_loop(self, source: PathSource) -> None:
        while not self._stop.is_set():
            try:
                path = source.paths.get(timeout=0.5)
            except queue.Empty:
                self._tick()
                continue
            self._tick()
            try:
                self._handle_path(path)
            finally:
                source.done(path)

    def _handle_path(self, path: str) -> None:
        try:
            # no symlink anywhere on the way: a user who swaps a directory
            # for a link must not make root scan (and quarantine) elsewhere
            fd = safepath.open_file(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                log.warning("%s: cannot open for scanning: %s", path, e.strerror)
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            det = self.detector()
            verdict, finding = self._examine(det, fd, path, self.detect_policy)
            self.counters.scanned += 1
            self._report(EventKind.CLOSE_WRITE, fd, path, verdict, finding, False, {}, det)
        finally:
            os.close(fd)

    # ------------------------------------------------------------ reporting

    def _report(
        self,
        kind: EventKind,
        fd: int,
        path: str,
        verdict: Verdict,
        finding: Finding | None,
        late: bool,
        who: dict[str, str],
        det: Detector,
    ) -> None:
        """After the answer: quarantine, then one alert."""
        if late:
            self.counters.late += 1
        if not verdict.malicious:
            self._report_inconclusive(kind, path, verdict, late)
            return
        self.counters.detections += 1
        fields = {
            "VIGILD_PATH": path,
            "VIGILD_DETECTION": verdict.detail,  # rule names, or the hash list's name
            "VIGILD_EVENT": kind.value,
            "VIGILD_REASON": verdict.reason.value,
            "VIGILD_GENERATION": f"{det.ruleset.generation:016x}",
            **who,
        }
        rules: tuple[str, ...] = ()
        if finding is not None:
            fields["VIGILD_SHA256"] = finding.sha256
            fields["VIGILD_SIZE"] = str(finding.size)
            rules = tuple(m.rule for m in finding.matches)
            if rules:
                fields["VIGILD_RULE"] = rules  # type: ignore[assignment]
                fields["VIGILD_RULE_FILE"] = tuple(
                    dict.fromkeys(m.namespace for m in finding.matches)
                )  # type: ignore[assignment]
                sev = [str(m.get("severity")) for m in finding.matches if m.get("severity")]
                if sev:
                    fields["VIGILD_SEVERITY"] = sev[0]
            else:
                fields["VIGILD_HASH_NAME"] = verdict.detail
        quarantined = None
        if verdict.action is Action.QUARANTINE or late:
            quarantined = self._quarantine(fd, path, verdict, rules)
            if quarantined:
                fields["VIGILD_QUARANTINE_ID"] = quarantined
        self._alert_detection(kind, path, verdict, late, quarantined, fields)

    def _quarantine(
        self, fd: int, path: str, verdict: Verdict, rules: tuple[str, ...]
    ) -> str | None:
        try:
            item = self.store.add(fd, path, verdict.reason.value, verdict.detail, rules)
        except QuarantineError as e:
            self.alerts.emit(Alert(Kind.QUARANTINE_FAILED, str(e), {"VIGILD_PATH": path}))
            return None
        if item is None:
            return None  # already moved in by another event for the same write, or moved away
        self.counters.quarantined += 1
        return item.id

    def _alert_detection(
        self,
        kind: EventKind,
        path: str,
        verdict: Verdict,
        late: bool,
        quarantined: str | None,
        fields: dict[str, str],
    ) -> None:
        what = verdict.detail or verdict.reason.value
        if late:
            alert_kind = Kind.DETECTED_LATE
            action = "allowed by the deadline policy, then detected"
        elif quarantined:
            alert_kind = Kind.DETECTED_QUARANTINED
            action = (
                "denied and quarantined" if kind is not EventKind.CLOSE_WRITE else "quarantined"
            )
        else:
            alert_kind = Kind.DETECTED_DENIED
            action = (
                "denied" if kind is not EventKind.CLOSE_WRITE else "detected, opens will be denied"
            )
        if quarantined:
            action += f" as {quarantined}"
        fields["VIGILD_ACTION"] = "quarantine" if quarantined else ("allow" if late else "deny")
        self.alerts.emit(Alert(alert_kind, f"{path}: {what} ({kind.value}): {action}", fields))

    def _report_inconclusive(
        self, kind: EventKind, path: str, verdict: Verdict, late: bool
    ) -> None:
        if late:
            self.alerts.emit(
                Alert(
                    Kind.DEADLINE_PASSED,
                    f"{path}: answered by the deadline policy before the scan finished ({kind.value})",
                    {"VIGILD_PATH": path, "VIGILD_EVENT": kind.value},
                )
            )
        if verdict.reason in (Reason.SCAN_ERROR, Reason.SCAN_TIMEOUT):
            self.counters.errors += 1
            self.alerts.emit(
                Alert(
                    Kind.SCAN_ERROR,
                    f"{path}: {verdict.detail} ({kind.value}): {verdict.action.value}ed by policy",
                    {
                        "VIGILD_PATH": path,
                        "VIGILD_EVENT": kind.value,
                        "VIGILD_REASON": verdict.reason.value,
                        "VIGILD_ACTION": verdict.action.value,
                    },
                )
            )
