"""The audit's statistics (audit/stats.py), each recomputed independently of the package.

The package computes with scipy and numpy; these tests recompute with
statsmodels or with plain math written here: Fisher's exact p from
hypergeometric probabilities (math.comb), permutation p-values from complete
enumeration of tiny tables (their Monte-Carlo error allowed for), the
Benjamini–Hochberg q-values of statsmodels' multipletests, Bergsma's
bias-corrected V (Bergsma 2013, "A bias-correction for Cramér's V and
Tschuprow's T", J. Korean Stat. Soc. 42:323–328) from its formula, the
noncentral chi-square interval from a noncentral cdf written here (Poisson
mixture of central chi-squares) and by its coverage in seeded simulations,
the cell diagnostics and power against statsmodels, the power of the flag
(the V gate included) against the noncentral cdf written here and a seeded
simulation of the flag rule. The cluster permutation test is checked for
its false-positive rate on clustered null data, where the chi-square test
that counts clustered items as independent false-flags often (more in
test_audit_clusters.py).
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import GofChisquarePower
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.rates import confint_poisson

from audit import stats

# --- helpers written here, independent of the package -------------------------------------------------


def pearson_chi2(table) -> float:
    """Pearson's chi-square of a table without empty rows or columns, in plain Python."""
    rows = [sum(row) for row in table]
    columns = [sum(column) for column in zip(*table)]
    n = sum(rows)
    return sum(
        (table[i][j] - rows[i] * columns[j] / n) ** 2 / (rows[i] * columns[j] / n)
        for i in range(len(rows))
        for j in range(len(columns))
    )


def fisher_two_sided(table) -> float:
    """Fisher's exact two-sided p of a 2×2 table: the hypergeometric probabilities no larger than the observed one's."""
    (a, b), (c, d) = table
    row, column, n = a + b, a + c, a + b + c + d

    def probability(x):
        return math.comb(column, x) * math.comb(n - column, row - x) / math.comb(n, row)

    observed = probability(a)
    support = range(max(0, row + column - n), min(row, column) + 1)
    # The relative tolerance R's fisher.test uses, so that equal probabilities computed differently count as equal.
    return sum(probability(x) for x in support if probability(x) <= observed * (1 + 1e-7))


def tables_with_margins(rows: list[int], columns: list[int]):
    """Every table of non-negative counts with these row and column totals."""
    if len(rows) == 1:
        yield [list(columns)]
        return
    first = rows[0]

    def fill(position, left, prefix):
        if position == len(columns) - 1:
            if left <= columns[position]:
                yield prefix + [left]
            return
        for count in range(min(left, columns[position]) + 1):
            yield from fill(position + 1, left - count, prefix + [count])

    for row in fill(0, first, []):
        rest = [total - count for total, count in zip(columns, row)]
        for others in tables_with_margins(rows[1:], rest):
            yield [row] + others


def exact_permutation_p(table) -> float:
    """P(chi² ≥ observed) over all tables with the observed margins (multivariate hypergeometric probabilities)."""
    rows = [sum(row) for row in table]
    columns = [sum(column) for column in zip(*table)]
    n = sum(rows)
    observed = pearson_chi2(table)
    constant = math.prod(math.factorial(total) for total in rows + columns) / math.factorial(n)
    p = 0.0
    for candidate in tables_with_margins(rows, columns):
        if pearson_chi2(candidate) >= observed - 1e-9:
            p += constant / math.prod(math.factorial(count) for row in candidate for count in row)
    return p


def within_monte_carlo_error(estimate: float, exact: float, permutations: int) -> bool:
    """True when a permutation p = (1 + hits)/(B + 1) is within 4 standard errors (and the +1's bias) of `exact`."""
    error = math.sqrt(exact * (1 - exact) / permutations)
    return abs(estimate - exact) <= 4 * error + 2 / (permutations + 1)


def regularized_lower_gamma(a: float, x: float) -> float:
    """P(a, x) by its power series (converges for every x ≥ 0)."""
    if x <= 0:
        return 0.0
    term = 1.0 / a
    total = term
    k = 0
    while term > total * 1e-16 or k < x:
        k += 1
        term *= x / (a + k)
        total += term
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * total


