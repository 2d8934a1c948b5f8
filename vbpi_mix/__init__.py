"""vbpi-mix: variational Bayesian phylogenetic inference with mixtures of SBNs."""

__version__ = "0.1.0"
