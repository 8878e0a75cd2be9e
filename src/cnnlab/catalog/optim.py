"""Optimisers and learning-rate schedules by name: ``optim.optimizer`` and ``optim.schedule`` are checked
against these registries, and the training module builds from them.

An optimiser builder takes the parameter groups and the optim config; a schedule builder takes the
optimiser, the optim config, the Lightning trainer and the monitored metric, and returns Lightning's
scheduler dict (or None). Torch is imported when one is built: the names are known without it (the config
and ``--help`` ask them).
"""
from __future__ import annotations

from cnnlab.catalog.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@OPTIMIZERS.register("sgd")
def sgd(params, o):
    import torch

    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                           weight_decay=o.weight_decay)


def _fusable(params) -> tuple[list, bool]:
    """The parameters (or groups) as a list, and whether torch's fused Adam kernel takes them all: floating
    tensors on the CPU or a CUDA device. On the CPU torch's default is the per-tensor loop; the fused kernel
    steps cnn-small in 0.29 ms against 0.72 ms (two threads), the same update to float rounding."""
    params = list(params)
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    return params, all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)


@OPTIMIZERS.register("adam")
def adam(params, o):
    import torch

    params, fused = _fusable(params)
    return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, fused=fused or None)


@OPTIMIZERS.register("adamw")
def adamw(params, o):
    import torch

    params, fused = _fusable(params)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, fused=fused or None)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, o):
    import torch

    return torch.optim.RMSprop(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


@SCHEDULES.register("none")
def no_schedule(opt, o, trainer, monitor: str):
    return None


@SCHEDULES.register("step")
def step_schedule(opt, o, trainer, monitor: str):
    import torch

    return {"scheduler": torch.optim.lr_scheduler.StepLR(opt, o.step_size, o.gamma), "interval": "epoch"}


@SCHEDULES.register("cosine")
def cosine_schedule(opt, o, trainer, monitor: str):
    import torch

    return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=trainer.max_epochs), "interval": "epoch"}


@SCHEDULES.register("plateau")
def plateau_schedule(opt, o, trainer, monitor: str):
    import torch

    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max" if monitor.endswith("acc") else "min",
                                                       factor=o.gamma, patience=2)
    return {"scheduler": sched, "interval": "epoch", "monitor": monitor}


@SCHEDULES.register("onecycle")
def onecycle_schedule(opt, o, trainer, monitor: str):
    import torch

    max_lr = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=int(trainer.estimated_stepping_batches))
    return {"scheduler": sched, "interval": "step"}
