"""``vigild scan``'s clean cache on disk (issue 12): what it may skip, and what it must not.

A second scan of an unchanged tree opens nothing it found clean; a file
edited since, a different rule set, a file changed too recently for its
ctime to prove anything (kernels before 6.13), one held open for writing
before or after its read, or one a path rule sees under another absolute
path is scanned again. A damaged cache file is ignored with a warning.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from support import DATA, MARKER, VIGILD, skip_where_the_scan_cache_keeps_nothing, vigild
from vigild import scan, scancache, snapshot
from vigild.config import Config, RulesConfig

MARKER_RULES = DATA / "rules"


def _scan(tmp_path: Path, target: Path, *args: str, rules: Path = MARKER_RULES) -> tuple[int, str]:
    """Scan ``target`` with a compiled dir (and so a cache) private to the test; (exit, output)."""
    config = tmp_path / "vigild.toml"
    config.write_text(f'[rules]\ncompiled_dir = "{tmp_path / "daemon"}"\nlocal_dirs = []\n')
    r = vigild(
        "-v", "scan", "--config", str(config), "--compiled-dir", str(tmp_path / "scan"),
        "--rules", str(rules), "--no-progress", "--infected", *args, str(target),
    )  # fmt: skip
    return r.returncode, r.stdout + r.stderr


def _answered(output: str) -> str:
    line = [x for x in output.splitlines() if "answered by the scan cache" in x]
    assert len(line) == 1, output
    return line[0].split("vigild: ", 1)[-1]


def _tree(tmp_path: Path) -> Path:
    skip_where_the_scan_cache_keeps_nothing(tmp_path)
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(5):
        (root / f"f{i}.txt").write_bytes(b"x" * len(MARKER) + b" plain %d\n" % i)
    old = time.time() - 60
    for f in root.iterdir():
        os.utime(f, (old, old))  # sets ctime to now: wait out the freshness window
    time.sleep(0.05)
    return root


def test_a_second_scan_answers_unchanged_files_from_the_cache(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    code, out = _scan(tmp_path, root)
    assert code == 0 and _answered(out) == "0 files answered by the scan cache, 5 added", out
    code, out = _scan(tmp_path, root)
    assert code == 0 and _answered(out) == "5 files answered by the scan cache, 0 added", out
    assert (tmp_path / "scan" / scancache.NAME).stat().st_mode & 0o777 == 0o600


def test_an_edited_file_of_the_same_size_is_scanned_again(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _scan(tmp_path, root)
    victim = root / "f3.txt"
    size = victim.stat().st_size
    with open(victim, "r+b") as f:  # same size, same inode: only the ctime tells
        f.write(MARKER)
    assert victim.stat().st_size == size
    code, out = _scan(tmp_path, root)
    assert code == 1, out
    assert f"{victim}: FOUND Vigild_Test_Marker" in out
    assert _answered(out).startswith("4 files answered"), out


def test_other_rules_scan_everything_again(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _scan(tmp_path, root)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "marker.yar").write_bytes((MARKER_RULES / "marker.yar").read_bytes())
    (rules / "plain.yar").write_text('rule Plain_Two { strings: $a = "plain 2" condition: $a }\n')
    code, out = _scan(tmp_path, root, rules=rules)
    assert code == 1 and f"{root / 'f2.txt'}: FOUND Plain_Two" in out, out
    assert _answered(out).startswith("0 files answered"), out


def test_a_damaged_cache_is_ignored_with_a_warning(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _scan(tmp_path, root)
    cache = tmp_path / "scan" / scancache.NAME
    data = bytearray(cache.read_bytes())
    data[-3] ^= 0xFF  # one key flipped: the CRC no longer matches
    cache.write_bytes(bytes(data))
    code, out = _scan(tmp_path, root)
    assert code == 0, out
    assert f"{cache}: damaged, ignored" in out
    assert _answered(out) == "0 files answered by the scan cache, 5 added", out
    cache.write_bytes(b"garbage")
    code, out = _scan(tmp_path, root)
    assert f"{cache}: not a vigild scan cache (damaged), ignored" in out


def test_no_cache_neither_reads_nor_writes_it(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    code, out = _scan(tmp_path, root, "--no-cache")
    assert code == 0 and "scan cache" not in out
    assert not (tmp_path / "scan" / scancache.NAME).exists()


def _keys() -> scancache.Keys:
    return scancache.Keys(b"s" * 16, {}, fresh_ms=20)


def test_a_file_changed_within_the_window_of_its_read_is_not_remembered(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"clean")
    fd = os.open(f, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        # read 5 ms after its last change: a rewrite in that tick could keep the ctime
        assert _keys().after_clean(fd, st, st.st_ctime_ns + 5_000_000, True) is None
        assert _keys().after_clean(fd, st, st.st_ctime_ns + 25_000_000, True) is not None
    finally:
        os.close(fd)


def test_a_whole_second_ctime_is_not_remembered_within_its_second(whole_seconds: Path) -> None:
    """Found by review (the daemon had it too): a filesystem that keeps whole seconds
    only keeps a ctime for the rest of its second, so the window counts from its end."""
    f = whole_seconds / "f"
    f.write_bytes(b"clean")
    fd = os.open(f, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        assert st.st_ctime_ns % 1_000_000_000 == 0, "not a whole-seconds ctime"
        assert _keys().after_clean(fd, st, st.st_ctime_ns + 900_000_000, True) is None
        assert _keys().after_clean(fd, st, st.st_ctime_ns + 1_025_000_000, True) is not None
    finally:
        os.close(fd)


def test_a_file_open_for_writing_is_not_remembered(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"clean")
    fd = os.open(f, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        later = st.st_ctime_ns + 10**9
        with open(f, "r+b"):  # a writer (it could write through a shared mapping)
            assert _keys().after_clean(fd, st, later, True) is None
        assert _keys().after_clean(fd, st, later, True) is not None
    finally:
        os.close(fd)


def test_a_file_changed_while_read_is_not_remembered(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"clean")
    fd = os.open(f, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        f.write_bytes(b"dirty!")
        assert _keys().after_clean(fd, st, time.time_ns() + 10**9, True) is None
    finally:
        os.close(fd)


def test_a_writer_that_changed_the_file_during_its_read_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: a writer holding a mapping it dirtied before the scan
    rewrites what was read (no fault, so no new ctime) and closes before the
    scan checks for writers; the cache then answered for the rewritten file.
    Writers are looked for before the first byte is read."""
    rules = RulesConfig(
        dirs=(str(MARKER_RULES),), local_dirs=(), compiled_dir=str(tmp_path / "compiled")
    )
    snap = snapshot.build(replace(Config(), rules=rules), None)
    f = tmp_path / "f"
    f.write_bytes(b"." * 4096)
    writer = os.open(f, os.O_RDWR)
    mapping = mmap.mmap(writer, 0)
    mapping[0:1] = b"."  # dirty and writable from now on: the fault set the ctime
    time.sleep(0.05)  # older than the freshness window
    examine = snap.detector.examine

    def rewritten_during_the_read(*args: Any) -> Any:
        finding = examine(*args)  # the clean bytes, read and scanned
        mapping[0 : len(MARKER)] = MARKER
        mapping.close()
        os.close(writer)
        return finding

    monkeypatch.setattr(snap.detector, "examine", rewritten_during_the_read)
    monkeypatch.setattr(scan, "_CACHE", scan.CleanCache(tmp_path / "c", _keys(), set(), False))
    ctime = f.stat().st_ctime_ns
    kind, (_, key) = scan.examine_path(snap, str(f), False)
    assert kind == "clean" and f.read_bytes().startswith(MARKER)
    if f.stat().st_ctime_ns != ctime:
        pytest.skip(f"{tmp_path}: a write to a dirty mapped page set a new ctime here")
    assert key is None, "a file rewritten during its scan was remembered clean"


