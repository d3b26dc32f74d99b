"""Margin, conversion and funding math (app/perpetuals/logic.py, app/subaccounts/logic.py).

Vectors marked "dYdX <file> <case>" are lifted from github.com/dydxprotocol/v4-chain Go tests (the expected
values are theirs); the others are worked out by hand in the comment next to them. Negative sizes (shorts)
appear wherever truncation toward zero and flooring would differ.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import (
    ERR_IMPACT_NOTIONAL_OUT_OF_RANGE,
    ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE,
    ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE,
    ERR_OPEN_INTEREST_CAP_OUT_OF_RANGE,
    ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP,
    AppError,
)
from app.perpetuals.logic import (
    adjusted_initial_margin_ppm,
    base_to_quote_quantums,
    maintenance_margin_ppm,
    margin_requirements,
    net_collateral,
    position_risk,
    quote_to_base_quantums,
    settle_funding,
    settlement_ppm,
    validate_liquidity_tier,
)
from app.subaccounts.logic import (
    ZERO_RISK,
    CollateralCheck,
    Risk,
    check_undercollateralized_transition,
    check_update,
    check_withdrawal,
    risk_cmp,
)

U64 = 2**64 - 1
QUANTUMS_TEST = "dYdX protocol/lib/quantums_test.go"
LT_TEST = "dYdX protocol/x/perpetuals/types/liquidity_tier_test.go"
PERP_LIB_TEST = "dYdX protocol/x/perpetuals/lib/lib_test.go"
RISK_TEST = "dYdX protocol/lib/margin/risk_test.go"
UPDATES_TEST = "dYdX protocol/x/subaccounts/lib/updates_test.go"


# --- base <-> quote --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_quantums", "atomic_resolution", "price", "price_exponent", "expected_quote_quantums"),
    [
        pytest.param(1, -6, 1, 1, 10, id=f"{QUANTUMS_TEST} TestBaseToQuoteQuantums: converts from base to quote"),
        pytest.param(-100, -6, 1, 1, -1000, id=f"{QUANTUMS_TEST}: correctly converts negative value"),
        pytest.param(5_000_000, -6, 7, -5, 350, id=f"{QUANTUMS_TEST}: priceExponent is negative"),
        pytest.param(5_000_000, -6, 7, 0, 35_000_000, id=f"{QUANTUMS_TEST}: priceExponent is zero"),
        pytest.param(5_000_000, -8, 7, 0, 350_000, id=f"{QUANTUMS_TEST}: atomic resolution below -6"),
        pytest.param(5_000_000, -4, 7, 1, 35_000_000_000, id=f"{QUANTUMS_TEST}: atomic resolution above -6"),
        pytest.param(9, -8, 1, 1, 0, id=f"{QUANTUMS_TEST}: calculation rounds down (0.9 -> 0)"),
        pytest.param(-9, -8, 1, 1, 0, id=f"{QUANTUMS_TEST}: negative calculation rounds up (-0.9 -> 0, floor gives -1)"),
        pytest.param(-15, -8, 1, 1, -1, id="short worth -1.5 quote quantums truncates to -1 (floor would give -2)"),
        pytest.param(15, -8, 1, 1, 1, id="long worth 1.5 quote quantums truncates to 1"),
        pytest.param(U64, -6, 2, 0, 36893488147419103230, id=f"{QUANTUMS_TEST}: calculation overflows uint64"),
        pytest.param(-U64, -6, 2, 0, -36893488147419103230, id=f"{QUANTUMS_TEST}: calculation underflows int64"),
        pytest.param(
            1234123412341, -8, 18446744073709551610, -10, 22765558742827551059,
            id=f"{QUANTUMS_TEST} BenchmarkBaseToQuoteQuantums: exponent -10",
        ),
        pytest.param(
            1234123412341, -8, 18446744073709551610, 10, 2276555874282755105905825041901000000000,
            id=f"{QUANTUMS_TEST} BenchmarkBaseToQuoteQuantums: exponent +10",
        ),
        pytest.param(
            10_000_000_000, -10, 5_000_000_000, -5, 50_000_000_000,
            id="1 BTC (atomic -10) at $50,000 (price 5e9, exp -5) is 50,000 USDC",
        ),
    ],
)
def test_base_to_quote_quantums(base_quantums, atomic_resolution, price, price_exponent, expected_quote_quantums):
    assert base_to_quote_quantums(base_quantums, atomic_resolution, price, price_exponent) == expected_quote_quantums


@pytest.mark.parametrize(
    ("quote_quantums", "atomic_resolution", "price", "price_exponent", "expected_base_quantums"),
    [
        pytest.param(10, -6, 1, 1, 1, id=f"{QUANTUMS_TEST} TestQuoteToBaseQuantums: converts"),
        pytest.param(-1000, -6, 1, 1, -100, id=f"{QUANTUMS_TEST}: correctly converts negative value"),
        pytest.param(350, -6, 7, -5, 5_000_000, id=f"{QUANTUMS_TEST}: priceExponent is negative"),
        pytest.param(35_000_000, -6, 7, 0, 5_000_000, id=f"{QUANTUMS_TEST}: priceExponent is zero"),
        pytest.param(
            29_001_000_000, -10, 2_900_100_000, -5, 10_000_000_000, id=f"{QUANTUMS_TEST}: 1 BTC at $29001"
        ),
        pytest.param(
            728_592_123_000, -10, 2_900_100_000, -5, 251_230_000_000, id=f"{QUANTUMS_TEST}: 25.123 BTC at $29001"
        ),
        pytest.param(350_000, -8, 7, 0, 5_000_000, id=f"{QUANTUMS_TEST}: atomic resolution below -6"),
        pytest.param(35_000_000_000, -4, 7, 1, 5_000_000, id=f"{QUANTUMS_TEST}: atomic resolution above -6"),
        pytest.param(99, -6, 1, 1, 9, id=f"{QUANTUMS_TEST}: calculation rounds down (9.9 -> 9)"),
        pytest.param(-99, -6, 1, 1, -9, id=f"{QUANTUMS_TEST}: negative calculation rounds up (-9.9 -> -9)"),
        pytest.param(U64, -7, 1, 0, 184467440737095516150, id=f"{QUANTUMS_TEST}: calculation overflows"),
        pytest.param(-U64, -7, 1, 0, -184467440737095516150, id=f"{QUANTUMS_TEST}: calculation underflows"),
        pytest.param(
            18446744073709551610, -8, 1234123412341, -10, 14947244245790664347,
            id=f"{QUANTUMS_TEST} BenchmarkQuoteToBaseQuantums: exponent -10",
        ),
        pytest.param(
            18446744073709551610, -8, 1234123412341, 6, 1494,
            id=f"{QUANTUMS_TEST} BenchmarkQuoteToBaseQuantums: exponent 6 (two truncating divisions)",
        ),
        pytest.param(-23, -6, 2, 0, -11, id="short: -23 / 2 = -11.5 truncates to -11 (floor gives -12)"),
        pytest.param(-25, -5, 1, 0, -2, id="short, k = +1: -25 / 10 = -2.5 truncates to -2"),
    ],
)
def test_quote_to_base_quantums(quote_quantums, atomic_resolution, price, price_exponent, expected_base_quantums):
    assert quote_to_base_quantums(quote_quantums, atomic_resolution, price, price_exponent) == expected_base_quantums


def test_quote_to_base_at_zero_price_raises():
    with pytest.raises(ZeroDivisionError):
        quote_to_base_quantums(1_000, -6, 0, 0)


@pytest.mark.parametrize(
    ("position_base_quantums", "expected_quote_quantums"),
    [
        pytest.param(0, 0, id=f"{PERP_LIB_TEST} TestGetNetNotionalInQuoteQuantums: zero quantums"),
        pytest.param(1_000_000_000_000, 123_456_789, id=f"{PERP_LIB_TEST}: positive quantums (123456789.123 -> down)"),
        pytest.param(
            -1_000_000_000_000, -123_456_789, id=f"{PERP_LIB_TEST}: negative quantums (-123456789.123 -> toward 0)"
        ),
    ],
)
def test_net_collateral(position_base_quantums, expected_quote_quantums):
    # dYdX test perpetual: atomic resolution -16, price 123_456_789_123 at exponent -5.
    assert net_collateral(position_base_quantums, -16, 123_456_789_123, -5) == expected_quote_quantums


# The reference oracle of the properties: the exact rational value, truncated toward zero.
def _exact_quote(base_quantums: int, atomic_resolution: int, price: int, price_exponent: int) -> Fraction:
    return Fraction(base_quantums * price) * Fraction(10) ** (price_exponent + atomic_resolution + 6)


def _trunc(x: Fraction) -> int:
    return x.numerator // x.denominator if x >= 0 else -((-x.numerator) // x.denominator)


conversion_args = st.tuples(
    st.integers(-(10**22), 10**22),  # base or quote quantums, signed
    st.integers(-18, 4),  # atomic resolution
    st.integers(1, U64),  # price
    st.integers(-12, 4),  # price exponent
)


@settings(max_examples=400, deadline=None)
@given(conversion_args)
def test_base_to_quote_is_the_exact_value_truncated_toward_zero(args):
    base_quantums, atomic_resolution, price, price_exponent = args
    quote_quantums = base_to_quote_quantums(base_quantums, atomic_resolution, price, price_exponent)
    assert quote_quantums == _trunc(_exact_quote(base_quantums, atomic_resolution, price, price_exponent))
    assert base_to_quote_quantums(-base_quantums, atomic_resolution, price, price_exponent) == -quote_quantums


@settings(max_examples=400, deadline=None)
@given(conversion_args)
def test_quote_to_base_is_the_exact_inverse_truncated_toward_zero(args):
    quote_quantums, atomic_resolution, price, price_exponent = args
    base_quantums = quote_to_base_quantums(quote_quantums, atomic_resolution, price, price_exponent)
    exact = Fraction(quote_quantums) / (Fraction(price) * Fraction(10) ** (price_exponent + atomic_resolution + 6))
    assert base_quantums == _trunc(exact)
    assert quote_to_base_quantums(-quote_quantums, atomic_resolution, price, price_exponent) == -base_quantums


@settings(max_examples=400, deadline=None)
@given(conversion_args)
def test_round_trips_never_grow_and_keep_the_sign(args):
    amount, atomic_resolution, price, price_exponent = args
    there = base_to_quote_quantums(amount, atomic_resolution, price, price_exponent)
    back = quote_to_base_quantums(there, atomic_resolution, price, price_exponent)
    assert abs(back) <= abs(amount) and back * amount >= 0
    base = quote_to_base_quantums(amount, atomic_resolution, price, price_exponent)
    again = base_to_quote_quantums(base, atomic_resolution, price, price_exponent)
    assert abs(again) <= abs(amount) and again * amount >= 0


# --- liquidity tier ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial_margin_ppm", "maintenance_fraction_ppm", "expected_ppm"),
    [
        pytest.param(150_000, 800_000, 120_000, id=f"{LT_TEST} GetMaintenanceMarginPpm: 15% IM, 80% MF"),
        pytest.param(450_000, 770_000, 346_500, id=f"{LT_TEST}: 45% IM, 77% MF"),
        pytest.param(637_239, 289_284, 184_343, id=f"{LT_TEST}: 63.7239% IM, 28.9284% MF (184343.05 floors)"),
        pytest.param(1_000_000, 1_000_000, 1_000_000, id=f"{LT_TEST}: 100% IM, 100% MF"),
        pytest.param(0, 1_000_000, 0, id=f"{LT_TEST}: 0% IM, 100% MF"),
        pytest.param(0, 0, 0, id=f"{LT_TEST}: 0% IM, 0% MF"),
        pytest.param(1_000_000, 0, 0, id=f"{LT_TEST}: 100% IM, 0% MF"),
        pytest.param(3, 999_999, 2, id="2.999997 ppm floors to 2"),
    ],
)
def test_maintenance_margin_ppm(initial_margin_ppm, maintenance_fraction_ppm, expected_ppm):
    assert maintenance_margin_ppm(initial_margin_ppm, maintenance_fraction_ppm) == expected_ppm


@pytest.mark.parametrize(
    ("initial_margin_ppm", "oi_notional", "lower_cap", "upper_cap", "expected_ppm"),
    [
        pytest.param(200_000, 0, 1_000_000, 2_000_000, 200_000, id=f"{LT_TEST} GetAdjustedIMPpm: zero OI"),
        pytest.param(200_000, 1_500_000, 1_000_000, 2_000_000, 600_000, id=f"{LT_TEST}: OI within bounds"),
        pytest.param(
            200_000, 1_234_567, 1_000_000, 2_000_000, 387_653,
            id=f"{LT_TEST}: OI within bounds, rounded (387653.6 floors)",
        ),
        pytest.param(200_000, 1_000_000, 1_000_000, 2_000_000, 200_000, id=f"{LT_TEST}: OI at lower bound"),
        pytest.param(200_000, 2_000_000, 1_000_000, 2_000_000, 1_000_000, id=f"{LT_TEST}: OI at upper bound"),
        pytest.param(200_000, 2_500_000, 1_000_000, 2_000_000, 1_000_000, id=f"{LT_TEST}: OI above upper bound"),
        pytest.param(200_000, 1_500_000, 0, 0, 200_000, id=f"{LT_TEST}: no upper bound, no increase"),
        pytest.param(200_000, 999_999, 1_000_000, 2_000_000, 200_000, id="OI just below the lower cap"),
        pytest.param(200_000, 1_000_001, 1_000_000, 2_000_000, 200_000, id="OI one above the lower cap: +0.8 floors"),
        pytest.param(200_000, 1_999_999, 1_000_000, 2_000_000, 999_999, id="OI one below the upper cap: 999999.2"),
        pytest.param(200_000, 10**15, 5, 0, 200_000, id="upper cap 0 disables scaling whatever the lower cap"),
        pytest.param(50_000, 3_000_000, 0, 10_000_000, 335_000, id="lower cap 0: 50000 + 950000 x 0.3"),
    ],
)
def test_adjusted_initial_margin_ppm(initial_margin_ppm, oi_notional, lower_cap, upper_cap, expected_ppm):
    assert adjusted_initial_margin_ppm(initial_margin_ppm, oi_notional, lower_cap, upper_cap) == expected_ppm


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 1_000_000),
    st.integers(0, 10**16),
    st.integers(0, 10**16),
    st.integers(0, 10**16),
    st.integers(0, 10**16),
)
def test_adjusted_initial_margin_is_monotone_between_base_and_one(im_ppm, lower, width, oi_a, oi_b):
    upper = lower + width
    low_oi, high_oi = sorted((oi_a, oi_b))
    at_low = adjusted_initial_margin_ppm(im_ppm, low_oi, lower, upper)
    at_high = adjusted_initial_margin_ppm(im_ppm, high_oi, lower, upper)
    assert im_ppm <= at_low <= at_high <= 1_000_000


@pytest.mark.parametrize(
    ("initial_margin_ppm", "maintenance_fraction_ppm", "impact_notional", "lower_cap", "upper_cap", "error"),
    [
        pytest.param(150_000, 800_000, 3_333_000_000, 0, 0, None, id=f"{LT_TEST} Validate: validates successfully"),
        pytest.param(
            1_000_001, 800_000, 1_000_000_000, 0, 0, ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE,
            id=f"{LT_TEST}: initial margin ppm exceeds max",
        ),
        pytest.param(
            1_000_000, 1_000_001, 1_000_000_000, 0, 0, ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE,
            id=f"{LT_TEST}: maintenance fraction ppm exceeds max",
        ),
        pytest.param(
            1_000_000, 1_000_000, 0, 0, 0, ERR_IMPACT_NOTIONAL_OUT_OF_RANGE, id=f"{LT_TEST}: impact notional is zero"
        ),
        pytest.param(
            150_000, 800_000, 3_333_000_000, 1_000_000, 500_000, ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP,
            id=f"{LT_TEST}: lower cap is larger than upper cap",
        ),
        pytest.param(
            150_000, 800_000, 3_333_000_000, 1_000_000, 0, ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP,
            id=f"{LT_TEST}: lower cap is larger than upper cap (upper cap is zero)",
        ),
        pytest.param(1_000_000, 1_000_000, 1, 7, 7, None, id="both ppm at their maximum, equal caps: valid"),
        pytest.param(0, 0, U64, 0, U64, None, id="zero margins, largest impact notional and cap: valid"),
        pytest.param(-1, 0, 1, 0, 0, ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE, id="negative initial margin ppm"),
        pytest.param(0, -1, 1, 0, 0, ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE, id="negative maintenance fraction"),
        pytest.param(0, 0, -5, 0, 0, ERR_IMPACT_NOTIONAL_OUT_OF_RANGE, id="negative impact notional"),
        pytest.param(0, 0, U64 + 1, 0, 0, ERR_IMPACT_NOTIONAL_OUT_OF_RANGE, id="impact notional above uint64"),
        pytest.param(0, 0, 1, -1, 0, ERR_OPEN_INTEREST_CAP_OUT_OF_RANGE, id="negative lower cap"),
        pytest.param(0, 0, 1, 0, U64 + 1, ERR_OPEN_INTEREST_CAP_OUT_OF_RANGE, id="upper cap above uint64"),
        pytest.param(
            1_000_001, 1_000_001, 0, 2, 1, ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE,
            id="several faults: initial margin is reported first, as in dYdX",
        ),
        pytest.param(
            5, 1_000_001, 0, 2, 1, ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE,
            id="maintenance fraction is checked before impact notional",
        ),
        pytest.param(5, 5, 0, 2, 1, ERR_IMPACT_NOTIONAL_OUT_OF_RANGE, id="impact notional is checked before the caps"),
    ],
)
def test_validate_liquidity_tier(initial_margin_ppm, maintenance_fraction_ppm, impact_notional, lower_cap, upper_cap, error):
    if error is None:
        validate_liquidity_tier(initial_margin_ppm, maintenance_fraction_ppm, impact_notional, lower_cap, upper_cap)
        return
    with pytest.raises(AppError) as raised:
        validate_liquidity_tier(initial_margin_ppm, maintenance_fraction_ppm, impact_notional, lower_cap, upper_cap)
    assert raised.value.error is error
    assert raised.value.codespace == "perpetuals" and 501 <= raised.value.code <= 519
    assert MESSAGE_NAMES[error] in raised.value.message  # the log says which field is wrong


MESSAGE_NAMES = {
    ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE: "initial_margin_ppm",
    ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE: "maintenance_fraction_ppm",
    ERR_IMPACT_NOTIONAL_OUT_OF_RANGE: "impact_notional",
    ERR_OPEN_INTEREST_CAP_OUT_OF_RANGE: "open interest cap",
    ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP: "open_interest_lower_cap",
}


# --- margin requirements -----------------------------------------------------------------------------------

# (position, atomic resolution, price, exponent, IM ppm, MF ppm, lower cap, upper cap, OI base) -> (IMR, MMR)
MARGIN_CASES = [
    # dYdX TestGetMarginRequirementsInQuoteQuantums: atomic resolution 4, price 123_456_789_123 exp -5,
    # OI 1e12, IM 20 %, MF 50 %; notional of one base quantum = 12_345_678_912_300_000.
    pytest.param((0, 4, 123_456_789_123, -5, 200_000, 500_000, 0, 0, 10**12), (0, 0),
                 id=f"{PERP_LIB_TEST} TestGetMarginRequirementsInQuoteQuantums: zero quantums"),
    pytest.param((1, 4, 123_456_789_123, -5, 200_000, 500_000, 0, 0, 10**12),
                 (2469135782460000, 1234567891230000), id=f"{PERP_LIB_TEST}: positive quantums"),
    pytest.param((-1, 4, 123_456_789_123, -5, 200_000, 500_000, 0, 0, 10**12),
                 (2469135782460000, 1234567891230000), id=f"{PERP_LIB_TEST}: negative quantums"),
    pytest.param((1, 4, 123_456_789_123, -5, 200_000, 500_000, 10**12, 2 * 10**12, 10**12),
                 (12345678912300000, 1234567891230000), id=f"{PERP_LIB_TEST}: positive quantums, OI above cap"),
    pytest.param((-1, 4, 123_456_789_123, -5, 200_000, 500_000, 10**12, 2 * 10**12, 10**12),
                 (12345678912300000, 1234567891230000), id=f"{PERP_LIB_TEST}: negative quantums, OI above cap"),
    # dYdX TestGetMarginRequirementsInQuoteQuantums_2.
    pytest.param((7_000, -4, 55_550, -1, 10_000, 500_000, 0, 0, 0), (38_885_000, 19_442_500),
                 id=f"{PERP_LIB_TEST} _2: IM 100 bips, MM 50 bips, atomic resolution 4"),
    pytest.param((-5_000, -6, 42_000_000, -2, 10_000, 500_000, 0, 0, 0), (21_000_000, 10_500_000),
                 id=f"{PERP_LIB_TEST} _2: IM 100 bips, MM 50 bips, negative exponent, short"),
    pytest.param((7_000, -6, 55_550, -1, 1_000_000, 1_000_000, 0, 0, 0), (38_885_000, 38_885_000),
                 id=f"{PERP_LIB_TEST} _2: IM 10_000 bips (max), MM 10_000 bips (max)"),
    pytest.param((7_000, -6, 55_550, -1, 10_000, 1_000_000, 0, 0, 0), (388_850, 388_850),
                 id=f"{PERP_LIB_TEST} _2: IM 100 bips, MM 100 bips"),
    pytest.param((7_000, -6, 55_550, -1, 0, 1_000_000, 0, 0, 0), (0, 0),
                 id=f"{PERP_LIB_TEST} _2: IM 0 bips (min), MM 0 bips (min)"),
    pytest.param((-7_000, -6, 0, -1, 100, 1_000_000, 0, 0, 0), (0, 0), id=f"{PERP_LIB_TEST} _2: price is zero"),
    pytest.param((U64, -6, U64, -1, 100, 1_000_000, 0, 0, 0),
                 (3402823669209384634264811192843492, 3402823669209384634264811192843492),
                 id=f"{PERP_LIB_TEST} _2: price and quantums are max uints"),
    pytest.param((7_000, -6, 55_550, -1, 10_000, 500_000, 0, 0, 0), (388_850, 194_425),
                 id=f"{PERP_LIB_TEST} _2: IM 100 bips, MM 50 bips, atomic resolution 6"),
    pytest.param((12_000, -6, 367_500, -1, 200_000, 500_000, 0, 0, 0), (88_200_000, 44_100_000),
                 id=f"{PERP_LIB_TEST} _2: IM 20%, MM 10%"),
    pytest.param((74_523, -6, 1_234_560, -1, 50_000, 600_000, 0, 0, 0), (460_015_575, 276_009_345),
                 id=f"{PERP_LIB_TEST} _2: IM 5%, MM 3% (460015574.4 rounds up)"),
    pytest.param((74_523, -6, 1_234_560, -1, 250_000, 600_000, 0, 0, 0), (2_300_077_872, 1_380_046_724),
                 id=f"{PERP_LIB_TEST} _2: IM 25%, MM 15% (MMR 1380046723.2 rounded up)"),
    pytest.param((12_000, -6, 367_500, -1, 200_000, 500_000, 10**13, 2 * 10**13, 408_163_265),
                 (264_599_559, 44_100_000), id=f"{PERP_LIB_TEST} _2: OIMF IM 20% scaled to 599_999 ppm (floored)"),
    pytest.param((12_000, -6, 367_500, -1, 200_000, 500_000, 10**13, 2 * 10**13, 1_000_000_000),
                 (441_000_000, 44_100_000), id=f"{PERP_LIB_TEST} _2: OIMF IM 20% scaled to 100%"),
    pytest.param((12_000, -6, 367_500, -1, 200_000, 500_000, 25 * 10**12, 50 * 10**12, 1_123_456_789),
                 (318_042_585, 44_100_000), id=f"{PERP_LIB_TEST} _2: OIMF realistic OI between the caps"),
    # Hand-worked, price 1 exp 0 atomic -6 so notional = size: OI caps 1e6 / 2e6, IM 20 %, MF 50 %.
    pytest.param((1_000_000, -6, 1, 0, 200_000, 500_000, 1_000_000, 2_000_000, 0), (200_000, 100_000),
                 id="OI 0, below the lower cap: IMF = IM"),
    pytest.param((1_000_000, -6, 1, 0, 200_000, 500_000, 1_000_000, 2_000_000, 1_000_000), (200_000, 100_000),
                 id="OI at the lower cap: IMF = IM"),
    pytest.param((1_000_001, -6, 1, 0, 200_000, 500_000, 1_000_000, 2_000_000, 1_234_567), (387_654, 100_001),
                 id="OI between caps: IMF 387653, IMR ceil(387653.39) = 387654; MMR ceil(ceil(200000.2) x 0.5)"),
    pytest.param((-1_000_001, -6, 1, 0, 200_000, 500_000, 1_000_000, 2_000_000, 1_234_567), (387_654, 100_001),
                 id="short between caps: same requirements as the long"),
    pytest.param((1_000_000, -6, 1, 0, 200_000, 500_000, 1_000_000, 2_000_000, 2_000_000), (1_000_000, 100_000),
                 id="OI at the upper cap: IMR = notional, MMR unscaled"),
    pytest.param((1_000_000, -6, 1, 0, 200_000, 500_000, 1_000_000, 2_000_000, 9_000_000), (1_000_000, 100_000),
                 id="OI above the upper cap: IMR = notional"),
    pytest.param((1_000_000, -6, 1, 0, 200_000, 500_000, 0, 0, 9_000_000), (200_000, 100_000),
                 id="upper cap 0: OI scaling off"),
    pytest.param((11, -6, 1, 0, 100_000, 600_000, 0, 0, 0), (2, 2),
                 id="double ceil: base IMR ceil(1.1) = 2, MMR ceil(2 x 0.6) = 2 (single ceil of 11 x 6% gives 1)"),
    pytest.param((-15, -8, 1, 1, 1_000_000, 1_000_000, 0, 0, 0), (1, 1),
                 id="notional of |q| truncates: |-15| worth 1.5 -> 1 quote quantum"),
    pytest.param((1_000_000, -6, 3, 0, 200_000, 500_000, 1_000_000, 2_000_000, 400_000), (1_080_000, 300_000),
                 id="OI valued at the oracle price: 400000 x 3 = 1.2e6 -> IMF 360000, IMR 3e6 x 36%"),
]


@pytest.mark.parametrize(("args", "expected"), MARGIN_CASES)
def test_margin_requirements(args, expected):
    assert margin_requirements(*args) == expected


margin_args = st.tuples(
    st.integers(-(10**15), 10**15),  # position
    st.integers(-12, 0),  # atomic resolution
    st.integers(0, 10**12),  # price
    st.integers(-10, 0),  # price exponent
    st.integers(0, 1_000_000),  # IM
    st.integers(0, 1_000_000),  # MF
    st.integers(0, 10**14),  # lower cap
    st.integers(0, 10**14),  # cap width
    st.integers(0, 10**16),  # OI base
)


@settings(max_examples=400, deadline=None)
@given(margin_args)
def test_margin_requirements_bounds_and_symmetry(args):
    position, resolution, price, exponent, im_ppm, mf_ppm, lower, width, oi = args
    imr, mmr = margin_requirements(position, resolution, price, exponent, im_ppm, mf_ppm, lower, lower + width, oi)
    notional = abs(net_collateral(position, resolution, price, exponent))
    assert 0 <= mmr <= imr <= notional
    # IMR is the smallest integer covering notional x IMF (IMF >= IM); MMR covers notional x IM x MF.
    assert imr * 1_000_000 >= notional * im_ppm
    assert mmr * 10**12 >= notional * im_ppm * mf_ppm
    assert margin_requirements(-position, resolution, price, exponent, im_ppm, mf_ppm, lower, lower + width, oi) == (
        imr,
        mmr,
    )


# --- funding -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("perpetual_index", "position_index", "position_base_quantums", "expected_ppm"),
    [
        pytest.param(4_000_000_000, 4_000_000_000, 1_000_000, 0, id=f"{PERP_LIB_TEST} GetSettlementPpm: zero indexDelta"),
        pytest.param(123_456_789_123, 100_000_000_000, 1_000_000, -23_456_789_123_000_000,
                     id=f"{PERP_LIB_TEST}: positive indexDelta, positive quantums"),
        pytest.param(123_456_789_123, 100_000_000_000, -1_000_000, 23_456_789_123_000_000,
                     id=f"{PERP_LIB_TEST}: positive indexDelta, negative quantums"),
        pytest.param(-123_456_789_123, -100_000_000_000, 1_000_000, 23_456_789_123_000_000,
                     id=f"{PERP_LIB_TEST}: negative indexDelta, positive quantums"),
        pytest.param(-123_456_789_123, -100_000_000_000, -1_000_000, -23_456_789_123_000_000,
                     id=f"{PERP_LIB_TEST}: negative indexDelta, negative quantums"),
        pytest.param(100, -100, 30_000, -6_000_000, id=f"{PERP_LIB_TEST}: long, index from negative to positive"),
        pytest.param(100, 100, 1_000_000, 0, id=f"{PERP_LIB_TEST}: long, index unchanged"),
        pytest.param(0, 100, 10_000_000, 1_000_000_000, id=f"{PERP_LIB_TEST}: long, index from positive to zero"),
        pytest.param(-200, 100, 10_000_000, 3_000_000_000, id=f"{PERP_LIB_TEST}: long, positive to negative"),
        pytest.param(100, -100, -30_000, 6_000_000, id=f"{PERP_LIB_TEST}: short, index from negative to positive"),
        pytest.param(100, 100, -1_000, 0, id=f"{PERP_LIB_TEST}: short, index unchanged"),
        pytest.param(0, 100, -5_000_000, -500_000_000, id=f"{PERP_LIB_TEST}: short, index from positive to zero"),
        pytest.param(-50, 100, -5_000_000, -750_000_000, id=f"{PERP_LIB_TEST}: short, positive to negative"),
    ],
)
def test_settlement_ppm(perpetual_index, position_index, position_base_quantums, expected_ppm):
    assert settlement_ppm(perpetual_index, position_index, position_base_quantums) == expected_ppm


@pytest.mark.parametrize(
    ("items", "expected_usdc_delta", "expected_payments"),
    [
        pytest.param([], 0, [], id="no positions: nothing to settle"),
        pytest.param([(7, 7, 10**9)], 0, [0], id="index unchanged: zero"),
        pytest.param([(3, 0, 1)], -1, [1], id="long owes 0.000003: charged a whole quote quantum (floor)"),
        pytest.param([(1, 0, 1)], -1, [1], id="long owes 0.000001: charged a whole quote quantum (floor)"),
        pytest.param([(0, 999_999, 1)], 0, [0], id="long is owed 0.999999: receives nothing (floor)"),
        pytest.param([(3, 0, -1)], 0, [0], id="short is owed 0.000003: receives nothing (floor)"),
        pytest.param([(1_000_000, 0, -2)], 2, [-2], id="short is owed exactly 2: receives 2"),
        pytest.param([(2_500_000, 0, 1)], -3, [3], id="long owes 2.5: pays 3"),
        pytest.param([(2_500_000, 0, -1)], 2, [-2], id="short is owed 2.5: receives 2"),
        pytest.param([(1_500_000, 0, 1), (500_000, -1_000_000, -1)], 0, [2, -1],
                     id="owes 1.5 and is owed 1.5: net 0 (flooring each would charge 1)"),
        pytest.param([(400_000, 0, 1), (0, -400_000, 1)], -1, [1, 1],
                     id="owes 0.4 twice: charged 1 once (sum first), reported 1 each"),
        pytest.param([(700_000, 0, -1), (0, 700_000, 1)], 1, [0, 0],
                     id="is owed 0.7 twice: receives 1 (sum first), reported 0 each"),
        pytest.param([(123_456_789_123, 100_000_000_000, 1_000_000), (100, -100, -30_000)],
                     -23_456_789_117, [23_456_789_123, -6],
                     id="dYdX settlement vectors combined: -23456789123 + 6 quote quantums"),
    ],
)
def test_settle_funding(items, expected_usdc_delta, expected_payments):
    assert settle_funding(items) == (expected_usdc_delta, expected_payments)


funding_items = st.lists(
    st.tuples(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12)),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(funding_items)
def test_settle_funding_rounds_once_against_the_account(items):
    usdc_delta, payments = settle_funding(items)
    total_ppm = sum(-(perp - pos) * size for perp, pos, size in items)
    # floor: never more than owed to the account, never more than one quote quantum below.
    assert usdc_delta * 1_000_000 <= total_ppm < (usdc_delta + 1) * 1_000_000
    # Rounding once charges no more than rounding each position (what the reported payments add up to).
    assert usdc_delta >= -sum(payments)
    assert len(payments) == len(items)


# --- Risk --------------------------------------------------------------------------------------------------


def risk(nc: int, imr: int, mmr: int) -> Risk:
    return Risk(net_collateral_quote_quantums=nc, initial_margin_quote_quantums=imr, maintenance_margin_quote_quantums=mmr)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(ZERO_RISK, ZERO_RISK, ZERO_RISK, id=f"{RISK_TEST} AddInPlace: zero + zero"),
        pytest.param(ZERO_RISK, risk(300, 200, 100), risk(300, 200, 100), id=f"{RISK_TEST}: zero + non-zero"),
        pytest.param(risk(300, 200, 100), ZERO_RISK, risk(300, 200, 100), id=f"{RISK_TEST}: non-zero + zero"),
        pytest.param(risk(300, 200, 100), risk(150, 100, 50), risk(450, 300, 150), id=f"{RISK_TEST}: non-zero + non-zero"),
        pytest.param(risk(-300, 20, 10), risk(100, 7, 3), risk(-200, 27, 13), id="negative collateral adds too"),
    ],
)
def test_risk_add(a, b, expected):
    assert a.add(b) == expected


@pytest.mark.parametrize(
    ("nc", "requirement", "expected"),
    [
        pytest.param(200, 100, True, id=f"{RISK_TEST}: NC > requirement"),
        pytest.param(100, 100, True, id=f"{RISK_TEST}: NC = requirement"),
        pytest.param(50, 100, False, id=f"{RISK_TEST}: NC < requirement"),
        pytest.param(0, 0, True, id=f"{RISK_TEST}: NC = 0, requirement = 0"),
        pytest.param(-100, 0, False, id=f"{RISK_TEST}: NC < 0, requirement = 0"),
    ],
)
def test_is_initial_and_maintenance_collateralized(nc, requirement, expected):
    # Same table in dYdX for IsInitialCollateralized (vs IMR) and IsMaintenanceCollateralized (vs MMR);
    # the other requirement is set so that it would give the opposite answer.
    assert risk(nc, requirement, nc + 1 if expected else nc - 1).is_initial_collateralized() is expected
    assert risk(nc, nc + 1 if expected else nc - 1, requirement).is_maintenance_collateralized() is expected


@pytest.mark.parametrize(
    ("nc", "mmr", "expected"),
    [
        pytest.param(100, 0, False, id=f"{RISK_TEST} IsLiquidatable: NC > 0, MMR = 0"),
        pytest.param(0, 100, True, id=f"{RISK_TEST}: NC = 0, MMR > 0"),
        pytest.param(0, 0, False, id=f"{RISK_TEST}: NC = 0, MMR = 0"),
        pytest.param(-100, 100, True, id=f"{RISK_TEST}: NC < 0, MMR > 0"),
        pytest.param(-100, 0, False, id=f"{RISK_TEST}: NC < 0, MMR = 0 (never liquidatable without positions)"),
        pytest.param(75, 100, True, id=f"{RISK_TEST}: NC < MMR"),
        pytest.param(100, 100, False, id=f"{RISK_TEST}: NC = MMR"),
        pytest.param(125, 100, False, id=f"{RISK_TEST}: NC > MMR"),
        pytest.param(0, 1, True, id="smallest positive MMR with NC 0"),
    ],
)
def test_is_liquidatable(nc, mmr, expected):
    assert risk(nc, mmr * 2, mmr).is_liquidatable() is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # (NC, MMR) pairs; IMR plays no part.
        pytest.param((100, 100), (100, 100), 0, id=f"{RISK_TEST} Cmp: special case equally risky"),
        pytest.param((100, 50), (100, 100), -1, id=f"{RISK_TEST}: first is less risky than second"),
        pytest.param((100, 50), (0, 100), -1, id=f"{RISK_TEST}: less risky, second has zero TNC"),
        pytest.param((100, 50), (-100, 100), -1, id=f"{RISK_TEST}: less risky, second has negative TNC"),
        pytest.param((-100, 150), (-100, 100), -1, id=f"{RISK_TEST}: less risky, both have negative TNC"),
        pytest.param((100, 150), (100, 100), 1, id=f"{RISK_TEST}: first is more risky than second"),
        pytest.param((0, 150), (100, 100), 1, id=f"{RISK_TEST}: more risky, first has zero TNC"),
        pytest.param((-100, 150), (100, 100), 1, id=f"{RISK_TEST}: more risky, first has negative TNC"),
        pytest.param((-100, 50), (-100, 100), 1, id=f"{RISK_TEST}: more risky, both have negative TNC"),
        pytest.param((100, 0), (100, 100), -1, id=f"{RISK_TEST}: less risky, first has zero MMR"),
        pytest.param((100, 100), (100, 0), 1, id=f"{RISK_TEST}: more risky, second has zero MMR"),
        pytest.param((100, 50), (200, 100), -1, id=f"{RISK_TEST}: same ratio, tie break by MMR"),
        pytest.param((0, 50), (0, 100), -1, id=f"{RISK_TEST}: both zero NC, tie break by MMR"),
        pytest.param((0, 0), (200, 100), -1, id=f"{RISK_TEST}: first with zero NC and MMR, tie break by MMR"),
        pytest.param((100, 50), (0, 0), 1, id=f"{RISK_TEST}: second with zero NC and MMR, tie break by MMR"),
        pytest.param((100, 0), (200, 0), 1, id=f"{RISK_TEST}: both zero MMR, tie break by NC (lower NC riskier)"),
        pytest.param((-5, 0), (-3, 0), 1, id="both zero MMR, negative NC: lower NC riskier"),
        pytest.param((-100, 0), (100, 100), 1, id="zero MMR with negative NC is riskier than a healthy account"),
        pytest.param((0, 0), (-100, 100), -1, id="NC 0 MMR 0 ranks safer even than a negative-NC account (tie)"),
        pytest.param((-100, 50), (-200, 100), -1, id="same negative ratio: lower MMR is less risky"),
        pytest.param((7, 0), (7, 0), 0, id="identical accounts without positions are equally risky"),
    ],
)
def test_risk_cmp(first, second, expected):
    a = risk(first[0], 0, first[1])
    b = risk(second[0], 0, second[1])
    assert risk_cmp(a, b) == expected
    assert risk_cmp(b, a) == -expected


risks = st.builds(
    lambda nc, mmr, extra: risk(nc, mmr + extra, mmr),
    st.integers(-(10**9), 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
)


@settings(max_examples=400, deadline=None)
@given(risks, risks)
def test_risk_cmp_is_antisymmetric_and_follows_the_ratio(a, b):
    assert risk_cmp(a, b) == -risk_cmp(b, a)
    assert risk_cmp(a, a) == 0
    a_mmr, b_mmr = a.maintenance_margin_quote_quantums, b.maintenance_margin_quote_quantums
    if a_mmr > 0 and b_mmr > 0:
        a_ratio = Fraction(a.net_collateral_quote_quantums, a_mmr)
        b_ratio = Fraction(b.net_collateral_quote_quantums, b_mmr)
        if a_ratio != b_ratio:
            assert risk_cmp(a, b) == (1 if a_ratio < b_ratio else -1)


# --- collateral check of an update ------------------------------------------------------------------------

STILL = CollateralCheck.STILL_UNDERCOLLATERALIZED
NEWLY = CollateralCheck.NEWLY_UNDERCOLLATERALIZED
SUCCESS = CollateralCheck.SUCCESS


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # dYdX TestIsValidStateTransitionForUndercollateralizedSubaccount_ZeroMarginRequirements
        # (old NC, IMR, MMR) -> (new NC, MMR); the new IMR plays no part in this function.
        pytest.param((-1, 0, 0), (-2, 1), STILL, id=f"{UPDATES_TEST}: fails when MMR increases and TNC decreases"),
        pytest.param((-1, 0, 0), (-1, 1), STILL, id=f"{UPDATES_TEST}: fails when MMR increases and TNC stays"),
        pytest.param((-1, 0, 0), (100, 1), STILL, id=f"{UPDATES_TEST}: fails when MMR increases and TNC increases"),
        pytest.param((-1, 0, 0), (-1, 0), STILL, id=f"{UPDATES_TEST}: fails when both MMR zero and TNC stays"),
        pytest.param((-1, 0, 0), (-2, 0), STILL, id=f"{UPDATES_TEST}: fails when both MMR zero and TNC decreases"),
        pytest.param((-2, 0, 0), (-1, 0), SUCCESS, id=f"{UPDATES_TEST}: succeeds when both MMR zero and TNC increases"),
        pytest.param((-2, 1, 1), (-1, 0), STILL,
                     id=f"{UPDATES_TEST}: fails when MMR decreased to zero and TNC increases but stays negative"),
        pytest.param((-2, 1, 1), (1, 0), STILL,
                     id="MMR drops to zero and NC turns positive: still fails (only zero -> zero MMR may pass)"),
    ],
)
def test_check_undercollateralized_transition_zero_margin(old, new, expected):
    assert check_undercollateralized_transition(risk(*old), risk(new[0], 0, new[1])) is expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # (NC, IMR, MMR) before and after the update.
        pytest.param((0, 0, 0), (100, 100, 50), SUCCESS, id="new state meets initial margin exactly: success"),
        pytest.param((50, 100, 50), (101, 100, 50), SUCCESS, id="new state above initial margin: success"),
        pytest.param((-10, 0, 0), (-9, 0, 0), SUCCESS,
                     id="no positions before or after, NC negative but improving: success"),
        pytest.param((1000, 500, 250), (400, 600, 300), NEWLY,
                     id="was collateralized, MMR rises: newly undercollateralized"),
        pytest.param((400, 500, 250), (450, 600, 300), STILL,
                     id="was undercollateralized, MMR rises (even with a better ratio): still undercollateralized"),
        pytest.param((100, 100, 50), (90, 100, 50), NEWLY,
                     id="was exactly at initial margin, now riskier: newly undercollateralized"),
        pytest.param((80, 100, 50), (70, 100, 50), STILL, id="undercollateralized and riskier (1.6 -> 1.4): fails"),
        pytest.param((80, 100, 50), (60, 70, 35), SUCCESS,
                     id="undercollateralized, reducing the position improves the ratio (1.6 -> 1.71): success"),
        pytest.param((80, 100, 50), (40, 50, 25), SUCCESS, id="same ratio with a smaller MMR: success"),
        pytest.param((80, 100, 50), (80, 100, 50), SUCCESS, id="equally risky (unchanged): success"),
        pytest.param((0, 2, 1), (0, 2, 1), SUCCESS, id="smallest MMR (1) on both sides, unchanged: ratio rule, success"),
        pytest.param((-10, 100, 50), (-10, 60, 30), STILL,
                     id="negative NC, shrinking the position lowers NC/MMR (-0.2 -> -0.33): fails"),
        pytest.param((-20, 10, 5), (-5, 0, 0), STILL,
                     id="closing the last position leaves negative NC: fails though NC improved (old MMR > 0)"),
        pytest.param((-5, 0, 0), (-5, 0, 0), STILL, id="no positions, NC unchanged and negative: fails"),
        pytest.param((6, 20, 10), (5, 10, 0), STILL,
                     id="MMR drops to 0 (a 0% maintenance tier) with NC below IMR: fails, the ratio is not consulted"),
        pytest.param((5, 0, 0), (4, 10, 0), NEWLY, id="MMR 0 both, IMR appears, NC drops: newly undercollateralized"),
        pytest.param((-5, 0, 0), (-10, 10, 5), STILL, id="opening a position from negative NC: MMR rises, fails"),
    ],
)
def test_check_update(old, new, expected):
    assert check_update(risk(*old), risk(*new)) is expected


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        pytest.param((100, 100, 50), True, id="withdrawal leaving NC exactly at IMR is allowed"),
        pytest.param((99, 100, 50), False, id="withdrawal leaving NC below IMR is refused"),
        pytest.param((0, 0, 0), True, id="withdrawing everything from an account without positions"),
        pytest.param((-1, 0, 0), False, id="withdrawal into negative NC is refused"),
    ],
)
def test_check_withdrawal(new, expected):
    assert check_withdrawal(risk(*new)) is expected


@settings(max_examples=400, deadline=None)
@given(risks, st.integers(1, 10**9))
def test_a_withdrawal_passes_check_update_exactly_when_it_keeps_initial_margin(old, amount):
    new = risk(
        old.net_collateral_quote_quantums - amount,
        old.initial_margin_quote_quantums,
        old.maintenance_margin_quote_quantums,
    )
    assert (check_update(old, new) is SUCCESS) is check_withdrawal(new)


@settings(max_examples=400, deadline=None)
@given(risks, risks)
def test_check_update_verdicts(old, new):
    verdict = check_update(old, new)
    if new.is_initial_collateralized():
        assert verdict is SUCCESS
    elif verdict is not SUCCESS:
        assert verdict is (NEWLY if old.is_initial_collateralized() else STILL)
    if verdict is SUCCESS and not new.is_initial_collateralized():
        # An allowed undercollateralized transition never raises the MMR.
        assert new.maintenance_margin_quote_quantums <= old.maintenance_margin_quote_quantums


# position_risk: a short of 0.1234567891 BTC (atomic resolution -10) at $64,000 (6_400_000_000 at exponent -5), IM 5 %,
# MF 60 %. Worked by hand: k = -5 - 10 + 6 = -9; value = -1_234_567_891 × 6_400_000_000 / 1e9 = -7_901_234_502.4,
# truncated toward zero -> -7_901_234_502; base IMR = ceil(7_901_234_502 × 0.05) = ceil(395_061_725.1) = 395_061_726;
# MMR = ceil(395_061_726 × 0.6) = ceil(237_037_035.6) = 237_037_036. With OI caps $1M..$5M and 50 BTC open interest
# (OI notional 5e11 × 6.4e9 / 1e9 = 3.2e12 = $3.2M): OIMF = 50_000 + floor(950_000 × 2.2e12 / 4e12) = 572_500 ppm,
# IMR = ceil(7_901_234_502 × 0.5725) = ceil(4_523_456_752.395) = 4_523_456_753; the MMR is never OI-scaled.
@pytest.mark.parametrize(
    ("size", "lower", "upper", "oi", "expected"),
    [
        (-1_234_567_891, 0, 0, 0, (-7_901_234_502, 395_061_726, 237_037_036)),
        (1_234_567_891, 0, 0, 0, (7_901_234_502, 395_061_726, 237_037_036)),
        (-1_234_567_891, 10**12, 5 * 10**12, 5 * 10**11, (-7_901_234_502, 4_523_456_753, 237_037_036)),
        (-1_234_567_891, 10**12, 5 * 10**12, 3 * 10**10, (-7_901_234_502, 395_061_726, 237_037_036)),  # below lower
        (-1_234_567_891, 10**12, 5 * 10**12, 10**12, (-7_901_234_502, 7_901_234_502, 237_037_036)),  # above upper
    ],
)
def test_position_risk_by_hand(size, lower, upper, oi, expected):
    assert position_risk(size, -10, 6_400_000_000, -5, 50_000, 600_000, lower, upper, oi) == expected


@settings(max_examples=600, deadline=None)
@given(
    size=st.integers(-(2**63), 2**63 - 1),
    atomic_resolution=st.integers(-15, 2),
    price=st.integers(1, 2**64 - 1),
    price_exponent=st.integers(-15, 4),
    im=st.integers(0, 1_000_000),
    mf=st.integers(0, 1_000_000),
    lower=st.integers(0, 2**64 - 1),
    width=st.integers(0, 2**64 - 1),
    scaled=st.booleans(),
    oi=st.integers(0, 2**64 - 1),
)
def test_position_risk_matches_exact_rationals(size, atomic_resolution, price, price_exponent, im, mf, lower, width,
                                               scaled, oi):
    """position_risk (and margin_requirements, its last two values) against the formulas computed here with exact
    rationals: value = size × price × 10^(e + r + 6) truncated toward zero; base IMR = ceil(|value| × IM / 1e6);
    MMR = ceil(base IMR × MF / 1e6); OIMF = IM, or 1e6 at/above the upper cap, else IM + floor((1e6 − IM) ×
    (OI value − lower) / (upper − lower)); IMR = ceil(|value| × OIMF / 1e6)."""
    import math

    upper = lower + width if scaled else 0
    lower = lower if scaled else 0
    scale = Fraction(10) ** (price_exponent + atomic_resolution + 6)
    value = math.trunc(size * price * scale)
    oi_value = math.trunc(oi * price * scale)
    base_imr = math.ceil(Fraction(abs(value) * im, 10**6))
    mmr = math.ceil(Fraction(base_imr * mf, 10**6))
    if upper == 0 or oi_value <= lower:
        oimf = im
    elif oi_value >= upper:
        oimf = 10**6
    else:
        oimf = im + math.floor(Fraction((10**6 - im) * (oi_value - lower), upper - lower))
    imr = math.ceil(Fraction(abs(value) * oimf, 10**6))
    args = (atomic_resolution, price, price_exponent)
    assert position_risk(size, *args, im, mf, lower, upper, oi) == (value, imr, mmr)
    assert margin_requirements(size, *args, im, mf, lower, upper, oi) == (imr, mmr)
    assert net_collateral(size, *args) == value
