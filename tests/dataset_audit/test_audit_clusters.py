"""The cluster permutation test and the design effect (audit/stats.py), checked independently of the package.

The permutation scheme is recomputed here by complete enumeration on a
small example: every way of dealing the clusters' value profiles out among
them (a donor's values repeated cyclically to the recipient's length) and of
shuffling them inside each recipient, with the chi-square written here. The
level of the test is checked in seeded simulations of null data where the
cluster size goes with the value (the case a shuffle of whole clusters of
all sizes gets wrong: 18 % rejections at α = 0.05, 10 % at 0.01, in the
review that found it), where values vary inside clusters, and in ordinary
clustered data; its power on the review's examples, where one box with
another value made a shuffle-inside-clusters-only test return p = 1. The
design effect is checked against Kish's formula 1 + (m − 1) ρ for clusters
of m items with intra-cluster correlation ρ, and the V interval built on it
by its coverage.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from audit import stats

# --- helpers written here, independent of the package -------------------------------------------------


def chi2_of_pairs(labels: list[str], values: list[str]) -> float:
    """Pearson's chi-square of the label × value table of paired observations; empty rows and columns dropped."""
    row_names, column_names = sorted(set(labels)), sorted(set(values))
    if len(row_names) < 2 or len(column_names) < 2:
        return 0.0
    counts = {(row, column): 0 for row in row_names for column in column_names}
    for label, value in zip(labels, values):
        counts[(label, value)] += 1
    n = len(labels)
    rows = {row: sum(counts[(row, column)] for column in column_names) for row in row_names}
    columns = {column: sum(counts[(row, column)] for row in row_names) for column in column_names}
    return sum(
        (counts[(row, column)] - rows[row] * columns[column] / n) ** 2 / (rows[row] * columns[column] / n)
        for row in row_names
        for column in column_names
    )


def within_monte_carlo_error(estimate: float, exact: float, permutations: int) -> bool:
    """True when a permutation p = (1 + hits)/(B + 1) is within 4 standard errors (and the +1's bias) of `exact`."""
    return abs(estimate - exact) <= 4 * math.sqrt(exact * (1 - exact) / permutations) + 2 / (permutations + 1)


def flatten(clusters: list[tuple[list[str], list[str]]]):
    """(labels, values, cluster names) of clusters given as (labels, values) each."""
    labels = [label for cluster_labels, _ in clusters for label in cluster_labels]
    values = [value for _, cluster_values in clusters for value in cluster_values]
    names = [f"cluster-{index}" for index, (cluster_labels, _) in enumerate(clusters) for _ in cluster_labels]
    return labels, values, names


def rejection_rate(generate, runs: int, alpha: float, seed: int, permutations: int = 199) -> float:
    """The share of `runs` null data sets (from `generate(rng)`) whose cluster permutation p is below `alpha`."""
    generator = np.random.default_rng(seed)
    rejected = 0
    for run in range(runs):
        labels, values, names = generate(generator)
        rejected += stats.association_test(labels, values, names, permutations=permutations, seed=run).p_value < alpha
    return rejected / runs


def clusters_of(generator, sizes, values, share=lambda generator: generator.beta(1, 1)):
    """Clusters of these sizes and (constant) values; each cluster's share of `car` drawn by `share`, not by its value."""
    labels, flat_values, names = [], [], []
    for index, (size, value) in enumerate(zip(sizes, values)):
        car = share(generator)
        for _ in range(size):
            labels.append("car" if generator.random() < car else "pedestrian")
            flat_values.append(value)
            names.append(f"image-{index}")
    return labels, flat_values, names


# --- the permutation scheme, by enumeration ---------------------------------------------------------------


