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

sd_notify: READY / RELOADING / STOPPING around those steps; STATUS= once
a second; WATCHDOG=1 only while jobs are being completed or none wait,
so a wedged worker stops the pings and systemd restarts the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vigild import cleancache, config, journal, metrics, native, ruleset
from vigild.alert import Alert, AlertLogHandler, Alerts, Kind
from vigild.config import Config, ConfigError, Mode
from vigild.control import ControlServer
from vigild.detector import Detector
from vigild.events import UNAVAILABLE, FanotifySource, InotifySource, Watch, existing
from vigild.hashes import HashListError
from vigild.onaccess import Workers
from vigild.quarantine import Store
from vigild.scanner import RuleError
from vigild.verdict import Policy

log = logging.getLogger("vigild")

EXIT_CONFIG = 2  # bad config or rules: systemd should not restart (RestartPreventExitStatus)
EXIT_FAILED = 1
METRICS_EVERY = 5.0  # seconds between OpenMetrics file writes


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


def _salt(cfg: Config) -> str:
    """What besides the rules decides an answer: it goes into the generation."""
    return f"|{cfg.scan.max_file_size}|{cfg.scan.oversize.value}|{cfg.policy}"


def percentile_us(buckets: list[int], q: float) -> int:
    """Upper bound (us) of the latency bucket holding quantile ``q``; 0 if empty."""
    total = sum(buckets)
    if not total:
        return 0
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= q * total:
            return 2 << i
    return 2 << (len(buckets) - 1)


@dataclass
class _Progress:
    completed: int = 0
    at: float = 0.0


