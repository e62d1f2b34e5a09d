"""`errors`' statistics, recomputed independently: with statsmodels, or with plain math written here.

- the test of equal error rates: for two groups the pooled two-proportion
  z-test (statsmodels' proportions_ztest), for more the chi-square test of
  homogeneity (statsmodels' Table); Fisher's exact test and the exact
  permutation distribution (enumerated here) when expected counts are small;
- Benjamini–Hochberg q-values (statsmodels' multipletests) across attributes
  and intersections, and the number of permutations for alpha / m;
- clustered items: whole clusters are permuted, so a video's or an image's
  items do not count as independent;
- per-class false-negative and false-positive rates, counted here;
- the top-label expected calibration error, computed here;
- seeded simulations: power against 10 % vs 20 % error rates, and the rate of
  false flags among 9 groups with equal error rates.
"""

from __future__ import annotations

import math
import random
import pytest
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from audit.dataset import CONDITION, PROTECTED, Attribute, Dataset, Item
from audit.model_errors import Scored, analyse
from audit.stats import permutations_needed


def make_item(item_id: str, label: str, values: dict, cluster: str | None = None) -> Item:
    """An item, its own cluster unless `cluster` names the image or video it belongs to."""
    return Item(item_id, label, values, cluster=cluster or item_id)


def scored_groups(counts: dict[str, tuple[int, int]], attribute: str = "g") -> list[Scored]:
    """Scored items: for every group `value: (items, errors)`, that many items of label `cat`, the first ones wrong."""
    scored = []
    for value, (n, errors) in counts.items():
        for index in range(n):
            item = make_item(f"{attribute}-{value}-{index}", "cat", {attribute: value})
            wrong = index < errors
            scored.append(Scored(item, "dog" if wrong else "cat", wrong))
    return scored


def run(scored: list[Scored], attributes: list[Attribute], alpha: float = 0.01, intersect=None):
    """The analysis of these scored items, their dataset being just them."""
    return analyse(Dataset([entry.item for entry in scored], attributes, "tag"), scored, alpha, intersect)


def protected(name: str, values) -> Attribute:
    return Attribute(name, PROTECTED, tuple(values))


def condition(name: str, values) -> Attribute:
    return Attribute(name, CONDITION, tuple(values))


def test_two_groups_is_the_pooled_two_proportion_z_test():
    scored = scored_groups({"a": (200, 30), "b": (210, 50)})
    result = run(scored, [protected("g", "ab")]).results[0]
    z, p_value = proportions_ztest([30, 50], [200, 210])  # pooled variance, two-sided
    assert result.test.method == "chi-square"
    assert result.test.p_value == pytest.approx(p_value, rel=1e-9)
    assert result.test.chi2 == pytest.approx(z * z, rel=1e-9)


def test_more_groups_is_the_chi_square_test_of_homogeneity():
    counts = {"a": (120, 10), "b": (90, 20), "c": (150, 18), "d": (60, 9)}
    result = run(scored_groups(counts), [protected("g", "abcd")]).results[0]
    table = [[errors, n - errors] for n, errors in counts.values()]
    expected = Table(table).test_nominal_association()
    assert result.test.method == "chi-square"
    assert result.test.chi2 == pytest.approx(expected.statistic, rel=1e-9)
    assert result.test.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.test.dof == expected.df == 3


def test_the_spread_names_two_groups_and_has_no_ratio_over_a_zero_rate():
    same = run(scored_groups({"a": (10, 2), "b": (10, 2), "c": (10, 2)}), [protected("g", "abc")]).results[0]
    assert (same.highest, same.lowest, same.difference, same.ratio) == ("a", "b", 0.0, 1.0)
    perfect = run(scored_groups({"a": (10, 3), "b": (10, 0), "c": (10, 1)}), [protected("g", "abc")]).results[0]
    assert (perfect.highest, perfect.lowest, perfect.ratio) == ("a", "b", None)
    assert perfect.difference == pytest.approx(0.3)