def noncentral_chi2_cdf(x: float, dof: int, lam: float) -> float:
    """The noncentral chi-square cdf as a Poisson(λ/2) mixture of central chi-squares with dof + 2j degrees."""
    half = lam / 2
    top = int(half + 12 * math.sqrt(half + 1) + 40)
    return sum(
        math.exp(-half + j * math.log(half) - math.lgamma(j + 1) if half > 0 else (0.0 if j == 0 else -math.inf))
        * regularized_lower_gamma(dof / 2 + j, x / 2)
        for j in range(top)
    )


def solve_noncentrality(chi2: float, dof: int, target: float) -> float:
    """The λ with P(X ≤ chi2 | λ) = target, by bisection (0 when even λ = 0 gives no more than target)."""
    if noncentral_chi2_cdf(chi2, dof, 0.0) <= target:
        return 0.0
    low, high = 0.0, 1.0
    while noncentral_chi2_cdf(chi2, dof, high) > target:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if noncentral_chi2_cdf(chi2, dof, middle) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def bergsma_v(table) -> float:
    """Bergsma's (2013) bias-corrected Cramér's V, section 3, from its formula, with statsmodels' chi-square."""
    observed = np.asarray(table)
    n = observed.sum()
    r, k = observed.shape
    chi2 = Table(observed, shift_zeros=False).test_nominal_association().statistic
    phi2_corrected = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    k_corrected = k - (k - 1) ** 2 / (n - 1)
    r_corrected = r - (r - 1) ** 2 / (n - 1)
    return math.sqrt(phi2_corrected / min(k_corrected - 1, r_corrected - 1))


# --- the test of one table -----------------------------------------------------------------------------


SMALL_2X2 = [[[7, 2], [1, 7]], [[3, 0], [0, 3]], [[1, 9], [9, 3]], [[0, 5], [2, 1]], [[10, 2], [3, 1]]]


@pytest.mark.parametrize("table", SMALL_2X2)
def test_small_2x2_tables_get_fishers_exact_p(table):
    result = stats.table_test(table)
    assert result.method == stats.FISHER
    assert result.p_value == pytest.approx(fisher_two_sided(table), rel=1e-9)


@pytest.mark.parametrize("table", [[[180, 20], [100, 100]], [[30, 20, 25], [20, 30, 26], [11, 40, 9]]])
def test_tables_without_small_expected_counts_get_the_chi_square_test(table):
    result = stats.table_test(table)
    reference = Table(np.asarray(table), shift_zeros=False).test_nominal_association()
    assert result.method == stats.CHI_SQUARE
    assert result.chi2 == pytest.approx(reference.statistic, rel=1e-12)
    assert result.dof == reference.df
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    # Cramér's V from its definition.
    k = min(len(table), len(table[0]))
    assert result.cramers_v == pytest.approx(math.sqrt(reference.statistic / (np.sum(table) * (k - 1))), rel=1e-12)


@pytest.mark.parametrize("table", [[[3, 1, 0], [0, 2, 3]], [[2, 0, 1], [0, 2, 1], [1, 1, 3]], [[4, 1], [1, 3], [0, 2]]])
def test_larger_small_tables_get_a_permutation_p_equal_to_the_exact_one_within_its_monte_carlo_error(table):
    permutations = 7999
    result = stats.table_test(table, permutations=permutations, seed=3)
    assert result.method == stats.PERMUTATION and result.permutations == permutations
    exact = exact_permutation_p(table)
    assert within_monte_carlo_error(result.p_value, exact, permutations), (result.p_value, exact)


def test_the_permutation_p_is_reproducible_and_never_zero():
    table = [[9, 0, 0], [0, 9, 0], [0, 0, 2]]
    first = stats.table_test(table, permutations=1999, seed=5)
    assert first == stats.table_test(table, permutations=1999, seed=5)
    # Every permutation is less extreme than perfect separation: p is its floor 1 / (B + 1), not 0.
    assert first.p_value == pytest.approx(1 / 2000)


def test_empty_rows_and_columns_are_dropped_and_single_rows_are_not_computable():
    result = stats.table_test([[180, 20, 0], [100, 100, 0], [0, 0, 0]])
    assert (result.rows, result.columns) == (2, 2) and result == stats.table_test([[180, 20], [100, 100]])
    single = stats.table_test([[5, 7, 9], [0, 0, 0]])
    assert not single.computable and single.p_value is None and single.cramers_v is None and single.n == 21


# --- clusters --------------------------------------------------------------------------------------------


