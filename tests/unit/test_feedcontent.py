"""A feed's archive is refused past its member limit before it costs memory or inodes
(found by review: zipfile read a whole zip directory first, and directories were
created on disk without being counted)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from archives import tar_of, zip_listing
from vigild import feedcontent
from vigild.feedcontent import ContentError


def test_a_zip_listing_more_entries_than_the_limit_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    data = zip_listing(feedcontent.MAX_MEMBERS * 2)
    tracemalloc.start()
    try:
        with pytest.raises(ContentError, match="more than 100000 archive members"):
            feedcontent.unpack(data, tmp_path / "g", 1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_directories_count_as_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feedcontent, "MAX_MEMBERS", 10)
    with pytest.raises(ContentError, match="more than 10 archive members"):
        feedcontent.unpack(tar_of({}, dirs=11), tmp_path / "g", 1 << 30)
    assert len(list((tmp_path / "g").iterdir())) <= 10
