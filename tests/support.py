"""Helpers shared by the test suites (imported as ``support``)."""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
VIGILD = str(Path(sys.executable).with_name("vigild"))

# The EICAR test string, kept reversed so that the checkout itself does not
# trip other scanners; eicar() rebuilds it at run time.
_EICAR_REVERSED = rb"*H+H$!ELIF-TSET-SURIVITNA-DRADNATS-RACIE$}7)CC7)^P(45XZP\4[PA@%P!O5X"
MARKER = b"VIGILD-TEST-MARKER-7f3a"  # matched by tests/data/rules/marker.yar


def eicar() -> bytes:
    """The 68-byte EICAR anti-virus test file."""
    return _EICAR_REVERSED[::-1]


def vigild(
    *args: str, user: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``vigild`` command; ``user`` drops root with setpriv."""
    cmd = [VIGILD, *args]
    if user is not None:
        pw = pwd.getpwnam(user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *cmd]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def skip_where_the_scan_cache_keeps_nothing(path: Path) -> None:
    """Skip a test of ``vigild scan``'s clean cache on tmpfs, ramfs, hugetlbfs or an
    overlay: writes through a mapping may set no ctime there, so no key is kept."""
    import pytest

    from vigild import native

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        proof = native.ctime_proof(fd)
    finally:
        os.close(fd)
    if proof != native.CTIME_PROVES:
        pytest.skip(f"{path} is on tmpfs or an overlay, where vigild scan keeps no key")


def fanotify_unavailable() -> str | None:
    """None when this process can use fanotify permission events, else why not (a skip reason)."""
    if os.geteuid() != 0:
        return "needs root (CAP_SYS_ADMIN) for fanotify permission events"
    missing = [t for t in ("unshare", "nsenter", "mount", "umount") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (util-linux, mount)"
    libc = ctypes.CDLL(None, use_errno=True)
    fan_class_content, o_rdonly = 0x04, 0
    fd = libc.fanotify_init(fan_class_content, o_rdonly)
    if fd < 0:
        return f"fanotify permission events unavailable here: {os.strerror(ctypes.get_errno())}"
    os.close(fd)
    return None


class PrivateMount:
    """A private mount namespace, held open by a ``sleep``, with one fresh tmpfs at ``mnt``.

    Everything that must see the tmpfs (the daemon, openers, listeners)
    enters with ``cmd(...)``: nsenter execs the command, so its pid is the
    Popen's. Only this tmpfs is ever marked, never ``/`` or the checkout.
    ``close`` unmounts it and kills the holder (the namespace ends with
    it); the caller stops its own processes first, by pid.
    """

    def __init__(self, root: Path, size: str = "768m", label: str = "vigild-test") -> None:
        self.root = root
        self.mnt = root / "mnt"
        self.mnt.mkdir()
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"]
        )
        try:
            self._wait_for_namespace()
            r = subprocess.run(
                self.cmd("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", label, str(self.mnt)),
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            if r.returncode:
                raise RuntimeError(f"mounting the test tmpfs failed: {r.stderr.strip()}")
        except BaseException:
            self._kill_holder()
            raise

    def _wait_for_namespace(self) -> None:
        mine = os.readlink("/proc/self/ns/mnt")
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != mine:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("unshare did not create a mount namespace")

    def cmd(self, *args: str) -> list[str]:
        """``args`` to run inside the namespace."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", *args]

    def close(self) -> None:
        try:
            subprocess.run(self.cmd("umount", "-l", str(self.mnt)), capture_output=True, timeout=20)
        finally:
            self._kill_holder()

    def _kill_holder(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(10)
