"""A file run through an interpreter or the loader is checked like an execution, anywhere.

On a marked filesystem, outside the watched paths, ``./evil`` is refused (an
execution is checked anywhere), so ``sh evil``, ``python3 evil`` and
``ld.so ./evil`` must be too: each is the same code run by another name.
The interpreter is known by its file (a renamed copy of python3 still is
python3), and any other program reading the same bytes there is left alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, needs_fanotify
from support import MARKER

pytestmark = [needs_fanotify, pytest.mark.root]

NO_CLOSE_WRITE = '[onaccess]\nevents = ["open", "exec"]\nquarantine_on = []\n'
LOADER = "/lib64/ld-linux-x86-64.so.2"
PYTHON3 = "/usr/bin/python3"  # Debian's, listed; PATH's may be a pyenv build


def _setup(ns: Namespace, daemon: OnAccess, extra: str = "") -> Path:
    """A watched and an unwatched directory on the tmpfs, the samples in the unwatched
    one, and the daemon watching only the first; returns the unwatched directory."""
    watched, other = ns.mnt / "watched", ns.mnt / "other"
    ns.sh(
        f"mkdir {watched} {other}"
        f" && printf '#!/bin/sh\\n# %s\\necho ran\\n' {MARKER.decode()} > {other}/evil.sh"
        f" && printf '# %s\\nprint(\"ran\")\\n' {MARKER.decode()} > {other}/evil.py"
        f" && printf 'echo fine\\n' > {other}/good.sh"
        f" && printf '%s\\n' {MARKER.decode()} > {other}/data.txt"
        f" && cp /bin/echo {other}/evil && printf '%s' {MARKER.decode()} >> {other}/evil"
        f" && cp $(readlink -f {PYTHON3}) {other}/renamed && chmod 755 {other}/evil"
        " && sleep 0.05"
    )
    daemon.start([TEST_RULES], watch=[watched], extra=NO_CLOSE_WRITE + extra)
    return other


CASES = {
    "sh": "sh {d}/evil.sh",
    "python3": PYTHON3 + " {d}/evil.py",
    "the loader": LOADER + " {d}/evil ran",
    "a renamed copy of python3": "{d}/renamed {d}/evil.py",
}


@pytest.mark.skipif(not Path(LOADER).exists(), reason=f"no {LOADER}")
@pytest.mark.parametrize("how", list(CASES))
def test_a_script_outside_the_watch_is_checked(ns: Namespace, daemon: OnAccess, how: str) -> None:
    other = _setup(ns, daemon)
    r = ns.sh(CASES[how].format(d=other), check=False, timeout=30)
    assert r.returncode != 0 and "ran" not in r.stdout, (r, daemon.log())
    assert "Operation not permitted" in r.stderr or "ermission" in r.stderr, r


def test_another_program_reading_it_there_is_not_held(ns: Namespace, daemon: OnAccess) -> None:
    other = _setup(ns, daemon)
    r = ns.sh(f"cat {other}/data.txt && sh {other}/good.sh", check=False)
    assert r.returncode == 0 and r.stdout == MARKER.decode() + "\nfine\n", r
    events = daemon.events()
    assert events["answered_deny"] == 0, events


def test_an_empty_list_checks_no_interpreter(ns: Namespace, daemon: OnAccess) -> None:
    other = _setup(ns, daemon, "interpreters = []\n")
    r = ns.sh(f"sh {other}/evil.sh", check=False)
    assert r.returncode == 0 and r.stdout == "ran\n", r
    assert daemon.status()["settings"]["interpreters"] == 0


def test_status_counts_the_interpreters_found(ns: Namespace, daemon: OnAccess) -> None:
    _setup(ns, daemon)
    found = daemon.status()["settings"]["interpreters"]
    assert found >= 3, found  # sh, bash, python3 and the loader here at least
    assert shutil.which("dash") is None or found >= 4
