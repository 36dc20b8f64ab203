"""Loading public rule sets as an admin does: externals, one bad file, counts (issue 10).

Every test runs with each engine installed: what a rule sees and what
`vigild status` counts must not depend on the engine chosen.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from support import DATA, vigild
from vigild import native, ruleset, snapshot
from vigild.config import Config, Engine, RulesConfig
from vigild.scanner import RuleError, available
from vigild.verdict import Policy, Reason


def _scan_args(tmp_path: Path) -> list[str]:
    """``scan`` with a compiled-rules directory of the test's own (root's default is shared)."""
    return ["scan", "--compiled-dir", str(tmp_path / "scan-compiled")]


ENGINES = [
    pytest.param(e, marks=pytest.mark.skipif(not available(e), reason=f"{e.value} not installed"))
    for e in (Engine.YARA, Engine.YARA_X, Engine.BOREAL)
]


def _load(tmp_path: Path, engine: Engine, *dirs: Path, **rules: object) -> ruleset.RuleSet:
    cfg = RulesConfig(
        dirs=tuple(str(d) for d in dirs),
        local_dirs=(),
        engine=engine,
        compiled_dir=str(tmp_path / "compiled"),
        **rules,  # type: ignore[arg-type]
    )
    return ruleset.load(cfg, timeout=10)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _examine(snap: snapshot.Snapshot, path: Path, shown: str | None = None) -> tuple[Reason, str]:
    fd = os.open(path, os.O_RDONLY)
    try:
        f = snap.detector.examine(fd, shown or str(path), Policy())
    finally:
        os.close(fd)
    return f.verdict.reason, f.verdict.detail


def _snapshot(tmp_path: Path, engine: Engine, *dirs: Path) -> snapshot.Snapshot:
    rules = RulesConfig(
        dirs=tuple(str(d) for d in dirs),
        local_dirs=(),
        engine=engine,
        compiled_dir=str(tmp_path / "compiled"),
    )
    return snapshot.build(replace(Config(), rules=rules), native.Cache(1024))


# ---------------------------------------------------------------- externals


@pytest.mark.parametrize("engine", ENGINES)
def test_every_loki_external_has_its_value_in_a_scan(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "www" / "Shell.PHP"
    target.parent.mkdir()
    body = b"<?php echo 1; ?>\n"
    target.write_bytes(body)
    owner = pwd.getpwuid(os.getuid()).pw_name
    md5 = hashlib.md5(body).hexdigest()
    checks = {
        "Name": 'filename == "Shell.PHP"',
        "Path": f'filepath == "{target}"',
        "Ext": 'extension == ".php"',
        "Owner": f'owner == "{owner}"',
        "Type": 'filetype == "PHP"',
        "Md5": f'md5 == "{md5}"',
    }
    rules = "".join(f"rule Ext_{k} {{ condition: {c} }}\n" for k, c in checks.items())
    snap = _snapshot(tmp_path, engine, _write(tmp_path / "r" / "loki.yar", rules))
    monkeypatch.chdir(tmp_path)  # a relative path given: filepath is still absolute
    reason, detail = _examine(snap, target, "www/Shell.PHP")
    assert reason is Reason.RULE_MATCH
    assert sorted(detail.split(", ")) == sorted(f"Ext_{k}" for k in checks)


@pytest.mark.parametrize("engine", ENGINES)
def test_filetype_names_an_elf_and_nothing_for_text(tmp_path: Path, engine: Engine) -> None:
    rule = _write(tmp_path / "r" / "t.yar", 'rule Is_Elf { condition: filetype == "ELF" }\n')
    snap = _snapshot(tmp_path, engine, rule)
    elf = shutil.copy("/bin/true", tmp_path / "true")
    text = _write(tmp_path / "notes.txt", "ELF is a format\n")
    assert _examine(snap, Path(elf)) == (Reason.RULE_MATCH, "Is_Elf")
    assert _examine(snap, text)[0] is Reason.CLEAN


@pytest.mark.parametrize("engine", ENGINES)
def test_externals_declared_in_the_config_reach_the_rules(tmp_path: Path, engine: Engine) -> None:
    rule = _write(
        tmp_path / "r" / "env.yar", 'rule In_Prod { condition: env == "prod" and n > 1 }\n'
    )
    cfg = tmp_path / "vigild.toml"
    cfg.write_text(
        f'[rules]\ncompiled_dir = "{tmp_path / "c"}"\nlocal_dirs = []\n'
        f'engine = "{engine.value}"\n[rules.externals]\nenv = "prod"\nn = 2\n'
    )
    _write(tmp_path / "t" / "any.txt", "x")
    r = vigild(
        *_scan_args(tmp_path),
        "--config",
        str(cfg),
        "--rules",
        str(rule),
        "--no-progress",
        str(tmp_path / "t"),
    )
    assert r.returncode == 1, r.stderr
    assert f"{tmp_path / 't' / 'any.txt'}: FOUND In_Prod (rule-match)" in r.stdout.splitlines()


def test_a_builtin_external_cannot_be_declared(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "vigild.toml", '[rules.externals]\nfilename = "x"\n')
    r = vigild("rules", "check", "--config", str(cfg))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"vigild: {cfg}: rules.externals: 'filename' is set by vigild for every scan; "
        "choose another name"
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_which_externals_a_file_reads_is_asked_of_the_engine(
    tmp_path: Path, engine: Engine
) -> None:
    _write(
        tmp_path / "r" / "words.yar",
        "// checks the filename and the filepath, says this comment\n"
        'rule Words { strings: $a = "filename owner md5" condition: $a }\n',
    )
    named = _write(tmp_path / "r" / "named.yar", 'rule Named { condition: filename == "x" }\n')
    rs = _load(tmp_path, engine, tmp_path / "r")
    assert rs.externals == ("filename",)
    assert rs.path_files == (str(named),)
    assert rs.rules is not None and rs.path_rules is not None


@pytest.mark.parametrize("engine", ENGINES)
def test_rules_on_the_name_do_not_turn_off_the_content_cache(
    tmp_path: Path, engine: Engine
) -> None:
    rules = _write(
        tmp_path / "r" / "mixed.yar",
        'rule By_Bytes { strings: $a = "EVIL-BYTES" condition: $a }\n',
    )
    _write(tmp_path / "r" / "name.yar", 'rule By_Name { condition: filename == "evil.php" }\n')
    snap = _snapshot(tmp_path, engine, rules.parent)
    plain = _write(tmp_path / "f" / "a.txt", "harmless\n")
    twin = _write(tmp_path / "f" / "evil.php", "harmless\n")
    bad = _write(tmp_path / "f" / "b.txt", "EVIL-BYTES\n")
    assert _examine(snap, plain)[0] is Reason.CLEAN
    assert _examine(snap, plain)[0] is Reason.CACHED_CLEAN  # remembered by content
    # the same bytes under a name the path rules look for: they still run
    reason, detail = _examine(snap, twin)
    assert (reason, detail) == (Reason.RULE_MATCH, "By_Name")
    assert _examine(snap, bad) == (Reason.RULE_MATCH, "By_Bytes")


# ------------------------------------------------------ one bad file, counts


@pytest.mark.parametrize("engine", ENGINES)
def test_a_bad_file_is_skipped_and_counted_the_rest_loads(tmp_path: Path, engine: Engine) -> None:
    rs = _load(tmp_path, engine, DATA / "broken")
    assert rs.files == (str(DATA / "broken" / "ok.yar"),)
    assert [(e.path, e.line) for e in rs.skipped] == [(str(DATA / "broken" / "bad.yar"), 6)]
    assert rs.count == 1
    assert rs.summary == "1 rules from 1 files, 1 files skipped"


@pytest.mark.parametrize("engine", ENGINES)
def test_strict_makes_a_bad_file_fatal(tmp_path: Path, engine: Engine) -> None:
    with pytest.raises(RuleError) as e:
        _load(tmp_path, engine, DATA / "broken", strict=True)
    assert e.value.path == str(DATA / "broken" / "bad.yar") and e.value.line == 6
    assert str(e.value).endswith("; rules.strict is on")


@pytest.mark.parametrize("engine", ENGINES)
def test_the_count_is_what_the_engine_compiled(tmp_path: Path, engine: Engine) -> None:
    _write(
        tmp_path / "r" / "a.yar",
        "/*\nrule Commented_Out { condition: true }\n*/\n"
        'rule Real { strings: $a = "\\nrule Inside_A_String" condition: $a }\n'
        "private rule Helper { condition: true }\n"
        "global rule Everywhere { condition: true }\n",
    )
    rs = _load(tmp_path, engine, tmp_path / "r")
    assert rs.count == 3
    again = _load(tmp_path, engine, tmp_path / "r")  # from the saved compile
    assert again.from_cache and again.count == 3 and again.files == rs.files


@pytest.mark.skipif(not available(Engine.BOREAL), reason="boreal not installed")
def test_a_boreal_set_over_1024_rules_is_saved_in_parts_and_loads_without_a_compile(
    tmp_path: Path,
) -> None:
    """boreal 1.4 cannot load back one saved scanner of more than 1,024 rules."""
    for f in range(3):
        rules = "".join(
            f'rule R{f}_{i} {{ strings: $a = "<vigild-part-{f}-rule-{i}>" condition: $a }}\n'
            for i in range(400)
        )
        _write(tmp_path / "r" / f"f{f}.yar", rules)
    first = _snapshot(tmp_path, Engine.BOREAL, tmp_path / "r")
    again = _snapshot(tmp_path, Engine.BOREAL, tmp_path / "r")
    assert again.rules.from_cache and again.rules.count == first.rules.count == 1200
    saved = list((tmp_path / "compiled").glob("rules-boreal-*.compiled"))
    assert len(saved) == 1 and not saved[0].read_bytes().startswith(b"vigild: compile")
    for f, i in ((0, 0), (1, 399), (2, 123)):
        target = _write(tmp_path / "t" / f"{f}-{i}", f"x <vigild-part-{f}-rule-{i}> x")
        assert _examine(again, target) == (Reason.RULE_MATCH, f"R{f}_{i}")


@pytest.mark.skipif(not available(Engine.BOREAL), reason="boreal not installed")
@pytest.mark.parametrize("damage", [b"", b"\xff" * 8 + b"short"], ids=["no-parts", "overlong"])
def test_a_damaged_boreal_parts_file_is_compiled_again(tmp_path: Path, damage: bytes) -> None:
    """Found by review: a parts file with no parts loaded as an empty set and
    crashed at the first use. A part whose length overruns the data is refused too."""
    from vigild.scanner import PARTS

    _write(tmp_path / "r" / "a.yar", 'rule A { strings: $a = "<vigild-a>" condition: $a }\n')
    first = _load(tmp_path, Engine.BOREAL, tmp_path / "r")
    (saved,) = (tmp_path / "compiled").glob("rules-boreal-*.compiled")
    saved.write_bytes(PARTS + damage)
    again = _load(tmp_path, Engine.BOREAL, tmp_path / "r")
    assert not again.from_cache and again.count == first.count == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_a_saved_compile_keeps_the_skipped_files_and_the_path_set(
    tmp_path: Path, engine: Engine
) -> None:
    _write(tmp_path / "r" / "bad.yar", "rule Bad { condition: $nope }\n")
    named = _write(tmp_path / "r" / "named.yar", 'rule Named { condition: owner == "root" }\n')
    first = _load(tmp_path, engine, tmp_path / "r")
    second = _load(tmp_path, engine, tmp_path / "r")
    assert second.from_cache and not first.from_cache
    assert [str(e) for e in second.skipped] == [str(e) for e in first.skipped]
    assert second.path_files == first.path_files == (str(named),)
    assert second.path_rules is not None and second.rules is None


@pytest.mark.parametrize("engine", ENGINES)
def test_nothing_compiling_is_fatal_and_says_so(tmp_path: Path, engine: Engine) -> None:
    bad = _write(tmp_path / "r" / "bad.yar", "rule Bad { condition: $nope }\n")
    with pytest.raises(RuleError) as e:
        _load(tmp_path, engine, bad)
    assert "(none of 1 rule files compiled)" in str(e.value)


def test_an_edited_include_is_not_served_from_the_saved_compile(tmp_path: Path) -> None:
    index = _write(tmp_path / "r" / "index.yar", 'include "sub/one.yar"\n')
    one = _write(tmp_path / "r" / "sub" / "one.yar", "rule One { condition: true }\n")
    assert _load(tmp_path, Engine.YARA, index).count == 1
    one.write_text("rule One { condition: true }\nrule Two { condition: true }\n")
    again = _load(tmp_path, Engine.YARA, index)
    assert not again.from_cache and again.count == 2


def test_rules_compile_says_what_loaded_and_names_each_skipped_file(tmp_path: Path) -> None:
    _write(tmp_path / "r" / "a_bad.yar", "rule Bad1 {\n condition: $nope }\n")
    _write(tmp_path / "r" / "b_good.yar", "rule Good { condition: true }\n")
    _write(tmp_path / "r" / "c_bad.yar", 'rule Bad2 { condition: nothing == "x" }\n')
    cfg = _write(tmp_path / "vigild.toml", "[rules]\nlocal_dirs = []\n")
    r = vigild(
        "rules", "compile", "--config", str(cfg), "--rules", str(tmp_path / "r"),
        "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "1 rules from 1 files, 2 files skipped (yara)"
    assert r.stderr.splitlines() == [
        f'vigild: {tmp_path / "r" / "a_bad.yar"}:2: undefined string "$nope" (rule file skipped)',
        f'vigild: {tmp_path / "r" / "c_bad.yar"}:1: undefined identifier "nothing" '
        "(rule file skipped)",
    ]
    check = vigild("rules", "check", "--config", str(cfg), str(tmp_path / "r"))
    assert check.returncode == 2
    assert check.stderr.splitlines()[-1] == "2 of 3 rule files have errors"


# ------------------------------------------------------- modules and includes


@pytest.mark.parametrize("engine", ENGINES)
def test_a_module_the_build_lacks_is_named_as_such(tmp_path: Path, engine: Engine) -> None:
    rule = _write(
        tmp_path / "r" / "apk.yar",
        'import "androguard"\nrule Apk { condition: androguard.package_name(/evil/) }\n',
    )
    _write(tmp_path / "r" / "ok.yar", "rule Ok { condition: true }\n")
    rs = _load(tmp_path, engine, tmp_path / "r")
    [err] = rs.skipped
    assert err.path == str(rule)
    assert err.message.startswith("module 'androguard' is not available in this build (")
    assert err.message.endswith(f"imported by {rule}")


@pytest.mark.parametrize("engine", ENGINES)
def test_an_index_and_its_includes_load_with_both_engines(tmp_path: Path, engine: Engine) -> None:
    index = _write(
        tmp_path / "r" / "index.yar",
        '/* generated */\ninclude "./a/one.yar"\ninclude "./b/two.yar"\n',
    )
    _write(tmp_path / "r" / "a" / "one.yar", 'include "helper.yar"\nrule One { condition: H }\n')
    _write(tmp_path / "r" / "a" / "helper.yar", "private rule H { condition: true }\n")
    _write(tmp_path / "r" / "b" / "two.yar", "rule Two { condition: true }\n")
    rs = _load(tmp_path, engine, index)
    assert rs.summary == "3 rules from 1 files"
    # the directory holding the index and its files: each rule once, through the index
    assert _load(tmp_path, engine, tmp_path / "r").summary == "3 rules from 1 files"


@pytest.mark.parametrize("engine", ENGINES)
def test_one_bad_entry_of_an_index_is_skipped_alone(tmp_path: Path, engine: Engine) -> None:
    index = _write(
        tmp_path / "r" / "index.yar",
        'include "./one.yar"\ninclude "./bad.yar"\ninclude "./two.yar"\n',
    )
    _write(tmp_path / "r" / "one.yar", "rule One { condition: true }\n")
    _write(tmp_path / "r" / "bad.yar", "rule Bad {\n condition: $nope }\n")
    _write(tmp_path / "r" / "two.yar", "rule Two { condition: true }\n")
    rs = _load(tmp_path, engine, index)
    assert rs.summary == "2 rules from 2 files, 1 files skipped"
    [err] = rs.skipped
    assert (err.path, err.line) == (str(tmp_path / "r" / "bad.yar"), 2)
    assert err.message.endswith(f"(included by {index}:2)")
