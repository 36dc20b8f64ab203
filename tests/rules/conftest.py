"""Fixtures for the default rule set: the rules compiled once per engine.

The rules are loaded the way the daemon loads them (``vigild.ruleset.load``),
with the compiled copy written under pytest's temporary directory, never
in the checkout or /var/lib.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# rule_samples sits next to this file; make it importable whatever
# --import-mode the suite is run with.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rule_samples import RULES_DIR, RuleLoader

from vigild import ruleset
from vigild.config import Engine, RulesConfig


@pytest.fixture(scope="session")
def load_rules(tmp_path_factory: pytest.TempPathFactory) -> RuleLoader:
    """``load_rules(engine)``: the default rules compiled by that engine, once per session."""
    loaded: dict[Engine, ruleset.RuleSet] = {}

    def load(engine: Engine) -> ruleset.RuleSet:
        if engine not in loaded:
            compiled = tmp_path_factory.mktemp(f"compiled-{engine.value}")
            cfg = RulesConfig(dirs=(str(RULES_DIR),), engine=engine, compiled_dir=str(compiled))
            loaded[engine] = ruleset.load(cfg, timeout=10)
        return loaded[engine]

    return load
