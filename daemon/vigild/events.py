"""Event sources: fanotify permission events (block mode) or inotify (detect mode).

Block mode marks the filesystem (or mount) of each watched path and tells
the C reader which prefixes to scan; opens elsewhere on those filesystems
are answered at once in C. vigild's own directories are always excluded.

Detect mode, for where fanotify permission events are not allowed (no
CAP_SYS_ADMIN, a kernel without them, an unprivileged container), watches
the trees with inotify: recursive, new directories included (their
contents are queued when the watch is added, so a file written before
then is not missed), and scans after close-write and moved-to. It blocks
nothing and says so loudly.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyinotify

from vigild import native
from vigild.config import Config, EventKind, Fallback, MarkKind

log = logging.getLogger(__name__)

_EVENT_BITS = {
    EventKind.OPEN: native.EV_OPEN,
    EventKind.EXEC: native.EV_EXEC,
    EventKind.CLOSE_WRITE: native.EV_CLOSE_WRITE,
}
# fanotify_init / fanotify_mark errors that mean "no permission events here"
UNAVAILABLE = (errno.EPERM, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


@dataclass(frozen=True)
class Watch:
    """The watched paths that exist, and those skipped because they do not."""

    paths: tuple[str, ...]
    missing: tuple[str, ...] = ()


def existing(paths: Iterable[str]) -> Watch:
    """Resolve watched paths (events carry resolved paths); note missing ones."""
    found: dict[str, None] = {}
    missing = []
    for p in paths:
        if os.path.isdir(p):
            found[os.path.realpath(p)] = None
        else:
            missing.append(p)
    return Watch(tuple(found), tuple(missing))


def own_dirs(cfg: Config) -> list[str]:
    """vigild's own files: never scanned (invariant 2).

    Its state, runtime, quarantine and compiled directories, and its rules
    and hash lists: a rule file holds the very strings it detects, so an
    admin editing one on a watched filesystem would be denied.
    """
    dirs = [
        cfg.daemon.state_dir,
        cfg.daemon.runtime_dir,
        cfg.daemon.quarantine_dir,
        cfg.rules.compiled_dir,
        *cfg.rules.rule_dirs(),
        *cfg.rules.hashes,
    ]
    return [os.path.realpath(d) for d in dirs]


@dataclass
class FanotifySource:
    """The fanotify group, marked and filtered as the config says."""

    cfg: Config
    watch: Watch
    fan: native.Fanotify = field(init=False)
    marked: list[str] = field(default_factory=list)

    def settings(self, cfg: Config, generation: int) -> native.FanSettings:
        """What the C reader keeps from ``cfg``: scanned prefixes but the excluded
        paths, executables and users; policy answers; the rules ``generation``."""
        oa = cfg.onaccess
        exclude = [os.path.realpath(p) for p in oa.exclude_paths] + own_dirs(cfg)
        exes = [os.path.realpath(p) for p in oa.exclude_executables]
        on_full = native.ALLOW if oa.on_queue_full is Fallback.ALLOW else native.DENY
        on_deadline = native.ALLOW if oa.on_deadline is Fallback.ALLOW else native.DENY
        return native.FanSettings(
            generation=generation,
            deadline_ms=oa.deadline_ms,
            on_queue_full_open=on_full,
            on_queue_full_exec=on_full,
            on_deadline_open=on_deadline,
            on_deadline_exec=on_deadline,
            ignore_marks=oa.ignore_marks,
            watch=self.watch.paths,
            exclude=tuple(exclude),
            exes=tuple(exes),
            uids=tuple(oa.exclude_users),
        )

    def open(self, generation: int) -> None:
        """Create the group and mark every watched filesystem; raises NativeError.

        Nothing reads the group yet: openers on the marked filesystems wait
        until ``start``. On failure nothing is left open.
        """
        oa = self.cfg.onaccess
        events = 0
        for kind in oa.events:
            events |= _EVENT_BITS[kind]
        self.fan = native.Fanotify(
            native.FanConfig(
                events=events,
                queue_size=oa.queue_size,
                cache_entries=oa.verdict_cache_entries,
            ),
            settings=self.settings(self.cfg, generation),
        )
        try:
            self._mark_all()
        except native.NativeError:
            self.fan.close()  # never started: nothing is held
            raise

    def _mark_all(self) -> None:
        how = (
            native.MARK_FILESYSTEM
            if self.cfg.onaccess.mark is MarkKind.FILESYSTEM
            else native.MARK_MOUNT
        )
        seen: set[int] = set()
        for path in self.watch.paths:
            dev = os.stat(path).st_dev
            if dev not in seen:
                self.fan.mark(path, how)
                seen.add(dev)
                self.marked.append(path)

    def configure(self, cfg: Config, generation: int) -> None:
        """Apply the reloadable part of ``cfg`` and the rules ``generation``."""
        self.fan.configure(self.settings(cfg, generation))

    def start(self) -> None:
        self.fan.start()

    def stop(self) -> None:
        self.fan.stop()

    def close(self) -> None:
        self.fan.close()


class InotifySource:
    """Recursive inotify watches feeding file paths to the workers."""

    def __init__(self, cfg: Config, watch: Watch) -> None:
        self.cfg = cfg
        self.watch = watch
        self.paths: queue.Queue[str] = queue.Queue(maxsize=cfg.onaccess.queue_size)
        self.dropped = 0
        # path -> written again while queued or being scanned; one entry per
        # path, so a file reported twice (event and walk) is scanned once
        self._pending: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.set_filters(cfg)
        self._wm = pyinotify.WatchManager()
        self._notifier = pyinotify.ThreadedNotifier(self._wm, _Handler(self))
        self._notifier.name = "vigild-inotify"
        self._notifier.daemon = True
        self._mask = pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MOVED_TO | pyinotify.IN_CREATE

    def set_filters(self, cfg: Config) -> None:
        self._exclude = [os.path.realpath(p) for p in cfg.onaccess.exclude_paths] + own_dirs(cfg)

    def excluded(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self._exclude)

    def offer(self, path: str) -> None:
        if self.excluded(path):
            return
        with self._lock:
            if path in self._pending:
                self._pending[path] = True  # scan it again when this scan is done
                return
            self._pending[path] = False
        try:
            self.paths.put_nowait(path)
        except queue.Full:
            self.dropped += 1
            with self._lock:
                del self._pending[path]

    def done(self, path: str) -> None:
        """A worker finished ``path``; queue it again if it was written meanwhile."""
        with self._lock:
            again = self._pending.pop(path, False)
        if again:
            self.offer(path)

    def offer_tree(self, top: str) -> None:
        """Queue every regular file below a directory that just appeared (no symlinks followed)."""
        if os.path.islink(top):
            return
        for root, _dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    self.offer(path)

    def start(self) -> None:
        for path in self.watch.paths:
            self._wm.add_watch(path, self._mask, rec=True, auto_add=True, quiet=False)
        self._notifier.start()

    def stop(self) -> None:
        self._notifier.stop()

    def close(self) -> None:
        pass


class _Handler(pyinotify.ProcessEvent):  # type: ignore[misc]
    def __init__(self, source: InotifySource) -> None:
        super().__init__()
        self.source = source

    def process_IN_Q_OVERFLOW(self, event: object) -> None:
        # the kernel dropped events: files written meanwhile were not seen
        self.source.dropped += 1

    def process_IN_CLOSE_WRITE(self, event: object) -> None:
        self.source.offer(event.pathname)  # type: ignore[attr-defined]

    def process_IN_MOVED_TO(self, event: object) -> None:
        if event.dir:  # type: ignore[attr-defined]
            self.source.offer_tree(event.pathname)  # type: ignore[attr-defined]
        else:
            self.source.offer(event.pathname)  # type: ignore[attr-defined]

    def process_IN_CREATE(self, event: object) -> None:
        # auto_add watches the new directory; files written into it before
        # the watch existed raised no event, so look at what is there now.
        # A file: a hard link made into the tree raises no close-write.
        if event.dir:  # type: ignore[attr-defined]
            self.source.offer_tree(event.pathname)  # type: ignore[attr-defined]
        else:
            self.source.offer(event.pathname)  # type: ignore[attr-defined]
