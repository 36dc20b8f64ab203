"""The ``vigild`` command: one entry point, a subcommand per task.

Exit codes follow clamscan: 0 clean / done, 1 something found, 2 error
(bad config, broken rule, unreadable or corrupted hash database, or files
that could not be scanned). Every error is one line that names the file,
and the line or key where there is one.

Why one module of this size: the whole command line (every subcommand's
parser and its thin command function) is in one place so that the man page
and completion tests read one parser; the work is in the modules called.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigild import __version__, config, textform
from vigild.config import Config, ConfigError, Engine

# each command imports what it needs: ``vigild scan`` answered from its
# clean cache costs little more than the interpreter's start
if TYPE_CHECKING:
    from vigild import scan, scanout, snapshot
    from vigild.quarantine import Store

log = logging.getLogger("vigild")

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line or its inputs, shown as one line."""


def _load_config(args: argparse.Namespace) -> Config:
    cfg = config.load(args.config)
    rules = cfg.rules
    if getattr(args, "rules", None):
        dirs = tuple(os.path.abspath(d) for d in args.rules)
        rules = replace(rules, dirs=dirs, local_dirs=())
    if getattr(args, "hashes", None):
        rules = replace(rules, hashes=tuple(os.path.abspath(h) for h in args.hashes))
    if getattr(args, "engine", None):
        rules = replace(rules, engine=Engine(args.engine))
    scan_cfg = cfg.scan
    if getattr(args, "max_file_size", None) is not None:
        scan_cfg = replace(scan_cfg, max_file_size=args.max_file_size)
    if getattr(args, "workers", None) is not None:
        scan_cfg = replace(scan_cfg, workers=args.workers)
    return replace(cfg, rules=rules, scan=scan_cfg)


def _size_arg(text: str) -> int:
    try:
        return config._size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


# ------------------------------------------------------------------ commands


def _scan_config(args: argparse.Namespace) -> tuple[Config, tuple[str, ...]]:
    """The config for a scan, with its own compiled directory (never the
    daemon's: a scan must not replace the daemon's compiled sets), and the
    resolved prefixes a scan never enters: onaccess.exclude_paths and
    vigild's own directories, the daemon's compiled directory included."""
    from vigild import scan

    cfg = _load_config(args)
    own = (os.path.realpath(cfg.rules.compiled_dir),)
    compiled = os.path.abspath(args.compiled_dir) if args.compiled_dir else scan.compiled_dir()
    cfg = replace(cfg, rules=replace(cfg.rules, compiled_dir=compiled))
    return cfg, own


def _patterns(texts: list[str] | None, option: str) -> tuple[re.Pattern[str], ...]:
    try:
        return tuple(re.compile(t) for t in texts or ())
    except re.error as e:
        raise UsageError(f"{option}: {e.pattern!r}: {e}") from e


def _scan_paths(args: argparse.Namespace) -> list[str]:
    """The paths named on the command line, then those in --file-list (one a line)."""
    paths = list(args.paths)
    if args.file_list:
        if args.file_list == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.file_list, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        paths += [line for line in lines if line.strip()]
    if not paths:
        raise UsageError("scan: nothing to scan (give a PATH or --file-list)")
    return paths


def _actor(args: argparse.Namespace, cfg: Config, reporter: scanout.Reporter) -> scan.Act | None:
    if not (args.remove or args.move or args.quarantine):
        return None
    from vigild import quarantine
    from vigild.quarantine import Store
    from vigild.scanact import ActionKind, Actor

    if args.remove:
        return Actor(ActionKind.REMOVE, reporter)
    if args.move:
        target = os.path.abspath(args.move)
        if not os.path.isdir(target):
            raise UsageError(f"--move: {target}: not a directory")
        return Actor(ActionKind.MOVE, reporter, move_to=target)
    if args.quarantine:
        if os.geteuid() != 0:
            raise UsageError("--quarantine: permission denied: the quarantine is root's")
        store = Store(cfg.daemon.quarantine_dir)
        quarantine.make_private_dirs(store.dir)
        return Actor(ActionKind.QUARANTINE, reporter, store=store)
    return None