def fisher_two_sided(errors_a: int, n_a: int, errors_b: int, n_b: int) -> float:
    """Fisher's exact test, two-sided: the tables with the same margins no more likely than the observed one."""
    errors, n = errors_a + errors_b, n_a + n_b

    def probability(x: int) -> float:
        return math.comb(n_a, x) * math.comb(n_b, errors - x) / math.comb(n, errors)

    observed = probability(errors_a)
    possible = range(max(0, errors - n_b), min(errors, n_a) + 1)
    return sum(probability(x) for x in possible if probability(x) <= observed * (1 + 1e-7))


def test_small_expected_counts_use_fishers_exact_test():
    scored = scored_groups({"a": (12, 1), "b": (10, 6)})
    result = run(scored, [protected("g", "ab")]).results[0]
    assert result.test.min_expected < 5
    assert result.test.method == "fisher"
    assert result.test.p_value == pytest.approx(fisher_two_sided(1, 12, 6, 10), rel=1e-9)


def chi_square(table: list[list[int]]) -> float:
    """Pearson's chi-square statistic, written out."""
    n = sum(map(sum, table))
    rows = [sum(row) for row in table]
    columns = [sum(column) for column in zip(*table)]
    return sum(
        (table[i][j] - rows[i] * columns[j] / n) ** 2 / (rows[i] * columns[j] / n)
        for i in range(len(rows))
        for j in range(len(columns))
    )


def test_small_expected_counts_with_more_groups_use_the_exact_permutation_distribution():
    sizes, observed_errors = (8, 7, 9), (0, 1, 5)
    scored = scored_groups({value: (n, e) for value, n, e in zip("abc", sizes, observed_errors)})
    analysis = run(scored, [protected("g", "abc")])
    result = analysis.results[0].test
    assert result.method == "permutation"
    # The exact p-value: every split of the 6 errors over the groups, with its hypergeometric probability.
    total_errors, n = sum(observed_errors), sum(sizes)
    observed = chi_square([[e, size - e] for e, size in zip(observed_errors, sizes)])
    exact = 0.0
    for a in range(total_errors + 1):
        for b in range(total_errors - a + 1):
            split = (a, b, total_errors - a - b)
            if any(e > size for e, size in zip(split, sizes)):
                continue
            probability = math.prod(math.comb(size, e) for size, e in zip(sizes, split)) / math.comb(n, total_errors)
            if chi_square([[e, size - e] for e, size in zip(split, sizes)]) >= observed - 1e-9:
                exact += probability
    draws = result.permutations
    assert draws == analysis.permutations == permutations_needed(0.01, 1)
    # Within 4 Monte-Carlo standard errors (and the +1 of the p-value's numerator).
    assert abs(result.p_value - exact) <= 4 * math.sqrt(exact * (1 - exact) / draws) + 1 / (draws + 1)


def test_q_values_are_benjamini_hochberg_across_attributes_and_intersections():
    rng = random.Random(3)
    attributes = [protected("g", "ab"), condition("light", ("day", "night")), condition("rain", "yn")]
    scored = []
    for index in range(400):
        values = {"g": rng.choice("ab"), "light": rng.choice(("day", "night")), "rain": rng.choice("yn")}
        rate = 0.3 if values["g"] == "a" else 0.2 if values["light"] == "night" else 0.1
        wrong = rng.random() < rate
        scored.append(Scored(make_item(f"i{index}", "cat", values), "dog" if wrong else "cat", wrong))
    analysis = run(scored, attributes, alpha=0.05, intersect=["g,light"])
    assert [result.grouping.name for result in analysis.results] == ["g", "light", "rain", "g × light"]
    assert analysis.tests == 4
    p_values = [result.test.p_value for result in analysis.results]
    flags, q_values, _, _ = multipletests(p_values, alpha=0.05, method="fdr_bh")
    assert [result.q_value for result in analysis.results] == pytest.approx(list(q_values), rel=1e-12)
    assert [result.flagged for result in analysis.results] == list(q_values < 0.05)
    assert any(result.flagged for result in analysis.results) and not all(result.flagged for result in analysis.results)


