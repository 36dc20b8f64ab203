"""``vigild scan`` against the ``yara`` command line: same rules, same corpus, one run.

Contenders, each a fresh process timed end to end with ``time.perf_counter``
(start-up and loading precompiled rules included, rule compilation not):

* ``vigild scan --no-progress --workers 2`` (yara-python; 2 is also the
  default on this 2-CPU machine, and keeps the match with ``-p 2`` fair on
  bigger ones);
* the same with ``--engine yara-x``;
* ``yara -C -r -N -p 1`` and ``-p 2`` on rules precompiled with ``yarac``;
* vigild and ``yara -p 2`` on an empty directory: start-up and rules load
  alone, so the reader can tell fixed cost from per-byte cost.

vigild keeps its compiled rules in a scratch ``compiled_dir`` (set by a
config file, and given to ``vigild scan --compiled-dir``, which otherwise
keeps its own) and fills it with ``vigild rules compile`` before timing; each
rule file gets its own namespace on both sides, as vigild does. The
corpus is in the page cache. Throughput is corpus bytes over the best of
three rounds; the rounds interleave all contenders.

A scanner that misses things is not faster, it is broken: vigild must
report exactly the set of files that yara reports, or the test fails and
prints the difference.

Rule sets: the repo's ``rules/`` and the ReversingLabs set, found at
``<repo>/../shared/corpus-rules/reversinglabs`` or ``$VIGILD_CORPUS_RULES``.
Either is skipped, with the reason in the table, when absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from bench_corpus import Corpus
from bench_report import Figure, Row, Summary, check_targets, verdict
from bench_timing import ROUNDS, Contest
from support import VIGILD as VIGILD_BIN
from vigild import ruleset
from vigild.scanner import EXTERNALS, RuleError

# Per rule set: the throughput vigild must reach relative to yara -p 2 (None: report only).
TARGETS: dict[str, float | None] = {"default": None, "reversinglabs": 1.0}
WORKERS = 2
REFERENCE = f"yara -p {WORKERS}"
VIGILD = "vigild scan"
YARAX = "vigild --engine yara-x"
DIFF_SHOWN = 20

Scan = Callable[[], frozenset[str]]  # one timed scanner run: the files it found


@dataclass(frozen=True)
class Rules:
    name: str
    path: Path
    files: list[Path]


def _locate(name: str, repo: Path) -> tuple[Path, str]:
    """Where the rules of ``name`` should be, and what to say when they are not."""
    if name == "default":
        return repo / "rules", "no rules/*.yar in the checkout"
    configured = os.environ.get("VIGILD_CORPUS_RULES")
    base = Path(configured) if configured else repo.parent / "shared/corpus-rules/reversinglabs"
    where = base / "yara" if (base / "yara").is_dir() else base
    how = "$VIGILD_CORPUS_RULES" if configured else "<repo>/../shared/corpus-rules/reversinglabs"
    return where, f"{where} not found (set by {how})"


def _rules(name: str, repo: Path) -> Rules | str:
    """The rule files vigild would load for ``name``, or why there are none."""
    where, missing = _locate(name, repo)
    if not where.is_dir():
        return missing
    try:
        files = ruleset.rule_files([str(where)])
    except RuleError:
        return missing
    return Rules(name, where, files)


def _run(argv: list[str], ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run one scanner to completion, or fail the test with its stderr."""
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode not in ok:
        _broken(argv, out, f"exited {out.returncode}")
    return out


def _broken(argv: list[str], out: subprocess.CompletedProcess[str], why: str) -> NoReturn:
    err = out.stderr.strip()[-2000:]
    pytest.fail(f"{' '.join(argv[:4])}... {why}: {err}", pytrace=False)


