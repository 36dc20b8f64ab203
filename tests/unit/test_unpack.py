"""Unpacking archives in memory: formats, nesting, and every limit with its reason."""

from __future__ import annotations

import tracemalloc

import pytest

from archives import compressed, tar_of, zip_listing, zip_of
from vigild import unpack
from vigild.unpack import Limits


def _walk(
    data: bytes, limits: Limits | None = None, name: str = "f"
) -> tuple[dict[str, bytes], list[unpack.Stop]]:
    it, stops = unpack.members(data, limits or Limits(), name)
    return {m.path: m.data for m in it}, stops


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (zip_of({"a/b.php": b"x"}), "a/b.php"),
        (zip_of({"a/b.php": b"x"}, deflate=False), "a/b.php"),
        (tar_of({"a/b.php": b"x"}), "a/b.php"),
        (tar_of({"a/b.php": b"x"}, "gz"), "up.tar!a/b.php"),
        (tar_of({"a/b.php": b"x"}, "bz2"), "up.tar!a/b.php"),
        (tar_of({"a/b.php": b"x"}, "xz"), "up.tar!a/b.php"),
    ],
    ids=["zip", "stored zip", "tar", "tar.gz", "tar.bz2", "tar.xz"],
)
def test_every_format_yields_its_member(data: bytes, expected: str) -> None:
    got, stops = _walk(data, name="up.tar.gz" if data[:2] == b"\x1f\x8b" else "up.tar")
    if data[:3] in (b"BZh", b"\xfd7z"):
        got, stops = _walk(data, name="up.tar.bz2" if data[:3] == b"BZh" else "up.tar.xz")
    assert got[expected] == b"x" and stops == []


def test_a_lone_compressed_file_yields_its_content_under_its_name() -> None:
    got, _ = _walk(compressed(b"payload", "gz"), name="evil.sh.gz")
    assert got == {"evil.sh": b"payload"}


def test_nested_archives_name_the_whole_way_down() -> None:
    inner = zip_of({"dir/shell.php": b"<?php"})
    outer = tar_of({"pkg/inner.jar": inner}, "gz")
    got, stops = _walk(outer, name="upload.tgz")
    assert got["upload.tar!pkg/inner.jar!dir/shell.php"] == b"<?php" and stops == []


def test_depth_limit() -> None:
    data = b"core"
    for i in range(4):
        data = zip_of({f"l{i}.zip": data})
    got, stops = _walk(data, Limits(depth=2))
    assert [s.limit for s in stops] == ["depth"]
    assert "l3.zip" in got and not any(p.count("!") >= 2 for p in got)


def test_member_count_limit() -> None:
    """A tar is read as it goes: its first members are scanned. A zip's
    directory says up front that it is over the limit: none is."""
    files = {f"m{i}": b"x" for i in range(20)}
    got, stops = _walk(tar_of(files), Limits(members=5))
    assert len(got) == 5 and [s.limit for s in stops] == ["members"]
    got, stops = _walk(zip_of(files), Limits(members=5))
    assert got == {} and [s.limit for s in stops] == ["members"]


@pytest.mark.parametrize(
    "data",
    [zip_listing(200_000), zip_listing(200_000, said=1), b"#!/bin/sh\n" + zip_listing(200_000)],
    ids=["zip64 count", "count that lies", "behind a stub"],
)
def test_a_zip_listing_more_than_the_limit_is_stopped_before_its_directory_is_read(
    data: bytes,
) -> None:
    """Review finding: ZipFile held every entry of the directory before the
    limit counted one, so a 47 MB zip listing 1.3M entries took 449 MB."""
    tracemalloc.start()
    try:
        got, stops = _walk(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"peak {peak} bytes"
    assert got == {} and [s.limit for s in stops] == ["members"], stops[:2]


def test_a_zip_of_long_names_within_the_limit_is_read_whole() -> None:
    """Its directory is bigger than the limit's worth of the smallest entries;
    walking it shows it lists no more than the limit."""
    files = {"d/" * 50 + f"m{i}": b"x" for i in range(40)}
    got, stops = _walk(zip_of(files), Limits(members=50))
    assert len(got) == 40 and stops == []


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_directories_count_as_members(fmt: str) -> None:
    """Review finding: a tar's directories were never counted, so one of
    120,000 empty directories (a 564 KB .tar.gz) cost vigild scan 135 MB and
    1.5 s and came out clean."""
    if fmt == "tar":
        data = tar_of({"a": b"x"}, dirs=2000)
    else:
        data = zip_of({**{f"d{i}/": b"" for i in range(2000)}, "a": b"x"})
    _, stops = _walk(data, Limits(members=100))
    assert [s.limit for s in stops] == ["members"]


def test_total_unpacked_limit() -> None:
    _, stops = _walk(
        zip_of({f"m{i}": bytes(1 << 20) for i in range(5)}), Limits(unpacked=3 << 20, ratio=10**6)
    )
    assert [s.limit for s in stops] == ["unpacked"]


@pytest.mark.parametrize("fmt", ["zip", "gz", "xz"])
def test_a_bomb_is_stopped_by_the_ratio_before_it_is_unpacked(fmt: str) -> None:
    zeros = bytes(300 << 20)
    data = zip_of({"zeros": zeros}) if fmt == "zip" else compressed(zeros, fmt)
    got, stops = _walk(data, Limits(member_size=64 << 20))
    # stopped by the ratio, or at the latest held to one member's worth
    assert [s.limit for s in stops] in (["ratio"], ["member_size"])
    assert sum(len(v) for v in got.values()) <= 64 << 20


def test_encrypted_members_are_named() -> None:
    _, stops = _walk(zip_of({"secret.php": b"x"}, encrypt_flag=True))
    assert [(s.limit, s.detail) for s in stops] == [("encrypted", "encrypted member secret.php")]


def test_time_limit() -> None:
    _, stops = _walk(
        zip_of({f"m{i}": bytes(1 << 20) for i in range(50)}), Limits(seconds=0.0, ratio=10**6)
    )
    assert [s.limit for s in stops] == ["time"]


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04garbage",
        b"\x1f\x8bgarbage",
        zip_of({"a": b"x" * 1000})[:-30],
        b"BZh9nope",
        zip_of({"a": b"x"})[:-10] + (1 << 30).to_bytes(4, "little") + bytes(6),
    ],
    ids=["zip header only", "gzip header only", "truncated zip", "bad bzip2", "huge directory"],
)
def test_a_malformed_archive_is_could_not_unpack_never_an_exception(data: bytes) -> None:
    _, stops = _walk(data)
    assert [s.limit for s in stops] == [unpack.MALFORMED]


def test_a_big_member_is_scanned_by_its_head() -> None:
    it, _ = unpack.members(zip_of({"big": b"A" * 5000}), Limits(member_size=1000))
    (m,) = list(it)
    assert m.data == b"A" * 1000 and m.truncated


def test_nested_members_are_held_within_one_budget() -> None:
    """Review finding: each nesting level kept its own copy of its member, so a
    few stored levels of a 60 MB file held over 400 MB."""
    data = b"x" * (3 << 20)
    for i in range(4):
        data = zip_of({f"level{i}.zip": data}, deflate=False)
    got, stops = _walk(data, Limits(held=8 << 20))
    assert any(s.limit == "member_size" for s in stops), stops
    assert max(len(v) for v in got.values()) <= 8 << 20
