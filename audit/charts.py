"""Charts as PNG bytes, drawn with matplotlib's Agg backend (no display needed).

Every text on a chart (labels, attribute names and values, which come from
the exports) is drawn as written: matplotlib would otherwise read text
between `$` signs as mathtext (and fail to draw a chart on `$x^$`), or hand
it to LaTeX with `text.usetex`. The figure is built with `text.parse_math`
and `text.usetex` off, and each of its text artists is set so again before
it is drawn (`text.parse_math`, matplotlib 3.5 and later).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import matplotlib.text  # noqa: E402

from .output import p_text, significant  # noqa: E402
from .stats import NOT_INFORMATIVE  # noqa: E402

# Colour-blind-safe palette (Okabe & Ito), cycled for attributes with many values.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# The title's colour by state: the report's page colours the states alike.
TITLE_COLOURS = {"flagged": "#B00020", "inconclusive": "#8a5a00"}

# Text from the exports is never mathtext nor LaTeX.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def plain_text(figure) -> None:
    """Draw every text of `figure` literally (tick labels, legend and titles included)."""
    for text in figure.findobj(matplotlib.text.Text):
        text.set_parse_math(False)
        text.set_usetex(False)


def png(figure) -> bytes:
    """The figure as PNG bytes, without a timestamp or version in its metadata; every text drawn literally."""
    try:
        with matplotlib.rc_context(PLAIN_TEXT):
            plain_text(figure)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(figure)
    return buffer.getvalue()


def association_chart(
    attribute: str,
    kind: str,
    table: dict[str, dict[str, int]],
    values: list[str],
    flagged: bool,
    p_value: float | None = None,
    cramers_v: float | None = None,
    *,
    state: str | None = None,
    q_value: float | None = None,
    v_low: float | None = None,
    v_high: float | None = None,
    v_name: str = "V",
) -> bytes:
    """One bar per target label, split into the shares of the attribute's values (audited items only), as PNG.

    The statistics given go into the title, rounded: `state` (flagged,
    inconclusive, ok, not computable; from `flagged` when not given), q and p,
    and V under the name `v_name` (the report gives the bias-corrected one,
    "V corrected") with its 95 % interval `v_low`–`v_high` (when `v_high`
    is None with a `v_low`, the interval said nothing, and the title says so).
    """
    statistics = {"state": state, "q_value": q_value, "v_low": v_low, "v_high": v_high, "v_name": v_name}
    return png(association_figure(attribute, kind, table, values, flagged, p_value, cramers_v, **statistics))


def association_figure(
    attribute: str,
    kind: str,
    table: dict[str, dict[str, int]],
    values: list[str],
    flagged: bool,
    p_value: float | None = None,
    cramers_v: float | None = None,
    *,
    state: str | None = None,
    q_value: float | None = None,
    v_low: float | None = None,
    v_high: float | None = None,
    v_name: str = "V",
):
    """The figure of `association_chart`; every text on it is plain text."""
    with matplotlib.rc_context(PLAIN_TEXT):
        title = chart_title(attribute, kind, flagged, p_value, cramers_v, state, q_value, v_low, v_high, v_name)
        colour = TITLE_COLOURS.get(state or ("flagged" if flagged else ""), "black")
        figure = draw_association(attribute, table, values, title, colour)
        plain_text(figure)
    return figure


def chart_title(
    attribute: str,
    kind: str,
    flagged: bool,
    p_value: float | None,
    cramers_v: float | None,
    state: str | None = None,
    q_value: float | None = None,
    v_low: float | None = None,
    v_high: float | None = None,
    v_name: str = "V",
) -> str:
    """The title: attribute, state, and the statistics given, rounded as on the console (`< 0.001`, 3 figures)."""
    state = state or ("flagged" if flagged else None)
    title = f"{attribute} ({kind}) by target label"
    if state:
        title += f"  —  {state.upper() if state in ('flagged', 'inconclusive') else state}"
    numbers = []
    for name, value in (("q", q_value), ("p", p_value)):
        if value is not None:
            text = p_text(value)
            numbers.append(f"{name} {text}" if text.startswith("<") else f"{name} = {text}")
    if cramers_v is not None:
        interval = ""
        if v_low is not None and v_high is not None:
            interval = f" (95% {significant(v_low)}–{significant(v_high)})"
        elif v_low is not None:
            interval = f" ({NOT_INFORMATIVE})"
        numbers.append(f"{v_name} = {significant(cramers_v)}{interval}")
    return title + ("\n" + ", ".join(numbers) if numbers else "")


def draw_association(
    attribute: str, table: dict[str, dict[str, int]], values: list[str], title: str, title_colour: str
):
    """Draw the association chart on a new figure."""
    labels = [label for label in table if sum(table[label].values()) > 0]
    figure, axes = plt.subplots(figsize=(8, 0.5 * max(len(labels), 2) + 1.3))
    names = [f"{label} (n={sum(table[label].values())})" for label in labels]
    left = [0.0] * len(labels)
    for index, value in enumerate(values):
        shares = []
        for label in labels:
            total = sum(table[label].values())
            shares.append(table[label].get(value, 0) / total if total else 0.0)
        axes.barh(names, shares, left=left, color=PALETTE[index % len(PALETTE)], label=value, edgecolor="white")
        for position, (start, share) in enumerate(zip(left, shares)):
            if share >= 0.08:
                axes.text(start + share / 2, position, f"{share:.0%}", ha="center", va="center", color="white", fontsize=8)
        left = [start + share for start, share in zip(left, shares)]
    axes.set_xlim(0, 1)
    axes.invert_yaxis()
    axes.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axes.set_xlabel(f"share of the label's audited items by {attribute}")
    axes.set_title(title, color=title_colour, loc="left", fontsize=10)
    if values:  # an attribute without values has nothing to tell apart
        axes.legend(title=attribute, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure
