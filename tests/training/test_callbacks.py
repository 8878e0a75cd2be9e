"""The callbacks' per-step work: the progress bar's redraws are throttled by time as well as by steps, and the
gradient-flow norms come back in one read, equal to each layer's own norm."""
import pytest
import torch
from torch import nn

from cnnlab.training.callbacks import StderrProgressBar, gradient_norms, weight_layers


def test_the_bar_redraws_every_refresh_rate_steps_at_most_twice_a_second_and_always_at_the_end():
    now = [0.0]
    bar = StderrProgressBar(refresh_rate=10, clock=lambda: now[0])
    drawn = []
    for step, t in [(10, 0.0), (15, 0.0), (20, 0.1), (30, 0.45), (40, 0.55), (50, 0.6), (57, 0.62), (10, 0.63)]:
        now[0] = t
        drawn.append(bar._should_update(step, 57))
    # step 10 draws; 15 is not a 10th step; 20 and 30 come too soon; 40 is 0.55 s on; 50 too soon again;
    # 57 is the epoch's last step (always drawn); the next epoch's 10th step waits its 0.5 s too
    assert drawn == [True, False, False, False, True, False, True, False]


def test_gradient_norms_are_each_layers_norm_read_in_one_copy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(12, 2))
    model(torch.randn(5, 1, 4, 4)).square().sum().backward()
    norms = gradient_norms(model)
    assert list(norms) == ["0", "2"]
    assert norms == pytest.approx({name: float(p.grad.norm()) for name, p in weight_layers(model)}, rel=1e-6)
    assert all(isinstance(v, float) for v in norms.values())
    model.zero_grad(set_to_none=True)
    assert gradient_norms(model) == {}
