"""MrBayes 3.2 under GTR+G4 with the priors vbpi-mix uses, for the substitution-parameter
comparison: an MCMC run (posterior mean and 95% HPD interval of every parameter, from
`sump`) and a stepping-stone run (log marginal likelihood), each two independent runs.

Priors (MrBayes' defaults except the branch lengths, which are iid Exponential(10) as in
vbpi-mix): uniform topology, exchangeabilities Dirichlet(1,...,1), frequencies
Dirichlet(1,1,1,1), Gamma shape Exponential(1).

    python -m benchmarks.mrbayes_gtr ALIGNMENT OUT_DIR [--ngen N] [--ss-ngen N]
        [--compare RUN_DIR]

writes OUT_DIR/mcmc.nex and OUT_DIR/ss.nex (the MrBayes command blocks), runs `mb` on each
(logs mcmc.log, ss.log) and prints the summary table; a finished step is not rerun. With
--compare, a vbpi-mix GTR+G4 fit's summary.json beside it: each parameter's posterior mean
and 95% interval against MrBayes' mean and 95% HPD interval, and the marginal likelihoods.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

from vbpi_mix.export.tree_writers import MRBAYES_COLUMNS
from vbpi_mix.io.alignment_file import read_sequences

PRIORS = (
    "prset statefreqpr=dirichlet(1,1,1,1) revmatpr=dirichlet(1,1,1,1,1,1) "
    "shapepr=exponential(1.0) brlenspr=unconstrained:exponential(10.0) topologypr=uniform;"
)


def nexus_data(alignment: Path) -> str:
    """The alignment as a NEXUS data block (missing `?`, gaps `-`)."""
    sequences = read_sequences(alignment)
    width = max(len(name) for name, _ in sequences)
    rows = "\n".join(f"  {name.ljust(width)}  {seq}" for name, seq in sequences)
    return (
        "#NEXUS\nbegin data;\n"
        f"  dimensions ntax={len(sequences)} nchar={len(sequences[0][1])};\n"
        "  format datatype=dna missing=? gap=-;\n"
        f"matrix\n{rows}\n;\nend;\n"
    )


def command_block(run: str, ngen: int, stepping_stone: bool, seed: int = 1) -> str:
    """The MrBayes block of one run: GTR+G4, the priors above, two runs of one chain."""
    sampling = (
        f"ss ngen={ngen} samplefreq=100 printfreq={ngen // 20} diagnfreq={ngen // 10} "
        "nruns=2 nchains=1 nsteps=50 alpha=0.4 burninss=-1;"
        if stepping_stone
        else f"mcmc ngen={ngen} samplefreq=100 printfreq={ngen // 20} diagnfreq={ngen // 10} "
        "nruns=2 nchains=1;\n  sump relburnin=yes burninfrac=0.25;"
    )
    return (
        f"begin mrbayes;\n  set autoclose=yes nowarn=yes seed={seed} swapseed={seed};\n"
        "  lset nst=6 rates=gamma ngammacat=4;\n"
        f"  {PRIORS}\n  mcmcp filename={run};\n  {sampling}\nend;\n"
    )


def run_mrbayes(
    out_dir: Path, run: str, data: str, ngen: int, stepping_stone: bool, seed: int = 1
) -> str:
    """Run `mb` on OUT_DIR/RUN.nex unless it has finished (the MCMC's `.pstat` written, the
    stepping-stone's estimates in its log); its log text."""
    log = out_dir / f"{run}.log"
    finished = (
        log.exists() and "Mean:" in log.read_text()
        if stepping_stone
        else (out_dir / f"{run}.pstat").exists()
    )
    if finished:
        return log.read_text() if log.exists() else ""
    nexus = out_dir / f"{run}.nex"
    nexus.write_text(data + command_block(run, ngen, stepping_stone, seed))
    with log.open("w") as handle:
        subprocess.run(["mb", nexus.name], cwd=out_dir, stdout=handle, check=True)
    return log.read_text()


def stepping_stone_estimates(log_text: str) -> list[float]:
    """The per-run estimates and the mean from MrBayes' stepping-stone table."""
    table = log_text.split("Marginal likelihood (ln)")[-1]
    return [float(value) for value in re.findall(r"^\s+(?:\d+|Mean:)\s+(-?\d+\.\d+)", table, re.M)]


def parameter_table(pstat: Path) -> list[tuple[str, float, float, float]]:
    """(name, mean, 95% HPD lower, upper) per parameter of a `.pstat` file."""
    rows = []
    for line in pstat.read_text().splitlines()[2:]:
        fields = line.split("\t")
        rows.append((fields[0], float(fields[1]), float(fields[3]), float(fields[4])))
    return rows


def comparison_rows(pstat: Path, summary: dict) -> list[str]:
    """Markdown rows: parameter, vbpi-mix mean (interval), MrBayes mean (HPD), whether
    vbpi-mix's mean lies inside MrBayes' interval."""
    posterior = summary["substitution_posterior"]
    ours = {}
    for name, estimate in posterior.items():
        for i, label in enumerate(MRBAYES_COLUMNS[name]):
            ours[label] = (estimate["mean"][i], estimate["lower"][i], estimate["upper"][i])
    rows = []
    for name, mean, lower, upper in parameter_table(pstat):
        if name not in ours:
            continue
        our_mean, our_lower, our_upper = ours[name]
        inside = "yes" if lower <= our_mean <= upper else "**no**"
        rows.append(
            f"| {name} | {our_mean:.4f} ({our_lower:.4f}-{our_upper:.4f}) | "
            f"{mean:.4f} ({lower:.4f}-{upper:.4f}) | {inside} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("alignment", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--ngen", type=int, default=1_000_000, help="MCMC generations per run")
    parser.add_argument("--ss-ngen", type=int, default=2_000_000, help="stepping-stone generations")
    parser.add_argument("--compare", type=Path, help="a vbpi-mix GTR+G4 run folder")
    parser.add_argument("--seed", type=int, default=1, help="MrBayes' seed and swapseed")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data = nexus_data(args.alignment)
    run_mrbayes(args.out_dir, "mcmc", data, args.ngen, stepping_stone=False)
    print("| parameter | mean | 95% HPD |\n|---|---|---|")
    for name, mean, lower, upper in parameter_table(args.out_dir / "mcmc.pstat"):
        print(f"| {name} | {mean:.4f} | {lower:.4f} - {upper:.4f} |")
    estimates = stepping_stone_estimates(
        run_mrbayes(args.out_dir, "ss", data, args.ss_ngen, stepping_stone=True, seed=args.seed)
    )
    print(f"\nstepping-stone log ML: runs {estimates[:-1]}, mean {estimates[-1]}")
    if args.compare is not None:
        summary = json.loads((args.compare / "summary.json").read_text())
        print(
            "\n| parameter | vbpi-mix mean (95% interval) | MrBayes mean (95% HPD) | inside |"
            "\n|---|---|---|---|"
        )
        print("\n".join(comparison_rows(args.out_dir / "mcmc.pstat", summary)))
        print(
            f"\nMLL: vbpi-mix {summary['mll_mean']:.2f} (sd {summary['mll_std']:.2f}), MrBayes "
            f"stepping-stone {estimates[-1]:.2f} (runs {', '.join(map(str, estimates[:-1]))}); "
            f"difference {summary['mll_mean'] - estimates[-1]:+.2f}"
        )


if __name__ == "__main__":
    main()
