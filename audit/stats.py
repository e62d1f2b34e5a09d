"""The statistics of the audit: association tests, effect sizes, multiple testing and power.

The unit of analysis. Items are the units when they are independent (images,
tracks). When they are not (objects of one image, frames of one video, tags of
one image), they carry a `cluster`, and p-values come from a permutation test
that moves whole clusters (`association_test`), never from a test that
counts the clustered items as independent.

- **Test of independence** of the rows (target labels, or groups) and columns
  (values, or error/correct) of a contingency table (`table_test`), on the
  table with its empty rows and columns dropped:
  - Pearson's chi-square (no Yates correction) when every expected count is
    at least 5;
  - otherwise exact: Fisher's exact test for a 2×2 table (two-sided, scipy),
    and a Monte-Carlo permutation test of the chi-square statistic for larger
    tables (the columns shuffled over the items: the Fisher–Freeman–Halton
    reference distribution, conditional on both margins), p = (1 + hits) /
    (B + 1), which is a valid p-value for any B.
- **Clustered items** (`association_test` with clusters): the chi-square
  statistic of the item table, referred to its permutation distribution
  under the null hypothesis that a cluster's labels are independent of its
  values. When every cluster has one value (lighting of an image: the usual
  case), the values of whole clusters are shuffled among all clusters. When
  values vary inside clusters, the value lists are shuffled among clusters of
  the same size and inside each cluster (a cluster of unique size then only
  contributes its inner shuffle: conservative, never anti-conservative).
- **Effect size**: Cramér's V, and Bergsma's (2013) bias-corrected V, which
  is near 0 for independent data whatever n (plain V is biased upward in
  small samples: at n = 20 many null tables reach 0.3). Its 95 % interval
  inverts the noncentral chi-square: the noncentrality λ with the observed
  chi-square at its 97.5th and 2.5th percentiles, V = sqrt(λ / (n (k − 1))),
  k the smaller table dimension. The interval is on the population V.
- **Many tests**: Benjamini–Hochberg q-values over the tests of one report.
- **Power**: the items needed to detect a given V at a given α with 80 %
  power, from the noncentral chi-square with λ = n · V² · (k − 1).
- **Cell diagnostics**: observed ÷ expected with an exact Poisson 95 %
  interval on the observed count, and the adjusted standardized residual
  (Haberman), about N(0, 1) under independence.
- **Error rates**: the Wilson score interval at 95 %.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.special import chdtr, chdtrc, chndtrinc
from scipy.stats import chi2 as chi2_distribution
from scipy.stats import fisher_exact, ncx2, norm

Z95 = float(norm.ppf(0.975))
# Expected counts below this make the chi-square approximation anti-conservative.
MIN_EXPECTED = 5.0
# The smallest number of permutations of any permutation test.
MIN_PERMUTATIONS = 1999
# Permutations are drawn in blocks of up to this many, each block holding at
# most BLOCK_CELLS permuted codes (a few arrays of that many integers at once:
# tens of MiB), so that a million clustered objects do not need gigabytes.
BLOCK = 256
BLOCK_CELLS = 1 << 21

CHI_SQUARE = "chi-square"
FISHER = "fisher"
PERMUTATION = "permutation"
CLUSTER_PERMUTATION = "cluster permutation"


def block_size(observations: int) -> int:
    """How many permutations of `observations` codes to draw at once."""
    return max(1, min(BLOCK, BLOCK_CELLS // max(1, observations)))


@dataclass(frozen=True)
class TableTest:
    """The test of independence of one contingency table, and its effect size; None where not computable."""

    n: int
    # The table tested: rows and columns without any item dropped.
    rows: int
    columns: int
    chi2: float | None
    dof: int | None
    min_expected: float | None
    p_value: float | None
    method: str | None
    permutations: int | None
    cramers_v: float | None
    v_corrected: float | None
    v_low: float | None
    v_high: float | None
    clusters: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def computable(self) -> bool:
        """True when the table had at least two non-empty rows and columns."""
        return self.p_value is not None


def permutations_needed(alpha: float, tests: int) -> int:
    """B permutations such that the smallest p-value 1/(B+1) is well below alpha/tests (a quarter of it).

    With B just at 1/(B+1) < α/m the test could only just reject; four times
    that keeps the Monte-Carlo error of a p-value near the threshold small.
    """
    tests = max(1, tests)
    return max(MIN_PERMUTATIONS, 4 * math.ceil(tests / alpha) - 1)


def _nonempty(observed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table without empty rows and columns, and the kept row and column indices."""
    keep_rows = np.flatnonzero(observed.sum(axis=1) > 0)
    observed = observed[keep_rows]
    keep_columns = np.flatnonzero(observed.sum(axis=0) > 0) if observed.size else np.array([], dtype=int)
    return observed[:, keep_columns], keep_rows, keep_columns


