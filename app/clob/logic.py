"""Pure CLOB money math: fill value, oracle price in subticks, trading fees, fee tiers, tick/lot alignment.

State owned: none (plain ints and frozen values in and out).

Units: a price in subticks means quote quantums = subticks × base quantums × 10^QCE, with QCE the CLOB
pair's quantum_conversion_exponent; order sizes in base quantums; fill values and fees in quote quantums
(1e-6 USDC); fee rates in ppm (negative = maker rebate); notional volumes in quote quantums.

Rounding (written at every division): a fill's quote value rounds down, fees round up (toward +inf, so a
rebate rounds toward zero), an oracle price converts to subticks in the direction the caller names.

Sources: github.com/dydxprotocol/v4-chain ``protocol/x/clob/types/quantums.go``,
``protocol/x/clob/types/price_to_subticks.go``, ``protocol/x/clob/keeper/process_single_match.go``,
``protocol/x/feetiers/keeper/keeper.go``, ``protocol/lib/big_math.go``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from app.lib.math import ONE_MILLION, Rounding, div_round

QUOTE_ATOMIC_RESOLUTION = -6  # USDC (dYdX lib.QuoteCurrencyAtomicResolution)


def fill_amount_to_quote_quantums(subticks: int, base_quantums: int, quantum_conversion_exponent: int) -> int:
    """Quote value of a fill of ``base_quantums`` at ``subticks``: subticks × base × 10^QCE, rounded down.

    Inputs are non-negative (floor = trunc); a tiny fill at a tiny price can be worth 0 quote quantums.
    Mirrors dYdX x/clob/types/quantums.go FillAmountToQuoteQuantums.
    """
    product = subticks * base_quantums
    if quantum_conversion_exponent >= 0:
        return product * 10**quantum_conversion_exponent
    return div_round(product, 10 ** abs(quantum_conversion_exponent), Rounding.FLOOR)


def price_to_subticks_rational(
    price: int, price_exponent: int, quantum_conversion_exponent: int, atomic_resolution: int
) -> tuple[int, int]:
    """Oracle price expressed in subticks, exactly, as (numerator, denominator).

    subticks = price × 10^(price_exponent - QCE + atomic_resolution + 6). The fraction is not reduced:
    the denominator is 1 or a power of ten (compare fractions by cross-multiplication).
    Mirrors dYdX x/clob/types/price_to_subticks.go PriceToSubticks (which returns a normalized big.Rat).
    """
    exponent = price_exponent - quantum_conversion_exponent + atomic_resolution - QUOTE_ATOMIC_RESOLUTION
    if exponent >= 0:
        return price * 10**exponent, 1
    return price, 10 ** abs(exponent)


def price_to_subticks(
    price: int, price_exponent: int, quantum_conversion_exponent: int, atomic_resolution: int, rounding: Rounding
) -> int:
    """Oracle price in whole subticks, rounded as the caller asks (see :func:`price_to_subticks_rational`)."""
    numerator, denominator = price_to_subticks_rational(
        price, price_exponent, quantum_conversion_exponent, atomic_resolution
    )
    return div_round(numerator, denominator, rounding)


def fee_quote_quantums(fill_quote_quantums: int, fee_ppm: int) -> int:
    """Trading fee of one side of a fill, in quote quantums: ceil(fill × fee_ppm / 1e6).

    Positive ppm: a fee, rounded up. Negative ppm: a rebate (negative result), rounded toward zero, so
    rounding never favours the trader. Mirrors dYdX x/clob/keeper/process_single_match.go
    persistMatchedOrders (lib.BigMulPpm(fill, ppm, roundUp=true) for both taker and maker).
    """
    return div_round(fill_quote_quantums * fee_ppm, ONE_MILLION, Rounding.CEIL)


@dataclasses.dataclass(frozen=True)
class FeeTier:
    """One perpetual fee tier (dYdX feetiers PerpetualFeeTier); requirements refer to the 30-day window."""

    name: str
    absolute_volume_requirement_quote_quantums: int
    total_volume_share_requirement_ppm: int
    maker_volume_share_requirement_ppm: int
    maker_fee_ppm: int
    taker_fee_ppm: int


def select_fee_tier(
    tiers: Sequence[FeeTier], user_total_notional: int, user_maker_notional: int, global_notional: int
) -> int:
    """Index of the user's fee tier: scan in order, stop at the first tier whose requirements are not met.

    A tier is met when (all notionals in quote quantums over the stats window, total = maker + taker):
    user total >= absolute requirement, user total >= floor(global × total_share_ppm / 1e6) and
    user maker >= floor(global × maker_share_ppm / 1e6). The result is the last tier met before the first
    miss (0 if even tier 0 is missed; tier 0 is meant to have no requirements). Meeting a requirement
    exactly counts as met. Raises ValueError on an empty tier list (an invalid genesis; halts the node).
    Mirrors dYdX x/feetiers/keeper/keeper.go getUserFeeTier, without its vault (always top tier) and
    affiliate-referee (minimum tier) overrides, which are not part of this chain.
    """
    if not tiers:
        raise ValueError("no fee tiers")
    index = 0
    for i, tier in enumerate(tiers):
        total_share_requirement = div_round(
            global_notional * tier.total_volume_share_requirement_ppm, ONE_MILLION, Rounding.FLOOR
        )
        maker_share_requirement = div_round(
            global_notional * tier.maker_volume_share_requirement_ppm, ONE_MILLION, Rounding.FLOOR
        )
        if (
            user_total_notional < tier.absolute_volume_requirement_quote_quantums
            or user_total_notional < total_share_requirement
            or user_maker_notional < maker_share_requirement
        ):
            break
        index = i
    return index


def round_to_multiple(n: int, m: int, up: bool) -> int:
    """The multiple of ``m`` (> 0) nearest to ``n`` from above (``up``) or below; ``n`` itself if aligned.

    Rounds toward +inf / -inf, also for negative ``n`` (-7 -> -6 up, -9 down, for m = 3).
    Raises ValueError if m <= 0 (Go panics). Mirrors dYdX protocol/lib/big_math.go BigIntRoundToMultiple.
    """
    if m <= 0:
        raise ValueError(f"multiple must be positive, got {m}")
    return div_round(n, m, Rounding.CEIL if up else Rounding.FLOOR) * m


def clamp(n: int, lower: int, upper: int) -> int:
    """``n`` bounded to [lower, upper]; if lower > upper: lower when n < lower, else upper.

    Mirrors dYdX protocol/lib/big_math.go BigIntClamp (bigGenericClamp), including its overlap rule.
    """
    if n < lower:
        return lower
    if n > upper:
        return upper
    return n


def is_valid_subticks(subticks: int, subticks_per_tick: int) -> bool:
    """An order price is valid: positive and a multiple of the tick size (``subticks_per_tick`` > 0).

    Mirrors dYdX MsgPlaceOrder.ValidateBasic (subticks != 0) and x/clob/keeper/orders.go
    PerformStatefulOrderValidation (subticks % SubticksPerTick == 0).
    """
    return subticks > 0 and subticks % subticks_per_tick == 0


def is_valid_quantums(quantums: int, step_base_quantums: int) -> bool:
    """An order size or fill amount is valid: positive and a multiple of the lot size (``step_base_quantums`` > 0).

    Mirrors dYdX MsgPlaceOrder.ValidateBasic (quantums != 0) and PerformStatefulOrderValidation /
    ProcessSingleMatch (quantums % StepBaseQuantums == 0).
    """
    return quantums > 0 and quantums % step_base_quantums == 0