def _show(args: argparse.Namespace) -> scanout.Show:
    from vigild import scanout

    if args.quiet:
        return scanout.Show.QUIET
    return scanout.Show.INFECTED if args.infected else scanout.Show.ALL


def cmd_scan(args: argparse.Namespace) -> int:
    from vigild import scan, scanout

    cfg, own = _scan_config(args)
    opts = scan.WalkOptions(
        follow=args.follow_symlinks,
        one_fs=args.one_file_system,
        exclude=_patterns(args.exclude, "--exclude"),
        exclude_dir=_patterns(args.exclude_dir, "--exclude-dir"),
        mounts=scan.read_mounts(),
    )
    paths = _scan_paths(args)
    with contextlib.ExitStack() as stack:
        log_file = None
        if args.log:
            log_file = stack.enter_context(
                open(args.log, "a", encoding="utf-8", errors="surrogateescape")
            )
        reporter = scanout.Reporter(sys.stdout, args.json, scanout.Totals(), _show(args), log_file)
        act = _actor(args, cfg, reporter)
        cache = None if args.no_cache else scan.open_cache(cfg, opts.mounts)
        rules = scan.Lazy(lambda: _scan_snapshot(cfg, cache))
        if cache is None or not cache.warm:
            rules.get()  # a broken rule is told before any file is scanned
        prefixes = config.never_scanned(cfg) + own
        opts = replace(opts, excluded=scan.under(prefixes))
        workers = cfg.scan.workers or os.cpu_count() or 1
        progress = not (args.no_progress or args.json or args.quiet) and sys.stderr.isatty()
        totals = scan.run(paths, cfg, rules, opts, workers, reporter, progress, act, cache)
        if not (args.no_summary or args.quiet):
            reporter.summary(_engine_line(rules, cache))
    return totals.exit_code


def _scan_snapshot(cfg: Config, cache: scan.CleanCache | None) -> snapshot.Snapshot:
    """The scan's rules, loaded; the cache keyed by them, with their stamp (vigild.scanstamp)."""
    from vigild import native, scan, scanstamp, snapshot

    started = time.time_ns()
    with scan.logs_of_load(replayed=cache is not None and cache.warm) as logs:
        snap = snapshot.build(cfg, native.Cache(cfg.scan.cache_entries))
    if cache is not None:
        scan.settle(cache, snap, scanstamp.make(cfg, snap.rules, started, logs))
    return snap


def _engine_line(rules: scan.Lazy, cache: scan.CleanCache | None) -> dict[str, Any]:
    """The summary's engine, rule count and hash entries: of the rules, or as the stamp
    saved them when every file was answered by the cache without loading any."""
    if rules.snap is None and cache is not None and cache.stamp is not None:
        return cache.stamp.summary
    rs = rules.get().rules
    return {"engine": rs.engine, "rules": rs.count, "hash_entries": rs.hash_entries}


def cmd_rules_check(args: argparse.Namespace) -> int:
    from vigild import hashes, isolation, ruleset

    cfg = _load_config(args)
    dirs = args.dirs or list(cfg.rules.rule_dirs())
    errors, warnings, n_files = ruleset.check(
        dirs, cfg.rules.engine, defaults=dict(cfg.rules.externals)
    )
    for w in warnings:
        where = f"{w.path}:{w.line}" if w.line else w.path
        print(f"{where}: warning: {w.message}", file=sys.stderr)
    for f in ruleset.rule_files(dirs):
        for line, what in isolation.risky_regexes(f):
            print(f"{f}:{line}: warning: {what}", file=sys.stderr)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"{len(errors)} of {n_files} rule files have errors", file=sys.stderr)
        return EXIT_ERROR
    print(f"{n_files} rule files OK")
    if cfg.rules.engine is Engine.AUTO:
        print(_auto_pick(cfg, dirs))
    hashes.check_lists(h for h in hashes.list_files(cfg.rules.hashes) if not hashes.is_compiled(h))
    return EXIT_OK