def expected_counts(observed: np.ndarray) -> np.ndarray:
    """The expected counts under independence: row total × column total / n."""
    n = observed.sum()
    return np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n


def chi_square_statistic(observed: np.ndarray) -> float:
    """Pearson's chi-square statistic of a table without empty rows or columns."""
    expected = expected_counts(observed)
    return float(((observed - expected) ** 2 / expected).sum())


def cramers_v(chi2: float, n: int, rows: int, columns: int) -> float:
    """Cramér's V = sqrt(chi² / (n (min(rows, columns) − 1))), at most 1."""
    return min(1.0, math.sqrt(chi2 / (n * (min(rows, columns) - 1))))


def bias_corrected_v(chi2: float, n: int, rows: int, columns: int) -> float | None:
    """Bergsma's (2013) bias-corrected Cramér's V; None when n < 2.

    φ̃² = max(0, χ²/n − (r−1)(c−1)/(n−1)), r̃ = r − (r−1)²/(n−1),
    c̃ = c − (c−1)²/(n−1), Ṽ = sqrt(φ̃² / min(r̃ − 1, c̃ − 1)).
    """
    if n < 2:
        return None
    phi2 = max(0.0, chi2 / n - (rows - 1) * (columns - 1) / (n - 1))
    rows_corrected = rows - (rows - 1) ** 2 / (n - 1)
    columns_corrected = columns - (columns - 1) ** 2 / (n - 1)
    denominator = min(rows_corrected - 1, columns_corrected - 1)
    if denominator <= 0:
        return None
    return min(1.0, math.sqrt(phi2 / denominator))


def noncentrality_interval(chi2: float, dof: int, level: float = 0.95) -> tuple[float, float]:
    """The confidence interval of the noncentrality λ of a chi-square with `dof` degrees, given `chi2`.

    λ_low solves P(X ≤ chi2 | λ) = 1 − (1 − level)/2 (0 when even λ = 0 gives
    less), λ_high solves P(X ≤ chi2 | λ) = (1 − level)/2 (0 likewise: a chi2
    below the central distribution's (1 − level)/2 quantile gives [0, 0]).
    The cdf falls as λ grows, so each has one root; cdflib's inverse in λ
    (`chndtrinc`) finds it, a few hundred times faster than a root finder
    over `ncx2.cdf`, which matters in reports with many attributes.
    """
    upper_tail = (1 - level) / 2

    def solve(target: float) -> float:
        if chdtr(dof, chi2) <= target:
            return 0.0
        return float(chndtrinc(chi2, dof, target))

    return solve(1 - upper_tail), solve(upper_tail)


def v_interval(chi2: float, n: int, rows: int, columns: int, level: float = 0.95) -> tuple[float, float]:
    """The interval of the population Cramér's V from the noncentral chi-square: V = sqrt(λ / (n (k − 1)))."""
    dof = (rows - 1) * (columns - 1)
    low, high = noncentrality_interval(chi2, dof, level)
    scale = n * (min(rows, columns) - 1)
    return min(1.0, math.sqrt(low / scale)), min(1.0, math.sqrt(high / scale))


def _not_computable(n: int, rows: int, columns: int, clusters: int | None = None) -> TableTest:
    return TableTest(n, rows, columns, None, None, None, None, None, None, None, None, None, None, clusters)