def test_the_cluster_permutation_p_is_the_exact_p_of_dealing_value_profiles_and_shuffling_inside():
    # Five clusters of sizes 3, 2, 3, 2 and 1 (fewer than MIN_BIN: one bin), values varying inside two of them.
    clusters = [
        (["car", "pedestrian", "pedestrian"], ["day", "night", "day"]),
        (["pedestrian", "car"], ["night", "night"]),
        (["car", "pedestrian", "car"], ["day", "day", "day"]),
        (["pedestrian", "car"], ["night", "day"]),
        (["car"], ["day"]),
    ]
    assert len(clusters) < stats.MIN_BIN
    labels, values, names = flatten(clusters)
    observed = chi2_of_pairs(labels, values)
    hits = total = 0
    for donors in itertools.permutations(range(len(clusters))):
        # Recipient r gets donor d's values repeated cyclically to r's size, then every order of them, equally likely.
        laid = []
        for recipient, donor in enumerate(donors):
            donor_values = clusters[donor][1]
            size = len(clusters[recipient][0])
            laid.append([donor_values[position % len(donor_values)] for position in range(size)])
        for orders in itertools.product(*(itertools.permutations(range(len(cluster))) for cluster in laid)):
            dealt = [cluster[position] for cluster, order in zip(laid, orders) for position in order]
            hits += chi2_of_pairs(labels, dealt) >= observed - 1e-9
            total += 1
    exact = hits / total
    permutations = 7999
    result = stats.association_test(labels, values, names, permutations=permutations, seed=4)
    assert result.method == stats.CLUSTER_PERMUTATION and result.permutations == permutations
    assert 0.05 < exact < 0.95  # an example where the permutation distribution is not degenerate
    assert within_monte_carlo_error(result.p_value, exact, permutations), (result.p_value, exact)


def test_clusters_are_binned_by_size_without_splitting_a_size_and_the_largest_are_not_merged_down():
    sizes = np.array([50, 1, 3, 2, 1, 3, 2, 3, 50, 2, 1, 3, 2, 3] + [5] * 25)
    bins = stats.size_bins(sizes)
    as_sizes = [sorted(sizes[members].tolist()) for members in bins]
    # 3 of size 1 + 4 of size 2 + 5 of size 3 = 12 ≥ 10; then the 25 of size 5; the two of 50 stay on their own.
    assert as_sizes == [[1] * 3 + [2] * 4 + [3] * 5, [5] * 25, [50, 50]]
    assert sorted(np.concatenate(bins).tolist()) == list(range(len(sizes)))


# --- the level under the null --------------------------------------------------------------------------------


def review_size_null(generator):
    """The review's null: night = 60 images of 4 boxes, day = 4 images of 60; each image's share of cars ~ Beta(1, 1)."""
    return clusters_of(generator, [4] * 60 + [60] * 4, ["night"] * 60 + ["day"] * 4)


def test_a_value_that_goes_with_cluster_size_is_not_a_false_flag():
    # A shuffle of whole clusters of every size rejected this null 18 % of the time at 0.05, 10 % at 0.01.
    assert rejection_rate(review_size_null, runs=150, alpha=0.05, seed=11) <= 0.08
    # Night and day are never in the same size bin: there is nothing to exchange, p = 1, and a note says why.
    labels, values, names = review_size_null(np.random.default_rng(3))
    result = stats.association_test(labels, values, names, permutations=199)
    assert result.p_value == 1.0
    assert any("goes with cluster size" in note for note in result.notes)


def partly_size_related_null(generator):
    """80 images: small ones (2–5 boxes) mostly at night, large ones (30–60) mostly by day; labels unrelated to either."""
    sizes, values = [], []
    for _ in range(80):
        large = generator.random() < 0.5
        sizes.append(int(generator.integers(30, 61)) if large else int(generator.integers(2, 6)))
        usual, rare = ("day", "night") if large else ("night", "day")
        values.append(usual if generator.random() < 0.8 else rare)
    return clusters_of(generator, sizes, values)


def continuously_size_related_null(generator, flip: float = 0.0):
    """60 images of log-normal sizes, night likelier the larger; with `flip`, each box's value flips with that chance."""
    sizes = np.clip(np.exp(generator.normal(2, 1.2, 60)), 1, 200).astype(int)
    night = generator.random(60) < 1 / (1 + np.exp(-2 * (np.log(sizes) - 2)))
    labels, values, names = clusters_of(
        generator, sizes, np.where(night, "night", "day"), share=lambda generator: generator.beta(0.5, 0.5)
    )
    flipped = generator.random(len(values)) < flip
    values = [("day" if value == "night" else "night") if change else value for value, change in zip(values, flipped)]
    return labels, values, names


@pytest.mark.slow  # a seeded simulation
@pytest.mark.parametrize(
    "generate",
    [partly_size_related_null, continuously_size_related_null, lambda g: continuously_size_related_null(g, flip=0.2)],
    ids=["partly-size-related", "size-related", "size-related-values-vary-inside"],
)
def test_the_level_holds_when_size_and_value_are_related_and_when_values_vary_inside_clusters(generate):
    # Measured with these seeds: 3–5 % at 0.05.
    assert rejection_rate(generate, runs=200, alpha=0.05, seed=17) <= 0.08


# --- power -------------------------------------------------------------------------------------------------


