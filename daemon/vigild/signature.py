"""Feed signatures: OpenSSH's ``ssh-keygen -Y``, against the keys the config pins.

Why OpenSSH signatures: openssh-client is on every server, so an admin
can sign a mirror (``ssh-keygen -Y sign -n vigild-feed -f key file``) and
check a feed by hand with the tool they already trust, and the keys are
the one-line public keys they already handle. vigild writes no crypto.

The allowed-signers file is built from the feed's ``keys`` for each check,
in a private temporary directory; nothing else is trusted. A signature is
first checked on its own (``check-novalidate``), so that a good signature
by a key the feed does not list is told apart from a bad signature.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence

NAMESPACE = "vigild-feed"
_PRINCIPAL = "vigild-feed"
_TIMEOUT = 30
_FINGERPRINT = re.compile(r"key (SHA256:[A-Za-z0-9+/=]+)")


class SignatureError(Exception):
    """The signature is missing, bad, or by a key this feed does not list."""


def verify(data: bytes, sig: bytes, keys: Sequence[str]) -> str:
    """The fingerprint of the listed key that signed ``data``; SignatureError otherwise."""
    with tempfile.TemporaryDirectory(prefix="vigild-sig-") as d:
        signers = os.path.join(d, "allowed_signers")
        sig_path = os.path.join(d, "feed.sig")
        with open(signers, "w") as f:
            f.writelines(f'{_PRINCIPAL} namespaces="{NAMESPACE}" {k}\n' for k in keys)
        with open(sig_path, "wb") as f:
            f.write(sig)
        ok, out = _keygen(["-Y", "verify", "-f", signers, "-I", _PRINCIPAL], sig_path, data)
        if ok:
            return _fingerprint(out)
        alone, out2 = _keygen(["-Y", "check-novalidate"], sig_path, data)
        if alone:
            raise SignatureError(f"signed by a key the feed does not list ({_fingerprint(out2)})")
        raise SignatureError(
            f"bad signature: not made over these bytes for namespace {NAMESPACE!r}"
        )


def _keygen(args: list[str], sig_path: str, data: bytes) -> tuple[bool, str]:
    cmd = ["ssh-keygen", *args, "-n", NAMESPACE, "-s", sig_path]
    try:
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=_TIMEOUT, check=False)
    except FileNotFoundError:
        raise SignatureError("ssh-keygen is not installed (package openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise SignatureError("ssh-keygen did not answer in time") from None
    return r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")


def _fingerprint(text: str) -> str:
    m = _FINGERPRINT.search(text)
    return m.group(1) if m else "unknown key"
