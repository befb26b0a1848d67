"""Shared by the fuzz tests: how long to fuzz, and hypothesis settings for running against the
real app and PostgreSQL.

Why a time budget instead of an example count: the same test is the brief pass in every suite
run (CENTRAL_FUZZ_SECONDS unset: a few seconds each) and the long pass by one command
(central/tests/fuzz.sh 1800). Hypothesis runs in rounds of examples until the budget is spent;
each round starts from a fresh random seed, nothing is stored between runs (database=None), and
a failing example is shrunk and reported by hypothesis as usual.
"""

from __future__ import annotations

import collections
import os
import time

from hypothesis import HealthCheck, settings

BRIEF_SECONDS = 6.0


def budget_seconds(brief: float = BRIEF_SECONDS) -> float:
    value = os.environ.get("CENTRAL_FUZZ_SECONDS")
    return float(value) if value else brief


ROUND = settings(max_examples=150, deadline=None, database=None, derandomize=False,
                 suppress_health_check=list(HealthCheck))


class Tally:
    """Counts per status code (and anything else), printed at the end for the report."""

    def __init__(self, name: str):
        self.name = name
        self.counts: collections.Counter = collections.Counter()
        self.started = time.monotonic()

    def add(self, key) -> None:
        self.counts[key] += 1

    def report(self) -> str:
        seconds = time.monotonic() - self.started
        total = sum(v for k, v in self.counts.items() if isinstance(k, int))
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items(), key=str))
        return f"{self.name}: {total} requests in {seconds:.0f} s ({parts})"


def run_for(seconds: float, round_fn) -> int:
    """Call the hypothesis-decorated `round_fn` until `seconds` have passed; return rounds."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while True:
        round_fn()
        rounds += 1
        if time.monotonic() >= deadline:
            return rounds