def review_power_example(one_box_differs: bool, images: int = 30):
    """Image k has k + 1 boxes (all sizes differ); even images by day hold 90 % cars, odd ones at night 10 %."""
    generator = np.random.default_rng(0)
    labels, values, names = [], [], []
    for image in range(images):
        day = image % 2 == 0
        for box in range(image + 1):
            labels.append("car" if generator.random() < (0.9 if day else 0.1) else "pedestrian")
            value = "day" if day else "night"
            if one_box_differs and image == images - 1 and box == 0:
                value = "night" if day else "day"
            values.append(value)
            names.append(f"image-{image}")
    return labels, values, names


def test_one_box_with_another_value_does_not_take_the_power_away():
    # Before, one differing box made every cluster shuffle only inside itself: p = 1 for V ≈ 0.85.
    constant = stats.association_test(*review_power_example(False), permutations=1999, seed=1)
    one_differs = stats.association_test(*review_power_example(True), permutations=1999, seed=1)
    assert constant.p_value < 0.001
    assert one_differs.p_value < 0.001 and one_differs.cramers_v > 0.8


def test_an_association_among_images_of_5_to_60_boxes_is_found_with_one_box_differing():
    # 40 images, 80 % cars by day and 20 % at night; one box of the first image says night. Before: median p 0.03.
    generator = np.random.default_rng(2)
    p_values = []
    for run in range(8):
        labels, values, names = [], [], []
        for image in range(40):
            day = image % 2 == 0
            for box in range(int(generator.integers(5, 61))):
                labels.append("car" if generator.random() < (0.8 if day else 0.2) else "pedestrian")
                values.append("night" if (image == 0 and box == 0) or not day else "day")
                names.append(f"image-{image}")
        p_values.append(stats.association_test(labels, values, names, permutations=999, seed=run).p_value)
    assert max(p_values) <= 0.002


# --- the design effect and the V interval ---------------------------------------------------------------------


@pytest.mark.slow  # a seeded simulation
def test_the_design_effect_is_kishs_and_the_v_interval_covers_the_population_v():
    # The review's case: 300 images of 20 boxes, lighting per image; cars are 54 % of a night image's boxes on
    # average and 46 % of a day image's (population V = 0.08, below --min-v 0.1), each image's share drawn from a
    # Beta with concentration 2 (intra-image correlation ρ = 1 / 3). Counting boxes, the interval covered V in 55 %
    # of the runs and 10.5 % were flagged.
    generator = np.random.default_rng(5)
    images, boxes, concentration, shift = 300, 20, 2.0, 0.04
    population_v = shift / 0.5
    kish = 1 + (boxes - 1) / (concentration + 1)
    runs, covered, flagged, effects = 200, 0, 0, []
    for run in range(runs):
        night = generator.random(images) < 0.5
        mean = np.where(night, 0.5 + shift, 0.5 - shift)
        share = generator.beta(mean * concentration, (1 - mean) * concentration)
        labels = np.where(generator.random((images, boxes)) < share[:, None], "car", "pedestrian").ravel()
        values = np.repeat(np.where(night, "night", "day"), boxes)
        names = np.repeat(np.arange(images), boxes).astype(str)
        result = stats.association_test(labels, values, names, permutations=199, seed=run)
        effects.append(result.design_effect)
        # An interval that says nothing (v_high None) covers nothing.
        covered += result.v_high is not None and result.v_low <= population_v <= result.v_high
        flagged += result.p_value < 0.01 and result.v_low >= 0.1
    assert np.mean(effects) == pytest.approx(kish, rel=0.1)
    assert 0.91 <= covered / runs <= 0.98
    assert flagged / runs <= 0.025


def test_independent_items_have_no_design_effect():
    assert stats.table_test([[30, 20], [20, 30]]).design_effect == 1.0
    result = stats.association_test(["a", "b"] * 10, ["x"] * 10 + ["y"] * 10, [f"i{n}" for n in range(20)])
    assert result.design_effect == 1.0


def test_a_lone_large_cluster_is_never_exchanged_and_a_note_says_so():
    # Ten images of 3 boxes, half by day, and one image of 40 boxes: the large one has no image of similar size.
    generator = np.random.default_rng(9)
    labels, values, names = clusters_of(generator, [3] * 10 + [40], ["day", "night"] * 5 + ["night"])
    result = stats.association_test(labels, values, names, permutations=199)
    assert result.notes[0] == (
        "1 of the 11 clusters is in groups of similar size whose clusters all have the same value: they are never "
        "exchanged and add no evidence to the p-value"
    )
