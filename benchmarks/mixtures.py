"""Mixtures against VBPI at equal training seconds: A = 1 and A = 5 under A2A, S2A and S2S
(S = 1), each started apart (the components' own seeded perturbations) or split from one
trained component (`fit --split-at`), on DS1, DS5, DS6 and DS8 by default.

Every setting gets the same training seconds. A short timing pilot measures each setting's
seconds per iteration on the data set (after compilation); its budget in iterations is the
seconds divided by that (for a split start: `--split-fraction` of the seconds at the lone
component's rate, the rest at the mixture's; or, with `--split-iterations P`, the lone phase a
fraction P of the iterations, as `fit --split-at` counts them). The schedule is the same for
every setting: learning rate `--lr`, annealing over the first quarter of the iterations, an
MLL estimate from 1000 particles at `--eval-points` points for the curves, and a final MLL
from `--repeats` x 1000 particles. The plans (iterations, split) are made first, on an idle
machine (`--plan-only`), and kept, so that a stopped study resumes the same fits and later load
does not change the budgets; the curves' time axis is the planned (nominal) seconds. Threads are
fixed (`--threads`, default 1): two studies side by side on other data sets share 2 cores.

    python -m benchmarks.mixtures --seconds 240 --out runs/mixtures-240 --plan-only
    python -m benchmarks.mixtures --seconds 240 --out runs/mixtures-240 --datasets DS1 DS5
    python -m benchmarks.mixtures --seconds 240 --out runs/mixtures-240 --report-only \\
        > benchmarks/results/mixtures_equal_time/README.md   # figures: OUT/DSn_curves.png
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from vbpi_mix import workflows
from vbpi_mix.bench.datasets import alignment_path, find_data_dir, ufboot_paths
from vbpi_mix.bench.report import published_numbers
from vbpi_mix.inference.runs import ModelConfig, create_run, read_metrics
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.io.text_files import read_text, write_text_atomic
from vbpi_mix.phylo.alignment import load_alignment
from vbpi_mix.threads import set_fixed_threads
from vbpi_mix.trees.support import Support, build_support

PILOT_WARM, PILOT_TIMED = 30, 200  # iterations: compile and settle, then timed


@dataclass(frozen=True)
class Setting:
    """A mixture setting; `split` is the fraction of the seconds spent on the lone component
    before the split (0: the components start apart)."""

    name: str
    estimator: str
    components: int
    subset: int | None
    split: bool

    def rate_key(self) -> str:
        return f"{self.estimator}-A{self.components}-S{self.subset}"


SETTINGS = {
    s.name: s
    for s in (
        Setting("A=1", "a2a", 1, None, False),
        Setting("A2A", "a2a", 5, None, False),
        Setting("S2A", "s2a", 5, 1, False),
        Setting("S2S", "s2s", 5, 1, False),
        Setting("A2A split", "a2a", 5, None, True),
        Setting("S2A split", "s2a", 5, 1, True),
        Setting("S2S split", "s2s", 5, 1, True),
    )
}
LONE = SETTINGS["A=1"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder holding DS1..DS8")
    parser.add_argument("--datasets", nargs="+", default=["DS1", "DS5", "DS6", "DS8"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seconds", type=float, required=True, help="training seconds each")
    split = parser.add_mutually_exclusive_group()
    split.add_argument(
        "--split-fraction",
        type=float,
        default=0.5,
        help="fraction of the seconds spent alone before the split",
    )
    split.add_argument(
        "--split-iterations",
        type=float,
        help="fraction of the iterations spent alone before the split",
    )
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--max-branch-sd", type=float, default=2.0, help="0: no cap")
    parser.add_argument("--eval-points", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="study folder (resumable)")
    parser.add_argument("--plan-only", action="store_true", help="measure the rates only")
    parser.add_argument("--report-only", action="store_true")
    return parser.parse_args()


def training(args: argparse.Namespace, setting: Setting, iterations: int, split_at: int):
    return TrainingConfig(
        iterations=iterations, particles=10, estimator=setting.estimator,
        subset=setting.subset, split_at=split_at, topology_lr=args.lr, branch_lr=args.lr,
        eval_every=max(1, iterations // args.eval_points), eval_particles=1000, seed=args.seed,
    )  # fmt: skip


def model_config(args: argparse.Namespace, setting: Setting, alignment: Path) -> ModelConfig:
    return ModelConfig(
        alignment=str(alignment), components=setting.components,
        max_branch_std=args.max_branch_sd or None,
    )  # fmt: skip


def seconds_per_iteration(
    args: argparse.Namespace, setting: Setting, alignment: Path, support: Support
) -> float:
    """The mean seconds of PILOT_TIMED training iterations after PILOT_WARM."""
    config = training(args, setting, 10**6, 0)
    with tempfile.TemporaryDirectory() as folder:
        run = create_run(Path(folder), model_config(args, setting, alignment), config, support)
        for _ in range(PILOT_WARM):
            run.trainer.step()
        start = time.perf_counter()
        for _ in range(PILOT_TIMED):
            run.trainer.step()
        return (time.perf_counter() - start) / PILOT_TIMED


def plan(args, dataset: str, setting: Setting, alignment: Path, support: Support) -> dict:
    """The setting's iterations and split for the budget, from the data set's measured rates
    (kept in OUT/DSn/rates.json, so that a resumed study plans the same fits)."""
    path = args.out / dataset / "rates.json"
    rates = json.loads(read_text(path)) if path.is_file() else {}
    for needed in (setting, LONE):
        if needed.rate_key() not in rates:
            rates[needed.rate_key()] = seconds_per_iteration(args, needed, alignment, support)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(rates, indent=2) + "\n")
    own, lone = rates[setting.rate_key()], rates[LONE.rate_key()]
    if not setting.split:
        split_at, iterations = 0, round(args.seconds / own)
    elif args.split_iterations is not None:
        share = args.split_iterations  # N (P lone + (1 - P) own) = seconds
        iterations = round(args.seconds / (share * lone + (1 - share) * own))
        split_at = round(share * iterations)
    else:
        split_at = round(args.split_fraction * args.seconds / lone)
        iterations = split_at + round((args.seconds - split_at * lone) / own)
    return {"iterations": iterations, "split_at": split_at, "rate": own, "lone_rate": lone}


def nominal_seconds(budget: dict, iteration: int) -> float:
    """Training seconds at an iteration by the pilot's rates: the curves' time axis, which
    load on the machine after planning does not distort."""
    lone = min(iteration, budget["split_at"])
    return lone * budget["lone_rate"] + (iteration - lone) * budget["rate"]


def run_setting(args, data_dir: Path, dataset: str, setting: Setting) -> None:
    """Plan (or read the plan of), fit, evaluate one setting; with --plan-only, plan only."""
    folder = args.out / dataset / setting.name.replace(" ", "-")
    if (folder / "result.json").is_file() or (args.plan_only and (folder / "plan.json").is_file()):
        return
    alignment = alignment_path(data_dir, dataset).resolve()
    support = build_support(ufboot_paths(data_dir, dataset), load_alignment(alignment).taxa,
                            progress=False)  # fmt: skip
    plan_path = folder / "plan.json"
    if plan_path.is_file():
        budget = json.loads(read_text(plan_path))
    else:
        budget = plan(args, dataset, setting, alignment, support)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(plan_path, json.dumps(budget) + "\n")
    if args.plan_only:
        return
    config = training(args, setting, budget["iterations"], budget["split_at"])
    evaluation = workflows.fit(model_config(args, setting, alignment), config, support, folder,
                               eval_repeats=args.repeats)  # fmt: skip
    summary = evaluation.summary
    result = {"setting": setting.name, "plan": budget, "summary": summary}
    write_text_atomic(folder / "result.json", json.dumps(result, indent=2) + "\n")
    print(f"{dataset} {setting.name}: MLL {summary['mll_mean']:.2f}, ELBO {summary['elbo']:.2f}",
          flush=True)  # fmt: skip


def results(args, dataset: str) -> dict[str, tuple[dict, list[dict]]]:
    """Finished settings of a data set: result and evaluation records."""
    found = {}
    for setting in args.settings:
        folder = args.out / dataset / setting.replace(" ", "-")
        if (folder / "result.json").is_file():
            result = json.loads(read_text(folder / "result.json"))
            evaluations = [
                {**line, "seconds": nominal_seconds(result["plan"], line["iteration"])}
                for line in read_metrics(folder)
                if "mll" in line
            ]
            found[setting] = (result, evaluations)
    return found


def first_seconds_within(evaluations: list[dict], level: float, gap: float = 0.3) -> str:
    seconds = next((e["seconds"] for e in evaluations if e["mll"] >= level - gap), None)
    return "-" if seconds is None else f"{seconds:.0f}"


def report(args) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    published = published_numbers()
    print(f"# Mixtures against VBPI at {args.seconds:.0f} training seconds each\n")
    print(f"{date.today()}, commit {commit}, {platform.machine()}, {args.threads} thread(s) "
          "per fit, two fits side by side on 2 cores.\n")  # fmt: skip
    if args.split_iterations is None:
        split_option = f"--split-fraction {args.split_fraction:g}"
        split_share = f"{args.split_fraction:.0%} of the seconds"
    else:
        split_option = f"--split-iterations {args.split_iterations:g}"
        split_share = f"{args.split_iterations:.0%} of the iterations"
    print(f"`python -m benchmarks.mixtures --seconds {args.seconds:g} --lr {args.lr:g} "
          f"{split_option} --max-branch-sd {args.max_branch_sd:g}`; "
          f"K = 10, VIMCO, PSP, seed {args.seed}; "
          f"annealing over the first quarter of each fit's iterations; MLL from {args.repeats}"
          f" x 1000 particles. Split: the lone component trains for {split_share}, then the "
          "mixture.\n")  # fmt: skip
    print(
        "Columns: measured training seconds (with whatever else ran); MLL and ELBO minus "
        "A=1's; `to A2A`: planned training seconds of the first 1000-particle estimate within "
        "0.3 nats of A2A's final MLL (the A2A of the same start).\n"
    )
    for dataset in args.datasets:
        found = results(args, dataset)
        if not found:
            continue
        mrbayes = published.get((dataset, "MrBayes SS", "mll"), (float("nan"),))[0]
        print(f"## {dataset} (MrBayes SS {mrbayes:.2f})\n")
        print("| setting | iterations (split at) | measured s | MLL (sd) | ELBO | MLL - ELBO | "
              "k-hat | dMLL | dELBO | to A2A |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        lone = found.get("A=1", (None,))[0]
        for name, (result, evaluations) in found.items():
            s, budget = result["summary"], result["plan"]
            a2a = found.get("A2A split" if "split" in name else "A2A", (None,))[0]
            to_a2a = (
                first_seconds_within(evaluations, a2a["summary"]["mll_mean"])
                if a2a and name != "A=1" else ""
            )  # fmt: skip
            split = f" ({budget['split_at']})" if budget["split_at"] else ""
            delta_mll = f"{s['mll_mean'] - lone['summary']['mll_mean']:+.2f}" if lone else ""
            delta_elbo = f"{s['elbo'] - lone['summary']['elbo']:+.2f}" if lone else ""
            print(f"| {name} | {budget['iterations']}{split} | {s['seconds']:.0f} | "
                  f"{s['mll_mean']:.2f} ({s['mll_std']:.2f}) | {s['elbo']:.2f} | "
                  f"{s['mll_mean'] - s['elbo']:.2f} | {s['pareto_k']:.2f} | {delta_mll} | "
                  f"{delta_elbo} | {to_a2a} |")  # fmt: skip
        print()
        figure_path = args.out / f"{dataset}_curves.png"
        curves_figure(dataset, found, mrbayes).savefig(figure_path, dpi=110)
        print(f"![{dataset}](plots/{figure_path.name})\n")


def curves_figure(dataset: str, found: dict, mrbayes: float):
    """MLL and ELBO estimates (1000 particles each) against training seconds."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    mll_axes, elbo_axes = figure.subplots(1, 2)
    for name, (_, evaluations) in found.items():
        late = evaluations[len(evaluations) // 4 :]  # the annealed part: a readable scale
        seconds = [e["seconds"] for e in late]
        style = "--" if "split" in name else "-"
        mll_axes.plot(seconds, [e["mll"] for e in late], style, marker=".", label=name)
        elbo_axes.plot(seconds, [e["elbo"] for e in late], style, marker=".", label=name)
    mll_axes.axhline(mrbayes, color="black", linewidth=0.8, label="MrBayes SS")
    mll_axes.set(title=f"{dataset}: MLL", xlabel="training seconds", ylabel="nats")
    elbo_axes.set(title=f"{dataset}: ELBO", xlabel="training seconds")
    mll_axes.legend(fontsize=7)
    return figure


def main() -> None:
    args = arguments()
    data_dir = find_data_dir(args.data)
    if data_dir is None:
        raise SystemExit("DS1-DS8 data not found: pass --data DIR or set VBPI_MIX_DATA")
    if args.report_only:
        report(args)
        return
    set_fixed_threads(args.threads)
    for dataset in args.datasets:
        for name in args.settings:
            run_setting(args, data_dir, dataset, SETTINGS[name])


if __name__ == "__main__":
    main()
