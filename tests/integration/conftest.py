"""Fixtures for the on-access tests; the machinery is in onaccess_harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onaccess_harness import Namespace, NotifySocket, OnAccess


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    n = Namespace(tmp_path)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def daemon(ns: Namespace, tmp_path: Path) -> Iterator[OnAccess]:
    d = OnAccess(ns, tmp_path)
    try:
        yield d
    finally:
        d.stop()
