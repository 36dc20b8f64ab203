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

Why one module of this size: the walk, the worker processes and the
actions on findings share the totals and the interrupt handling; the
output is in scanout.py.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigild import owned, scancache, scanstamp, textform
from vigild.reasons import Reason
from vigild.scanout import Progress, Reporter, Totals
from vigild.scanstamp import Stamp

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from vigild.config import Config, ScanConfig
    from vigild.detector import Finding
    from vigild.snapshot import Snapshot

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC


# ------------------------------------------------------------------ walking

# Filesystems of the kernel's own making: their files are views of memory,
# processes and devices (/proc/*/pagemap says size 0 and reads without end).
# A walk does not enter them unless the path was named on the command line.
PSEUDO_FS = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
        "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "efivarfs",
        "binfmt_misc", "autofs", "nsfs", "rpc_pipefs", "selinuxfs", "hugetlbfs",
    }
)  # fmt: skip
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mounts:
    """Filesystem types from /proc/self/mountinfo: by mount point and by device."""

    by_point: dict[str, str] = field(default_factory=dict)  # the mount on top at each point
    by_dev: dict[int, str] = field(default_factory=dict)

    def fstype(self, real: str, dev: int) -> str:
        """The type of the filesystem mounted at ``real`` (resolved), else of device ``dev``."""
        return self.by_point.get(real) or self.by_dev.get(dev, "")

    def entered_below(self, real: str) -> list[str]:
        """Mount points of real filesystems under ``real`` (a pseudo mount not entered)
        that a walk must still reach: /dev/shm under /dev. Outermost ones only."""
        picked: list[str] = []
        for point in sorted(p for p in self.by_point if p.startswith(real.rstrip("/") + "/")):
            if self.by_point[point] in PSEUDO_FS:
                continue
            if not any(point.startswith(q + "/") for q in picked):
                picked.append(point)
        return picked


def read_mounts(path: str = "/proc/self/mountinfo") -> Mounts:
    """This mount namespace's mounts; empty when mountinfo cannot be read."""
    mounts = Mounts()
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return mounts
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        major, _, minor = fields[2].partition(":")
        fstype = right.split()[0]
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        mounts.by_point[point] = fstype
        if major.isdigit() and minor.isdigit():
            mounts.by_dev[os.makedev(int(major), int(minor))] = fstype
    return mounts


def _never(_path: str) -> bool:
    return False


@dataclass(frozen=True)
class WalkOptions:
    """What a walk enters and lists. Paths named on the command line are
    always scanned: exclusions and filesystem skips apply below them."""

    follow: bool = False  # follow symlinks below the named paths
    one_fs: bool = False  # --one-file-system: stay on each named path's filesystem
    exclude: tuple[re.Pattern[str], ...] = ()  # --exclude: searched in a file's path
    exclude_dir: tuple[re.Pattern[str], ...] = ()  # --exclude-dir: in a directory's path
    excluded: Callable[[str], bool] = _never  # config prefixes, given the resolved path
    mounts: Mounts = field(default_factory=Mounts)


