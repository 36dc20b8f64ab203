"""On-access blocking with real fanotify: what an opener sees, and what the daemon counted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from onaccess_harness import (
    DEFAULT_RULES,
    PYTHON,
    SLOW_RULES,
    TEST_RULES,
    Namespace,
    OnAccess,
    needs_fanotify,
)
from support import MARKER, VIGILD, eicar

pytestmark = [needs_fanotify, pytest.mark.root]

NO_CLOSE_WRITE = '[onaccess]\nevents = ["open", "exec"]\nquarantine_on = []\n'


def _put(ns: Namespace, path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file inside the namespace (before the daemon watches, or as a user would)."""
    r = ns.py(
        "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(sys.argv[3], 8));"
        "os.write(fd, bytes.fromhex(sys.argv[2])); os.close(fd)",
        str(path),
        data.hex(),
        oct(mode),
    )
    assert r.returncode == 0, r.stderr


def _age(ns: Namespace, *paths: Path) -> None:
    """Wait out the daemon's 20 ms freshness window for clean verdicts."""
    time.sleep(0.05)


def test_eicar_open_is_denied_with_eperm(ns: Namespace, daemon: OnAccess) -> None:
    eicar_path = ns.mnt / "eicar.com"
    _put(ns, eicar_path, eicar())
    _put(ns, ns.mnt / "clean.txt", b"just text\n")
    daemon.start([DEFAULT_RULES])
    assert daemon.read(eicar_path) == "EPERM"
    assert daemon.read(ns.mnt / "clean.txt") == "ok 10"
    r = ns.sh(f"cat {eicar_path}", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == f"cat: {eicar_path}: Operation not permitted"
    daemon.wait_for(lambda: "EICAR" in daemon.log(), what="the detection alert")


def test_malicious_script_cannot_run(ns: Namespace, daemon: OnAccess) -> None:
    script = ns.mnt / "dropper.sh"
    _put(ns, script, b"#!/bin/sh\n# " + MARKER + b"\necho ran\n", 0o755)
    good = ns.mnt / "good.sh"
    _put(ns, good, b"#!/bin/sh\necho fine\n", 0o755)
    daemon.start([TEST_RULES])
    r = ns.sh(str(script), check=False)
    assert r.returncode == 126, r
    assert "Operation not permitted" in r.stderr
    assert "ran" not in r.stdout
    r = ns.sh(str(good))
    assert r.stdout == "fine\n"


def test_clean_files_open_in_parallel_from_several_processes(
    ns: Namespace, daemon: OnAccess
) -> None:
    ns.sh(
        f"mkdir -p {ns.mnt}/tree && for i in $(seq 0 199); do "
        f"head -c $((i * 97 + 1)) /dev/urandom > {ns.mnt}/tree/f$i; done"
    )
    expected = ns.sh(f"cd {ns.mnt}/tree && sha256sum f* | sort").stdout
    daemon.start([TEST_RULES], extra="[scan]\nworkers = 2\n")
    readers = [
        ns.popen("bash", "-c", f"cd {ns.mnt}/tree && sha256sum f* | sort", stdout=subprocess.PIPE)
        for _ in range(6)
    ]
    for p in readers:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        assert out == expected
    ev = daemon.events()
    assert ev["answered_deny"] == 0
    assert ev["perm_events"] >= 200  # every file was held and answered at least once


def test_repeat_open_of_a_clean_file_raises_no_event(ns: Namespace, daemon: OnAccess) -> None:
    path = ns.mnt / "clean.txt"
    _put(ns, path, b"nothing to see\n")
    _age(ns, path)
    daemon.start([TEST_RULES])
    assert daemon.read(path) == "ok 15"
    daemon.wait_for(lambda: daemon.events()["ignore_marks"] >= 1, what="the ignore mark")
    before = daemon.events()["perm_events"]
    for _ in range(10):
        assert daemon.read(path) == "ok 15"
    assert daemon.events()["perm_events"] == before


# ----------------------------------------------------------- change paths


def _clean_then_cached(ns: Namespace, daemon: OnAccess, path: Path, data: bytes) -> None:
    """A clean file, opened once so that it is cached and ignore-marked."""
    _put(ns, path, data)
    _age(ns, path)
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE)
    assert daemon.read(path).startswith("ok")
    daemon.wait_for(lambda: daemon.events()["ignore_marks"] >= 1, what="the ignore mark")
    before = daemon.events()["perm_events"]
    assert daemon.read(path).startswith("ok")
    assert daemon.events()["perm_events"] == before  # really cached: no event


