"""CLOB money math (app/clob/logic.py): fill value, oracle price in subticks, fees, fee tiers, alignment.

Vectors marked "dYdX <file> <case>" are lifted from github.com/dydxprotocol/v4-chain Go tests; the others are
worked out by hand in their ids.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.clob.logic import (
    FeeTier,
    clamp,
    fee_quote_quantums,
    fill_amount_to_quote_quantums,
    is_valid_quantums,
    is_valid_subticks,
    price_to_subticks,
    price_to_subticks_rational,
    round_to_multiple,
    select_fee_tier,
)
from app.lib.math import Rounding

U64 = 2**64 - 1
CLOB_QUANTUMS_TEST = "dYdX protocol/x/clob/types/quantums_test.go"
SUBTICKS_TEST = "dYdX protocol/x/clob/types/price_to_subticks_test.go"
BIG_MATH_TEST = "dYdX protocol/lib/big_math_test.go"
FEETIERS_TEST = "dYdX protocol/x/feetiers/keeper/keeper_test.go"


@pytest.mark.parametrize(
    ("subticks", "base_quantums", "qce", "expected_quote_quantums"),
    [
        pytest.param(1, 1, 1, 10, id=f"{CLOB_QUANTUMS_TEST} FillAmountToQuoteQuantums: converts base to quote"),
        pytest.param(5_000_000, 1_000, -4, 500_000, id=f"{CLOB_QUANTUMS_TEST}: quantumConversionExponent negative"),
        pytest.param(1, 5_000_000, 0, 5_000_000, id=f"{CLOB_QUANTUMS_TEST}: quantumConversionExponent zero"),
        pytest.param(1, 9, -1, 0, id=f"{CLOB_QUANTUMS_TEST}: rounds down and can return 0 quote quantums"),
        pytest.param(1, U64, 6, 18446744073709551615000000, id=f"{CLOB_QUANTUMS_TEST}: calculation overflows"),
        pytest.param(19, 1, -1, 1, id="1.9 quote quantums round down to 1"),
        pytest.param(
            5_000_000_000, 1_000_000, -9, 5_000_000,
            id="mainnet BTC (QCE -9): 0.0001 BTC at $50,000 (5e9 subticks) is $5",
        ),
    ],
)
def test_fill_amount_to_quote_quantums(subticks, base_quantums, qce, expected_quote_quantums):
    assert fill_amount_to_quote_quantums(subticks, base_quantums, qce) == expected_quote_quantums


@settings(max_examples=300, deadline=None)
@given(st.integers(0, U64), st.integers(0, U64), st.integers(-12, 6))
def test_fill_amount_is_the_exact_value_rounded_down(subticks, base_quantums, qce):
    exact = Fraction(subticks * base_quantums) * Fraction(10) ** qce
    value = fill_amount_to_quote_quantums(subticks, base_quantums, qce)
    assert value <= exact < value + 1


@pytest.mark.parametrize(
    ("price", "price_exponent", "qce", "atomic_resolution", "expected"),
    [
        pytest.param(1_000_000_000, -5, -8, -10, (1_000_000_000, 10),
                     id=f"{SUBTICKS_TEST} PriceToSubticks: typical BTC configuration at $10_000 (= 1e8)"),
        pytest.param(1_200_000_000, -6, -9, -9, (1_200_000_000, 1),
                     id=f"{SUBTICKS_TEST}: typical ETH configuration at $1_200"),
        pytest.param(1_200_000_000, -6, -9, -18, (1_200_000_000, 1_000_000_000),
                     id=f"{SUBTICKS_TEST}: retains digits if not divisible (12/10)"),
        pytest.param(5_000_000_000, -5, -9, -10, (5_000_000_000, 1),
                     id="mainnet BTC (e -5, QCE -9, r -10): exponent 0, subticks = oracle price"),
        pytest.param(5, 0, -9, -6, (5_000_000_000, 1), id="positive exponent 9: multiplied out"),
    ],
)
def test_price_to_subticks_rational(price, price_exponent, qce, atomic_resolution, expected):
    assert price_to_subticks_rational(price, price_exponent, qce, atomic_resolution) == expected


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        pytest.param(Rounding.FLOOR, 1, id="12/10 subticks floor to 1"),
        pytest.param(Rounding.CEIL, 2, id="12/10 subticks ceil to 2"),
        pytest.param(Rounding.TRUNC, 1, id="12/10 subticks truncate to 1"),
    ],
)
def test_price_to_subticks_rounds_as_asked(rounding, expected):
    # dYdX price_to_subticks_test.go "retains digits if not divisible": exactly 1.2 subticks.
    assert price_to_subticks(1_200_000_000, -6, -9, -18, rounding) == expected


def test_price_to_subticks_exact_values_ignore_rounding():
    for rounding in Rounding:
        assert price_to_subticks(1_000_000_000, -5, -8, -10, rounding) == 100_000_000


@settings(max_examples=300, deadline=None)
@given(st.integers(0, U64), st.integers(-12, 0), st.integers(-12, 0), st.integers(-18, 0))
def test_price_to_subticks_is_consistent_with_fill_value(price, price_exponent, qce, atomic_resolution):
    # One whole coin (10^-r base quantums) at the oracle price in subticks is worth price x 10^e USD.
    numerator, denominator = price_to_subticks_rational(price, price_exponent, qce, atomic_resolution)
    coin_usd = Fraction(numerator, denominator) * Fraction(10) ** (qce - atomic_resolution - 6)
    assert coin_usd == Fraction(price) * Fraction(10) ** price_exponent
    down = price_to_subticks(price, price_exponent, qce, atomic_resolution, Rounding.FLOOR)
    up = price_to_subticks(price, price_exponent, qce, atomic_resolution, Rounding.CEIL)
    assert down <= Fraction(numerator, denominator) <= up <= down + 1


@pytest.mark.parametrize(
    ("fill_quote_quantums", "fee_ppm", "expected_fee"),
    [
        pytest.param(543_211, 876_543, 476_148, id=f"{BIG_MATH_TEST} BigMulPpm: positive round up"),
        pytest.param(-543_211, 876_543, -476_147, id=f"{BIG_MATH_TEST}: negative round up (toward +inf)"),
        pytest.param(0, 876_543, 0, id=f"{BIG_MATH_TEST}: zero val"),
        pytest.param(543_211, 0, 0, id=f"{BIG_MATH_TEST}: zero ppm"),
        pytest.param(543_211, -876_543, -476_147, id=f"{BIG_MATH_TEST}: negative ppm (rebate toward zero)"),
        pytest.param(-543_211, -876_543, 476_148, id=f"{BIG_MATH_TEST}: negative val and ppm"),
        pytest.param(10**24, 10_000, 10**22, id=f"{BIG_MATH_TEST}: greater than max int64"),
        pytest.param(1_000_000, 500, 500, id="$1 fill at 5 bps taker fee: 500 quote quantums"),
        pytest.param(1, 500, 1, id="1-quantum fill still pays a 1-quantum taker fee (0.0005 rounds up)"),
        pytest.param(1, -110, 0, id="1-quantum fill earns no rebate (-0.00011 rounds toward zero)"),
        pytest.param(12_345, -110, -1, id="maker rebate -1.35795 rounds to -1 (floor would pay -2)"),
        pytest.param(2_000_000, -110, -220, id="exact rebate is paid in full"),
    ],
)
def test_fee_quote_quantums(fill_quote_quantums, fee_ppm, expected_fee):
    assert fee_quote_quantums(fill_quote_quantums, fee_ppm) == expected_fee


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**20), st.integers(-1_000_000, 1_000_000))
def test_fees_never_round_in_the_traders_favour(fill_quote_quantums, fee_ppm):
    fee = fee_quote_quantums(fill_quote_quantums, fee_ppm)
    exact_ppm = fill_quote_quantums * fee_ppm
    assert fee * 1_000_000 >= exact_ppm > (fee - 1) * 1_000_000


# dYdX x/feetiers/keeper/keeper_test.go TestGetPerpetualFeePpm tiers.
DYDX_TEST_TIERS = [
    FeeTier("1", 0, 0, 0, maker_fee_ppm=1, taker_fee_ppm=10),
    FeeTier("2", 1_000, 0, 0, maker_fee_ppm=2, taker_fee_ppm=20),
    FeeTier("3", 1_000_000_000, 0, 500_000, maker_fee_ppm=3, taker_fee_ppm=30),
]
# Reference §7.4 standard tiers (dYdX x/feetiers/types/genesis.go StandardParams), quote quantums.
STANDARD_TIERS = [
    FeeTier("1", 0, 0, 0, 100, 500),
    FeeTier("2", 1_000_000_000_000, 0, 0, 100, 450),
    FeeTier("3", 5_000_000_000_000, 0, 0, 50, 400),
    FeeTier("4", 25_000_000_000_000, 0, 0, 0, 350),
    FeeTier("5", 125_000_000_000_000, 0, 0, 0, 300),
    FeeTier("6", 125_000_000_000_000, 5_000, 0, -50, 250),
    FeeTier("7", 125_000_000_000_000, 5_000, 10_000, -90, 250),
    FeeTier("8", 125_000_000_000_000, 5_000, 20_000, -110, 250),
    FeeTier("9", 125_000_000_000_000, 5_000, 40_000, -110, 250),
]


@pytest.mark.parametrize(
    ("tiers", "user_total", "user_maker", "global_notional", "expected_index"),
    [
        pytest.param(DYDX_TEST_TIERS, 20, 10, 10_000, 0, id=f"{FEETIERS_TEST}: regular user, first tier"),
        pytest.param(DYDX_TEST_TIERS, 1_150, 150, 10_000, 1, id=f"{FEETIERS_TEST}: regular user, increased tier"),
        pytest.param(DYDX_TEST_TIERS, 1_000_001_000, 1_000_000_000, 2_000_000_000, 2,
                     id=f"{FEETIERS_TEST}: regular user, top tier (maker volume exactly 50% of global)"),
        pytest.param(DYDX_TEST_TIERS, 1_000, 0, 10_000, 1, id="total volume exactly at the absolute requirement"),
        pytest.param(DYDX_TEST_TIERS, 999, 999, 10_000, 0, id="one quote quantum short of the absolute requirement"),
        pytest.param(DYDX_TEST_TIERS, 1_000_001_000, 999_999_999, 2_000_000_000, 1,
                     id="maker volume one short of its share requirement"),
        pytest.param([FeeTier("0", 0, 0, 0, 1, 10), FeeTier("1", 1_000, 0, 0, 2, 20), FeeTier("2", 0, 0, 0, 3, 30)],
                     500, 0, 10_000, 0, id="stops at the first unmet tier even if a later one is met"),
        pytest.param([FeeTier("0", 5, 0, 0, 1, 10)], 0, 0, 0, 0,
                     id="tier 0 is the floor even if its requirement is unmet"),
        pytest.param([FeeTier("0", 0, 0, 0, 1, 10), FeeTier("1", 0, 5_000, 0, 2, 20)], 5_000_000, 0, 1_000_000_001, 1,
                     id="total share requirement floor(1000000001 x 0.5%) = 5000000 is met exactly"),
        pytest.param([FeeTier("0", 0, 0, 0, 1, 10), FeeTier("1", 0, 5_000, 0, 2, 20)], 4_999_999, 0, 1_000_000_001, 0,
                     id="total share requirement missed by one"),
        pytest.param([FeeTier("0", 0, 0, 0, 1, 10), FeeTier("1", 0, 0, 5_000, 2, 20)], 10**9, 5_000_000, 1_000_000_199,
                     1, id="maker share requirement floor(1000000199 x 0.5%) = 5000000 is met exactly"),
        pytest.param(STANDARD_TIERS, 0, 0, 10**15, 0, id="standard tiers: no volume"),
        pytest.param(STANDARD_TIERS, 30_000_000_000_000, 0, 10**17, 3, id="standard tiers: $30M over 30 days"),
        pytest.param(STANDARD_TIERS, 200_000_000_000_000, 0, 10**17, 4,
                     id="standard tiers: $200M but below 0.5% of a $100B market"),
        pytest.param(STANDARD_TIERS, 3_000_000_000_000_000, 1_500_000_000_000_000, 10**17, 6,
                     id="standard tiers: 3% of a $100B market, 1.5% maker share: tier 7 (index 6)"),
    ],
)
def test_select_fee_tier(tiers, user_total, user_maker, global_notional, expected_index):
    assert select_fee_tier(tiers, user_total, user_maker, global_notional) == expected_index


def test_select_fee_tier_needs_a_tier():
    with pytest.raises(ValueError, match="^no fee tiers$"):
        select_fee_tier([], 0, 0, 0)


@pytest.mark.parametrize(
    ("n", "m", "up", "expected"),
    [
        pytest.param(5, 5, True, 5, id=f"{BIG_MATH_TEST} BigIntRoundToMultiple: unrounded when aligned, up"),
        pytest.param(-5, 5, False, -5, id=f"{BIG_MATH_TEST}: unrounded when aligned, down"),
        pytest.param(7, 3, True, 9, id=f"{BIG_MATH_TEST}: rounded up"),
        pytest.param(7, 3, False, 6, id=f"{BIG_MATH_TEST}: rounded down"),
        pytest.param(-7, 3, True, -6, id=f"{BIG_MATH_TEST}: negative n rounded up (toward +inf)"),
        pytest.param(-7, 3, False, -9, id=f"{BIG_MATH_TEST}: negative n rounded down (toward -inf)"),
        pytest.param(0, 3, True, 0, id="zero stays zero"),
        pytest.param(1_234_567, 1_000_000, False, 1_000_000, id="liquidation size floored to the step (1e6)"),
    ],
)
def test_round_to_multiple(n, m, up, expected):
    assert round_to_multiple(n, m, up) == expected


@pytest.mark.parametrize("m", [pytest.param(0, id=f"{BIG_MATH_TEST}: panics if multiple is zero"),
                               pytest.param(-1, id=f"{BIG_MATH_TEST}: panics if multiple is negative")])
def test_round_to_multiple_refuses_a_non_positive_multiple(m):
    with pytest.raises(ValueError, match=f"^multiple must be positive, got {m}$"):
        round_to_multiple(7, m, True)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**20), 10**20), st.integers(1, 10**9))
def test_round_to_multiple_brackets_n(n, m):
    down = round_to_multiple(n, m, False)
    up = round_to_multiple(n, m, True)
    assert down % m == 0 and up % m == 0
    assert down <= n <= up
    assert up - down == (0 if n % m == 0 else m)


@pytest.mark.parametrize(
    ("n", "lower", "upper", "expected"),
    [
        pytest.param(2, -1, 3, 2, id=f"{BIG_MATH_TEST} BigIntClamp: between the bounds"),
        pytest.param(-2, -2, 3, -2, id=f"{BIG_MATH_TEST}: at the lower bound"),
        pytest.param(4, -3, 4, 4, id=f"{BIG_MATH_TEST}: at the upper bound"),
        pytest.param(-1, 0, 5, 0, id=f"{BIG_MATH_TEST}: below the lower bound"),
        pytest.param(100, -2, 5, 5, id=f"{BIG_MATH_TEST}: above the upper bound"),
        pytest.param(1, 2, -4, 2, id=f"{BIG_MATH_TEST}: lower > upper and n < lower gives lower"),
        pytest.param(4, 4, -2, -2, id=f"{BIG_MATH_TEST}: lower > upper and n >= lower gives upper"),
    ],
)
def test_clamp(n, lower, upper, expected):
    assert clamp(n, lower, upper) == expected


@pytest.mark.parametrize(
    ("subticks", "subticks_per_tick", "expected"),
    [
        pytest.param(100_000, 100_000, True, id="one tick"),
        pytest.param(5_000_000_000, 100_000, True, id="BTC $50,000 on a $1 tick"),
        pytest.param(150_000, 100_000, False, id="half a tick off"),
        pytest.param(100_001, 100_000, False, id="one subtick off"),
        pytest.param(0, 100_000, False, id="zero price (dYdX ValidateBasic: subticks cannot be 0)"),
        pytest.param(-100_000, 100_000, False, id="negative price"),
        pytest.param(1, 1, True, id="tick of one subtick"),
    ],
)
def test_is_valid_subticks(subticks, subticks_per_tick, expected):
    assert is_valid_subticks(subticks, subticks_per_tick) is expected


@pytest.mark.parametrize(
    ("quantums", "step_base_quantums", "expected"),
    [
        pytest.param(1_000_000, 1_000_000, True, id="one lot"),
        pytest.param(3_000_000, 1_000_000, True, id="three lots"),
        pytest.param(1_500_000, 1_000_000, False, id="half a lot off"),
        pytest.param(999_999, 1_000_000, False, id="one quantum short of a lot"),
        pytest.param(1_000_001, 1_000_000, False, id="one quantum over a lot"),
        pytest.param(0, 1_000_000, False, id="zero size (dYdX ValidateBasic: quantums cannot be 0)"),
        pytest.param(-1_000_000, 1_000_000, False, id="negative size"),
        pytest.param(1, 1, True, id="lot of one quantum"),
    ],
)
def test_is_valid_quantums(quantums, step_base_quantums, expected):
    assert is_valid_quantums(quantums, step_base_quantums) is expected
