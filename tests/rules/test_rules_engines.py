"""The default rules compile without a single warning in every engine vigild supports.

A warning is how YARA says "this string slows down scanning" or "this
regex has no upper bound"; on-access scanning cannot afford either, so a
warning fails here like an error does. Three engines:

- yara-python from the virtualenv (PyPI, 4.5 at the time of writing),
- Debian's python3-yara (4.2), run in a subprocess of /usr/bin/python3
  because the venv has its own yara: pyproject allows yara-python>=4.2,
- YARA-X (yara_x).

The Debian engine also runs every sample, as the oldest version allowed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rule_samples import EXTERNALS, Sample, discover, rule_files

DEBIAN_PYTHON = Path("/usr/bin/python3")

# Run by Debian's interpreter: compile every rule file with warnings as
# errors, then (if given a directory) report which rules match each file.
_DEBIAN_SCRIPT = r"""
import json, os, sys
try:
    import yara
except ImportError:
    print(json.dumps({"missing": True}))
    sys.exit(0)
files, externals = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"version": yara.__version__, "errors": [], "matches": {}}
for f in files:
    try:
        yara.compile(filepath=f, externals=externals, error_on_warning=True)
    except yara.Error as e:  # SyntaxError and WarningError
        out["errors"].append(f + ": " + str(e))
if not out["errors"] and len(sys.argv) > 3:
    rules = yara.compile(filepaths={f: f for f in files}, externals=externals)
    for dirpath, _, names in os.walk(sys.argv[3]):
        for name in names:
            path = os.path.join(dirpath, name)
            found = rules.match(path, externals=externals)
            out["matches"][os.path.relpath(path, sys.argv[3])] = sorted(m.rule for m in found)
print(json.dumps(out))
"""


def _debian_yara(*extra: str) -> dict[str, object]:
    """Run the script above under /usr/bin/python3; skip if it has no yara."""
    if not DEBIAN_PYTHON.exists():
        pytest.skip(f"{DEBIAN_PYTHON} not present")
    if Path(sys.executable).resolve() == DEBIAN_PYTHON.resolve() and sys.prefix == sys.base_prefix:
        pytest.skip("tests run under Debian's python3 itself: covered by the yara-python test")
    files = json.dumps([str(f) for f in rule_files()])
    # -I: isolated from PYTHONPATH and user site, so Debian's own yara loads.
    proc = subprocess.run(
        [str(DEBIAN_PYTHON), "-I", "-c", _DEBIAN_SCRIPT, files, json.dumps(EXTERNALS), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    if result.get("missing"):
        pytest.skip("Debian's python3-yara is not installed")
    return result


def test_yara_python_compiles_without_warnings() -> None:
    import yara

    for f in rule_files():
        # WarningError is raised for any warning, SyntaxError for errors.
        yara.compile(filepath=str(f), externals=dict(EXTERNALS), error_on_warning=True)


def test_debian_yara_compiles_without_warnings() -> None:
    result = _debian_yara()
    assert result["errors"] == [], f"yara {result['version']}: {result['errors']}"


def test_yara_x_compiles_without_warnings() -> None:
    yara_x = pytest.importorskip("yara_x", reason="yara-x is not installed")
    warnings = {}
    for f in rule_files():
        compiler = yara_x.Compiler()
        for name in EXTERNALS:
            compiler.define_global(name, "")
        compiler.add_source(f.read_text(encoding="utf-8"), origin=str(f))
        compiler.build()
        if found := compiler.warnings():
            warnings[f.name] = [w["text"] for w in found]
    assert not warnings


def test_debian_yara_agrees_on_every_sample(tmp_path: Path) -> None:
    """The oldest allowed engine (4.2) gets every positive and negative right."""
    expected = {}
    for s in discover():
        path = tmp_path / s.rule / s.name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(s.data())
        expected[f"{s.rule}/{s.name}"] = s
    result = _debian_yara(str(tmp_path))
    matches: dict[str, list[str]] = result["matches"]  # type: ignore[assignment]
    assert set(matches) == set(expected)
    wrong = {rel: got for rel, got in matches.items() if not _right(expected[rel], got)}
    assert not wrong, f"yara {result['version']} got these wrong: {wrong}"


def _right(sample: Sample, matched: list[str]) -> bool:
    if sample.kind == "positive":
        return sample.rule in matched
    return set(matched) == sample.also_matches
