"""What checking interpreters' opens costs: a cold ``python3 -c 'import email, email.message, email.parser'``.

Marking ``/`` is unsafe here, so the stdlib (``/usr/lib/python3.X``, ~54 MB)
is copied to a tmpfs in a private mount namespace and Debian's
``/usr/bin/python3`` runs on it (``PYTHONHOME``; ``-B -S``: no bytecode
writes, no site). vigild watches only ``<tmpfs>/watched``: every stdlib
file python opens lies outside the watch, so it is scanned only because
its opener is an interpreter. Contenders, interleaved, ``ROUNDS`` each:

* **no scanner**: nothing marks the tmpfs;
* **vigild, interpreters = []**: the tmpfs marked, opens outside the watch
  answered at once (the old behaviour);
* **vigild** (default interpreters): a fresh daemon each round (empty
  caches): the first import scans every file python opens (cold), the
  second is answered by ignore marks and the verdict cache (warm).

Times are the whole ``python3`` run, from outside the namespace (nsenter
included, the same for all). Also measured: the reader's extra work on
every open outside the watch, one ``stat("/proc/PID/exe")``, in C.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench_namespace import PrivateTmpfs, fanotify_unavailable, stop
from bench_report import Figure, Row, Summary, verdict
from support import VIGILD

ROUNDS = 5
IMPORT = "import email, email.message, email.parser"  # ~40 stdlib files; email alone opens 4
SECTION = f"interpreters: cold python3 -c '{IMPORT}', stdlib on a marked tmpfs"
STAT_LOOPS = 200_000
STAT_C = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
static double per_stat(const char *path, int n)
{
	struct timespec a, b; struct stat st;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) stat(path, &st);
	clock_gettime(CLOCK_MONOTONIC, &b);
	return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
}
int main(int argc, char **argv)
{
	int n = 200000;
	(void)argc;
	printf("%.1f %.1f\n", per_stat(argv[1], n), per_stat(argv[2], n));
	return 0;
}
"""


class Daemon:
    """``vigild run`` in the namespace, watching only ``<tmpfs>/watched``."""

    def __init__(self, ns: PrivateTmpfs, where: Path, extra: str = "") -> None:
        where.mkdir(parents=True)
        self.ns, self.runtime, self.log = ns, where / "run", where / "daemon.log"
        self.config = where / "vigild.toml"
        self.config.write_text(
            f'[rules]\ncompiled_dir = "{where / "compiled"}"\nlocal_dirs = []\n'
            f'[daemon]\nstate_dir = "{where}"\nruntime_dir = "{self.runtime}"\n'
            f'quarantine_dir = "{where / "q"}"\n[onaccess]\nevents = ["open", "exec"]\n'
            f"quarantine_on = []\n{extra}"
        )
        rules = Path(__file__).resolve().parents[1] / "tests" / "data" / "rules"
        argv = [VIGILD, "run", "--config", str(self.config)]
        argv += ["--watch", str(ns.mnt / "watched"), "--rules", str(rules)]
        with self.log.open("w") as log:
            self.proc = ns.popen(argv, stdout=log, stderr=log)

    def ready(self) -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log.read_text()
            if self.status() is not None:
                return
            time.sleep(0.05)
        pytest.fail(f"vigild not ready: {self.log.read_text()[-2000:]}")

    def status(self) -> dict[str, Any] | None:
        r = subprocess.run(
            [VIGILD, "status", "--json", "--config", str(self.config)],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        if r.returncode != 0:
            return None
        import json

        result: dict[str, Any] = json.loads(r.stdout)
        return result


@pytest.fixture
def ns(tmp_path: Path, summary: Summary) -> Iterator[PrivateTmpfs]:
    why = fanotify_unavailable()
    if why:
        summary.skip(SECTION, "cold import email", why)
        pytest.skip(why)
    n = PrivateTmpfs(tmp_path, size="512m")
    try:
        yield n
    finally:
        n.close()


def _import(ns: PrivateTmpfs) -> float:
    """Seconds for one ``python3 -c IMPORT`` on the tmpfs stdlib."""
    argv = ["env", f"PYTHONHOME={ns.mnt}", "/usr/bin/python3", "-B", "-S", "-c", IMPORT]
    start = time.perf_counter()
    ns.run(argv)
    return time.perf_counter() - start


def _vigild(ns: PrivateTmpfs, where: Path, extra: str = "") -> tuple[float, float, dict[str, Any]]:
    """A fresh daemon: a cold import, then a warm one; and its event counters."""
    d = Daemon(ns, where, extra)
    try:
        d.ready()
        cold, warm = _import(ns), _import(ns)
        st = d.status()
        assert st is not None
        return cold, warm, st["events"]
    finally:
        assert stop(d.proc) == 0, d.log.read_text()[-2000:]


@pytest.mark.timeout(600)
def test_interpreter_opens(summary: Summary, ns: PrivateTmpfs, tmp_path: Path) -> None:
    stdlib = Path(sysconfig.get_path("stdlib", vars={"installed_base": "/usr"}))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    real = Path("/usr/lib") / version if (Path("/usr/lib") / version).is_dir() else stdlib
    ns.run(["mkdir", "-p", str(ns.mnt / "lib"), str(ns.mnt / "watched")])
    ns.run(["cp", "-a", str(real), str(ns.mnt / "lib" / real.name)], timeout=120)
    _import(ns)  # warm the page cache and dentries
    base, off, cold, warm = [], [], [], []
    events: dict[str, Any] = {}
    for r in range(ROUNDS):
        base.append(_import(ns))
        off.append(_vigild(ns, tmp_path / f"off-{r}", "interpreters = []\n")[0])
        c, w, events = _vigild(ns, tmp_path / f"on-{r}")
        cold.append(c)
        warm.append(w)
    med = statistics.median
    b = med(base)
    note = (
        f"{ROUNDS} rounds, medians; last cold import: {events['interp_opens']} opens by an "
        f"interpreter scanned as execs, {events['queued']} scans in all"
    )
    for what, times in (
        ("cold import, interpreters = [] (not checked)", off),
        ("cold import, default interpreters (every file scanned)", cold),
        ("warm import, default interpreters (caches)", warm),
    ):
        summary.add(
            Row(SECTION, what, Figure(med(times) * 1e3, "ms"), Figure(b * 1e3, "ms", "no scanner"),
                b / med(times), "", verdict(None), note=note if "every" in what else "")
        )  # fmt: skip
    _stat_row(summary, tmp_path)
    assert events["interp_opens"] > 0


def _stat_row(summary: Summary, tmp: Path) -> None:
    """The reader's cost per open outside the watch: stat of /proc/PID/exe vs of a file."""
    src, exe = tmp / "statcost.c", tmp / "statcost"
    src.write_text(STAT_C)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True, timeout=60)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        out = subprocess.run(
            [str(exe), f"/proc/{sleeper.pid}/exe", str(src)],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()  # fmt: skip
    finally:
        sleeper.kill()
        sleeper.wait(10)
    proc_ns, file_ns = float(out[0]), float(out[1])
    summary.add(
        Row(SECTION, "reader: stat(/proc/PID/exe) per open outside the watch",
            Figure(proc_ns / 1e3, "us"), Figure(file_ns / 1e3, "us", "stat of a file"),
            file_ns / proc_ns, "", verdict(None),
            note=f"mean of {STAT_LOOPS:,} stats in C")
    )  # fmt: skip
