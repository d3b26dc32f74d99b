"""Integer arithmetic with explicit rounding.

Every division on a consensus path goes through :func:`div_round`, so the
rounding direction is always written at the call site. Python's ``//`` floors
(toward -inf) while Go's ``/`` truncates (toward 0): when porting a dYdX
formula, pick the direction the Go code actually uses.
"""

from __future__ import annotations

import enum

UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
ONE_MILLION = 1_000_000


class Rounding(enum.Enum):
    FLOOR = "floor"  # toward -inf
    CEIL = "ceil"  # toward +inf
    TRUNC = "trunc"  # toward zero (Go's integer division)


def div_round(numerator: int, denominator: int, rounding: Rounding) -> int:
    """Return numerator / denominator rounded as asked.

    Raises ZeroDivisionError on a zero denominator (a programming error on a
    consensus path: it halts the node rather than silently diverging).
    """
    if denominator == 0:
        raise ZeroDivisionError("div_round by zero")
    q, r = divmod(numerator, denominator)  # q floors
    if rounding is Rounding.FLOOR:
        return q
    if rounding is Rounding.CEIL:
        return q + 1 if r else q
    if rounding is Rounding.TRUNC:  # floor already truncates when the exact quotient is positive
        return q if r == 0 or (numerator < 0) == (denominator < 0) else q + 1
    raise TypeError(f"div_round: rounding must be a Rounding, got {rounding!r}")


def checked_add_u64(a: int, b: int) -> int | None:
    """a + b if it fits in uint64, else None (caller turns None into a typed error)."""
    s = a + b
    return s if 0 <= s <= UINT64_MAX else None
