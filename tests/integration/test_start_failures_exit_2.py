"""Start failures a restart cannot fix exit 2, with one line that names the cause.

Regression for issue 11 (6): these exited 1, so the unit's
RestartPreventExitStatus=2 did not stop a restart loop, and messages showed
a raw "[Errno 1]".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, _run, needs_fanotify
from support import VIGILD

pytestmark = [needs_fanotify, pytest.mark.root]


def _start(daemon: OnAccess, *extra: str, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    r = _run([*prefix, *daemon.command([TEST_RULES]), *extra], timeout=60)
    assert "Traceback" not in r.stderr and "[Errno" not in r.stderr, r.stderr
    return r.returncode, r.stderr


def test_a_corrupted_hash_database(ns: Namespace, daemon: OnAccess, tmp_path: Path) -> None:
    db = tmp_path / "bad.vhdb"
    db.write_bytes(b"VIGHASH\0" + bytes(200))
    daemon.write_config(f'[rules]\nhashes = ["{db}"]\n')
    code, err = _start(daemon)
    assert code == 2, err
    assert str(db) in err


def test_no_watched_path_exists(ns: Namespace, daemon: OnAccess, tmp_path: Path) -> None:
    daemon.write_config()
    r = _run([VIGILD, "run", "--config", str(daemon.config), "--watch", str(tmp_path / "gone")])
    assert r.returncode == 2, r.stderr
    assert "none of the watched paths exists" in r.stderr


def test_block_mode_without_the_capability(ns: Namespace, daemon: OnAccess) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    daemon.write_config()
    # root without CAP_SYS_ADMIN in its bounding set: fanotify_init is refused
    code, err = _start(daemon, "--mode", "block", prefix=("setpriv", "--bounding-set=-sys_admin"))
    assert code == 2, err
    assert "fanotify" in err and "Operation not permitted" in err


def test_non_root_with_the_default_directories(ns: Namespace, daemon: OnAccess) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    user = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    r = _run([*user, VIGILD, "run", "--watch", str(ns.root)], timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Permission denied (vigild run needs root" in r.stderr
    assert "[Errno" not in r.stderr
