"""Pure perpetuals money math: base <-> quote conversion, margin requirements, funding settlement.

State owned: none. Every function takes plain ints and returns ints (or raises); nothing here reads
or writes the store, so the keepers, the order book and the tests all call the same code.

Units (dYdX v4, see the package docstring): quote quantums (1e-6 USDC), base quantums
(10^atomic_resolution coins), oracle price as (price, price_exponent), ppm (1e6 = 100 %), funding index
in 1e-6 quote quantums per base quantum.

Rounding is written at every division (``div_round``) and follows the Go source it mirrors: position
notional truncates toward zero (Go ``big.Int.Quo``), margin requirements round up, the OI-scaled margin
fraction and the maintenance-margin ppm round down, funding settlement rounds toward -inf (Go's Euclidean
``big.Int.Div`` with a positive divisor), i.e. always against the account.

Sources: github.com/dydxprotocol/v4-chain, ``protocol/lib/quantums.go``,
``protocol/x/perpetuals/lib/lib.go``, ``protocol/x/perpetuals/types/liquidity_tier.go``,
``protocol/x/subaccounts/lib/updates.go``. Formulas are restated here, not translated line by line.
"""

from __future__ import annotations

from app.errors import (
    ERR_IMPACT_NOTIONAL_OUT_OF_RANGE,
    ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE,
    ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE,
    ERR_OPEN_INTEREST_CAP_OUT_OF_RANGE,
    ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP,
    AppError,
)
from app.lib.math import ONE_MILLION, UINT64_MAX, Rounding, div_round

QUOTE_ATOMIC_RESOLUTION = -6  # USDC: 1 quote quantum = 1e-6 USDC (dYdX lib.QuoteCurrencyAtomicResolution)
MAX_INITIAL_MARGIN_PPM = ONE_MILLION  # dYdX x/perpetuals/types MaxInitialMarginPpm
MAX_MAINTENANCE_FRACTION_PPM = ONE_MILLION  # dYdX x/perpetuals/types MaxMaintenanceFractionPpm


def _quote_exponent(atomic_resolution: int, price_exponent: int) -> int:
    """k = price_exponent + atomic_resolution - QUOTE_ATOMIC_RESOLUTION (= e + r + 6)."""
    return price_exponent + atomic_resolution - QUOTE_ATOMIC_RESOLUTION


def base_to_quote_quantums(base_quantums: int, atomic_resolution: int, price: int, price_exponent: int) -> int:
    """Value of ``base_quantums`` at the oracle price, in quote quantums (signed; shorts are negative).

    quote = base × price × 10^k with k = price_exponent + atomic_resolution + 6. When k < 0 the division
    by 10^-k truncates toward zero, so a short's value rounds up (toward 0) and
    ``base_to_quote_quantums(-x) == -base_to_quote_quantums(x)``.
    Mirrors dYdX protocol/lib/quantums.go BaseToQuoteQuantums.
    """
    k = _quote_exponent(atomic_resolution, price_exponent)
    product = base_quantums * price
    if k >= 0:
        return product * 10**k
    return div_round(product, 10 ** abs(k), Rounding.TRUNC)


def quote_to_base_quantums(quote_quantums: int, atomic_resolution: int, price: int, price_exponent: int) -> int:
    """Base quantums worth ``quote_quantums`` at the oracle price (signed), truncated toward zero.

    With k as in :func:`base_to_quote_quantums`: multiply by 10^-k when k < 0, else truncate-divide by
    10^k; then truncate-divide by ``price``. Two successive truncations of the same sign equal one.
    Raises ZeroDivisionError when price == 0 (Go panics too; callers never convert at a zero price).
    Mirrors dYdX protocol/lib/quantums.go QuoteToBaseQuantums.
    """
    k = _quote_exponent(atomic_resolution, price_exponent)
    if k < 0:
        scaled = quote_quantums * 10 ** abs(k)
    else:
        scaled = div_round(quote_quantums, 10**k, Rounding.TRUNC)
    return div_round(scaled, price, Rounding.TRUNC)


def net_collateral(position_base_quantums: int, atomic_resolution: int, price: int, price_exponent: int) -> int:
    """Net collateral of one position, in quote quantums: its signed notional, truncated toward zero.

    Mirrors dYdX x/perpetuals/lib/lib.go GetNetNotionalInQuoteQuantums (GetNetCollateralAndMarginRequirements
    adds the position's QuoteBalance; our positions carry none: fills settle into the USDC balance).
    """
    return base_to_quote_quantums(position_base_quantums, atomic_resolution, price, price_exponent)


