"""``vigild quarantine restore`` never follows a symbolic link, to the original path or --to.

A user who owns a directory on the way must not choose where root writes.
Every test builds its own "etc": a root-owned directory standing for /etc,
which must come out untouched; the real /etc is never involved. The
user is uid 65534 (nobody); its directories are only chowned, never used
by it, so the tests need no login and no other process.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import VIGILD, vigild
from vigild.quarantine import Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the quarantine is root's: needs root")

NOBODY = 65534
BYTES = b"#!/bin/sh\necho quarantined\n"


@dataclass
class Setup:
    config: Path
    store: Store
    item_id: str
    original: Path
    etc: Path  # root-owned, stands for /etc
    user: Path  # owned by nobody

    def restore(self, *args: str) -> tuple[int, list[str]]:
        r = vigild("quarantine", "restore", self.item_id, "--config", str(self.config), *args)
        return r.returncode, r.stderr.splitlines()

    def still_quarantined(self) -> bool:
        r = vigild("quarantine", "list", "--json", "--config", str(self.config))
        return [json.loads(line)["id"] for line in r.stdout.splitlines()] == [self.item_id]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    config = tmp_path / "vigild.toml"
    config.write_text(f'[daemon]\nquarantine_dir = "{tmp_path / "q"}"\n')
    store = Store(str(tmp_path / "q"))
    store.prepare()
    src = tmp_path / "src"
    src.mkdir()
    original = src / "evil.sh"
    original.write_bytes(BYTES)
    fd = os.open(original, os.O_RDONLY)
    try:
        item = store.add(fd, str(original), "rule-match", "Evil_Rule", ("Evil_Rule",))
    finally:
        os.close(fd)
    assert item is not None
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o755)
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    user = tmp_path / "u"
    user.mkdir(mode=0o755)
    os.chown(user, NOBODY, NOBODY)
    return Setup(config, store, item.id, original, etc, user)


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_link_to_a_directory_on_the_way_is_not_followed(setup: Setup, force: list[str]) -> None:
    """ln -s /etc /tmp/u/dir; restore --to /tmp/u/dir/x must not write /etc/x."""
    (setup.user / "dir").symlink_to(setup.etc)
    code, err = setup.restore("--to", str(setup.user / "dir" / "x"), *force)
    assert code == 2
    assert err == [
        f"vigild: {setup.user / 'dir'} is a symbolic link: restore never follows one "
        "(give a path without links with --to PATH)"
    ]
    assert sorted(p.name for p in setup.etc.iterdir()) == ["passwd"]
    assert setup.still_quarantined()


@pytest.mark.parametrize(("owner", "force"), [(0, []), (NOBODY, ["--force"])])
def test_a_dangling_link_at_the_target_is_not_followed(
    setup: Setup, owner: int, force: list[str]
) -> None:
    here = setup.user.parent / f"d{owner}"
    here.mkdir(mode=0o755)
    os.chown(here, owner, owner)
    (here / "new").symlink_to(setup.etc / "new")
    code, err = setup.restore("--to", str(here / "new"), *force)
    assert code == 2
    assert err == [
        f"vigild: {here / 'new'} is a symbolic link: restore never follows nor replaces one "
        "(remove it, or --to PATH elsewhere)"
    ]
    assert not (setup.etc / "new").exists()
    assert (here / "new").is_symlink()
    assert setup.still_quarantined()


def test_force_does_not_replace_a_root_file_through_a_link(setup: Setup) -> None:
    (setup.user / "passwd").symlink_to(setup.etc / "passwd")
    code, err = setup.restore("--to", str(setup.user / "passwd"), "--force")
    assert code == 2
    assert err[0].startswith(f"vigild: {setup.user / 'passwd'} is a symbolic link")
    assert (setup.etc / "passwd").read_text() == "root:x:0:0::/root:/bin/sh\n"
    assert setup.still_quarantined()


def test_a_link_now_at_the_original_name_is_not_followed(setup: Setup) -> None:
    setup.original.symlink_to(setup.etc / "evil.sh")
    code, err = setup.restore("--force")
    assert code == 2
    assert err[0].startswith(f"vigild: {setup.original} is a symbolic link")
    assert not (setup.etc / "evil.sh").exists()
    assert setup.still_quarantined()


@pytest.mark.parametrize(
    ("owner", "mode", "shown"),
    [(NOBODY, 0o755, "owner uid 65534, mode 0755"), (0, 0o775, "owner uid 0, mode 0775"),
     (0, 0o1777, "owner uid 0, mode 1777")],
)  # fmt: skip
def test_to_into_a_directory_others_can_write_needs_force(
    setup: Setup, owner: int, mode: int, shown: str
) -> None:
    """Restored as quarantined (root-owned, set-id bits and all), the file is theirs to play with."""
    here = setup.user.parent / "shared"
    here.mkdir()
    os.chown(here, owner, owner)
    os.chmod(here, mode)
    code, err = setup.restore("--to", str(here / "inspect.sh"))
    assert code == 2
    assert err == [
        f"vigild: {here}: other users can write there ({shown}); "
        "restore with --force to do it anyway"
    ]
    assert not (here / "inspect.sh").exists()
    code, err = setup.restore("--to", str(here / "inspect.sh"), "--force")
    assert (code, err) == (0, [])
    assert (here / "inspect.sh").read_bytes() == BYTES


def test_to_a_root_directory_and_back_to_the_original_work(setup: Setup) -> None:
    code, err = setup.restore("--to", str(setup.etc / "inspect.sh"))
    assert (code, err) == (0, [])
    assert (setup.etc / "inspect.sh").read_bytes() == BYTES
    assert not setup.still_quarantined()


def test_relative_to_is_taken_from_the_working_directory(setup: Setup) -> None:
    r = subprocess.run(
        [VIGILD, "quarantine", "restore", setup.item_id, "--config", str(setup.config),
         "--to", "x.sh"],
        capture_output=True, text=True, timeout=60, cwd=setup.etc,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"restored {setup.item_id} to {setup.etc / 'x.sh'}\n"
    assert (setup.etc / "x.sh").read_bytes() == BYTES
