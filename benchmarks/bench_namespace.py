"""A tmpfs that only the benchmark can see, for real fanotify marks.

The approach of ``tests/integration/conftest.py``, reduced to what the
on-access benchmark needs: a private mount namespace held open by a
``sleep`` started under ``unshare --mount --propagation private``, a fresh
tmpfs mounted in it, and every process that must see the tmpfs (listeners,
the daemon, the opener) started inside with ``nsenter -t PID -m``. Marks
are only ever placed on that tmpfs, never on ``/`` or the checkout.

``close`` unmounts the tmpfs and kills the holder; the caller stops every
process it started in the namespace first (by pid). Every command here has
a timeout.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 60.0


def fanotify_unavailable() -> str | None:
    """None when fanotify permission events can be used here, else why not."""
    if os.geteuid() != 0:
        return "needs root (CAP_SYS_ADMIN) for fanotify permission events"
    missing = [t for t in ("unshare", "nsenter", "mount", "umount") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (util-linux, mount)"
    libc = ctypes.CDLL(None, use_errno=True)
    fan_class_content, o_rdonly = 0x04, 0
    fd = libc.fanotify_init(fan_class_content, o_rdonly)
    if fd < 0:
        return f"fanotify permission events unavailable: {os.strerror(ctypes.get_errno())}"
    os.close(fd)
    return None


class PrivateTmpfs:
    """A private mount namespace with one tmpfs at ``mnt``."""

    def __init__(self, root: Path, size: str = "1g") -> None:
        self.mnt = root / "mnt"
        self.mnt.mkdir()
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"]
        )
        try:
            self._wait_for_namespace()
            self.run(
                [
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    f"size={size},mode=0755",
                    "vigild-bench",
                    str(self.mnt),
                ]
            )
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
        """``args`` run inside the namespace (nsenter execs it: same pid)."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", *args]

    def run(
        self, args: list[str], timeout: float = DEFAULT_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside the namespace to completion; raise on failure if ``check``."""
        r = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)[:200]} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def popen(self, args: list[str], **kw: Any) -> subprocess.Popen[str]:
        """Start ``args`` inside the namespace; the caller stops it by pid."""
        return subprocess.Popen(self.cmd(*args), text=True, **kw)

    def close(self) -> None:
        """Unmount the tmpfs and end the namespace (its last process is the holder)."""
        try:
            subprocess.run(self.cmd("umount", "-l", str(self.mnt)), capture_output=True, timeout=20)
        finally:
            self._kill_holder()

    def _kill_holder(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(10)


def stop(proc: subprocess.Popen[Any], timeout: float = 20.0) -> int:
    """SIGTERM ``proc`` (by its pid), SIGKILL after ``timeout``; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
