"""Fixtures shared by the suites (pytest finds them here; never import this module)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fanrig import Rig, room_for_fds


@pytest.fixture(scope="module")
def fd_room() -> None:
    """Room for the event fds a socketpair rig hands out (RLIMIT_NOFILE)."""
    room_for_fds()


@pytest.fixture
def rigs(fd_room: None) -> Iterator[list[Rig]]:
    """Socketpair rigs a test made: each closed in teardown, also when it failed."""
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


@pytest.fixture
def whole_seconds(tmp_path: Path) -> Iterator[Path]:
    """An ext4 with 128-byte inodes (no room for nanoseconds, as ext2/3 and small
    filesystems made before e2fsprogs 1.46.4), loop-mounted in ``tmp_path``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop filesystem needs root")
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 not installed (Debian package: e2fsprogs)")
    image, mnt = tmp_path / "ext4.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-I", "128", str(image)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no loop mount here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def tmpfs_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own, mounted in ``tmp_path`` (it marks nothing)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "vigild-test", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def overlay_of(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Mounts an overlay whose upper layer is in the directory given (a tmpfs) and
    whose lower layer is another tmpfs, xino off: its files then carry a device
    number of their own. Returns the merged directory; all unmounted in teardown."""
    mounted: list[Path] = []

    def make(upper_fs: Path) -> Path:
        lower, merged = tmp_path / "lower", upper_fs / "merged"
        for d in (lower, upper_fs / "upper", upper_fs / "work", merged):
            d.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "vigild-low", str(lower)], check=True
        )
        mounted.append(lower)
        opts = f"lowerdir={lower},upperdir={upper_fs}/upper,workdir={upper_fs}/work,xino=off"
        made = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], capture_output=True
        )
        if made.returncode != 0:
            pytest.skip(f"no overlay here: {made.stderr.decode().strip()}")
        mounted.append(merged)
        return merged

    yield make
    for m in reversed(mounted):
        subprocess.run(["umount", "-l", str(m)], check=True)
