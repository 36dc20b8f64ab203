"""``vigild run``: the daemon's lifecycle, and nothing else.

Start-up order: rules (a broken rule or config ends start-up with exit 2
before anything is marked) -> quarantine store -> clean-content cache ->
fanotify group with its reader and workers (or, where fanotify permission
events are not allowed, inotify in detect mode) -> marks -> control
socket -> READY=1. So an open right after READY is already held.

Reload (SIGHUP, ``vigild rules reload``): config and rules are rebuilt
on the main thread while workers keep answering, then swapped in one
step; if anything is wrong the old set stays live and one error names
the file and line. Stop (SIGTERM, SIGINT): STOPPING=1, close the fanotify
group first (the kernel then allows every event it still holds), join the
workers, save the clean-content cache.

What a reload swaps is one ``Snapshot`` (vigild.snapshot): rules,
detector, policies, exclusions, generation. The C reader's settings are
pushed from it first, then the Python pointer is swapped; workers read it
once per job. sd_notify: READY / RELOADING / STOPPING around those steps;
STATUS=, WATCHDOG=1 and the metrics file come from vigild.monitor.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from vigild import cleancache, config, journal, native, snapshot
from vigild.alert import Alert, AlertLogHandler, Alerts, Kind
from vigild.config import Config, ConfigError, EventKind, Mode
from vigild.control import AlreadyRunning, ControlServer, RuntimeLock
from vigild.events import UNAVAILABLE, FanotifySource, InotifySource, Source, Watch, existing
from vigild.fields import Field
from vigild.hashes import HashListError
from vigild.monitor import Monitor
from vigild.onaccess import Workers
from vigild.quarantine import Store, make_private_dirs
from vigild.report import Reporter
from vigild.scanner import RuleError
from vigild.snapshot import Snapshot
from vigild.spool import Spool
from vigild.status import status_line

log = logging.getLogger("vigild")

EXIT_CONFIG = 2  # a restart cannot help (RestartPreventExitStatus=2): config, rules, setup
EXIT_FAILED = 1  # may pass by itself (memory, fds): systemd restarts
STOP_WAIT = 2.0  # seconds to let workers finish their job at stop
# errors that can pass by themselves; every other start failure is exit 2
_TRANSIENT = {errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.EINTR, errno.EBUSY}


class StartError(Exception):
    """The daemon cannot start; the message says why."""


def notify(state: str) -> None:
    """sd_notify, never blocking; a no-op outside systemd."""
    journal.notify(state)


def _raise_nofile() -> None:
    """Every queued event holds an fd: allow as many as the hard limit.

    Under systemd, LimitNOFILE= sets both and the unit's system call filter
    forbids setrlimit; failing here is fine.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_SPARE_FDS = 512  # our own files: journal, rules, sockets, quarantine, workers
# native/settle.c: fresh clean verdicts waiting out their window, an fd each; they
# get what the fd limit leaves after the queue, up to this many
_SETTLE_MAX = 4096
# reader.c: one read() of READ_BUF (16 KiB) opens an fd for every 24-byte event
# record it returns, before any is answered; each group's reader may do so at once
_FDS_PER_READ = 16384 // 24


def _marked_filesystems(watch: tuple[str, ...]) -> int:
    """How many fanotify groups the watch paths make (one per filesystem), at least 1."""
    devs = set()
    for path in watch:
        with contextlib.suppress(OSError):
            devs.add(os.stat(path).st_dev)
    return max(1, len(devs))


