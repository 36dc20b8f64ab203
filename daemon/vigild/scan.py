"""``vigild scan``: the on-demand scan of files and directory trees.

The walker lists regular files (never following symlinks below the paths
given, unless asked; paths given on the command line are followed, as
``find -H`` does) and hands them in batches to one worker process a CPU,
forked once the rules are loaded; each opens its files and hands the fd
to the snapshot's Detector. The parent prints as results come back.

FIFOs, sockets and devices are skipped and counted; they are never opened
(and a file swapped for one after the walk is opened non-blocking, seen by
fstat, and skipped). Files are opened with O_NOATIME where allowed, so a
scan does not disturb access times that backup or cleanup tools rely on.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import IO, TYPE_CHECKING, Any

from vigild.scanout import Progress, Reporter, Totals
from vigild.verdict import Reason

if TYPE_CHECKING:
    from vigild.snapshot import Snapshot

_OPEN_FLAGS = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC


# ------------------------------------------------------------------ walking


def _special(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


class Walker:
    """Lists the regular files under the given paths; reports what it skips."""

    def __init__(
        self,
        follow: bool,
        error: Callable[[str, str], None],
        totals: Totals,
        lock: threading.Lock,
        sizes: bool = True,
    ) -> None:
        self.follow = follow
        self.sizes = sizes  # sizes are for the progress line only
        self.error = error
        self.totals = totals
        self.lock = lock  # guards totals, which the workers update too
        self._seen_dirs: set[tuple[int, int]] = set()

    def _count(self, what: str) -> None:
        with self.lock:
            setattr(self.totals, what, getattr(self.totals, what) + 1)

    def walk(self, paths: list[str]) -> Iterator[tuple[str, int, bool]]:
        """(path, size, follow) of each regular file, in name order per directory.

        ``follow`` is True for a path given on the command line: a symlink
        named there is opened through, as ``find -H`` does.
        """
        for p in paths:
            try:
                st = os.stat(p)
            except OSError as e:
                self.error(p, e.strerror or str(e))
                continue
            if stat.S_ISDIR(st.st_mode):
                yield from self._tree(p, st)
            elif stat.S_ISREG(st.st_mode):
                yield p, st.st_size, True
            else:
                self._count("special")

    def _tree(self, top: str, st: os.stat_result) -> Iterator[tuple[str, int, bool]]:
        stack = [(top, st)]
        while stack:
            d, dst = stack.pop()
            if (dst.st_dev, dst.st_ino) in self._seen_dirs:
                continue  # a loop through followed symlinks, or a path given twice
            self._seen_dirs.add((dst.st_dev, dst.st_ino))
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError as e:
                self.error(d, e.strerror or str(e))
                continue
            subdirs = []
            for entry in entries:
                kind, size = self._classify(entry)
                if kind == "file":
                    yield entry.path, size, self.follow
                elif kind == "dir":
                    subdirs.append(entry)
            for entry in reversed(subdirs):
                try:
                    stack.append((entry.path, entry.stat(follow_symlinks=self.follow)))
                except OSError as e:
                    self.error(entry.path, e.strerror or str(e))

    def _classify(self, entry: os.DirEntry[str]) -> tuple[str, int]:
        """("file", size), ("dir", 0) or ("skip", 0), counting what is skipped.

        Without sizes and symlink following, the directory entry's type is
        enough: no system call per file (the size is then reported as 0).
        """
        try:
            if entry.is_symlink() and not self.follow:
                self._count("symlinks")
                return "skip", 0
            if not self.sizes and not self.follow:
                if entry.is_file(follow_symlinks=False):
                    return "file", 0
                if entry.is_dir(follow_symlinks=False):
                    return "dir", 0
            st = entry.stat(follow_symlinks=self.follow)
        except OSError as e:
            if e.errno != errno.ENOENT:  # vanished while walking: not an error
                self.error(entry.path, e.strerror or str(e))
            return "skip", 0
        if stat.S_ISDIR(st.st_mode):
            return "dir", 0
        if stat.S_ISREG(st.st_mode):
            return "file", st.st_size
        if _special(st.st_mode):
            self._count("special")
        return "skip", 0


def open_for_scan(path: str, follow: bool) -> tuple[int, int] | None:
    """(fd, size) for the regular file at ``path``; None if it is not one (any more)."""
    flags = _OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, flags)  # O_NOATIME needs ownership or CAP_FOWNER
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None  # became a symlink after the walk
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st.st_size


# ---------------------------------------------------------------- reporting


# A batch closes at this many files or bytes: small enough to balance big
# files across workers, large enough to amortise the hand-off.
_BATCH_FILES = 16
_BATCH_BYTES = 8 << 20

# The snapshot a worker process inherits at fork (rules already loaded).
_SNAPSHOT: Snapshot | None = None

# ("clean", size) | ("finding", Finding) | ("error", (path, why)) | ("special", path);
# a clean file travels back from a worker as its size alone
Outcome = tuple[str, Any]
_CLEAN = (Reason.CLEAN, Reason.CACHED_CLEAN, Reason.CLEAN_TRUNCATED)


def examine_path(snap: Snapshot, path: str, follow: bool) -> Outcome:
    """Open one file and examine it; never raises for one bad file."""
    try:
        opened = open_for_scan(path, follow)
    except OSError as e:
        return ("error", (path, e.strerror or str(e)))
    if opened is None:
        return ("special", path)
    fd, size = opened
    try:
        finding = snap.detector.examine(fd, path, snap.scan_policy, size)
    except Exception as e:  # one bad file must not end the scan
        return ("error", (path, f"internal error: {e!r}"))
    finally:
        os.close(fd)
    if finding.verdict.reason in _CLEAN:
        return ("clean", finding.size)
    return ("finding", finding)


def _scan_batch(batch: list[tuple[str, bool]]) -> list[Outcome]:
    """In a worker process: examine a batch with the inherited snapshot."""
    assert _SNAPSHOT is not None
    return [examine_path(_SNAPSHOT, path, follow) for path, follow in batch]


def _quiet_child() -> None:
    # Ctrl-C is the parent's to handle: it ends the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _record(reporter: Reporter, outcome: Outcome) -> None:
    kind, payload = outcome
    if kind == "clean":
        reporter.clean(payload)
    elif kind == "finding":
        reporter.finding(payload)
    elif kind == "error":
        reporter.error(*payload)
    else:
        with reporter.lock:
            reporter.totals.special += 1


class WorkerDied(Exception):
    """A scan worker process ended (killed, out of memory); the scan cannot finish."""


def _in_processes(
    batches: Iterator[list[tuple[str, bool]]],
    workers: int,
    reporter: Reporter,
    start_progress: Callable[[], None],
) -> None:
    """Scan the batches in worker processes, at most two a worker in flight.

    ProcessPoolExecutor, not multiprocessing.Pool: a Pool replaces a dead
    worker and waits forever for the batch it held; the executor says so.
    """
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_quiet_child) as pool:
        pending: set[Future[list[Outcome]]] = set()
        started = False
        for batch in batches:
            pending.add(pool.submit(_scan_batch, batch))
            if not started:  # the workers are forked at the first submit
                start_progress()
                started = True
            if len(pending) >= 2 * workers:
                pending = _collect(pending, reporter, FIRST_COMPLETED)
        _collect(pending, reporter, ALL_COMPLETED)


def _collect(
    pending: set[Future[list[Outcome]]], reporter: Reporter, when: str
) -> set[Future[list[Outcome]]]:
    done, rest = wait(pending, return_when=when)
    for future in done:
        try:
            outcomes = future.result()
        except BrokenProcessPool as e:
            raise WorkerDied("a scan worker process died (killed, or out of memory)") from e
        for outcome in outcomes:
            _record(reporter, outcome)
    return rest


def run(
    paths: list[str],
    snap: Snapshot,
    workers: int,
    as_json: bool,
    follow: bool,
    progress: bool,
    out: IO[str] = sys.stdout,
) -> Totals:
    """Scan ``paths`` and print as we go; returns the totals.

    Several workers are processes forked once the rules are loaded, not
    threads: YARA-X holds the GIL while it scans, and even yara-python
    loses time to the GIL around each call. The walker feeds them batches.
    """
    global _SNAPSHOT
    totals, walked = Totals(), Totals()
    reporter = Reporter(out, as_json, totals)
    walker = Walker(follow, reporter.error, totals, reporter.lock, sizes=progress)

    def batches() -> Iterator[list[tuple[str, bool]]]:
        batch: list[tuple[str, bool]] = []
        size = 0
        for path, file_size, follow_this in walker.walk(paths):
            walked.files += 1
            walked.bytes += file_size
            batch.append((path, follow_this))
            size += file_size
            if len(batch) >= _BATCH_FILES or size >= _BATCH_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def start_progress() -> None:
        if progress:
            reporter.progress = Progress(sys.stderr, totals, walked, reporter.lock)
            reporter.progress.start()

    try:
        if workers <= 1:
            start_progress()
            for batch in batches():
                for path, follow_this in batch:
                    _record(reporter, examine_path(snap, path, follow_this))
        else:
            _SNAPSHOT = snap
            _in_processes(batches(), workers, reporter, start_progress)
    finally:
        _SNAPSHOT = None
        if reporter.progress:
            reporter.progress.walk_done = True
            reporter.progress.stop()
    return totals
