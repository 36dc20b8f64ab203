"""The YARA engines side by side, and on access with the ReversingLabs rules (issue 12).

* In one process, on the benchmark corpus (read into memory first): the
  time each engine (yara-python, YARA-X, boreal) takes to scan every file
  with the same compiled rules, interleaved rounds, as a ratio of
  yara-python's; and boreal on two threads against one (it releases the
  GIL: the daemon's worker threads scan in parallel). Rules: the shipped
  set and the ReversingLabs set.
* On access: ``vigild run`` with all the ReversingLabs rules and
  ``engine = "auto"``, the first pass over the corpus on a watched tmpfs,
  as a multiple of the same pass without a scanner. clamonacc's figure is
  QUOTED from ANCHORS.md (test_onaccess.py), not measured here: the ratio
  row says so.

The fixtures and helpers are test_onaccess.py's (imported, not copied).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import test_onaccess
from bench_corpus import Corpus
from bench_report import Figure, Row, Summary, check_targets, verdict
from bench_timing import ROUNDS, Contest, Timed
from test_onaccess import NO_SCANNER, QUOTED, Bench, Daemon, Pass
from vigild import ruleset
from vigild.config import Engine
from vigild.scanner import CompiledRules, available, backend

# test_onaccess's fixtures, reused under their names
bench, tools = test_onaccess.bench, test_onaccess.tools

ENGINES = (Engine.YARA, Engine.YARA_X, Engine.BOREAL)
ONACCESS_RL_MAX = 0.15  # x clamonacc's time, pass 1 (clamonacc quoted)


def _rule_dirs(repo: Path) -> dict[str, Path]:
    return {
        "shipped": repo / "rules",
        "reversinglabs": repo.parent / "shared" / "corpus-rules" / "reversinglabs" / "yara",
    }


def _corpus_bytes(corpus: Corpus) -> list[bytes]:
    return [f.read_bytes() for f in sorted(corpus.path.rglob("*")) if f.is_file()]


def _compile(engine: Engine, rules: Path) -> CompiledRules:
    be = backend(engine, 60)
    files = ruleset.rule_files([str(rules)])
    c = ruleset.compile_sets(be, files, {})
    assert c.path_rules is None and c.rules is not None, "these sets read no path externals"
    return c.rules


def _scan_all(rules: CompiledRules, data: list[bytes], threads: int = 1) -> Callable[[], Any]:
    """Scan every buffer, on ``threads`` threads; the value: how many files matched."""
    values = ruleset.compile_values({})

    def one(chunk: list[bytes], out: list[int]) -> None:
        out.append(sum(1 for d in chunk if rules.match(d, values)))

    def run() -> int:
        out: list[int] = []
        workers = [
            threading.Thread(target=one, args=(data[i::threads], out)) for i in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(out)

    return run


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", ["shipped", "reversinglabs"])
def test_engines_in_one_process(
    benchmark: Any, summary: Summary, corpus: Corpus, repo: Path, name: str
) -> None:
    section = f"engines in one process: {name} rules, {corpus.bytes / 1e6:.0f} MB in memory"
    rules = _rule_dirs(repo)[name]
    if not rules.is_dir():
        summary.skip(section, "engines side by side", f"{rules} is absent")
        pytest.skip(f"{rules} is absent")
    missing = [e.value for e in ENGINES if not available(e)]
    for m in missing:
        summary.skip(section, f"{m} vs yara-python", f"{m} is not installed")
    data = _corpus_bytes(corpus)
    compiled = {e: _compile(e, rules) for e in ENGINES if available(e)}
    contenders: dict[str, Callable[[], Any]] = {
        e.value: _scan_all(r, data) for e, r in compiled.items()
    }
    if Engine.BOREAL in compiled:
        contenders["boreal, 2 threads"] = _scan_all(compiled[Engine.BOREAL], data, 2)
    contest = Contest(contenders).run(benchmark, rounds=ROUNDS)
    hits = {n: contest.result(n) for n in contenders}
    rows = [
        summary.add(
            Row(
                section,
                f"{who} vs yara-python",
                Figure(contest.best(who), "s", who),
                Figure(contest.best("yara"), "s", "yara-python"),
                contest.best("yara") / contest.best(who),
                "same hits",
                verdict(hits[who] == hits["yara"]),
                note=f"{who} took {contest.best(who) / contest.best('yara'):.2f}x yara-python's "
                f"time; {hits[who]} files matched ({hits['yara']} by yara-python); "
                f"best of {ROUNDS} interleaved rounds",
                extra={"times": contest.stats()},
            )
        )
        for who in contenders
        if who not in ("yara", "boreal, 2 threads")
    ]
    if "boreal, 2 threads" in contenders:
        one, two = contest.best("boreal"), contest.best("boreal, 2 threads")
        rows.append(
            summary.add(
                Row(
                    section,
                    "boreal: 2 threads vs 1 (the GIL released while it scans)",
                    Figure(two, "s", "2 threads"),
                    Figure(one, "s", "1 thread"),
                    one / two,
                    "",
                    verdict(None),
                    note=f"1 thread {one:.2f} s, 2 threads {two:.2f} s on this 2-CPU machine",
                )
            )
        )
    check_targets(rows)


def _first_pass(b: Bench, compiled: Path, rules: Path) -> Callable[[], Timed]:
    """A fresh daemon with engine = "auto": the first pass, timed by the opener."""

    def run() -> Timed:
        b.rounds += 1
        daemon = Daemon(b, compiled, rules, b.tmp / f"vigild-rl-{b.rounds}")
        _auto(daemon, b)
        try:
            daemon.start()
            first = b.open_all()
            status = daemon.status()
        finally:
            code = daemon.stop()
        assert code == 0, f"vigild exited {code} at SIGTERM: {daemon.log()}"
        return Timed(first.total_s, (first, status))

    return run


def _auto(daemon: Daemon, b: Bench) -> None:
    """engine = "auto", with the corpus as evidence, in the daemon's config."""
    text = daemon.config.read_text()
    evidence = f'engine = "auto"\nengine_evidence = ["{b.corpus.path}"]\n'
    daemon.config.write_text(text.replace("[rules]\n", "[rules]\n" + evidence, 1))