def test_the_cluster_permutation_p_equals_the_exact_one_within_its_monte_carlo_error():
    # Seven images with one lighting value each, and boxes of two labels.
    images = [(["car"] * 4 + ["pedestrian"], "day"), (["car"] * 3, "day"), (["car", "pedestrian"], "day"),
              (["pedestrian"] * 3, "night"), (["pedestrian"] * 2 + ["car"], "night"), (["car"] * 2, "night"),
              (["pedestrian"] * 4, "night")]  # fmt: skip
    labels = [label for boxes, _ in images for label in boxes]
    values = [value for boxes, value in images for _ in boxes]
    clusters = [f"image-{index}" for index, (boxes, _) in enumerate(images) for _ in boxes]

    def chi2_of(assignment):
        table = [[0, 0], [0, 0]]
        for (boxes, _), value in zip(images, assignment):
            for label in boxes:
                table[label == "pedestrian"][value == "night"] += 1
        return pearson_chi2(table)

    observed = chi2_of([value for _, value in images])
    orderings = list(itertools.permutations([value for _, value in images]))
    exact = sum(chi2_of(ordering) >= observed - 1e-9 for ordering in orderings) / len(orderings)
    permutations = 7999
    result = stats.association_test(labels, values, clusters, permutations=permutations, seed=11)
    assert result.method == stats.CLUSTER_PERMUTATION and result.clusters == 7 and result.n == len(labels)
    assert within_monte_carlo_error(result.p_value, exact, permutations), (result.p_value, exact)


def clustered_null(generator: np.random.Generator, images: int = 40, per_box_values: bool = False):
    """Boxes in images: each image mostly of one label, its lighting drawn independently of that (or per box)."""
    labels, values, clusters = [], [], []
    for image in range(images):
        dominant, other = ("car", "pedestrian") if generator.random() < 0.5 else ("pedestrian", "car")
        value = "day" if generator.random() < 0.5 else "night"
        for _ in range(int(generator.integers(2, 10))):
            labels.append(dominant if generator.random() < 0.85 else other)
            if per_box_values:
                value = "day" if generator.random() < 0.5 else "night"
            values.append(value)
            clusters.append(f"image-{image}")
    return labels, values, clusters


def naive_chi_square_p(labels, values) -> float:
    """The chi-square p of the boxes' 2×2 table as if every box were independent (1 degree: erfc)."""
    table = [[0, 0], [0, 0]]
    for label, value in zip(labels, values):
        table[label == "car"][value == "day"] += 1
    if any(sum(row) == 0 for row in table) or any(sum(column) == 0 for column in zip(*table)):
        return 1.0
    return math.erfc(math.sqrt(pearson_chi2(table) / 2))


def test_on_clustered_null_data_the_cluster_test_holds_its_level_and_the_naive_test_does_not():
    generator = np.random.default_rng(7)
    runs, alpha = 300, 0.05
    naive = clustered = 0
    for run in range(runs):
        labels, values, clusters = clustered_null(generator)
        naive += naive_chi_square_p(labels, values) < alpha
        clustered += stats.association_test(labels, values, clusters, permutations=199, seed=run).p_value < alpha
    # Measured with this seed: naive 31 %, the cluster test about 3 %; its p-values are uniform under the null.
    assert naive / runs > 0.2
    assert clustered / runs <= 0.08


def test_values_that_vary_inside_clusters_are_shuffled_without_false_flags():
    generator = np.random.default_rng(8)
    runs, alpha = 200, 0.05
    rejections = 0
    for run in range(runs):
        labels, values, clusters = clustered_null(generator, per_box_values=True)
        result = stats.association_test(labels, values, clusters, permutations=199, seed=run)
        assert result.method == stats.CLUSTER_PERMUTATION
        rejections += result.p_value < alpha
    assert rejections / runs <= 0.09


def test_clusters_of_one_item_each_are_the_plain_table_test():
    labels = ["car"] * 8 + ["bus"] * 8
    values = ["day"] * 7 + ["night"] * 1 + ["day"] * 2 + ["night"] * 6
    result = stats.association_test(labels, values, [f"i{index}" for index in range(16)])
    assert result.method == stats.FISHER and result.clusters == 16
    # Rows and columns in sorted order: bus, car × day, night.
    assert result.p_value == pytest.approx(fisher_two_sided([[2, 6], [7, 1]]), rel=1e-9)


