"""``vigild scan`` against the ``yara`` command line: same rules, same corpus, one run.

Contenders, each a fresh process timed end to end with ``time.perf_counter``
(start-up and loading precompiled rules included, rule compilation not):

* ``vigild scan --no-progress --no-cache --workers 2 --engine yara``
  (yara-python forced; 2 is also the default on this 2-CPU machine, and
  keeps the match with ``-p 2`` fair on bigger ones);
* the same with ``--engine auto`` (issue 12: the fastest engine that agrees
  with yara-python on the rule samples and this corpus, decided once at
  ``vigild rules compile``) and with ``--engine yara-x``;
* ``vigild scan`` with its clean cache, twice in a row from an empty cache:
  the second scan of the unchanged corpus against the first (target 10x);
* ``yara -C -r -N -p 1`` and ``-p 2`` on rules precompiled with ``yarac``;
* vigild and ``yara -p 2`` on an empty directory: start-up and rules load
  alone, so the reader can tell fixed cost from per-byte cost.

Where a rule set has a yara-forced target, one more row gives its floor:
the CPU time yara-python alone takes, in this process, to read and match
every corpus file (``_yara_python_cpu``), against ``yara -p 1``'s.

vigild keeps its compiled rules in a scratch ``compiled_dir`` (set by a
config file, and given to ``vigild scan --compiled-dir``, which otherwise
keeps its own) and fills it with ``vigild rules compile`` before timing; each
rule file gets its own namespace on both sides, as vigild does. The
corpus is in the page cache. Throughput is corpus bytes over the best of
three rounds; the rounds interleave all contenders. CPU is user + system
time of the command and every process it waited for (getrusage of the
children), best of the rounds.

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
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from bench_corpus import Corpus
from bench_report import Figure, Row, Summary, check_targets, verdict
from bench_timing import ROUNDS, Contest, Timed
from support import VIGILD as VIGILD_BIN
from vigild import ruleset, scancache
from vigild.scanner import EXTERNALS, RuleError

WORKERS = 2
REFERENCE = f"yara -p {WORKERS}"
VIGILD = "vigild scan"  # yara-python forced
AUTO = "vigild scan --engine auto"
YARAX = "vigild --engine yara-x"
CACHED = "vigild scan, clean cache"
# Per rule set and contender: (wall time at most this x yara -p 2's, CPU time at
# most this x yara -p 1's); None: report only (issue 12).
TARGETS: dict[str, dict[str, tuple[float, float]]] = {
    "default": {},
    "reversinglabs": {VIGILD: (0.9, 1.0), AUTO: (0.5, 0.5)},
}
CACHE_SPEEDUP = 10.0  # a second scan of an unchanged tree, x faster than the first
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


def _with_cpu(fn: Callable[[], Any], into: list[float]) -> Callable[[], Any]:
    """``fn``, also recording the CPU seconds of the processes it ran and waited for."""

    def run() -> Any:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = fn()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        into.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return result

    return run


def _twice(
    cmds: Commands, target: str, files: int, compiled: Path, seconds: list[float]
) -> Callable[[], Timed]:
    """From an empty clean cache: the first scan, timed, then the second (into ``seconds``)."""
    scan = cmds.vigild_scan(target, files, "auto", cache=True)

    def run() -> Timed:
        (compiled / scancache.NAME).unlink(missing_ok=True)
        t0 = time.perf_counter()
        first = scan()
        t1 = time.perf_counter()
        second = scan()
        seconds.append(time.perf_counter() - t1)
        return Timed(t1 - t0, (first, second))

    return run


def _target_rows(
    summary: Summary,
    section: str,
    contest: Contest,
    cpu: dict[str, list[float]],
    targets: dict[str, tuple[float, float]],
) -> list[Row]:
    """Wall time vs yara -p 2 and CPU vs yara -p 1, each a ratio of times with its target."""
    rows = []
    for who in (VIGILD, AUTO):
        wall_max, cpu_max = targets.get(who, (None, None))
        for what, ours, ref, goal in (
            ("wall", contest.best(who), contest.best(REFERENCE), wall_max),
            ("CPU", min(cpu[who]), min(cpu["yara -p 1"]), cpu_max),
        ):
            against = REFERENCE if what == "wall" else "yara -p 1"
            rows.append(
                summary.add(
                    Row(
                        section,
                        f"{what} time: {who} vs {against}",
                        Figure(ours, "s"),
                        Figure(ref, "s"),
                        ref / ours,
                        f"time <= {goal:.2f}x" if goal else "",
                        verdict(ours <= goal * ref if goal else None),
                        note=f"{who} took {ours / ref:.2f}x {against}'s {what} time",
                    )
                )
            )
    return rows


def _yara_python_cpu(rules: Rules, corpus: Path, rounds: int = 2) -> float:
    """CPU seconds (best of ``rounds``) for yara-python alone, in this process, to
    match ``rules`` against every regular file of ``corpus``: read, match, nothing
    else. ``vigild scan`` with yara forced does this and more (hashes, archive
    members), so its CPU cannot go below this."""
    import yara  # the reference engine, a dependency of vigild

    externals: dict[str, str | int] = dict.fromkeys(EXTERNALS, "")
    compiled = yara.compile(
        filepaths={str(i): str(f) for i, f in enumerate(rules.files)}, externals=externals
    )
    files = [
        os.path.join(d, n)
        for d, _, names in os.walk(corpus)
        for n in names
        if os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n))
    ]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for path in files:
            with open(path, "rb") as f:
                compiled.match(data=f.read())
        best = min(best, time.process_time() - t0)
    return best


def _floor_row(section: str, seconds: float, cpu: dict[str, list[float]]) -> Row:
    ref = min(cpu["yara -p 1"])
    return Row(
        section,
        "CPU time: yara-python alone, one process (floor under the yara-forced row)",
        Figure(seconds, "s"),
        Figure(ref, "s"),
        ref / seconds,
        "",
        verdict(None),
        note=f"matching every corpus file in yara-python takes {seconds / ref:.2f}x yara -p 1's "
        "CPU time; a yara-forced CPU target below that cannot be met by a vigild that "
        "scans with yara-python",
    )


def _cache_row(section: str, contest: Contest, seconds: list[float]) -> Row:
    first, second = min(contest.times[CACHED]), min(seconds)
    return Row(
        section,
        f"{CACHED}: second scan of the unchanged corpus vs the first",
        Figure(second, "s"),
        Figure(first, "s"),
        first / second,
        f">= {CACHE_SPEEDUP:.0f}x",
        verdict(first >= CACHE_SPEEDUP * second),
        note="engine auto; the cache emptied before each first scan; best of the rounds",
    )


def _vigild_compile(vigild: str, config: Path, rules: Rules, engine: str, line: int = 0) -> str:
    """Fill the compiled dir for ``engine``; vigild's report line ``line``, or a failure."""
    argv = [vigild, "rules", "compile", "--config", str(config), "--rules", str(rules.path)]
    res = subprocess.run(
        [*argv, "--engine", engine],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip() or res.stdout.strip())
    return res.stdout.splitlines()[line]


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

    def vigild_scan(
        self, target: str, files: int, engine: str | None = None, cache: bool = False
    ) -> Scan:
        """vigild on ``target``: the files it found, once it said it scanned all ``files``.

        Exit status 1 means "found" and also "uncaught Python exception", so
        the summary line is what tells a finished scan from a crash.
        """
        argv = [*self.vigild, *(["--engine", engine] if engine else []), target]
        if not cache:
            argv.insert(-1, "--no-cache")

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