def test_the_flag_needs_q_below_alpha_not_p():
    # 10 % against 21 % errors: p = 0.032 alone, but with a second, null attribute q = 2 · 0.032 > 0.05.
    attributes = [protected("g", "ab"), condition("light", "nd")]
    scored = scored_groups({"a": (100, 10), "b": (100, 21)})
    scored = [
        Scored(make_item(entry.item.id, "cat", {**entry.item.values, "light": "nd"[index % 2]}), entry.predicted, entry.wrong)
        for index, entry in enumerate(scored)
    ]
    alone = run(scored, attributes[:1], alpha=0.05).results[0]
    assert alone.test.p_value == pytest.approx(0.0316, abs=1e-4) and alone.q_value == alone.test.p_value and alone.flagged
    both = run(scored, attributes, alpha=0.05)
    assert both.tests == 2
    assert both.results[0].test.p_value < 0.05 < both.results[0].q_value
    assert not any(result.flagged for result in both.results)


def test_permutations_are_enough_for_alpha_over_the_number_of_tests():
    # Small groups, so that every attribute is tested by permutation; one attribute cannot be tested.
    attributes = [protected(name, "abc") for name in ("g1", "g2", "g3")] + [protected("alone", "ab")]
    scored = []
    for index in range(30):
        values = {"g1": "abc"[index % 3], "g2": "abc"[index // 10], "g3": "abc"[(index // 3) % 3], "alone": "a"}
        wrong = index % 7 == 0
        scored.append(Scored(make_item(f"i{index}", "cat", values), "dog" if wrong else "cat", wrong))
    alpha = 0.001
    analysis = run(scored, attributes, alpha=alpha)
    assert analysis.tests == 3
    assert 1 / (analysis.permutations + 1) < alpha / analysis.tests
    tested = [result for result in analysis.results if result.test is not None]
    assert {result.test.method for result in tested} == {"permutation"}
    assert {result.test.permutations for result in tested} == {analysis.permutations}
    alone = analysis.results[-1]
    assert alone.test is None and alone.q_value is None and not alone.flagged and alone.difference is None


def clustered_scores(associated: bool) -> list[Scored]:
    """10 images of 30 objects each, half of them at night, and 5 images wrong as a whole (all their objects).

    With the association, the 5 night images are the wrong ones; without it,
    3 night images and 2 day images are.
    """
    lights = ["night"] * 5 + ["day"] * 5
    wrong_images = {0, 1, 2, 3, 4} if associated else {0, 1, 2, 5, 6}
    scored = []
    for image in range(10):
        for position in range(30):
            item = make_item(f"img{image}.jpg#{position}", "cat", {"light": lights[image]}, cluster=f"img{image}.jpg")
            wrong = image in wrong_images
            scored.append(Scored(item, "dog" if wrong else "cat", wrong))
    return scored


def test_clustered_items_are_permuted_as_whole_clusters():
    attribute = [Attribute("light", CONDITION, ("day", "night"))]
    unrelated = run(clustered_scores(False), attribute).results[0]
    # Counted as 300 independent objects, 90 of 150 wrong against 60 of 150 is p < 0.001; as 10 images it is nothing.
    _, naive = proportions_ztest([90, 60], [150, 150])
    assert naive < 0.001
    assert unrelated.test.method == "cluster permutation" and unrelated.test.clusters == 10
    assert unrelated.test.p_value > 0.3 and not unrelated.flagged
    # All 5 night images wrong, all 5 day images right: one split in C(10, 5) = 252, p = 2/252 two-sided.
    planted = run(clustered_scores(True), attribute, alpha=0.05).results[0]
    assert planted.test.p_value == pytest.approx(2 / 252, abs=4 * math.sqrt((2 / 252) / planted.test.permutations))
    assert planted.flagged


def test_per_class_rates_come_from_each_groups_confusion_matrix():
    rng = random.Random(11)
    labels = ["bus", "car", "van"]
    rows = [(rng.choice("ab"), rng.choice(labels), rng.choice(labels + ["truck"])) for _ in range(300)]
    scored = [
        Scored(make_item(f"i{index}", label, {"g": group}), predicted, predicted != label)
        for index, (group, label, predicted) in enumerate(rows)
    ]
    result = run(scored, [protected("g", "ab")]).results[0]
    for group in "ab":
        mine = [(label, predicted) for g, label, predicted in rows if g == group]
        for label in labels:
            rates = result.groups[group].classes[label]
            positives = [predicted for actual, predicted in mine if actual == label]
            negatives = [predicted for actual, predicted in mine if actual != label]
            assert (rates.positives, rates.negatives) == (len(positives), len(negatives))
            assert rates.false_negatives == sum(predicted != label for predicted in positives)
            assert rates.false_positives == sum(predicted == label for predicted in negatives)
            assert rates.false_negative_rate == pytest.approx(rates.false_negatives / len(positives))
            assert rates.false_positive_rate == pytest.approx(rates.false_positives / len(negatives))
        # The confusion matrix holds every item of the group, predictions outside the labels included.
        assert sum(sum(row.values()) for row in result.groups[group].confusion.values()) == len(mine)
        assert result.groups[group].confusion.get("car", {}).get("truck", 0) == mine.count(("car", "truck"))


def expected_calibration_error(pairs: list[tuple[float, bool]]) -> float:
    """ECE over 10 equal-width bins, written out: Σ (n_b / n) |accuracy_b − mean score_b|."""
    bins: dict[int, list[tuple[float, bool]]] = {}
    for score, right in pairs:
        bins.setdefault(min(9, math.floor(score * 10)), []).append((score, right))
    total = 0.0
    for members in bins.values():
        accuracy = sum(right for _, right in members) / len(members)
        confidence = sum(score for score, _ in members) / len(members)
        total += len(members) / len(pairs) * abs(accuracy - confidence)
    return total


def test_calibration_is_the_top_label_expected_calibration_error_per_group_and_overall():
    rng = random.Random(5)
    scored = []
    for index in range(500):
        group = rng.choice("ab")
        score = rng.random()
        # Group a is calibrated; group b is overconfident (right half as often as it says).
        right = rng.random() < (score if group == "a" else score / 2)
        item = make_item(f"i{index}", "cat", {"g": group})
        scored.append(Scored(item, "cat" if right else "dog", not right, score))
    analysis = run(scored, [protected("g", "ab")])
    result = analysis.results[0]
    for group in "ab":
        pairs = [(entry.score, not entry.wrong) for entry in scored if entry.item.values["g"] == group]
        assert result.groups[group].calibration.ece == pytest.approx(expected_calibration_error(pairs), rel=1e-9)
        assert result.groups[group].calibration.n == len(pairs)
    assert result.groups["a"].calibration.ece < 0.1 < result.groups["b"].calibration.ece
    everything = [(entry.score, not entry.wrong) for entry in scored]
    assert analysis.calibration.ece == pytest.approx(expected_calibration_error(everything), rel=1e-9)
    assert sum(b.n for b in analysis.calibration.bins) == 500 and len(analysis.calibration.bins) == 10
    # Without scores there is no calibration.
    unscored = [Scored(entry.item, entry.predicted, entry.wrong) for entry in scored]
    assert run(unscored, [protected("g", "ab")]).calibration is None


def wilson_intervals_overlap(counts: list[tuple[int, int]]) -> bool:
    """The old rule: no flag unless two groups' Wilson intervals are disjoint (statsmodels' Wilson interval)."""
    intervals = [proportion_confint(errors, n, alpha=0.05, method="wilson") for errors, n in counts]
    return max(low for low, _ in intervals) <= min(high for _, high in intervals)


def simulate(rates: list[float], n: int, runs: int, alpha: float, seed: int) -> tuple[int, int]:
    """Runs in which the attribute is flagged, and in which the old interval rule would have flagged it."""
    rng = random.Random(seed)
    values = [f"v{index}" for index in range(len(rates))]
    attribute = [protected("g", values)]
    flagged = old_rule = 0
    for _ in range(runs):
        counts = {value: (n, sum(rng.random() < rate for _ in range(n))) for value, rate in zip(values, rates)}
        flagged += run(scored_groups(counts), attribute, alpha=alpha).results[0].flagged
        old_rule += not wilson_intervals_overlap([(errors, size) for size, errors in counts.values()])
    return flagged, old_rule


def test_a_real_difference_of_10_against_20_percent_is_found_about_half_the_time():
    # 100 items per group, α = 0.05: the two-proportion test's power is 0.518 (exact sum over both binomials);
    # the old interval rule's about 0.22. Over 600 runs the detection rate has a standard error of 0.02:
    # 0.45 is 3.3 standard errors below the power, 0.30 four above the old rule's.
    runs = 600
    flagged, old_rule = simulate([0.1, 0.2], 100, runs, alpha=0.05, seed=16)
    assert flagged / runs >= 0.45
    assert old_rule / runs <= 0.30


def test_nine_groups_with_equal_error_rates_are_rarely_flagged():
    # α = 0.01 and no difference: a valid test flags Binomial(300, ≤ 0.01) runs, so more than 9 (3 %) has
    # probability below 0.002. The old interval rule flagged about 11 % (some 33 runs): the bound tells them apart.
    runs = 300
    flagged, old_rule = simulate([0.15] * 9, 60, runs, alpha=0.01, seed=9)
    assert flagged <= 9
    assert old_rule > 9


def test_small_groups_with_equal_error_rates_are_rarely_flagged_by_the_exact_test():
    # 9 groups of 15 items at 10 %: expected counts below 5, so the permutation test decides. It is exact for
    # any number of permutations, so flags are Binomial(200, ≤ 0.01): more than 6 has probability below 0.005.
    runs = 200
    rng = random.Random(2)
    values = [f"v{index}" for index in range(9)]
    methods, flagged = set(), 0
    for _ in range(runs):
        counts = {value: (15, sum(rng.random() < 0.1 for _ in range(15))) for value in values}
        result = run(scored_groups(counts), [protected("g", values)]).results[0]
        if result.test is not None:
            methods.add(result.test.method)
        flagged += result.flagged
    assert methods == {"permutation"}
    assert flagged <= 6


def test_perfectly_calibrated_scores_have_an_ece_of_exactly_zero():
    # 19 of 20 right at 0.95, 7 of 10 at 0.7: accuracy equals confidence in every bin; the sums left 3e-16.
    pairs = [(0.95, True)] * 19 + [(0.95, False)] + [(0.7, True)] * 7 + [(0.7, False)] * 3
    scored = [
        Scored(make_item(f"i{index}", "cat", {"g": "ab"[index % 2]}), "cat" if right else "dog", not right, score)
        for index, (score, right) in enumerate(pairs)
    ]
    assert run(scored, [protected("g", "ab")]).calibration.ece == 0.0
    # Miscalibration is not rounded away: 0.9 said, all right.
    confident = [Scored(make_item(f"j{index}", "cat", {"g": "a"}), "cat", False, 0.9) for index in range(10)]
    assert run(confident, [protected("g", "ab")]).calibration.ece == pytest.approx(0.1, rel=1e-9)


def test_a_group_of_no_errors_has_a_wilson_interval_from_exactly_zero():
    result = run(scored_groups({"a": (100, 0), "b": (100, 100)}), [protected("g", "ab")]).results[0]
    assert result.groups["a"].low == 0.0 and result.groups["b"].high == 1.0
    assert result.groups["a"].high == pytest.approx(proportion_confint(0, 100, method="wilson")[1], rel=1e-12)


def review_clustered_scores(mixed: bool) -> list[Scored]:
    """The review's example: 40 images of 1 to 40 people, alternately female and male; errors 30 % vs 5 %.

    With `mixed`, the first person of the largest image has the other group: one image of mixed groups.
    """
    rng = random.Random(0)
    scored = []
    for image in range(40):
        group = "female" if image % 2 else "male"
        for person in range(image + 1):
            value = group
            if mixed and image == 39 and person == 0:
                value = "male" if group == "female" else "female"
            item = make_item(f"img{image}#{person}", "person", {"gender": value}, cluster=f"img{image}")
            wrong = rng.random() < (0.3 if value == "female" else 0.05)
            scored.append(Scored(item, "car" if wrong else "person", wrong))
    return scored


@pytest.mark.parametrize("mixed", [False, True])
def test_one_image_of_mixed_groups_does_not_take_the_power_away(mixed):
    # Before, the one mixed image left only shuffles inside images: p = 0.64, not flagged.
    scored = review_clustered_scores(mixed)
    analysis = analyse(Dataset([entry.item for entry in scored], [protected("gender", ["female", "male"])],
                               "per-object"), scored, 0.01)  # fmt: skip
    result = analysis.results[0]
    assert result.test.method == "cluster permutation" and result.test.clusters == 40
    assert result.test.p_value < 0.001 and result.flagged