def _event_fds(cfg: Config) -> tuple[int, int | None]:
    """(the fd limit, the fds it leaves for events once our own files and one
    read's worth of event fds per group are counted; None without a limit)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return soft, None
    return soft, soft - _SPARE_FDS - _FDS_PER_READ * _marked_filesystems(cfg.onaccess.watch)


def settle_entries(cfg: Config) -> int:
    """How many fresh clean verdicts may wait out their window (native/settle.c):
    the fds the limit leaves once the queue and the spare are counted, at most
    _SETTLE_MAX. Fewer only means more files scanned again at their next open."""
    left = _event_fds(cfg)[1]
    if left is None:
        return _SETTLE_MAX
    return max(0, min(_SETTLE_MAX, left - cfg.onaccess.queue_size))


def _fit_queue_to_fds(cfg: Config) -> Config:
    """Keep queue_size well below the fd limit: every queued event holds an fd,
    and when the kernel cannot open one for an event it denies that open (and a
    close-write it cannot open is lost). Spare: our own files, and one read's
    worth of event fds per group."""
    soft, left = _event_fds(cfg)
    oa = cfg.onaccess
    room = oa.queue_size if left is None else max(16, left)
    if oa.queue_size <= room:
        return cfg
    log.warning(
        "onaccess.queue_size %d lowered to %d: the fd limit is %d", oa.queue_size, room, soft
    )
    return replace(cfg, onaccess=replace(oa, queue_size=room))


class Daemon:
    def __init__(
        self,
        cfg: Config,
        config_path: str | None,
        overrides: Callable[[Config], Config] = lambda c: c,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_cfg = cfg  # until the first snapshot; then snap.config is the truth
        self.config_path = config_path
        self.overrides = overrides  # --watch / --rules, re-applied at reload
        spool_file = os.path.join(cfg.daemon.state_dir, "alerts.spool")
        self.alerts = Alerts(spool=Spool(spool_file, cfg.daemon.alert_spool_size))
        self.started_at = time.time()
        self.mode = "starting"
        self.mode_reason = ""
        self.watch = Watch(())
        self.snap: Snapshot | None = None
        self.source: Source | None = None
        self.workers: Workers | None = None
        self.reporter = Reporter(self.alerts, Store(cfg.daemon.quarantine_dir))
        self.control: ControlServer | None = None
        self.reloads = 0
        self.reload_failures = 0
        self.clean = native.Cache(cfg.scan.cache_entries)
        self.lock = RuntimeLock(cfg.daemon.runtime_dir)
        self.last_reload_error = ""
        self.monitor = Monitor(self, clock)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._reload_lock = threading.Lock()

    def current(self) -> Snapshot:
        """The snapshot now in force (workers read it once per job)."""
        assert self.snap is not None
        return self.snap

    @property
    def cfg(self) -> Config:
        return self.snap.config if self.snap else self.first_cfg

    def lingering(self) -> bool:
        """Whether a worker thread is still inside a scan after the stop."""
        return self.workers is not None and self.workers.alive() > 0

    def stall_timeout_ms(self) -> int:
        return self.cfg.daemon.stall_timeout_ms

    def metrics_file(self) -> str:
        return self.cfg.daemon.metrics_file

    # ------------------------------------------------------------ start-up

    def run(self) -> int:
        self._route_logging()
        threading.excepthook = self._thread_died
        self.alerts.start()
        try:
            self._start()
        except Exception as e:  # one line, never a traceback; no open is left held
            self.alerts.emit(Alert(Kind.LOG, f"cannot start: {_why(e)}", priority=3))
            self._shutdown()
            return exit_code(e)
        self._serve()
        self._shutdown()
        return 0

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        """A thread's exception reaches the journal through the alert thread, never stderr."""
        name = args.thread.name if args.thread else "?"
        what = f"{args.exc_type.__name__}: {args.exc_value}"
        self.alerts.emit(Alert(Kind.LOG, f"thread {name} died: {what}", priority=2))

    def _route_logging(self) -> None:
        for name in ("vigild", "pyinotify"):  # pyinotify would write stderr itself
            logger = logging.getLogger(name)
            logger.handlers[:] = [AlertLogHandler(self.alerts)]
            logger.propagate = False
            logger.setLevel(logging.INFO)

    def _start(self) -> None:
        self.lock.acquire()  # before anything is marked: a second daemon only says who runs
        _raise_nofile()
        cfg = _fit_queue_to_fds(self.first_cfg)
        snap = snapshot.build(cfg, self.clean)
        self.reporter.store.prepare()
        make_private_dirs(cfg.daemon.state_dir)
        if self.alerts.spool is not None and self.alerts.spool.load():
            log.info("%d alerts from the previous run wait for journald", self.alerts.spool.pending)
        restored = cleancache.load(self._cache_file(), self.clean, snap.generation)
        self.snap = snap
        self.watch = existing(cfg.onaccess.watch)
        if not self.watch.paths:
            raise StartError(f"none of the watched paths exists: {', '.join(cfg.onaccess.watch)}")
        for path in self.watch.missing:
            log.warning("watched path %s does not exist: skipped", path)
        self.workers = Workers(self.current, self.reporter)
        self._open_source(snapshot.worker_count(cfg))
        self.control = ControlServer(cfg.daemon.runtime_dir, self._command)
        self.control.start()
        self._announce(restored)
        notify("READY=1\nSTATUS=" + status_line(self.monitor.status()))

    def _open_source(self, nworkers: int) -> None:
        assert self.workers is not None and self.snap is not None
        mode = self.cfg.daemon.mode
        if mode is not Mode.DETECT:
            fan = FanotifySource(self.cfg, self.watch, settle_entries(self.cfg))
            try:
                fan.open(self.snap)
            except native.NativeError as e:
                if mode is Mode.BLOCK or e.errno not in UNAVAILABLE:
                    raise StartError(f"fanotify: {_one_line(e)}") from e
                self.mode_reason = f"fanotify permission events unavailable: {e.strerror}"
            else:
                self.source, self.mode = fan, "block"  # so that a failure below closes it
                fan.start(self.workers, nworkers)
                return
        else:
            self.mode_reason = "daemon.mode = detect"
        ino = InotifySource(self.cfg, self.watch)
        ino.open(self.snap)
        self.source, self.mode = ino, "detect"
        ino.start(self.workers, nworkers)

    def _announce(self, restored: int) -> None:
        rs = self.current().rules
        fields: dict[str, str | tuple[str, ...]] = {
            Field.MODE: self.mode,
            Field.WATCH: self.watch.paths,
            Field.RULES: str(rs.count),
            Field.GENERATION: f"{rs.generation:016x}",
        }
        msg = (
            f"started in {self.mode} mode: watching {', '.join(self.watch.paths)}; "
            f"{rs.summary} ({rs.engine}), {rs.hash_entries} known-bad hashes, "
            f"{restored} clean-cache entries restored"
        )
        self.alerts.emit(Alert(Kind.STARTED, msg, fields))
        if self.mode == "detect":
            self.alerts.emit(
                Alert(
                    Kind.DETECT_MODE,
                    f"DETECT MODE: nothing is blocked, files are scanned after they are written "
                    f"({self.mode_reason})",
                    {Field.MODE: "detect", Field.MODE_REASON: self.mode_reason},
                )
            )

    # ------------------------------------------------------------- serving

    def _serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        while not self._stop.wait(1.0):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            self.monitor.tick()

    def reload(self) -> bool:
        with self._reload_lock:
            notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            ok = self._reload_locked()
            notify("READY=1\nSTATUS=" + status_line(self.monitor.status()))
            return ok

    def _reload_locked(self) -> bool:
        old = self.current()
        try:
            cfg, waiting = snapshot.restart_only_changes(
                old.config, self.overrides(config.load(self.config_path))
            )
            new = snapshot.build(cfg, self.clean)
            broken = snapshot.newly_skipped(old, new)
            if broken:  # one typo must not silently drop the rules its file held
                raise RuleError(broken[0].path, broken[0].line, broken[0].message)
            if self.source is not None:
                self.source.apply(new)  # C first: new verdicts carry the new generation
        except Exception as e:  # whatever it is, the old snapshot stays live (invariant 5)
            self.reload_failures += 1
            self.last_reload_error = _one_line(e)
            self.alerts.emit(
                Alert(
                    Kind.RELOAD_FAILED,
                    f"reload failed, previous rules kept: {_one_line(e)}",
                    {Field.ERROR: _one_line(e)},
                )
            )
            return False
        self.snap = new
        self.reloads += 1
        if waiting:
            log.warning("changes to %s take effect at the next restart", ", ".join(waiting))
        rs = new.rules
        self.alerts.emit(
            Alert(
                Kind.RULES_RELOADED,
                f"rules reloaded: {rs.summary}, {rs.hash_entries} known-bad hashes, "
                f"generation {old.generation:016x} -> {rs.generation:016x}",
                {Field.RULES: str(rs.count), Field.GENERATION: f"{rs.generation:016x}"},
            )
        )
        return True

    def _command(self, command: str) -> dict[str, Any]:
        if command == "status":
            return self.monitor.status().to_dict()
        if command == "reload":
            ok = self.reload()
            return {
                "reloaded": ok,
                "generation": f"{self.current().generation:016x}",
                "reason": "" if ok else self.last_reload_error,
            }
        return {"error": f"unknown command {command!r}"}

    # ------------------------------------------------------------ stopping

    def _cache_file(self) -> Path:
        return Path(self.cfg.daemon.state_dir) / "clean-cache.bin"

    def _shutdown(self) -> None:
        notify("STOPPING=1")
        if self.source is not None:
            self.source.stop()  # fanotify: the group closes first; the kernel allows the rest
        if self.workers is not None:
            # every opener has its answer once the group is closed: a worker
            # deep in a YARA scan is not waited for (cmd_run then _exits)
            self.workers.stop(STOP_WAIT)
            self._unfinished_alerts()
        if self.source is not None and (self.workers is None or not self.workers.alive()):
            self.source.close()  # a worker still in C would use it after it is freed
        if self.snap is not None:
            try:
                cleancache.save(self._cache_file(), self.clean, self.snap.generation)
            except OSError as e:
                log.warning("%s: clean cache not saved: %s", self._cache_file(), e.strerror)
        if self.control is not None:
            self.control.stop()
        self.lock.release()
        self.alerts.stop()

    def _unfinished_alerts(self) -> None:
        """Say, before the alerts stop, what the stop leaves without a verdict: each
        scan a worker is still in, and how many events no worker had taken. The
        kernel allowed their openers when the group closed; a written file is
        scanned at its next open."""
        assert self.workers is not None
        for kind, path in self.workers.unfinished():
            what = "not scanned" if kind is EventKind.CLOSE_WRITE else "allowed unscanned"
            msg = f"{path}: vigild stopped before its scan finished ({kind.value}): {what}"
            fields: dict[str, str] = {Field.PATH: path, Field.EVENT: kind.value}
            self.alerts.emit(Alert(Kind.SCAN_INTERRUPTED, msg, fields))
        waiting = int(self.source.counters().get("queue_depth", 0)) if self.source else 0
        if waiting:
            msg = (
                f"{waiting} events were waiting for a worker when vigild stopped: "
                "opens allowed unscanned, close-writes not scanned"
            )
            self.alerts.emit(Alert(Kind.SCAN_INTERRUPTED, msg, {Field.COUNT: str(waiting)}))


def exit_code(e: BaseException) -> int:
    """Exit 1 only for what may pass by itself; bad config, rules, hash databases,
    missing paths, a missing capability or permission are 2 (no restart loop)."""
    if isinstance(e, OSError) and e.errno in _TRANSIENT:
        return EXIT_FAILED
    if isinstance(
        e, ConfigError | RuleError | HashListError | StartError | AlreadyRunning | OSError
    ):
        return EXIT_CONFIG
    return EXIT_FAILED


def _why(e: BaseException) -> str:
    """The one-line reason a start failed, with a hint where one helps."""
    text = _one_line(e)
    if isinstance(e, PermissionError) and os.geteuid() != 0:
        text += " (vigild run needs root, or directories it may write: see [daemon])"
    return text


def _one_line(e: BaseException) -> str:
    """An error as one line naming its file, never a raw '[Errno N]'."""
    if isinstance(e, OSError):
        what = e.strerror or str(e)
        return f"{e.filename}: {what}" if e.filename else what
    return str(e)