def _auto_pick(cfg: Config, dirs: list[str]) -> str:
    """engine = "auto": which engine these rules get and why (decided, or the saved decision)."""
    from vigild import enginepick, owned, ruleset

    rules = replace(cfg.rules, dirs=tuple(dirs), local_dirs=())
    files = ruleset.rule_files(dirs)
    pick = enginepick.pick(rules, cfg.scan.timeout, files, owned.cache_dir(rules.compiled_dir))
    return f"engine auto: {pick.why}"


def cmd_rules_compile(args: argparse.Namespace) -> int:
    from vigild import owned, ruleset

    cfg = _load_config(args)
    rules_cfg = cfg.rules
    if args.output:
        rules_cfg = replace(rules_cfg, compiled_dir=os.path.abspath(args.output))
    where = owned.cache_dir(rules_cfg.compiled_dir)
    if where is None or (args.output and where != Path(rules_cfg.compiled_dir)):
        raise UsageError(f"{rules_cfg.compiled_dir}: cannot write compiled rules there")
    rs = ruleset.load(rules_cfg, cfg.scan.timeout)
    print(f"{rs.summary} ({rs.engine})")
    if rs.engine_why:
        print(rs.engine_why)
    print(f"rules generation: {rs.generation:016x}")
    print(f"known-bad hashes: {rs.hash_entries}")
    print(f"compiled into {where}")
    return EXIT_OK


def _run_overrides(args: argparse.Namespace) -> Callable[[Config], Config]:
    """--watch / --rules / --mode, applied to the config at start and at every reload."""

    def apply(cfg: Config) -> Config:
        if args.watch:
            watch = tuple(os.path.abspath(w) for w in args.watch)
            cfg = replace(cfg, onaccess=replace(cfg.onaccess, watch=watch))
        if args.rules:
            dirs = tuple(os.path.abspath(d) for d in args.rules)
            cfg = replace(cfg, rules=replace(cfg.rules, dirs=dirs, local_dirs=()))
        if args.mode:
            cfg = replace(cfg, daemon=replace(cfg.daemon, mode=config.Mode(args.mode)))
        return cfg

    return apply


def cmd_run(args: argparse.Namespace) -> int:
    from vigild.service import Daemon

    overrides = _run_overrides(args)
    cfg = overrides(config.load(args.config))
    daemon = Daemon(cfg, args.config, overrides)
    code = daemon.run()
    if daemon.lingering():
        # a worker is still in a scan whose opener the kernel has released:
        # do not wait for it (nor risk it at interpreter shutdown)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _daemon_config(args: argparse.Namespace) -> Config:
    """The config, for finding the running daemon: a broken file must not cut
    the admin off from it. Files that do not load are skipped with a warning."""
    cfg, errors = config.load_tolerant(args.config)
    for e in errors:
        print(f"vigild: warning: {e} (file skipped to find the daemon)", file=sys.stderr)
    return cfg


