"""Verdicts from paired differences across seeds, never from one run.

For each seed k the effect e_k is the claimed difference (arm A against arm B of the same seed, or
against a value), oriented so that a positive e_k goes the claimed way; on the log scale it is a
difference of log10 values (a ratio). The verdict compares the 95% bootstrap interval of the mean
effect (SciPy's ``bootstrap``, a fixed random state so that the same figures give the same interval)
with the claimed margin m:

- interval above m: **supported**; interval below m: **not supported at this scale**; else **inconclusive**.
- With fewer than 8 seeds the percentile interval is used (BCa needs more); with 2-4 seeds the
  percentile interval of a mean spans nearly [min, max], so "supported" then means every seed agrees.
- One seed has no interval: inconclusive, whatever it shows.
- Exact checks (arithmetic, no noise) need no interval: supported when every seed holds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from cnnlab.experiments.spec import Check

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported at this scale", "inconclusive"
CONFIDENCE = 0.95
TINY = 1e-300  # a log-scale figure of 0 (an underflow) counts as this


@dataclass
class Outcome:
    verdict: str
    effects: list[Optional[float]]  # per seed, in the claimed direction (log10 units on the log scale)
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    margin: float
    method: str  # how the interval was made
    a: list[Optional[float]]  # arm A's figure per seed
    b: list[Optional[float]]  # arm B's per seed (or the value)

    def to_dict(self) -> dict:
        return asdict(self)


def _log(x: float) -> float:
    return math.log10(max(x, TINY))


def effects(check: Check, a: list[float], b: list[float]) -> list[float]:
    sign = 1.0 if check.op == ">" else -1.0
    if check.scale == "log":
        return [sign * (_log(x) - _log(y)) for x, y in zip(a, b)]
    return [sign * (x - y) for x, y in zip(a, b)]


def margin(check: Check) -> float:
    if check.scale == "log":
        return math.log10(check.by) if check.by else 0.0
    return check.by


def interval(values: list[float]) -> tuple[float, float, str]:
    """The 95% bootstrap interval of the mean (percentile below 8 values, BCa from 8)."""
    from scipy.stats import bootstrap

    arr = np.asarray(values, dtype=float)
    if np.ptp(arr) == 0:  # every seed gave the same effect: the interval is that point
        return float(arr[0]), float(arr[0]), "all seeds equal"
    method = "percentile" if len(arr) < 8 else "BCa"
    res = bootstrap((arr,), np.mean, confidence_level=CONFIDENCE, n_resamples=4999, method=method,
                    random_state=np.random.default_rng(0))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa's degenerate cases: fall back
        res = bootstrap((arr,), np.mean, confidence_level=CONFIDENCE, n_resamples=4999, method="percentile",
                        random_state=np.random.default_rng(0))
        low, high, method = float(res.confidence_interval.low), float(res.confidence_interval.high), "percentile"
    return low, high, f"bootstrap {method}, {len(arr)} seeds"


def _finite_pairs(a: list[Optional[float]], b: list[Optional[float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in zip(a, b) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]


def decide(check: Check, a: list[Optional[float]], b: list[Optional[float]]) -> Outcome:
    """The verdict of one check from arm A's and arm B's figure per seed (None: the seed has no figure)."""
    pairs = _finite_pairs(a, b)
    m = margin(check)
    if not pairs:
        return Outcome(INCONCLUSIVE, [], None, None, None, m, "no figures", a, b)
    e = effects(check, [p[0] for p in pairs], [p[1] for p in pairs])
    mean = float(np.mean(e))
    if check.exact:
        held = [x > m for x in e]
        verdict = SUPPORTED if all(held) else NOT_SUPPORTED if not any(held) else INCONCLUSIVE
        return Outcome(verdict, e, mean, min(e), max(e), m, "exact: every seed", a, b)
    if len(e) < 2:
        return Outcome(INCONCLUSIVE, e, mean, None, None, m, "one seed: no interval", a, b)
    low, high, method = interval(e)
    return Outcome(_by_interval(low, high, m), e, mean, low, high, m, method, a, b)


def _by_interval(low: float, high: float, m: float) -> str:
    return SUPPORTED if low > m else NOT_SUPPORTED if high < m else INCONCLUSIVE


def spread(values: list[Optional[float]]) -> Optional[float]:
    """The seed-to-seed standard deviation (ddof 1), the yardstick of a margin."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.std(v, ddof=1)) if len(v) > 1 else None
