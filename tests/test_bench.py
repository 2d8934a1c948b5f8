"""`vbpi-mix bench` on a tiny stand-in data folder made from the bundled example (never the
shared data): the grid, resuming, unfinished settings kept out of the report, and the
published numbers read from the package's table."""

from __future__ import annotations

import csv
import json

from vbpi_mix.bench.report import published_numbers, seconds_to_accuracy
from vbpi_mix.cli import main
from vbpi_mix.trees.support import build_support
from vbpi_mix.workflows.bench import RESULT, grid


def test_grid_keeps_valid_combinations_only():
    settings = grid(["DS1"], ["a2a", "s2a", "s2s"], [1, 3], [1, 2, 3], seeds=2)
    names = sorted({s.name for s in settings})
    assert names == sorted(
        [f"a2a-A{a}-seed{k}" for a in (1, 3) for k in (0, 1)]
        + [f"{e}-A3-S{s}-seed{k}" for e in ("s2a", "s2s") for s in (1, 2) for k in (0, 1)]
    )


def test_published_numbers_match_the_reference_table():
    published = published_numbers()
    assert published[("DS1", "MrBayes SS", "mll")] == (-7108.42, 0.18)
    assert published[("DS8", "VBPI", "elbo")] == (-8655.05, 0.04)
    assert published[("DS5", "PhyloGFN", "mll")] == (-8214.4, 0.16)
    assert len(published) == 8 * 6


def bench(data, out, *extra):
    return main(["bench", "DS5", "--data", str(data), "--out", str(out), "--iterations", "4",
                 "--components", "2", "--quiet", *extra])  # fmt: skip


def test_bench_runs_resumes_and_reports_finished_settings_only(
    stand_in_data, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "bench"
    builds = []

    def counted(*args, **kwargs):
        builds.append(args)
        return build_support(*args, **kwargs)

    monkeypatch.setattr("vbpi_mix.workflows.bench.build_support", counted)
    assert bench(stand_in_data, out, "--estimators", "a2a,s2s") == 0
    assert len(builds) == 1  # one support for both settings of the data set
    with (out / "results.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["estimator"], r["A"], r["S"]) for r in rows] == [("A2A", "2", ""), ("S2S", "2", "1")]
    assert all(r["iterations"] == "4" and r["MrBayes SS"] == "-8214.51 (0.28)" for r in rows)
    for name in ("mll_boxes.png", "mll_boxes.pdf", "training_DS5.png", "seconds_per_iteration.png"):
        assert (out / "plots" / name).is_file()

    assert bench(stand_in_data, out) == 2  # existing runs need --resume
    assert "--resume" in capsys.readouterr().err

    # a setting whose evaluation never finished is re-done, the finished one is not
    (out / "DS5" / "s2s-A2-S1-seed0" / RESULT).unlink()
    finished = (out / "DS5" / "a2a-A2-seed0" / RESULT).read_text()
    assert bench(stand_in_data, out, "--estimators", "a2a,s2s", "--resume") == 0
    assert (out / "DS5" / "a2a-A2-seed0" / RESULT).read_text() == finished
    assert (out / "DS5" / "s2s-A2-S1-seed0" / RESULT).is_file()


def test_a_moved_bench_folder_still_plots_its_runs(stand_in_data, tmp_path, monkeypatch):
    out, moved = tmp_path / "bench", tmp_path / "elsewhere" / "bench"
    assert bench(stand_in_data, out, "--estimators", "a2a") == 0
    moved.parent.mkdir()
    out.rename(moved)
    plotted = {}

    def record(runs, stem, title, reference=None):
        plotted.update(runs)
        return []

    monkeypatch.setattr("vbpi_mix.export.figures.plot_training_curves", record)
    assert bench(stand_in_data, moved, "--estimators", "a2a", "--resume") == 0
    assert plotted == {"a2a-A2-seed0": moved / "DS5" / "a2a-A2-seed0"}
    assert (plotted["a2a-A2-seed0"] / "metrics.jsonl").is_file()


def test_interrupted_setting_is_listed_as_unfinished(stand_in_data, tmp_path, monkeypatch):
    out = tmp_path / "bench"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("vbpi_mix.workflows.fitting.summarize_run", interrupted)
    assert bench(stand_in_data, out, "--estimators", "s2a") == 130
    report = (out / "results.md").read_text()
    assert "Not finished (not reported): DS5/s2a-A2-S1-seed0" in report
    assert "| DS5 |" not in report


def test_seconds_to_accuracy_takes_the_first_estimate_within_each_gap(tmp_path):
    lines = [
        {"iteration": 10, "bound": -120.0, "seconds": 4.0},  # a training line: no MLL
        {"iteration": 10, "seconds": 5.0, "mll": -105.0, "pareto_k": 0.9},
        {"iteration": 15, "seconds": 7.0, "mll": -100.1, "pareto_k": 1.4},  # near by chance
        {"iteration": 20, "seconds": 9.0, "mll": -100.7, "pareto_k": 0.6},
        {"iteration": 30, "seconds": 12.0, "mll": -99.2, "pareto_k": 0.5},
        {"iteration": 40, "seconds": 15.0, "mll": -100.2, "pareto_k": 0.4},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert seconds_to_accuracy(tmp_path, -100.0) == [9.0, 15.0, 15.0]
    assert seconds_to_accuracy(tmp_path, -90.0) == [None, None, None]
