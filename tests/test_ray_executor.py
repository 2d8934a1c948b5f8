"""`vbpi-mix bench --executor ray` on the stand-in DS5 (the bundled example): a local Ray
cluster of 2 CPUs gives the local executor's numbers for the same seeds, and a setting whose
worker process is killed mid-training is run again from its checkpoint to the result of an
uninterrupted run. Without Ray, the option is a one-line error naming the install."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vbpi_mix.cli import main
from vbpi_mix.workflows.bench import RESULT

# what a run's summary says that does not depend on how fast or where it ran (the running
# bound restarts at a resume, so it is left out)
COMPARED = ("mll_estimates", "elbo", "pareto_k", "map_topology", "iterations")


def bench(data: Path, out: Path, *extra: str) -> int:
    return main(["bench", "DS5", "--data", str(data), "--out", str(out), "--quiet", *extra])


def summaries(out: Path) -> dict[str, dict]:
    return {
        path.parent.name: {key: json.loads(path.read_text())["summary"][key] for key in COMPARED}
        for path in sorted((out / "DS5").glob(f"*/{RESULT}"))
    }


def assert_same_numbers(found: dict[str, dict], expected: dict[str, dict]) -> None:
    """The same settings, MAP topologies and iterations, and the same estimates to 1e-10
    relative: a kernel compiled afresh and one loaded from numba's cache may add in another
    order (fastmath reassociation), which moves the last digits, and nothing else."""
    assert sorted(found) == sorted(expected)
    for name, summary in found.items():
        for key, value in summary.items():
            if isinstance(value, str | int):
                assert value == expected[name][key], (name, key)
            else:
                np.testing.assert_allclose(value, expected[name][key], rtol=1e-10, err_msg=name)


def test_without_ray_the_ray_executor_is_a_one_line_error(stand_in_data, tmp_path, monkeypatch,
                                                          capsys):  # fmt: skip
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert bench(stand_in_data, tmp_path / "out", "--executor", "ray") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'pip install "vbpi-mix[ray]"' in error[0]


def test_ray_options_need_the_ray_executor(stand_in_data, tmp_path, capsys):
    assert bench(stand_in_data, tmp_path / "out", "--cpus-per-run", "2") == 2
    assert "--cpus-per-run: only with --executor ray" in capsys.readouterr().err
    cuda = ["--executor", "ray", "--likelihood-device", "cuda"]
    assert bench(stand_in_data, tmp_path / "out", *cuda) == 2
    assert "needs --gpus-per-run" in capsys.readouterr().err
    assert bench(stand_in_data, tmp_path / "out", "--executor", "ray", "--threads", "2") == 2
    assert "--cpus-per-run" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")
    ray.init(num_cpus=2, logging_level="WARNING", include_dashboard=False)
    yield ray
    ray.shutdown()


def test_a_grid_on_ray_gives_the_local_executors_numbers(ray_cluster, stand_in_data, tmp_path,
                                                         capsys):  # fmt: skip
    """Four settings (A=1; A=2 under A2A, S2A and S2S), 300 iterations each, on 2 Ray CPUs
    side by side and one after another in this process, one thread each as Ray gives them:
    the same estimates, ELBO, k-hat and MAP topology (`assert_same_numbers`); one progress
    line per setting."""
    grid = ["--components", "1", "2", "--iterations", "300"]
    assert bench(stand_in_data, tmp_path / "ray", *grid, "--executor", "ray") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " finished: MLL " in line]
    assert len(lines) == 4
    assert bench(stand_in_data, tmp_path / "local", *grid, "--threads", "1") == 0
    on_ray, local = summaries(tmp_path / "ray"), summaries(tmp_path / "local")
    assert sorted(on_ray) == ["a2a-A1-seed0", "a2a-A2-seed0", "s2a-A2-S1-seed0", "s2s-A2-S1-seed0"]
    assert_same_numbers(on_ray, local)
    # resuming across executors: everything is finished, nothing runs again
    assert bench(stand_in_data, tmp_path / "ray", *grid, "--resume") == 0
    assert_same_numbers(summaries(tmp_path / "ray"), local)


def ray_task_pids() -> list[int]:
    """Processes running a bench setting for Ray (Ray titles them after the task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ray::_setting_task" in command:
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_killed_worker_is_retried_from_its_checkpoint(ray_cluster, stand_in_data, tmp_path):
    """The worker of a 1200-iteration fit killed (SIGKILL) once its first checkpoint is
    written: Ray runs the task again, it resumes from that checkpoint (its run.log says so)
    and ends with the numbers of an uninterrupted run."""
    setting = ["--estimators", "a2a", "--components", "1", "--iterations", "1200"]
    run = tmp_path / "ray" / "DS5" / "a2a-A1-seed0"
    killed = []

    def kill_after_the_first_checkpoint():
        deadline = time.monotonic() + 300
        while not (run / "checkpoint.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in ray_task_pids():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_after_the_first_checkpoint)
    killer.start()
    assert bench(stand_in_data, tmp_path / "ray", *setting, "--executor", "ray") == 0
    killer.join()
    assert killed
    log = (run / "run.log").read_text().splitlines()
    starts = [line for line in log if "training from" in line]
    assert starts[0].endswith("training from iteration 0 to 1200")
    assert len(starts) == 2 and not starts[1].endswith("iteration 0 to 1200")
    assert bench(stand_in_data, tmp_path / "local", *setting, "--threads", "1") == 0
    assert_same_numbers(summaries(tmp_path / "ray"), summaries(tmp_path / "local"))