# --- effect size -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table", [[[7, 2], [1, 7]], [[30, 20, 25], [20, 30, 26]], [[5, 1, 3, 0], [2, 6, 1, 4], [1, 1, 5, 2]]]
)
def test_the_bias_corrected_v_is_bergsmas(table):
    result = stats.table_test(table, permutations=99)
    assert result.v_corrected == pytest.approx(bergsma_v(table), rel=1e-9)


def test_the_bias_corrected_v_is_zero_when_chi_square_is_below_its_null_expectation():
    # chi²/n below (r − 1)(c − 1)/(n − 1): the corrected phi² is cut at 0.
    assert stats.table_test([[6, 5], [5, 6]]).v_corrected == 0.0


def test_plain_v_is_large_on_small_null_samples_and_the_corrected_v_is_not():
    generator = np.random.default_rng(3)
    plain, corrected = [], []
    while len(plain) < 400:
        table = np.zeros((3, 3), dtype=int)
        np.add.at(table, (generator.integers(0, 3, 20), generator.integers(0, 3, 20)), 1)
        if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
            continue
        chi2 = pearson_chi2(table.tolist())
        plain.append(stats.cramers_v(chi2, 20, 3, 3))
        corrected.append(stats.bias_corrected_v(chi2, 20, 3, 3))
    # The issue measured 44 % of null tables at V ≥ 0.3 for n = 20.
    assert np.mean(np.array(plain) >= 0.3) > 0.4
    assert np.mean(np.array(corrected) >= 0.3) < 0.2


@pytest.mark.parametrize(("chi2", "dof"), [(40.0, 1), (12.0, 2), (7.0, 4), (3.0, 1)])
def test_the_noncentrality_interval_inverts_the_noncentral_chi_square(chi2, dof):
    low, high = stats.noncentrality_interval(chi2, dof)
    assert low == pytest.approx(solve_noncentrality(chi2, dof, 0.975), abs=1e-6, rel=1e-6)
    assert high == pytest.approx(solve_noncentrality(chi2, dof, 0.025), abs=1e-6, rel=1e-6)


def test_the_v_interval_covers_the_population_v_95_percent_of_the_time():
    # A 2×3 population with a known V, sampled 500 times at n = 300.
    probabilities = np.array([[0.20, 0.15, 0.10], [0.10, 0.15, 0.30]])
    rows, columns = probabilities.sum(axis=1), probabilities.sum(axis=0)
    independent = np.outer(rows, columns)
    true_v = math.sqrt(((probabilities - independent) ** 2 / independent).sum() / (min(probabilities.shape) - 1))
    generator = np.random.default_rng(21)
    runs, n = 500, 300
    covered = 0
    for _ in range(runs):
        table = generator.multinomial(n, probabilities.ravel()).reshape(probabilities.shape)
        low, high = stats.v_interval(pearson_chi2(table.tolist()), n, *table.shape)
        covered += low <= true_v <= high
    assert 0.92 <= covered / runs <= 0.98


# --- many tests, power, cells, proportions ---------------------------------------------------------------


def test_benjamini_hochberg_q_values_are_statsmodels_fdr_bh_and_none_is_not_a_test():
    generator = np.random.default_rng(4)
    p_values = list(generator.uniform(0, 0.2, 15)) + [1e-6, 0.03, 0.03]
    with_gaps = p_values[:5] + [None] + p_values[5:] + [None]
    q_values = stats.benjamini_hochberg(with_gaps)
    reference = multipletests(p_values, method="fdr_bh")[1]
    assert q_values[5] is None and q_values[-1] is None
    present = [q for q in q_values if q is not None]
    assert present == pytest.approx(list(reference), rel=1e-12)


def test_permutations_are_enough_for_the_smallest_p_to_pass_alpha_over_m():
    for alpha, tests in [(0.01, 1), (0.01, 20), (0.05, 3), (0.001, 40)]:
        permutations = stats.permutations_needed(alpha, tests)
        assert 1 / (permutations + 1) < alpha / tests
        assert permutations >= stats.MIN_PERMUTATIONS


