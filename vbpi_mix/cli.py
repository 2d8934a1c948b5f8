"""The `vbpi-mix` command line: parse, validate, call the API, print."""

from __future__ import annotations

import argparse
import errno
import functools
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vbpi_mix import __version__
from vbpi_mix.bench.datasets import DATASET_NAMES, find_data_dir
from vbpi_mix.choices import (
    ALIGNMENT_FORMATS,
    ESTIMATOR_NAMES,
    GRADIENT_NAMES,
    MODEL_NAMES,
    PROTOCOL_NAMES,
    RATE_NAMES,
)
from vbpi_mix.command_options import add_likelihood_device
from vbpi_mix.errors import Stopped, VbpiMixError
from vbpi_mix.io.output_paths import check_output_file, check_output_folder

if TYPE_CHECKING:
    from vbpi_mix.threads import ThreadTuner

LOGLIK_CHUNK = 256  # trees per kernel call: bounds memory on large tree files

LOGLIK_EXAMPLES = """\
examples:
  vbpi-mix loglik data/example.fasta data/example_true_tree.nwk
  vbpi-mix loglik aln.fasta trees.nex --model HKY --kappa 2.5 --freqs 0.3,0.2,0.2,0.3
  vbpi-mix loglik aln.phy ml.treefile --model GTR --rates 1,2.5,0.8,1.2,3,1 \\
      --freqs 0.3,0.2,0.2,0.3 --gamma-categories 4 --alpha 0.5 --json
"""


def _numbers(count: int, label: str):
    def parse(text: str) -> list[float]:
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{label}: expected numbers, got {text!r}") from None
        if len(values) != count or not all(map(math.isfinite, values)) or min(values) <= 0:
            raise argparse.ArgumentTypeError(
                f"{label}: expected {count} positive comma-separated numbers, got {text!r}"
            )
        return values

    return parse


