"""A booted Debian for the system test: rootfs cache, systemd-nspawn, nsenter.

What this owns: the cached rootfs under /var/cache/vigild-test (never in
the checkout), one per Debian release and package list, side by side: the
booted ones (bookworm, trixie) and the build tree of a release whose .deb
is not built on the host (trixie, with the build tools); one container per
test module and release, and that container's cgroup. What it must not
touch: the host's own filesystems. Each rootfs is built by mmdebstrap from
the host's own apt mirror (its sources file, the release name swapped),
under a lock, into a .tmp tree renamed into place when complete.
The container boots with ``--volatile=overlay``: its root is an overlayfs
with a tmpfs upper layer, so a fanotify filesystem mark taken inside marks
that overlay, never the host's root (RECIPES: a mark inside a container on
a plain directory marked the host's root and denied the host's own
``cat``). The cached rootfs is only ever the read-only lower layer.

Every command has a timeout. ``Machine.stop`` ends the container by the
pid of its systemd-nspawn (SIGTERM, then SIGKILL to it and to the
container's init), then removes the cgroup it ran in; it runs also when a
test failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import support
from support import REPO

CACHE = Path("/var/cache/vigild-test")
SUITE = "bookworm"  # the suite a Machine or rootfs() gets when none is named
# The Debian releases the .deb is built for and boot-tested on: 12 and 13.
SUITES = ("bookworm", "trixie")
# minbase plus a booting systemd, plus every Depends of the vigild package
# that minbase lacks: installed here so that `apt-get install ./vigild.deb`
# inside the container needs no network; plus the fleet parts the README
# names, which the test runs inside the booted host (journal-upload to a
# journal-remote, node_exporter's textfile collector). Changing this list
# (or RECIPE) builds a new rootfs.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "procps",
    "python3",
    "python3-cffi-backend",
    "python3-pyinotify",
    "python3-systemd",
    "python3-yara",
    "libssl3",
    "openssh-client",  # ssh-keygen -Y verify: vigild update checks feed signatures
    "systemd-journal-remote",
    "prometheus-node-exporter",
)
# Where a release names a package otherwise (trixie's 64-bit time_t rename).
RENAMED = {"trixie": {"libssl3": "libssl3t64"}}
RECIPE = "minbase-1"  # bump when the mmdebstrap command line changes
MAX_AGE = 30 * 86400  # rebuild a cached rootfs after a month (security updates)
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # not the pyenv or venv python
EXIT_NO_TOOLS = 75  # packaging/lib.sh: build tools could not be installed


# ------------------------------------------------------------ timing report

TIMINGS: dict[str, float] = {}


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Record how long ``what`` took, for the summary at the end of the run."""
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS[what] = TIMINGS.get(what, 0.0) + time.monotonic() - start


# ------------------------------------------------------ what this host can do


def fanotify_permission_events() -> str | None:
    """None when fanotify permission events work here, else why not."""
    return support.fanotify_unavailable()


def apt_sources() -> Path | None:
    """The host's apt sources file, passed to mmdebstrap as its mirror."""
    for path in SOURCES:
        if path.is_file() and path.read_text().strip():
            return path
    return None


def _mirror_urls(sources: Path) -> list[str]:
    text = sources.read_text()
    urls = re.findall(r"^URIs:\s*(\S+)", text, re.M)  # deb822
    urls += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M)  # one-line format
    return [u.rstrip("/") for u in urls if u.startswith(("http://", "https://"))]


def host_suite() -> str:
    """The codename of the Debian release this host runs ("bookworm")."""
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return found.group(1) if found else ""


def registry_reachable(timeout: float = 10, suite: str = SUITE) -> bool:
    """True when the first mirror of the host's apt sources answers for ``suite``."""
    sources = apt_sources()
    if sources is None:
        return False
    for url in _mirror_urls(sources)[:1]:
        req = urllib.request.Request(f"{url}/dists/{suite}/Release", method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=timeout):
                return True
        except OSError:
            return False
    return False


def missing_debs(packages: Sequence[str]) -> list[str]:
    """The packages of ``packages`` that dpkg does not list as installed."""
    out = []
    for p in packages:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, timeout=30
        )
        if "install ok installed" not in r.stdout:
            out.append(p)
    return out