@pytest.mark.parametrize(("rows", "columns", "alpha"), [(2, 2, 0.01), (3, 3, 0.01), (2, 4, 0.05), (5, 3, 0.001)])
def test_items_needed_is_statsmodels_chi_square_power(rows, columns, alpha):
    k = min(rows, columns)
    dof = (rows - 1) * (columns - 1)
    # Cohen's w of a table with Cramér's V = 0.2 is V · sqrt(k − 1);
    # statsmodels' chi-square power has n_bins − 1 degrees of freedom.
    w = 0.2 * math.sqrt(k - 1)
    n = GofChisquarePower().solve_power(effect_size=w, nobs=None, alpha=alpha, power=0.8, n_bins=dof + 1)
    assert stats.items_needed(0.2, rows, columns, alpha) == math.ceil(n)
    reference = GofChisquarePower().power(effect_size=w, nobs=120, alpha=alpha, n_bins=dof + 1)
    assert stats.power(120, 0.2, rows, columns, alpha) == pytest.approx(reference, rel=1e-6)


def test_cell_diagnostics_are_statsmodels_residuals_and_exact_poisson_intervals():
    table = np.array([[10, 5, 3], [2, 8, 9], [4, 4, 0]])
    reference = Table(table, shift_zeros=False)
    cells = stats.cell_diagnostics(table)
    for i in range(3):
        for j in range(3):
            cell = cells[i][j]
            expected = reference.fittedvalues[i, j]
            low, high = confint_poisson(int(table[i, j]), 1, method="exact-c")
            assert cell.observed == table[i, j]
            assert cell.expected == pytest.approx(expected, rel=1e-12)
            assert cell.ratio == pytest.approx(table[i, j] / expected, rel=1e-12)
            assert cell.ratio_low == pytest.approx(low / expected, rel=1e-9, abs=1e-12)
            assert cell.ratio_high == pytest.approx(high / expected, rel=1e-9)
            assert cell.residual == pytest.approx(reference.standardized_resids[i, j], rel=1e-9)


def test_cells_of_an_empty_row_have_nothing_expected():
    cells = stats.cell_diagnostics([[3, 4], [0, 0]])
    assert [(cell.expected, cell.ratio, cell.residual) for cell in cells[1]] == [(0.0, None, None)] * 2
    # No label, or labels without values: no cell.
    assert stats.cell_diagnostics([]) == [] and stats.cell_diagnostics([[], []]) == [[], []]


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (3, 10), (50, 100), (100, 100)])
def test_wilson_intervals_are_statsmodels(successes, n):
    low, high = stats.wilson_interval(successes, n)
    reference = proportion_confint(successes, n, alpha=0.05, method="wilson")
    assert (low, high) == pytest.approx(reference, abs=1e-12)


# --- the Monte-Carlo exact test at scale -------------------------------------------------------------------


def test_the_exact_test_of_a_600k_item_table_with_a_tiny_row_takes_well_under_two_seconds():
    # A row of 6 items puts expected counts below 5: the exact test. Shuffling 600k items 1999 times took minutes.
    table = [[200_000, 200_000, 199_990], [1, 2, 3]]
    started = time.perf_counter()
    result = stats.table_test(table, permutations=1999, seed=2)
    elapsed = time.perf_counter() - started
    assert result.method == stats.PERMUTATION and result.permutations == 1999
    assert elapsed < 2.0
    assert result == stats.table_test(table, permutations=1999, seed=2)
    assert 0.05 < result.p_value < 1  # margins like these make the tiny row's split unremarkable


# --- an interval that says nothing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table",
    [[[50, 50], [50, 50]], [[500, 501], [501, 500]], [[10, 10, 10], [10, 10, 10], [10, 10, 11]], [[52, 48], [48, 52]],
     [[14, 8, 8], [8, 14, 8], [8, 8, 14]], [[11, 10, 9], [10, 10, 10], [9, 10, 12]]],
)  # fmt: skip
def test_below_the_lower_quantile_of_chance_the_v_interval_says_nothing_instead_of_0_to_0(table):
    result = stats.table_test(table)
    chi2 = pearson_chi2(table)
    below_chance = noncentral_chi2_cdf(chi2, result.dof, 0.0) <= 0.025
    assert (result.v_high is None) == below_chance
    if below_chance:
        assert result.v_low == 0.0 and any("not informative" in note for note in result.notes)
    else:
        assert result.v_high > 0 and not result.notes


def test_the_seeded_tables_include_both_kinds_of_interval():
    kinds = {stats.table_test(table).v_high is None for table in ([[50, 50], [50, 50]], [[52, 48], [48, 52]])}
    assert kinds == {True, False}