def test_rescan_after_write(ns: Namespace, daemon: OnAccess) -> None:
    path = ns.mnt / "f"
    _clean_then_cached(ns, daemon, path, b"clean start\n")
    ns.sh(f"printf '%s' '{MARKER.decode()}' >> {path}")
    assert daemon.read(path) == "EPERM"


def test_rescan_after_truncate(ns: Namespace, daemon: OnAccess) -> None:
    path = ns.mnt / "f"
    _clean_then_cached(ns, daemon, path, b"VIGILD-SHORT-MARK" + b"." * 200)  # long: clean
    ns.sh(f"truncate -s 20 {path}")
    assert daemon.read(path) == "EPERM"


def test_rescan_after_rename_over(ns: Namespace, daemon: OnAccess) -> None:
    path = ns.mnt / "f"
    _clean_then_cached(ns, daemon, path, b"clean start\n")
    _put(ns, ns.mnt / "incoming", MARKER)
    ns.sh(f"mv {ns.mnt}/incoming {path}")
    assert daemon.read(path) == "EPERM"


def test_rescan_after_write_through_shared_mmap(ns: Namespace, daemon: OnAccess) -> None:
    path = ns.mnt / "f"
    _clean_then_cached(ns, daemon, path, b"." * 4096)
    r = ns.py(
        "import mmap, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "m = mmap.mmap(fd, 4096)\n"
        "m[100:100 + len(sys.argv[2])] = sys.argv[2].encode()\n"
        "m.flush(); m.close(); os.close(fd)\n",
        str(path),
        MARKER.decode(),
    )
    assert r.returncode == 0, r.stderr
    assert daemon.read(path) == "EPERM"


def test_rescan_after_same_size_rewrite_with_mtime_set_back(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = ns.mnt / "f"
    clean = b"x" * len(MARKER)
    _clean_then_cached(ns, daemon, path, clean)
    r = ns.py(
        "import os, sys\n"
        "st = os.stat(sys.argv[1])\n"
        "with open(sys.argv[1], 'r+b') as f: f.write(sys.argv[2].encode())\n"
        "os.utime(sys.argv[1], ns=(st.st_atime_ns, st.st_mtime_ns))\n"
        "after = os.stat(sys.argv[1])\n"
        "assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)\n",
        str(path),
        MARKER.decode(),
    )
    assert r.returncode == 0, r.stderr
    assert daemon.read(path) == "EPERM"


def test_a_rewrite_right_after_the_allow_is_never_served_from_the_cache(
    ns: Namespace, daemon: OnAccess
) -> None:
    """An allow is written before it is cached: the opener it frees may rewrite
    the file (same size, same tick) before the entry lands. That entry must never
    answer for the new bytes."""
    files = [ns.mnt / f"f{i}" for i in range(20)]
    for path in files:
        _put(ns, path, b"x" * len(MARKER))
    _age(ns, *files)
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE)
    r = ns.py(
        "import sys\n"
        "for p in sys.argv[2:]:\n"
        "    with open(p, 'rb') as f: f.read()\n"
        "    with open(p, 'r+b') as f: f.write(sys.argv[1].encode())\n",
        MARKER.decode(),
        *map(str, files),
    )
    assert r.returncode == 0, r.stderr
    assert [daemon.read(path) for path in files] == ["EPERM"] * len(files)


