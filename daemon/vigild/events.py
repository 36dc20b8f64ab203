"""Event sources: fanotify permission events (block mode) or inotify (detect mode).

Block mode marks the filesystem (or mount) of each watched path and tells
the C reader which prefixes to scan; opens elsewhere on those filesystems
are answered at once in C. vigild's own directories are always excluded.
Both sources take their filters from the current snapshot (``apply``) and
report their counters under the names of ``vigild.status.EventCounters``.

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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyinotify

from vigild import native
from vigild.config import Config, EventKind, MarkKind

if TYPE_CHECKING:
    from vigild.onaccess import Workers
    from vigild.snapshot import Snapshot

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


class Source(Protocol):
    """What the daemon asks of an event source, whichever it is."""

    def open(self, snap: Snapshot) -> None: ...
    def apply(self, snap: Snapshot) -> None: ...
    def start(self, workers: Workers, count: int) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def counters(self) -> dict[str, Any]: ...
    def waiting(self) -> int: ...
    def settings(self) -> dict[str, Any]: ...


@dataclass
class FanotifySource:
    """The fanotify group, marked as the config says, filtered as the snapshot says."""

    cfg: Config
    watch: Watch
    # fresh clean verdicts that may wait (service.settle_entries)
    settle_entries: int = native.FanConfig.settle_entries
    fan: native.Fanotify = field(init=False)
    marked: list[str] = field(default_factory=list)

    def open(self, snap: Snapshot) -> None:
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
                settle_entries=self.settle_entries,
            )
        )
        try:
            self.apply(snap)
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
            # a filesystem mark covers every mount of it; a mount mark one mount,
            # and two watched paths of one filesystem may be two (a bind mount):
            # each is marked (marking a mount twice only adds the same mask)
            if dev not in seen or how == native.MARK_MOUNT:
                self.fan.mark(path, how)
                seen.add(dev)
                self.marked.append(path)

    def apply(self, snap: Snapshot) -> None:
        """Push the snapshot's reader settings (filters, policies, generation) to C."""
        self.fan.configure(snap.reader_settings(self.watch.paths))

    def settings(self) -> dict[str, Any]:
        """The C reader's live settings, for status (filters left out, interpreters counted)."""
        s = asdict(self.fan.settings)
        for key in ("watch", "exclude", "exes", "uids", "interp_sha256"):
            s.pop(key, None)
        s["interpreters"] = len(s.pop("interp_ids", ()))  # interpreter files resolved
        s["generation"] = f"{s['generation']:016x}"
        return s

    def counters(self) -> dict[str, Any]:
        return self.fan.stats()

    def waiting(self) -> int:
        return int(self.fan.stats()["in_flight"])

    def start(self, workers: Workers, count: int) -> None:
        workers.start_fanotify(self.fan, count)
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
        self.snap: Snapshot | None = None
        self.paths: queue.Queue[str] = queue.Queue(maxsize=cfg.onaccess.queue_size)
        self.dropped = 0
        # path -> written again while queued or being scanned; one entry per
        # path, so a file reported twice (event and walk) is scanned once
        self._pending: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._wm = pyinotify.WatchManager()
        self._notifier = pyinotify.ThreadedNotifier(self._wm, _Handler(self))
        self._notifier.name = "vigild-inotify"
        self._notifier.daemon = True
        self._mask = pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MOVED_TO | pyinotify.IN_CREATE

    def open(self, snap: Snapshot) -> None:
        self.apply(snap)

    def apply(self, snap: Snapshot) -> None:
        self.snap = snap  # one reference, swapped whole: the exclusions come with it

    def settings(self) -> dict[str, Any]:
        return {}

    def counters(self) -> dict[str, Any]:
        return {"dropped": self.dropped, "queue_depth": self.paths.qsize()}

    def waiting(self) -> int:
        return self.paths.qsize()

    def offer(self, path: str) -> None:
        snap = self.snap
        if snap is None or snap.excluded(path):
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

    def start(self, workers: Workers, count: int) -> None:
        workers.start_paths(self, count)
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