def _ask(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from vigild import control

    cfg = _daemon_config(args)
    try:
        return control.request(cfg.daemon.runtime_dir, command)
    except control.ControlError as e:
        raise UsageError(str(e)) from e


def cmd_status(args: argparse.Namespace) -> int:
    from vigild.status import Status, render_text

    raw = _ask(args, "status")
    try:
        s = Status.from_dict(raw)
    except (KeyError, TypeError) as e:
        raise UsageError(f"the daemon's status record is not this vigild's: {e}") from e
    if args.json:
        print(json.dumps(s.to_dict(), indent=2))
        return EXIT_OK
    print(render_text(s))
    return EXIT_OK


def cmd_rules_reload(args: argparse.Namespace) -> int:
    r = _ask(args, "reload")
    if not r.get("reloaded"):
        raise UsageError(f"reload failed, the previous rules stay live: {r.get('reason') or '?'}")
    print(f"reloaded: rules generation {r['generation']}")
    return EXIT_OK


def cmd_update(args: argparse.Namespace) -> int:
    from vigild import update

    if args.configured:
        try:
            cfg = config.load(args.config)
        except ConfigError as e:  # ExecCondition=: 1-254 skip quietly, 255 fails the unit
            print(f"vigild: {textform.escape(str(e))}", file=sys.stderr)
            return 255
        return EXIT_OK if cfg.update.feeds else 1
    try:
        return update.Updater(config.load(args.config)).run(check_only=args.check)
    except update.UpdateError as e:
        raise UsageError(str(e)) from e


def cmd_update_rollback(args: argparse.Namespace) -> int:
    from vigild import update

    try:
        return update.Updater(config.load(args.config)).rollback()
    except update.UpdateError as e:
        raise UsageError(str(e)) from e


def _store(args: argparse.Namespace) -> Store:
    from vigild.quarantine import Store

    if os.geteuid() != 0:
        raise UsageError("permission denied: the quarantine is root's (run as root)")
    return Store(_daemon_config(args).daemon.quarantine_dir)


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    store = _store(args)
    items = [(it, store.state(it)) for it in store.items()]
    if args.json:
        for it, state in items:
            rec = {**asdict(it), "state": state, "restorable": state == "ok"}
            print(json.dumps(textform.json_record(rec)))
        return EXIT_OK
    if not items:
        print("quarantine is empty")
    else:
        print(f"{'ID':<24}  {'QUARANTINED':<19}  {'SIZE':>10}  {'STATE':<7}  PATH (DETECTION)")
    for it, state in items:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(it.quarantined_at))
        why = it.detail or it.reason
        if it.links:
            why += f"; {it.links} other hard link{'s' if it.links > 1 else ''} not moved"
        shown = "ok" if state == "ok" else state.upper()
        line = f"{it.id}  {when}  {it.size:>10}  {shown:<7}  {it.path}  ({why})"
        print(textform.escape(line))
    return EXIT_OK


def cmd_quarantine_restore(args: argparse.Namespace) -> int:
    path = _store(args).restore(args.id, force=args.force, to=args.to)
    print(textform.escape(f"restored {args.id} to {path}"))
    return EXIT_OK


def cmd_quarantine_delete(args: argparse.Namespace) -> int:
    _store(args).delete(args.id)
    print(f"deleted {args.id}")
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    from vigild import review

    try:
        q = review.Query(
            since=review.parse_when(args.since) if args.since else None,
            until=review.parse_when(args.until) if args.until else None,
            rule=args.rule,
            path=os.path.abspath(args.path) if args.path else None,
            all_kinds=args.all,
        )
    except review.WhenError as e:
        raise UsageError(str(e)) from e
    problem = review.journal_problem()
    if problem:
        raise UsageError(problem)
    found = review.entries(q, follow=args.follow and not args.summary)
    if args.summary:
        summary = review.summarize(found, _daemon_config(args).onaccess.watch)
        if args.json:
            review.print_summary_json(summary, sys.stdout)
        else:
            review.print_summary(summary, sys.stdout)
    elif args.json:
        review.print_json(found, sys.stdout)
    else:
        review.print_table(found, sys.stdout)
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    print(f"vigild {__version__}")
    return EXIT_OK


# ------------------------------------------------------------------- parsing


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="config file (default /etc/vigild/vigild.toml)")


def _rule_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules",
        metavar="DIR",
        action="append",
        help="YARA rule directory or file; repeatable; replaces the configured and shipped rules",
    )
    p.add_argument(
        "--hashes",
        metavar="FILE",
        action="append",
        help="known-bad hash list (sha256 list, ClamAV .hsb/.hdb) or compiled .vhdb; repeatable",
    )
    p.add_argument("--engine", choices=[e.value for e in Engine], help="YARA engine")


