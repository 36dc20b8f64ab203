"""Fixtures of the system test: the packages as `make deb`/`make rpm` build
them, and the cached Debian rootfs of each release (sysharness.SUITES). The
container itself is made in test_package_deb.py, one per release.

Skips, each with its reason, only where this machine cannot do the test:
not root, no fanotify permission events, or tools / the rootfs to fetch
and no network to the package registry. Anything else that goes wrong
fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


def _build(script: str, out: Path, what: str, *args: str | Path) -> None:
    with timed(what):
        r = sysharness.build_package(script, out, *map(str, args))
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


def _debian_rootfs(suite: str, include: tuple[str, ...] | None = None) -> Path:
    """The cached rootfs of ``suite`` (built on first use), skipped with the
    reason when this host cannot build it."""
    missing = sysharness.missing_debs(HOST_TOOLS)
    need_network = bool(missing) or sysharness.cached_rootfs(suite, include) is None
    if need_network and not sysharness.registry_reachable(suite=suite):
        pytest.skip(
            f"no network to the package registry (Debian {suite}) to "
            + (f"install {', '.join(missing)}" if missing else f"build the {suite} rootfs")
        )
    if missing:
        with timed("install host tools"):
            sysharness.apt_install(missing)
    what = f"{suite} build rootfs" if include else f"{suite} rootfs"
    with timed(what):
        fs = sysharness.rootfs(suite, include)
    TIMINGS[f"{what} ({'built' if fs.built else 'cached'})"] = TIMINGS.pop(what)
    return fs.path


def bootable_rootfs(suite: str) -> Path:
    """The rootfs of ``suite`` to boot, with the host checks of a booted test."""
    reason = _machine_can_boot()
    if reason:
        pytest.skip(reason)
    return _debian_rootfs(suite)


@pytest.fixture(scope="session")
def rootfs() -> Path:
    """The cached bookworm rootfs (built on first use), with the host tools to boot it."""
    return bootable_rootfs(sysharness.SUITE)


@pytest.fixture(scope="session")
def release_rootfs() -> Callable[[str], Path]:
    """The bootable rootfs of a Debian release, by suite (skips as ``rootfs`` does)."""
    return bootable_rootfs


@pytest.fixture(scope="session")
def release_deb(packages_dir: Path, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """The .deb for a Debian release, by suite: the host's own release is the
    ``deb`` fixture; another is built inside a rootfs of that release with the
    build tools installed (for its Python and libraries), once per run."""
    built: dict[str, Path] = {}

    def get(suite: str) -> Path:
        if suite == sysharness.host_suite():
            return Path(request.getfixturevalue("deb"))
        if suite not in built:
            need_root()
            root = _debian_rootfs(suite, sysharness.build_tools())
            out = packages_dir / suite
            _build("build-deb.sh", out, f"build .deb + lintian ({suite}, inside)", "--root", root)
            found = sorted((out / "dist").glob("vigild_*.deb"))
            assert len(found) == 1, found
            built[suite] = found[0]
        return built[suite]

    return get


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("system test timing")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{what:<44} {seconds:7.1f} s")
    terminalreporter.write_line(f"{'total':<44} {sum(TIMINGS.values()):7.1f} s")
