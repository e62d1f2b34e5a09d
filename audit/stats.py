"""The statistics of the audit: association tests and interval estimates.

- Association of a target label with an attribute: Pearson's chi-square test
  of independence on the label × value contingency table (without Yates'
  correction, so that Cramér's V, computed from the same statistic, is the
  textbook one), and Cramér's V = sqrt(chi² / (n · (min(rows, columns) − 1))),
  0 for independence, 1 for a value that determines the label. Rows and
  columns without any item are dropped first (a declared value nobody used
  says nothing about association); fewer than two of either leaves nothing
  to test, and the statistics are None (null in JSON).
- Error rates: the Wilson score interval at 95 %, which stays inside [0, 1]
  and behaves with small groups and rates near 0 or 1, unlike the normal
  approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2_contingency, norm

Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class Association:
    """Chi-square test and Cramér's V of one contingency table; None where not computable."""

    chi2: float | None
    p_value: float | None
    cramers_v: float | None
    dof: int | None
    # The smallest expected count: below 5 the chi-square p-value is only approximate.
    min_expected: float | None


NOT_COMPUTABLE = Association(None, None, None, None, None)


def association(table: list[list[int]]) -> Association:
    """Chi-square test of independence and Cramér's V of `table` (rows × columns of counts)."""
    observed = np.asarray(table, dtype=float)
    if observed.ndim != 2 or observed.size == 0:
        return NOT_COMPUTABLE
    observed = observed[observed.sum(axis=1) > 0]
    if observed.size == 0:
        return NOT_COMPUTABLE
    observed = observed[:, observed.sum(axis=0) > 0]
    rows, columns = observed.shape
    if rows < 2 or columns < 2:
        return NOT_COMPUTABLE
    result = chi2_contingency(observed, correction=False)
    n = observed.sum()
    chi2 = float(result.statistic)
    cramers_v = math.sqrt(chi2 / (n * (min(rows, columns) - 1)))
    return Association(chi2, float(result.pvalue), min(cramers_v, 1.0), int(result.dof), float(result.expected_freq.min()))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion `successes / n`; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