def apt_install(packages: Sequence[str]) -> None:
    """Install ``packages`` with apt (only called for missing ones)."""
    env = {**os.environ, "PATH": CLEAN_PATH, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        subprocess.run(cmd, check=True, capture_output=True, timeout=600, env=env)


# ---------------------------------------------------------------- packages


def build_package(
    script: str, out: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run packaging/build-{deb,rpm}.sh ``args`` with its output and build tree in ``out``."""
    env = {
        **os.environ,
        "VIGILD_DIST_DIR": str(out / "dist"),
        "VIGILD_BUILD_DIR": str(out / "build"),
    }
    return subprocess.run(
        [str(REPO / "packaging" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def build_tools() -> tuple[str, ...]:
    """The packages packaging/build-deb.sh needs to build and lint the .deb."""
    r = subprocess.run(
        [str(REPO / "packaging/build-deb.sh"), "--tools"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return tuple(r.stdout.split())


# ---------------------------------------------------------------- the rootfs


def packages(suite: str = SUITE) -> tuple[str, ...]:
    """The packages of the booted rootfs of ``suite``: PACKAGES, by that release's names."""
    renamed = RENAMED.get(suite, {})
    return tuple(renamed.get(p, p) for p in PACKAGES)


def rootfs_key(suite: str = SUITE, include: Sequence[str] | None = None) -> str:
    """The cache key of a rootfs: its suite, RECIPE and package list (default: packages())."""
    wanted = packages(suite) if include is None else include
    spec = {"suite": suite, "recipe": RECIPE, "packages": sorted(wanted)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Rootfs:
    path: Path
    built: bool  # False: taken from the cache


def cached_rootfs(suite: str = SUITE, include: Sequence[str] | None = None) -> Path | None:
    """The cached rootfs for this suite and package list, if one is complete and fresh."""
    path = CACHE / f"rootfs-{rootfs_key(suite, include)}"
    done = path.with_name(path.name + ".complete")
    if path.is_dir() and done.exists() and time.time() - done.stat().st_mtime < MAX_AGE:
        return path
    return None


def _remove_stale() -> None:
    """Remove half-built trees and entries past MAX_AGE (called with the lock
    held, so no other build is under way). Fresh entries for other suites or
    package lists stay: another checkout on this machine may be using them."""
    for old in CACHE.glob("rootfs-*"):
        if old.suffix == ".complete":
            if not old.with_suffix("").exists():
                old.unlink()  # its tree is gone
            continue  # else removed with its tree
        done = old.with_name(old.name + ".complete")
        fresh = done.exists() and time.time() - done.stat().st_mtime < MAX_AGE
        if old.suffix != ".tmp" and fresh:
            continue
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
        done.unlink(missing_ok=True)


def suite_sources(suite: str, dest: Path) -> Path:
    """The host's apt sources, with the host's release swapped for ``suite``,
    written to ``dest`` (same format): mmdebstrap's mirror for that suite."""
    sources = apt_sources()
    assert sources is not None, "no apt sources on this host"
    host = host_suite()
    if suite == host:
        return sources
    assert host, "the host's os-release names no VERSION_CODENAME to swap for " + suite
    path = dest / f"{suite}{sources.suffix}"
    path.write_text(re.sub(rf"\b{host}\b", suite, sources.read_text()))
    return path


def rootfs(suite: str = SUITE, include: Sequence[str] | None = None) -> Rootfs:
    """The rootfs of ``suite`` with ``include`` (default: packages(suite)) installed,
    built once with mmdebstrap and cached under CACHE; entries for other
    suites stay side by side."""
    wanted = packages(suite) if include is None else tuple(include)
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it
        path = cached_rootfs(suite, wanted)
        if path is not None:
            return Rootfs(path, built=False)
        path = CACHE / f"rootfs-{rootfs_key(suite, wanted)}"
        _remove_stale()
        tmp = path.with_name(path.name + ".tmp")
        tmp.mkdir()
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(wanted)}",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            suite,
            str(tmp / "root"),
            str(suite_sources(suite, tmp)),
        ]
        env = {**os.environ, "PATH": CLEAN_PATH}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise AssertionError(f"mmdebstrap {suite} failed ({r.returncode}):\n{r.stderr[-4000:]}")
        (tmp / "root").rename(path)
        shutil.rmtree(tmp)
        spec = {"suite": suite, "recipe": RECIPE, "packages": sorted(wanted)}
        path.with_name(path.name + ".complete").write_text(json.dumps(spec) + "\n")
        return Rootfs(path, built=True)


# ------------------------------------------------------------- the container


@dataclass
class Machine:
    """A container booted from ``rootfs`` with ``pkgdir`` bound read-only at /mnt/vigild-pkg."""

    rootfs: Path
    pkgdir: Path
    log: Path
    name: str = field(default_factory=lambda: f"vigild-test-{os.getpid()}")
    proc: subprocess.Popen[bytes] | None = None
    init_pid: int = 0
    _cgroups: list[Path] = field(default_factory=list)

    PKG_MOUNT = "/mnt/vigild-pkg"

    def boot(self, timeout: float = 90) -> None:
        """Start systemd-nspawn in a cgroup of its own; return once systemd is up."""
        self._make_cgroups()
        nspawn = [
            "systemd-nspawn",
            "--register=no",  # no machined on the host
            "--keep-unit",  # no systemd on the host to make a scope
            "--quiet",
            "--boot",
            f"--directory={self.rootfs}",
            f"--machine={self.name}",
            "--console=passive",
            # The fanotify safety: the root is an overlay with a tmpfs upper
            # layer, so marks inside never reach the host's root filesystem.
            "--volatile=overlay",
            # nspawn's own filter otherwise answers fanotify_init with EPERM.
            "--system-call-filter=fanotify_init fanotify_mark",
            # Nothing leaves the container; the test needs no network inside.
            "--private-network",
            f"--bind-ro={self.pkgdir}:{self.PKG_MOUNT}",
        ]
        # Join our own cgroup first, so that nspawn's payload/supervisor
        # cgroups live below it and are removed with it.
        join = "".join(f'echo $$ > "{cg}/cgroup.procs" && ' for cg in self._cgroups)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", f'{join}exec "$@"', "sh", *nspawn],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PATH": CLEAN_PATH},
            )
        end = time.monotonic() + timeout
        self.init_pid = self._wait_for_init(end)
        self._wait_for(
            lambda: Path(f"/proc/{self.init_pid}/root/run/systemd/private").exists(), end
        )
        left = max(1.0, end - time.monotonic())
        r = self.run("systemctl", "is-system-running", "--wait", timeout=left, check=False)
        if r.stdout.strip() not in ("running", "degraded"):
            raise AssertionError(f"container did not boot: {r.stdout}{r.stderr}\n{self.console()}")

    def _make_cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            cg = hierarchy / self.name
            cg.mkdir(exist_ok=True)
            self._cgroups.append(cg)

    def _wait_for(self, ready: Callable[[], bool], end: float) -> None:
        while time.monotonic() < end:
            if ready():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"systemd-nspawn exited {self.proc.returncode}:\n{self.console()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"timed out booting the container:\n{self.console()}")

    def _wait_for_init(self, end: float) -> int:
        """The pid (as the host sees it) of the container's PID 1."""
        found: list[int] = []

        def look() -> bool:
            assert self.proc is not None
            for status in Path("/proc").glob("[0-9]*/status"):
                with contextlib.suppress(OSError):
                    text = status.read_text()
                    ppid = re.search(r"^PPid:\s*(\d+)", text, re.M)
                    nspid = re.search(r"^NSpid:\s*(.*)$", text, re.M)
                    if (
                        ppid
                        and nspid
                        and int(ppid.group(1)) == self.proc.pid
                        and nspid.group(1).split()[-1] == "1"
                    ):
                        found.append(int(status.parent.name))
                        return True
            return False

        self._wait_for(look, end)
        return found[0]

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    # ------------------------------------------------------------ commands

    def run(
        self,
        *cmd: str,
        input: bytes | str | None = None,
        timeout: float = 60,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the container (all its namespaces), with a clean environment."""
        full = [
            "nsenter",
            "-t",
            str(self.init_pid),
            "-a",
            "--",
            "/usr/bin/env",
            "-i",
            f"PATH={CLEAN_PATH}",
            "LANG=C.UTF-8",
            "SYSTEMD_COLORS=0",
            *cmd,
        ]
        data = input.encode() if isinstance(input, str) else input
        r = subprocess.run(full, input=data, capture_output=True, timeout=timeout)
        res = subprocess.CompletedProcess(
            r.args,
            r.returncode,
            r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"),
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({r.returncode}):\n{res.stdout}{res.stderr}"
            )
        return res

    def sh(
        self, script: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run("/bin/sh", "-c", script, timeout=timeout, check=check)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Create ``path`` inside the container with ``data``.

        The mode comes from the umask, so the file never exists with another
        one (vigild may quarantine it the moment it is closed); execute
        bits, which no umask gives, are added afterwards.
        """
        script = f'umask {~mode & 0o777:03o} && cat > "$1"'
        if mode & 0o111:
            script += f' && chmod {mode:o} "$1"'
        self.run("/bin/sh", "-c", script, "sh", path, input=data)

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def journal(self, *match: str) -> list[dict[str, Any]]:
        """Journal entries (``journalctl -o json``) matching ``match``."""
        r = self.run("journalctl", "--no-pager", "-o", "json", *match)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    # ------------------------------------------------------------ stopping

    def stop(self, timeout: float = 30) -> None:
        """Stop the container by its pid and remove its cgroups; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to halt
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.init_pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.init_pid, signal.SIGKILL)  # ends its whole pid namespace
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        for cg in self._cgroups:
            _remove_cgroup(cg)
        self._cgroups = []


def _cgroup_hierarchies() -> list[Path]:
    """Where systemd-nspawn keeps the container: cgroup2, and on a hybrid host
    (like this one) also the named systemd hierarchy."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # pure cgroup2
        return [base]
    return [p for p in (base / "unified", base / "systemd") if (p / "cgroup.procs").exists()]


def _remove_cgroup(cg: Path, timeout: float = 10) -> None:
    """Remove ``cg`` and everything below it, once the processes in it are gone."""
    end = time.monotonic() + timeout
    while cg.exists():
        dirs = sorted((d for d in cg.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*dirs, cg]:
            with contextlib.suppress(FileNotFoundError, OSError):
                d.rmdir()
        if not cg.exists() or time.monotonic() > end:
            break
        time.sleep(0.1)
    if cg.exists():
        raise AssertionError(f"cgroup {cg} still busy after the container stopped")
