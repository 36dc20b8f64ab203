"""``vigild scan`` as an admin coming from clamscan uses it (issue 14, items 1 and 2).

Ctrl-C, a closed pipe, pseudo filesystems, the summary's counts, the
clamscan options (--exclude, --move, --remove, --quarantine, --log,
--file-list, --infected, --quiet, --no-summary, --one-file-system), and a
scan's own compiled-rules directory.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support import DATA, MARKER, VIGILD, vigild
from vigild import scan, scanout
from vigild.detector import Finding
from vigild.scanact import ActionKind, Actor
from vigild.verdict import Action, Reason, Verdict

MARKER_RULES = str(DATA / "rules")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config whose every directory is private to the test (and not made in advance)."""
    p = tmp_path / "vigild.toml"
    p.write_text(
        f'[rules]\ncompiled_dir = "{tmp_path / "daemon-state" / "compiled"}"\nlocal_dirs = []\n'
        f'[daemon]\nstate_dir = "{tmp_path / "daemon-state"}"\n'
        f'quarantine_dir = "{tmp_path / "daemon-state" / "quarantine"}"\n'
    )
    return p


def _scan(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    compiled = str(cfg.parent / "scan-compiled")
    return vigild(
        "scan", "--config", str(cfg), "--compiled-dir", compiled, "--rules", MARKER_RULES,
        "--no-progress", *args,
    )  # fmt: skip


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("plain text\n")
    (root / "sub" / "bad.php").write_bytes(b"<?php // " + MARKER + b"\n")
    (root / "sub" / "b.txt").write_text("more text\n")
    return root


def _summary(out: str) -> dict[str, str]:
    lines = out.split("----------- SCAN SUMMARY -----------\n", 1)[1].splitlines()
    return dict(line.split(": ", 1) for line in lines)


# ------------------------------------------------------------ Ctrl-C, pipes


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_within_a_second_with_the_partial_summary(
    tmp_path: Path, cfg: Path, sig: signal.Signals, code: int
) -> None:
    """A worker deep in a slow file is killed: SIGINT (or SIGTERM) to exit well under 2 s."""
    cfg.write_text(cfg.read_text() + "[scan]\ntimeout = 300\n")
    root = tmp_path / "t"
    root.mkdir()
    (root / "big.bin").write_bytes(bytes(400_000))  # minutes under the quadratic rule
    p = subprocess.Popen(
        [VIGILD, "scan", "--config", str(cfg), "--compiled-dir", str(tmp_path / "c"),
         "--rules", str(DATA / "slow"), "--no-progress", "--workers", "1", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        workers: list[str] = []
        for _ in range(200):  # until the worker is forked and inside the file
            workers = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            if workers:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        sent = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        p.kill()
        p.wait(10)
    assert took < 2.0, f"Ctrl-C took {took:.1f} s"
    assert p.returncode == code
    assert workers and not any(_running(int(w)) for w in workers), "a worker outlived the scan"
    assert "Traceback" not in err
    s = _summary(out)
    assert (s["Files scanned"], s["Found"]) == ("0", "0")
    assert s["Interrupted"] == "the scan did not finish"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_closed_pipe_ends_quietly(tmp_path: Path, cfg: Path) -> None:
    """`vigild scan ... | head -1`: no traceback, no error line; exit 141."""
    root = tmp_path / "t"
    root.mkdir()
    for i in range(400):
        (root / f"f{i:03}").write_bytes(MARKER)
    p = subprocess.Popen(
        [VIGILD, "scan", "--config", str(cfg), "--compiled-dir", str(tmp_path / "c"),
         "--rules", MARKER_RULES, "--no-progress", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    p.stdout.close()  # what `head -1` does after its line
    err = p.stderr.read().decode()
    p.wait(60)
    assert first.endswith(b": FOUND Vigild_Test_Marker (rule-match)\n")
    assert err == ""
    assert p.returncode == 141


# ---------------------------------------------------------------- filesystems


def test_pseudo_filesystems_are_not_entered_unless_named(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    (root / "proc").symlink_to("/proc")
    r = _scan(cfg, "--follow-symlinks", str(root))
    s = _summary(r.stdout)
    assert r.returncode == 1, r.stderr
    assert s["Files scanned"] == "3"
    assert "1 filesystems not entered" in s["Skipped"]
    # named on the command line, it is scanned
    r = _scan(cfg, "/proc/sys/kernel/random")
    assert r.returncode == 0, r.stderr
    assert int(_summary(r.stdout)["Files scanned"]) >= 5


def test_mountinfo_types_and_real_filesystems_below_a_pseudo_one(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "24 27 0:6 / /dev rw - devtmpfs devtmpfs rw\n"
        "25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw\n"
        "26 24 0:24 / /dev/pts rw - devpts devpts rw\n"
        "28 25 0:40 / /dev/shm/inner rw - tmpfs tmpfs rw\n"
        "29 27 0:41 / /mnt/with\\040space rw - proc proc rw\n"
    )
    m = scan.read_mounts(str(info))
    assert m.fstype("/dev", 0) == "devtmpfs"
    assert m.fstype("/elsewhere", os.makedev(0, 24)) == "devpts"
    assert m.fstype("/mnt/with space", 0) == "proc"
    assert m.entered_below("/dev") == ["/dev/shm"]  # not /dev/pts; /dev/shm/inner from there


def test_a_pseudo_directory_is_skipped_and_a_real_mount_below_it_walked(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    (root / "dev" / "shm").mkdir(parents=True)
    (root / "dev" / "null-ish").write_text("not to be read")
    (root / "dev" / "shm" / "dropped.php").write_bytes(MARKER)
    real = os.path.realpath(root)
    mounts = scan.Mounts(by_point={f"{real}/dev": "devtmpfs", f"{real}/dev/shm": "tmpfs"})
    files = _walk(root, scan.WalkOptions(mounts=mounts))
    want = ["a.txt", "sub/bad.php", "sub/b.txt", "dev/shm/dropped.php"]
    assert sorted(files) == sorted(str(root / w) for w in want)  # not dev/null-ish


def _walk(root: Path, opts: scan.WalkOptions) -> list[str]:
    import threading

    totals = scanout.Totals()
    w = scan.Walker(opts, lambda p, m: None, totals, threading.Lock())
    return [p for p, _, _ in w.walk([str(root)])]


def test_one_file_system_stays_on_the_named_paths_filesystem(tmp_path: Path, cfg: Path) -> None:
    other = Path("/dev/shm")
    if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the test's directory")
    root = _tree(tmp_path / "t")
    elsewhere = other / f"vigild-test-{os.getpid()}"
    elsewhere.mkdir()
    try:
        (elsewhere / "x.php").write_bytes(MARKER)
        (root / "shm").symlink_to(elsewhere)
        r = _scan(cfg, "--follow-symlinks", str(root))
        assert _summary(r.stdout)["Found"] == "2"
        r = _scan(cfg, "--follow-symlinks", "--one-file-system", str(root))
        assert _summary(r.stdout)["Found"] == "1"
        assert "1 filesystems not entered" in _summary(r.stdout)["Skipped"]
    finally:
        (elsewhere / "x.php").unlink()
        elsewhere.rmdir()


# ---------------------------------------------------------------- counting


def test_summary_counts_scanned_skipped_and_errors_apart(tmp_path: Path) -> None:
    cfgp = tmp_path / "c.toml"
    cfgp.write_text('[rules]\nlocal_dirs = []\n[scan]\nmax_file_size = "1K"\noversize = "skip"\n')
    root = _tree(tmp_path / "t")
    (root / "huge").write_bytes(bytes(50_000))
    r = _scan(cfgp, str(root))
    s = _summary(r.stdout)
    assert (s["Files scanned"], s["Found"], s["Errors"]) == ("3", "1", "0")
    assert s["Not scanned (too large or timed out)"] == "1"
    scanned = sum(
        len(p.read_bytes()) for p in (root / "a.txt", root / "sub/bad.php", root / "sub/b.txt")
    )
    assert s["Data scanned"] == f"{scanned} B"  # not the 50 KB of the skipped file


# ---------------------------------------------------------------- exclusions


def test_exclude_and_exclude_dir_are_regexes_on_the_path(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    (root / "cache").mkdir()
    (root / "cache" / "bad.php").write_bytes(MARKER)
    (root / "x.log").write_bytes(MARKER)
    r = _scan(cfg, "--exclude", r"\.log$", "--exclude-dir", "/cache$", str(root))
    found = [line.split(": FOUND")[0] for line in r.stdout.splitlines() if ": FOUND" in line]
    assert found == [str(root / "sub" / "bad.php")]
    assert "2 excluded" in _summary(r.stdout)["Skipped"]
    r = _scan(cfg, "--exclude", "([", str(root))
    assert r.returncode == 2
    assert r.stderr.startswith("vigild: --exclude: '([': ")


def test_the_configs_exclude_paths_and_vigilds_own_dirs_are_not_scanned(
    tmp_path: Path, cfg: Path
) -> None:
    root = _tree(tmp_path / "t")
    (root / "build").mkdir()
    (root / "build" / "bad.php").write_bytes(MARKER)
    daemon_compiled = tmp_path / "daemon-state" / "compiled"
    daemon_compiled.mkdir(parents=True)
    (daemon_compiled / "sample").write_bytes(MARKER)
    cfg.write_text(cfg.read_text() + f'[onaccess]\nexclude_paths = ["{root / "build"}"]\n')
    r = _scan(cfg, str(root), str(tmp_path / "daemon-state"))
    found = [line.split(": FOUND")[0] for line in r.stdout.splitlines() if ": FOUND" in line]
    assert found == [str(root / "sub" / "bad.php")]


# ---------------------------------------------------------------- actions


def test_remove_deletes_what_is_found(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    bad = root / "sub" / "bad.php"
    r = _scan(cfg, "--remove", str(root))
    assert r.returncode == 1
    assert f"{bad}: removed" in r.stdout.splitlines()
    assert not bad.exists() and (root / "sub" / "b.txt").exists()


def test_move_copies_into_the_directory_and_unlinks(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    bad = root / "sub" / "bad.php"
    content = bad.read_bytes()
    target = tmp_path / "moved"
    target.mkdir()
    (target / "bad.php").write_text("an earlier one")
    r = _scan(cfg, "--move", str(target), str(root))
    assert r.returncode == 1
    assert f"{bad}: moved to {target / 'bad.php.1'}" in r.stdout.splitlines()
    assert not bad.exists()
    assert (target / "bad.php.1").read_bytes() == content
    assert (target / "bad.php.1").stat().st_mode & 0o777 == 0o600
    r = _scan(cfg, "--move", str(tmp_path / "nowhere"), str(root))
    assert (r.returncode, r.stderr) == (
        2,
        f"vigild: --move: {tmp_path / 'nowhere'}: not a directory\n",
    )


@ROOT_ONLY
def test_quarantine_goes_into_the_daemons_store(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    bad = root / "sub" / "bad.php"
    content = bad.read_bytes()
    r = _scan(cfg, "--quarantine", str(root))
    assert r.returncode == 1, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith(f"{bad}: quarantined as "))
    item = line.rsplit(" ", 1)[1]
    assert not bad.exists()
    listed = vigild("quarantine", "list", "--config", str(cfg))
    assert item in listed.stdout and str(bad) in listed.stdout
    store = tmp_path / "daemon-state" / "quarantine"
    assert (store / item / "data").read_bytes() == content


def _finding(path: Path, sha256: str) -> Finding:
    v = Verdict(Action.DENY, Reason.RULE_MATCH, "Vigild_Test_Marker")
    return Finding(str(path), path.stat().st_size, sha256, v)


@pytest.mark.parametrize("kind", [ActionKind.REMOVE, ActionKind.MOVE])
def test_a_file_that_changed_since_the_scan_is_left_alone(tmp_path: Path, kind: ActionKind) -> None:
    import io

    bad = tmp_path / "bad.php"
    bad.write_bytes(MARKER)
    scanned = hashlib.sha256(MARKER).hexdigest()
    bad.write_bytes(b"rewritten since")  # the admin's own fix, or an attacker's swap
    out = io.StringIO()
    reporter = scanout.Reporter(out, False, scanout.Totals())
    (tmp_path / "to").mkdir()
    Actor(kind, reporter, move_to=str(tmp_path / "to"))(_finding(bad, scanned))
    assert out.getvalue() == f"{bad}: ERROR not {kind.value}: changed since it was scanned\n"
    assert bad.read_bytes() == b"rewritten since"
    assert reporter.totals.errors == 1 and not list((tmp_path / "to").iterdir())


def test_a_symlink_swapped_into_the_path_is_not_followed(tmp_path: Path) -> None:
    import io

    (tmp_path / "real").mkdir()
    bad = tmp_path / "real" / "bad.php"
    bad.write_bytes(MARKER)
    (tmp_path / "dir").symlink_to(tmp_path / "real")
    out = io.StringIO()
    reporter = scanout.Reporter(out, False, scanout.Totals())
    f = _finding(tmp_path / "dir" / "bad.php", hashlib.sha256(MARKER).hexdigest())
    Actor(ActionKind.REMOVE, reporter)(f)  # the directory part is resolved: allowed
    assert not bad.exists()
    bad.write_bytes(MARKER)
    (tmp_path / "link.php").symlink_to(bad)
    Actor(ActionKind.REMOVE, reporter)(_finding(tmp_path / "link.php", f.sha256))
    assert bad.exists() and reporter.totals.errors == 1


# ---------------------------------------------------------------- output


def test_log_file_gets_what_is_printed(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    logf = tmp_path / "scan.log"
    logf.write_text("earlier\n")
    r = _scan(cfg, "--log", str(logf), str(root))
    assert logf.read_text() == "earlier\n" + r.stdout


def test_file_list_from_a_file_and_from_stdin(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    lst = tmp_path / "list"
    lst.write_text(f"{root / 'a.txt'}\n\n{root / 'sub' / 'bad.php'}\n")
    r = _scan(cfg, "--file-list", str(lst))
    assert r.returncode == 1
    assert _summary(r.stdout)["Files scanned"] == "2"
    p = subprocess.run(
        [VIGILD, "scan", "--config", str(cfg), "--compiled-dir", str(tmp_path / "c"),
         "--rules", MARKER_RULES, "--no-progress", "--file-list", "-"],
        input=f"{root / 'a.txt'}\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0 and _summary(p.stdout)["Files scanned"] == "1"
    r = _scan(cfg)
    assert (r.returncode, r.stderr) == (
        2,
        "vigild: scan: nothing to scan (give a PATH or --file-list)\n",
    )


def test_infected_quiet_and_no_summary(tmp_path: Path) -> None:
    cfgp = tmp_path / "c.toml"
    cfgp.write_text('[rules]\nlocal_dirs = []\n[scan]\nmax_file_size = "1K"\noversize = "skip"\n')
    root = _tree(tmp_path / "t")
    (root / "huge").write_bytes(bytes(5000))
    r = _scan(cfgp, str(root))
    assert f"{root / 'huge'}: SKIPPED 5000 bytes > max_file_size 1024" in r.stdout
    r = _scan(cfgp, "--infected", str(root))
    assert (
        r.stdout.splitlines()[0]
        == f"{root / 'sub' / 'bad.php'}: FOUND Vigild_Test_Marker (rule-match)"
    )
    assert r.stdout.splitlines()[1] == "----------- SCAN SUMMARY -----------"
    r = _scan(cfgp, "--infected", "--no-summary", str(root))
    assert r.stdout.splitlines() == [
        f"{root / 'sub' / 'bad.php'}: FOUND Vigild_Test_Marker (rule-match)"
    ]
    r = _scan(cfgp, "--quiet", str(root), str(tmp_path / "missing"))
    assert (r.returncode, r.stdout) == (
        1,
        f"{tmp_path / 'missing'}: ERROR No such file or directory\n",
    )


def test_verbose_after_the_subcommand(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    (root / "proc").symlink_to("/proc")
    r = _scan(cfg, "--follow-symlinks", str(root), "-v")
    assert r.returncode == 1, r.stderr
    assert f"vigild: {root / 'proc'}: proc filesystem not entered" in r.stderr.splitlines()


# --------------------------------------------------------- compiled rules


def test_a_scan_keeps_its_compiled_rules_apart_from_the_daemons(tmp_path: Path, cfg: Path) -> None:
    root = _tree(tmp_path / "t")
    r = _scan(cfg, str(root))
    assert r.returncode == 1, r.stderr
    assert list((tmp_path / "scan-compiled").glob("rules-yara-*.compiled"))
    assert not (tmp_path / "daemon-state").exists()  # state, compiled and quarantine dirs


def test_the_default_compiled_dir_is_the_scans_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert scan.compiled_dir() == "/var/cache/vigild/scan"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", "/home/alice/.xdg")
    assert scan.compiled_dir() == "/home/alice/.xdg/vigild"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/alice")
    assert scan.compiled_dir() == "/home/alice/.cache/vigild"
