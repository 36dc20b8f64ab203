"""The one table a ``make bench`` run ends with, and its JSON copy.

Owns the list of result rows of one pytest session (kept in the config's
stash, filled by the benchmark tests, read once by the terminal-summary
hook). Touches nothing in the checkout except ``.benchmarks/summary.json``.

Every row compares a vigild figure with a reference figure measured in
the same run, side by side (the machine is noisy, so only ratios carry
over between runs). ``ratio`` is always oriented so that above 1 means
vigild is better: faster, or smaller.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

PASS, FAIL, INFO, SKIP = "PASS", "FAIL", "info", "SKIP"


@dataclass(frozen=True)
class Figure:
    """A measured value with its unit; ``label`` says whose it is."""

    value: float
    unit: str
    label: str = ""

    def text(self) -> str:
        number = f"{self.value:,}" if isinstance(self.value, int) else _number(self.value)
        unit = f" {self.unit}" if self.unit else ""
        return f"{number}{unit}" + (f" {self.label}" if self.label else "")


@dataclass(frozen=True)
class Row:
    """One comparison: what, vigild's figure, the reference, ratio, target, result."""

    section: str
    what: str
    vigild: Figure | None
    reference: Figure | None
    ratio: float | None  # > 1: vigild better
    target: str
    result: str  # PASS, FAIL, info or SKIP
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.result == FAIL


def _number(v: float) -> str:
    """Three significant figures, without scientific notation for our ranges."""
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def verdict(ok: bool | None) -> str:
    """PASS/FAIL for a checked target, info when there is none."""
    if ok is None:
        return INFO
    return PASS if ok else FAIL


class Summary:
    """The rows of one session, in the order the tests added them."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.context: dict[str, Any] = {}

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def skip(self, section: str, what: str, reason: str) -> None:
        self.add(Row(section, what, None, None, None, "", SKIP, note=reason))

    # ------------------------------------------------------------ rendering

    def lines(self) -> list[str]:
        """The table, its footnotes, and one line per skipped comparison."""
        head = ("what", "vigild", "reference", "ratio", "target", "result")
        body = [
            (
                r.what,
                r.vigild.text() if r.vigild else "-",
                r.reference.text() if r.reference else "-",
                f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                r.target or "-",
                r.result,
            )
            for r in self.rows
        ]
        widths = [max(len(c[i]) for c in (head, *body)) for i in range(len(head))]

        def fmt(cells: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        rule = "-" * len(fmt(tuple("-" * w for w in widths)))
        out = [rule, fmt(head), rule]
        section = None
        for r, cells in zip(self.rows, body, strict=True):
            if r.section != section:
                if section is not None:
                    out.append("")
                out.append(f"[{r.section}]")
                section = r.section
            out.append(fmt(cells))
        out.append(rule)
        notes = [f"[{r.section}] {r.what}: {r.note}" for r in self.rows if r.note]
        if notes:
            out.append("notes:")
            out.extend(f"  - {n}" for n in notes)
        out.append(
            "ratio > 1 means vigild is better (faster or smaller); "
            "a dagger marks a figure quoted from ANCHORS.md, not measured in this run."
        )
        failed = [r.what for r in self.rows if r.failed]
        passed = sum(r.result == PASS for r in self.rows)
        missed = f": {', '.join(failed)}" if failed else ""
        out.append(f"targets: {passed} met, {len(failed)} missed{missed}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": host_info(),
            "context": self.context,
            "rows": [asdict(r) for r in self.rows],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        os.replace(tmp, path)


def check_targets(rows: list[Row]) -> None:
    """Fail the calling test when one of its rows missed its target."""
    missed = [
        f"{r.what}: {r.vigild.text() if r.vigild else '-'} (target {r.target})"
        + (f" [{r.note}]" if r.note else "")
        for r in rows
        if r.failed
    ]
    if missed and os.environ.get("VIGILD_BENCH_REPORT_ONLY") != "1":
        pytest.fail("target missed: " + "; ".join(missed), pytrace=False)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _tool_version(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip() or None


def host_info() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "yara_cli": _tool_version(["yara", "--version"]),
    }
    for dist in ("vigild", "yara-python", "yara-x"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    return info
