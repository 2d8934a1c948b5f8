"""Unrooted binary topologies in the alignment's taxon order, and conversions."""