def maintenance_margin_ppm(initial_margin_ppm: int, maintenance_fraction_ppm: int) -> int:
    """Maintenance margin fraction in ppm: floor(IM × MF / 1e6).

    Used for funding/premium clamps, not for the MMR of a position (see :func:`margin_requirements`).
    Precondition (checked by :func:`validate_liquidity_tier`): both inputs in [0, 1e6].
    Mirrors dYdX x/perpetuals/types/liquidity_tier.go GetMaintenanceMarginPpm.
    """
    return div_round(initial_margin_ppm * maintenance_fraction_ppm, ONE_MILLION, Rounding.FLOOR)


def adjusted_initial_margin_ppm(
    initial_margin_ppm: int,
    open_interest_notional_quote_quantums: int,
    oi_lower_cap_quote_quantums: int,
    oi_upper_cap_quote_quantums: int,
) -> int:
    """Open-interest-scaled initial margin fraction (OIMF) in ppm, rounded down.

    - upper cap == 0 (OIMF off) or OI <= lower cap: IM;
    - OI >= upper cap: 1_000_000 (100 %);
    - else IM + floor((1e6 - IM) × (OI - lower) / (upper - lower)).
    Mirrors dYdX x/perpetuals/types/liquidity_tier.go GetAdjustedInitialMarginPpm. (Older dYdX releases
    kept the scaled fraction as an exact rational and rounded only the final IMR up; current releases,
    and this port, floor the ppm first.)
    """
    if oi_upper_cap_quote_quantums == 0 or open_interest_notional_quote_quantums <= oi_lower_cap_quote_quantums:
        return initial_margin_ppm
    if open_interest_notional_quote_quantums >= oi_upper_cap_quote_quantums:
        return ONE_MILLION
    increase_ppm = div_round(
        (ONE_MILLION - initial_margin_ppm) * (open_interest_notional_quote_quantums - oi_lower_cap_quote_quantums),
        oi_upper_cap_quote_quantums - oi_lower_cap_quote_quantums,
        Rounding.FLOOR,
    )
    return initial_margin_ppm + increase_ppm


def margin_requirements(
    position_base_quantums: int,
    atomic_resolution: int,
    price: int,
    price_exponent: int,
    initial_margin_ppm: int,
    maintenance_fraction_ppm: int,
    oi_lower_cap_quote_quantums: int,
    oi_upper_cap_quote_quantums: int,
    open_interest_base_quantums: int,
) -> tuple[int, int]:
    """(IMR, MMR) of one position, in quote quantums, both rounded up.

    n = |notional| (``base_to_quote_quantums(|q|)``, truncated); OI notional = ``base_to_quote_quantums``
    of the perpetual's open interest (total long size, base quantums);
    base IMR = ceil(n × IM / 1e6); MMR = ceil(base IMR × MF / 1e6) (double ceil, never OI-scaled);
    IMR = ceil(n × OIMF(OI notional) / 1e6).
    Mirrors dYdX x/perpetuals/lib/lib.go GetMarginRequirementsInQuoteQuantums. Deviation: dYdX also takes a
    per-subaccount custom IMF (MsgUpdateLeverage, IMR uses max(OIMF, custom)); this chain has no custom IMF.
    """
    _, initial, maintenance = position_risk(
        position_base_quantums, atomic_resolution, price, price_exponent, initial_margin_ppm,
        maintenance_fraction_ppm, oi_lower_cap_quote_quantums, oi_upper_cap_quote_quantums,
        open_interest_base_quantums,
    )
    return initial, maintenance


