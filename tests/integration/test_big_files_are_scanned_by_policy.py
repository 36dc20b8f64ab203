"""Files over max_file_size: the head (and tail) is scanned, and it costs the limit, not the size.

Regression for issue 9 (2). On the default configuration EICAR at offset 0 of
a 65 MiB file was allowed (oversize = "skip"), and a file over the limit was
still hashed whole: a 1 TB sparse file kept a worker busy for minutes.
"""

from __future__ import annotations

import time

import pytest

from onaccess_harness import DEFAULT_RULES, PEEK, Namespace, OnAccess, needs_fanotify
from support import eicar

pytestmark = [needs_fanotify, pytest.mark.root]

MIB, TIB = 1 << 20, 1 << 40


def _sparse(ns: Namespace, name: str, size: int, at: int, data: bytes) -> str:
    path = str(ns.mnt / name)
    r = ns.py(
        "import sys\nf = open(sys.argv[1], 'wb'); f.truncate(int(sys.argv[2]))\n"
        "f.seek(int(sys.argv[3])); f.write(bytes.fromhex(sys.argv[4])); f.close()",
        path, str(size), str(at), data.hex(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return path


def _peek(ns: Namespace, path: str) -> tuple[str, float]:
    t0 = time.monotonic()
    r = ns.py(PEEK, path, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), time.monotonic() - t0


def test_eicar_at_the_head_of_a_65_mib_file_is_denied_by_default(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = _sparse(ns, "big-head.bin", 65 * MIB, 0, eicar())
    daemon.start([DEFAULT_RULES])
    assert _peek(ns, path)[0] == "EPERM"


def test_eicar_at_the_end_of_a_1_tb_sparse_file_is_denied_at_once_by_default(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = _sparse(ns, "big-tail.bin", TIB, TIB - 4096, eicar())
    daemon.start([DEFAULT_RULES])
    answer, took = _peek(ns, path)
    assert answer == "EPERM"
    assert took < 4, took  # the head and tail, not a terabyte (nor the 5 s deadline)


def test_a_1_tb_file_with_oversize_skip_is_answered_without_reading_it(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = _sparse(ns, "big-skip.bin", TIB, 0, eicar())
    daemon.start([DEFAULT_RULES], extra='[scan]\noversize = "skip"\n')
    answer, took = _peek(ns, path)
    assert answer == "ok 16"  # policy.on_oversize = "allow": documented, and fast
    assert took < 2, took
    assert daemon.events()["deadline_passed"] == 0
