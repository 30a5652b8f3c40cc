"""Checks of option values that several layers share (a leaf: it imports nothing of the package)."""

from __future__ import annotations

import math

__all__ = ["is_positive_number"]


def is_positive_number(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool), finite and above zero."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
