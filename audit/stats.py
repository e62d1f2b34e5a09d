"""The statistics of the audit: association tests, effect sizes, multiple testing and power.

The unit of analysis. Items are the units when they are independent (images,
tracks). When they are not (objects of one image, frames of one video, tags of
one image), they carry a `cluster`, and p-values come from a permutation test
that exchanges whole clusters of similar size (`association_test`), never
from a test that counts the clustered items as independent.

- **Test of independence** of the rows (target labels, or groups) and columns
  (values, or error/correct) of a contingency table (`table_test`), on the
  table with its empty rows and columns dropped:
  - Pearson's chi-square (no Yates correction) when every expected count is
    at least 5;
  - otherwise exact: Fisher's exact test for a 2×2 table (two-sided, scipy),
    and a Monte-Carlo exact test of the chi-square statistic for larger
    tables: B tables drawn at random with both margins fixed (the
    Fisher–Freeman–Halton reference distribution; scipy's `random_table`,
    whose cost does not grow with n), p = (1 + hits) / (B + 1), which is a
    valid p-value for any B.
- **Clustered items** (`association_test` with clusters): the chi-square
  statistic of the item table, referred to its permutation distribution
  under the null hypothesis that a cluster's labels are independent of its
  values. Clusters are exchanged only with clusters of similar size: sorted
  by size, they are grouped into bins of at least MIN_BIN clusters (the
  clusters of one size are never split between bins; the largest clusters
  may be left with fewer), and each permutation deals the value profiles of
  a bin's clusters out among them at random. A recipient of another size
  than its donor gets the donor's values repeated cyclically to its own
  length (a cluster of one value stays of one value), then shuffled among
  its items; so does a recipient of the same size (which makes values that
  vary inside clusters exchangeable too). Exchanging clusters of one size is
  exact under that null; exchanging clusters of similar sizes is an
  approximation. Clusters of very different sizes are never exchanged: when
  cluster size goes with the value (night images hold 4 boxes, day images
  60), a shuffle of whole clusters of all sizes refers the statistic to a
  distribution it does not have (a null test then rejected 10 % of the
  time at α = 0.01, 19 % at 0.05). When the value is confounded with size
  (each bin holds one value), there is nothing to exchange: every
  permutation gives the observed table, p = 1, no evidence either way
  (conservative), and a note says so.
- **Design effect** of clustered items: under the null, the permuted
  statistics average about δ · dof, δ the design effect (how much the
  clustering inflates the chi-square); δ = max(1, mean permuted χ² / dof).
  The effect sizes and their interval treat the table as χ²/δ from n/δ
  independent items (plain V is the same either way). Items that are
  independent have δ = 1.
- **Many tests**: Benjamini–Hochberg q-values over the tests of one report.
- **Power** of the flag, not of the test alone: a table is flagged when
  its p-value is below α and the lower end of the 95 % interval of V is at
  least `min_v`. The second holds when the chi-square reaches the gate
  G = the 97.5th percentile of the noncentral chi-square with
  λ₀ = n (k − 1) min_v² (where the lower end equals min_v), so the flag's
  power to see a population V is P(χ² ≥ max(critical value at α, G)) under
  λ = n (k − 1) V²; `items_needed` gives the fewest items for a target power.
- **Cell diagnostics**: observed ÷ expected with an exact Poisson 95 %
  interval on the observed count, and the adjusted standardized residual
  (Haberman), about N(0, 1) under independence.
- **Error rates**: the Wilson score interval at 95 %, exactly 0 at its low
  end when nothing failed and exactly 1 at its high end when everything did.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from scipy.special import chdtr, chdtrc, chndtrinc
from scipy.stats import chi2 as chi2_distribution
from scipy.stats import fisher_exact, ncx2, norm, random_table

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
# Clusters are exchanged within bins of at least this many clusters of similar size.
MIN_BIN = 10
# What the console and the pages say of a V interval whose upper end is None.
NOT_INFORMATIVE = "interval not informative (χ² below chance)"
# The most items the power planner considers: beyond it, a target power is out of reach.
MAX_PLANNED_ITEMS = 1 << 40

CHI_SQUARE = "chi-square"
FISHER = "fisher"
PERMUTATION = "permutation"
CLUSTER_PERMUTATION = "cluster permutation"


def block_size(observations: int) -> int:
    """How many permutations of `observations` codes to draw at once."""
    return max(1, min(BLOCK, BLOCK_CELLS // max(1, observations)))


@dataclass(frozen=True)
class TableTest:
    """The test of independence of one contingency table, and its effect size; None where not computable.

    `design_effect` is δ (1 for independent items; see the module's
    docstring): `v_corrected`, `v_low` and `v_high` are computed from χ²/δ
    and n/δ. `v_high` is None when the interval is not informative.
    """

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
    design_effect: float | None = None

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


def cramers_v(chi2: float, n: float, rows: int, columns: int) -> float:
    """Cramér's V = sqrt(chi² / (n (min(rows, columns) − 1))), at most 1."""
    return min(1.0, math.sqrt(chi2 / (n * (min(rows, columns) - 1))))


