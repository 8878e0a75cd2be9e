"""Metrics, plots and reports on a trained run."""
