"""Load is not a bypass: big files cannot hold every worker, reloads deny no clean file.

Regression for issue 9 (3). On the default configuration an unprivileged user
opened two 1 TB sparse files, which kept both workers busy hashing, and the
malicious file opened next was allowed at the 5 s deadline.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from onaccess_harness import DEFAULT_RULES, PEEK, PYTHON, Namespace, OnAccess, needs_fanotify
from support import VIGILD, eicar

pytestmark = [needs_fanotify, pytest.mark.root]

TIB = 1 << 40


# 8 openers read every file of a tree, each in its own order, pass after pass until
# the stop file appears (looked up with stat: no open); print what was refused
OPENERS = """
import errno, os, sys, threading
tree, stop = sys.argv[1], sys.argv[2]
names = sorted(os.listdir(tree))
refused, passes = [], [0] * 8
def run(k):
    while not os.path.exists(stop):
        for n in names[k::8] + names[:k:8]:
            try:
                open(os.path.join(tree, n), "rb").read()
            except OSError as e:
                refused.append((n, errno.errorcode[e.errno]))
        passes[k] += 1
threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(refused), min(passes), refused[:5])
"""


def test_two_terabyte_files_do_not_buy_a_pass_for_a_malicious_one(
    ns: Namespace, daemon: OnAccess
) -> None:
    for i in range(2):
        ns.sh(f"truncate -s {TIB} {ns.mnt}/huge{i}.bin")
    evil = ns.mnt / "evil.com"
    r = ns.py(
        "import sys; open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))",
        str(evil),
        eicar().hex(),
    )
    assert r.returncode == 0, r.stderr
    daemon.start([DEFAULT_RULES])  # the default configuration: two workers on this machine
    hogs = [
        ns.popen(PYTHON, "-c", PEEK, f"{ns.mnt}/huge{i}.bin", stdout=subprocess.PIPE)
        for i in range(2)
    ]
    try:
        daemon.wait_for(
            lambda: daemon.events()["queued"] >= 2, timeout=10, what="both big opens queued"
        )
        t0 = time.monotonic()
        assert daemon.read(evil, timeout=30) == "EPERM"  # by a scan, not by the deadline
        assert time.monotonic() - t0 < 4
    finally:
        for h in hogs:
            try:
                h.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                h.kill()
                h.wait(10)


def test_eight_openers_during_twenty_reloads_never_see_a_clean_file_denied(
    ns: Namespace, daemon: OnAccess
) -> None:
    tree = ns.mnt / "tree"
    ns.sh(
        f"mkdir {tree} && cd {tree} && for i in $(seq 0 1999); do "
        f"printf 'clean file %d\\n' $i > f$i; done"
    )
    daemon.start([DEFAULT_RULES], extra="[onaccess]\nignore_marks = false\n")
    stop = ns.mnt / "stop"
    openers = ns.popen(PYTHON, "-c", OPENERS, str(tree), str(stop), stdout=subprocess.PIPE)
    try:
        for i in range(20):  # each reload a new generation: every verdict is made again
            timeout = ("deny", "allow")[i % 2]  # in the generation
            daemon.write_config(
                f'[onaccess]\nignore_marks = false\n[policy]\non_timeout = "{timeout}"\n'
            )
            r = subprocess.run(
                [VIGILD, "rules", "reload", "--config", str(daemon.config)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
        ns.sh(f"touch {stop}")
        out, _ = openers.communicate(timeout=120)
    finally:
        if openers.poll() is None:
            openers.kill()
            openers.wait(10)
    refused, passes, _ = out.split(" ", 2)
    assert refused == "0", out
    assert int(passes) >= 1, out  # every opener made at least one whole pass meanwhile
    ev = daemon.events()
    assert ev["answered_deny"] == 0 and ev["cache_deny"] == 0, ev
