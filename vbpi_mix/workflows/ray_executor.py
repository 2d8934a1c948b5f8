"""The bench grid on Ray (`vbpi-mix bench --executor ray`): one Ray task per setting.

Without an address, `ray.init()` starts a cluster on this machine; with one, the driver
attaches to a running cluster (`ray start --head` on one machine, `ray start --address=...`
on the others). Each task asks Ray for `cpus` CPUs (and `gpus` GPUs) and runs its likelihood
kernel and torch on exactly that many threads, so that tasks side by side share the cores
without oversubscribing them. Run folders live under the bench's `--out`, which every worker
must see (shared storage). A task whose worker dies (a killed process, a lost node) is run
again by Ray and resumes from the run's last checkpoint, to the result an uninterrupted run
gives; the report is built on the driver from the finished run folders, as with the local
executor, and `--resume` works across executors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vbpi_mix.bench.protocols import Protocol
from vbpi_mix.choices import LikelihoodDevice
from vbpi_mix.errors import Stopped, VbpiMixError
from vbpi_mix.workflows.bench import RESULT, Setting, finished_result, run_setting

RETRIES = 3  # runs of a task after its worker died, each from the last checkpoint
WAIT_SECONDS = 1.0  # how often the driver looks at the stop event while tasks run


def import_ray() -> Any:
    """The `ray` module, or a one-line error naming the install."""
    try:
        import ray
    except ImportError as error:
        raise VbpiMixError(
            'the Ray executor needs Ray: pip install "vbpi-mix[ray]" (or pip install ray)'
        ) from error
    return ray


def _setting_task(
    setting: Setting,
    protocol: Protocol,
    data_dir: Path,
    out: Path,
    likelihood_device: LikelihoodDevice,
    cpus: int,
) -> dict:
    """What one Ray task runs: the setting on `cpus` threads; returns its result.json."""
    from vbpi_mix.threads import set_fixed_threads

    set_fixed_threads(cpus)
    run_setting(setting, protocol, data_dir, out, False, likelihood_device)
    result = finished_result(out / setting.dataset / setting.name, protocol)
    if result is None:  # run_setting writes it last, so a finished task always has one
        raise VbpiMixError(f"{out / setting.dataset / setting.name / RESULT} is missing")
    return result


def run_bench_on_ray(
    settings: Sequence[Setting],
    protocol: Protocol,
    data_dir: Path,
    out: Path,
    likelihood_device: LikelihoodDevice = "cpu",
    address: str | None = None,
    cpus: int = 1,
    gpus: float = 0,
    stop: threading.Event | None = None,
) -> None:
    """Run the unfinished settings as Ray tasks, printing one line per finished setting.

    Setting `stop` cancels the tasks under way (their runs keep their last checkpoint) and
    raises vbpi_mix.errors.Stopped. A task that fails (bad input) stops the bench with that
    task's one-line error; finished settings stay finished."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING)
    data_dir, out = Path(data_dir).resolve(), Path(out).resolve()
    todo = [s for s in settings if finished_result(out / s.dataset / s.name, protocol) is None]
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES)(_setting_task)
    pending = {
        task.remote(setting, protocol, data_dir, out, likelihood_device, cpus): setting
        for setting in todo
    }
    done = len(settings) - len(todo)
    print(f"bench on Ray: {len(todo)} settings to run, {done} already finished", flush=True)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
            if stop is not None and stop.is_set():
                raise Stopped
            for reference in ready:
                setting = pending.pop(reference)
                summary = _get(ray, reference, setting)["summary"]
                done += 1
                print(
                    f"[{done}/{len(settings)}] {setting.dataset} {setting.name} finished: "
                    f"MLL {summary['mll_mean']:.2f} ({summary['mll_std']:.2f}), "
                    f"ELBO {summary['elbo']:.2f}, {summary['seconds']:.0f} s of training",
                    flush=True,
                )
    finally:
        for reference in pending:
            ray.cancel(reference, force=True)


def _get(ray: Any, reference: Any, setting: Setting) -> dict:
    """A finished task's result; its failure as one line naming the setting."""
    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if isinstance(error.cause, Exception) else error
        raise VbpiMixError(f"{setting.dataset} {setting.name}: {cause}") from error
    except ray.exceptions.RayError as error:  # the worker died more often than retried
        raise VbpiMixError(
            f"{setting.dataset} {setting.name}: its Ray worker failed {RETRIES + 1} times "
            f"({type(error).__name__}); run the same command with --resume"
        ) from error
