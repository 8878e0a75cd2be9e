"""The exact experiments of the second family (#27): each probe against the formula or reference library it
claims to match, and each experiment's claims in --quick mode."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

import cnnlab
from cnnlab.experiments.stats import SUPPORTED


def test_metrics_experiment_supports_every_exact_claim_and_the_nll_cut(tmp_path):
    r = cnnlab.experiment("metrics", quick=True, seeds=2, out=tmp_path)
    verdicts = {c.metric: c.verdict for c in r.checks}
    assert all(v == SUPPORTED for m, v in verdicts.items() if m != "ece_gain"), verdicts
    assert r.values("paradox", "accuracy") == [0.99, 0.99] and r.values("paradox", "balanced_accuracy") == [0.5, 0.5]
    # out-of-fold NLL halves (1.6-2.4x over 5 seeds; the claim's 1.1x is 2.5 seed-sd below their mean)
    assert min(r.values("temperature", "nll_ratio")) > 1.1
    assert "ece_gain" in verdicts  # reported with its verdict: at 360 held-out digits the ECE is inside noise


def test_roc_auc_is_the_mann_whitney_statistic_and_ignores_monotone_transforms():
    from scipy.stats import mannwhitneyu

    from cnnlab.experiments.probes.metrics import _scores, roc_auc

    y, s = _scores(3, 300, 700)
    assert len(np.unique(s)) < len(s)  # ties present: the rank formula must count them as 1/2
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic / (300 * 700)
    assert abs(u - skm.roc_auc_score(y, s)) < 1e-12
    scalars = roc_auc(3, "digits")["scalars"]
    assert scalars["roc_auc"] == pytest.approx(u, abs=1e-12) and scalars["mann_whitney_error"] < 1e-12
    assert scalars["monotone_change"] == 0.0


def test_the_precision_recall_curve_is_counted_threshold_by_threshold():
    from cnnlab.experiments.probes.metrics import pr_curve

    out = pr_curve(1, "digits")
    assert out["scalars"]["curve_error"] < 1e-12 and out["scalars"]["recall_rises"] == 0
    recall = out["curves"]["precision"]["recall"]
    assert recall[0] == 1.0 and all(a >= b for a, b in zip(recall, recall[1:]))


def test_temperature_scaling_never_changes_the_argmax():
    from cnnlab.experiments.probes.metrics import temperature

    s = temperature(0, "digits", steps=50)["scalars"]
    assert s["accuracy_change"] == 0.0 and s["temperature"] > 1  # overconfident: the fitted T softens
    assert math.isclose(s["nll_ratio"], s["nll_before"] / s["nll_after"])


def test_conv_arithmetic_experiment_supports_every_claim(tmp_path):
    r = cnnlab.experiment("conv-arithmetic", quick=True, out=tmp_path)
    assert all(c.verdict == SUPPORTED for c in r.checks), [(c.claim, c.verdict) for c in r.checks]
    s = r.figures["vgg16"][0]["scalars"]
    assert s["parameters"] == 138_357_544 and abs(s["fc6_share"] - 102_764_544 / 138_357_544) < 1e-12
    assert s["receptive_field"] == 212 and r.figures["output-size"][0]["scalars"]["cases"] > 1000
    table = r.figures["vgg16"][0]["tables"]["VGG-16 layers at 224x224"]["rows"]
    assert sum(float(row[-1]) for row in table) == pytest.approx(30.7, abs=0.05)  # 15.3 G multiply-adds


def test_the_output_size_formula_and_the_measured_receptive_field_catch_a_wrong_layer():
    from torch import nn

    from cnnlab.experiments.probes.conv_arithmetic import out_size, receptive_field, rf_formula

    assert [out_size(224, 7, 3, 2), out_size(7, 3, 0, 1, 2), out_size(28, 2, 0, 2)] == [112, 3, 14]
    layers = [nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=2, dilation=2)]
    assert rf_formula(layers) == [3, 4, 12] and receptive_field(layers, 41) == 12
    assert receptive_field([nn.Conv2d(1, 1, 5)], 21) == 5 != receptive_field([nn.Conv2d(1, 1, 3)], 21)


def test_architectures_experiment_counts_each_family_against_its_paper(tmp_path):
    from dataclasses import replace

    from cnnlab.experiments.catalog import EXPERIMENTS

    exp = EXPERIMENTS.get("architectures")()  # its probe arms only: the trained ones are tests/.../test_architectures
    probes = replace(exp, arms=tuple(a for a in exp.arms if a.probe),
                     checks=tuple(c for c in exp.checks if exp.arm(c.arm).probe))
    assert len(probes.checks) == 13
    r = cnnlab.experiment(probes, quick=True, seeds=1, out=tmp_path)
    assert all(c.verdict == SUPPORTED for c in r.checks), [(c.claim, c.verdict) for c in r.checks]
    params = {arm: r.values(arm, "parameters")[0] for arm in ("vgg16", "resnet18", "resnet50", "xception")}
    assert params == {"vgg16": 138_357_544, "resnet18": 11_689_512, "resnet50": 25_557_032, "xception": 22_855_952}
    small = {arm: r.values(f"{arm}-small-cost", "parameters")[0] for arm in ("vgg", "resnet", "inception", "xception")}
    assert small == {"vgg": 25_498, "resnet": 26_298, "inception": 24_378, "xception": 26_154}
    # at the quick budget's 1x14x14: the stem's 1->16 3x3 conv alone is 9 * 16 * 14^2 = 28,224 multiply-adds
    assert all(28_224 < r.values(f"{a}-small-cost", "gmacs")[0] * 1e9 < 1e6 for a in small)
    assert r.values("resnet18", "gmacs")[0] == pytest.approx(1.814, abs=1e-3)  # He et al. Table 1: 1.8
    assert r.values("factorisations", "separable_ratio")[0] == pytest.approx(1 / 128 + 1 / 9, abs=1e-15)
    assert all(r.values(arm, "latency_ms")[0] > 0 for arm in params)


def test_the_factorisation_ratios_come_from_the_layers_not_the_formula():
    from torch import nn

    from cnnlab.experiments.probes.architectures import _macs

    full = _macs([nn.Conv2d(8, 16, 3, padding=1)], 8, 10)
    depthwise = _macs([nn.Conv2d(8, 8, 3, padding=1, groups=8)], 8, 10)
    assert full == 9 * 8 * 16 * 100 and depthwise == 9 * 8 * 100  # k^2 C_in C_out H W; groups divide it
