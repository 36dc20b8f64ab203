"""The bounded LRU cache: bounded, least-recently-used, safe across threads."""

from __future__ import annotations

import os
import threading

import pytest

from vigild import native


def _key(i: int) -> bytes:
    return i.to_bytes(8, "little") + bytes(40)


def test_get_put_and_update() -> None:
    c = native.Cache(1024)
    assert c.get(_key(1)) is None
    c.put(_key(1), 7)
    assert c.get(_key(1)) == 7
    c.put(_key(1), 9)
    assert c.get(_key(1)) == 9
    s = c.stats()
    assert (s.entries, s.inserts, s.hits, s.misses) == (1, 1, 2, 1)


def test_memory_is_bounded_and_evictions_counted() -> None:
    c = native.Cache(1024)
    cap = c.stats().capacity
    for i in range(cap * 10):
        c.put(_key(i), 1)
    s = c.stats()
    assert s.entries <= cap
    assert s.evictions == cap * 10 - s.entries
    present = sum(c.get(_key(i)) is not None for i in range(cap * 10))
    assert present == s.entries


@pytest.mark.parametrize("fill", [0.5, 0.76, 0.85])
def test_the_cache_keeps_what_it_has_room_for(fill: float) -> None:
    """Issue 12: a second pass over files that fit the cache rescans none (50,000
    files: 76 % of the default verdict_cache_entries). Keys as the verdict cache
    builds them (device, inode, ctime, size, generation): sequential inodes."""
    c = native.Cache(65536)
    cap = c.stats().capacity
    keys = [
        b"".join(w.to_bytes(8, "little") for w in (2049, 1000 + i, 1764000000 + i, 4096, 0, 7))
        for i in range(int(cap * fill))
    ]
    for k in keys:
        c.put(k, 1)
    assert c.stats().evictions == 0
    assert sum(c.get(k) is None for k in keys) == 0


def test_recently_used_entry_survives_a_flood() -> None:
    c = native.Cache(1024)
    hot = _key(10**9)
    c.put(hot, 3)
    for i in range(c.stats().capacity * 20):
        c.put(_key(i), 1)
        assert c.get(hot) == 3


def test_clear() -> None:
    c = native.Cache(2048)
    for i in range(100):
        c.put(_key(i), 1)
    c.clear()
    assert c.stats().entries == 0
    assert all(c.get(_key(i)) is None for i in range(100))


def test_bad_capacity() -> None:
    with pytest.raises(ValueError):
        native.Cache(0)


def test_threads_see_their_own_writes() -> None:
    c = native.Cache(1 << 16)
    errors: list[str] = []

    def work(t: int) -> None:
        for _i in range(20000):
            k = os.urandom(8) + t.to_bytes(8, "little") + bytes(32)
            c.put(k, t)
            if c.get(k) not in (t, None):  # None only if evicted meanwhile
                errors.append(f"thread {t} read a foreign value")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert c.stats().inserts == 8 * 20000
