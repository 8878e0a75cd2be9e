"""Probes: measurements made on a network directly, without a training run (one module per experiment)."""
