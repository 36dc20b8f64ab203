"""Hash lists: every accepted line shape, and errors that name file and line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vigild import hashes, native, ruleset

SHA = hashlib.sha256(b"bad one").hexdigest()
SHA2 = hashlib.sha256(b"bad two").hexdigest()
MD5 = hashlib.md5(b"bad three").hexdigest()
SHA1 = hashlib.sha1(b"old").hexdigest()


def _compile(tmp_path: Path, name: str, text: str) -> tuple[native.HashDb, hashes.Entries]:
    src = tmp_path / name
    src.write_text(text)
    out = tmp_path / "out.vhdb"
    entries = hashes.compile_lists([src], str(out))
    return native.HashDb(str(out)), entries


def test_plain_list_clamav_lines_and_sha256sum_output(tmp_path: Path) -> None:
    db, entries = _compile(
        tmp_path,
        "mixed.txt",
        f"# comment line\n\n{SHA} Trojan.Plain  # trailing comment\n"
        f"{SHA2.upper()}  *./some dir/file.bin\n"
        f"{MD5}:9:Md5.Listed:73\n",
    )
    assert db.find_sha256(bytes.fromhex(SHA)) == "Trojan.Plain"
    assert db.find_sha256(bytes.fromhex(SHA2)) == "./some dir/file.bin"
    assert db.find_md5(bytes.fromhex(MD5), 9) == "Md5.Listed"
    assert entries.count == 3 and not entries.warnings


def test_hsb_with_any_size_and_nameless_plain_line(tmp_path: Path) -> None:
    db, _ = _compile(tmp_path, "main.hsb", f"{SHA}:*:Any.Size\n{SHA2}\n")
    assert db.find_sha256(bytes.fromhex(SHA)) == "Any.Size"
    assert db.find_sha256(bytes.fromhex(SHA2)) == "main"  # named after the list


def test_sha1_entries_are_skipped_with_a_warning(tmp_path: Path) -> None:
    _, entries = _compile(tmp_path, "legacy.hsb", f"{SHA1}:10:Old.Sha1\n{SHA}:10:New\n")
    assert entries.count == 1
    assert entries.warnings == [
        f"{tmp_path / 'legacy.hsb'}: 1 SHA-1 entries skipped (vigild matches SHA-256 and MD5)"
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (f"{SHA}\nnot-a-hash name\n", 2, "not a hexadecimal hash"),
        (f"{SHA[:-2]} short\n", 1, "hash of 62 hex digits"),
        (f"\n\n{MD5} name\n", 3, "an MD5 needs its size"),
        (f"{SHA}:big:Name\n", 1, "size must be a number or '*'"),
        (f"{SHA}:12\n", 1, "expected HASH:SIZE:NAME"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    src = tmp_path / "list.txt"
    src.write_text(text)
    with pytest.raises(hashes.HashListError) as e:
        hashes.compile_lists([src], str(tmp_path / "out"))
    assert str(e.value).startswith(f"{src}:{line}: ")
    assert message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_compiled_database_is_used_as_is_but_only_alone(tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text(f"{SHA} X\n")
    compiled = tmp_path / "c.vhdb"
    hashes.compile_lists([lst], str(compiled))
    db = ruleset.hash_database([str(compiled)], None)
    assert db is not None and db.path == str(compiled)
    with pytest.raises(hashes.HashListError, match="must be the only hash source"):
        ruleset.hash_database([str(compiled), str(lst)], None)


def test_lists_are_compiled_once_and_reused(tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text(f"{SHA} X\n")
    cache = tmp_path / "compiled"
    cache.mkdir(mode=0o700)
    first = ruleset.hash_database([str(lst)], cache)
    assert first is not None
    built = list(cache.glob("hashes-*.vhdb"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    second = ruleset.hash_database([str(lst)], cache)
    assert second is not None and second.path == str(built[0])
    assert built[0].stat().st_mtime_ns == mtime
    lst.write_text(f"{SHA} X\n{SHA2} Y\n")  # changed list: rebuilt, old file dropped
    third = ruleset.hash_database([str(lst)], cache)
    assert third is not None and third.find_sha256(bytes.fromhex(SHA2)) == "Y"
    assert len(list(cache.glob("hashes-*.vhdb"))) == 1


@pytest.mark.parametrize(
    "size", ["18446744073709551616", "99999999999999999999999", "²", "1e3", "-1"]
)
def test_sizes_out_of_range_or_not_ascii_are_line_errors(tmp_path: Path, size: str) -> None:
    src = tmp_path / "bad.hdb"
    src.write_text(f"{MD5}:{size}:Name\n")
    with pytest.raises(hashes.HashListError, match=rf"{src}:1: size must be a number"):
        hashes.compile_lists([src], str(tmp_path / "out"))