# --- rounding noise ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 100, 1000, 12345])
def test_wilson_intervals_end_exactly_at_0_and_1(n):
    # The formula gives 3.5e-18 instead of 0 for 0 of 100, and 0.9999999999999999 instead of 1 for 10 of 10.
    assert stats.wilson_interval(0, n)[0] == 0.0
    assert stats.wilson_interval(n, n)[1] == 1.0
    low, high = stats.wilson_interval(1, n)
    assert 0 < low < high < 1


# --- the power of the flag, V gate included -----------------------------------------------------------------


def central_quantile_like(target: float, dof: int, lam: float) -> float:
    """The x with P(X ≤ x | λ) = target for the noncentral chi-square written above, by bisection."""
    low, high = 0.0, 1.0
    while noncentral_chi2_cdf(high, dof, lam) < target:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if noncentral_chi2_cdf(middle, dof, lam) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def flag_power(n: int, v: float, dof: int, k: int, alpha: float, min_v: float) -> float:
    """P(flag) = P(χ² ≥ max(critical value, gate)), with λ = n (k − 1) v², the gate at λ₀ = n (k − 1) min_v²."""
    critical = central_quantile_like(1 - alpha, dof, 0.0)
    gate = central_quantile_like(0.975, dof, n * (k - 1) * min_v**2)
    return 1 - noncentral_chi2_cdf(max(critical, gate), dof, n * (k - 1) * v**2)


@pytest.mark.parametrize(("n", "rows", "columns"), [(292, 2, 2), (785, 2, 2), (400, 3, 2), (250, 3, 4)])
def test_the_power_of_the_flag_includes_the_v_gate(n, rows, columns):
    k, dof = min(rows, columns), (rows - 1) * (columns - 1)
    expected = flag_power(n, 0.2, dof, k, 0.01, 0.1)
    assert stats.power(n, 0.2, rows, columns, 0.01, min_v=0.1) == pytest.approx(expected, rel=1e-6)
    # Below the power of the chi-square test alone, which promised 80 % at 292 items.
    assert stats.power(n, 0.2, rows, columns, 0.01, min_v=0.1) < stats.power(n, 0.2, rows, columns, 0.01)


def test_the_review_table_292_items_give_41_percent_and_about_785_give_80():
    assert stats.items_needed(0.2, 2, 2, 0.01) == 292
    assert stats.power(292, 0.2, 2, 2, 0.01, min_v=0.1) == pytest.approx(0.40, abs=0.02)
    needed = stats.items_needed(0.2, 2, 2, 0.01, 0.8, min_v=0.1)
    assert flag_power(needed, 0.2, 1, 2, 0.01, 0.1) >= 0.8 > flag_power(needed - 1, 0.2, 1, 2, 0.01, 0.1)
    assert 770 <= needed <= 800


def simulated_flag_rate(n: int, runs: int, generator: np.random.Generator) -> float:
    """How often the report's flag rule (p < 0.01, lower end of V ≥ 0.1) flags a 2×2 sample of a population with φ = 0.2."""
    # P(x) = P(y) = 1/2, P(b | x) = 0.6, P(b | y) = 0.4: φ = (0.3 · 0.3 − 0.2 · 0.2) / 0.25 = 0.2.
    probabilities = [0.3, 0.2, 0.2, 0.3]
    flags = 0
    for _ in range(runs):
        table = generator.multinomial(n, probabilities).reshape(2, 2)
        result = stats.table_test(table)
        flags += result.p_value < 0.01 and result.v_low >= 0.1
    return flags / runs


@pytest.mark.parametrize("n", [292, 785])
def test_the_planned_power_is_what_a_simulation_of_the_flag_rule_gives(n):
    runs = 600
    rate = simulated_flag_rate(n, runs, np.random.default_rng(n))
    planned = stats.power(n, 0.2, 2, 2, 0.01, min_v=0.1)
    assert abs(rate - planned) <= 4 * math.sqrt(planned * (1 - planned) / runs), (rate, planned)


def test_no_number_of_items_gets_a_v_below_min_v_flagged():
    assert stats.items_needed(0.2, 2, 2, 0.01, 0.8, min_v=0.2) is None
    assert stats.items_needed(0.2, 2, 3, 0.01, 0.8, min_v=0.3) is None
    assert stats.power(100_000, 0.2, 2, 2, 0.01, min_v=0.25) < 0.01
