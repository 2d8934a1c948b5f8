"""Posterior export: samples, topology probabilities, MAP and consensus trees, split support."""
