"""Transfer-learning strategies (cnnlab.catalog.strategies) as a Lightning callback, and feature caching
for frozen backbones: the callback does what the strategy says it freezes and unfreezes.

Frozen means frozen: no gradient, no optimiser state, and BatchNorm layers in frozen parts run in
eval mode, so their running statistics stay exactly as loaded.
"""
from __future__ import annotations

from typing import Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from cnnlab.config import Config
from cnnlab.data.datasets import InMemoryImages, batch_collate
from cnnlab.data.prepare import Prepared
from cnnlab.errors import ConfigError
from cnnlab.models.image_model import ImageModel
from cnnlab.training import distributed
from cnnlab.catalog.strategies import Strategy


def check(cfg: Config, strategy: Strategy, net: nn.Module) -> None:
    """Bad combinations fail before training, with what to do instead."""
    if strategy.trained_blocks(cfg.transfer.unfreeze):
        n = len(net.blocks())
        if cfg.transfer.unfreeze > n:
            raise ConfigError(f"--unfreeze {cfg.transfer.unfreeze} is more than {cfg.model.name} has: "
                              f"{n} blocks (use 1..{n}, or --strategy full)")
    if strategy.top_blocks_later and cfg.optim.schedule == "onecycle":
        raise ConfigError(f"the onecycle schedule cannot follow {strategy.name}'s added parameter group: "
                          "use --schedule cosine, step, plateau or none")


class TransferSchedule(BaseFinetuning):
    """Freezes, and for two-phase unfreezes, the backbone. Like Lightning's ``BackboneFinetuning`` it carries
    a ratio, not a rate: the joining blocks get the head's starting rate (read from the optimizer, so it is
    the rate training resolved, --lr auto's included) times ``backbone_lr_mult``."""

    def __init__(self, strategy: Strategy, unfreeze: int, head_epochs: int, backbone_lr_mult: float) -> None:
        super().__init__()
        self.strategy, self.unfreeze = strategy, unfreeze
        self.head_epochs, self.backbone_lr_mult = head_epochs, backbone_lr_mult

    def _top_blocks(self, net: nn.Module) -> list[nn.Module]:
        blocks = net.blocks()
        return [m for block in blocks[len(blocks) - self.unfreeze:] for m in block] if self.unfreeze else []

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        net = pl_module.model.net
        if self.strategy.freezes_backbone:
            self.freeze(net.features, train_bn=False)
        if self.strategy.top_blocks_from_start:
            self.make_trainable(self._top_blocks(net))

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if self.strategy.top_blocks_later and epoch == self.head_epochs and self.unfreeze:
            head = optimizer.param_groups[0]
            # initial_lr: the rate before the schedule moved it (schedulers record it in every group)
            lr = head.get("initial_lr", head["lr"]) * self.backbone_lr_mult
            self.unfreeze_and_add_param_group(self._top_blocks(pl_module.model.net), optimizer, lr=lr)
            distributed.rewrap(pl_module.trainer)  # the new trainable blocks join DDP's gradient all-reduce

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.strategy.top_blocks_later and self.unfreeze and trainer.current_epoch > self.head_epochs:
            # Resumed past the head-only epochs: the optimiser has its groups back from the checkpoint, and
            # the top blocks must train again (and join DDP's all-reduce).
            blocks = self._top_blocks(pl_module.model.net)
            if not all(p.requires_grad for m in blocks for p in m.parameters()):
                self.make_trainable(blocks)
                distributed.rewrap(trainer)
        super().on_train_epoch_start(trainer, pl_module)
        freeze_batchnorm_stats(pl_module.model)


def freeze_batchnorm_stats(model: nn.Module) -> None:
    """BatchNorm layers with no trainable parameter run in eval mode: their statistics stay as loaded."""
    for m in model.modules():
        if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def schedule_callback(cfg: Config, strategy: Strategy, head_epochs: int) -> Optional[TransferSchedule]:
    """The callback that freezes (and unfreezes) what ``strategy`` says; None when everything trains."""
    if not strategy.freezes_backbone:
        return None
    return TransferSchedule(strategy, cfg.transfer.unfreeze, head_epochs, cfg.transfer.backbone_lr_mult)


# ----------------------------------------------------------------------------- feature caching
class CachedHead(nn.Module):
    """Trains the head alone on cached features; keeps the ``net.head`` names of the full model."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.net = nn.Module()
        self.net.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.head(features)


@torch.no_grad()
def cache_features(model: ImageModel, prepared: Prepared, batch_size: int = 64) -> dict[str, InMemoryImages]:
    """Run the frozen backbone once over every split; global-pooling heads get pooled features."""
    net = model.net
    pooled = isinstance(net.head[0], nn.AdaptiveAvgPool2d) and net.head[0].output_size in (1, (1, 1))
    model.eval()
    out = {}
    for split, ds in prepared.datasets.items():
        chunks = []
        for x, _ in DataLoader(ds, batch_size=batch_size, collate_fn=batch_collate):
            f = net.features(model.normalize(x))
            chunks.append(f.mean(dim=(2, 3), keepdim=True) if pooled else f)
        out[split] = InMemoryImages(torch.cat(chunks), ds.targets)
    model.train()
    return out