def test_new_rule_at_reload_denies_a_file_that_was_clean(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yar").write_text(
        'rule Old_Rule { strings: $a = "never-present-string" condition: $a }\n'
    )
    path = ns.mnt / "f"
    _put(ns, path, b"an innocent file with NEW-BAD-THING inside\n")
    _age(ns, path)
    daemon.start([rules], extra=NO_CLOSE_WRITE)
    assert daemon.read(path).startswith("ok")
    daemon.wait_for(lambda: daemon.events()["ignore_marks"] >= 1, what="the ignore mark")
    (rules / "b.yar").write_text('rule New_Rule { strings: $a = "NEW-BAD-THING" condition: $a }\n')
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda: daemon.status()["rules"]["reloads"] == 1, what="the reload")
    assert daemon.read(path) == "EPERM"


# ----------------------------------------------------- failure and overload


def _slow_size(seconds: float) -> int:
    """The size of a file the quadratic rule needs about ``seconds`` to scan (calibrated here)."""
    import yara

    rules = yara.compile(filepath=str(SLOW_RULES / "quadratic.yar"))
    n = 2048
    while True:
        t = time.perf_counter()
        rules.match(data=bytes(n), timeout=120)
        took = time.perf_counter() - t
        if took > 0.2:
            break
        n *= 2
    return int(n * (seconds / took) ** 0.5)


def _slow_file(ns: Namespace, path: Path, seconds: float) -> None:
    """A file the quadratic rule needs about ``seconds`` to scan."""
    _put(ns, path, bytes(_slow_size(seconds)))


