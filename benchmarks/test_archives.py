"""What looking inside archives costs ``vigild scan``: a tree of archives, unpacked or not.

A tree of 200 archives (zip deflated, tar.gz, zip stored, a jar inside a
zip), each holding 20 files of source-like text and random bytes (about
80 MB unpacked), is scanned by ``vigild scan`` with ``[archive] scan =
true`` and with it off, interleaved, best of three. The ratio is the price
of the members being scanned: it is reported, not targeted. Both runs must
find the same one planted EICAR when unpacking is on, and none when off.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

from archives import tar_of, zip_of
from bench_report import INFO, Figure, Row, Summary
from bench_timing import Contest
from support import REPO, VIGILD, eicar

SECTION = "scan: a tree of archives"
FILES_PER_ARCHIVE = 20


def _member(rng: random.Random, i: int) -> bytes:
    if i % 2:
        return rng.randbytes(8 << 10)
    return b"".join(b"def f%d(x):\n    return x * %d\n" % (j, j) for j in range(1200))


def _tree(root: Path) -> int:
    """200 archives under ``root``; the bytes they unpack to."""
    rng = random.Random(7)
    total = 0
    for n in range(200):
        files = {f"src/m{i}.py": _member(rng, i) for i in range(FILES_PER_ARCHIVE)}
        total += sum(len(v) for v in files.values())
        if n == 149:  # a tar.gz: found only by unpacking
            files["src/zz/eicar.txt"] = b"x" * 1000 + eicar()
        kind = n % 4
        if kind == 0:
            data, name = zip_of(files), f"a{n}.zip"
        elif kind == 1:
            data, name = tar_of(files, "gz"), f"a{n}.tar.gz"
        elif kind == 2:
            data, name = zip_of(files, deflate=False), f"a{n}.zip"
        else:
            data, name = zip_of({"lib/inner.jar": zip_of(files)}), f"a{n}.zip"
        (root / name).write_bytes(data)
    return total


def _scan(cfg: Path, root: Path) -> frozenset[str]:
    r = subprocess.run(
        [VIGILD, "scan", "--config", str(cfg), "--compiled-dir", str(cfg.parent / "compiled"),
         "--rules", str(REPO / "rules"), "--no-progress", str(root)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    return frozenset(
        line.split(": FOUND")[0] for line in r.stdout.splitlines() if ": FOUND" in line
    )


def test_archive_tree(benchmark: Any, summary: Summary, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    unpacked = _tree(root)
    packed = sum(p.stat().st_size for p in root.iterdir())
    cfgs = {}
    for mode in ("on", "off"):
        cfg = tmp_path / f"{mode}.toml"
        cfg.write_text(
            f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\nlocal_dirs = []\n'
            f"[archive]\nscan = {'true' if mode == 'on' else 'false'}\n"
        )
        cfgs[mode] = cfg
    _scan(cfgs["on"], root)  # compile the rules once, outside the timing
    contest = Contest({m: (lambda m=m: _scan(cfgs[m], root)) for m in cfgs}).run(benchmark)
    assert contest.result("on") == {str(root / "a149.tar.gz")}, contest.result("on")
    assert contest.result("off") == frozenset()
    on, off = contest.best("on"), contest.best("off")
    summary.add(
        Row(
            SECTION,
            "vigild scan, archives unpacked vs not",
            Figure(round(on * 1000), "ms"),
            Figure(round(off * 1000), "ms", "not unpacked"),
            off / on,
            "",
            INFO,
            note=(
                f"200 archives, {packed / 1e6:.1f} MB packed, {unpacked / 1e6:.1f} MB unpacked "
                f"({FILES_PER_ARCHIVE} members each; zip, tar.gz, stored zip, jar in a zip); "
                f"unpacked at {unpacked / 1e6 / max(on - off, 1e-9):.0f} MB/s of members; "
                f"best of 3 interleaved rounds; {os.cpu_count()} CPUs"
            ),
        )
    )
