"""Temperature scaling kept only where the evidence supports it: the fit against an independent NLL
minimisation, its bounds, and the cross-validated decision (calibration.py)."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from cnnlab.calibration import (FOLDS, MIN_IMAGES, T_MAX, T_MIN, cross_validated, decide, ece, fit_temperature,
                                folds)


def reference_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """The mean negative log-likelihood of softmax(z / t), written out with NumPy."""
    s = z / t
    return float(np.mean(logsumexp(s, axis=1) - s[np.arange(len(y)), y]))


def reference_fit(z: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    """argmin over T in [low, high] of the NLL: SciPy's bounded search directly on T (not log T)."""
    return float(minimize_scalar(lambda t: reference_nll(z, y, t), bounds=(low, high), method="bounded",
                                 options={"xatol": 1e-8}).x)


def sampled(n: int, classes: int, temperature: float, scale: float = 4.0, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): the true temperature is known."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=gen, dtype=torch.float64) * scale
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=gen).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("truth", [0.7, 2.5])
def test_the_fit_recovers_a_known_temperature_and_is_the_nll_minimum(truth):
    logits, labels = sampled(20_000, 5, truth)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(truth, rel=0.05)
    z, y = logits.numpy(), labels.numpy()
    assert t == pytest.approx(reference_fit(z, y, T_MIN, T_MAX), rel=1e-4)
    # first-order condition in b = 1/T: the mean logit under the model equals the mean true-class logit
    p = torch.softmax(logits / t, 1).numpy()
    assert float(np.mean((p * z).sum(1) - z[np.arange(len(y)), y])) == pytest.approx(0.0, abs=1e-4)
    assert ece((logits / t).softmax(1), labels) < ece(logits.softmax(1), labels)


def test_the_fit_stays_within_its_bounds():
    logits, labels = sampled(5_000, 4, 40.0)  # nearly random labels: the unbounded fit wants T far above 10
    assert reference_fit(logits.numpy(), labels.numpy(), 1.0, 1000.0) > 20
    assert fit_temperature(logits, labels) == pytest.approx(T_MAX, rel=1e-4)
    right = logits.argmax(1)  # no mistakes: the NLL falls as T falls, towards 0
    assert fit_temperature(logits, right) == pytest.approx(T_MIN, rel=1e-4)
    assert fit_temperature(logits, right, (1.0, T_MAX)) == pytest.approx(1.0, rel=1e-4)


def test_an_error_free_split_keeps_no_temperature():
    logits, _ = sampled(300, 4, 1.0)
    record = decide(logits * 0.3, logits.argmax(1))  # underconfident and always right: the NLL asks to sharpen
    assert fit_temperature(logits * 0.3, logits.argmax(1)) < 0.6  # what an unguarded fit would keep
    assert record.kept is False and record.temperature == 1.0 and record.errors == 0
    assert "no mistakes" in record.reason


def test_a_split_too_small_keeps_no_temperature():
    logits, labels = sampled(MIN_IMAGES - 1, 3, 3.0)
    record = decide(logits, labels)
    assert record.kept is False and record.temperature == 1.0 and "too few" in record.reason


def test_a_fold_fitted_on_images_without_mistakes_is_not_sharpened():
    logits, _ = sampled(300, 4, 1.0)
    labels = logits.argmax(1)
    labels[0] = (labels[0] + 1) % 4  # one mistake: exactly one fold's fitting images have none
    under = logits * 0.3  # underconfident: the NLL alone would sharpen it
    _, temps = cross_validated(under, labels, (T_MIN, T_MAX), FOLDS, 0)
    fitting_right = [bool((labels[fit] == under[fit].argmax(1)).all()) for fit, _ in folds(labels.numpy(), FOLDS, 0)]
    assert fitting_right.count(True) == 1
    for right, t in zip(fitting_right, temps):
        assert t == 1.0 if right else t < 1.0


def test_an_overconfident_model_keeps_a_temperature_that_helps_out_of_fold():
    logits, labels = sampled(600, 5, 2.5)
    record = decide(logits, labels, seed=3)
    assert record.kept is True and record.temperature == pytest.approx(2.5, rel=0.2)
    oof = record.out_of_fold
    assert oof.nll_after < oof.nll_before and oof.ece_after < oof.ece_before


def test_the_out_of_fold_figures_are_on_images_their_temperature_was_not_fitted_on():
    logits, labels = sampled(600, 5, 2.5, seed=1)
    z, y = logits.numpy(), labels.numpy()
    record = decide(logits, labels, seed=7)
    parts = list(folds(y, FOLDS, 7))
    assert sorted(np.concatenate([held for _, held in parts]).tolist()) == list(range(600))
    expected = np.empty(600)
    for (fit_idx, held_idx), t in zip(parts, record.fold_temperatures):
        assert not set(fit_idx) & set(held_idx)
        assert t == pytest.approx(reference_fit(z[fit_idx], y[fit_idx], *record.bounds), rel=1e-4)
        s = z[held_idx] / t  # each image scaled by the temperature fitted without it
        expected[held_idx] = logsumexp(s, axis=1) - s[np.arange(len(held_idx)), y[held_idx]]
    assert record.out_of_fold.nll_after == pytest.approx(float(expected.mean()), rel=1e-6)
    scaled, _ = cross_validated(logits, labels, tuple(record.bounds), FOLDS, 7)
    assert record.out_of_fold.ece_after == pytest.approx(ece(scaled.softmax(1), labels), abs=1e-6)
    # on the images that fitted it, the one temperature looks better than it is out of fold
    in_sample = reference_nll(z, y, record.temperature)
    assert in_sample < record.out_of_fold.nll_after
