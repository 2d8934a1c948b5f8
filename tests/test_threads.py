"""The training thread tuner, on a simulated machine whose iteration time depends on the
thread count, and the guarantee it relies on: results do not depend on the thread count."""

from __future__ import annotations

import numba
import pytest
import torch

from tests.conftest import EXAMPLE_FASTA
from tests.test_inference import example_support
from vbpi_mix.inference.runs import ModelConfig, create_run
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.threads import ThreadTuner, set_threads, usable_cores

pytestmark = [
    pytest.mark.skipif(
        numba.config.NUMBA_NUM_THREADS < 2, reason="needs numba's pool to hold 2 threads"
    ),
    pytest.mark.usefixtures("restore_threads"),
]


def run_iterations(tuner: ThreadTuner, seconds_at: dict[int, float], n: int) -> list[int]:
    """n iterations whose time depends on the thread count in force; the counts used."""
    used = []
    for _ in range(n):
        count = numba.get_num_threads()
        assert torch.get_num_threads() == count  # one knob for both pools
        used.append(count)
        tuner.after_iteration(seconds_at[count])
    return used


def test_the_tuner_keeps_the_faster_count_and_follows_a_change_of_load():
    tuner = ThreadTuner(maximum=2, period=20, probe=3, longest_period=80)
    alone, shared = {1: 3.0, 2: 2.0}, {1: 3.5, 2: 14.0}
    used = run_iterations(tuner, alone, 10)
    assert used[:10] == [2, 1, 1, 1, 1, 2, 2, 2, 2, 2]  # a round at once: 1 then 2, keeps 2
    assert tuner.count == 2 and tuner.period == 40  # kept: the next round waits twice as long
    used = run_iterations(tuner, shared, 40 + 8 + 5)
    assert used[-5:] == [1] * 5 and tuner.count == 1 and tuner.period == 20  # changed: reset
    assert used[:39] == [2] * 39  # no probing between rounds


def test_probing_costs_only_the_rounds():
    tuner = ThreadTuner(maximum=2, period=50, probe=5, longest_period=400)
    used = run_iterations(tuner, {1: 1.0, 2: 2.0}, 2000)
    assert tuner.count == 1
    assert used.count(2) < 0.04 * len(used)  # the rounds' iterations at the slower count


def test_one_core_is_never_probed():
    tuner = ThreadTuner(maximum=1, period=5, probe=2)
    assert run_iterations(tuner, {1: 1.0}, 30) == [1] * 30


def test_usable_cores_follow_the_affinity():
    assert 1 <= usable_cores() <= numba.config.NUMBA_NUM_THREADS


def test_training_does_not_depend_on_the_thread_count(tmp_path):
    """Bit for bit: the tuner may change the count at any iteration."""
    states = []
    for threads in (1, 2):
        set_threads(threads)
        model = ModelConfig(alignment=str(EXAMPLE_FASTA), components=3)
        training = TrainingConfig(iterations=6, particles=4, seed=2, eval_every=3,
                                  eval_particles=30)  # fmt: skip
        run = create_run(tmp_path / str(threads), model, training, example_support())
        records = run.trainer.run(progress=False)
        states.append((records, run.mixture.state_dict()))
    (records_1, state_1), (records_2, state_2) = states
    strip = [{k: v for k, v in r.items() if "seconds" not in k} for r in records_1]
    assert strip == [{k: v for k, v in r.items() if "seconds" not in k} for r in records_2]
    for name, value in state_1.items():
        assert torch.equal(value, state_2[name]), name


def test_a_hopeless_count_is_dropped_after_two_timed_iterations():
    tuner = ThreadTuner(maximum=2, period=100, probe=5)
    used = run_iterations(tuner, {1: 1.0, 2: 30.0}, 20)
    # the first iteration at 2, six at 1 (one settles), then 2 only for one settling and two
    # timed iterations, both over twice 1's median: dropped
    assert used == [2] + [1] * 6 + [2] * 3 + [1] * 10 and tuner.count == 1