def _frequencies(text: str) -> list[float] | str:
    """--freqs: four numbers, or 'empirical'."""
    return "empirical" if text.strip().lower() == "empirical" else _numbers(4, "--freqs")(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected 0 or a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


def _add_alignment(parser: argparse.ArgumentParser) -> None:
    """The ALIGNMENT argument and its --format, as every command that reads one takes them."""
    parser.add_argument("alignment", help="DNA alignment: FASTA, NEXUS or PHYLIP (.gz accepted)")
    parser.add_argument(
        "--format",
        choices=ALIGNMENT_FORMATS,
        help="alignment format (default: detected from the content)",
    )


def _add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_computing_options(parser: argparse.ArgumentParser) -> None:
    """--quiet and --threads, for the commands that compute likelihoods."""
    _add_quiet(parser)
    parser.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="CPU threads for the likelihood kernel and torch (default: every core this "
        "process may use; during training, as many of them as measure fastest, so that fits "
        "sharing a machine do not slow each other down)",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Substitution-model options shared by every command that computes likelihoods."""
    group = parser.add_argument_group(
        "substitution model (fit infers every free parameter not given here, under MrBayes' "
        "default priors; loglik uses the defaults below)"
    )
    group.add_argument(
        "--model",
        choices=MODEL_NAMES,
        default="JC",
        help="JC (Jukes-Cantor, the benchmark model), K80, HKY or GTR (default: JC)",
    )
    group.add_argument(
        "--kappa",
        type=_positive_float,
        help="transition/transversion rate ratio for K80 and HKY, fixed (default: fit infers "
        "it, loglik uses 2)",
    )
    group.add_argument(
        "--freqs",
        type=_frequencies,
        metavar="A,C,G,T|empirical",
        help="base frequencies for HKY and GTR, fixed, normalised to sum 1, or 'empirical': "
        "counted from the alignment, ambiguity codes shared among their states (IQ-TREE's +F) "
        "(default: fit infers them, loglik uses equal ones)",
    )
    group.add_argument(
        "--rates",
        type=_numbers(6, "--rates"),
        metavar="AC,AG,AT,CG,CT,GT",
        help="GTR exchangeabilities, fixed (default: fit infers them, reported scaled to sum "
        "1 as MrBayes does; loglik uses all 1)",
    )
    group.add_argument(
        "--gamma-categories",
        "--gamma",
        type=_positive_int,
        default=1,
        metavar="K",
        help="discrete-Gamma rate categories, mean rate per category (default: 1, no Gamma)",
    )
    group.add_argument(
        "--alpha",
        type=_positive_float,
        help="Gamma shape parameter, fixed (default: fit infers it; loglik needs it with "
        "--gamma-categories above 1)",
    )


def model_settings(args: argparse.Namespace) -> dict:
    """build_model's arguments from the substitution-model options, refusing options that
    the chosen model would ignore."""
    model = args.model
    if args.kappa is not None and model not in ("K80", "HKY"):
        raise VbpiMixError(f"--kappa applies to K80 and HKY, not {model}; add --model HKY")
    if args.freqs is not None and model not in ("HKY", "GTR"):
        raise VbpiMixError(f"--freqs applies to HKY and GTR, not {model}; add --model HKY or GTR")
    if args.rates is not None and model != "GTR":
        raise VbpiMixError(f"--rates applies to GTR, not {model}; add --model GTR")
    if args.alpha is not None and args.gamma_categories == 1:
        raise VbpiMixError("--alpha needs --gamma-categories K with K above 1 (e.g. 4)")
    return {
        "name": model,
        "kappa": args.kappa,
        "frequencies": args.freqs,
        "rates": args.rates,
        "gamma_categories": args.gamma_categories,
        "alpha": args.alpha,
    }


def run_loglik(args: argparse.Namespace, stop: threading.Event) -> int:
    from vbpi_mix import workflows

    values = workflows.loglik(args.alignment, args.trees, model_settings(args), args.format,
                              args.likelihood_device, progress=not args.quiet)  # fmt: skip
    if args.json:
        records = [{"tree": i, "log_likelihood": v} for i, v in enumerate(values, start=1)]
        print(json.dumps(records, indent=2))
    else:
        for index, value in enumerate(values, start=1):
            print(f"{index}\t{value:.6f}")
    return 0


SUPPORT_EXAMPLES = """\
examples:
  vbpi-mix support data/example.fasta -o example_support
  vbpi-mix support aln.fasta -o support --replicates 10 --bootstrap 10000 --seed 1

Writes OUT/rep_1.ufboot.gz ... rep_R.ufboot.gz (R IQ-TREE runs, JC, ultrafast bootstrap with
--boot-trees), the layout `vbpi-mix fit --support-dir OUT` reads. Needs IQ-TREE 2 (iqtree2):
apt-get install iqtree.
"""


def run_support(args: argparse.Namespace, stop: threading.Event) -> int:
    from vbpi_mix import workflows

    check_output_folder(args.out, "-o")
    paths = workflows.build_support(args.alignment, args.out, args.replicates, args.bootstrap,
                                    args.seed, args.format, progress=not args.quiet)  # fmt: skip
    for path in paths:
        print(path)
    return 0


FIT_EXAMPLES = """\
examples:
  vbpi-mix fit data/example.fasta --support-dir data/example_support --out runs/example \\
      --iterations 1500 --lr 0.01 --warmup 500
  vbpi-mix fit DS1.fasta --support-dir DS1/ufboot --out runs/ds1 --components 5 \\
      --estimator s2a --subset 1 --particles 10 --iterations 400000
  vbpi-mix fit aln.fasta --support-dir support --out runs/gtr --model GTR --gamma 4
      (exchangeabilities, base frequencies and alpha inferred with the tree)
  vbpi-mix fit aln.fasta --support-dir support --out runs/hky --model HKY --kappa 4 \\
      --freqs empirical --gamma 4 --alpha 0.5   (every parameter fixed)

A run folder holds config.json, support.tsv, checkpoint.pt, metrics.jsonl and summary.json.
Ctrl-C or SIGTERM stops training after the iteration under way (exit status 130); running
the same command again resumes from the last checkpoint, written every 1000 iterations (a
larger --iterations continues a finished run).
"""


def _training_threads(args: argparse.Namespace) -> ThreadTuner | None:
    """The tuner that sets the training threads, unless --threads fixed them."""
    from vbpi_mix.threads import ThreadTuner, usable_cores

    return None if args.threads else ThreadTuner(usable_cores())


def run_fit(args: argparse.Namespace, stop: threading.Event) -> int:
    from vbpi_mix import workflows
    from vbpi_mix.inference.runs import ModelConfig
    from vbpi_mix.inference.trainer import TrainingConfig
    from vbpi_mix.variational.branch_lengths import default_max_std

    check_output_folder(args.out, "--out")
    substitution = model_settings(args)
    model = ModelConfig(
        alignment=str(Path(args.alignment).resolve()),
        alignment_format=args.format,
        components=args.components,
        branch_features=args.branch_features,
        init=args.init,
        max_branch_std=(
            default_max_std(args.components)
            if args.max_branch_sd is None
            else args.max_branch_sd or None  # 0: no cap
        ),
        substitution_model=substitution.pop("name"),
        **substitution,
    )
    training = TrainingConfig(
        iterations=args.iterations,
        particles=args.particles,
        estimator=args.estimator,
        subset=args.subset,
        split_at=args.split_at,
        objective=args.objective,
        topology_lr=args.lr,
        branch_lr=args.lr,
        warmup=args.warmup,
        eval_every=args.eval_every,
        eval_particles=args.eval_particles,
        seed=args.seed,
    )
    evaluation = workflows.fit(
        model, training, args.support, args.out, support_dir=args.support_dir,
        credible=args.credible, burnin=args.burnin,
        likelihood_device=args.likelihood_device, threads=_training_threads(args),
        eval_particles=args.eval_particles, eval_repeats=args.eval_repeats,
        progress=not args.quiet, stop=stop,
    )  # fmt: skip
    _print_summary(evaluation.summary, len(evaluation.run.support))
    return 0


def run_evaluate(args: argparse.Namespace, stop: threading.Event) -> int:
    from vbpi_mix import workflows

    check_output_folder(Path(args.run_dir), "run folder (it receives summary.json)")
    evaluation = workflows.evaluate(
        args.run_dir, args.particles, args.repeats, args.seed, args.golden, not args.quiet,
        args.likelihood_device, stop,
    )  # fmt: skip
    _print_summary(evaluation.summary, None)
    if evaluation.figures:
        print("q against the golden run: " + ", ".join(map(str, evaluation.figures)))
    return 0


SAMPLE_EXAMPLES = """\
examples:
  vbpi-mix sample runs/example -n 1000 -o example_trees.nex
  vbpi-mix sample runs/example -n 1000 -o example_trees.nwk --format newick \\
      --topologies example_topologies.tsv
"""

SUMMARIZE_EXAMPLES = """\
examples:
  vbpi-mix summarize runs/example
  vbpi-mix summarize runs/ds1 -n 100000 -o ds1_posterior
"""


def run_sample(args: argparse.Namespace, stop: threading.Event) -> int:
    from vbpi_mix import workflows

    check_output_file(args.out, "-o")
    if args.topologies:
        check_output_file(args.topologies, "--topologies")
    parameters = workflows.parameter_file(args.out)
    check_output_file(parameters, "-o (its .p file)")
    trees = workflows.sample(args.run_dir, args.n, args.out, args.seed, args.format,
                             args.topologies, progress=not args.quiet, stop=stop)  # fmt: skip
    print(f"wrote {args.n} trees to {args.out}")
    if trees.parameters is not None:
        print(f"wrote the substitution parameters drawn with them to {parameters}")
    return 0


def run_summarize(args: argparse.Namespace, stop: threading.Event) -> int:
    from vbpi_mix import workflows

    out = Path(args.out) if args.out else Path(args.run_dir) / "posterior"
    check_output_folder(out, "-o")
    summary = workflows.summarize(args.run_dir, out, args.n, args.seed, not args.quiet, stop)
    credible = summary.credible_set_size
    print(f"trees drawn from q:     {summary.n_trees}")
    print(f"distinct topologies:    {len(summary.table)}")
    print(
        "95% credible set:       "
        + (f"{credible} topologies" if credible else "not covered by the draws (draw more)")
    )
    print(f"MAP topology (q={summary.map_probability:.4f}), mean branch lengths:")
    print(f"  {summary.map_newick}")
    print(f"splits in over half the draws: {summary.majority_splits}")
    print("most probable topologies (q, cumulative):")
    cumulative = 0.0
    for row in summary.table[:5]:
        cumulative += row.probability
        print(f"  {row.probability:.4f}  {cumulative:.4f}  {row.topology.newick()}")
    print("files: " + ", ".join(str(path) for path in summary.files))
    return 0


BENCH_EXAMPLES = """\
examples:
  vbpi-mix bench DS1 --protocol quick --out bench/quick
  vbpi-mix bench DS1 DS2 DS3 DS4 DS5 DS6 DS7 DS8 --components 2 --subset 1 --out bench/quick
  vbpi-mix bench DS1 --components 1 2 5 10 --subset 1 2 --seeds 3 --out bench/scaling --resume
  vbpi-mix bench DS1 --protocol paper --estimators s2a --components 10 --subset 1 --out bench/paper
  vbpi-mix bench DS1 DS5 DS8 --components 1 5 --executor ray --cpus-per-run 2 --out /shared/bench
  vbpi-mix bench DS1 --executor ray --address 10.0.0.1:6379 --out /shared/bench --resume

Each setting is a run folder OUT/DSn/<estimator>-A<A>[-S<S>]-seed<k> (resumable); the report
(OUT/results.md, .csv, .json, OUT/plots/) lists finished settings only. Interrupt at will and
run the same command with --resume.

With --executor ray each setting is a Ray task: on this machine (a cluster started for the
bench) or, with --address, on a running Ray cluster (`ray start --head` on one machine,
`ray start --address=HEAD:6379` on the others); --out must then lie on storage every worker
sees. A task whose worker dies is run again from its last checkpoint.
"""


def run_bench_command(args: argparse.Namespace, stop: threading.Event) -> int:
    from vbpi_mix.bench.protocols import PROTOCOLS
    from vbpi_mix.bench.report import write_report
    from vbpi_mix.workflows.bench import check_bench, collect_finished, grid, run_bench

    data_dir = find_data_dir(args.data)
    if data_dir is None:
        raise VbpiMixError("DS1-DS8 data not found: give --data DIR or set VBPI_MIX_DATA")
    protocol = PROTOCOLS[args.protocol]
    if args.iterations is not None:
        protocol = protocol.with_iterations(args.iterations)
    estimators = [name.strip().lower() for name in args.estimators.split(",")]
    unknown = sorted(set(estimators) - set(ESTIMATOR_NAMES))
    if unknown:
        raise VbpiMixError(
            f"--estimators: unknown {', '.join(unknown)} (choose {','.join(ESTIMATOR_NAMES)})"
        )
    if args.executor == "local":
        given = [f"--{n.replace('_', '-')}" for n in ("address", "cpus_per_run", "gpus_per_run")
                 if getattr(args, n) is not None]  # fmt: skip
        if given:
            raise VbpiMixError(f"{', '.join(given)}: only with --executor ray")
    elif args.threads:
        raise VbpiMixError("--threads: with --executor ray, each setting's threads are its "
                           "--cpus-per-run")  # fmt: skip
    elif args.likelihood_device == "cuda" and not args.gpus_per_run:
        raise VbpiMixError(
            "--likelihood-device cuda with --executor ray needs --gpus-per-run G: Ray hides "
            "the GPUs from tasks that ask for none (G = 0.5 lets two settings share one)"
        )
    settings = grid(args.datasets, estimators, args.components, args.subset, args.seeds)
    if not settings:
        raise VbpiMixError("no valid settings: S2A and S2S need --subset S below --components A")
    out = Path(args.out)
    check_output_folder(out, "--out")
    if not args.report_only:
        check_bench(settings, data_dir, out, args.resume)
    try:
        if not args.report_only and args.executor == "ray":
            from vbpi_mix.workflows.ray_executor import run_bench_on_ray

            run_bench_on_ray(
                settings, protocol, data_dir, out, args.likelihood_device, args.address,
                args.cpus_per_run or 1, args.gpus_per_run or 0, stop,
            )  # fmt: skip
        elif not args.report_only:
            run_bench(
                settings,
                protocol,
                data_dir,
                out,
                not args.quiet,
                args.likelihood_device,
                tune_threads=not args.threads,
                stop=stop,
            )
    finally:
        results, unfinished = collect_finished(settings, protocol, out)
        paths = write_report(results, out, protocol.name, unfinished)
        print(f"{len(results)} of {len(settings)} settings finished; report: {paths[1]}")
    return 0


def _parameter_line(values: dict) -> str:
    """Substitution model values on one line: kappa 2, rates AC 1 AG 2.5 ..., frequencies A
    0.2344 C 0.2665 ..., alpha 0.5 (those of `values`)."""
    parts = []
    if "kappa" in values:
        parts.append(f"kappa {values['kappa']:.4g}")
    if "rates" in values:
        pairs = zip(RATE_NAMES, values["rates"], strict=True)
        parts.append("rates " + " ".join(f"{name} {rate:.4g}" for name, rate in pairs))
    if "frequencies" in values:
        pairs = zip("ACGT", values["frequencies"], strict=True)
        parts.append("frequencies " + " ".join(f"{state} {f:.4f}" for state, f in pairs))
    if "alpha" in values:
        parts.append(f"alpha {values['alpha']:.4g}")
    return ", ".join(parts)


def _posterior_lines(posterior: dict) -> list[str]:
    """One line per inferred parameter: posterior mean and 95% interval of each coordinate."""
    names = {"rates": RATE_NAMES, "frequencies": tuple("ACGT")}
    lines = []
    for name, estimate in posterior.items():
        labels = names.get(name, ("",))
        parts = [
            f"{label} {mean:.4g} ({lower:.4g}-{upper:.4g})".strip()
            for label, mean, lower, upper in zip(
                labels, estimate["mean"], estimate["lower"], estimate["upper"], strict=True
            )
        ]
        lines.append(f"  {name:<12} " + ", ".join(parts))
    return lines


def _print_summary(summary: dict, support_size: int | None) -> None:
    from vbpi_mix.inference.golden import FLOOR as GOLDEN_FLOOR
    from vbpi_mix.inference.psis import pareto_k_verdict

    if support_size is not None:
        print(f"support topologies:  {support_size}")
    print(f"substitution model:  {summary['substitution_model']}")
    inferred = summary.get("substitution_posterior", {})
    fixed = {
        name: value
        for name, value in summary.get("substitution_parameters", {}).items()
        if name not in inferred
    }
    if not summary["substitution_model"].startswith("JC") and fixed:
        print(f"fixed parameters:    {_parameter_line(fixed)}")
    if inferred:
        print("inferred parameters: posterior mean (95% interval)")
        print("\n".join(_posterior_lines(inferred)))
    print(f"iterations:          {summary['iterations']}")
    if "startup_seconds" in summary:  # absent from summaries written by older versions
        print(
            f"training time:       {summary['seconds']:.1f} s (and "
            f"{summary['startup_seconds']:.1f} s starting up: compiling or loading kernels)"
        )
    print(f"MAP topology:        {summary['map_topology']}")
    print(f"MAP probability:     {summary['map_probability']:.4f}")
    print(
        f"marginal likelihood: {summary['mll_mean']:.2f} (sd {summary['mll_std']:.2f}, "
        f"{summary['mll_repeats']} x {summary['mll_particles']} particles)"
    )
    print(f"ELBO:                {summary['elbo']:.2f}")
    print(
        f"importance weights:  ESS {summary['effective_sample_size']:.1f} of "
        f"{summary['mll_particles']}, Pareto k-hat {summary['pareto_k']:.2f} "
        f"({pareto_k_verdict(summary['pareto_k'])})"
    )
    if "kl_golden_floored" in summary:
        print(
            f"KL(golden || q):     {summary['kl_golden_floored']:.4f} with q floored at "
            f"{GOLDEN_FLOOR:.2g} (the published convention); {summary['kl_golden_reachable']:.4f}"
            f" over the golden topologies q can reach, golden mass outside them "
            f"{summary['golden_mass_unreachable']:.2g}"
        )
    if summary["last_bound"] is not None:
        print(f"last training bound: {summary['last_bound']:.2f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vbpi-mix",
        description="Bayesian phylogenetic inference by variational inference (VBPI) with "
        "mixtures of subsplit Bayesian networks.",
    )
    parser.add_argument("--version", action="version", version=f"vbpi-mix {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    loglik = commands.add_parser(
        "loglik",
        help="log-likelihood of fixed trees with branch lengths",
        description="Print the log-likelihood of each tree in TREES (branch lengths held "
        "fixed) given ALIGNMENT, one line per tree: index (from 1), tab, log-likelihood.",
        epilog=LOGLIK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_alignment(loglik)
    loglik.add_argument(
        "trees", help="Newick or NEXUS tree file, one or many trees with branch lengths (.gz ok)"
    )
    add_model_options(loglik)
    loglik.add_argument("--json", action="store_true", help="print a JSON list instead of TSV")
    _add_computing_options(loglik)
    add_likelihood_device(loglik)
    loglik.set_defaults(run=run_loglik)

    support = commands.add_parser(
        "support",
        help="make SBN support trees with IQ-TREE's ultrafast bootstrap",
        description="Run IQ-TREE (JC, ultrafast bootstrap) R times on ALIGNMENT and keep each "
        "run's bootstrap trees: the support from which the SBN is built (as for DS1-DS8).",
        epilog=SUPPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_alignment(support)
    support.add_argument("-o", "--out", required=True, help="output folder for rep_k.ufboot.gz")
    support.add_argument(
        "--replicates", type=_positive_int, default=10, help="IQ-TREE runs (default: 10)"
    )
    support.add_argument(
        "--bootstrap",
        type=_positive_int,
        default=10000,
        help="ultrafast bootstrap trees per run, at least 1000 (default: 10000)",
    )
    support.add_argument("--seed", type=int, default=1, help="seed of run 1; run k uses seed+k-1")
    _add_quiet(support)
    support.set_defaults(run=run_support)

    fit = commands.add_parser(
        "fit",
        help="fit a variational posterior (a mixture of SBNs) to an alignment",
        description="Fit q(tau, b), a uniform mixture of A SBN x log-normal branch-length "
        "components, by maximising a K-particle bound with the A2A, S2A or S2S estimator, then "
        "print the MAP topology, the marginal likelihood estimate and the ELBO. Model: JC69 "
        "unless --model says otherwise, its free parameters not given inferred with the tree "
        "(MrBayes' default priors; posterior mean and 95% interval in the summary), uniform "
        "topology prior, Exponential(10) branch lengths.",
        epilog=FIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_alignment(fit)
    add_model_options(fit)
    source = fit.add_mutually_exclusive_group()
    source.add_argument(
        "--support",
        nargs="+",
        metavar="TREES",
        help="support tree files (UFBoot replicates, MrBayes .t, Newick/NEXUS)",
    )
    source.add_argument(
        "--support-dir",
        metavar="DIR",
        help="folder of support tree files: its rep_* files if any (as `vbpi-mix support` and "
        "DS1-DS8 lay them out), else every file",
    )
    fit.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (resumable)")
    fit.add_argument(
        "--components",
        type=_positive_int,
        default=1,
        metavar="A",
        help="mixture components (default: 1, plain VBPI)",
    )
    fit.add_argument(
        "--estimator",
        choices=ESTIMATOR_NAMES,
        default="a2a",
        help="a2a: all components draw; s2a/s2s: a random subset draws (default: a2a)",
    )
    fit.add_argument(
        "--subset",
        type=_positive_int,
        metavar="S",
        help="components drawn per iteration for s2a/s2s",
    )
    fit.add_argument(
        "--split-at",
        type=int,
        metavar="N",
        help="with --components above 1: train one component alone, as plain VBPI, for N "
        "iterations, then start every component from it and train the mixture (default: 95%% "
        "of --iterations; 0: the components start apart, as VBPI-Mixtures). --out holding a "
        "finished one-component fit and a larger --iterations grow that fit into the mixture: "
        "it splits where the fit ended",
    )
    fit.add_argument(
        "--particles",
        type=int,
        default=10,
        metavar="K",
        help="particles per drawn component (default: 10)",
    )
    fit.add_argument(
        "--iterations",
        type=int,
        default=10000,
        metavar="N",
        help="training iterations (default: 10000; the paper protocol uses 400000)",
    )
    fit.add_argument(
        "--objective",
        choices=GRADIENT_NAMES,
        default="vimco",
        help="topology gradient (default: vimco)",
    )
    fit.add_argument(
        "--branch-features",
        choices=("psp", "split"),
        default="psp",
        help="branch-length features (default: psp)",
    )
    fit.add_argument(
        "--max-branch-sd",
        type=_non_negative_float,
        metavar="SIGMA",
        help="cap on each branch's log-normal standard deviation (of log b), so that no "
        "component grows tails far wider than a posterior's (default: 2 for a mixture, none "
        "for --components 1; 0: none)",
    )
    fit.add_argument(
        "--init",
        choices=("uniform", "counts"),
        default="uniform",
        help="SBN start: uniform over the support (VBPI) or its counts (SBN-SA)",
    )
    fit.add_argument(
        "--credible",
        type=_positive_float,
        default=0.95,
        help="credible mass kept per support file (default: 0.95; 1 keeps all)",
    )
    fit.add_argument(
        "--burnin",
        type=float,
        default=0,
        help="trees dropped from the start of each support file: fraction or count",
    )
    fit.add_argument(
        "--lr",
        type=_positive_float,
        default=0.001,
        help="Adam learning rate, topology and branches (default: 0.001)",
    )
    fit.add_argument(
        "--warmup",
        type=int,
        help="annealing iterations, the likelihood's weight rising from 0.001 to 1 (default: a "
        "quarter of --iterations, as the published protocol's 100,000 of 400,000; at most "
        "--iterations, so that the fit ends on the posterior; 0: none)",
    )
    fit.add_argument(
        "--eval-particles",
        type=_positive_int,
        default=1000,
        help="particles per marginal-likelihood estimate (default: 1000)",
    )
    fit.add_argument(
        "--eval-every",
        type=int,
        default=5000,
        metavar="N",
        help="estimate the marginal likelihood (one set of --eval-particles) every N "
        "iterations into metrics.jsonl, for MLL-against-time curves (default: 5000; 0: never)",
    )
    fit.add_argument(
        "--eval-repeats",
        type=_positive_int,
        default=10,
        help="marginal-likelihood repeats (default: 10)",
    )
    _add_seed(fit)
    _add_computing_options(fit)
    add_likelihood_device(fit)
    fit.set_defaults(run=run_fit, safe_points=True)

    evaluate = commands.add_parser(
        "evaluate",
        help="marginal likelihood, ELBO and MAP topology of a fitted run",
        description="Evaluate a run folder written by `vbpi-mix fit`: marginal likelihood by "
        "importance sampling, ELBO, ESS and PSIS k-hat, MAP topology; with --golden also "
        "KL(golden || q) and RUN_DIR/posterior_vs_golden.png/.pdf (topology probabilities and "
        "split support under q against the golden run).",
        epilog="example:\n  vbpi-mix evaluate runs/ds1 --golden DS1/golden/rep_*.trprobs.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("run_dir", help="run folder of vbpi-mix fit")
    evaluate.add_argument(
        "--particles", type=_positive_int, default=1000, help="particles per MLL estimate"
    )
    evaluate.add_argument("--repeats", type=_positive_int, default=10, help="MLL repeats")
    _add_seed(evaluate)
    _add_computing_options(evaluate)
    add_likelihood_device(evaluate)
    evaluate.add_argument(
        "--golden",
        nargs="+",
        metavar="TRPROBS",
        help="MrBayes .trprobs files of golden runs: adds KL(golden || q) over topologies",
    )
    evaluate.set_defaults(run=run_evaluate, safe_points=True)

    sample = commands.add_parser(
        "sample",
        help="draw trees with branch lengths from a fitted posterior",
        description="Draw N unrooted trees with branch lengths from q of a run folder and write "
        "them as NEXUS with a translate block (FigTree, DendroPy, PAUP*) or Newick (ete3). "
        "Where the fit inferred substitution parameters, a value of each is drawn with each "
        "tree and written beside the trees, in TREES with the suffix .p (columns as in "
        "MrBayes' .p files: tree, TL, kappa, r(A<->C)..., pi(A)..., alpha).",
        epilog=SAMPLE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sample.add_argument("run_dir", help="run folder of vbpi-mix fit")
    sample.add_argument("-n", type=_positive_int, default=1000, help="trees (default: 1000)")
    sample.add_argument("-o", "--out", required=True, metavar="TREES", help="output tree file")
    sample.add_argument(
        "--format", choices=("nexus", "newick"), default="nexus", help="default: nexus"
    )
    sample.add_argument(
        "--topologies",
        metavar="TOP.tsv",
        help="also write the distinct sampled topologies with their exact q (TSV)",
    )
    _add_seed(sample)
    _add_computing_options(sample)
    sample.set_defaults(run=run_sample, safe_points=True)

    summarize_parser = commands.add_parser(
        "summarize",
        help="topology probabilities, split support, MAP and consensus trees of a fit",
        description="Draw N trees from q and write OUT/topologies.tsv and topologies.trprobs "
        "(exact q of each sampled topology, sorted, cumulative), splits.tsv (split "
        "frequencies), map_tree.nwk (MAP topology with mean branch lengths), consensus.nwk "
        "(majority rule, split frequencies as node labels) and training_curves.png/.pdf "
        "(bound and MLL against iterations and seconds); print the highlights.",
        epilog=SUMMARIZE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    summarize_parser.add_argument("run_dir", help="run folder of vbpi-mix fit")
    summarize_parser.add_argument(
        "-n", type=_positive_int, default=10_000, help="trees drawn (default: 10000)"
    )
    summarize_parser.add_argument(
        "-o", "--out", metavar="DIR", help="output folder (default: RUN_DIR/posterior)"
    )
    _add_seed(summarize_parser)
    _add_computing_options(summarize_parser)
    summarize_parser.set_defaults(run=run_summarize, safe_points=True)

    bench = commands.add_parser(
        "bench",
        help="reproduce the DS1-DS8 experiments over a grid of estimators, A and S",
        description="Fit and evaluate every combination of data set, estimator, components A, "
        "subset S and seed under a protocol (paper: 400,000 iterations as published; short: "
        "100,000 iterations at a higher learning rate, for comparing mixtures; quick: "
        "10,000 iterations, about 2 hours for DS1-DS8 at A=2, S=1 on 2 cores), then write a "
        "table with the published numbers beside ours, and plots.",
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("datasets", nargs="+", choices=DATASET_NAMES, metavar="DSn",
                       help="data sets, DS1 to DS8")  # fmt: skip
    bench.add_argument("--data", metavar="DIR", help="folder holding DS1-DS8 (default: "
                       "$VBPI_MIX_DATA, else ../shared/datasets)")  # fmt: skip
    bench.add_argument("--protocol", choices=sorted(PROTOCOL_NAMES), default="quick",
                       help="training budget and schedule (default: quick)")  # fmt: skip
    bench.add_argument("--iterations", type=_positive_int, metavar="N",
                       help="override the protocol's iterations (its warm-up keeps the same "
                       "fraction of them)")  # fmt: skip
    bench.add_argument("--estimators", default=",".join(ESTIMATOR_NAMES),
                       help=f"comma-separated (default: {','.join(ESTIMATOR_NAMES)})")  # fmt: skip
    bench.add_argument("--components", type=_positive_int, nargs="+", default=[2], metavar="A",
                       help="mixture sizes (default: 2)")  # fmt: skip
    bench.add_argument("--subset", type=_positive_int, nargs="+", default=[1], metavar="S",
                       help="subset sizes for s2a/s2s, each below A (default: 1)")  # fmt: skip
    bench.add_argument("--seeds", type=_positive_int, default=1, help="seeds 0..N-1 (default: 1)")
    bench.add_argument("--out", required=True, metavar="DIR", help="bench folder")
    bench.add_argument("--resume", action="store_true",
                       help="continue the runs already in --out")  # fmt: skip
    bench.add_argument("--report-only", action="store_true",
                       help="train nothing: report the settings already finished in --out "
                       "(e.g. after benches ran side by side into one folder)")  # fmt: skip
    bench.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="where the settings run: one after another in this process "
                       "(local, the default) or as Ray tasks, side by side on this machine or "
                       'a cluster (ray: pip install "vbpi-mix[ray]")')  # fmt: skip
    bench.add_argument("--address", metavar="ADDR",
                       help="a running Ray cluster's address (HOST:PORT; default: start one "
                       "on this machine)")  # fmt: skip
    bench.add_argument("--cpus-per-run", type=_positive_int, metavar="N",
                       help="CPUs (and threads) Ray gives each setting (default: 1)")  # fmt: skip
    bench.add_argument("--gpus-per-run", type=_non_negative_float, metavar="G",
                       help="GPUs Ray gives each setting (default: 0; a fraction shares one; "
                       "with --likelihood-device cuda)")  # fmt: skip
    _add_computing_options(bench)
    add_likelihood_device(bench)
    bench.set_defaults(run=run_bench_command, safe_points=True)
    return parser


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_handler(
    stop: threading.Event, at_safe_points: bool
) -> Callable[[int, object], None]:  # fmt: skip
    """The handler of Ctrl-C and SIGTERM (kill, a batch scheduler's time limit) for one
    command: it sets the command's stop event. A command with safe points (training, drawing
    and scoring particles and trees: fit, evaluate, sample, summarize, bench) hands the event
    to the library, which stops after the iteration or chunk under way (vbpi_mix.errors.
    Stopped); any other command gets a KeyboardInterrupt at once. Checkpoints and outputs are
    written whole or not at all either way."""

    def handle(signal_number: int, frame: object) -> None:
        stop.set()
        if not at_safe_points:
            raise KeyboardInterrupt

    return handle


def _report_unless_stopping(
    stop: threading.Event,
    report_with: Callable[[sys.UnraisableHookArgs], object],
    report: sys.UnraisableHookArgs,
) -> None:
    """Python's report of an exception it had to ignore (in a `__del__`, a ctypes callback),
    passed on to `report_with` unless a stop was requested: the interrupt itself may be that
    exception (numba's finalizers), and the command says that it was interrupted."""
    if not stop.is_set():
        report_with(report)


def _os_error_line(error: OSError) -> str:
    """One line for an operating-system error: the file, the reason, and what to do."""
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        return (
            f"{where}{reason}; outputs written before are intact: free some space and run the "
            "same command again (fit and bench resume from their last checkpoint)"
        )
    return f"{where}{reason}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()
    stop = threading.Event()
    handler = stop_handler(stop, getattr(args, "safe_points", False))
    previous = [signal.signal(s, handler) for s in STOP_SIGNALS] if on_main_thread else []
    previous_unraisable_hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_report_unless_stopping, stop, previous_unraisable_hook)
    try:
        from vbpi_mix.threads import set_fixed_threads, set_threads, usable_cores  # numba

        if getattr(args, "threads", None):
            set_fixed_threads(args.threads)
        else:
            set_threads(usable_cores())
        status = args.run(args, stop)
        if not stop.is_set():
            return status
    except VbpiMixError as error:
        print(f"vbpi-mix: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file system that fails mid-command: a full disk, a lost mount
        print(f"vbpi-mix: error: {_os_error_line(error)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Stopped):
        pass
    except SystemError:  # a numba dispatcher's report of the KeyboardInterrupt it was given
        if not stop.is_set():
            raise
    finally:
        for number, former in zip(STOP_SIGNALS, previous, strict=False):
            signal.signal(number, former)
        sys.unraisablehook = previous_unraisable_hook
    print("vbpi-mix: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