def _finish(
    observed: np.ndarray,
    chi2: float,
    p_value: float,
    method: str,
    permutations: int | None,
    clusters: int | None = None,
    notes: tuple[str, ...] = (),
) -> TableTest:
    rows, columns = observed.shape
    n = int(observed.sum())
    low, high = v_interval(chi2, n, rows, columns)
    return TableTest(
        n=n,
        rows=rows,
        columns=columns,
        chi2=chi2,
        dof=(rows - 1) * (columns - 1),
        min_expected=float(expected_counts(observed).min()),
        p_value=min(1.0, float(p_value)),
        method=method,
        permutations=permutations,
        cramers_v=cramers_v(chi2, n, rows, columns),
        v_corrected=bias_corrected_v(chi2, n, rows, columns),
        v_low=low,
        v_high=high,
        clusters=clusters,
        notes=notes,
    )


def _permutation_p(statistic: float, draws) -> tuple[float, int]:
    """p = (1 + draws at least as large) / (B + 1), with a tolerance for floating-point ties."""
    hits = 0
    total = 0
    tolerance = 1e-9 * max(1.0, abs(statistic))
    for block in draws:
        hits += int(np.count_nonzero(block >= statistic - tolerance))
        total += len(block)
    return (1 + hits) / (total + 1), total