class Daemon:
    def __init__(
        self,
        cfg: Config,
        config_path: str | None,
        overrides: Callable[[Config], Config] = lambda c: c,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = overrides  # --watch / --rules, re-applied at reload
        self.clock = clock
        self.alerts = Alerts()
        self.started_at = time.time()
        self.mode = "starting"
        self.mode_reason = ""
        self.watch = Watch(())
        self.ruleset: ruleset.RuleSet | None = None
        self.source: FanotifySource | InotifySource | None = None
        self.workers: Workers | None = None
        self.control: ControlServer | None = None
        self.reloads = 0
        self.reload_failures = 0
        self._detector: Detector | None = None
        self._clean = native.Cache(cfg.scan.cache_entries)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._reload_lock = threading.Lock()
        self._last_stats: dict[str, Any] = {}
        self._progress = _Progress(at=clock())
        self._metrics_at = -METRICS_EVERY

    def detector(self) -> Detector:
        assert self._detector is not None
        return self._detector

    # ------------------------------------------------------------ start-up

    def run(self) -> int:
        self._route_logging()
        threading.excepthook = self._thread_died
        self.alerts.start()
        try:
            self._start()
        except Exception as e:  # one line, never a traceback; no open is left held
            self.alerts.emit(Alert(Kind.LOG, f"cannot start: {_one_line(e)}", priority=3))
            self._shutdown()
            return (
                EXIT_CONFIG
                if isinstance(e, ConfigError | RuleError | HashListError)
                else EXIT_FAILED
            )
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
        cfg = self.cfg
        _raise_nofile()
        self.ruleset = ruleset.load(cfg.rules, cfg.scan.timeout, salt=_salt(cfg))
        self._fit_queue_to_fds()
        store = Store(cfg.daemon.quarantine_dir)
        store.prepare()
        Path(cfg.daemon.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        restored = cleancache.load(self._cache_file(), self._clean, self.ruleset.generation)
        self._detector = Detector(
            self.ruleset, cfg.scan, Policy.from_config(cfg.policy), self._clean
        )
        self.watch = existing(cfg.onaccess.watch)
        if not self.watch.paths:
            raise StartError(f"none of the watched paths exists: {', '.join(cfg.onaccess.watch)}")
        for path in self.watch.missing:
            log.warning("watched path %s does not exist: skipped", path)
        self.workers = Workers(self.detector, cfg.onaccess, cfg.policy, self.alerts, store)
        self._open_source(cfg.scan.workers or os.cpu_count() or 1)
        self.control = ControlServer(cfg.daemon.runtime_dir, self._command)
        self.control.start()
        self._announce(restored)
        notify("READY=1\nSTATUS=" + self.status_line())

    def _fit_queue_to_fds(self) -> None:
        """Keep queue_size well below the fd limit: every queued event holds an fd,
        and when the kernel cannot open one for an event it denies that open."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        room = max(16, soft - 512)
        oa = self.cfg.onaccess
        if soft != resource.RLIM_INFINITY and oa.queue_size > room:
            log.warning(
                "onaccess.queue_size %d lowered to %d: the fd limit is %d",
                oa.queue_size,
                room,
                soft,
            )
            self.cfg = replace(self.cfg, onaccess=replace(oa, queue_size=room))

    def _open_source(self, nworkers: int) -> None:
        assert self.workers is not None and self.ruleset is not None
        mode = self.cfg.daemon.mode
        if mode is not Mode.DETECT:
            source = FanotifySource(self.cfg, self.watch)
            try:
                source.open(self.ruleset.generation)
            except native.NativeError as e:
                if mode is Mode.BLOCK or e.errno not in UNAVAILABLE:
                    raise StartError(f"fanotify: {_one_line(e)}") from e
                self.mode_reason = f"fanotify permission events unavailable: {e.strerror}"
            else:
                self.source, self.mode = source, "block"  # so that a failure below closes it
                self.workers.start_fanotify(source.fan, nworkers)
                source.start()
                return
        else:
            self.mode_reason = "daemon.mode = detect"
        source_i = InotifySource(self.cfg, self.watch)
        self.workers.start_paths(source_i, nworkers)
        source_i.start()
        self.source, self.mode = source_i, "detect"

    def _announce(self, restored: int) -> None:
        rs = self.ruleset
        assert rs is not None
        fields = {
            "VIGILD_MODE": self.mode,
            "VIGILD_WATCH": self.watch.paths,
            "VIGILD_RULES": str(rs.count),
            "VIGILD_GENERATION": f"{rs.generation:016x}",
        }
        msg = (
            f"started in {self.mode} mode: watching {', '.join(self.watch.paths)}; "
            f"{rs.count} rules ({rs.engine}), {rs.hash_entries} known-bad hashes, "
            f"{restored} clean-cache entries restored"
        )
        self.alerts.emit(Alert(Kind.STARTED, msg, fields))
        if self.mode == "detect":
            self.alerts.emit(
                Alert(
                    Kind.DETECT_MODE,
                    f"DETECT MODE: nothing is blocked, files are scanned after they are written "
                    f"({self.mode_reason})",
                    {"VIGILD_MODE": "detect", "VIGILD_MODE_REASON": self.mode_reason},
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
            self._monitor()

    def reload(self) -> bool:
        with self._reload_lock:
            notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            ok = self._reload_locked()
            notify("READY=1\nSTATUS=" + self.status_line())
            return ok

    def _reload_locked(self) -> bool:
        old = self.ruleset
        assert old is not None
        try:
            cfg = self.overrides(config.load(self.config_path))
            rs = ruleset.load(cfg.rules, cfg.scan.timeout, salt=_salt(cfg))
        except Exception as e:  # whatever it is, the old set stays live (invariant 5)
            self.reload_failures += 1
            self.alerts.emit(
                Alert(
                    Kind.RELOAD_FAILED,
                    f"reload failed, previous rules kept: {_one_line(e)}",
                    {"VIGILD_ERROR": _one_line(e)},
                )
            )
            return False
        self._apply(cfg, rs)
        self.reloads += 1
        self.alerts.emit(
            Alert(
                Kind.RULES_RELOADED,
                f"rules reloaded: {rs.count} rules, {rs.hash_entries} known-bad hashes, "
                f"generation {old.generation:016x} -> {rs.generation:016x}",
                {"VIGILD_RULES": str(rs.count), "VIGILD_GENERATION": f"{rs.generation:016x}"},
            )
        )
        return True

    def _apply(self, cfg: Config, rs: ruleset.RuleSet) -> None:
        """Swap in a new config and rule set: C settings (with the generation), then detector.

        Exclusions, rules, hashes, scan limits, policy, the deadline and its
        answers change at reload; what shapes the fanotify group itself
        (watched paths, events, mark kind, queue, caches) and [daemon] need
        a restart.
        """
        old = self.cfg
        fixed = (
            "watch",
            "events",
            "mark",
            "queue_size",
            "verdict_cache_entries",
        )
        if (
            any(getattr(cfg.onaccess, k) != getattr(old.onaccess, k) for k in fixed)
            or cfg.daemon != old.daemon
        ):
            log.warning(
                "changes to [daemon] and to onaccess %s take effect at the next restart",
                "/".join(fixed),
            )
        if isinstance(self.source, FanotifySource):
            self.source.configure(cfg, rs.generation)
        elif self.source is not None:
            self.source.set_filters(cfg)
        self._detector = Detector(rs, cfg.scan, Policy.from_config(cfg.policy), self._clean)
        self.ruleset = rs
        self.cfg = replace(cfg, daemon=old.daemon)

    def _command(self, command: str) -> dict[str, Any]:
        if command == "status":
            return self.status()
        if command == "reload":
            ok = self.reload()
            return {
                "reloaded": ok,
                "generation": f"{self.ruleset.generation:016x}" if self.ruleset else "",
            }
        return {"error": f"unknown command {command!r}"}

    # ------------------------------------------------------------ watching

    def _fan_stats(self) -> dict[str, Any]:
        if isinstance(self.source, FanotifySource):
            return self.source.fan.stats()
        return {}

    def _monitor(self) -> None:
        """Once a second: overflow alerts, STATUS=, and the watchdog."""
        stats = self._fan_stats()
        for key, what in (
            ("queue_full", "opens answered by policy: the queue was full"),
            ("notify_dropped", "close-write scans dropped: the queue was full"),
            ("overflows", "kernel event queue overflowed: caches flushed"),
        ):
            delta = stats.get(key, 0) - self._last_stats.get(key, 0)
            if delta > 0:
                self.alerts.emit(
                    Alert(
                        Kind.QUEUE_OVERFLOW,
                        f"{delta} {what}",
                        {"VIGILD_OVERFLOW": key, "VIGILD_COUNT": str(delta)},
                    )
                )
        if isinstance(self.source, InotifySource) and self.source.dropped > self._last_stats.get(
            "dropped", 0
        ):
            delta = self.source.dropped - self._last_stats.get("dropped", 0)
            self.alerts.emit(
                Alert(
                    Kind.QUEUE_OVERFLOW,
                    f"{delta} scans dropped: the queue was full",
                    {"VIGILD_OVERFLOW": "dropped", "VIGILD_COUNT": str(delta)},
                )
            )
            stats["dropped"] = self.source.dropped
        self._last_stats = stats
        notify("STATUS=" + self.status_line())
        if self.healthy():
            notify("WATCHDOG=1")
        self._write_metrics()

    def _write_metrics(self, force: bool = False) -> None:
        path = self.cfg.daemon.metrics_file
        now = self.clock()
        if not path or (not force and now - self._metrics_at < METRICS_EVERY):
            return
        self._metrics_at = now
        try:
            metrics.write(path, self.status())
        except OSError as e:
            log.warning("%s: metrics not written: %s", path, e.strerror)

    def healthy(self) -> bool:
        """Jobs are being completed, or none is waiting; every worker thread lives."""
        w = self.workers
        if w is None or w.alive() < len(w._threads):
            return False
        done = w.counters.scanned
        now = self.clock()
        if done != self._progress.completed:
            self._progress = _Progress(done, now)
            return True
        waiting = self._waiting()
        if not waiting:
            self._progress.at = now
            return True
        return now - self._progress.at < self.cfg.daemon.stall_timeout_ms / 1000

    def _waiting(self) -> int:
        if isinstance(self.source, FanotifySource):
            return int(self.source.fan.stats()["in_flight"])
        if isinstance(self.source, InotifySource):
            return self.source.paths.qsize()
        return 0

    # -------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        rs = self.ruleset
        stats = self._fan_stats()
        w = self.workers
        clean = self._clean.stats()
        lat = stats.get("latency_us", [])
        cache_hits = stats.get("cache_allow", 0) + stats.get("cache_deny", 0)
        lookups = cache_hits + stats.get("queued", 0)
        return {
            "pid": os.getpid(),
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "watching": list(self.watch.paths),
            "missing": list(self.watch.missing),
            "started_at": self.started_at,
            "rules": {
                "engine": rs.engine if rs else "",
                "count": rs.count if rs else 0,
                "files": len(rs.files) if rs else 0,
                "generation": f"{rs.generation:016x}" if rs else "",
                "hash_entries": rs.hash_entries if rs else 0,
                "reloads": self.reloads,
                "reload_failures": self.reload_failures,
            },
            "events": {k: v for k, v in stats.items() if k != "latency_us"},
            "verdict_cache_hit_ratio": round(cache_hits / lookups, 4) if lookups else 0.0,
            "clean_cache": {"entries": clean.entries, "hits": clean.hits, "misses": clean.misses},
            "latency_us": {"p50": percentile_us(lat, 0.5), "p99": percentile_us(lat, 0.99)},
            "workers": {
                "threads": len(w._threads) if w else 0,
                "alive": w.alive() if w else 0,
                "scanned": w.counters.scanned if w else 0,
                "detections": w.counters.detections if w else 0,
                "quarantined": w.counters.quarantined if w else 0,
                "late": w.counters.late if w else 0,
                "errors": w.counters.errors if w else 0,
            },
            "blocked": stats.get("answered_deny", 0),
            "alerts": {
                "written": self.alerts.written,
                "dropped": self.alerts.dropped,
                "journal_busy": self.alerts.journal_busy,
            },
        }

    def status_line(self) -> str:
        s = self.status()
        ev = s["events"]
        return (
            f"{s['mode']} mode, {len(s['watching'])} paths, {s['rules']['count']} rules; "
            f"{ev.get('perm_events', 0)} opens checked, {s['blocked']} blocked, "
            f"cache hit {s['verdict_cache_hit_ratio'] * 100:.0f}%"
        )

    # ------------------------------------------------------------ stopping

    def _cache_file(self) -> Path:
        return Path(self.cfg.daemon.state_dir) / "clean-cache.bin"

    def _shutdown(self) -> None:
        notify("STOPPING=1")
        if self.source is not None:
            self.source.stop()  # fanotify: the group closes first; the kernel allows the rest
        if self.workers is not None:
            self.workers.stop()
        if self.source is not None and (self.workers is None or not self.workers.alive()):
            self.source.close()  # a worker still in C would use it after it is freed
        if self.ruleset is not None:
            try:
                cleancache.save(self._cache_file(), self._clean, self.ruleset.generation)
            except OSError as e:
                log.warning("%s: clean cache not saved: %s", self._cache_file(), e.strerror)
        if self.control is not None:
            self.control.stop()
        self.alerts.stop()


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)
