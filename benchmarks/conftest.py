"""vigild's benchmark suites: run with ``make bench`` (never part of ``make test``).

Each suite times vigild next to a reference on the same input in the same
run (``bench_timing.Contest``) and adds rows to one session-wide table
(``bench_report.Summary``), printed at the very end of the run and written
to ``.benchmarks/summary.json``. Scratch files go to pytest's temporary
directory, the scan corpus to ``/var/tmp/vigild-bench-corpus`` (see
``bench_corpus``); in the checkout, only the byte-compiled modules of
``daemon/vigild`` (in ``__pycache__``, ignored by git, as ``make test``
leaves them).

Every ``vigild`` the benchmarks start runs from byte-compiled modules, as an
installed package does (dh_python3 and the .rpm compile them at install).
``make bench`` sets PYTHONDONTWRITEBYTECODE, and so may the environment: without
this step, a fresh clone would compile vigild's sources again at every
command it times (13 ms more per ``vigild scan`` here).

A missed target shows FAIL in the table and fails its test too, so the
exit status of ``make bench`` says whether every target was met; set
``VIGILD_BENCH_REPORT_ONLY=1`` to print the table without failing.
"""

from __future__ import annotations

import compileall
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_clamav import Peer, Scratch, build_database, clamav_unavailable
from bench_corpus import Corpus, ensure_corpus, warm
from bench_report import Summary

REPO = Path(__file__).resolve().parents[1]
SUMMARY_FILE = REPO / ".benchmarks" / "summary.json"
_SUMMARY = pytest.StashKey[Summary]()


# The table reads best in this order: hashing, then the database, then scans,
# then on-access.
_ORDER = (
    "test_sha256.py",
    "test_hashdb.py",
    "test_scan.py",
    "test_archives.py",
    "test_onaccess.py",
    "test_workload.py",
)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SUMMARY] = Summary()
    _byte_compile(REPO / "daemon" / "vigild")


def _byte_compile(package: Path) -> None:
    """Byte-compile ``package`` where its imports look (what is current is kept)."""
    if not compileall.compile_dir(package, quiet=1):
        raise pytest.UsageError(f"cannot byte-compile {package}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return _ORDER.index(name) if name in _ORDER else len(_ORDER)

    items.sort(key=rank)  # stable: tests keep their order inside a module


@pytest.fixture(scope="session")
def summary(pytestconfig: pytest.Config) -> Summary:
    return pytestconfig.stash[_SUMMARY]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def corpus(summary: Summary) -> Corpus:
    """The cached scan corpus, read once so every scan finds it in the page cache."""
    c = ensure_corpus()
    warm(c)
    summary.context["corpus"] = {"path": str(c.path), **c.manifest}
    return c


@pytest.fixture(scope="session")
def clamav(repo: Path) -> Iterator[Peer | str]:
    """ClamAV's on-access peer with a database of the shipped rules, or why it cannot run."""
    why = clamav_unavailable()
    if why:
        yield why
        return
    scratch = Scratch()
    try:
        yield Peer(scratch, build_database(repo / "rules", scratch))
    finally:
        scratch.close()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the table after everything else, and save it as JSON."""
    summary = terminalreporter.config.stash.get(_SUMMARY, None)
    if summary is None or not summary.rows:
        return
    terminalreporter.section("vigild benchmarks: ratios measured side by side in this run")
    for line in summary.lines():
        terminalreporter.write_line(line)
    summary.write_json(SUMMARY_FILE)
    terminalreporter.write_line(f"saved to {SUMMARY_FILE.relative_to(REPO)}")
