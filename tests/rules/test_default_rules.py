"""The default rule set (rules/*.yar): documented, sampled, and right on its samples.

Rules are discovered from the sources, so a rule added without meta or
without a positive and a negative sample fails here. Every sample is run
through vigild's own engine interface (``vigild.ruleset.load`` and
``RuleSet.rules.match``) with each installed engine.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from pathlib import Path

import pytest
from rule_samples import (
    EICAR,
    EICAR_SHA256,
    EXTERNALS,
    HERE,
    RULES_DIR,
    SAMPLES_DIR,
    RuleLoader,
    Sample,
    all_rule_names,
    build_elf,
    discover,
    engine_params,
    materialise,
    regex_strings,
    rule_files,
    stray_files,
    unbounded_repeats,
)

from vigild.config import Engine

RULES = all_rule_names()
SAMPLES = discover()
SEVERITIES = {"low", "medium", "high", "critical"}
REQUIRED_META = ("description", "severity", "date", "reference", "author")
HARMLESS_MARK = "vigild synthetic test sample"


def _matched(load_rules: RuleLoader, engine: Engine, data: bytes) -> dict[str, str]:
    """Rule name -> rule file name, for every rule that matches ``data``."""
    matches = load_rules(engine).rules.match(data, EXTERNALS)
    return {m.rule: Path(m.namespace).name for m in matches}


# ------------------------------------------------------------ rules and meta


def test_rules_are_discovered_from_the_sources() -> None:
    assert RULES, f"no rules found in {RULES_DIR}/*.yar"
    assert all(re.fullmatch(r"\d\d-[a-z0-9-]+\.yar", f.name) for f in rule_files())


def test_discovered_names_are_the_compiled_names(load_rules: RuleLoader) -> None:
    """The source parser finds exactly the rules the engine compiles."""
    import yara

    compiled = yara.compile(
        filepaths={str(f): str(f) for f in rule_files()}, externals=dict(EXTERNALS)
    )
    assert {r.identifier for r in compiled} == set(RULES)
    assert load_rules(Engine.YARA).count == len(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_meta(rule: str) -> None:
    import yara

    compiled = yara.compile(filepath=str(RULES[rule]), externals=dict(EXTERNALS))
    meta = next(r.meta for r in compiled if r.identifier == rule)
    missing = [k for k in REQUIRED_META if not str(meta.get(k, "")).strip()]
    assert not missing, f"{rule} ({RULES[rule].name}) lacks meta {missing}"
    assert meta["severity"] in SEVERITIES, f"{rule}: severity {meta['severity']!r}"
    assert datetime.date.fromisoformat(meta["date"]).isoformat() == meta["date"]
    assert meta["author"] == "vigild"
    reference = str(meta["reference"])
    assert re.match(r"https?://\S+$", reference) or len(reference.split()) >= 2, (
        f"{rule}: reference {reference!r} is neither a URL nor a document name"
    )


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_rule_file_opens_with_comment_block(path: Path) -> None:
    head = path.read_text(encoding="utf-8").lstrip()
    assert head.startswith("/*"), f"{path.name} must open with a comment block"
    assert "Tuning" in head[: head.index("*/")], f"{path.name}: say how to tune it"


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_regexes_are_bounded(path: Path) -> None:
    """No *, + or {n,} in a regex: every gap has an upper bound."""
    bad = {
        f"{path.name}:{line} {ident}": found
        for line, ident, body in regex_strings(path)
        if (found := unbounded_repeats(body))
    }
    assert not bad


def test_unbounded_repeat_check_finds_them() -> None:
    """The check above would see an unbounded regex if one came in."""
    assert unbounded_repeats(r"eval.*x") == ["'*' at 5"]
    assert unbounded_repeats(r"[a-z]+") == ["'+' at 5"]
    assert unbounded_repeats(r"a{2,}") == ["'{2,}' at 1"]
    assert unbounded_repeats(r"[*+]\+\*x{1,8}y{3}") == []


# ------------------------------------------------------------------- samples


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_has_both_samples(rule: str) -> None:
    kinds = {s.kind for s in SAMPLES if s.rule == rule}
    assert kinds == {"positive", "negative"}, (
        f"rule {rule} needs {SAMPLES_DIR.name}/{rule}/positive-* and negative-* "
        f"(has: {sorted(kinds) or 'nothing'})"
    )


def test_samples_belong_to_rules() -> None:
    orphans = sorted({s.rule for s in SAMPLES} - set(RULES))
    assert not orphans, f"sample directories with no rule: {orphans}"
    unknown = {s.id: sorted(s.also_matches - set(RULES)) for s in SAMPLES if s.also_matches}
    assert not any(unknown.values()), f".matches-<Rule> names no rule: {unknown}"
    assert not [s.id for s in SAMPLES if s.kind == "positive" and s.also_matches]
    assert not stray_files(), f"neither positive-* nor negative-*: {stray_files()}"


@pytest.mark.parametrize("engine", engine_params())
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_sample(sample: Sample, engine: Engine, load_rules: RuleLoader) -> None:
    """Positives match their rule; negatives match neither it nor any other rule."""
    matched = _matched(load_rules, engine, sample.data())
    if sample.kind == "positive":
        assert sample.rule in matched, f"{sample.id} not matched (got {sorted(matched)})"
        assert matched[sample.rule] == RULES[sample.rule].name  # namespace = rule file
    else:
        assert sample.rule not in matched, f"{sample.id} matched its own rule"
        assert set(matched) == sample.also_matches, (
            f"negative {sample.id} matched {sorted(matched)}; a negative is a benign "
            f"file and may only match the rules its name declares"
        )


def test_positive_samples_are_marked_harmless() -> None:
    """Every stored positive (EICAR aside) says it is a synthetic sample and stops."""
    unmarked = []
    for s in SAMPLES:
        if s.kind != "positive" or s.source.name.endswith(".eicar"):
            continue
        text = s.source.read_text(encoding="utf-8")
        if s.source.name.endswith(".rot13"):
            text = materialise(s.source).decode("utf-16" if ".utf16" in s.source.name else "utf-8")
        if HARMLESS_MARK not in text:
            unmarked.append(s.id)
    assert not unmarked


# ------------------------------------------------------------ EICAR handling


def test_eicar_is_rebuilt_exactly() -> None:
    assert len(EICAR) == 68
    assert hashlib.sha256(EICAR).hexdigest() == EICAR_SHA256


def test_eicar_samples_cover_the_documented_forms() -> None:
    """Plain, trailing whitespace up to 128 bytes, and embedded in 1 MB."""
    by_name = {s.name: s.data() for s in SAMPLES if s.rule.startswith("EICAR_")}
    assert by_name["positive-plain.com"] == EICAR
    assert by_name["positive-trailing-whitespace.txt"] == EICAR + b"\r\n\t \x1a"
    assert by_name["positive-128-bytes.txt"] == EICAR + b" " * 60
    embedded = by_name["positive-embedded-1mb.bin"]
    assert len(embedded) == 1 << 20 and embedded.find(EICAR) == 512 * 1024


@pytest.mark.parametrize("engine", engine_params())
def test_checkout_does_not_trip_the_rules(engine: Engine, load_rules: RuleLoader) -> None:
    """Rule files, stored samples and these tests match no rule as stored.

    Admins, package managers and backups open the rule files on watched
    filesystems; a developer's own scanner reads the samples. Neither may
    look like what the rules detect, and the EICAR string is never stored.
    """
    stored = [*RULES_DIR.rglob("*"), *HERE.rglob("*")]
    hits = {}
    for path in (p for p in stored if p.is_file() and "__pycache__" not in p.parts):
        data = path.read_bytes()
        assert EICAR not in data, f"{path} holds the EICAR string"
        if matched := _matched(load_rules, engine, data):
            hits[str(path)] = sorted(matched)
    assert not hits


def test_elf_builder_writes_a_valid_header() -> None:
    data = build_elf("elf 32 big mips\nhello\nxor(0x22) ab\n")
    assert data[:4] == b"\x7fELF" and data[4] == 1 and data[5] == 2
    assert int.from_bytes(data[18:20], "big") == 8  # e_machine: MIPS
    assert data.endswith(b"hello\0" + bytes([ord("a") ^ 0x22, ord("b") ^ 0x22]) + b"\0")
