"""Reading one tabular cell: a number (or missing) for numerical columns, a category
key for categorical ones.

CSV cells are strings and JSONL cells are JSON values, so ``"3"``, ``3`` and ``3.0``
must mean the same category, and ``""``, ``null`` and ``"NaN"`` the same missing number.
"""

from __future__ import annotations

import math
from typing import Any

#: Cell texts that mean "no value" in a numerical column (compared lower-cased), as
#: pandas writes and reads them.
MISSING_NUMBER_TEXTS = frozenset({"", "nan", "na", "n/a", "null", "none"})

#: The category of an empty cell: a category like any other, since "no second colour"
#: says something; it is learned when training data has empty cells.
MISSING_CATEGORY = "(missing)"


class NotANumber(ValueError):
    """A numerical cell that holds something other than a number or a missing marker."""


def number_or_missing(value: Any) -> float | None:
    """The number a cell holds, or None when it is missing (None, blank, ``NaN``, ``NA``).

    Raises ``NotANumber`` for text that is not a number, for infinities and for
    lists or objects.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() in MISSING_NUMBER_TEXTS:
            return None
        try:
            number = float(text.replace("_", "x"))  # float() accepts "1_000"; a cell should not
        except ValueError:
            raise NotANumber(value) from None
    else:
        raise NotANumber(value)
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise NotANumber(value)
    return number


def category_key(value: Any) -> str:
    """The category a cell names, as a string: ``3``, ``3.0`` and ``" 3 "`` are all
    ``"3"``; an empty cell is ``MISSING_CATEGORY``."""
    if value is None:
        return MISSING_CATEGORY
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING_CATEGORY
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        return MISSING_CATEGORY
    # "3.0" in one file and "3" in another are the same code.
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else text
