"""Small-sample statistics for reported accuracies: intervals and tests of a difference.

Pure functions on counts (no numpy / scipy needed). Used by the probe reports (top-1 with its
95 % interval, pretrained vs random) and by ``vjepa surprise`` (pairwise accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054
"""Two-sided 95 % normal quantile."""


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion, as fractions in [0, 1].

    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage near 0 and
    1 and for small ``n``. ``successes`` may be fractional (ties counted as halves). ``n = 0``
    gives the uninformative (0, 1).
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, n={n}], got {successes}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_percent(successes: float, n: int) -> list[float]:
    """:func:`wilson_interval` in percent, rounded to 0.01, as a JSON-friendly list."""
    lo, hi = wilson_interval(successes, n)
    return [round(100 * lo, 2), round(100 * hi, 2)]


def bootstrap_interval(
    correct: Sequence[float], *, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item scores (fractions).

    ``correct``: one value per evaluated item (1 right, 0 wrong, 0.5 a tie). Seeded explicitly,
    so a report is reproducible.
    """
    x = np.asarray(correct, dtype=np.float64)
    if x.size == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)  # [R]
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for paired outcomes on the same items.

    ``b``: items only the first model gets right; ``c``: items only the second gets right.
    Under "no difference" each discordant item is a fair coin: p = P(min(b, c) or fewer
    heads of b + c, two-sided).
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def two_proportion_p(k1: float, n1: int, k2: float, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (independent samples)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if p1 == p2 else 0.0
    z = abs(p1 - p2) / se
    return math.erfc(z / math.sqrt(2))


def binomial_p(successes: int, n: int, p0: float = 0.5) -> float:
    """Two-sided exact binomial test p-value of ``successes`` in ``n`` against rate ``p0``.

    Sums the probabilities of all outcomes no more likely than the observed one.
    """
    if n <= 0:
        return 1.0
    probs = [math.comb(n, i) * p0**i * (1 - p0) ** (n - i) for i in range(n + 1)]
    observed = probs[successes]
    return min(1.0, sum(q for q in probs if q <= observed * (1 + 1e-9)))
