"""What a file's verdict costs in this very process: its bytes read and hashed
(the C prefilter, as the daemon's workers call it) and the rules run over
them, nothing else (no fanotify, no thread hop, no Python job).

Issue 12's bound for a scanned open: vigild's added latency per scanned small
file, at p50, within the floor listener's added latency plus 1.2x this time
for that file; the same for the EPERM of a fresh 68-byte EICAR.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from vigild import config as vconfig
from vigild import native, snapshot

SMALL = 64 * 1024  # a "small file" of the bound: one read, one scan


def hash_and_rules_us(config: Path, rules: Path, paths: list[Path], rounds: int = 3) -> list[float]:
    """Microseconds per file (the best of ``rounds``, caches warm) to read and
    hash it and run ``rules`` (compiled as ``config`` says, as ``vigild run
    --rules`` loads them) over its bytes."""
    cfg = vconfig.load(config)
    cfg = replace(cfg, rules=replace(cfg.rules, dirs=(str(rules),), local_dirs=()))
    snap = snapshot.build(cfg, None)
    rs, det = snap.rules, snap.detector
    buf, limit, tail = det._buffer(), snap.config.scan.max_file_size, det._tail
    best = [float("inf")] * len(paths)
    for _ in range(rounds):
        for i, path in enumerate(paths):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                t0 = time.perf_counter_ns()
                pre = native.prefilter_fd(rs.hashdb, None, rs.generation, fd, buf, limit, tail)
                if rs.rules is not None:
                    with memoryview(buf)[: pre.head_len] as view:
                        rs.rules.match(view, rs.defaults)
                took = (time.perf_counter_ns() - t0) / 1e3
            finally:
                os.close(fd)
            best[i] = min(best[i], took)
    return best