def _chi2_of_codes(row_codes: np.ndarray, column_blocks: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The chi-square statistic of every row of `column_blocks` (each a permuted column code per item) against `row_codes`.

    The row margin is fixed; the column margin is each permutation's own (a
    shuffle of whole clusters of different sizes changes it). A column empty
    in a permutation contributes nothing.
    """
    count = column_blocks.shape[0]
    cells = row_codes[np.newaxis, :] * columns + column_blocks
    offsets = (np.arange(count) * rows * columns)[:, np.newaxis]
    tables = np.bincount((cells + offsets).ravel(), minlength=count * rows * columns).reshape(count, rows, columns)
    row_totals = np.bincount(row_codes, minlength=rows).astype(float)
    column_totals = tables.sum(axis=1).astype(float)
    expected = row_totals[np.newaxis, :, np.newaxis] * column_totals[:, np.newaxis, :] / len(row_codes)
    squared = (tables - expected) ** 2
    return np.divide(squared, expected, out=np.zeros_like(expected), where=expected > 0).sum(axis=(1, 2))


def table_test(table, *, permutations: int = MIN_PERMUTATIONS, seed: int = 0) -> TableTest:
    """The test of independence of `table` (rows × columns of counts of independent items) and its effect size.

    Chi-square when every expected count is at least 5; otherwise Fisher's
    exact test (2×2) or a permutation test with `permutations` draws.
    """
    observed = np.asarray(table, dtype=np.int64)
    if observed.ndim != 2 or observed.size == 0:
        return _not_computable(0, 0, 0)
    observed, _, _ = _nonempty(observed)
    n = int(observed.sum())
    rows, columns = observed.shape if observed.size else (0, 0)
    if rows < 2 or columns < 2:
        return _not_computable(n, rows, columns)
    chi2 = chi_square_statistic(observed.astype(float))
    if expected_counts(observed.astype(float)).min() >= MIN_EXPECTED:
        # Pearson's chi-square without Yates' correction: its upper tail at (rows − 1)(columns − 1) degrees.
        p_value = float(chdtrc((rows - 1) * (columns - 1), chi2))
        return _finish(observed, chi2, p_value, CHI_SQUARE, None)
    if rows == 2 and columns == 2:
        return _finish(observed, chi2, float(fisher_exact(observed).pvalue), FISHER, None)
    # Expand the table into one (row, column) pair per item, then shuffle the columns.
    row_codes = np.repeat(np.arange(rows), observed.sum(axis=1))
    column_codes = np.concatenate([np.repeat(np.arange(columns), observed[row]) for row in range(rows)])
    generator = np.random.default_rng(seed)

    def draws():
        left = permutations
        while left > 0:
            count = min(block_size(n), left)
            left -= count
            shuffled = generator.permuted(np.broadcast_to(column_codes, (count, n)), axis=1)
            yield _chi2_of_codes(row_codes, shuffled, rows, columns)

    p_value, drawn = _permutation_p(chi2, draws())
    return _finish(observed, chi2, p_value, PERMUTATION, drawn)


def association_test(
    rows: Sequence[str],
    columns: Sequence[str],
    clusters: Sequence[str] | None = None,
    *,
    row_order: Sequence[str] | None = None,
    column_order: Sequence[str] | None = None,
    permutations: int = MIN_PERMUTATIONS,
    seed: int = 0,
) -> TableTest:
    """The test of independence of paired observations (row value, column value), each belonging to a cluster.

    Without clusters, or when every cluster holds one observation, this is
    `table_test` of their table. Otherwise the p-value comes from the cluster
    permutation test described in the module's docstring.
    """
    if len(rows) != len(columns) or (clusters is not None and len(clusters) != len(rows)):
        raise ValueError("rows, columns and clusters must have one entry per observation")
    row_names = list(row_order) if row_order is not None else sorted(set(rows))
    column_names = list(column_order) if column_order is not None else sorted(set(columns))
    row_index = {name: position for position, name in enumerate(row_names)}
    column_index = {name: position for position, name in enumerate(column_names)}
    row_codes = np.fromiter((row_index[value] for value in rows), dtype=np.int64, count=len(rows))
    column_codes = np.fromiter((column_index[value] for value in columns), dtype=np.int64, count=len(columns))
    table = np.zeros((len(row_names), len(column_names)), dtype=np.int64)
    np.add.at(table, (row_codes, column_codes), 1)
    if clusters is None:
        return table_test(table, permutations=permutations, seed=seed)
    cluster_names, cluster_codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    if len(cluster_names) == len(rows):
        result = table_test(table, permutations=permutations, seed=seed)
        return _with_clusters(result, len(cluster_names))
    return _cluster_test(table, row_codes, column_codes, cluster_codes, len(cluster_names), permutations, seed)


def _with_clusters(result: TableTest, clusters: int) -> TableTest:
    return TableTest(**{**result.__dict__, "clusters": clusters})


def _cluster_test(table, row_codes, column_codes, cluster_codes, cluster_count, permutations, seed) -> TableTest:
    """The cluster permutation test: whole clusters' values shuffled (see the module's docstring)."""
    observed, keep_rows, keep_columns = _nonempty(table)
    n = int(observed.sum())
    rows, columns = observed.shape if observed.size else (0, 0)
    if rows < 2 or columns < 2:
        return _not_computable(n, rows, columns, cluster_count)
    # Re-code to the non-empty table.
    row_map = np.full(table.shape[0], -1)
    row_map[keep_rows] = np.arange(rows)
    column_map = np.full(table.shape[1], -1)
    column_map[keep_columns] = np.arange(columns)
    row_codes, column_codes = row_map[row_codes], column_map[column_codes]
    chi2 = chi_square_statistic(observed.astype(float))
    generator = np.random.default_rng(seed)
    # Observations sorted by cluster, so a cluster is a contiguous run.
    order = np.argsort(cluster_codes, kind="stable")
    row_codes, column_codes, cluster_codes = row_codes[order], column_codes[order], cluster_codes[order]
    starts = np.flatnonzero(np.r_[True, cluster_codes[1:] != cluster_codes[:-1]])
    sizes = np.diff(np.r_[starts, len(cluster_codes)])
    first_values = column_codes[starts]
    constant = bool(np.all(column_codes == np.repeat(first_values, sizes)))
    notes: list[str] = []
    if constant:

        def draws():
            left = permutations
            while left > 0:
                count = min(block_size(n), left)
                left -= count
                shuffled = generator.permuted(np.broadcast_to(first_values, (count, len(first_values))), axis=1)
                yield _chi2_of_codes(row_codes, np.repeat(shuffled, sizes, axis=1), rows, columns)

    else:
        # Clusters grouped by size: each size's value lists are exchanged among its clusters, and shuffled inside.
        strata = []
        for size in np.unique(sizes):
            members = np.flatnonzero(sizes == size)
            positions = starts[members][:, np.newaxis] + np.arange(size)[np.newaxis, :]
            strata.append((positions, column_codes[positions]))
        if all(len(positions) == 1 for positions, _ in strata):
            notes.append("every cluster has a different size and values vary inside clusters: only shuffles inside clusters")

        def draws():
            left = permutations
            while left > 0:
                count = min(block_size(n), left)
                left -= count
                block = np.empty((count, len(column_codes)), dtype=np.int64)
                for positions, values in strata:
                    swapped = values[generator.permuted(np.broadcast_to(np.arange(len(values)), (count, len(values))), axis=1)]
                    inner = generator.permuted(swapped, axis=2)
                    block[:, positions.ravel()] = inner.reshape(count, -1)
                yield _chi2_of_codes(row_codes, block, rows, columns)

    p_value, drawn = _permutation_p(chi2, draws())
    return _finish(observed, chi2, p_value, CLUSTER_PERMUTATION, drawn, cluster_count, tuple(notes))


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg q-values (adjusted p-values) of `p_values`; None stays None and is not counted as a test.

    q_(i) = min over j ≥ i of (m / j) · p_(j), capped at 1, with p sorted
    ascending and m the number of p-values that are not None.
    """
    present = [(value, position) for position, value in enumerate(p_values) if value is not None]
    q_values: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 1.0
    for rank, (value, position) in reversed(list(enumerate(sorted(present), start=1))):
        running = min(running, value * m / rank)
        q_values[position] = min(1.0, running)
    return q_values


