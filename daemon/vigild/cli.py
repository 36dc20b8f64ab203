"""The ``vigild`` command: one entry point, a subcommand per task.

Exit codes follow clamscan: 0 clean / done, 1 something found, 2 error
(bad config, broken rule, unreadable or corrupted hash database, or files
that could not be scanned). Every error is one line that names the file,
and the line or key where there is one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace

from vigild import __version__, config, hashes, native, ruleset, scan
from vigild.config import Config, ConfigError, Engine
from vigild.detector import Detector
from vigild.scanner import RuleError
from vigild.verdict import Policy

log = logging.getLogger("vigild")

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line or its inputs, shown as one line."""


def _load_config(args: argparse.Namespace) -> Config:
    cfg = config.load(args.config)
    rules = cfg.rules
    if getattr(args, "rules", None):
        rules = replace(rules, dirs=tuple(os.path.abspath(d) for d in args.rules))
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


def cmd_scan(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    rs = ruleset.load(cfg.rules, cfg.scan.timeout)
    clean = native.Cache(cfg.scan.cache_entries)
    detector = Detector(rs, cfg.scan, Policy.from_config(cfg.policy), clean)
    workers = cfg.scan.workers or os.cpu_count() or 1
    progress = not args.no_progress and not args.json and sys.stderr.isatty()
    totals = scan.run(args.paths, detector, workers, args.json, args.follow_symlinks, progress)
    scan.Reporter(sys.stdout, args.json, totals).summary(
        {"engine": rs.engine, "rules": rs.count, "hash_entries": rs.hash_entries}
    )
    return totals.exit_code


def cmd_rules_check(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    dirs = args.dirs or list(cfg.rules.dirs)
    errors = ruleset.check(dirs, cfg.rules.engine)
    for e in errors:
        print(e, file=sys.stderr)
    files = ruleset.rule_files(dirs)
    if errors:
        print(f"{len(errors)} of {len(files)} rule files have errors", file=sys.stderr)
        return EXIT_ERROR
    print(f"{len(files)} rule files OK")
    for h in hashes.list_files(cfg.rules.hashes):
        if not hashes.is_compiled(h):
            hashes.parse_files([h])
    return EXIT_OK


def cmd_rules_compile(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    rules_cfg = cfg.rules
    if args.output:
        rules_cfg = replace(rules_cfg, compiled_dir=os.path.abspath(args.output))
    rs = ruleset.load(rules_cfg, cfg.scan.timeout)
    where = ruleset.cache_dir(rules_cfg.compiled_dir)
    print(f"{rs.count} rules from {len(rs.files)} files ({rs.engine})")
    print(f"rules generation: {rs.generation:016x}")
    print(f"known-bad hashes: {rs.hash_entries}")
    print(f"compiled into {where}")
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
        help="YARA rule directory or file; repeatable; replaces the configured rules",
    )
    p.add_argument(
        "--hashes",
        metavar="FILE",
        action="append",
        help="known-bad hash list (sha256 list, ClamAV .hsb/.hdb) or compiled .vhdb; repeatable",
    )
    p.add_argument("--engine", choices=[e.value for e in Engine], help="YARA engine")


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
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per line: findings, then a summary"
    )
    p.add_argument(
        "--follow-symlinks", action="store_true", help="follow symlinks inside directories"
    )
    p.add_argument("--workers", type=int, metavar="N", help="scan threads (default: one per CPU)")
    p.add_argument(
        "--max-file-size", type=_size_arg, metavar="SIZE", help="e.g. 64M; see scan.oversize"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on a terminal")
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

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def _one_line(e: BaseException) -> str:
    if isinstance(e, native.NativeError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="vigild: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, RuleError, hashes.HashListError, UsageError, OSError) as e:
        print(f"vigild: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vigild: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
