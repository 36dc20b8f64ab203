"""One failing rule never costs the other rules' detections.

An engine error in the middle of a scan (libyara's "too many regex
fibers", an out-of-memory in one rule's strings) ends that scan with no
result at all, so a single rule, shipped or custom, could blank out every
other rule's match on a file whose content the attacker chose. When a scan
of the whole set fails, the file is scanned again file by file: every rule
file that can scan it reports its matches, and the files that fail are
named (with their rules) so the caller can apply on_error to them alone.

The per-file sets are compiled the first time a scan fails (nothing is
spent while no rule misbehaves) and kept for the life of the rule set.
``risky_regexes`` is the lint ``vigild rules check`` runs for the rules
likely to hit such limits.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigild.scanner import CompiledRules, EngineBackend, ExternalValue, RuleMatch, ScanFailed

# A regex literal inside a rule's strings, and the repeats that make an engine
# try many paths at once: a bounded repeat with a large upper bound, or a
# repeated group of alternatives.
_REGEX = re.compile(r"=\s*/((?:\\.|[^/\\\n])+)/")
_BIG_REPEAT = re.compile(r"\{(\d*),(\d+)\}")
_GROUP_REPEAT = re.compile(r"\)(\{\d*,\d+\}|[*+])")
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
BIG_BOUND = 1000  # an upper repeat bound past this is slow and fiber-hungry


@dataclass(frozen=True)
class Failure:
    """A rule file that could not scan the file: its path, rules and the engine's error."""

    path: str
    rules: tuple[str, ...]
    error: str

    def describe(self) -> str:
        names = self.rules
        who = (
            names[0]
            if len(names) == 1
            else f"one of {', '.join(names[:3])}"
            + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        )
        return f"rule {who} in {self.path}: {self.error}"


class PerFile:
    """The rule files of a set, compiled one by one on first need; thread-safe."""

    def __init__(
        self, engine: EngineBackend, files: Sequence[str], values: dict[str, ExternalValue]
    ) -> None:
        self._engine = engine
        self._files = tuple(files)
        self._values = values
        self._sets: list[tuple[str, CompiledRules]] | None = None
        self._lock = threading.Lock()

    def _compiled(self) -> list[tuple[str, CompiledRules]]:
        with self._lock:
            if self._sets is None:
                self._sets = [
                    (f, self._engine.compile([Path(f)], self._values)) for f in self._files
                ]
            return self._sets

    def match(
        self, data: Any, externals: dict[str, ExternalValue]
    ) -> tuple[list[RuleMatch], list[Failure]]:
        """Every file's matches on ``data``, and the files whose scan failed."""
        matches: list[RuleMatch] = []
        failures: list[Failure] = []
        for path, rules in self._compiled():
            try:
                matches += rules.match(data, externals)
            except ScanFailed as e:
                failures.append(Failure(path, rules.names(), str(e)))
        return matches, failures


def risky_regexes(path: Path) -> list[tuple[int, str]]:
    """(line, warning) for each regex in ``path`` likely to hit an engine limit."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    text = _COMMENTS.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    out = []
    for m in _REGEX.finditer(text):
        body = m.group(1)
        line = text.count("\n", 0, m.start()) + 1
        bounds = [int(hi) for _lo, hi in _BIG_REPEAT.findall(body)]
        if bounds and max(bounds) > BIG_BOUND:
            out.append((line, f"regex repeat bound {{,{max(bounds)}}} over {BIG_BOUND}: slow, "
                              "and on some files an engine error that costs this rule"))  # fmt: skip
        elif "|" in body and _GROUP_REPEAT.search(body) and len(_GROUP_REPEAT.findall(body)) > 1:
            out.append((line, "repeated groups of alternatives: the engine may run out of "
                              "regex fibers on some files (this rule's scan then fails)"))  # fmt: skip
    return out
