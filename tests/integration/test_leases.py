"""A file lease held by a user must not hold the daemon (found by review).

The kernel opens each event's file for the reader inside its read(). That
open breaks leases like any other: against a write lease (which any owner
may put on their own file, F_SETLEASE F_WRLCK) it waited for the lease
holder, up to fs.lease-break-time (45 s), and no event of the filesystem was
read meanwhile, so every open and exec on it waited too. The event fds are
now opened non-blocking: the kernel then denies that one open (EPERM) and
the reader goes on.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from onaccess_harness import PYTHON, TEST_RULES, Namespace, OnAccess, needs_fanotify

pytestmark = [needs_fanotify, pytest.mark.root]

# As nobody, owner of the file (open first: nobody cannot reach pytest's
# directory): hold a write lease on it, ignore the break notice, keep it. A
# write lease is refused while anyone else has the file open, the daemon too.
HOLDER = """
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDWR)
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
for _ in range(500):  # refused while the daemon still holds its fd of our open's event
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        break
    except BlockingIOError:
        time.sleep(0.01)
else:
    sys.exit("no write lease")
print("held", flush=True)
time.sleep(60)
"""


def test_a_users_write_lease_holds_no_open_of_another_file(ns: Namespace, daemon: OnAccess) -> None:
    leased, other = ns.mnt / "leased", ns.mnt / "other.txt"
    ns.sh(
        f"printf 'mine\\n' > {leased} && chown 65534:65534 {leased} && printf 'plain\\n' > {other}"
    )
    time.sleep(0.05)
    daemon.start([TEST_RULES])
    holder = ns.popen(PYTHON, "-c", HOLDER, str(leased), stdout=subprocess.PIPE)
    opener = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # someone opens the leased file: its event is the one the reader must not wait on
        opener = ns.popen(PYTHON, "-c", f"open({str(leased)!r}).read()", stderr=subprocess.PIPE)
        time.sleep(0.5)
        start = time.monotonic()
        assert daemon.read(other, timeout=30) == "ok 6"
        took = time.monotonic() - start
        assert took < 5, f"an open of another file waited {took:.1f} s on a user's lease"
        assert opener.wait(10) != 0  # denied, not held until the lease is given up
        assert opener.stderr is not None and "Operation not permitted" in opener.stderr.read()
        assert daemon.events()["unopened"] >= 1  # counted, and alerted as lost work
    finally:
        for p in (holder, opener):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
