"""Which files the ``[onaccess] interpreters`` list names, and what reaches the C reader."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from vigild import interpreters, snapshot
from vigild.config import INTERPRETERS, Config, ConfigError, load


def _elf(path: Path) -> bytes:
    true = shutil.which("true")
    assert true is not None
    shutil.copy(true, path)
    return hashlib.sha256(path.read_bytes()).digest()


def test_names_and_globs_resolve_to_elf_files_once(tmp_path: Path) -> None:
    bin_ = tmp_path / "bin"
    lib = tmp_path / "lib"
    bin_.mkdir()
    lib.mkdir()
    sha = _elf(lib / "python3.99")
    (bin_ / "python3").symlink_to(lib / "python3.99")
    (bin_ / "python3.99").symlink_to(lib / "python3.99")
    (bin_ / "python3-config").write_text("#!/bin/sh\necho not a program\n")
    found = interpreters.resolve(["python3*", "perl"], [str(bin_)])
    assert [i.path for i in found.found] == [str(lib / "python3.99")]  # linked twice, one file
    st = os.stat(lib / "python3.99")
    assert found.ids == ((st.st_dev, st.st_ino),)
    assert found.digests == (sha,)
    assert found.could_be(st.st_size) and not found.could_be(st.st_size + 1)


def test_an_absolute_path_is_taken_as_is(tmp_path: Path) -> None:
    _elf(tmp_path / "myinterp")
    assert len(interpreters.resolve([str(tmp_path / "my*")], []).found) == 1


def test_the_usual_directories_include_the_multiarch_ones() -> None:
    dirs = interpreters.search_dirs()
    assert "/usr/bin" in dirs and "/lib64" in dirs
    assert any(d.startswith("/usr/lib/") and d.endswith("-linux-gnu") for d in dirs), dirs


def test_the_config_key(tmp_path: Path) -> None:
    assert Config().onaccess.interpreters == INTERPRETERS
    f = tmp_path / "vigild.toml"
    f.write_text('[onaccess]\ninterpreters = ["python3*", "/opt/x/bin/ruby", "python3*"]\n')
    assert load(f).onaccess.interpreters == ("python3*", "/opt/x/bin/ruby")
    for bad in ('"sh"', '["bin/sh"]', '[""]', "[1]"):
        f.write_text(f"[onaccess]\ninterpreters = {bad}\n")
        with pytest.raises(ConfigError, match="interpreters"):
            load(f)


def test_the_reader_gets_their_inodes_and_hashes(tmp_path: Path) -> None:
    cfg = Config()
    cfg = replace(cfg, onaccess=replace(cfg.onaccess, interpreters=(str(tmp_path / "x*"),)))
    sha = _elf(tmp_path / "xinterp")
    s = snapshot.build(cfg, None).reader_settings(())
    st = os.stat(tmp_path / "xinterp")
    assert s.interp_ids == ((st.st_dev, st.st_ino),) and s.interp_sha256 == (sha,)
    none = replace(cfg, onaccess=replace(cfg.onaccess, interpreters=()))
    s = snapshot.build(none, None).reader_settings(())
    assert s.interp_ids == () and s.interp_sha256 == ()