def bias_corrected_v(chi2: float, n: float, rows: int, columns: int) -> float | None:
    """Bergsma's (2013) bias-corrected Cramér's V; None when n < 2.

    φ̃² = max(0, χ²/n − (r−1)(c−1)/(n−1)), r̃ = r − (r−1)²/(n−1),
    c̃ = c − (c−1)²/(n−1), Ṽ = sqrt(φ̃² / min(r̃ − 1, c̃ − 1)). `n` may be
    an effective number of items (n/δ), not a whole number.
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
    below the central distribution's (1 − level)/2 quantile gives [0, 0],
    which `v_interval` reports as not informative).
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


def interval_informative(chi2: float, dof: int, level: float = 0.95) -> bool:
    """False when `chi2` is at or below the (1 − level)/2 quantile of the central chi-square: no λ fits it."""
    return bool(chdtr(dof, chi2) > (1 - level) / 2)


def v_interval(chi2: float, n: float, rows: int, columns: int, level: float = 0.95) -> tuple[float, float | None]:
    """The interval of the population Cramér's V from the noncentral chi-square: V = sqrt(λ / (n (k − 1))).

    The upper end is None when the interval is not informative (`chi2` below
    the lower quantile of its null distribution: every V, 0 included, is
    rejected at this level; the lower end is then 0).
    """
    dof = (rows - 1) * (columns - 1)
    low, high = noncentrality_interval(chi2, dof, level)
    scale = n * (min(rows, columns) - 1)
    upper = min(1.0, math.sqrt(high / scale)) if interval_informative(chi2, dof, level) else None
    return min(1.0, math.sqrt(low / scale)), upper


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
    design_effect: float = 1.0,
) -> TableTest:
    rows, columns = observed.shape
    n = int(observed.sum())
    # The effect sizes of clustered items: as if χ²/δ came from n/δ independent items.
    effective_chi2, effective_n = chi2 / design_effect, n / design_effect
    low, high = v_interval(effective_chi2, effective_n, rows, columns)
    if high is None:
        notes = notes + (
            "the 95% interval of V is not informative: χ²"
            + (" ÷ the design effect" if design_effect > 1 else "")
            + " is below the 2.5% point of its distribution under independence (the table is more even than chance "
            "usually makes it), so every V is rejected at that level; V is near 0",
        )
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
        v_corrected=bias_corrected_v(effective_chi2, effective_n, rows, columns),
        v_low=low,
        v_high=high,
        clusters=clusters,
        notes=notes,
        design_effect=design_effect,
    )


@dataclass
class Draws:
    """What the permutation draws gave: the p-value, how many were drawn, and their mean statistic."""

    p_value: float
    count: int
    mean: float


def _permutation_p(statistic: float, draws: Iterator[np.ndarray]) -> Draws:
    """p = (1 + draws at least as large) / (B + 1), with a tolerance for floating-point ties; and the draws' mean."""
    hits = 0
    total = 0
    running = 0.0
    tolerance = 1e-9 * max(1.0, abs(statistic))
    for block in draws:
        hits += int(np.count_nonzero(block >= statistic - tolerance))
        total += len(block)
        running += float(block.sum())
    return Draws((1 + hits) / (total + 1), total, running / total if total else statistic)


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


