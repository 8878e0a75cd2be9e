"""The depth experiment: He et al.'s plain and residual CIFAR networks, and its --quick claims with margins far
outside the seed spread (measured over 3 seeds of the quick budget, given beside each assertion)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.experiments.probes.depth import layer_gradients, network
from cnnlab.experiments.probes.common import Arrays
from cnnlab.experiments.stats import SUPPORTED


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("depth", [20, 56])
def test_the_networks_have_6n_plus_2_weight_layers_and_shortcuts_add_no_parameters(depth):
    plain = network(depth, residual=False, batch_norm=True, widths=(8, 16, 32), classes=10)
    residual = network(depth, residual=True, batch_norm=True, widths=(8, 16, 32), classes=10)
    assert len(_weight_layers(plain)) == len(_weight_layers(residual)) == depth
    # option A shortcuts (subsample and zero-pad) hold no weights: the two differ only in the additions
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in residual.parameters())
    assert plain(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


def test_a_residual_block_adds_its_input_and_a_plain_one_does_not():
    torch.manual_seed(0)
    plain, residual = (network(20, r, False, (8, 16, 32), 10) for r in (False, True))
    residual.load_state_dict(plain.state_dict())
    block_p, block_r = plain[1], residual[1]  # stage 1's first block: 8 -> 8 channels, stride 1
    for block in (block_p, block_r):
        nn.init.zeros_(block.second[0].weight)
        nn.init.zeros_(block.second[0].bias)
    x = torch.rand(2, 8, 16, 16)  # non-negative: ReLU(0 + x) = x
    assert torch.equal(block_r(x), x) and torch.equal(block_p(x), torch.zeros_like(x))


def test_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        network(21, False, True, (8, 16, 32), 10)


def test_a_gradient_below_float32s_range_is_measured_not_rounded_to_zero():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 16, 16)
    d = Arrays(x, torch.randint(0, 10, (16,)), x, torch.zeros(16, dtype=torch.long), 10)
    grads = layer_gradients(network(56, False, False, (8, 16, 32), 10), d)
    assert len(grads) == 55 and all(g > 0 for g in grads)
    assert grads[0] / grads[-1] < 1e-12  # without BN (PyTorch's default init) the gradient vanishes toward the input


@pytest.mark.slow
def test_depth_quick(tmp_path):
    r = cnnlab.experiment("depth", quick=True, seeds=2, out=tmp_path)
    failed = [(c.claim, c.verdict) for c in r.checks if c.verdict != SUPPORTED]
    assert not failed, failed
    plain20, plain56 = r.values("plain-20", "train_loss"), r.values("plain-56", "train_loss")
    res56 = r.values("residual-56", "train_loss")
    # 3 quick seeds: plain-56/plain-20 2.62-2.66x (claim 1.2x); plain-56/residual-56 4.0-4.8x (claim 2x)
    assert all(p56 > 1.8 * p20 for p56, p20 in zip(plain56, plain20))
    assert all(p56 > 3 * r56 for p56, r56 in zip(plain56, res56))
    # plain-56 after training: first/last 0.094-0.13 (claim 1e-2); at init 1.3e3-5.9e3; without BN ~1e-23
    assert min(r.values("plain-56", "grad_ratio")) > 0.03
    assert min(r.values("plain-56", "grad_ratio_init")) > 100
    assert max(r.values("plain-56-no-bn", "grad_ratio_init")) < 1e-15
    assert "test_error" in r.figures["residual-20"][0]["scalars"]
    page = r.html_path.read_text()
    assert "degradation" in page.lower() and "vanishing" in page.lower()
