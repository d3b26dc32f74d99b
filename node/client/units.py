"""Human units <-> chain integers, exact (no floats)."""

from __future__ import annotations

import re

from app.lib.math import UINT64_MAX

USDC_DECIMALS = 6
# A plain decimal: '12', '12.', '12.5', '.5'; no sign, exponent, NaN or other scripts' digits (int("١٢") == 12).
# The one grammar of every number the CLI reads (amounts here, sizes, prices and fractions in node/client/market.py).
DECIMAL_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$", re.ASCII)
_MAX_WHOLE_DIGITS = len(str(UINT64_MAX))  # more significant digits than this always overflow


class UnitError(ValueError):
    pass


def usdc_to_quote_quantums(text: str) -> int:
    """'12.5' -> 12_500_000. Rejects negatives, more than 6 decimals, zero and > uint64."""
    t = text.strip()
    if t.startswith("-"):
        raise UnitError(f"amount must be positive, got {clip_text(text)}")
    if not DECIMAL_RE.match(t):
        raise UnitError(f"amount {clip_text(text)} is not a decimal number of USDC")
    whole, _, frac = t.partition(".")
    whole = whole.lstrip("0")
    frac = frac.rstrip("0")  # trailing zeros are not decimals of the value ('2.50000000' is 2.5), as for sizes
    if len(whole) > _MAX_WHOLE_DIGITS:  # before int(): Python refuses to parse over 4300 digits
        raise UnitError(f"amount {clip_text(t)} overflows uint64 quote quantums")
    if len(frac) > USDC_DECIMALS:
        raise UnitError(f"amount {clip_text(text)} has more than {USDC_DECIMALS} decimals "
                        "(1 quote quantum = 0.000001 USDC)")
    value = int(whole or "0") * 10**USDC_DECIMALS + int(frac.ljust(USDC_DECIMALS, "0"))
    if value == 0:
        raise UnitError("amount must be positive")
    if value > UINT64_MAX:
        raise UnitError(f"amount {clip_text(text)} overflows uint64 quote quantums")
    return value


def clip_text(text: str, keep: int = 24) -> str:
    """``text`` quoted, cut to ``keep`` characters (a 5000-digit number is not repeated back in full)."""
    return repr(text) if len(text) <= keep else f"'{text[:keep]}…' ({len(text)} characters)"


def quote_quantums_to_usdc(n: int) -> str:
    sign = "-" if n < 0 else ""
    q, r = divmod(abs(n), 10**USDC_DECIMALS)
    return f"{sign}{q}.{r:06d}"
