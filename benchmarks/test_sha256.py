"""SHA-256 in C (``vigild.native.hash_fd``) against Python's hashlib, same bytes.

The file is 256 MiB of random bytes, freshly written, so it sits in the
page cache: the C side pays for pread copies from it, ``hashlib.sha256``
hashes the same bytes already in memory (the ceiling: no I/O at all), and
``hashlib.file_digest`` reads the file as the C side does.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench_report import Figure, Row, Summary, check_targets, verdict
from bench_timing import Contest
from vigild import native

SIZE = 256 << 20
ROUNDS = 5
MIN_RATIO = 0.95
SECTION = "SHA-256, 256 MiB in page cache, one thread"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("sha256") / "random.bin"
    rng = random.Random(256)
    with path.open("wb") as f:
        for _ in range(SIZE >> 24):
            f.write(rng.randbytes(1 << 24))
    yield path
    path.unlink()


@pytest.mark.timeout(300)
def test_sha256_native_vs_hashlib(benchmark: Any, summary: Summary, big_file: Path) -> None:
    data = big_file.read_bytes()
    fd = os.open(big_file, os.O_RDONLY)

    def file_digest() -> bytes:
        with big_file.open("rb") as f:
            return hashlib.file_digest(f, "sha256").digest()

    try:
        contest = Contest(
            {
                "vigild.native.hash_fd": lambda: native.hash_fd(fd)[0],
                "hashlib.sha256(bytes)": lambda: hashlib.sha256(data).digest(),
                "hashlib.file_digest": file_digest,
            }
        ).run(benchmark, rounds=ROUNDS)
    finally:
        os.close(fd)
    digests = {name: contest.result(name) for name in contest.contenders}
    assert len(set(digests.values())) == 1, f"digests differ: {digests}"

    def gbps(name: str) -> float:
        return SIZE / contest.best(name) / 1e9

    c = gbps("vigild.native.hash_fd")
    rows = []
    for ref in ("hashlib.sha256(bytes)", "hashlib.file_digest"):
        ratio = c / gbps(ref)
        rows.append(
            summary.add(
                Row(
                    SECTION,
                    f"C hash_fd vs {ref}",
                    Figure(c, "GB/s"),
                    Figure(gbps(ref), "GB/s"),
                    ratio,
                    f">= {MIN_RATIO:.2f}x",
                    verdict(ratio >= MIN_RATIO),
                    extra={"size": SIZE, "rounds": ROUNDS, "times": contest.stats()},
                )
            )
        )
    check_targets(rows)
