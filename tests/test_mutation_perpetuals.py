"""perpetuals: behaviours no other test pinned, found by mutation testing (docs/mutation.md, issue #9).

Key layout (golden bytes), the keeper's refusals and open-interest / funding-index writes, the margin snapshot of a
perpetual (with and without an oracle price), the genesis parser's refusals, and the authority's liquidity-tier
message (event, refusal, effect on margin). In-memory stores only (tests/mutation_helpers.py).

Markets as in tests/exchange_helpers.py: BTC-USD oracle $64,000 (price 6_400_000_000, exponent -5), atomic
resolution -10; Large-Cap tier IM 5 %, MF 60 %; SOL-USD isolated (tier 4, OI caps 0.5M / 1M USDC).
"""

from __future__ import annotations

import pytest
from perpchain.v1 import exchange_pb2, prices_pb2, tx_pb2

from app import errors
from app.perpetuals import genesis as perp_genesis
from app.perpetuals import keeper, keys
from app.prices import keeper as prices_keeper
from app.store import BranchStore
from tests.exchange_helpers import BTC, ETH, SOL, msg_tx, subaccount
from tests.helpers import ADDRS
from tests.mutation_helpers import Empty, mem_exchange, refused

TIER = exchange_pb2.LiquidityTier


@pytest.fixture
def ex():
    return mem_exchange()


# --- keys and keeper -------------------------------------------------------------------------------------------

def test_key_layout_is_prefix_kind_and_big_endian_id():
    assert keys.tier_key(1) == b"\x05\x00\x00\x00\x00\x01"
    assert keys.perpetual_key(258) == b"\x05\x01\x00\x00\x01\x02"


def test_unknown_tier_and_perpetual_are_refused_with_their_codes():
    s = BranchStore(Empty())
    err = refused(keeper.get_tier, s, 9)
    assert err.code == errors.ERR_UNKNOWN_LIQUIDITY_TIER.code and "liquidity tier 9 does not exist" in err.log
    err = refused(keeper.get_perpetual, s, 7)
    assert err.code == errors.ERR_UNKNOWN_PERPETUAL.code and "perpetual 7 does not exist" in err.log
    assert keeper.get_tier_or_none(s, 9) is None and keeper.get_perpetual_or_none(s, 7) is None


def test_tiers_and_perpetuals_iterate_in_id_order():
    s = BranchStore(Empty())
    for i in (3, 1, 2):
        keeper.set_tier(s, TIER(id=i, name=f"t{i}", initial_margin_ppm=1000 * i))
        keeper.set_perpetual(s, exchange_pb2.Perpetual(id=i, ticker=f"P{i}"))
    assert [(t.id, t.name, t.initial_margin_ppm) for t in keeper.iter_tiers(s)] == [
        (1, "t1", 1000), (2, "t2", 2000), (3, "t3", 3000)]
    assert [p.ticker for p in keeper.iter_perpetuals(s)] == ["P1", "P2", "P3"]


def test_open_interest_moves_by_the_delta_and_a_zero_delta_writes_nothing():
    s = BranchStore(Empty())
    keeper.set_perpetual(s, exchange_pb2.Perpetual(id=4, ticker="X", open_interest_base_quantums=10, funding_index=-3))
    base = BranchStore(s)
    keeper.apply_open_interest_delta(base, 4, 0)
    assert base.write_set() == []
    keeper.apply_open_interest_delta(base, 4, 5)
    keeper.apply_open_interest_delta(base, 4, -12)
    keeper.set_funding_index(base, 4, 77)
    p = keeper.get_perpetual(base, 4)
    assert (p.open_interest_base_quantums, p.funding_index, p.ticker) == (3, 77, "X")  # 10 + 5 - 12
    assert keeper.get_perpetual(s, 4).open_interest_base_quantums == 10  # the parent is untouched


def test_open_interest_in_the_order_phase_is_written_once_and_read_from_the_store_after():
    """Inside an order phase (start_order_phase) a delta applied before any read loads the stored OI itself, the
    store is untouched until flush_open_interest, and a refused action's delta is undone; after the flush the phase
    is closed: reads and deltas go to the store again. Stored OI 10; +5 (kept), +100 (rolled back), -12: 3."""
    s = BranchStore(Empty())
    keeper.set_perpetual(s, exchange_pb2.Perpetual(id=4, ticker="X", open_interest_base_quantums=10, funding_index=-3))
    view = keeper.MarginView(s)
    keeper.start_order_phase(view)
    keeper.start_action(view)
    keeper.apply_open_interest_delta(s, 4, 5, view)  # no read before: loads the stored 10
    keeper.start_action(view)
    keeper.apply_open_interest_delta(s, 4, 100, view)
    assert keeper.open_interest(s, 4, view) == 115
    keeper.rollback_action(view)
    keeper.start_action(view)
    keeper.apply_open_interest_delta(s, 4, -12, view)
    assert keeper.open_interest(s, 4, view) == 3
    assert keeper.get_perpetual(s, 4).open_interest_base_quantums == 10  # not written yet
    keeper.flush_open_interest(s, view)
    p = keeper.get_perpetual(s, 4)
    assert (p.open_interest_base_quantums, p.funding_index, p.ticker) == (3, -3, "X")
    keeper.apply_open_interest_delta(s, 4, 1, view)  # the phase is closed: straight to the store
    assert keeper.open_interest(s, 4, view) == 4 == keeper.get_perpetual(s, 4).open_interest_base_quantums


