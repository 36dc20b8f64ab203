"""Helpers shared by the test suites (imported as ``support``)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
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
