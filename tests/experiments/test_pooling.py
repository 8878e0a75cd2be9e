"""The pooling experiment: the exact facts of pooling layers, and in --quick mode (2 seeds) the floor, the band
and the convolutional prior on MNIST-1D, with margins set against the seed spread measured over 3 seeds."""
from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.catalog.layers import POOLING
from cnnlab.experiments.catalog import EXPERIMENTS
from cnnlab.experiments.probes import pooling as probe
from cnnlab.experiments.stats import SUPPORTED


def test_pooling_layers_have_no_parameters_and_max_ignores_order_within_a_window():
    s = probe.facts(0, "digits")["scalars"]
    assert s["pool_parameters"] == 0.0
    assert s["max_within_change"] == 0.0  # bit-identical, not merely close
    assert s["max_across_change"] > 1.0  # the control: moving values between windows changes the maxima
    assert s["strided_parameters"] == 3 * 3 * 3 * 3 + 3  # the strided convolution that replaces a pool is not free


def test_the_within_window_permutation_moves_values_only_inside_their_window():
    x = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    y = probe._permute_within_windows(x, 2, torch.Generator().manual_seed(0))
    assert not torch.equal(x, y)
    windows = lambda t: t.unfold(2, 2, 2).unfold(3, 2, 2).reshape(2, 1, 2, 3, 4)  # noqa: E731
    assert torch.equal(windows(x).sort(-1).values, windows(y).sort(-1).values)
    for name in POOLING.canonical_names():
        assert sum(p.numel() for p in POOLING.build(name, size=2, stride=2).parameters()) == 0


def test_mnist1d_is_generated_offline_with_the_published_shape_and_one_fixed_permutation():
    plain, shuffled = probe.mnist1d_arrays(False), probe.mnist1d_arrays(True)
    assert tuple(plain.x.shape) == (4000, 1, 40) and tuple(plain.x_test.shape) == (1000, 1, 40)
    assert torch.equal(plain.y, shuffled.y)
    # the same permutation for training and test images: sorted values of each sequence are unchanged
    assert torch.equal(plain.x.sort(-1).values, shuffled.x.sort(-1).values)
    assert torch.equal(plain.x_test.sort(-1).values, shuffled.x_test.sort(-1).values)
    assert not torch.equal(plain.x, shuffled.x)
    ratio = sum(p.numel() for p in probe.mlp_1d().parameters()) / sum(p.numel() for p in probe.cnn_1d().parameters())
    assert 0.8 < ratio < 1.25  # "an MLP of similar size"


def test_the_variants_are_cnnlab_models_that_shrink_the_maps_alike():
    d = probe.Arrays(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), torch.zeros(1, 1, 8, 8),
                     torch.zeros(1, dtype=torch.long), 10)
    sizes = {v: probe._cnn(v, d).features(d.x).shape[-1] for v in probe.VARIANTS}
    assert sizes == {"max": 2, "avg": 2, "strided": 2, "none": 8}


@pytest.mark.slow
def test_pooling_quick(tmp_path):
    r = cnnlab.experiment("pooling", quick=True, seeds=2, out=tmp_path)
    failed = [(c.claim, c.verdict) for c in r.checks if c.verdict != SUPPORTED]
    assert not failed, failed
    # MNIST-1D, 500 Adam steps, 3 seeds: the CNN's advantage 0.260-0.282 in place (sd 0.012), -0.016 to +0.002
    # shuffled (sd 0.009); the CNN's accuracy 0.85-0.88 in place, 0.58-0.62 shuffled (MLP 0.58-0.63 both ways)
    assert min(r.values("prior", "cnn_advantage")) > 0.2
    assert max(r.values("prior-shuffled", "cnn_advantage")) < 0.03
    assert min(r.values("prior", "cnn_accuracy")) > 0.8 > 0.7 > max(r.values("prior-shuffled", "cnn_accuracy"))
    # digits, 150 steps, 3 seeds: max 0.978-0.989, avg 0.958-0.978, strided 0.981-0.989, none 0.978-0.981,
    # against the 0.9 floor and the 0.05 band (the ordering is reported, not asserted)
    accuracies = {v: r.values(v, "test_accuracy") for v in probe.VARIANTS}
    assert min(min(a) for a in accuracies.values()) > 0.93
    no_pool, pooled = r.values("none", "parameters")[0], r.values("max", "parameters")[0]
    assert no_pool > 5 * pooled  # without pooling the dense layer sees every position
    assert "test_accuracy" in r.figures["avg"][0]["scalars"] and 'id="verdict"' in r.html_path.read_text()


def test_pooling_is_listed_with_its_sources():
    exp = EXPERIMENTS.get("pooling")()
    papers = {c.source.paper for c in exp.checks}
    assert any("Springenberg" in p for p in papers) and any("MNIST-1D" in p for p in papers)
    assert {"max", "avg", "strided", "none", "prior", "prior-shuffled", "facts"} == {a.name for a in exp.arms}


def test_a_negative_margin_reads_as_a_tolerance():
    exp = EXPERIMENTS.get("pooling")()
    below = next(c for c in exp.checks if c.arm == "avg" and c.op == ">" and c.other)
    above = next(c for c in exp.checks if c.arm == "avg" and c.op == "<" and c.other)
    assert below.expectation() == "avg's test_accuracy no more than 0.05 below max's"
    assert above.expectation() == "avg's test_accuracy no more than 0.05 above max's"


def test_without_mnist1d_the_prior_says_what_to_install(monkeypatch):
    import sys

    from cnnlab.errors import CnnlabError

    probe.mnist1d.cache_clear()
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # an import of it now fails
    with pytest.raises(CnnlabError, match="pip install 'mnist1d"):
        probe.mnist1d()
    probe.mnist1d.cache_clear()
