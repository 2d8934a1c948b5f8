"""Alignment patterns, substitution models, the batched likelihood kernel, priors."""