def _prepare(rules: Rules, tmp: Path, corpus: Path) -> tuple[Commands, str, str | None, str]:
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
    evidence = [str(corpus), str(Path(__file__).parents[1] / "tests" / "rules" / "samples")]
    config.write_text(
        f'[rules]\ncompiled_dir = "{tmp / "compiled"}"\nengine_evidence = {evidence!r}\n'.replace(
            "'", '"'
        )
    )
    report = _vigild_compile(vigild, config, rules, "yara")  # failing here fails the test
    pick = _vigild_compile(vigild, config, rules, "auto", line=1)
    try:
        _vigild_compile(vigild, config, rules, "yara-x")
        yarax_error = None
    except RuntimeError as e:
        yarax_error = (str(e).splitlines() or ["failed"])[0]
    base = [vigild, "scan", "--config", str(config), "--compiled-dir", str(tmp / "compiled")]
    base += ["--no-progress"]
    base += ["--workers", str(WORKERS), "--rules", str(rules.path)]
    yara = ["yara", "-C", "-r", "-N", *(f"--define={n}=" for n in EXTERNALS)]
    return Commands(base, yara, str(compiled)), report, yarax_error, pick


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
        cmds, report, yarax_error, pick = _prepare(rules, tmp_path, corpus.path)
    except _Skip as e:
        summary.skip(section, f"{VIGILD} vs {REFERENCE}", str(e))
        pytest.skip(str(e))

    target, empty = str(corpus.path), tmp_path / "empty"
    empty.mkdir()
    cpu: dict[str, list[float]] = {}
    second_scans: list[float] = []
    contenders = {
        VIGILD: cmds.vigild_scan(target, corpus.files, "yara"),
        AUTO: cmds.vigild_scan(target, corpus.files, "auto"),
        CACHED: _twice(cmds, target, corpus.files, tmp_path / "compiled", second_scans),
        "yara -p 1": cmds.yara_scan(target, 1),
        REFERENCE: cmds.yara_scan(target, WORKERS),
        f"{VIGILD}, empty dir": cmds.vigild_scan(str(empty), 0),
        f"{REFERENCE}, empty dir": cmds.yara_scan(str(empty), WORKERS),
    }
    if yarax_error is None:
        contenders[YARAX] = cmds.vigild_scan(target, corpus.files, "yara-x")
        contenders[f"{YARAX}, empty dir"] = cmds.vigild_scan(str(empty), 0, "yara-x")
    contenders = {n: _with_cpu(fn, cpu.setdefault(n, [])) for n, fn in contenders.items()}
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
                None,  # the targets are the time rows below
                note=context,
                extra={"times": contest.stats(), "rules": str(rules.path)},
            )
        ),
        summary.add(_speed_row(section, VIGILD, "yara -p 1", mbps, None)),
        summary.add(_speed_row(section, AUTO, REFERENCE, mbps, None, note=pick)),
    ]
    rows += _target_rows(summary, section, contest, cpu, TARGETS[name])
    if VIGILD in TARGETS[name]:
        floor = _yara_python_cpu(rules, corpus.path)
        summary.add(_floor_row(section, floor, cpu))
    rows.append(summary.add(_cache_row(section, contest, second_scans)))
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
    cached = contest.result(CACHED)
    rows.append(
        summary.add(
            Row(
                section,
                f"files found: {CACHED}, second scan vs first",
                Figure(len(cached[1]), "files"),
                Figure(len(cached[0]), "files"),
                None,
                "same set",
                verdict(cached[0] == cached[1] == contest.result(VIGILD)),
            )
        )
    )
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
    for who in (VIGILD, AUTO, YARAX) if with_yarax else (VIGILD, AUTO):
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
