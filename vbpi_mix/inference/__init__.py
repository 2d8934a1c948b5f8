"""Estimators, training and evaluation."""
