"""Dropout: a wide MLP and cnnlab's cnn-small trained on a small subset at rates 0, 0.25 and 0.5 (training
and test NLL, their gap), and the exact facts of inverted dropout."""
from __future__ import annotations

import torch
from torch import nn

from cnnlab.experiments.probes.common import Arrays, arrays, curve


def wide_mlp(d: Arrays, rate: float, width: int) -> nn.Sequential:
    """Flattened pixels, two ReLU layers of ``width`` with dropout after each (Srivastava et al.'s MNIST nets: hidden units
    dropped, inputs kept)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in ((d.x[0].numel(), width), (width, width)):
        layers += [nn.Linear(a, b), nn.ReLU()] + ([nn.Dropout(rate)] if rate > 0 else [])
    return nn.Sequential(*layers, nn.Linear(width, d.classes))


def cnn_small(d: Arrays, rate: float) -> nn.Module:
    """cnnlab's cnn-small preset at ``--dropout rate`` (the dropout sits in its dense head)."""
    from cnnlab.config import ModelConfig
    from cnnlab.models.custom import build_custom

    return build_custom(ModelConfig(name="cnn-small", dropout=rate), d.x.shape[1], tuple(d.x.shape[2:]), d.classes)


def _nll(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """The mean negative log-likelihood and the accuracy in eval mode (no unit dropped)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
        value = float(nn.functional.cross_entropy(out, y))
        acc = float((out.argmax(1) == y).float().mean())
    model.train(was)
    return value, acc


def _fit(model: nn.Module, d: Arrays, epochs: int, seed: int, lr: float, batch: int) -> dict:
    """Adam over ``epochs`` passes in ``seed``'s order; training and test NLL after each epoch."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train_nll, test_nll = [], []
    for _ in range(epochs):
        order = torch.randperm(len(d.y), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i: i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(d.x[idx]), d.y[idx]).backward()
            opt.step()
        train_nll.append(_nll(model, d.x, d.y)[0])
        test_nll.append(_nll(model, d.x_test, d.y_test)[0])
    return {"train_nll": train_nll, "test_nll": test_nll}


def subset(d: Arrays, n: int) -> Arrays:
    """``n`` training images drawn once by a fixed generator (a built-in set may be stored sorted by class), the
    same for every arm and seed; the test images unchanged. Pixels stay in [0, 1]: standardising by a small
    subset would blow up the rare pixels it never lights."""
    keep = torch.randperm(len(d.y), generator=torch.Generator().manual_seed(0))[:n]
    return Arrays(d.x[keep], d.y[keep], d.x_test, d.y_test, d.classes)


def overfit(seed: int, data: str, model: str, rate: float, n: int = 1000, epochs: int = 40, lr: float = 1e-3,
            batch: int = 64, width: int = 1024, train: tuple = ("mlp", "cnn-small")) -> dict:
    """``model`` ("mlp" or "cnn-small") trained with Adam on ``n`` training images at dropout ``rate``: the
    final training and test NLL, their gap, the test error. A model not in ``train`` is not trained (the
    quick budget leaves cnn-small out: a 28x28 CNN costs seconds an epoch on a CPU) and gives no figures."""
    if model not in train:
        return {"scalars": {}}
    d = subset(arrays(data, images=True), n)
    torch.manual_seed(seed)
    net = wide_mlp(d, rate, width) if model == "mlp" else cnn_small(d, rate)
    run = _fit(net, d, epochs, seed, lr, batch)
    test_nll, test_acc = _nll(net, d.x_test, d.y_test)
    train_nll = run["train_nll"][-1]
    epochs_axis = range(1, epochs + 1)
    return {"scalars": {"test_nll": test_nll, "train_nll": train_nll, "nll_gap": test_nll - train_nll,
                        "best_test_nll": min(run["test_nll"]), "test_error": 1.0 - test_acc,
                        "train_images": float(len(d.y))},
            "curves": {"test_nll": curve("epoch", epochs_axis, run["test_nll"]),
                       "train_nll": curve("epoch", epochs_axis, run["train_nll"])}}


def facts(seed: int, data: str, rate: float = 0.5, size: int = 1_000_000) -> dict:
    """Exact facts: in eval mode cnnlab's cnn-small at --dropout 0.5 gives the same output twice (and in train
    mode it does not: the control); inverted dropout scales the kept units by 1/(1 - p), so the mean activation
    stays within 1% over a million units."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = Arrays(torch.rand(16, 1, 28, 28, generator=gen), torch.zeros(16, dtype=torch.long), torch.empty(0),
               torch.empty(0), 10)
    net = cnn_small(d, rate)
    with torch.no_grad():
        net.eval()
        eval_change = float((net(d.x) - net(d.x)).abs().max())
        net.train()
        train_change = float((net(d.x) - net(d.x)).abs().max())
        x = torch.rand(size, generator=gen) + 0.5  # positive activations, as after a ReLU
        y = nn.Dropout(rate).train()(x)
    kept = y != 0
    return {"scalars": {"eval_change": eval_change, "train_change": train_change,
                        "mean_error": float(abs(y.mean() / x.mean() - 1)),
                        "kept_scale_error": float((y[kept] - x[kept] / (1 - rate)).abs().max()),
                        "kept_share": float(kept.float().mean())}}
