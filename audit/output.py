"""Writing results: JSON documents, and numbers as people read them.

JSON and CSV keep full precision; the console and the HTML pages round to
three significant figures and write p- and q-values below 0.001 as `< 0.001`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def write_json(path: Path, document: dict) -> None:
    """A JSON file; non-finite numbers are refused, so statistics must already be None where undefined."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def clean(value):
    """NaN and infinities as None, so the JSON says null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def significant(value, digits: int = 3) -> str:
    """A number rounded to `digits` significant figures, for people; 'n/a' for None.

    Whole numbers (counts) are written as they are; other numbers without an
    exponent unless they are very large or very small.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    if "e" in text:
        exponent = int(text.split("e")[1])
        if -5 <= exponent < 9:
            decimals = max(0, digits - 1 - exponent)
            text = f"{float(text):.{decimals}f}"
    return text


def p_text(value, digits: int = 3) -> str:
    """A p- or q-value for people: `< 0.001` below 0.001, else 3 significant figures; 'n/a' for None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value < 0.001:
        return "< 0.001"
    return significant(value, digits)