def _openers(ns: Namespace, path: Path, n: int) -> list[subprocess.Popen[str]]:
    """``n`` processes reading ``path``, each held until the daemon answers."""
    return [
        ns.popen("cat", str(path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(n)
    ]


def test_kill_9_while_openers_wait_lets_them_complete(ns: Namespace, daemon: OnAccess) -> None:
    slow = ns.mnt / "slow.bin"
    _slow_file(ns, slow, 30)
    daemon.start(
        [SLOW_RULES], extra='[scan]\ntimeout = 120\nworkers = 1\n[onaccess]\ndeadline = "120s"\n'
    )
    openers = _openers(ns, slow, 3)
    daemon.wait_for(lambda: daemon.events()["in_flight"] >= 1, what="an opener to be held")
    time.sleep(0.5)
    assert all(p.poll() is None for p in openers), "openers should still be held"
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGKILL)
    for p in openers:
        _, err = p.communicate(timeout=10)  # the kernel answers for the dead group
        assert p.returncode == 0, err


def test_full_queue_is_answered_by_policy(ns: Namespace, daemon: OnAccess) -> None:
    slow = ns.mnt / "slow.bin"
    _slow_file(ns, slow, 20)
    _put(ns, ns.mnt / "other.txt", b"other\n")
    daemon.start(
        [SLOW_RULES],
        extra="[scan]\ntimeout = 120\nworkers = 1\n"
        '[onaccess]\nqueue_size = 1\non_queue_full = "deny"\ndeadline = "120s"\n',
    )
    holder = ns.popen("cat", str(slow), stdout=subprocess.DEVNULL)
    try:
        daemon.wait_for(lambda: daemon.events()["in_flight"] == 1, what="the slot to fill")
        t = time.monotonic()
        assert daemon.read(ns.mnt / "other.txt") == "EPERM"  # no room: denied, at once
        assert time.monotonic() - t < 5
        assert daemon.events()["queue_full"] == 1
        daemon.wait_for(lambda: "queue was full" in daemon.log(), what="the overflow alert")
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.parametrize(("policy", "expected"), [("deny", "EPERM"), ("allow", "ok")])
def test_passed_deadline_is_answered_by_policy_and_the_scan_goes_on(
    ns: Namespace, daemon: OnAccess, policy: str, expected: str
) -> None:
    slow = ns.mnt / "slow.bin"
    _slow_file(ns, slow, 3)
    ns.sh(f"printf '%s' '{MARKER.decode()}' >> {slow}")  # also malicious: a late detection
    daemon.start(
        [SLOW_RULES, TEST_RULES],
        extra=f'[scan]\ntimeout = 120\nworkers = 1\n[onaccess]\ndeadline = "500ms"\n'
        f'on_deadline = "{policy}"\nevents = ["open"]\n',
    )
    t = time.monotonic()
    assert daemon.read(slow).split()[0] == expected
    waited = time.monotonic() - t
    assert 0.4 < waited < 2.5, waited  # answered at the deadline, not after the scan
    assert daemon.events()["deadline_passed"] == 1
    # the scan went on: the late detection is alerted and quarantined
    daemon.wait_for(
        lambda: "allowed by the deadline policy, then detected" in daemon.log(),
        timeout=60,
        what="the late detection",
    )
    items = daemon.quarantine()
    assert [i["path"] for i in items] == [str(slow)]


def test_daemon_reading_the_watched_filesystem_does_not_deadlock(
    ns: Namespace, daemon: OnAccess
) -> None:
    rules = ns.mnt / "rules"
    ns.sh(f"mkdir {rules} && cp {TEST_RULES}/*.yar {rules}/")
    daemon.start([rules])  # its rules live on the watched tmpfs
    ns.sh(f"echo '/* edited */' >> {rules}/marker.yar")
    r = subprocess.run(
        [VIGILD, "rules", "reload", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr + daemon.log()
    assert daemon.status()["rules"]["reloads"] == 1


# ---------------------------------------------------------------- quarantine


def test_close_write_detection_quarantines_and_restore_is_exact(
    ns: Namespace, daemon: OnAccess
) -> None:
    staging, watched = ns.mnt / "staging", ns.mnt / "watched"
    ns.sh(f"mkdir {staging} {watched}")
    data = b"#!/bin/sh\n# " + MARKER + b"\n" + os.urandom(3000)
    _put(ns, staging / "upload.php", data, 0o640)
    ns.sh(
        f"chown 1234:5678 {staging}/upload.php && touch -m -d '2021-03-04 05:06:07.891011' {staging}/upload.php"
        f" && touch -a -d '2022-01-02 03:04:05.5' {staging}/upload.php"
    )
    st_before = ns.py(
        "import os, sys; s = os.stat(sys.argv[1]); print(s.st_uid, s.st_gid, oct(s.st_mode), "
        "s.st_atime_ns, s.st_mtime_ns)",
        str(staging / "upload.php"),
    ).stdout
    ns.sh(f"mv {staging}/upload.php {watched}/upload.php")  # a rename: no write, no event
    daemon.start([TEST_RULES], watch=[watched], extra='[onaccess]\nevents = ["close-write"]\n')
    # a writer opens it and closes it without writing: close-write, no data or mtime change
    r = ns.py(
        "import os, sys; os.close(os.open(sys.argv[1], os.O_WRONLY))", str(watched / "upload.php")
    )
    assert r.returncode == 0, r.stderr
    daemon.wait_for(lambda: daemon.quarantine(), what="the quarantined item")
    assert ns.sh(f"test -e {watched}/upload.php", check=False).returncode == 1
    (item,) = daemon.quarantine()
    assert item["path"] == str(watched / "upload.php")
    assert "Vigild_Test_Marker" in daemon.log()
    assert daemon.stop() == 0
    r = subprocess.run(
        ns.cmd(VIGILD, "quarantine", "restore", item["id"], "--config", str(daemon.config)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    st_after = ns.py(
        "import os, sys; s = os.stat(sys.argv[1]); print(s.st_uid, s.st_gid, oct(s.st_mode), "
        "s.st_atime_ns, s.st_mtime_ns)",
        str(watched / "upload.php"),
    ).stdout
    assert st_after == st_before  # before reading it: a read would move the atime (relatime)
    restored = ns.py(
        "import sys; sys.stdout.write(open(sys.argv[1], 'rb').read().hex())",
        str(watched / "upload.php"),
    )
    assert bytes.fromhex(restored.stdout) == data
    assert daemon.quarantine() == []


# ---------------------------------------------------------------- detect mode


def test_detect_mode_quarantines_after_write_including_new_directories(
    ns: Namespace, daemon: OnAccess
) -> None:
    no_admin = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin"]
    daemon.start([TEST_RULES], prefix=no_admin)
    s = daemon.status()
    assert s["mode"] == "detect"
    assert "fanotify permission events unavailable" in s["mode_reason"]
    assert "DETECT MODE: nothing is blocked" in daemon.log()
    _put(ns, ns.mnt / "dropped.txt", MARKER)
    daemon.wait_for(lambda: len(daemon.quarantine()) == 1, what="the first quarantine")
    ns.sh(
        f"mkdir -p {ns.mnt}/new/deeper && printf '%s' '{MARKER.decode()}' > {ns.mnt}/new/deeper/x.sh"
    )
    daemon.wait_for(lambda: len(daemon.quarantine()) == 2, what="the quarantine in a new directory")
    paths = sorted(i["path"] for i in daemon.quarantine())
    assert paths == [str(ns.mnt / "dropped.txt"), str(ns.mnt / "new" / "deeper" / "x.sh")]
    assert ns.sh(f"ls -A {ns.mnt}/new/deeper").stdout == ""


def test_a_burst_of_writes_leaves_room_for_opens(ns: Namespace, daemon: OnAccess) -> None:
    """Scans after writes may take at most half the slots: opens are never crowded out."""
    _put(ns, ns.mnt / "clean.txt", b"an ordinary file\n")
    daemon.start(
        [SLOW_RULES],
        extra="[scan]\ntimeout = 120\nworkers = 1\n"
        '[onaccess]\nqueue_size = 8\non_queue_full = "deny"\ndeadline = "60s"\n',
    )
    # twenty writes, each a slow close-write scan for the single worker; the
    # files are opened first (empty, quick to answer), then written and closed
    r = ns.py(
        "import sys\n"
        "files = [open(f'{sys.argv[1]}/w{i}.bin', 'wb') for i in range(20)]\n"
        "for f in files: f.write(bytes(int(sys.argv[2])))\n"
        "for f in files: f.close()\n",
        str(ns.mnt),
        str(_slow_size(1.5)),
    )
    assert r.returncode == 0, r.stderr
    daemon.wait_for(
        lambda: daemon.events()["notify_dropped"] > 0, what="close-write scans to be dropped"
    )
    ev = daemon.events()
    assert ev["in_flight"] <= 4
    assert daemon.read(ns.mnt / "clean.txt", timeout=60) == "ok 17"  # not denied by on_queue_full
    assert daemon.events()["queue_full"] == 0


def test_a_hash_added_at_reload_denies_a_file_that_was_clean(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    import hashlib

    data = b"a file that will be listed as known-bad\n"
    path = ns.mnt / "f"
    _put(ns, path, data)
    _age(ns, path)
    hashes = tmp_path / "hashes"
    hashes.mkdir()
    (hashes / "list.txt").write_text("")
    daemon.start([TEST_RULES], extra=f'[rules]\nhashes = ["{hashes}"]\n')
    assert daemon.read(path).startswith("ok")
    daemon.wait_for(lambda: daemon.events()["ignore_marks"] >= 1, what="the ignore mark")
    (hashes / "list.txt").write_text(f"{hashlib.sha256(data).hexdigest()} Test.Listed\n")
    r = subprocess.run([VIGILD, "rules", "reload", "--config", str(daemon.config)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert daemon.status()["rules"]["hash_entries"] == 1
    assert daemon.read(path) == "EPERM"  # the same, unchanged inode


WRITER = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 4096)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "dirty":
        m[0:4] = b"...."  # dirty the page now: later stores raise no fault
    elif cmd.startswith("write "):
        data = cmd[6:].encode()
        m[100:100 + len(data)] = data
    print("done", flush=True)
"""


def _writer(ns: Namespace, path: Path) -> subprocess.Popen[str]:
    return ns.popen(PYTHON, "-c", WRITER, str(path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _tell(w: subprocess.Popen[str], cmd: str) -> None:
    assert w.stdin is not None and w.stdout is not None
    w.stdin.write(cmd + "\n")
    w.stdin.flush()
    assert w.stdout.readline().strip() == "done"


def test_no_clean_verdict_is_cached_while_a_writer_holds_the_file(
    ns: Namespace, daemon: OnAccess
) -> None:
    """A page dirtied before the scan can be rewritten with no fault and no new ctime."""
    path = ns.mnt / "f"
    _put(ns, path, b"." * 4096)
    _age(ns, path)
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE)
    w = _writer(ns, path)
    try:
        _tell(w, "dirty")
        time.sleep(0.05)
        assert daemon.read(path) == "ok 4096"  # clean now; the writer still holds it
        _tell(w, "write " + MARKER.decode())
        assert daemon.read(path) == "EPERM"
    finally:
        w.kill()
        w.wait(10)


def test_a_users_file_gets_no_ignore_mark_and_a_new_mapping_is_seen(
    ns: Namespace, daemon: OnAccess
) -> None:
    path = ns.mnt / "user.txt"
    _put(ns, path, b"." * 4096)
    ns.sh(f"chown 1000:1000 {path}")
    _age(ns, path)
    daemon.start([TEST_RULES], extra=NO_CLOSE_WRITE)
    assert daemon.read(path) == "ok 4096"
    assert daemon.events()["ignore_marks"] == 0  # a user could write it unseen
    before = daemon.events()
    assert daemon.read(path) == "ok 4096"
    after = daemon.events()
    # on tmpfs not even the verdict cache keeps a user's file (test_mapped_writes.py)
    assert after["cache_allow"] == before["cache_allow"]
    assert after["queued"] == before["queued"] + 1
    w = _writer(ns, path)  # opened O_RDWR after the verdict, mapping kept open
    try:
        _tell(w, "write " + MARKER.decode())
        assert daemon.read(path) == "EPERM"
    finally:
        w.kill()
        w.wait(10)


def test_exec_is_checked_outside_the_watched_paths(ns: Namespace, daemon: OnAccess) -> None:
    watched, other = ns.mnt / "watched", ns.mnt / "var-tmp"
    ns.sh(f"mkdir {watched} {other}")
    _put(ns, other / "run.sh", b"#!/bin/sh\n# " + MARKER + b"\necho ran\n", 0o755)
    _put(ns, other / "data.txt", MARKER)
    daemon.start([TEST_RULES], watch=[watched], extra=NO_CLOSE_WRITE)
    r = ns.sh(f"cat {other / 'data.txt'}", check=False)
    assert r.stdout == MARKER.decode(), r  # an open outside: not held
    assert daemon.read(other / "data.txt") == "EPERM"  # unless by an interpreter (python3)
    r = ns.sh(str(other / "run.sh"), check=False)
    assert r.returncode == 126 and "ran" not in r.stdout  # an exec anywhere: checked


def test_an_open_through_another_mount_namespace_is_scanned(
    ns: Namespace, daemon: OnAccess
) -> None:
    """A container's bind mount of a watched tree: its path means nothing to vigild, so it scans."""
    watched, decoy = ns.mnt / "watched", ns.mnt / "decoy"
    ns.sh(f"mkdir {watched} {decoy}")
    _put(ns, watched / "evil.txt", MARKER)
    daemon.start([TEST_RULES], watch=[watched], extra=NO_CLOSE_WRITE)
    r = ns.sh(
        f"unshare --mount --propagation private sh -c 'mount --bind {watched} {decoy} && cat {decoy}/evil.txt'",
        check=False,
    )
    assert r.returncode == 1 and "Operation not permitted" in r.stderr, r


def test_rules_that_read_the_name_see_each_hard_link(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    rules = tmp_path / "by-name"
    rules.mkdir()
    (rules / "php.yar").write_text(
        'rule Dropped_Php { strings: $a = "payload" condition: $a and extension == ".php" }\n'
    )
    _put(ns, ns.mnt / "note.txt", b"a payload in a text file\n")
    _age(ns)
    daemon.start([rules], extra=NO_CLOSE_WRITE)
    assert daemon.read(ns.mnt / "note.txt").startswith("ok")  # not .php: clean
    ns.sh(f"ln {ns.mnt}/note.txt {ns.mnt}/shell.php")
    assert daemon.read(ns.mnt / "shell.php") == "EPERM"  # the same inode, another name
