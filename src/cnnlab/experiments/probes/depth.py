"""Plain against residual networks of 20 and 56 layers (He et al. 2016's CIFAR nets, narrow): the training
loss after the same SGD steps, and the back-propagated gradient at every layer, side by side.

The networks are He et al.'s CIFAR nets built from cnnlab's layers (its conv-BN-activation unit and activation
registry): a 3x3 stem, three stages of n basic blocks, global average pooling and the classifier, 6n + 2
weight layers. cnnlab's ``--residual`` adds its shortcut after the block's last ReLU (He et al. 2016b's "ReLU
before addition", whose residual stream only grows: at SGD 0.1 a 56-layer one diverged here); the probe
adds it before, as the paper's block does.
"""
from __future__ import annotations

from copy import deepcopy

import torch
from torch import nn

from cnnlab.experiments.probes.common import Arrays, accuracy, activation, arrays, curve, linears, sgd_steps, signals


class Block(nn.Module):
    """He et al.'s basic block: conv-BN-ReLU, conv-BN, then the identity shortcut added (option A: at a stage's
    first block the input is subsampled and zero-padded to the new width) and ReLU; plain: the same layers
    without the shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, batch_norm: bool, residual: bool):
        super().__init__()
        from cnnlab.config import ConvBlock
        from cnnlab.models.custom import ConvUnit

        self.first = ConvUnit(cin, cout, ConvBlock(filters=cout), stride, batch_norm, "relu")
        second: list[nn.Module] = [nn.Conv2d(cout, cout, 3, 1, 1, bias=not batch_norm)]
        self.second = nn.Sequential(*second, *([nn.BatchNorm2d(cout)] if batch_norm else []))
        self.act = activation("relu", cout)
        self.residual, self.stride, self.pad = residual, stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second(self.first(x))
        if self.residual:
            y = y + nn.functional.pad(x[..., ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.pad))
        return self.act(y)


def network(depth: int, residual: bool, batch_norm: bool, widths: tuple, classes: int) -> nn.Sequential:
    """A (6n + 2)-layer CIFAR-style network: a 3x3 stem, three stages of n blocks (the first of stages 2 and 3 at
    stride 2), global average pooling and the classifier. PyTorch's default initialisation, as cnnlab's CNNs."""
    from cnnlab.config import ConvBlock
    from cnnlab.models.custom import ConvUnit

    n, rest = divmod(depth - 2, 6)
    if rest or n < 1:
        raise ValueError(f"depth {depth} is not 6n + 2 (20, 32, 44, 56, 110 ...)")
    layers: list[nn.Module] = [ConvUnit(1, widths[0], ConvBlock(filters=widths[0]), 1, batch_norm, "relu")]
    cin = widths[0]
    for stage, width in enumerate(widths):
        for i in range(n):
            layers.append(Block(cin, width, 2 if stage and i == 0 else 1, batch_norm, residual))
            cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def images(data: str, side: int) -> Arrays:
    """The set's images at ``side`` x ``side`` (area-resized), standardised by the training images' statistics."""
    d = arrays(data, images=True)

    def resized(x: torch.Tensor) -> torch.Tensor:
        return x if x.shape[-1] == side else nn.functional.interpolate(x, size=(side, side), mode="area")

    x, xt = resized(d.x), resized(d.x_test)
    mean, std = float(x.mean()), float(x.std())
    return Arrays((x - mean) / std, d.y, (xt - mean) / std, d.y_test, d.classes)


def layer_gradients(model: nn.Module, d: Arrays, batch: int = 128) -> list[float]:
    """|dL/dz| per example at the output z of each 3x3 convolution (input side first), on one training batch, in
    float64 on a copy (a vanishing gradient is not rounded to 0; the model's BN statistics are left as they were)."""
    copy = deepcopy(model).double()
    keep = [i for i, m in enumerate(linears(copy)) if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    dz = signals(copy, d.x[:batch].double(), d.y[:batch])["dz"]
    return [dz[i] for i in keep]


def plain_or_residual(seed: int, data: str, depth: int, residual: bool, batch_norm: bool = True,
                      widths: tuple = (8, 16, 32), side: int = 16, steps: int = 300, lr: float = 0.1,
                      batch: int = 64, train: bool = True, tail: int = 30) -> dict:
    """The back-propagated gradient per layer at initialisation, then ``steps`` SGD steps (momentum 0.9, weight
    decay 1e-4, He et al.'s): the final training loss (the mean of the last ``tail`` mini-batch losses), the
    gradient per layer again, and the test error."""
    d = images(data, side)
    torch.manual_seed(seed)
    model = network(depth, residual, batch_norm, tuple(widths), d.classes)
    at_init = layer_gradients(model, d)
    scalars = {"grad_ratio_init": at_init[0] / at_init[-1]}
    curves = {"grad_at_init": curve("layer", range(1, len(at_init) + 1), at_init)}
    if train:
        def sgd(params):
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)

        run = sgd_steps(model, d, steps, seed, lr, batch, make_opt=sgd, every=1, track_accuracy=False)
        losses = [v for v in run["loss"][-tail:] if v is not None]
        trained = layer_gradients(model, d)
        scalars.update({"train_loss": sum(losses) / len(losses) if losses else float("inf"),
                        "grad_ratio": trained[0] / trained[-1],
                        "test_error": 1.0 - accuracy(model, d.x_test, d.y_test)})
        every = max(1, steps // 60)
        curves["train_loss"] = curve("step", run["step"][::every], run["loss"][::every])
        curves["grad_trained"] = curve("layer", range(1, len(trained) + 1), trained)
    return {"scalars": scalars, "curves": curves}
