"""Hash lists: every accepted line shape, and errors that name file and line."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from vigild import hashes, native, ruleset


def _scan_args(tmp_path: Path) -> list[str]:
    """``scan`` with a compiled-rules directory of the test's own (root's default is shared)."""
    return ["scan", "--compiled-dir", str(tmp_path / "scan-compiled")]


SHA = hashlib.sha256(b"bad one").hexdigest()
SHA2 = hashlib.sha256(b"bad two").hexdigest()
MD5 = hashlib.md5(b"bad three").hexdigest()
SHA1 = hashlib.sha1(b"old").hexdigest()


def _compile(tmp_path: Path, name: str, text: str) -> tuple[native.HashDb, hashes.Compiled]:
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


SHA1B = hashlib.sha1(b"older").hexdigest()


def test_clamav_sha1_lines_are_loaded_with_their_size(tmp_path: Path) -> None:
    db, entries = _compile(
        tmp_path, "legacy.hsb", f"{SHA1}:10:Old.Sha1\n{SHA}:10:New\n{SHA1B.upper()}:*:Any.Sha1:73\n"
    )
    assert entries.count == 3 and not entries.warnings
    assert db.find_sha1(bytes.fromhex(SHA1), 10) == "Old.Sha1"
    assert db.find_sha1(bytes.fromhex(SHA1), 11) is None  # its size is part of the entry
    assert db.find_sha1(bytes.fromhex(SHA1B), 999) == "Any.Sha1"
    assert db.info().sha1_entries == 2


def test_a_plain_sha1_list_and_sha1sum_output_are_loaded(tmp_path: Path) -> None:
    db, entries = _compile(
        tmp_path, "old.txt", f"{SHA1} Trojan.Old  # note\n{SHA1B}  *./dir/file.bin\n"
    )
    assert entries.count == 2 and not entries.warnings
    assert db.find_sha1(bytes.fromhex(SHA1), 1) == "Trojan.Old"
    assert db.find_sha1(bytes.fromhex(SHA1B), 1 << 33) == "./dir/file.bin"
    assert db.needs_sha1(0) and not db.needs_md5(0)  # size-less: a SHA-1 of every file


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


# ------------------------------------------------- ClamAV meanings, LOKI (issue 10)

CORPUS_IOCS = Path("/work/shared/corpus-rules/signature-base/iocs/hash-iocs.txt")


def test_a_byte_order_mark_and_a_hash_sign_in_a_name_are_fine(tmp_path: Path) -> None:
    src = tmp_path / "bom.hsb"
    src.write_bytes(b"\xef\xbb\xbf" + f"{SHA}:*:Win.Trojan.Agent#2\n".encode())
    out = tmp_path / "out.vhdb"
    hashes.compile_lists([src], str(out))
    assert native.HashDb(str(out)).find_sha256(bytes.fromhex(SHA)) == "Win.Trojan.Agent#2"


def test_loki_hash_iocs_are_read_md5_without_a_size(tmp_path: Path) -> None:
    db, entries = _compile(
        tmp_path,
        "hash-iocs.txt",
        "# LOKI CUSTOM EVIL HASHES\n"
        f"{MD5};DEEP PANDA Sakula Malware - http://goo.gl/R3e6eG\n"
        f"{SHA};Dark Caracal - PE32 executable\n"
        f"{SHA1};Old one\n",
    )
    assert db.find_md5(bytes.fromhex(MD5), 12345) == (
        "DEEP PANDA Sakula Malware - http://goo.gl/R3e6eG"
    )
    assert db.find_sha256(bytes.fromhex(SHA)) == "Dark Caracal - PE32 executable"
    assert db.find_sha1(bytes.fromhex(SHA1), 7) == "Old one"
    assert db.info().any_size  # every file then gets an MD5 and a SHA-1: the cost README names
    assert db.needs_md5(7) and db.needs_sha1(7)
    assert entries.count == 3 and not entries.warnings


@pytest.mark.skipif(not CORPUS_IOCS.exists(), reason=f"{CORPUS_IOCS} is not here")
def test_signature_base_hash_iocs_load(tmp_path: Path) -> None:
    out = tmp_path / "out.vhdb"
    entries = hashes.compile_lists([CORPUS_IOCS], str(out))
    info = native.HashDb(str(out)).info()
    assert info.md5_entries > 900 and info.sha256_entries > 500 and info.sha1_entries > 850
    assert not entries.warnings


def _scan(tmp_path: Path, *hash_sources: Path, pua: bool = False) -> tuple[int, str, str]:
    from support import vigild

    cfg = tmp_path / "vigild.toml"
    cfg.write_text(
        f'[rules]\ncompiled_dir = "{tmp_path / "c"}"\nlocal_dirs = []\n'
        f"pua = {'true' if pua else 'false'}\n"
        f"hashes = {json.dumps([str(h) for h in hash_sources])}\n"
    )
    r = vigild(*_scan_args(tmp_path), "--config", str(cfg), "--no-progress", str(tmp_path / "t"))
    return r.returncode, r.stdout, r.stderr


def _target(tmp_path: Path, body: bytes) -> Path:
    (tmp_path / "t").mkdir(exist_ok=True)
    f = tmp_path / "t" / "tool.bin"
    f.write_bytes(body)
    return f


def test_an_allow_listed_file_is_never_reported(tmp_path: Path) -> None:
    body = b"bad one"
    target = _target(tmp_path, body)
    lists = tmp_path / "db"
    lists.mkdir()
    (lists / "main.hsb").write_text(f"{SHA}:{len(body)}:Win.Test.Bad\n")
    assert _scan(tmp_path, lists)[0] == 1
    (lists / "local.fp").write_text(f"{hashlib.md5(body).hexdigest()}:{len(body)}:Known.Good\n")
    code, out, err = _scan(tmp_path, lists)
    assert (code, err) == (0, "")
    assert "FOUND" not in out and str(target) not in out
    (lists / "local.fp").unlink()
    (lists / "local.sfp").write_text(f"{SHA}:*:Known.Good\n")
    assert _scan(tmp_path, lists)[0] == 0


def test_a_file_whose_sha1_a_loki_list_names_is_found(tmp_path: Path) -> None:
    body = b"a sample only its SHA-1 names"
    target = _target(tmp_path, body)
    iocs = tmp_path / "hash-iocs.txt"
    iocs.write_text(f"# LOKI\n{hashlib.sha1(body).hexdigest()};APT Sample - old SHA-1 IOC\n")
    code, out, err = _scan(tmp_path, iocs)
    assert (code, err) == (1, "")
    assert f"{target}: FOUND APT Sample - old SHA-1 IOC (known-bad-hash)" in out.splitlines()


def test_a_sha1_allow_list_entry_is_honoured(tmp_path: Path) -> None:
    body = b"bad one"
    target = _target(tmp_path, body)
    lists = tmp_path / "db"
    lists.mkdir()
    (lists / "main.hsb").write_text(f"{SHA}:{len(body)}:Win.Test.Bad\n")
    (lists / "local.sfp").write_text(f"{hashlib.sha1(body).hexdigest()}:{len(body)}:Known.Good\n")
    code, out, err = _scan(tmp_path, lists)
    assert (code, err) == (0, "")
    assert "FOUND" not in out and str(target) not in out
    (lists / "local.sfp").write_text(f"{hashlib.sha1(body).hexdigest()}:{len(body) + 1}:Other\n")
    assert _scan(tmp_path, lists)[0] == 1  # the size is part of the entry


def test_a_database_of_the_old_format_in_compiled_dir_is_rebuilt(tmp_path: Path) -> None:
    """The name of a compiled list carries the format version: an older vigild's
    database is never opened (it would be refused), it is compiled again and dropped."""
    lst = tmp_path / "l.txt"
    lst.write_text(f"{SHA1} Old.Sha1\n")
    cache = tmp_path / "compiled"
    cache.mkdir(mode=0o700)
    h = hashlib.sha256(str(lst).encode() + b"\0" + lst.read_bytes())  # version 1's name
    old = cache / f"hashes-{h.hexdigest()[:24]}.vhdb"
    hashes.compile_lists([lst], str(old))
    data = bytearray(old.read_bytes())
    data[8:12] = (1).to_bytes(4, "little")
    old.write_bytes(data)
    old.chmod(0o600)
    db = ruleset.hash_database([str(lst)], cache)
    assert db is not None and db.path != str(old) and not old.exists()
    assert db.find_sha1(bytes.fromhex(SHA1), 5) == "Old.Sha1"


def test_pua_lists_load_only_when_asked(tmp_path: Path) -> None:
    target = _target(tmp_path, b"bad one")
    pua = tmp_path / "daily.hsu"
    pua.write_text(f"{SHA}:*:PUA.Win.Tool.Test\n")
    code, out, err = _scan(tmp_path, pua)
    assert code == 0
    assert err.splitlines() == [
        f"vigild: {pua}: potentially unwanted applications, skipped (rules.pua = true loads them)"
    ]
    code, out, _ = _scan(tmp_path, pua, pua=True)
    assert code == 1
    assert f"{target}: FOUND PUA.Win.Tool.Test (known-bad-hash)" in out.splitlines()


def test_a_file_in_a_hash_directory_that_is_no_list_is_named(tmp_path: Path) -> None:
    _target(tmp_path, b"x")
    lists = tmp_path / "db"
    lists.mkdir()
    (lists / "main.hsb").write_text(f"{SHA}:*:Win.Test.Bad\n")
    (lists / "README.md").write_text("about these lists\n")
    _code, _out, err = _scan(tmp_path, lists)
    assert err.splitlines()[0].startswith(f"vigild: {lists / 'README.md'}: not a hash list (")


# ------------------------------------------------- lists read in C (issue 10, point 5)


def _python_db(src: Path, out: Path) -> bytes:
    """The database the Python reader alone builds from ``src``."""
    e = hashes.parse_files([src])
    native.write_hashdb(str(out), bytes(e.sha), bytes(e.md5), bytes(e.names), bytes(e.sha1))
    return out.read_bytes()


MD5B = hashlib.md5(b"four").hexdigest()
ODD_LINES = [
    f"{SHA}\tTab.Name\there",  # tabs read as spaces, in the name too
    f"  {SHA2}:*: Spaced.Name :73 ",
    f"{MD5}:9:Md5.Listed",
    f"{MD5B};LOKI comment: with colons",
    f"{SHA1};an old SHA-1",
    f"{SHA.upper()}  *./dir/file name.bin  # sha256sum output",
    "# a comment",
    "",
    f"{SHA}:*:Repeated.Hash",  # a repeat keeps the first name
    f"{SHA2} Ünïcödé.Name",
    f"{MD5B}:12:Unix.Trojan\u3000",  # an ideographic space is stripped
    f"\u00a0{SHA};nbsp around\u2003",
]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_the_c_reader_builds_what_the_python_reader_builds(tmp_path: Path, newline: str) -> None:
    src = tmp_path / "odd.txt"
    src.write_bytes(b"\xef\xbb\xbf" + newline.join(ODD_LINES).encode())
    out = tmp_path / "c.vhdb"
    compiled = hashes.compile_lists([src], str(out))
    assert out.read_bytes() == _python_db(src, tmp_path / "py.vhdb")
    assert compiled.count == 10
    fd = os.open(src, os.O_RDONLY)
    read = native.HashListBuilder().parse(fd, "odd")
    os.close(fd)
    assert (read.bad_line, read.lines, read.entries, read.sha1) == (0, len(ODD_LINES), 10, 1)
    assert compiled.warnings == []
    db = native.HashDb(str(out))
    assert db.find_sha1(bytes.fromhex(SHA1), 3) == "an old SHA-1"
    assert db.find_sha256(bytes.fromhex(SHA)) == "Tab.Name here"
    # the first listed entry that fits answers, any-size or not (the admin's lists
    # are read before feed content, so the admin's name is the one reported)
    assert db.find_md5(bytes.fromhex(MD5B), 12) == "LOKI comment: with colons"


def test_a_name_python_reads_differently_is_read_by_python(tmp_path: Path) -> None:
    src = tmp_path / "latin1.hsb"
    src.write_bytes(f"{SHA}:*:Caf".encode() + b"\xe9\n" + f"{SHA2}:*:Next\n".encode())
    other = tmp_path / "other.hsb"
    other.write_text(f"{MD5}:9:Next\n")  # names shared across lists stay one copy
    out = tmp_path / "c.vhdb"
    compiled = hashes.compile_lists([other, src], str(out))
    db = native.HashDb(str(out))
    assert db.find_sha256(bytes.fromhex(SHA)) == "Caf\ufffd"
    assert db.find_sha256(bytes.fromhex(SHA2)) == "Next"
    assert compiled.count == 3 and db.info().names_bytes == len(b"Next\0Caf\xef\xbf\xbd\0")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_bad_line_is_named_whatever_the_line_ends(tmp_path: Path, newline: str) -> None:
    src = tmp_path / "list.hsb"
    src.write_bytes(newline.join([f"{SHA}:1:A", "", f"{SHA2}:x:B", ""]).encode())
    with pytest.raises(hashes.HashListError, match=rf"^{src}:3: size must be a number"):
        hashes.compile_lists([src], str(tmp_path / "out"))


def test_a_missing_list_and_a_directory_are_errors_naming_them(tmp_path: Path) -> None:
    for bad in (tmp_path / "absent.hsb", tmp_path):
        with pytest.raises(hashes.HashListError, match=rf"^{bad}:0: "):
            hashes.compile_lists([bad], str(tmp_path / "out"))


def test_checking_lists_reads_them_as_compiling_does(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.hsb", tmp_path / "bad.hsb"
    good.write_text(f"{SHA}:*:A\n{SHA1}:*:Old\n")
    bad.write_text(f"{SHA}:*:A\n{MD5} name\n")
    assert hashes.check_lists([good]) == []
    with pytest.raises(hashes.HashListError, match=rf"^{bad}:2: an MD5 needs its size"):
        hashes.check_lists([good, bad])
