"""On access, a rule that makes the engine fail never costs another rule's detection.

Regression for issue 9 (4): YARA returned an internal error for the whole
scan, on_error = allow applied, and every other rule's match on that file
was thrown away: content chosen to trip one rule carried any payload past.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from onaccess_harness import DEFAULT_RULES, Namespace, OnAccess, needs_fanotify
from support import DATA, eicar
from test_onaccess import _put

pytestmark = [needs_fanotify, pytest.mark.root]

TRIGGER = b"x" + b"ab" * 2000  # libyara: "too many regex fibers" for engine_error/fibers.yar


def test_eicar_behind_an_engine_error_is_still_denied(
    ns: Namespace, daemon: OnAccess, tmp_path: Path
) -> None:
    rules = tmp_path / "custom"
    rules.mkdir()
    shutil.copy(DATA / "engine_error" / "fibers.yar", rules)
    for i in range(3):
        _put(ns, ns.mnt / f"evil{i}.bin", TRIGGER + b"\n" + b"A" * 200 + eicar() + b"\n%d" % i)
    daemon.start([DEFAULT_RULES, rules])
    assert [daemon.read(ns.mnt / f"evil{i}.bin") for i in range(3)] == ["EPERM"] * 3
    failure = "rule Vigild_Test_Engine_Error in "
    daemon.wait_for(lambda: failure in daemon.log(), what="the rule failure, reported")
    daemon.wait_for(lambda: daemon.log().count("EICAR_Test_String_Embedded") >= 3, what="3 alerts")
    said = [line for line in daemon.log().splitlines() if failure in line]
    assert len(said) == 1, said  # said once, not per file
