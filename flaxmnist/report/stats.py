"""The uncertainty of a comparison: a bootstrap interval over repeats, McNemar's paired test
of two models on one test set, and the compute a search needs to reach a target.

Repeats of a search (its sampler's and training's seeds) vary; ``bootstrap_interval`` says
how far their mean may be from the mean of many more. Two models tested on the same images
are compared image by image (``mcnemar``): only the images one gets right and the other
wrong count, which is far more sensitive than comparing two accuracies. And a difference
smaller than one standard error of an accuracy (``accuracy_standard_error``: 0.08 points at
99.3 % on 10,000 images) is no difference, whatever a test says.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (repeats); the value
    itself, twice, for one.

    Example::

        >>> low, high = bootstrap_interval([0.980, 0.982, 0.981, 0.979, 0.983])
        >>> 0.979 < low < 0.981 < high < 0.983
        True
    """
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def mcnemar(errors_a: Sequence[int], errors_b: Sequence[int]) -> tuple[int, int, float]:
    """McNemar's exact test of two models on one test set, from the images each gets wrong:
    ``(a_only, b_only, p)``, the images only A gets right, only B gets right, and the
    two-sided p-value that the two are equally likely (the binomial test of the discordant
    images).

    Example::

        >>> a_only, b_only, p = mcnemar([1, 2, 3], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        >>> a_only, b_only, round(p, 4)
        (9, 2, 0.0654)
    """
    wrong_a, wrong_b = set(errors_a), set(errors_b)
    a_only, b_only = len(wrong_b - wrong_a), len(wrong_a - wrong_b)
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else binomtest(a_only, discordant, 0.5).pvalue
    return a_only, b_only, float(p)


def accuracy_standard_error(accuracy: float, images: int) -> float:
    """One standard error of an accuracy measured on ``images`` images (binomial).

    Example::

        >>> round(100 * accuracy_standard_error(0.993, 10_000), 3)
        0.083
    """
    return float(np.sqrt(accuracy * (1 - accuracy) / images))


def compute_to_reach(spent: np.ndarray, best: np.ndarray, target: float) -> float:
    """The compute at which a search's best holdout accuracy so far (``search_trace``) first
    reaches ``target``; ``inf`` if it never does."""
    reached = np.flatnonzero(np.nan_to_num(best, nan=-np.inf) >= target)
    return float(spent[reached[0]]) if reached.size else float("inf")
