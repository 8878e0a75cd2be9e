"""Architectures without weights: parameters and multiply-adds of the classic families on PyTorch's meta
device (shapes only), CPU latency per image, and the factorisations that Inception and Xception rest on."""
from __future__ import annotations

import time

import torch
from torch import nn

from cnnlab.models.families import FAMILIES

BUILDERS = {  # name -> (library, constructor, keyword arguments, input side); cnnlab's small ones: grayscale
    "vgg16": ("torchvision", "vgg16", {}, 224), "resnet18": ("torchvision", "resnet18", {}, 224),
    "resnet34": ("torchvision", "resnet34", {}, 224), "resnet50": ("torchvision", "resnet50", {}, 224),
    "inception_v3": ("torchvision", "inception_v3", {"aux_logits": False, "init_weights": False}, 299),
    "xception": ("timm", "legacy_xception", {}, 299),
}


SMALL = tuple(FAMILIES)  # cnnlab's small VGG, ResNet, Inception and Xception shapes, in its model registry
BUILDERS.update({name: ("cnnlab", name, {}, 28) for name in SMALL})


def _build(name: str) -> tuple[nn.Module, int]:
    library, constructor, kwargs, side = BUILDERS[name]
    if library == "cnnlab":
        from cnnlab.models.registry import create_model

        return create_model(constructor, 10, in_channels=1, input_size=side).net, side
    if library == "timm":
        import timm

        return timm.create_model(constructor, pretrained=False, **kwargs), side
    import torchvision.models

    return getattr(torchvision.models, constructor)(weights=None, **kwargs), side


def multiply_adds(model: nn.Module, shape: tuple) -> int:
    """torch.utils.flop_counter's FLOPs of one forward pass, halved: a multiply-add counts 2 FLOPs there."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(torch.empty(*shape, device="meta"))
    return int(counter.get_total_flops()) // 2


def latency_ms(model: nn.Module, side: int, repeats: int, channels: int = 3) -> float:
    """The fastest of ``repeats`` forward passes of one image on this CPU, after one warm-up (random weights:
    the cost does not depend on their values, only on the shapes)."""
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.01)
        for name, b in model.named_buffers():
            b.fill_(1.0 if "var" in name else 0.0)
        x = torch.rand(1, channels, side, side)
        model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * min(times)


PAPER = {"vgg16": ("parameters", 138e6), "resnet18": ("gmacs", 1.8), "resnet34": ("gmacs", 3.6),
         "resnet50": ("gmacs", 3.8), "inception_v3": ("parameters", 23_626_728), "xception": ("parameters", 22_855_952)}


# The small families' parameter count they were matched on (``models/families.py``), as PAPER's figures
PAPER.update({name: ("parameters", 25_500) for name in SMALL})


def family(seed: int, data: str, model: str, repeats: int = 3, small_side: int = 28) -> dict:
    """One architecture: parameters, multiply-adds per image, CPU latency per image (ms), and the relative
    gap of the figure its paper gives (``PAPER``). The small families take 1 x ``small_side``^2 digits."""
    with torch.device("meta"):
        net, side = _build(model)
    net.eval()
    channels = 1 if model in SMALL else 3
    side = small_side if model in SMALL else side
    params = sum(p.numel() for p in net.parameters())
    macs = multiply_adds(net, (1, channels, side, side))
    scalars = {"parameters": float(params), "gmacs": macs / 1e9, "input_side": float(side)}
    metric, paper = PAPER[model]
    scalars[f"{metric}_gap"] = abs(scalars[metric] - paper) / paper
    return {"scalars": {**scalars, "latency_ms": latency_ms(net, side, repeats, channels)}}


def _macs(layers: list[nn.Module], c: int, side: int) -> int:
    with torch.device("meta"):
        net = nn.Sequential(*layers)
    return multiply_adds(net, (1, c, side, side))


def factorisations(seed: int, data: str, c: int = 64, n: int = 128, side: int = 32) -> dict:
    """Multiply-adds counted by torch for: a depthwise-separable k x k convolution against a full one
    (MobileNets' 1/N + 1/k^2), two 3x3 against one 5x5 (18/25) and 3x1 then 1x3 against 3x3 (6/9)."""
    def conv(ci, co, k, groups=1):
        return nn.Conv2d(ci, co, k, padding=tuple(x // 2 for x in k) if isinstance(k, tuple) else k // 2,
                         groups=groups, bias=False)

    k = 3
    separable = _macs([conv(c, c, k, groups=c), conv(c, n, 1)], c, side) / _macs([conv(c, n, k)], c, side)
    five = _macs([conv(c, c, 3), conv(c, c, 3)], c, side) / _macs([conv(c, c, 5)], c, side)
    asym = _macs([conv(c, c, (3, 1)), conv(c, c, (1, 3))], c, side) / _macs([conv(c, c, 3)], c, side)
    return {"scalars": {"separable_ratio": separable, "separable_error": abs(separable - (1 / n + 1 / k ** 2)),
                        "two_3x3_over_5x5": five, "two_3x3_error": abs(five - 18 / 25),
                        "asymmetric_over_3x3": asym, "asymmetric_error": abs(asym - 6 / 9)}}
