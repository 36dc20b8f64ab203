"""Fixtures shared by the suites (pytest finds them here; never import this module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fanrig import Rig, room_for_fds


@pytest.fixture(scope="module")
def fd_room() -> None:
    """Room for the event fds a socketpair rig hands out (RLIMIT_NOFILE)."""
    room_for_fds()


@pytest.fixture
def rigs(fd_room: None) -> Iterator[list[Rig]]:
    """Socketpair rigs a test made: each closed in teardown, also when it failed."""
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()
