"""Fixtures of the system test: the packages as `make deb`/`make rpm` build
them, and the cached Debian rootfs. The container itself is made in
test_package_deb.py, one per run.

Skips, each with its reason, only where this machine cannot do the test:
not root, no fanotify permission events, or tools / the rootfs to fetch
and no network to the package registry. Anything else that goes wrong
fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sysharness
from sysharness import EXIT_NO_TOOLS, TIMINGS, timed

HOST_TOOLS = ("mmdebstrap", "systemd-container")


def _machine_can_boot() -> str | None:
    if os.geteuid() != 0:
        return "needs root: systemd-nspawn, cgroups and fanotify permission events"
    return sysharness.fanotify_permission_events()


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: building and unpacking packages as root")


@pytest.fixture(scope="session")
def packages_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packages")


def _build(script: str, out: Path, what: str) -> None:
    with timed(what):
        r = sysharness.build_package(script, out)
    if r.returncode == EXIT_NO_TOOLS and not sysharness.registry_reachable():
        pytest.skip(f"{script}: build tools missing and no network to the package registry")
    assert r.returncode == 0, (
        f"{script} failed ({r.returncode}):\n{r.stdout[-6000:]}{r.stderr[-4000:]}"
    )


@pytest.fixture(scope="session")
def deb(packages_dir: Path) -> Path:
    """The .deb, built by packaging/build-deb.sh (lintian included) into a temporary dist/."""
    need_root()
    _build("build-deb.sh", packages_dir, "build .deb + lintian")
    found = sorted((packages_dir / "dist").glob("vigild_*.deb"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="session")
def rpm(packages_dir: Path) -> Path:
    """The .rpm, built by packaging/build-rpm.sh (rpmlint included) into a temporary dist/."""
    need_root()
    _build("build-rpm.sh", packages_dir, "build .rpm + rpmlint")
    found = [
        p for p in (packages_dir / "dist").glob("vigild-*.rpm") if not p.name.endswith(".src.rpm")
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="session")
def rootfs() -> Path:
    """The cached bookworm rootfs (built on first use), with the host tools to boot it."""
    reason = _machine_can_boot()
    if reason:
        pytest.skip(reason)
    missing = sysharness.missing_debs(HOST_TOOLS)
    need_network = bool(missing) or sysharness.cached_rootfs() is None
    if need_network and not sysharness.registry_reachable():
        pytest.skip(
            "no network to the package registry to "
            + (f"install {', '.join(missing)}" if missing else "build the Debian rootfs")
        )
    if missing:
        with timed("install host tools"):
            sysharness.apt_install(missing)
    with timed("rootfs"):
        fs = sysharness.rootfs()
    TIMINGS["rootfs (built)" if fs.built else "rootfs (cached)"] = TIMINGS.pop("rootfs")
    return fs.path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("system test timing")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{what:<34} {seconds:7.1f} s")
    terminalreporter.write_line(f"{'total':<34} {sum(TIMINGS.values()):7.1f} s")
