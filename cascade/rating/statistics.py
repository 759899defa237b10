"""The statistics of a preference study: shares with bootstrap intervals over prompts, and agreement between
raters.

**Intervals: percentile bootstrap over prompts** (Efron and Tibshirani 1993, "An Introduction to the
Bootstrap", ch. 13; resampling the clusters, Davison and Hinkley 1997, "Bootstrap Methods and their
Application", sec. 3.8). Votes on one prompt judge the same two videos, so they are not independent trials:
ten raters agreeing on one pair say less than ten pairs each judged once. Resampling whole prompts keeps that
dependence in the interval; a Wilson interval on the votes would count every vote as an independent trial and
come out too narrow whenever raters agree within a prompt. The price: with few prompts the interval is coarse
(its ends fall on the values a resample of that many prompts can take).

**Agreement: Krippendorff's alpha for nominal data** (Krippendorff 2011, "Computing Krippendorff's
Alpha-Reliability"), over the prompts rated by at least two raters: 1 when raters always agree, 0 when they
agree as often as chance (the answers' overall frequencies) predicts; it takes any number of raters per prompt.
Beside it the plain share of agreeing pairs of votes on a prompt.
"""

from collections import Counter
from itertools import combinations

import numpy as np

from cascade.utils.checks import check_int, check_number


def bootstrap_shares(
    groups: list[list[str]],
    categories: tuple[str, ...],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """For each category, its share of all outcomes in ``groups`` (one list of outcomes per prompt) and the
    ``level`` percentile interval of that share over ``resamples`` resamples of the prompts with replacement
    (drawn with ``seed``): ``{category: {"count", "share", "low", "high"}}``."""
    if not isinstance(groups, list) or not groups or not all(isinstance(g, list) and g for g in groups):
        raise ValueError(f"`groups` must be a non-empty list of non-empty lists of outcomes, got {groups!r}.")
    unknown = {outcome for group in groups for outcome in group} - set(categories)
    if unknown:
        raise ValueError(f"`groups` has outcomes {sorted(unknown)} outside `categories` {list(categories)}.")
    check_int("resamples", resamples, minimum=1)
    check_int("seed", seed, minimum=0)
    check_number("level", level, greater_than=0.0, less_than=1.0)
    counts = np.array([[group.count(c) for c in categories] for group in groups], dtype=np.int64)  # (G, K)
    draws = np.random.default_rng(seed).integers(0, len(groups), (resamples, len(groups)))  # (R, G)
    totals = counts[draws].sum(axis=1)  # (R, K)
    shares = totals / totals.sum(axis=1, keepdims=True)  # (R, K)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(shares, [tail, 100 - tail], axis=0)  # (K,), (K,)
    overall = counts.sum(axis=0)  # (K,)
    return {
        category: {
            "count": int(overall[k]),
            "share": float(overall[k] / overall.sum()),
            "low": float(low[k]),
            "high": float(high[k]),
        }
        for k, category in enumerate(categories)
    }


def _pairable(units: list[list[str]]) -> list[list[str]]:
    if not isinstance(units, list) or not all(isinstance(unit, list) for unit in units):
        raise ValueError(f"`units` must be a list of lists of answers, got {units!r}.")
    return [unit for unit in units if len(unit) >= 2]


def krippendorff_alpha(units: list[list[str]]) -> float | None:
    """Krippendorff's alpha (nominal) of ``units``, each the answers of the raters of one prompt; units with
    fewer than two answers are left out. ``None`` when no unit has two answers or every answer is the same
    (no disagreement is possible, so agreement is undefined)."""
    units = _pairable(units)
    coincidences = (
        Counter()
    )  # (c, k) -> o_ck: pairs of answers within units, each unit weighted 1 / (m_u - 1)
    for unit in units:
        for first, second in combinations(unit, 2):
            coincidences[first, second] += 1 / (len(unit) - 1)
            coincidences[second, first] += 1 / (len(unit) - 1)
    totals = Counter()  # c -> n_c
    for (first, _), weight in coincidences.items():
        totals[first] += weight
    n = sum(totals.values())
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)  # sum_{c != k} n_c n_k
    if not units or expected == 0:
        return None
    observed = sum(weight for (c, k), weight in coincidences.items() if c != k)  # sum_{c != k} o_ck
    return 1 - (n - 1) * observed / expected


def pairwise_agreement(units: list[list[str]]) -> float | None:
    """The share of pairs of answers within a unit that are equal (``None`` without any such pair)."""
    pairs = [first == second for unit in _pairable(units) for first, second in combinations(unit, 2)]
    return sum(pairs) / len(pairs) if pairs else None
