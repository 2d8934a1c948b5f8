"""The names each registry offers, as the types the code checks and the choices the command
line lists: kept in one module free of heavy imports, so that `vbpi-mix --help` starts at
once. Each registry is keyed by exactly these names (tests/test_cli.py checks it)."""

from __future__ import annotations

from typing import Literal, get_args

AlignmentFormat = Literal["fasta", "nexus", "phylip"]  # vbpi_mix.io.alignment_file
ModelName = Literal["JC", "K80", "HKY", "GTR"]  # vbpi_mix.phylo.models
LikelihoodDevice = Literal["cpu", "cuda"]  # vbpi_mix.phylo.likelihood
EstimatorName = Literal["a2a", "s2a", "s2s"]  # vbpi_mix.inference.estimators.ESTIMATORS
GradientName = Literal["vimco", "rws"]  # vbpi_mix.inference.estimators.GRADIENTS
ProtocolName = Literal["paper", "short", "quick"]  # vbpi_mix.bench.protocols.PROTOCOLS

ALIGNMENT_FORMATS: tuple[str, ...] = get_args(AlignmentFormat)
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
LIKELIHOOD_DEVICES: tuple[str, ...] = get_args(LikelihoodDevice)
ESTIMATOR_NAMES: tuple[str, ...] = get_args(EstimatorName)
GRADIENT_NAMES: tuple[str, ...] = get_args(GradientName)
PROTOCOL_NAMES: tuple[str, ...] = get_args(ProtocolName)

# the GTR exchangeabilities in the order --rates takes them (vbpi_mix.phylo.models)
RATE_NAMES: tuple[str, ...] = ("AC", "AG", "AT", "CG", "CT", "GT")
