"""The scanner gives the same answer with Debian's python3-yara 4.2 and PyPI's 4.5.

4.2 returns ``match.strings`` as (offset, identifier, data) tuples, 4.5 as
StringMatch objects; the .deb runs on the former, the venv on the latter.
The Debian run is real: Debian's /usr/bin/python3 imports vigild's source.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support import DATA, MARKER, REPO

DEBIAN_PYTHON = Path("/usr/bin/python3")

PROBE = """
import json, sys, yara
from pathlib import Path
from vigild.scanner import EXTERNALS, YaraBackend
rules = YaraBackend(10).compile([Path(sys.argv[1])], dict.fromkeys(EXTERNALS, ""))
data = b"x" + sys.argv[2].encode() + b" and again " + sys.argv[2].encode()
ext = {"filename": "f", "filepath": "/f", "extension": "", "filetype": ""}
found = rules.match(data, ext)
print(json.dumps({"version": yara.__version__,
                  "matches": [[m.rule, m.namespace, list(m.strings), dict(m.meta)] for m in found]}))
"""


def _probe(python: str) -> dict[str, object]:
    r = subprocess.run(
        [python, "-c", PROBE, str(DATA / "rules" / "marker.yar"), MARKER.decode()],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO / "daemon"), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout)
    return result


def _has_debian_yara() -> bool:
    if not DEBIAN_PYTHON.exists():
        return False
    return (
        subprocess.run([str(DEBIAN_PYTHON), "-c", "import yara"], capture_output=True).returncode
        == 0
    )


@pytest.mark.skipif(not _has_debian_yara(), reason="Debian's python3-yara is not installed")
def test_debian_yara_and_pypi_yara_agree() -> None:
    import sys

    debian = _probe(str(DEBIAN_PYTHON))
    pypi = _probe(sys.executable)
    assert str(debian["version"]).startswith("4.2"), "this test is meant to exercise 4.2's tuples"
    assert not str(pypi["version"]).startswith("4.2")
    expected = [
        [
            "Vigild_Test_Marker",
            str(DATA / "rules" / "marker.yar"),
            ["$marker"],
            {"description": "test marker for vigild's own tests", "severity": "high"},
        ]
    ]
    assert debian["matches"] == pypi["matches"] == expected
