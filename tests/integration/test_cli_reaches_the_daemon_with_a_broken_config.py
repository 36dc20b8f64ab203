"""A broken config on disk never cuts the admin off from the running daemon.

Regression for issue 11 (5): `status`, `quarantine list` and `rules reload`
read the file to find the daemon and failed with it; a failed reload did
not say why.
"""

from __future__ import annotations

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, _run, needs_fanotify
from support import VIGILD

pytestmark = [needs_fanotify, pytest.mark.root]


def test_status_list_and_reload_work_and_reload_says_file_and_line(
    ns: Namespace, daemon: OnAccess
) -> None:
    daemon.start([TEST_RULES])
    dropin = daemon.tmp / "conf.d" / "50-test.toml"
    dropin.write_text("[onaccess]\nqueue_size = 1\n[policy\n")  # line 3: not TOML
    cfg = ["--config", str(daemon.config)]

    status = _run([VIGILD, "status", *cfg])
    assert status.returncode == 0, status.stderr
    assert "running in block mode" in status.stdout
    assert f"warning: {dropin}: line 3:" in status.stderr

    listing = _run([VIGILD, "quarantine", "list", *cfg])
    assert listing.returncode == 0, listing.stderr

    reload = _run([VIGILD, "rules", "reload", *cfg], timeout=60)
    assert reload.returncode == 2
    assert f"reload failed, the previous rules stay live: {dropin}: line 3:" in reload.stderr
    assert daemon.status()["rules"]["reload_failures"] == 1