def test_margin_info_of_a_priced_cross_perpetual(ex):
    s = BranchStore(ex.store)
    info = keeper.get_margin_info(s, BTC)
    assert (info.perpetual_id, info.market_id, info.atomic_resolution, info.price, info.price_exponent) == (
        BTC, BTC, -10, 6_400_000_000, -5)
    assert (info.mark_price, info.stale, info.initial_margin_ppm, info.maintenance_fraction_ppm) == (
        6_400_000_000, False, 50_000, 600_000)
    assert (info.oi_lower_cap_quote_quantums, info.oi_upper_cap_quote_quantums, info.market_type) == (
        0, 0, keeper.CROSS)
    sol = keeper.get_margin_info(s, SOL)
    assert (sol.oi_lower_cap_quote_quantums, sol.oi_upper_cap_quote_quantums, sol.market_type) == (
        500_000_000_000, 1_000_000_000_000, keeper.ISOLATED)


def test_margin_info_without_an_oracle_price_or_market():
    s = BranchStore(Empty())
    keeper.set_tier(s, TIER(id=0, initial_margin_ppm=50_000, maintenance_fraction_ppm=600_000))
    prices_keeper.set_market(s, prices_pb2.MarketParam(id=5, pair="Z-USD", exponent=-7), prices_pb2.MarketPrice(id=5))
    keeper.set_perpetual(s, exchange_pb2.Perpetual(id=1, ticker="Z", market_id=5, atomic_resolution=-6,
                                                   funding_index=9, open_interest_base_quantums=4))
    info = keeper.get_margin_info(s, 1)
    assert (info.price, info.mark_price, info.price_exponent, info.stale, info.funding_index,
            info.open_interest_base_quantums) == (0, 0, -7, False, 9, 4)
    keeper.set_perpetual(s, exchange_pb2.Perpetual(id=2, ticker="W", market_id=6))  # no market 6 at all
    info = keeper.get_margin_info(s, 2)
    assert (info.price, info.mark_price, info.price_exponent, info.stale) == (0, 0, 0, True)


def test_the_margin_view_reads_each_perpetual_once(ex):
    s = BranchStore(ex.store)
    view = keeper.MarginView(s)
    first = view.info(BTC)
    keeper.set_funding_index(s, BTC, 42)  # the view's snapshot does not move within its life
    assert view.info(BTC) is first and first.funding_index == 0
    assert keeper.MarginView(s).info(BTC).funding_index == 42
    assert view.is_isolated(SOL) and not view.is_isolated(ETH)


# --- genesis ---------------------------------------------------------------------------------------------------

GOOD_TIER = {"id": 0, "name": "T", "initial_margin_ppm": 50_000, "maintenance_fraction_ppm": 600_000,
             "impact_notional_quote_quantums": "10000000000"}

BAD_GENESIS = [
    pytest.param([], "perpetuals genesis must be an object", id="not an object"),
    pytest.param({"liquidity_tiers": ["x"]}, "perpetuals.liquidity_tiers[0] must be an object",
                 id="a tier that is not an object"),
    pytest.param({"liquidity_tiers": [{"id": 0, "colour": "red"}]}, "perpetuals.liquidity_tiers[0]: ",
                 id="a tier with an unknown field"),
    pytest.param({"liquidity_tiers": [GOOD_TIER, GOOD_TIER]}, "perpetuals.liquidity_tiers[1]: duplicate id 0",
                 id="a repeated tier id"),
    pytest.param({"liquidity_tiers": [{**GOOD_TIER, "initial_margin_ppm": 1_000_001}]},
                 "perpetuals.liquidity_tiers[0]: initial_margin_ppm_out_of_range: initial_margin_ppm 1000001",
                 id="a tier above 100 % initial margin"),
    pytest.param({"perpetuals": [{"id": 0, "ticker": 5}]}, "perpetuals.perpetuals[0]: ",
                 id="a perpetual with a wrongly typed field"),
]