def _yarac(rules: Rules, out: Path) -> str | None:
    """Compile ``rules`` for the yara CLI into ``out``; the error text on failure."""
    defines = [f"--define={name}=" for name in EXTERNALS]
    sources = [f"n{i}:{f}" for i, f in enumerate(rules.files)]
    res = subprocess.run(
        ["yarac", "-w", *defines, *sources, str(out)], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        return (res.stderr or res.stdout).strip().splitlines()[0]
    return None


def _vigild_compile(vigild: str, config: Path, rules: Rules, engine: str) -> str:
    """Fill the compiled dir for ``engine``; vigild's report line, or a failure."""
    argv = [vigild, "rules", "compile", "--config", str(config), "--rules", str(rules.path)]
    res = subprocess.run(
        [*argv, "--engine", engine],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip() or res.stdout.strip())
    return res.stdout.splitlines()[0]


def _yara_matches(stdout: str) -> set[str]:
    """Files in ``yara`` output ("RULE PATH" per match)."""
    return {line.split(" ", 1)[1] for line in stdout.splitlines() if " " in line}


def _vigild_matches(stdout: str) -> set[str]:
    """Files in ``vigild scan`` output ("PATH: FOUND detail (reason)")."""
    return {line.split(": FOUND ", 1)[0] for line in stdout.splitlines() if ": FOUND " in line}


def _vigild_files(stdout: str) -> int:
    m = re.search(r"^Files scanned: (\d+)$", stdout, re.M)
    return int(m.group(1)) if m else -1


def _diff(ours: frozenset[str], ref: frozenset[str]) -> str:
    lines = []
    for label, paths in (("only vigild", ours - ref), ("only yara", ref - ours)):
        if paths:
            shown = sorted(paths)[:DIFF_SHOWN]
            more = f" (+{len(paths) - DIFF_SHOWN} more)" if len(paths) > DIFF_SHOWN else ""
            lines.append(f"{label}: {len(paths)}: " + ", ".join(shown) + more)
    return "; ".join(lines)


@dataclass
class Commands:
    """The argv of every contender, for one rule set."""

    vigild: list[str]  # without the path to scan
    yara: list[str]  # without thread count, compiled rules and path
    compiled: str

    def vigild_scan(self, target: str, files: int, engine: str | None = None) -> Scan:
        """vigild on ``target``: the files it found, once it said it scanned all ``files``.

        Exit status 1 means "found" and also "uncaught Python exception", so
        the summary line is what tells a finished scan from a crash.
        """
        argv = [*self.vigild, *(["--engine", engine] if engine else []), target]

        def scan() -> frozenset[str]:
            out = _run(argv, ok=(0, 1))
            if _vigild_files(out.stdout) != files:
                _broken(argv, out, f"did not report {files} files scanned")
            return frozenset(_vigild_matches(out.stdout))

        return scan

    def yara_scan(self, target: str, threads: int) -> Scan:
        """yara on ``target``: the files it found; a failure if it reported an error."""
        argv = [*self.yara, "-p", str(threads), self.compiled, target]

        def scan() -> frozenset[str]:
            out = _run(argv)
            if "error" in out.stderr.lower():
                _broken(argv, out, "reported errors")
            return frozenset(_yara_matches(out.stdout))

        return scan


class _Skip(Exception):
    """This rule set cannot be compared; the message says why."""


def _prepare(rules: Rules, tmp: Path) -> tuple[Commands, str, str | None]:
    """Compile for every contender: commands, vigild's report, yara-x's error if any."""
    missing = [tool for tool in ("yara", "yarac") if shutil.which(tool) is None]
    if missing:
        raise _Skip(f"{' and '.join(missing)} not installed (Debian package: yara)")
    compiled = tmp / "rules.yarc"
    error = _yarac(rules, compiled)
    if error:
        raise _Skip(f"yarac {_yara_version()} cannot compile {rules.path}: {error}")
    vigild = VIGILD_BIN
    config = tmp / "vigild.toml"
    config.write_text(f'[rules]\ncompiled_dir = "{tmp / "compiled"}"\n')
    report = _vigild_compile(vigild, config, rules, "yara")  # failing here fails the test
    try:
        _vigild_compile(vigild, config, rules, "yara-x")
        yarax_error = None
    except RuntimeError as e:
        yarax_error = (str(e).splitlines() or ["failed"])[0]
    base = [vigild, "scan", "--config", str(config), "--compiled-dir", str(tmp / "compiled")]
    base += ["--no-progress"]
    base += ["--workers", str(WORKERS), "--rules", str(rules.path)]
    yara = ["yara", "-C", "-r", "-N", *(f"--define={n}=" for n in EXTERNALS)]
    return Commands(base, yara, str(compiled)), report, yarax_error


def _speed_row(
    section: str, who: str, ref: str, mbps: Callable[[str], float], goal: float | None, **kw: Any
) -> Row:
    ratio = mbps(who) / mbps(ref)
    return Row(
        section,
        f"{who} vs {ref}",
        Figure(mbps(who), "MB/s"),
        Figure(mbps(ref), "MB/s"),
        ratio,
        f">= {goal:.2f}x" if goal else "",
        verdict(ratio >= goal if goal else None),
        **kw,
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["default", "reversinglabs"])
def test_scan_vs_yara(
    benchmark: Any,
    summary: Summary,
    corpus: Corpus,
    repo: Path,
    tmp_path: Path,
    name: str,
) -> None:
    section = f"scan: {name} rules"
    rules = _rules(name, repo)
    try:
        if isinstance(rules, str):
            raise _Skip(rules)
        cmds, report, yarax_error = _prepare(rules, tmp_path)
    except _Skip as e:
        summary.skip(section, f"{VIGILD} vs {REFERENCE}", str(e))
        pytest.skip(str(e))

    target, empty = str(corpus.path), tmp_path / "empty"
    empty.mkdir()
    contenders = {
        VIGILD: cmds.vigild_scan(target, corpus.files),
        "yara -p 1": cmds.yara_scan(target, 1),
        REFERENCE: cmds.yara_scan(target, WORKERS),
        f"{VIGILD}, empty dir": cmds.vigild_scan(str(empty), 0),
        f"{REFERENCE}, empty dir": cmds.yara_scan(str(empty), WORKERS),
    }
    if yarax_error is None:
        contenders[YARAX] = cmds.vigild_scan(target, corpus.files, "yara-x")
        contenders[f"{YARAX}, empty dir"] = cmds.vigild_scan(str(empty), 0, "yara-x")
    contest = Contest(contenders).run(benchmark, rounds=ROUNDS)

    def mbps(who: str) -> float:
        return corpus.bytes / contest.best(who) / 1e6

    context = (
        f"{report}; corpus {corpus.files:,} files, {corpus.bytes / 1e6:.0f} MB "
        f"({corpus.describe()}); MB/s = corpus bytes / best of {ROUNDS} interleaved rounds "
        "of the whole command"
    )
    rows = [
        summary.add(
            _speed_row(
                section,
                VIGILD,
                REFERENCE,
                mbps,
                TARGETS[name],
                note=context,
                extra={"times": contest.stats(), "rules": str(rules.path)},
            )
        ),
        summary.add(_speed_row(section, VIGILD, "yara -p 1", mbps, None)),
    ]
    if yarax_error is None:
        rows.append(summary.add(_speed_row(section, YARAX, REFERENCE, mbps, None)))
    else:
        summary.skip(section, YARAX, f"yara-x cannot compile these rules: {yarax_error}")
    for who in (VIGILD, YARAX) if yarax_error is None else (VIGILD,):
        ours, ref = contest.best(f"{who}, empty dir"), contest.best(f"{REFERENCE}, empty dir")
        summary.add(
            Row(
                section,
                f"start-up + rules load: {who} vs yara",
                Figure(ours * 1e3, "ms"),
                Figure(ref * 1e3, "ms"),
                ref / ours,
                "",
                verdict(None),
            )
        )
    rows += _agreement(summary, section, contest, yarax_error is None, rules)
    check_targets(rows)


_EXTERNAL_USE = re.compile(rb"\b(?:%s)\b" % "|".join(EXTERNALS).encode())


def _uses_externals(rules: Rules) -> bool:
    """Do the sources mention filename/filepath/...? (comments count too: a hint only)."""
    return any(_EXTERNAL_USE.search(f.read_bytes()) for f in rules.files)


def _agreement(
    summary: Summary,
    section: str,
    contest: Contest,
    with_yarax: bool,
    rules: Rules,
) -> list[Row]:
    """Rows saying whether each vigild engine found exactly the files yara found.

    ``Contest.result`` also checks that each contender found the same files
    in every round.
    """
    found_ref = contest.result(REFERENCE)
    assert contest.result("yara -p 1") == found_ref, "yara -p 1 and -p 2 differ"
    hint = (
        "; the rules mention external variables, which vigild sets per file and the yara CLI "
        "leaves empty: a difference may come from that"
        if _uses_externals(rules)
        else ""
    )
    rows = []
    for who in (VIGILD, YARAX) if with_yarax else (VIGILD,):
        found = contest.result(who)
        diff = _diff(found, found_ref)
        rows.append(
            summary.add(
                Row(
                    section,
                    f"files found: {who} vs yara",
                    Figure(len(found), "files"),
                    Figure(len(found_ref), "files"),
                    None,
                    "same set",
                    verdict(found == found_ref),
                    note=diff + hint if diff else "",
                )
            )
        )
    return rows


def _yara_version() -> str:
    res = subprocess.run(["yara", "--version"], capture_output=True, text=True, check=False)
    return res.stdout.strip()
