"""Where a model's starting weights come from: ``--weights imagenet | none | FILE | RUN_DIR``.

Files never execute code and are checked before they are read (``cnnlab.files``): safetensors, or
``torch.load(..., weights_only=True)`` on a plain torch.save archive. The classifier head
of a file is always skipped (the new head fits the new classes); key matching is reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from cnnlab.errors import WeightsError


@dataclass
class LoadReport:
    source: str
    matched: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_head: int = 0

    def line(self) -> str:
        parts = [f"weights from {self.source}: {self.matched} tensors loaded"]
        if self.skipped_head:
            parts.append(f"{self.skipped_head} classifier tensors skipped (new head)")
        if self.missing:
            parts.append(f"{len(self.missing)} missing (kept random: {', '.join(self.missing[:3])}"
                         f"{', ...' if len(self.missing) > 3 else ''})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (ignored: {', '.join(self.unexpected[:3])}"
                         f"{', ...' if len(self.unexpected) > 3 else ''})")
        return "; ".join(parts)


def kind(weights: Optional[str]) -> str:
    """'imagenet', 'none', 'run' or 'file'."""
    if weights is None or weights.lower() in ("none", "scratch"):
        return "none"
    if weights.lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if path.is_dir():
        return "run"
    if path.is_file():
        return "file"
    raise WeightsError(f"weights not found: {weights} (use imagenet, none, a .safetensors/.pth file or a run directory)")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch.save file (a Lightning checkpoint too), checked
    before it is read: no zip bombs, no code, no malformed headers (``cnnlab.files``)."""
    from cnnlab import files

    state = files.load_safetensors(path) if path.suffix == ".safetensors" else files.load_torch(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str, name: str,
                  head_keys: tuple[str, ...] = ()) -> LoadReport:
    """Load every tensor whose key and shape fit; the head is skipped; a wrong shape is an error."""
    own = model.state_dict()
    head = [k for k in state if k.startswith(head_keys)] if head_keys else []
    body = {k: v for k, v in state.items() if k not in head}
    matched = {k: v for k, v in body.items() if k in own}
    if not matched:
        first = next(iter(body), "(empty)")
        raise WeightsError(f"none of the {len(body)} tensors in {source} fit {name} (first key: {first}); "
                          f"is it a weights file for another architecture?")
    _check_shapes(matched, own, source, name)
    model.load_state_dict(matched, strict=False)
    return LoadReport(source, len(matched), _missing(own, matched, head_keys), [k for k in body if k not in own],
                      len(head))


def _check_shapes(matched: dict[str, torch.Tensor], own: dict[str, torch.Tensor], source: str, name: str) -> None:
    for key, value in matched.items():
        if value.shape != own[key].shape:
            raise WeightsError(f"{source} does not fit {name}: '{key}' has shape {tuple(value.shape)} in the file "
                              f"and {tuple(own[key].shape)} in the model (weights of another architecture?)")


def _missing(own: dict, matched: dict, head_keys: tuple[str, ...]) -> list[str]:
    """The model's tensors the file did not give, less its head and the batch-norm step counters."""
    return [k for k in own if k not in matched and not k.startswith(head_keys or ("\0",))
            and not k.endswith("num_batches_tracked")]


def download_imagenet(model: nn.Module, spec, name: str, head_keys: tuple[str, ...]) -> LoadReport:
    """The library's standard ImageNet weights, downloaded and cached by torchvision or timm."""
    try:
        if spec.source == "torchvision":
            import torchvision

            weights = torchvision.models.get_weight(spec.weights)
            state = weights.get_state_dict(progress=True, check_hash=True)
            where = f"{torch.hub.get_dir()}/checkpoints/{Path(weights.url).name}"
        else:
            import timm

            state = timm.create_model(spec.arch, pretrained=True).state_dict()
            where = f"the Hugging Face cache (model {spec.arch})"
    except (OSError, RuntimeError, ValueError) as exc:
        expected = ""
        if spec.source == "torchvision":
            import torchvision

            url = torchvision.models.get_weight(spec.weights).url
            expected = f" Offline? Put {Path(url).name} (from {url}) into {torch.hub.get_dir()}/checkpoints/,"
        raise WeightsError(f"could not download the ImageNet weights for {name} ({str(exc).splitlines()[0][:100]})."
                          f"{expected} or pass --weights PATH to a local .safetensors/.pth file, or --weights none") from None
    report = load_matching(model, state, f"ImageNet ({where})", name, head_keys)
    return report