@pytest.mark.parametrize("state, words", BAD_GENESIS)
def test_bad_perpetuals_genesis_is_refused_with_the_place_named(state, words):
    err = refused(perp_genesis.init_genesis, BranchStore(Empty()), state)
    assert err.code == errors.ERR_INVALID_GENESIS.code and words in err.log, err.log


def test_genesis_stores_tiers_returns_perpetuals_and_exports_both():
    s = BranchStore(Empty())
    perps = perp_genesis.init_genesis(s, {"liquidity_tiers": [{**GOOD_TIER, "id": 2}], "perpetuals": [
        {"id": 3, "ticker": "ETH-USD", "market_id": 1, "atomic_resolution": -9, "market_type": "MARKET_TYPE_CROSS"}]})
    assert [(p.id, p.ticker, p.atomic_resolution, p.market_type) for p in perps] == [(3, "ETH-USD", -9, keeper.CROSS)]
    assert keeper.get_tier(s, 2).impact_notional_quote_quantums == 10_000_000_000
    assert keeper.get_perpetual_or_none(s, 3) is None  # perpetuals are created with their clob pairs (clob genesis)
    keeper.set_perpetual(s, perps[0])
    assert perp_genesis.export_genesis(s) == {
        "liquidity_tiers": [{"id": 2, "name": "T", "initial_margin_ppm": 50_000, "maintenance_fraction_ppm": 600_000,
                             "impact_notional_quote_quantums": "10000000000"}],
        "perpetuals": [{"id": 3, "ticker": "ETH-USD", "market_id": 1, "atomic_resolution": -9,
                        "market_type": "MARKET_TYPE_CROSS"}]}


# --- the authority's liquidity-tier message --------------------------------------------------------------------

def upsert(account: int, nonce: int, **tier) -> bytes:
    fields = {"id": 0, "name": "Large-Cap", "initial_margin_ppm": 100_000, "maintenance_fraction_ppm": 500_000,
              "impact_notional_quote_quantums": 10_000_000_000, **tier}
    return msg_tx(account, nonce, [tx_pb2.Msg(upsert_liquidity_tier=tx_pb2.MsgUpsertLiquidityTier(
        authority=ADDRS[account], tier=TIER(**fields)))])


def test_a_tier_change_by_the_authority_applies_to_margins_and_is_an_event(ex):
    from tests.exchange_helpers import BTC_STEP, ONE_DOLLAR_BTC, POST_ONLY, IOC, BUY, SELL, orders_tx, place

    h = ex.app.info()[0] + 1
    ex.block([orders_tx(2, 1, [place(1, SELL, 1000 * BTC_STEP, 64_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)]),
              orders_tx(1, 1, [place(1, BUY, 1000 * BTC_STEP, 64_000 * ONE_DOLLAR_BTC, tif=IOC, height_hint=h)])])
    # Long 0.1 BTC at $64,000: notional 6,400 USD; IM 5 % = 320, MM 60 % of that = 192.
    s = subaccount(ex, 1)
    assert (s["initial_margin_requirement"], s["maintenance_margin_requirement"]) == ("320", "192")
    res = ex.block([upsert(0, 1)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    (event,) = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "liquidity_tier"]
    assert event == {"id": "0", "name": "Large-Cap", "initial_margin_ppm": "100000",
                     "maintenance_fraction_ppm": "500000"}
    # IM 10 % = 640, MM 50 % of that = 320.
    s = subaccount(ex, 1)
    assert (s["initial_margin_requirement"], s["maintenance_margin_requirement"]) == ("640", "320")


@pytest.mark.parametrize("account, tier, code, words", [
    pytest.param(1, {}, errors.ERR_UNAUTHORIZED, "only the chain authority", id="not the authority"),
    pytest.param(0, {"maintenance_fraction_ppm": 1_000_001}, errors.ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE,
                 "maintenance_fraction_ppm 1000001", id="maintenance fraction above 100 %"),
    pytest.param(0, {"open_interest_lower_cap_quote_quantums": 2, "open_interest_upper_cap_quote_quantums": 1},
                 errors.ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP,
                 "open_interest_lower_cap 2 > open_interest_upper_cap 1",
                 id="lower OI cap above the upper"),
])
def test_a_bad_tier_change_is_refused_and_changes_nothing(ex, account, tier, code, words):
    res = ex.block([upsert(account, 1, **tier)])
    assert res.tx_results[0].code == code.code and words in res.tx_results[0].log, res.tx_results[0].log
    assert keeper.get_tier(BranchStore(ex.store), 0).initial_margin_ppm == 50_000


def test_a_perpetuals_genesis_that_is_not_an_object_is_refused_with_exactly_that_message():
    err = refused(perp_genesis.init_genesis, BranchStore(Empty()), [])
    assert err.log == "invalid_genesis: perpetuals genesis must be an object"
