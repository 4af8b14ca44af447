"""Learning decode speed without poisoning it: a per-token fixed cost next to the bandwidth term.

The time of one decoded token is modelled as ``t = fixed + scale * x``, where ``x`` is what the
unlearned speed model predicts from bytes over bandwidth (plus its per-layer costs) and ``fixed`` is a
per-token cost that doesn't shrink with the model: sampling over the vocabulary, Python and thread
wake-ups. A tiny model is dominated by ``fixed``, a big one by ``scale * x``; one multiplicative ratio
learned on a tiny model would wrongly slow every big one down (issue #12: the demo at 49 tok/s made
the 1B prediction 23x too pessimistic).

* Samples from models of different sizes (``x`` spread at least 2x) fit both parameters robustly:
  Theil-Sen slope (the median of pairwise slopes) and the median intercept.
* Samples from one size only can't separate the two; slower-than-predicted goes to ``fixed``
  (``scale`` stays 1), faster-than-predicted to ``scale`` (``fixed`` stays 0).
* A sample more than ``OUTLIER_FACTOR`` away from what the current fit predicts (a paused process, a
  machine under other load) is kept apart and never learned from.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

OUTLIER_FACTOR = 20.0  # y / predicted outside [1/20, 20]: not explainable by the model
MIN_SPREAD = 2.0  # x_max / x_min needed to fit the slope
SCALE_RANGE = (0.25, 4.0)  # a bandwidth off by more than 4x is a broken measurement, not this CPU
MAX_FIXED = 0.5  # s per token


def fit(samples: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(fixed seconds per token, scale of the bandwidth term) from (x, y) samples in seconds."""
    pts = [(x, y) for x, y in samples if x > 0 and y > 0]
    if not pts:
        return 0.0, 1.0
    xs = [x for x, _ in pts]
    lo, hi = SCALE_RANGE
    if max(xs) / min(xs) >= MIN_SPREAD:
        slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(pts) for x2, y2 in pts[i + 1:]
                  if abs(x2 - x1) >= 0.5 * min(x1, x2)]
        scale = min(max(statistics.median(slopes), lo), hi) if slopes else 1.0
        fixed = statistics.median(y - scale * x for x, y in pts)
        if fixed < 0:  # faster than the bandwidth term alone: no fixed cost, a faster memory system
            fixed = 0.0
            scale = min(max(statistics.median(y / x for x, y in pts), lo), hi)
        return min(fixed, MAX_FIXED), scale
    excess = statistics.median(y - x for x, y in pts)
    if excess >= 0:
        return min(excess, MAX_FIXED), 1.0
    return 0.0, min(max(statistics.median(y / x for x, y in pts), lo), hi)


def predict_seconds(x: float, fixed: float, scale: float) -> float:
    return fixed + scale * x


def is_outlier(x: float, y: float, samples: Sequence[tuple[float, float]]) -> bool:
    """Whether (x, y) is too far from what the current fit (or the plain model) explains."""
    if x <= 0 or y <= 0:
        return True
    fixed, scale = fit(samples)
    ratio = y / predict_seconds(x, fixed, scale)
    return not 1 / OUTLIER_FACTOR <= ratio <= OUTLIER_FACTOR
