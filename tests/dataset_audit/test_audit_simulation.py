"""Seeded simulations of whole reports (issue 16): few false flags under the null, real associations found.

Reports are built in memory (`build_report` on a `Dataset`), as `report`
builds them from exports: Benjamini–Hochberg across the 20 attributes of
each report, and the flag q < alpha with the lower 95 % bound of V at least
0.1 (the defaults).
"""

from __future__ import annotations

import numpy as np

from audit.dataset import Attribute, Dataset, Item
from audit.report import build_report

ALPHA = 0.01
MIN_V = 0.1
ATTRIBUTES = [f"condition-{index:02d}" for index in range(20)]


def simulated_report(labels: np.ndarray, columns: list[np.ndarray]) -> dict:
    """The report of items with these labels ("x"/"y") and binary values ("a"/"b") of the 20 attributes."""
    items = [
        Item(f"item-{index:04d}", str(label), {name: str(column[index]) for name, column in zip(ATTRIBUTES, columns)})
        for index, label in enumerate(labels)
    ]
    attributes = [Attribute(name, "condition", ("a", "b")) for name in ATTRIBUTES]
    return build_report(Dataset(items, attributes, "tag"), [], ALPHA, MIN_V)


def null_columns(generator: np.random.Generator, n: int, count: int) -> list[np.ndarray]:
    """`count` binary attributes drawn independently of everything."""
    return [generator.choice(["a", "b"], n) for _ in range(count)]


def test_null_audits_rarely_flag_anything():
    # 200 audits of 50 items, 2 labels and 20 binary attributes unrelated to the label.
    generator = np.random.default_rng(2024)
    with_a_flag = 0
    for _ in range(200):
        labels = generator.choice(["x", "y"], 50)
        report = simulated_report(labels, null_columns(generator, 50, 20))
        assert report["tests"] == 20 or len(set(labels)) < 2
        with_a_flag += any(entry["flagged"] for entry in report["attributes"])
    assert with_a_flag <= 6


def test_a_planted_association_among_twenty_attributes_is_found():
    # φ = 0.3 between the label and the first attribute: P(b | x) = 0.65, P(b | y) = 0.35, n = 400.
    generator = np.random.default_rng(2025)
    runs, found, false_flags = 50, 0, 0
    for _ in range(runs):
        labels = generator.choice(["x", "y"], 400)
        planted = np.where(generator.random(400) < np.where(labels == "x", 0.65, 0.35), "b", "a")
        report = simulated_report(labels, [planted, *null_columns(generator, 400, 19)])
        found += report["attributes"][0]["flagged"]
        false_flags += sum(entry["flagged"] for entry in report["attributes"][1:])
    assert found >= 0.8 * runs
    assert false_flags <= 2


def test_a_fixed_association_stays_flagged_as_data_grows():
    # φ = 0.2 exactly ([[300, 200], [200, 300]]: (300² − 200²) / 500² = 0.2), at n = 1000 and five times that:
    # plain V never reaches the old gate of 0.3, and the lower bound of V only rises towards 0.2.
    lower_bounds = []
    for scale in (1, 5):
        counts = {("x", "a"): 300, ("x", "b"): 200, ("y", "a"): 200, ("y", "b"): 300}
        items = [
            Item(f"{label}{value}-{index:05d}", label, {"lighting": value})
            for (label, value), count in counts.items()
            for index in range(count * scale)
        ]
        report = build_report(Dataset(items, [Attribute("lighting", "condition", ("a", "b"))], "tag"), [], ALPHA, MIN_V)
        entry = report["attributes"][0]
        assert entry["cramers_v"] < 0.3 and entry["flagged"], entry
        lower_bounds.append(entry["v_low"])
    assert MIN_V <= lower_bounds[0] < lower_bounds[1] < 0.2
