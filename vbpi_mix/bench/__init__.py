"""Benchmark support: finding the DS1-DS8 data, protocols, runner, reports."""