def _chi2_of_tables(tables: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """The chi-square statistic of each of `tables` (B × rows × columns), all with the margins that give `expected`."""
    return (((tables - expected[np.newaxis]) ** 2) / expected[np.newaxis]).sum(axis=(1, 2))


def table_test(table, *, permutations: int = MIN_PERMUTATIONS, seed: int = 0) -> TableTest:
    """The test of independence of `table` (rows × columns of counts of independent items) and its effect size.

    Chi-square when every expected count is at least 5; otherwise Fisher's
    exact test (2×2) or the Monte-Carlo exact test with `permutations` tables
    drawn with the observed margins.
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
    expected = expected_counts(observed.astype(float))
    if expected.min() >= MIN_EXPECTED:
        # Pearson's chi-square without Yates' correction: its upper tail at (rows − 1)(columns − 1) degrees.
        p_value = float(chdtrc((rows - 1) * (columns - 1), chi2))
        return _finish(observed, chi2, p_value, CHI_SQUARE, None)
    if rows == 2 and columns == 2:
        return _finish(observed, chi2, float(fisher_exact(observed).pvalue), FISHER, None)
    # Tables with both margins fixed, drawn directly (each costs about rows × columns, not n).
    reference = random_table(observed.sum(axis=1), observed.sum(axis=0))
    generator = np.random.default_rng(seed)

    def draws():
        left = permutations
        while left > 0:
            count = min(BLOCK, left)
            left -= count
            tables = reference.rvs(count, random_state=generator)
            yield _chi2_of_tables(tables.reshape(count, rows, columns), expected)

    drawn = _permutation_p(chi2, draws())
    return _finish(observed, chi2, drawn.p_value, PERMUTATION, drawn.count)


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
    # Codes by first appearance through a dict: the names stay the items' own strings (numpy string
    # arrays would copy every name, fixed-width, several times: +340 MiB on a 600,000-image export).
    cluster_index: dict[str, int] = {}
    cluster_codes = np.fromiter(
        (cluster_index.setdefault(name, len(cluster_index)) for name in clusters), dtype=np.int64, count=len(clusters)
    )
    if len(cluster_index) == len(rows):
        result = table_test(table, permutations=permutations, seed=seed)
        return _with_clusters(result, len(cluster_index))
    return _cluster_test(table, row_codes, column_codes, cluster_codes, len(cluster_index), permutations, seed)


def _with_clusters(result: TableTest, clusters: int) -> TableTest:
    return TableTest(**{**result.__dict__, "clusters": clusters})


def size_bins(sizes: np.ndarray, min_bin: int = MIN_BIN) -> list[np.ndarray]:
    """The clusters (indices into `sizes`) grouped into bins of similar size, the smallest sizes first.

    Clusters sorted by size fill a bin until it holds at least `min_bin`;
    all clusters of one size go into the same bin. What is left at the end
    (the largest clusters, fewer than `min_bin`) is a bin of its own rather
    than joined to smaller clusters: exchanging it with much smaller
    clusters is the error the bins avoid, and a small bin only exchanges less.
    """
    order = np.argsort(sizes, kind="stable")
    bins: list[np.ndarray] = []
    start = 0
    boundaries = np.flatnonzero(np.diff(sizes[order])) + 1
    for end in [*boundaries.tolist(), len(order)]:
        if end - start >= min_bin or end == len(order):
            bins.append(order[start:end])
            start = end
    return [members for members in bins if len(members)]


@dataclass
class _Bin:
    """One bin of clusters: where its items are, and how a permutation deals its values out."""

    # The positions of its items, recipient after recipient (each recipient's items contiguous).
    positions: np.ndarray
    sizes: np.ndarray
    # Each cluster's values repeated cyclically to the bin's largest size (rows: clusters).
    extended: np.ndarray
    # Every cluster holds one value: no shuffle inside a recipient is needed.
    constant: bool
    # Every cluster holds the same values: nothing to exchange, the observed values stay.
    fixed: bool
    # True where a recipient's row of `extended` is beyond its own size (members × largest size).
    beyond: np.ndarray

    def deal(self, generator: np.random.Generator, count: int, padding: int) -> np.ndarray:
        """`count` permutations of the bin: each row the values of its items, in the order of `positions`."""
        members = len(self.sizes)
        donors = generator.permuted(np.broadcast_to(np.arange(members), (count, members)), axis=1)
        if self.constant:
            return np.repeat(self.extended[donors, 0], self.sizes, axis=1)
        # A recipient takes the first `size` values of its donor's cyclic extension, the rest is padding; the
        # shuffle inside each recipient moves the padding too, and dropping it keeps each recipient's values in
        # their shuffled order (every recipient keeps exactly its size).
        laid = self.extended[donors]
        laid[:, self.beyond] = padding
        shuffled = generator.permuted(laid, axis=2, out=laid)
        return shuffled[shuffled != padding].reshape(count, len(self.positions))


def _bins_of(starts: np.ndarray, sizes: np.ndarray, column_codes: np.ndarray) -> list[_Bin]:
    """The bins of the clusters (their items contiguous from `starts`), with their value profiles laid out."""
    result = []
    for members in size_bins(sizes):
        member_sizes = sizes[members]
        width = int(member_sizes.max())
        offsets = np.arange(width)[np.newaxis, :]
        # Position of the t-th value of the cyclic extension: start + (t mod size).
        extended = column_codes[starts[members][:, np.newaxis] + offsets % member_sizes[:, np.newaxis]]
        real = offsets < member_sizes[:, np.newaxis]
        constant_rows = np.all((extended == extended[:, :1]) | ~real, axis=1)
        constant = bool(constant_rows.all())
        fixed = constant and bool(np.all(extended[:, 0] == extended[0, 0]))
        positions = np.concatenate([starts[member] + np.arange(size) for member, size in zip(members, member_sizes)])
        result.append(_Bin(positions, member_sizes, extended, constant, fixed, ~real))
    return result


def _cluster_test(table, row_codes, column_codes, cluster_codes, cluster_count, permutations, seed) -> TableTest:
    """The cluster permutation test: value profiles exchanged among clusters of similar size (see the module's docstring)."""
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
    bins = _bins_of(starts, sizes, column_codes)
    moving = [one for one in bins if not one.fixed]
    # The padded layout of the bins whose values vary inside clusters costs more cells than their items.
    cells = n + sum(one.extended.size - len(one.positions) for one in moving if not one.constant)

    def draws():
        left = permutations
        while left > 0:
            count = min(block_size(cells), left)
            left -= count
            block = np.broadcast_to(column_codes, (count, n)).copy()
            for one in moving:
                block[:, one.positions] = one.deal(generator, count, columns)
            yield _chi2_of_codes(row_codes, block, rows, columns)

    drawn = _permutation_p(chi2, draws())
    dof = (rows - 1) * (columns - 1)
    notes = fixed_note(bins, cluster_count)
    return _finish(
        observed, chi2, drawn.p_value, CLUSTER_PERMUTATION, drawn.count, cluster_count, notes, max(1.0, drawn.mean / dof)
    )


def fixed_note(bins: list[_Bin], cluster_count: int) -> tuple[str, ...]:
    """A note when clusters of similar size all share one value, so that they cannot be exchanged: none otherwise."""
    stuck = sum(len(one.sizes) for one in bins if one.fixed)
    if not stuck:
        return ()
    if stuck == cluster_count:
        return (
            "the value goes with cluster size: clusters of similar size all have the same value, so the permutation "
            "test has nothing to exchange and p = 1 says nothing either way (audit more clusters of each size)",
        )
    verb = "is" if stuck == 1 else "are"
    return (
        f"{stuck} of the {cluster_count} clusters {verb} in groups of similar size whose clusters all have the same "
        "value: they are never exchanged and add no evidence to the p-value",
    )


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


def flag_gate(n: float, rows: int, columns: int, min_v: float) -> float:
    """The chi-square at which the lower end of the 95 % interval of V reaches `min_v` (0 when min_v is 0).

    The lower end is at least min_v exactly when P(X ≤ χ² | λ₀) ≥ 0.975 for
    λ₀ = n (k − 1) min_v², that is when χ² is at least that distribution's
    97.5th percentile.
    """
    if min_v <= 0:
        return 0.0
    dof = (rows - 1) * (columns - 1)
    return float(ncx2.ppf(0.975, dof, n * (min(rows, columns) - 1) * min_v * min_v))


def power(n: float, v: float, rows: int, columns: int, alpha: float, min_v: float = 0.0) -> float:
    """The probability that a table of `n` items from a population with Cramér's V = `v` is flagged.

    Flagged: p < `alpha` (the chi-square test) and the lower end of the 95 %
    interval of V at least `min_v` (`flag_gate`); with `min_v` = 0, the power
    of the chi-square test alone.
    """
    dof = (rows - 1) * (columns - 1)
    threshold = max(float(chi2_distribution.isf(alpha, dof)), flag_gate(n, rows, columns, min_v))
    return float(ncx2.sf(threshold, dof, n * v * v * (min(rows, columns) - 1)))


@functools.lru_cache(maxsize=256)
def items_needed(
    v: float, rows: int, columns: int, alpha: float, target_power: float = 0.8, min_v: float = 0.0
) -> int | None:
    """The fewest items for which a population V = `v` is flagged with `target_power` (see `power`).

    None when no number of items will do (`min_v` at or above `v`: the
    lower end of the interval then rises towards v, never past min_v).
    The power of the flag grows with n once it is near the target, so a
    doubling then a bisection find the first n that reaches it. Remembered:
    a report asks it once per attribute, mostly for the same shapes.
    """
    if min_v >= v:
        return None
    if power(2, v, rows, columns, alpha, min_v) >= target_power:
        return 2
    high = 4
    while power(high, v, rows, columns, alpha, min_v) < target_power:
        high *= 2
        if high > MAX_PLANNED_ITEMS:
            return None
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        if power(middle, v, rows, columns, alpha, min_v) >= target_power:
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
    """The Wilson score interval of a proportion `successes / n`; (None, None) when n is 0.

    At 0 successes the low end is exactly 0, at n exactly 1 (the formula
    gives them only up to rounding, e.g. 3.5e-18).
    """
    if n <= 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high
