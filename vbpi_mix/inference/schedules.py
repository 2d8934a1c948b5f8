"""Training schedules of the VBPI protocol: likelihood annealing and step learning-rate decay."""

from __future__ import annotations


def inverse_temperature(iteration: int, start: float = 0.001, warmup: int = 100_000) -> float:
    """beta_t = min(1, start + t / warmup): the likelihood's weight in the training objective
    (reported bounds always use beta = 1). warmup 0 means no annealing."""
    if warmup <= 0:
        return 1.0
    return min(1.0, start + iteration / warmup)


def learning_rate_factor(iteration: int, decay: float = 0.75, every: int = 20_000) -> float:
    """decay ** floor(t / every): the step decay of the learning rates."""
    return decay ** (iteration // every) if every > 0 else 1.0
