"""Human units <-> chain integers, exact (no floats)."""

from __future__ import annotations

import re

from app.lib.math import UINT64_MAX

USDC_DECIMALS = 6
_DEC_RE = re.compile(r"^([0-9]+)(?:\.([0-9]*))?$", re.ASCII)  # no other scripts' digits: int("١٢") == 12


class UnitError(ValueError):
    pass


def usdc_to_quote_quantums(text: str) -> int:
    """'12.5' -> 12_500_000. Rejects negatives, more than 6 decimals, zero and > uint64."""
    t = text.strip()
    if t.startswith("-"):
        raise UnitError(f"amount must be positive, got {text!r}")
    m = _DEC_RE.match(t)
    if not m:
        raise UnitError(f"amount {text!r} is not a decimal number of USDC")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > USDC_DECIMALS:
        raise UnitError(f"amount {text!r} has more than {USDC_DECIMALS} decimals (1 quote quantum = 0.000001 USDC)")
    value = int(whole) * 10**USDC_DECIMALS + int(frac.ljust(USDC_DECIMALS, "0") or "0")
    if value == 0:
        raise UnitError("amount must be positive")
    if value > UINT64_MAX:
        raise UnitError(f"amount {text!r} overflows uint64 quote quantums")
    return value


def quote_quantums_to_usdc(n: int) -> str:
    sign = "-" if n < 0 else ""
    q, r = divmod(abs(n), 10**USDC_DECIMALS)
    return f"{sign}{q}.{r:06d}"