def _verbose(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: absent after the subcommand, the value given before it stands
    p.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def _scan_options(p: argparse.ArgumentParser) -> None:
    """``vigild scan``'s options; clamscan's names where the meaning is the same."""
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per line: findings, then a summary"
    )
    p.add_argument(
        "--follow-symlinks", action="store_true", help="follow symlinks inside directories"
    )
    p.add_argument("--workers", type=int, metavar="N", help="scan processes (default: one per CPU)")
    p.add_argument(
        "--max-file-size", type=_size_arg, metavar="SIZE", help="e.g. 64M; see scan.oversize"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on a terminal")
    p.add_argument(
        "--exclude", metavar="REGEX", action="append", help="skip files whose path matches"
    )
    p.add_argument(
        "--exclude-dir",
        metavar="REGEX",
        action="append",
        help="skip directories whose path matches",
    )
    p.add_argument(
        "--file-list", metavar="FILE", help="also scan the paths in FILE, one a line (- = stdin)"
    )
    p.add_argument("--one-file-system", action="store_true", help="stay on each PATH's filesystem")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--move", metavar="DIR", help="move what is found into DIR")
    act.add_argument("--remove", action="store_true", help="delete what is found")
    act.add_argument(
        "--quarantine", action="store_true", help="move what is found into vigild's quarantine"
    )
    p.add_argument("--log", metavar="FILE", help="append what is printed to FILE")
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "-i", "--infected", action="store_true", help="print only what is found, and errors"
    )
    out.add_argument("--quiet", action="store_true", help="print only errors; no summary")
    p.add_argument("--no-summary", action="store_true", help="no summary at the end")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="scan every file: neither use nor update the scan's clean cache",
    )
    p.add_argument(
        "--compiled-dir",
        metavar="DIR",
        help="keep compiled rules here (default /var/cache/vigild/scan, ~/.cache/vigild)",
    )
    _verbose(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigild",
        description="On-access malware scanner for Linux servers.",
        epilog="Exit status: 0 clean, 1 malware found, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"vigild {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("scan", help="scan files and directories now")
    _common(p)
    _rule_sources(p)
    _scan_options(p)
    p.set_defaults(func=cmd_scan)

    rules = sub.add_parser("rules", help="check or compile rules and hash lists")
    rsub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    p = rsub.add_parser(
        "check", help="compile each rule file alone; print every error as file:line: message"
    )
    _common(p)
    p.add_argument("--engine", choices=[e.value for e in Engine], help="YARA engine")
    p.add_argument("--hashes", metavar="FILE", action="append", help="also check this hash list")
    p.add_argument("dirs", nargs="*", metavar="DIR", help="rule directories (default: configured)")
    p.set_defaults(func=cmd_rules_check)
    p = rsub.add_parser("compile", help="compile rules and hash lists into the compiled directory")
    _common(p)
    _rule_sources(p)
    p.add_argument("--output", metavar="DIR", help="write here instead of rules.compiled_dir")
    p.set_defaults(func=cmd_rules_compile)

    p = sub.add_parser("run", help="run the on-access daemon in the foreground")
    _common(p)
    p.add_argument(
        "--watch",
        metavar="PATH",
        action="append",
        help="watch this path; repeatable; replaces onaccess.watch",
    )
    p.add_argument(
        "--rules",
        metavar="DIR",
        action="append",
        help="rule directory; repeatable; replaces the configured rules",
    )
    p.add_argument("--mode", choices=[m.value for m in config.Mode], help="replaces daemon.mode")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("alerts", help="review alerts from the journal")
    _common(p)
    _verbose(p)
    p.add_argument(
        "--since", metavar="WHEN", help="e.g. today, -1h, '10 min ago', 2026-11-22T10:00"
    )
    p.add_argument("--until", metavar="WHEN", help="same forms as --since")
    p.add_argument("--rule", help="only alerts naming this rule")
    p.add_argument("--path", help="only alerts for files at or below this path")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new alerts")
    p.add_argument("--json", action="store_true", help="one JSON object per alert")
    p.add_argument("--all", action="store_true", help="every kind of alert, not only detections")
    p.add_argument(
        "--summary",
        action="store_true",
        help="counts per rule, per directory under each watched path, per unit or container",
    )
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("status", help="ask the running daemon how it is doing")
    _common(p)
    p.add_argument("--json", action="store_true", help="everything, as one JSON object")
    p.set_defaults(func=cmd_status)

    p = rsub.add_parser("reload", help="make the running daemon reload config and rules")
    _common(p)
    p.set_defaults(func=cmd_rules_reload)

    q = sub.add_parser("quarantine", help="list, restore or delete quarantined files")
    qsub = q.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    p = qsub.add_parser("list", help="what is in quarantine")
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON object per item")
    p.set_defaults(func=cmd_quarantine_list)
    p = qsub.add_parser("restore", help="put a file back, bytes and metadata as they were")
    _common(p)
    p.add_argument("id")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a file now at the path; allow --to into a directory others can write",
    )
    p.add_argument("--to", metavar="PATH", help="restore to this path instead")
    p.set_defaults(func=cmd_quarantine_restore)
    p = qsub.add_parser("delete", help="delete a quarantined file for good")
    _common(p)
    p.add_argument("id")
    p.set_defaults(func=cmd_quarantine_delete)

    p = sub.add_parser("update", help="fetch, verify and apply the configured feeds")
    _common(p)
    p.add_argument(
        "--check", action="store_true", help="fetch, verify and compile; say what would change"
    )
    p.add_argument(
        "--configured",
        action="store_true",
        help="exit 0 when a feed is configured, 1 when none (for ExecCondition=)",
    )
    p.set_defaults(func=cmd_update)
    usub = p.add_subparsers(dest="update_command", metavar="COMMAND")
    r = usub.add_parser("rollback", help="make the previous feed generation live again")
    # SUPPRESS: a sub-command's default would replace `vigild update --config FILE rollback`'s
    r.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="config file")
    r.set_defaults(func=cmd_update_rollback)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def _one_line(e: BaseException) -> str:
    from vigild import native

    if isinstance(e, native.NativeError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def _glue_when(argv: list[str]) -> list[str]:
    """``--since -1h`` as ``--since=-1h``: argparse takes a value that starts
    with '-' (and is not a number) for an option, but journalctl's relative
    times do; the README writes them that way."""
    out: list[str] = []
    glue = False
    for arg in argv:
        if glue and arg.startswith("-"):
            out[-1] += "=" + arg
        else:
            out.append(arg)
        glue = arg in ("--since", "--until") and not glue
    return out


def _pipe_closed() -> int:
    """The reader went away (``| head``): end quietly, as a killed-by-SIGPIPE tool would."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail too
    os.close(devnull)
    return 128 + 13  # SIGPIPE


def _survive_lease_breaks() -> None:
    """Ignore SIGIO. vigild takes a read lease for a moment to learn that nobody
    writes a file (native/remember.c, vigild.scancache); a writer's open in that
    moment breaks the lease, and the kernel tells the holder with SIGIO, whose
    default action ends the process. Ignored, the break still completes: the
    lease is dropped right after anyway."""
    signal.signal(signal.SIGIO, signal.SIG_IGN)


def _told() -> tuple[type[Exception], ...]:
    """The errors shown as one line (exit 2), not as a traceback."""
    from vigild.hashes import HashListError
    from vigild.quarantine import QuarantineError
    from vigild.scan import WorkerDied
    from vigild.scanner import RuleError

    return (ConfigError, RuleError, HashListError, QuarantineError, UsageError, WorkerDied, OSError)


def main(argv: list[str] | None = None) -> int:
    _survive_lease_breaks()
    args = build_parser().parse_args(_glue_when(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="vigild: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:
        return _pipe_closed()
    except Exception as e:
        if not isinstance(e, _told()):
            raise
        print(f"vigild: {textform.escape(_one_line(e))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vigild: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
