"""CPU threads for numba's compiled loops and torch, and a training-time tuner that picks
how many to use from what the machine is doing.

Both libraries run their parallel regions on one OpenMP runtime whose idle threads spin
before they sleep. Alone on a machine, spreading an iteration over every core pays; two fits
side by side, each with every core, spin against each other and each runs several times
slower than with one thread (benchmarks/results/threads.md). Which count is fastest depends
on the load, which changes during a long fit, so `ThreadTuner` measures instead of guessing:
every so often it times a few training iterations at the current count, at half and at
double it, and keeps the fastest. The kernels split trees, particles and components among
threads, never the terms of one sum, so the thread count changes speed, not results.
"""

from __future__ import annotations

import logging
import os
import statistics

import numba
import torch

from vbpi_mix.errors import VbpiMixError

LOG = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a batch scheduler or `taskset`
    sets it), at most numba's pool size (NUMBA_NUM_THREADS, fixed when numba starts)."""
    return max(1, min(len(os.sched_getaffinity(0)), numba.config.NUMBA_NUM_THREADS))


def set_threads(count: int) -> None:
    """Run numba's parallel loops and torch's intra-op work on `count` threads."""
    numba.set_num_threads(count)
    torch.set_num_threads(count)


def set_fixed_threads(count: int) -> None:
    """`--threads N`: exactly N threads, refused (one line) beyond numba's pool."""
    available = numba.config.NUMBA_NUM_THREADS
    if count > available:
        raise VbpiMixError(f"--threads {count}: at most {available} here (NUMBA_NUM_THREADS)")
    set_threads(count)


class ThreadTuner:
    """Chooses the thread count of a training loop by timing it.

    A round times `probe` iterations (after one to settle) at each of n/2, n and 2n threads
    (within 1..`maximum`, n the current count) and keeps the count with the smallest median
    time per iteration, the smaller count on a tie; a count whose first two timed iterations
    are both over twice the best median so far is dropped at once (on a crowded machine an
    oversubscribed iteration can cost many times a good one). Rounds start at the first
    iteration and then every `period` iterations; the period doubles, up to
    `longest_period`, each time a round keeps the count, and returns to `period` when the
    count changes, so a steady machine is probed rarely and a change of load is noticed
    within a few thousand iterations. Probing costs at most the few iterations run at a worse count.
    """

    def __init__(
        self, maximum: int, period: int = 500, probe: int = 15, longest_period: int = 8000
    ) -> None:
        self.maximum, self.probe = maximum, probe
        self.period = self.base_period = period
        self.longest_period = longest_period
        self.count = maximum
        self._candidates: list[int] = []
        self._timings: dict[int, list[float]] = {}
        self._until_round = 0
        set_threads(self.count)

    def after_iteration(self, seconds: float) -> None:
        """Record one iteration's wall-clock seconds and set the threads for the next."""
        if not self._candidates:
            self._until_round -= 1
            if self._until_round <= 0:
                self._start_round()
            return
        trying = self._candidates[0]
        timings = self._timings.setdefault(trying, [])
        timings.append(seconds)
        finished = [statistics.median(t[1:]) for n, t in self._timings.items() if n != trying]
        hopeless = len(timings) >= 3 and bool(finished) and min(timings[1:]) > 2 * min(finished)
        if len(timings) <= self.probe and not hopeless:  # the first timing only settles it
            return
        self._candidates.pop(0)
        if self._candidates:
            set_threads(self._candidates[0])
        else:
            self._finish_round()

    def _start_round(self) -> None:
        half, double = max(1, self.count // 2), min(self.maximum, 2 * self.count)
        self._candidates = sorted({half, self.count, double})
        self._timings = {}
        if len(self._candidates) == 1:  # one core: nothing to choose
            self._candidates = []
            self._until_round = self.longest_period
            return
        set_threads(self._candidates[0])

    def _finish_round(self) -> None:
        medians = {n: statistics.median(times[1:]) for n, times in self._timings.items()}
        best = min(medians, key=lambda n: (medians[n], n))
        self.period = (
            min(2 * self.period, self.longest_period) if best == self.count else self.base_period
        )
        self.count = best
        self._until_round = self.period
        set_threads(best)
        timings = ", ".join(f"{n}: {1000 * t:.2f}" for n, t in sorted(medians.items()))
        LOG.info("training threads %d (ms per iteration by threads: %s)", best, timings)