def test_a_path_rule_verdict_is_keyed_on_the_path_the_rule_saw(tmp_path: Path) -> None:
    """Found by review: the key held the path as typed, relative for ``vigild scan
    dir``, while a rule reads the absolute path. The same inode at the same relative
    path from another directory (a hard link here, a bind mount alike) was answered
    clean without the rule ever seeing the other absolute path."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "path.yar").write_text('rule under_b { condition: filepath contains "/b/" }\n')
    for d in ("a", "b"):
        (tmp_path / d / "sub").mkdir(parents=True)
    (tmp_path / "a" / "sub" / "f").write_bytes(b"plain\n")
    os.link(tmp_path / "a" / "sub" / "f", tmp_path / "b" / "sub" / "f")
    time.sleep(0.05)  # the link set the ctime: wait out the freshness window
    config = tmp_path / "vigild.toml"
    config.write_text(f'[rules]\ncompiled_dir = "{tmp_path / "daemon"}"\nlocal_dirs = []\n')

    def scan_sub(cwd: str) -> subprocess.CompletedProcess[str]:
        argv = [VIGILD, "scan", "--config", str(config), "--compiled-dir", str(tmp_path / "scan")]
        argv += ["--rules", str(rules), "--no-progress", "--infected", "sub"]
        return subprocess.run(argv, cwd=tmp_path / cwd, capture_output=True, text=True, timeout=120)

    first = scan_sub("a")
    assert first.returncode == 0, first.stdout + first.stderr
    second = scan_sub("b")
    assert second.returncode == 1 and "under_b" in second.stdout, second.stdout + second.stderr


@pytest.mark.parametrize("overlay", [False, True], ids=["tmpfs", "overlay-of-tmpfs"])
def test_a_file_on_tmpfs_is_never_remembered(
    tmpfs_dir: Path, overlay_of: Callable[[Path], Path], overlay: bool
) -> None:
    """Found by review: on tmpfs a page mapped at a read fault is writable, and
    writes through it set no ctime, so a key there proves nothing after the scan;
    an overlay shows such an upper file's ctime, and its files may carry a device
    number that mountinfo does not list."""
    where = overlay_of(tmpfs_dir) if overlay else tmpfs_dir
    f = where / "f"
    f.write_bytes(b"clean")
    fd = os.open(f, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        keys = scancache.Keys(b"s" * 16, {}, fresh_ms=20)
        assert keys.after_clean(fd, st, st.st_ctime_ns + 10**9, True) is None
    finally:
        os.close(fd)


@pytest.mark.parametrize("fstype", ["ext4", "btrfs", "xfs", "tmpfs"])
def test_only_uuid_derived_fsids_name_a_filesystem_across_boots(
    tmp_path: Path, fstype: str
) -> None:
    st = os.stat(tmp_path)
    keys = scancache.Keys(b"s" * 16, {st.st_dev: fstype}, 20)
    ident = keys._filesystem(st.st_dev, os.statvfs(tmp_path))
    stable = fstype in ("ext4", "btrfs")
    assert ident.startswith(b"fsid:" if stable else b"boot:"), ident
