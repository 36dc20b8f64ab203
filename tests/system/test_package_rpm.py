"""The .rpm: built, linted, unpacked and read -- NOT booted.

No RPM distribution can be booted on these machines (RECIPES), so this is
all the .rpm gets here: packaging/build-rpm.sh builds it and runs rpmlint
(the ``rpm`` fixture), and this test unpacks it with ``rpm -ivh --nodeps
--noscripts --root DIR``, checks the file list against the .deb's content,
reads the scriptlets, and imports the unpacked Python package once to show
that its compiled module loads and the shipped rules compile. Whether the
service starts under a real RPM distribution's systemd is not tested.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]


def _rpm(*args: str) -> str:
    r = subprocess.run(["rpm", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"rpm {' '.join(args)}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def unpacked(rpm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("rpmroot")
    _rpm("-ivh", "--nodeps", "--noscripts", "--root", str(root), str(rpm))
    yield root


def _sitearch(root: Path) -> Path:
    found = list(root.glob("usr/lib*/python3*/site-packages/vigild"))
    assert len(found) == 1, found
    return found[0]


def test_files_are_where_the_deb_puts_them(unpacked: Path) -> None:
    for path in (
        "usr/bin/vigild",
        "usr/share/vigild/rules/10-eicar.yar",
        "usr/lib/systemd/system/vigild.service",
        "usr/lib/systemd/system/vigild-update.service",
        "usr/lib/systemd/system/vigild-update.timer",
        "usr/lib/tmpfiles.d/vigild.conf",
        "usr/lib/systemd/catalog/vigild.catalog",
        "usr/share/bash-completion/completions/vigild",
        "usr/share/man/man8/vigild.8.gz",
        "usr/share/man/man5/vigild.toml.5.gz",
        "etc/vigild/rules.d",
    ):
        assert (unpacked / path).exists(), path
    assert (_sitearch(unpacked) / "_native.abi3.so").is_file()
    shipped = sorted(p.name for p in (REPO / "rules").glob("*.yar"))
    assert sorted(p.name for p in (unpacked / "usr/share/vigild/rules").iterdir()) == shipped
    assert (unpacked / "etc/vigild/vigild.toml").read_text() == (
        REPO / "packaging/vigild.toml"
    ).read_text()
    for state in ("var/lib/vigild", "var/lib/vigild/compiled", "var/lib/vigild/quarantine"):
        assert stat.S_IMODE(os.stat(unpacked / state).st_mode) == 0o700, state
    assert (unpacked / "usr/bin/vigild").read_text().startswith("#!/usr/bin/python3")


def test_config_file_is_noreplace_and_scriptlets_manage_the_unit(rpm: Path) -> None:
    assert _rpm("-qp", "--configfiles", str(rpm)).split() == ["/etc/vigild/vigild.toml"]
    scripts = _rpm("-qp", "--scripts", str(rpm))
    post, rest = scripts.split("preuninstall scriptlet", 1)
    preun, postun = rest.split("postuninstall scriptlet", 1)
    assert "systemd-tmpfiles --create vigild.conf" in post
    assert "systemctl --no-reload preset vigild.service" in post
    assert "journalctl --update-catalog" in post
    assert "systemctl --no-reload disable --now vigild.service" in preun
    assert "try-restart vigild.service" in postun


def test_unpacked_package_loads_and_compiles_its_rules(unpacked: Path) -> None:
    """The compiled module and the rules, from the unpacked tree, with the host's python3."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(_sitearch(unpacked).parent)}
    r = subprocess.run(
        [
            "/usr/bin/python3",
            "-m",
            "vigild",
            "rules",
            "check",
            "--config",
            str(unpacked / "etc/vigild/vigild.toml"),
            str(unpacked / "usr/share/vigild/rules"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=unpacked,
    )
    assert r.returncode == 0, r.stderr
    assert "rule files OK" in r.stdout