@pytest.mark.timeout(1800)
def test_onaccess_reversinglabs_auto(
    benchmark: Any,
    summary: Summary,
    bench: Bench,
    repo: Path,
) -> None:
    rules = _rule_dirs(repo)["reversinglabs"]
    section = f"on-access: ReversingLabs rules, engine auto, {bench.corpus.files:,} files"
    if not rules.is_dir():
        summary.skip(section, "pass 1 vs clamonacc (quoted)", f"{rules} is absent")
        pytest.skip(f"{rules} is absent")
    compiled = bench.tmp / "compiled-rl"
    compiler = Daemon(bench, compiled, rules, bench.tmp / "compile-rl")
    _auto(compiler, bench)
    started = time.monotonic()
    report = compiler.compile(rules)
    decided_s = time.monotonic() - started
    bench.open_all()  # warm-up
    contest = Contest(
        {
            NO_SCANNER: lambda: Timed((p := bench.open_all()).total_s, p),
            "vigild": _first_pass(bench, compiled, rules),
        }
    ).run(benchmark, rounds=ROUNDS)
    base: Pass = contest.results[NO_SCANNER][
        contest.times[NO_SCANNER].index(contest.best(NO_SCANNER))
    ]
    ours_x = contest.best("vigild") / base.total_s
    clam_x = QUOTED["clamonacc"][0]
    ratio = ours_x / clam_x
    status = contest.results["vigild"][0][1]["rules"]
    row = summary.add(
        Row(
            section,
            "pass 1: vigild (all ReversingLabs rules, auto) vs clamonacc QUOTED from ANCHORS.md",
            Figure(ours_x, "x no scanner", "vigild"),
            Figure(clam_x, "x no scanner", "clamonacc, quoted"),
            1 / ratio,
            f"time <= {ONACCESS_RL_MAX:.2f}x clamonacc's",
            verdict(ratio <= ONACCESS_RL_MAX),
            note=f"vigild took {ratio:.3f}x clamonacc's quoted time (clamonacc measured with the "
            f"147 rules it loads, on ANCHORS.md's corpus; not re-measured here); "
            f"vigild {contest.best('vigild'):.2f} s, no scanner {base.total_s:.3f} s; "
            f"{report}; {status.get('engine_why', '')}; rules compile + engine decision "
            f"{decided_s:.1f} s once",
            extra={"times": contest.stats()},
        )
    )
    check_targets([row])
