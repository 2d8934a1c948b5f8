"""The API every entry point calls: the command line, the bench runner, the benchmark scripts
and Python users. Each workflow is one job a phylogeneticist asks for, from files to results:

    from vbpi_mix import ModelConfig, TrainingConfig, workflows

    support = workflows.support_files(support_dir="data/example_support")
    evaluation = workflows.fit(
        ModelConfig("data/example.fasta"),
        TrainingConfig(iterations=1500, topology_lr=0.01, branch_lr=0.01, warmup=500),
        support, "runs/api",
    )                                        # evaluation.summary: MLL, ELBO, ESS, k-hat
    workflows.summarize("runs/api")          # topology table, MAP and consensus trees, curves

Below them sit the layers that do the work (inference, export, bench's data and reports);
above them only the command line, which parses, calls one workflow and prints.
"""

from vbpi_mix.workflows.fitting import Evaluation, evaluate, fit
from vbpi_mix.workflows.posterior import parameter_file, sample, summarize
from vbpi_mix.workflows.trees import build_support, loglik, support_files

__all__ = [
    "Evaluation",
    "build_support",
    "evaluate",
    "fit",
    "loglik",
    "parameter_file",
    "sample",
    "summarize",
    "support_files",
]