def power(n: int, v: float, rows: int, columns: int, alpha: float) -> float:
    """The power of the chi-square test at level `alpha` to detect Cramér's V = `v` with `n` items."""
    dof = (rows - 1) * (columns - 1)
    critical = float(chi2_distribution.isf(alpha, dof))
    return float(ncx2.sf(critical, dof, n * v * v * (min(rows, columns) - 1)))


@functools.lru_cache(maxsize=256)
def items_needed(v: float, rows: int, columns: int, alpha: float, target_power: float = 0.8) -> int:
    """The fewest items for which the chi-square test at level `alpha` detects V = `v` with `target_power`.

    Remembered: a report asks it once per attribute, mostly for the same shapes.
    """
    if power(2, v, rows, columns, alpha) >= target_power:
        return 2
    high = 4
    while power(high, v, rows, columns, alpha) < target_power:
        high *= 2
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        if power(middle, v, rows, columns, alpha) >= target_power:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class Cell:
    """One cell of a table: observed, expected, their ratio with a 95 % interval, and the adjusted residual."""

    observed: int
    expected: float
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    residual: float | None


def poisson_interval(count: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Garwood) interval of a Poisson mean, given one observed `count`."""
    tail = (1 - level) / 2
    low = 0.0 if count == 0 else float(chi2_distribution.ppf(tail, 2 * count) / 2)
    high = float(chi2_distribution.ppf(1 - tail, 2 * count + 2) / 2)
    return low, high


def cell_diagnostics(table) -> list[list[Cell]]:
    """Every cell's observed ÷ expected (with the exact Poisson interval of the observed count) and adjusted residual.

    Cells of an empty row or column have nothing expected: ratio and residual None.
    """
    observed = np.asarray(table, dtype=float)
    if observed.ndim != 2 or observed.size == 0:
        # No label, or no value: no cell to describe.
        return [[] for _ in range(len(observed))]
    n = observed.sum()
    row_totals, column_totals = observed.sum(axis=1), observed.sum(axis=0)
    result = []
    for i in range(observed.shape[0]):
        line = []
        for j in range(observed.shape[1]):
            count = int(observed[i, j])
            expected = row_totals[i] * column_totals[j] / n if n else 0.0
            if expected <= 0:
                line.append(Cell(count, 0.0, None, None, None, None))
                continue
            low, high = poisson_interval(count)
            variance = expected * (1 - row_totals[i] / n) * (1 - column_totals[j] / n)
            residual = float((count - expected) / math.sqrt(variance)) if variance > 0 else None
            line.append(
                Cell(count, float(expected), float(count / expected), float(low / expected), float(high / expected), residual)
            )
        result.append(line)
    return result


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of a proportion `successes / n`; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
