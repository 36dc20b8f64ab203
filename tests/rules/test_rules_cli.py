"""The default rules through ``vigild scan``, as an admin would run it.

Every positive sample, written to disk, is reported on a FOUND line naming
its rule, and the scan exits 1; a tree of negatives exits 0 with nothing
found. The compiled rules go to a config that points into tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rule_samples import RULES_DIR, Sample, discover

SAMPLES = discover()
FOUND = re.compile(r"^(?P<path>.+): FOUND (?P<rules>.+) \(rule-match\)$")


def vigild() -> list[str]:
    """The vigild command installed with this interpreter's package."""
    script = Path(sys.executable).parent / "vigild"
    if script.is_file():
        return [str(script)]
    found = shutil.which("vigild")
    return [found] if found else [sys.executable, "-m", "vigild"]


def write_samples(root: Path, samples: list[Sample]) -> dict[Path, Sample]:
    written = {}
    for s in samples:
        path = root / s.rule / s.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s.data())
        written[path] = s
    return written


def scan(tmp_path: Path, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "vigild.toml"
    config.write_text(f'[rules]\ncompiled_dir = "{tmp_path / "compiled"}"\n')
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [*vigild(), "scan", "--config", str(config), "--rules", str(RULES_DIR)]
    cmd += ["--compiled-dir", str(tmp_path / "scan-compiled")]  # not root's shared cache
    return subprocess.run(
        [*cmd, "--no-progress", *extra, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_scan_reports_every_positive(tmp_path: Path) -> None:
    positives = write_samples(tmp_path / "positives", [s for s in SAMPLES if s.kind == "positive"])
    proc = scan(tmp_path, tmp_path / "positives")
    assert proc.returncode == 1, proc.stderr
    found = {
        Path(m["path"]): set(m["rules"].split(", "))
        for line in proc.stdout.splitlines()
        if (m := FOUND.match(line))
    }
    assert set(found) == set(positives), proc.stdout
    missed = {str(p): sorted(found[p]) for p, s in positives.items() if s.rule not in found[p]}
    assert not missed, f"FOUND lines without the sample's own rule: {missed}"
    assert f"Found: {len(positives)}" in proc.stdout


def test_scan_of_negatives_is_clean(tmp_path: Path) -> None:
    clean = [s for s in SAMPLES if s.kind == "negative" and not s.also_matches]
    negatives = write_samples(tmp_path / "negatives", clean)
    proc = scan(tmp_path, tmp_path / "negatives", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e for e in events if e["type"] != "summary"] == []
    summary = events[-1]
    assert (summary["files"], summary["found"], summary["errors"]) == (len(negatives), 0, 0)