def under(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a path is one of ``prefixes`` or lies under one (all resolved): one
    set look-up and one startswith a path, however many prefixes."""
    exact = frozenset(prefixes)
    below = tuple(p.rstrip("/") + "/" for p in prefixes)

    def test(path: str) -> bool:
        return path in exact or path.startswith(below)

    return test


def compiled_dir() -> str:
    """Where ``vigild scan`` keeps its compiled rules: never the daemon's directory.

    Root's scans share /var/cache/vigild/scan; anyone else's go to
    $XDG_CACHE_HOME/vigild (~/.cache/vigild).
    """
    if os.geteuid() == 0:
        return "/var/cache/vigild/scan"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vigild")


def _special(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _join(real: str, name: str) -> str:
    return real + name if real.endswith("/") else f"{real}/{name}"


# a directory to list: (path as shown, resolved path, its stat)
_Dir = tuple[str, str, os.stat_result]


class Walker:
    """Lists the regular files under the given paths; reports what it skips."""

    def __init__(
        self,
        opts: WalkOptions,
        error: Callable[[str, str], None],
        totals: Totals,
        lock: threading.Lock,
        sizes: bool = True,
    ) -> None:
        self.opts = opts
        self.follow = opts.follow
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
                yield from self._tree((p, os.path.realpath(p), st))
            elif stat.S_ISREG(st.st_mode):
                yield p, st.st_size, True
            else:
                self._count("special")

    def _tree(self, top: _Dir) -> Iterator[tuple[str, int, bool]]:
        stack = [top]
        top_dev = top[2].st_dev
        while stack:
            d, real, dst = stack.pop()
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
                if kind == "skip":
                    continue
                child_real = (
                    os.path.realpath(entry.path)
                    if self.follow and entry.is_symlink()
                    else _join(real, entry.name)
                )
                if self._excluded(kind, entry.path, child_real):
                    self._count("excluded")
                elif kind == "file":
                    yield entry.path, size, self.follow
                else:
                    subdirs.append((entry, child_real))
            for entry, child_real in reversed(subdirs):
                try:
                    st = entry.stat(follow_symlinks=self.follow)
                except OSError as e:
                    self.error(entry.path, e.strerror or str(e))
                    continue
                if st.st_dev == dst.st_dev and child_real not in self.opts.mounts.by_point:
                    stack.append((entry.path, child_real, st))
                else:
                    stack.extend(reversed(self._mount(entry.path, child_real, st, top_dev)))

    def _excluded(self, kind: str, path: str, real: str) -> bool:
        patterns = self.opts.exclude if kind == "file" else self.opts.exclude_dir
        return any(p.search(path) for p in patterns) or self.opts.excluded(real)

    def _mount(self, path: str, real: str, st: os.stat_result, top_dev: int) -> list[_Dir]:
        """Where to go from a directory on another filesystem: into it, or past it
        (a pseudo filesystem is not entered, but real ones mounted below it are)."""
        if self.opts.one_fs and st.st_dev != top_dev:
            self._count("filesystems")
            return []
        fstype = self.opts.mounts.fstype(real, st.st_dev)
        if fstype not in PSEUDO_FS:
            return [(path, real, st)]
        log.debug("%s: %s filesystem not entered", textform.escape(path), fstype)
        self._count("filesystems")
        below = []
        for point in self.opts.mounts.entered_below(real):
            shown = path + point[len(real.rstrip("/")) :]
            try:
                below.append((shown, point, os.stat(shown)))
            except OSError:
                continue  # hidden by another mount, or gone
        return below

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


def open_for_scan(path: str, follow: bool) -> tuple[int, os.stat_result] | None:
    """(fd, its stat) for the regular file at ``path``; None if it is not one (any more)."""
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
    return fd, st


# ---------------------------------------------------------------- reporting


# A batch closes at this many files or bytes: small enough to balance big
# files across workers, large enough to amortise the hand-off.
_BATCH_FILES = 16
_BATCH_BYTES = 8 << 20

# The snapshot a worker process inherits at fork (rules already loaded).
_SNAPSHOT: Snapshot | None = None


@dataclass
class CleanCache:
    """The files earlier scans found clean (vigild.scancache), and what this one adds."""

    path: Path
    keys: scancache.Keys
    known: set[bytes]
    by_path: bool  # some rule reads the path: it is part of the key
    new: list[bytes] = field(default_factory=list)
    hits: int = 0
    limited: dict[bytes, str] = field(default_factory=dict)  # archives, with their limit
    saved: scancache.Saved | None = None  # the file as read
    stamp: Stamp | None = None  # to save with the keys (vigild.scanstamp)
    warm: bool = False  # the stamp held: the rules are loaded at the first miss only

    def extra(self, path: str) -> str:
        """What a key holds beyond the file's state: the path the rules see
        (the detector's ``filepath``, absolute), when some rule reads it."""
        return os.path.abspath(path) if self.by_path else ""


class Lazy:
    """The scan's snapshot, built when first needed: a scan whose every file the
    clean cache answers (its stamp holding) loads no rules at all."""

    def __init__(self, build: Callable[[], Snapshot]) -> None:
        self._build = build
        self.snap: Snapshot | None = None

    def get(self) -> Snapshot:
        if self.snap is None:
            self.snap = self._build()
        return self.snap


# The clean cache, in the parent and inherited by the workers (None: --no-cache).
_CACHE: CleanCache | None = None

# ("clean", (bytes scanned, key to remember or None))
# | ("finding", (Finding, bytes scanned, key to remember it by or None))
# | ("error", (path, why)) | ("special", path); a clean file travels back from a worker
# as its scanned bytes and its clean-cache key alone
Outcome = tuple[str, Any]
_CLEAN = (Reason.CLEAN, Reason.CACHED_CLEAN, Reason.CLEAN_TRUNCATED)
_REMEMBERED = (Reason.CLEAN, Reason.CACHED_CLEAN)  # every byte was scanned


def _scanned_bytes(size: int, cfg: ScanConfig) -> int:
    """The bytes the rules ran over: all of a file up to max_file_size; of a
    bigger one (oversize = truncate) its head and its last oversize_tail bytes."""
    if size <= cfg.max_file_size:
        return size
    return min(size, cfg.max_file_size + min(cfg.oversize_tail, cfg.max_file_size))


def examine_path(snap: Snapshot, path: str, follow: bool) -> Outcome:
    """Open one file and examine it; never raises for one bad file."""
    try:
        opened = open_for_scan(path, follow)
    except OSError as e:
        return ("error", (path, e.strerror or str(e)))
    if opened is None:
        return ("special", path)
    fd, st = opened
    key = None
    try:
        read_at = time.time_ns()
        # before a byte is read, or a writer could change it unseen (Keys.after_clean)
        clear = _CACHE is not None and scancache.no_writers(fd)
        finding = snap.detector.examine(fd, path, snap.scan_policy, st.st_size)
        if _CACHE is not None and finding.verdict.reason in _REMEMBERED:
            key = _CACHE.keys.after_clean(fd, st, read_at, clear, _CACHE.extra(path))
        elif _CACHE is not None and _repeats(finding):
            extra = _CACHE.extra(path) + scancache.LIMITED
            key = _CACHE.keys.after_clean(fd, st, read_at, clear, extra)
    except Exception as e:  # one bad file must not end the scan
        return ("error", (path, f"internal error: {e!r}"))
    finally:
        os.close(fd)
    scanned = _scanned_bytes(finding.size, snap.config.scan)
    if finding.verdict.reason in _CLEAN:
        return ("clean", (scanned, key))
    return ("finding", (finding, scanned, key))


def _repeats(finding: Finding) -> bool:
    """An archive not unpacked whole that the same bytes stop the same way again:
    not by the time limit, nor with a member's scan failed (vigild.scancache)."""
    v = finding.verdict
    limit = finding.unpack_limit
    return v.reason is Reason.UNPACK_LIMIT and not v.malicious and limit not in ("", "time")


def _scan_batch(batch: list[tuple[str, bool]]) -> list[Outcome]:
    """In a worker process: examine a batch with the inherited snapshot."""
    assert _SNAPSHOT is not None
    return [examine_path(_SNAPSHOT, path, follow) for path, follow in batch]


def _quiet_child() -> None:
    # Ctrl-C is the parent's to handle: it kills the workers. SIGINT was
    # blocked across the fork, so none arrives before this line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# What the scan does with a malicious finding (--move, --remove, --quarantine).
Act = Callable[["Finding"], None]


def _record(reporter: Reporter, outcome: Outcome, act: Act | None) -> None:
    kind, payload = outcome
    if kind == "clean":
        scanned, key = payload
        reporter.clean(scanned)
        if key is not None and _CACHE is not None:
            _CACHE.new.append(key)
    elif kind == "finding":
        finding, scanned, key = payload
        reporter.finding(finding, scanned)
        if key is not None and _CACHE is not None:
            _CACHE.limited[key] = finding.verdict.detail
        if act is not None and finding.verdict.malicious:
            act(finding)
    elif kind == "error":
        reporter.error(*payload)
    else:
        with reporter.lock:
            reporter.totals.special += 1


class _Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, timeout(1)), handled as Ctrl-C is: workers killed, summary printed."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


class WorkerDied(Exception):
    """A scan worker process ended (killed, out of memory); the scan cannot finish."""


def _submit(pool: ProcessPoolExecutor, batch: list[tuple[str, bool]]) -> Future[list[Outcome]]:
    """Submit, with SIGINT blocked: a worker forked now must not die of Ctrl-C
    before it ignores it (a traceback per worker on the admin's terminal)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(_scan_batch, batch)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _kill(pool: ProcessPoolExecutor) -> None:
    """End the workers now: one may be minutes into a big file (Ctrl-C, a closed pipe)."""
    for proc in list(pool._processes.values()):
        proc.kill()
    # and wait for the pool's manager thread, now quick: left running, it
    # races the interpreter's exit hook for its wake-up pipe (EBADF at exit)
    pool.shutdown(wait=True, cancel_futures=True)


def _in_processes(
    batches: Iterator[list[tuple[str, bool]]],
    workers: int,
    reporter: Reporter,
    start_progress: Callable[[], None],
    act: Act | None,
) -> None:
    """Scan the batches in worker processes, at most two a worker in flight.

    ProcessPoolExecutor, not multiprocessing.Pool: a Pool replaces a dead
    worker and waits forever for the batch it held; the executor says so.
    On any exception here (KeyboardInterrupt, BrokenPipeError) the workers
    are killed, not waited for.
    """
    first = next(batches, None)
    if first is None:
        return  # the clean cache answered every file: no worker, no rules
    import multiprocessing  # here: a scan the cache answers does without
    from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ProcessPoolExecutor

    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_quiet_child)
    try:
        pending = {_submit(pool, first)}  # the workers are forked at the first submit
        start_progress()
        for batch in batches:
            pending.add(_submit(pool, batch))
            if len(pending) >= 2 * workers:
                pending = _collect(pending, reporter, FIRST_COMPLETED, act)
        _collect(pending, reporter, ALL_COMPLETED, act)
    except BaseException:
        _kill(pool)
        raise
    pool.shutdown(wait=True)


def _collect(
    pending: set[Future[list[Outcome]]], reporter: Reporter, when: str, act: Act | None
) -> set[Future[list[Outcome]]]:
    from concurrent.futures import wait
    from concurrent.futures.process import BrokenProcessPool

    done, rest = wait(pending, return_when=when)
    for future in done:
        try:
            outcomes = future.result()
        except BrokenProcessPool as e:
            raise WorkerDied("a scan worker process died (killed, or out of memory)") from e
        for outcome in outcomes:
            _record(reporter, outcome, act)
    return rest


def open_cache(cfg: Config, mounts: Mounts) -> CleanCache | None:
    """The clean cache in the scan's compiled directory; None where none can be kept.

    Warm when its stamp still holds: the setting digest saved beside the
    keys is then used without loading the rules, and what loading them
    logged is logged again."""
    directory = owned.cache_dir(cfg.rules.compiled_dir)
    if directory is None:
        return None
    path = directory / scancache.NAME
    saved = scancache.read(path)
    fresh_ms = cfg.onaccess.fresh_window_ms
    stamp = saved.stamp if saved is not None else None
    if saved is None or stamp is None or not scanstamp.holds(stamp, cfg, fresh_ms):
        keys = scancache.Keys(bytes(scancache.KEY_LEN), mounts.by_dev, fresh_ms)
        return CleanCache(path, keys, set(), False, saved=saved)
    log.debug("rules unchanged since the last scan: loaded at the first file not in the cache")
    for name, level, message in stamp.logs:
        logging.getLogger(name).log(level, "%s", message)
    keys = scancache.Keys(saved.setting, mounts.by_dev, fresh_ms)
    return CleanCache(
        path, keys, saved.keys, stamp.by_path, limited=dict(saved.limited),
        saved=saved, stamp=stamp, warm=True,
    )  # fmt: skip


def setting_of(snap: Snapshot) -> bytes:
    cfg = snap.config
    return scancache.setting_digest(snap.rules.generation, cfg.scan, cfg.archive, cfg.policy)


def settle(cache: CleanCache, snap: Snapshot, stamp: Stamp | None) -> None:
    """Key ``cache`` by the rules just loaded; ``stamp``: theirs, to save."""
    setting = setting_of(snap)
    if cache.warm and setting == cache.keys.setting:
        return  # as the stamp said
    if cache.warm:
        log.debug("the rules changed since the scan began: the rest is keyed by the new ones")
    cache.keys = scancache.Keys(setting, cache.keys.fstypes, snap.config.onaccess.fresh_window_ms)
    saved = cache.saved
    same = saved is not None and saved.setting == setting
    cache.known = saved.keys if saved is not None and same else set()
    cache.limited = dict(saved.limited) if saved is not None and same else {}
    cache.by_path = snap.rules.path_rules is not None
    cache.stamp, cache.warm = stamp, False


def _save_cache(cache: CleanCache) -> None:
    log.debug("%d files answered by the scan cache, %d added", cache.hits, len(cache.new))
    saved = cache.saved
    same = saved is not None and saved.setting == cache.keys.setting
    changed = saved is None or cache.limited != saved.limited
    if same and not (cache.new or changed) and cache.stamp in (None, saved and saved.stamp):
        return  # nothing to add
    try:
        scancache.save(
            cache.path, cache.keys.setting, cache.new, cache.known, cache.stamp, cache.limited
        )
    except OSError as e:
        log.warning("%s: cannot save the scan cache: %s", cache.path, e.strerror or e)


@contextlib.contextmanager
def logs_of_load(replayed: bool) -> Iterator[list[tuple[str, int, str]]]:
    """Collect what loading the rules logs (INFO and up), for the stamp; when it was
    ``replayed`` already from a stamp, collect it without showing it again."""
    got: list[tuple[str, int, str]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append((record.name, record.levelno, record.getMessage()))

    top = logging.getLogger("vigild")
    handler, propagate = Collect(logging.INFO), top.propagate
    top.addHandler(handler)
    top.propagate = propagate and not replayed
    try:
        yield got
    finally:
        top.removeHandler(handler)
        top.propagate = propagate


def run(
    paths: list[str],
    cfg: Config,
    rules: Lazy,
    opts: WalkOptions,
    workers: int,
    reporter: Reporter,
    progress: bool,
    act: Act | None = None,
    cache: CleanCache | None = None,
) -> Totals:
    """Scan ``paths`` and print as we go; returns the totals.

    The workers are processes forked once the rules are loaded, not
    threads: YARA-X holds the GIL while it scans, and even yara-python
    loses time to the GIL around each call. Even one worker is a process:
    Ctrl-C can then end the scan at once, whatever file it is in. The
    walker feeds them batches. A file ``cache`` holds as it is now is
    counted clean without being opened; what this scan finds clean is added
    to it and saved, Ctrl-C or not. ``rules`` are built at the first file
    the cache does not answer, if not before. Ctrl-C (or SIGTERM) returns the totals so
    far, ``interrupted`` set to the signal.
    """
    global _SNAPSHOT, _CACHE
    totals, walked = reporter.totals, Totals()
    walker = Walker(opts, reporter.error, totals, reporter.lock, sizes=progress)

    def batches() -> Iterator[list[tuple[str, bool]]]:
        batch: list[tuple[str, bool]] = []
        size = 0
        for path, file_size, follow_this in walker.walk(paths):
            walked.files += 1
            walked.bytes += file_size
            if cache is not None:
                extra = cache.extra(path)
                known = cache.keys.lookup(path, follow_this, cache.known, cache.limited, extra)
                if known is not None:
                    cache.hits += 1
                    size, why = known
                    if why is None:
                        reporter.clean(_scanned_bytes(size, cfg.scan))
                    else:
                        reporter.limited(path, why, _scanned_bytes(size, cfg.scan))
                    continue
            batch.append((path, follow_this))
            size += file_size
            if len(batch) >= _BATCH_FILES or size >= _BATCH_BYTES:
                yield ready(batch)
                batch, size = [], 0
        if batch:
            yield ready(batch)

    def ready(batch: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
        global _SNAPSHOT
        if _SNAPSHOT is None:  # before the first submit: the workers fork with it
            _SNAPSHOT = rules.get()
        return batch

    def start_progress() -> None:
        if progress:
            reporter.progress = Progress(sys.stderr, totals, walked, reporter.lock)
            reporter.progress.start()

    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _SNAPSHOT, _CACHE = rules.snap, cache
        _in_processes(batches(), max(workers, 1), reporter, start_progress, act)
    except KeyboardInterrupt as e:
        totals.interrupted = signal.SIGTERM if isinstance(e, _Terminated) else signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, old_term)
        _SNAPSHOT = _CACHE = None
        if cache is not None:
            _save_cache(cache)
        if reporter.progress:
            reporter.progress.walk_done = True
            reporter.progress.stop()
            reporter.progress = None
    return totals
