"""Timing several contenders side by side, so noise hits them all alike.

A ``Contest`` runs every contender once per round, rotating who goes
first, and keeps each one's wall times (``time.perf_counter``). Hand
``contest.round`` to ``benchmark.pedantic``: pytest-benchmark then drives
the rounds (and disables GC with ``--benchmark-disable-gc``), and its own
table shows the time of a whole round; the per-contender figures come
from here. We report the best round of each contender (the least
disturbed one on a shared, noisy machine) and keep the median in the JSON.

A contender with set-up and tear-down of its own (start a daemon, run the
timed part, stop it) returns ``Timed``: the contest then keeps the time it
measured itself, and its ``value`` as the round's result.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROUNDS = 3


@dataclass(frozen=True)
class Timed:
    """What a contender measured itself: the seconds to keep, and its result."""

    seconds: float
    value: Any = None


class Contest:
    """Wall times of named contenders, measured interleaved."""

    def __init__(self, contenders: dict[str, Callable[[], Any]]) -> None:
        self.contenders = contenders
        self.times: dict[str, list[float]] = {name: [] for name in contenders}
        self.results: dict[str, list[Any]] = {name: [] for name in contenders}  # per round
        self._rounds = 0

    def round(self) -> None:
        """Run every contender once; the first of the previous round goes last."""
        names = list(self.contenders)
        shift = self._rounds % len(names)
        self._rounds += 1
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            result = self.contenders[name]()
            elapsed = time.perf_counter() - start
            if isinstance(result, Timed):
                elapsed, result = result.seconds, result.value
            self.times[name].append(elapsed)
            self.results[name].append(result)

    def run(self, benchmark: Any, rounds: int = ROUNDS) -> Contest:
        """Drive ``rounds`` rounds through pytest-benchmark's pedantic mode."""
        benchmark.pedantic(self.round, rounds=rounds, iterations=1, warmup_rounds=0)
        return self

    def result(self, name: str) -> Any:
        """What ``name`` returned, the same in every round (or AssertionError)."""
        first, *rest = self.results[name]
        assert all(r == first for r in rest), f"{name} returned different results across rounds"
        return first

    def best(self, name: str) -> float:
        return min(self.times[name])

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def stats(self) -> dict[str, dict[str, Any]]:
        """Best, median and every time of each contender, for the JSON."""
        return {
            name: {"best_s": min(t), "median_s": statistics.median(t), "all_s": t}
            for name, t in self.times.items()
        }
