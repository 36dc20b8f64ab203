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

import subprocess
from pathlib import Path
from typing import Any

import support

DEFAULT_TIMEOUT = 60.0


def fanotify_unavailable() -> str | None:
    """None when fanotify permission events can be used here, else why not."""
    return support.fanotify_unavailable()


class PrivateTmpfs(support.PrivateMount):
    """The shared private tmpfs (tests/support.py), with the benchmark's run/popen."""

    def __init__(self, root: Path, size: str = "1g") -> None:
        super().__init__(root, size=size, label="vigild-bench")

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
