"""On-access workers: take an event, examine the file, answer, hand over.

Each worker blocks in C for the next job (the GIL released), reads the
current snapshot once, examines the file through the event's fd with the
policy of the event's kind, and answers the kernel. Only then is the event
handed over (``vigild.report``: quarantine and the alert, worded there).
The one thing done before answering a detection is reading the opener's
details from /proc (it is blocked on us, so certainly alive); a worker
never touches the journal.

Every job is released with ``done`` in a ``finally``: an exception costs
one answer by policy, never a hung opener, and never the worker: the loop
catches whatever a job raised, counts it and takes the next job.

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
from dataclasses import dataclass, field, replace
from typing import Protocol

from vigild import native, protect, safepath
from vigild.config import EventKind
from vigild.detector import Finding
from vigild.procinfo import process_fields
from vigild.report import Outcome, Reporter
from vigild.snapshot import Snapshot
from vigild.verdict import Action, Policy, Reason, ScanResult, ScanStatus, Verdict, decide

log = logging.getLogger(__name__)


# clean with every byte of the file scanned (not an over-size head and tail)
_WHOLE_CLEAN = (Reason.CLEAN, Reason.CACHED_CLEAN)


def _whole_clean(snap: Snapshot, finding: Finding | None) -> bytes:
    """The SHA-256 of a file found clean with every byte scanned; b"" otherwise.
    With it, C may store the verdict once the file's freshness window has passed
    (native/settle.c), after hashing the file again. Never while rules on the
    name, path or owner are loaded: the hash proves the bytes, not the name (a
    rename in the same clock tick keeps the ctime before Linux 6.13)."""
    if (
        finding is None
        or not snap.remember_verdicts
        or finding.verdict.reason not in _WHOLE_CLEAN
        or not finding.sha256
    ):
        return b""
    return bytes.fromhex(finding.sha256)


class PathSource(Protocol):
    """Where detect-mode workers get paths (events.InotifySource)."""

    paths: queue.Queue[str]

    def done(self, path: str) -> None: ...


KIND_OF = {
    native.EV_OPEN: EventKind.OPEN,
    native.EV_EXEC: EventKind.EXEC,
    native.EV_CLOSE_WRITE: EventKind.CLOSE_WRITE,
}


@dataclass
class Counters:
    """What the workers did; read by status without locks (ints, GIL-atomic)."""

    scanned: int = 0
    internal_errors: int = 0  # a job raised: answered by policy, worker kept
    last_progress: float = field(default_factory=time.monotonic)


def _named(name: str, loop: Callable[[], None]) -> Callable[[], None]:
    """``loop``, run in a thread that ps and top show as ``name``."""

    def run() -> None:
        native.name_thread(name)
        loop()

    return run


class Workers:
    """The worker threads, for fanotify jobs or (detect mode) inotify paths."""

    def __init__(self, current: Callable[[], Snapshot], reporter: Reporter) -> None:
        self.current = current
        self.reporter = reporter
        self.counters = Counters()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        # (kind, path) of the file each worker is scanning now, by thread
        self._busy: dict[int, tuple[EventKind, str]] = {}

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

    @property
    def threads(self) -> int:
        return len(self._threads)

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def unfinished(self) -> list[tuple[EventKind, str]]:
        """(kind, path) of each file a worker is scanning now: after ``stop``,
        the scans the daemon is about to end without a verdict."""
        return list(self._busy.values())

    def _tick(self) -> None:
        self.counters.last_progress = time.monotonic()

    def _examine(
        self, snap: Snapshot, fd: int, path: str, policy: Policy, size: int | None = None
    ) -> tuple[Verdict, Finding | None]:
        """``size``: the file's size when its event was read (saves an fstat)."""

        def unlisted(fd: int, path: str, prefix: str) -> Finding:
            return snap.detector.examine_unlisted(fd, path, policy, prefix)

        try:
            finding = snap.detector.examine(fd, path, policy, size)
            finding = protect.guard(snap.protected, fd, finding, unlisted)
        except Exception as e:  # a bug here must cost one answer by policy, nothing more
            self.counters.internal_errors += 1
            failed = ScanResult(ScanStatus.ERROR, error=f"internal error: {e!r}")
            return decide(None, failed, policy), None
        return finding.verdict, finding

    # ------------------------------------------------------------- fanotify

    def _fanotify_loop(self, fan: native.Fanotify) -> None:
        while True:
            try:
                job = fan.next(500)
            except native.Shutdown:
                return
            self._tick()
            if job is None:
                continue
            try:
                self._handle_job(fan, job)
            except Exception:  # answered by policy in done(); the worker lives on
                self.counters.internal_errors += 1
                log.exception("%s: job failed", job.path)
            self._tick()

    def _handle_job(self, fan: native.Fanotify, job: native.Job) -> None:
        me = threading.get_ident()
        self._busy[me] = (KIND_OF[job.kind], job.path)
        try:
            snap = self.current()
            if job.flags & native.JOB_CLASSIFY:
                job = self._classify(fan, snap, job)
                if job.kind != native.EV_EXEC and job.flags & native.JOB_OUTSIDE:
                    fan.answer(job, True, 0, snap.generation)  # outside, no interpreter
                    return
            kind = KIND_OF[job.kind]
            self._busy[me] = (kind, job.path)  # an interpreter's open is an exec now
            verdict, finding = self._examine(snap, job.fd, job.path, snap.policies[kind], job.size)
            who = process_fields(job.pid) if verdict.malicious else {}
            allow = verdict.action is Action.ALLOW
            answered = fan.answer(
                job, allow, snap.cache_bits(verdict), snap.generation, _whole_clean(snap, finding)
            )
            self.counters.scanned += 1
            late = answered is native.Answered.DEADLINE
            # the kernel allowed the opener when the group closed at stop (no opener
            # waits on a close-write)
            at_stop = answered is native.Answered.AT_STOP and kind is not EventKind.CLOSE_WRITE
            outcome = Outcome(kind, job.path, verdict, finding, snap.generation, late, who, at_stop)
            self.reporter.hand_over(outcome, job.fd)
        finally:
            self._busy.pop(me, None)
            fan.done(job)

    def _classify(self, fan: native.Fanotify, snap: Snapshot, job: native.Job) -> native.Job:
        """Learn what ``job``'s opener runs and tell C (remembered for that program's
        later opens); ``job`` as an exec when it is an interpreter. Our own open of
        /proc/PID/exe is answered at once by the reader (our pid); the reader itself
        must never open it. A program that cannot be read is taken for an
        interpreter: the file is scanned, which costs a scan and lets nothing by."""
        try:
            # O_NONBLOCK: a write lease on it makes the open fail, not wait (fan.c)
            flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
            fd = os.open(f"/proc/{job.pid}/exe", flags)
        except OSError:
            return replace(job, kind=native.EV_EXEC)
        try:
            if snap.interpreters.could_be(os.fstat(fd).st_size):
                sha, _, _ = native.hash_fd(fd)
            else:
                sha = bytes(native.SHA256_LEN)  # no listed digest: not read at all
            is_interpreter = fan.classify(job, fd, sha)
        finally:
            os.close(fd)
        return replace(job, kind=native.EV_EXEC) if is_interpreter else job

    # --------------------------------------------------------- detect mode

    def _path_loop(self, source: PathSource) -> None:
        while not self._stop.is_set():
            try:
                path = source.paths.get(timeout=0.5)
            except queue.Empty:
                self._tick()
                continue
            self._tick()
            me = threading.get_ident()
            self._busy[me] = (EventKind.CLOSE_WRITE, path)
            try:
                self._handle_path(path)
            except Exception:
                self.counters.internal_errors += 1
                log.exception("%s: scan failed", path)
            finally:
                self._busy.pop(me, None)
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
            snap = self.current()
            verdict, finding = self._examine(snap, fd, path, snap.detect_policy)
            self.counters.scanned += 1
            outcome = Outcome(EventKind.CLOSE_WRITE, path, verdict, finding, snap.generation)
            self.reporter.hand_over(outcome, fd)
        finally:
            os.close(fd)