def position_risk(
    position_base_quantums: int,
    atomic_resolution: int,
    price: int,
    price_exponent: int,
    initial_margin_ppm: int,
    maintenance_fraction_ppm: int,
    oi_lower_cap_quote_quantums: int,
    oi_upper_cap_quote_quantums: int,
    open_interest_base_quantums: int,
) -> tuple[int, int, int]:
    """(net collateral, IMR, MMR) of one position in quote quantums, in one pass (the collateral check's hot path;
    :func:`margin_requirements` is its last two values). Formulas and roundings as :func:`margin_requirements` states
    them; tests/test_margin_math.py checks them against exact rationals on random inputs.

    One conversion instead of two: the notional is |net collateral|, since the truncating conversion is odd
    (``base_to_quote_quantums(-x) == -base_to_quote_quantums(x)``); the OI notional is converted only for a tier
    with OI scaling (upper cap != 0), the only case :func:`adjusted_initial_margin_ppm` reads it. Roundings as in
    :func:`margin_requirements`: base IMR and MMR up, the OIMF down, the scaled IMR up.
    """
    net = base_to_quote_quantums(position_base_quantums, atomic_resolution, price, price_exponent)
    notional = -net if net < 0 else net
    # ceil(a / 1e6) = -floor(-a / 1e6): div_round(..., CEIL) written inline (the hot path's only divisions)
    base_imr = -(-(notional * initial_margin_ppm) // ONE_MILLION)
    mmr = -(-(base_imr * maintenance_fraction_ppm) // ONE_MILLION)
    if oi_upper_cap_quote_quantums == 0:
        return net, base_imr, mmr
    imf_ppm = adjusted_initial_margin_ppm(
        initial_margin_ppm,
        base_to_quote_quantums(open_interest_base_quantums, atomic_resolution, price, price_exponent),
        oi_lower_cap_quote_quantums,
        oi_upper_cap_quote_quantums,
    )
    return net, div_round(notional * imf_ppm, ONE_MILLION, Rounding.CEIL), mmr


def settlement_ppm(perpetual_funding_index: int, position_funding_index: int, position_base_quantums: int) -> int:
    """Funding owed to (+) or by (-) one position since its last settlement, in 1e-6 quote quantums.

    -(I_perp - I_pos) × q: a long pays when the index rose, a short receives. Exact (no rounding).
    Mirrors dYdX x/perpetuals/lib/lib.go GetSettlementPpmWithPerpetual.
    """
    return -(perpetual_funding_index - position_funding_index) * position_base_quantums


def settle_funding(items: list[tuple[int, int, int]]) -> tuple[int, list[int]]:
    """Settle every position of one subaccount: (USDC delta in quote quantums, reported payment per position).

    ``items`` are (perpetual_funding_index, position_funding_index, position_base_quantums).
    USDC delta = floor(Σ settlement_ppm_i / 1e6): sum first, round once, toward -inf (against the account).
    Reported payment_i = -floor(settlement_ppm_i / 1e6) (positive = the position paid), as dYdX reports them
    to its indexer; the reported payments need not sum to -(USDC delta). Zero for an unchanged index.
    The caller sets each position's funding index to the perpetual's after settling.
    Mirrors dYdX x/subaccounts/lib/updates.go GetSettledSubaccountWithPerpetuals.
    """
    total_settlement_ppm = 0
    payments_quote_quantums: list[int] = []
    for perpetual_funding_index, position_funding_index, position_base_quantums in items:
        settlement = settlement_ppm(perpetual_funding_index, position_funding_index, position_base_quantums)
        total_settlement_ppm += settlement
        payments_quote_quantums.append(-div_round(settlement, ONE_MILLION, Rounding.FLOOR))
    usdc_delta_quote_quantums = div_round(total_settlement_ppm, ONE_MILLION, Rounding.FLOOR)
    return usdc_delta_quote_quantums, payments_quote_quantums


def validate_liquidity_tier(
    initial_margin_ppm: int,
    maintenance_fraction_ppm: int,
    impact_notional: int,
    oi_lower_cap: int,
    oi_upper_cap: int,
) -> None:
    """Raise AppError unless the tier parameters are valid; checks in dYdX's order.

    IM in [0, 1e6] (501), MF in [0, 1e6] (502), impact notional (quote quantums) in [1, 2^64) (503), both OI caps
    (quote quantums) in [0, 2^64) (504), lower cap <= upper cap (505; so a non-zero lower cap with upper cap
    0 is refused even though upper cap 0 disables OI scaling).
    Mirrors dYdX x/perpetuals/types/liquidity_tier.go Validate; the lower bounds and the uint64 bound are
    what Go's unsigned field types enforce for free.
    """
    if not 0 <= initial_margin_ppm <= MAX_INITIAL_MARGIN_PPM:
        raise AppError(ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE, f"initial_margin_ppm {initial_margin_ppm}")
    if not 0 <= maintenance_fraction_ppm <= MAX_MAINTENANCE_FRACTION_PPM:
        raise AppError(
            ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE, f"maintenance_fraction_ppm {maintenance_fraction_ppm}"
        )
    if not 0 < impact_notional <= UINT64_MAX:
        raise AppError(ERR_IMPACT_NOTIONAL_OUT_OF_RANGE, f"impact_notional {impact_notional}")
    for cap in (oi_lower_cap, oi_upper_cap):
        if not 0 <= cap <= UINT64_MAX:
            raise AppError(ERR_OPEN_INTEREST_CAP_OUT_OF_RANGE, f"open interest cap {cap}")
    if oi_lower_cap > oi_upper_cap:
        raise AppError(
            ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP,
            f"open_interest_lower_cap {oi_lower_cap} > open_interest_upper_cap {oi_upper_cap}",
        )
