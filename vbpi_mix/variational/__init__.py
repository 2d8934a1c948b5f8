"""Variational families: the SBN over topologies, the branch-length model, their mixture."""
