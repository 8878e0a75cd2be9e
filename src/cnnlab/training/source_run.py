"""``--weights RUN_DIR``: start from a previous cnnlab run's backbone, even for other classes.

For a custom CNN the convolutional part is the backbone and the dense part the head; the
architecture, input size and channels come from the source run, the head from the new config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import nn

from cnnlab import files
from cnnlab.config import Config
from cnnlab.errors import WeightsError
from cnnlab.models.weights import LoadReport, kind
from cnnlab.rundir import Run, weights_path

# What makes a custom CNN's convolutional part; everything else of the model config is head or weights.
ARCHITECTURE_KEYS = ("name", "activation", "blocks", "batch_norm", "pool", "pool_size", "pool_stride", "residual")


def adopt_source_run(cfg: Config, weights: Optional[str] = None) -> Config:
    """The config with the source run's architecture and input, when ``model.weights`` is a run directory
    (``weights``: its kind, when the caller has it)."""
    if cfg.model.weights is None or (weights or kind(cfg.model.weights)) != "run":
        return cfg
    src = Run.open(cfg.model.weights)
    if "name" in cfg.model.model_fields_set and cfg.model.name != src.config.model.name:
        raise WeightsError(f"--weights {cfg.model.weights} holds a {src.config.model.name}, not a {cfg.model.name}: "
                          f"leave out --model to continue from it")
    update = {k: getattr(src.config.model, k) for k in ARCHITECTURE_KEYS}
    update.update(input_size=src.pre.size[0], in_channels=src.pre.channels)
    return cfg.model_copy(update={"model": cfg.model.model_copy(update=update)})


def load_features_from_run(net: nn.Module, run_dir: Path, name: str) -> LoadReport:
    state = files.load_safetensors(weights_path(run_dir))
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        net.features.load_state_dict(features, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"the backbone in {run_dir} does not fit {name}: {str(exc).splitlines()[1].strip()[:160]}") from None
    return LoadReport(f"run {run_dir}", len(features), skipped_head=len(state) - len(features))
