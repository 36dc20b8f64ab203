"""A reload applies every [policy] key and onaccess.quarantine_on to the next open.

Regression for issue 8: the workers kept the policies computed at start,
so `systemctl reload` after changing them changed no on-access answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onaccess_harness import DEFAULT_RULES, SLOW_RULES, Namespace, OnAccess, _run, needs_fanotify
from support import DATA, VIGILD, eicar
from test_onaccess import _put, _slow_file

pytestmark = [needs_fanotify, pytest.mark.root]

ERROR_RULES = DATA / "engine_error"
LIMITS = '[scan]\ntimeout = 1\nmax_file_size = "1M"\n[onaccess]\ndeadline = "30s"\n'


def _reload(daemon: OnAccess, extra: str) -> None:
    daemon.write_config(extra)
    r = _run([VIGILD, "rules", "reload", "--config", str(daemon.config)], timeout=60)
    assert r.returncode == 0, r.stderr


def _exists(ns: Namespace, path: Path) -> bool:
    return ns.sh(f"test -e {path}", check=False).returncode == 0


def _file_for(ns: Namespace, key: str) -> Path:
    """A file whose answer the policy ``key`` decides."""
    path = ns.mnt / f"{key}.bin"
    if key == "on_error":
        _put(ns, path, b"x" + b"ab" * 2000)  # libyara fails the scan at once
    elif key == "on_timeout":
        _slow_file(ns, path, 6)  # the quadratic rule runs past timeout = 1
    else:
        ns.sh(f"head -c 2M /dev/zero > {path}")  # over max_file_size, clean
    return path


@pytest.mark.parametrize("key", ["on_error", "on_timeout", "on_oversize"])
def test_reload_applies_a_changed_policy_key_to_the_next_open(
    ns: Namespace, daemon: OnAccess, key: str
) -> None:
    path = _file_for(ns, key)
    limits = (
        LIMITS.replace('"1M"\n', '"1M"\noversize = "skip"\n') if key == "on_oversize" else LIMITS
    )
    daemon.start(
        [DEFAULT_RULES, SLOW_RULES, ERROR_RULES], extra=LIMITS + f'[policy]\n{key} = "allow"\n'
    )
    assert daemon.read(path).startswith("ok"), daemon.log()
    _reload(daemon, limits + f'[policy]\n{key} = "deny"\n')
    assert daemon.read(path) == "EPERM", daemon.log()
    _reload(daemon, limits + f'[policy]\n{key} = "allow"\n')
    assert daemon.read(path).startswith("ok"), daemon.log()


def test_reload_applies_quarantine_on_to_the_next_open(ns: Namespace, daemon: OnAccess) -> None:
    target = ns.mnt / "eicar.com"
    _put(ns, target, eicar())
    daemon.start([DEFAULT_RULES], extra='[onaccess]\nquarantine_on = ["close-write"]\n')
    assert daemon.read(target) == "EPERM"
    assert _exists(ns, target) and daemon.quarantine() == []  # denied, left in place
    _reload(daemon, '[onaccess]\nquarantine_on = ["open", "close-write"]\n')
    assert daemon.read(target) == "EPERM"
    daemon.wait_for(lambda: daemon.quarantine(), what="the file to be quarantined")
    assert not _exists(ns, target)
    (item,) = daemon.quarantine()
    assert item["path"] == str(target)
