"""Code loaded outside the watched paths is checked as an exec (found by review).

Outside the watch only execs, and opens by an interpreter or the loader run as
a program, are scanned. Two ways past that, both reproduced by review as an
unprivileged user:

* a library loaded into an ordinary program (``LD_PRELOAD``, dlopen): ld.so
  opens it inside that program, with no exec event. An ELF file a user can
  write, opened outside the watch, is now checked as an exec;
* an interpreter whose main thread has exited while another runs on: its
  ``/proc/PID/exe`` says ENOENT, and it was taken for no interpreter. It is
  now asked about, and its program, unreadable, is taken for an interpreter.
"""

from __future__ import annotations

import shutil

import pytest

from onaccess_harness import TEST_RULES, Namespace, OnAccess, needs_fanotify
from support import MARKER
from test_onaccess import NO_CLOSE_WRITE, _age, _put

pytestmark = [needs_fanotify, pytest.mark.root]

LIBRARY = f"""
#include <stdio.h>
__attribute__((used)) static const char marker[] = "{MARKER.decode()}";
__attribute__((constructor)) static void run(void) {{ puts("ran"); fflush(stdout); }}
"""

# The main thread exits; a second one reads the file.
ORPHANED = """
import ctypes, os, sys, threading, time

def work():
    time.sleep(0.3)
    try:
        with open(sys.argv[1]) as f:
            f.read()
        print("read", flush=True)
    except PermissionError:
        print("EPERM", flush=True)
    os._exit(0)

threading.Thread(target=work).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def _places(ns: Namespace) -> tuple[str, str]:
    watched, other = f"{ns.mnt}/watched", f"{ns.mnt}/other"
    ns.sh(f"mkdir {watched} {other}")
    return watched, other


def test_a_users_library_preloaded_outside_the_watch_is_checked(
    ns: Namespace, daemon: OnAccess
) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package: gcc)")
    watched, other = _places(ns)
    ns.sh(
        f"cat > {other}/evil.c <<'EOF'\n{LIBRARY}\nEOF\n"
        f"gcc -shared -fPIC -o {other}/evil.so {other}/evil.c && chown 1000:1000 {other}/evil.so"
    )
    _age(ns)
    daemon.start([TEST_RULES], watch=[watched], extra=NO_CLOSE_WRITE)
    r = ns.sh(f"LD_PRELOAD={other}/evil.so /bin/true", check=False)
    assert "ran" not in r.stdout, r  # ld.so's open of it was denied


def test_an_interpreter_whose_main_thread_exited_is_still_one(
    ns: Namespace, daemon: OnAccess
) -> None:
    watched, other = _places(ns)
    _put(ns, ns.mnt / "other" / "data.txt", MARKER)
    _age(ns)
    daemon.start([TEST_RULES], watch=[watched], extra=NO_CLOSE_WRITE)
    r = ns.py(ORPHANED, f"{other}/data.txt")
    assert r.stdout.strip() == "EPERM", r
