"""Exact decimal text for scaled integers (queries and events; never parsed back on a consensus path)."""

from __future__ import annotations


def format_scaled(value: int, exponent: int) -> str:
    """``value × 10^exponent`` as an exact decimal string without trailing zeros: (123, -2) -> "1.23"."""
    sign = "-" if value < 0 else ""
    digits = str(abs(value))
    if exponent >= 0:
        return sign + digits + "0" * exponent if value else "0"
    places = -exponent
    digits = digits.rjust(places + 1, "0")
    whole, frac = digits[:-places], digits[-places:].rstrip("0")
    return sign + whole + ("." + frac if frac else "")
