"""clob markets: behaviours no other test pinned, found by mutation testing (docs/mutation.md, issue #9).

The authority's market messages (pair status, new perpetuals, fee tiers: events and every refusal), the query
answers (order book with depth, orders, markets, params, subaccount details) and the clob genesis (refusals,
restored orders, sequence and stats, export). In-memory replicas only; numbers worked by hand in the comments.

Markets (tests/exchange_helpers.py): BTC-USD oracle $64,000, atomic resolution -10, QCE -9, tick $1 = 100_000
subticks, step 0.0001 BTC = 1_000_000 base quantums; ETH-USD $3,000, atomic -9; SOL-USD $150, isolated.
"""

from __future__ import annotations

import json

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app import errors
from app.clob import genesis as clob_genesis
from app.clob import keeper
from app.clob.genesis import DEFAULT_PARAMS
from app.lib.address import decode_address_or_none
from app.store import BranchStore
from app.subaccounts.keeper import isolated_pool
from tests.attack_helpers import app_state as exchange_app_state  # deep copy: the helpers' lists are shared
from tests.exchange_helpers import (
    BTC,
    BTC_STEP,
    BUY,
    IOC,
    ONE_BTC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    book,
    msg_tx,
    orders_tx,
    place,
    price_block,
    subaccount,
)
from tests.helpers import ADDRS, ONE_USDC
from tests.mutation_helpers import MemReplica

USD = ONE_USDC
A = [decode_address_or_none(a) for a in ADDRS]
P64K = 64_000 * ONE_DOLLAR_BTC


def chain(state: dict | None = None, ve: bool = False) -> MemReplica:
    r = MemReplica()
    r.init_chain(state if state is not None else exchange_app_state(), vote_extensions_enable_height=1 if ve else 0)
    r.block([])
    return r


@pytest.fixture
def ex():
    return chain()


def nxt(r) -> int:
    return r.app.info()[0] + 1


def query(r, path: str):
    res = r.app.query(path, b"")
    return res.code, (json.loads(res.value) if res.code == 0 else res.log)


def events_of(result, kind: str) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == kind]


# --- pair status -----------------------------------------------------------------------------------------------

def status_msg(status: int, pair: int = BTC, account: int = 0) -> tx_pb2.Msg:
    return tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(authority=ADDRS[account], clob_pair_id=pair,
                                                                       status=status))


def test_pair_status_change_is_an_event_and_shows_in_the_book(ex):
    res = ex.block([msg_tx(0, 1, [status_msg(3)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert events_of(res.tx_results[0], "clob_pair_status") == [{"clob_pair_id": "0", "old_status": "1", "status": "3"}]
    assert book(ex)["status"] == "cancel-only"
    res = ex.block([msg_tx(0, 2, [status_msg(2)])])
    assert events_of(res.tx_results[0], "clob_pair_status") == [{"clob_pair_id": "0", "old_status": "3", "status": "2"}]


@pytest.mark.parametrize("msg, code, words", [
    pytest.param(status_msg(5), errors.ERR_INVALID_CLOB_PAIR,
                 "status must be active, post-only, cancel-only or paused "
                 "(final settlement comes with the risk engine)",
                 id="final settlement"),
    pytest.param(status_msg(0), errors.ERR_INVALID_CLOB_PAIR, "status must be active", id="unspecified"),
    pytest.param(status_msg(1, pair=9), errors.ERR_UNKNOWN_CLOB_PAIR, "clob pair 9 does not exist", id="unknown pair"),
    pytest.param(status_msg(4, account=1), errors.ERR_UNAUTHORIZED, "only the chain authority", id="not the authority"),
])
def test_bad_pair_status_changes_are_refused(ex, msg, code, words):
    res = ex.block([msg_tx(0 if "authority" not in words else 1, 1, [msg])]).tx_results[0]
    assert res.code == code.code and words in res.log, res.log
    assert book(ex)["status"] == "active"


# --- new perpetuals --------------------------------------------------------------------------------------------

def create_msg(perp: dict | None = None, pair: dict | None = None, account: int = 0) -> tx_pb2.Msg:
    perp_fields = {"id": 3, "ticker": "DOGE-USD", "market_id": 1, "atomic_resolution": -5, "liquidity_tier": 0,
                   "market_type": exchange_pb2.MARKET_TYPE_CROSS, **(perp or {})}
    pair_fields = {"id": 3, "perpetual_id": 3, "step_base_quantums": 10, "subticks_per_tick": 100,
                   "quantum_conversion_exponent": -8, "status": exchange_pb2.CLOB_PAIR_STATUS_ACTIVE, **(pair or {})}
    return tx_pb2.Msg(create_perpetual=tx_pb2.MsgCreatePerpetual(
        authority=ADDRS[account], perpetual=exchange_pb2.Perpetual(**perp_fields),
        clob_pair=exchange_pb2.ClobPair(**pair_fields)))


def test_a_new_perpetual_is_listed_with_its_pair_and_an_event(ex):
    res = ex.block([msg_tx(0, 1, [create_msg()])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert events_of(res.tx_results[0], "perpetual_created") == [
        {"perpetual_id": "3", "ticker": "DOGE-USD", "clob_pair_id": "3"}]
    code, out = query(ex, "/perpetuals/list")
    (doge,) = [p for p in out["perpetuals"] if p["ticker"] == "DOGE-USD"]
    # oracle market 1 (ETH-USD, $3,000); step 10 base quantums of 1e-5 = 0.0001; tick 100 subticks at
    # 10^(QCE - atomic - 6) = 10^(-8 + 5 - 6) = 1e-9 USD per subtick: 0.0000001 USD
    assert doge["clob_pair"] == {"id": 3, "status": "active", "step_base_quantums": "10", "step": "0.0001",
                                 "subticks_per_tick": "100", "tick_usd": "0.0000001", "quantum_conversion_exponent": -8}
    assert (doge["market_type"], doge["oracle_price"], doge["open_interest"]) == ("cross", "3000", "0")


def test_a_new_isolated_perpetual_gets_a_pool_nobody_can_pay_into(ex):
    from app.lib.address import encode_address
    from node.client.txbuilder import msg_send

    isolated = create_msg({"market_type": exchange_pb2.MARKET_TYPE_ISOLATED, "liquidity_tier": 4})
    res = ex.block([msg_tx(0, 1, [isolated])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    res = ex.block([msg_tx(1, 1, [msg_send(ADDRS[1], encode_address(isolated_pool(3)), 1)])])
    assert res.tx_results[0].code == errors.ERR_MODULE_ACCOUNT.code


BAD_CREATES = [
    pytest.param(create_msg({"id": BTC}, {"perpetual_id": BTC}), errors.ERR_PERPETUAL_EXISTS, "perpetual 0 exists",
                 id="an existing perpetual id"),
    pytest.param(create_msg(pair={"id": BTC}), errors.ERR_INVALID_CLOB_PAIR, "clob pair 0 exists",
                 id="an existing pair id"),
    pytest.param(create_msg({"market_id": 9}), errors.ERR_INVALID_PERPETUAL, "oracle market 9 does not exist",
                 id="no such oracle market"),
    pytest.param(create_msg({"liquidity_tier": 7}), errors.ERR_UNKNOWN_LIQUIDITY_TIER,
                 "liquidity tier 7 does not exist",
                 id="no such tier"),
    pytest.param(create_msg({"market_type": 0}), errors.ERR_INVALID_PERPETUAL, "market_type must be cross or isolated",
                 id="no market type"),
    pytest.param(create_msg({"atomic_resolution": 31}), errors.ERR_INVALID_PERPETUAL,
                 "atomic_resolution must be in -30..30 and the ticker set", id="atomic resolution 31"),
    pytest.param(create_msg({"atomic_resolution": -31}), errors.ERR_INVALID_PERPETUAL, "atomic_resolution must be in",
                 id="atomic resolution -31"),
    pytest.param(create_msg({"ticker": ""}), errors.ERR_INVALID_PERPETUAL, "the ticker set", id="no ticker"),
    pytest.param(create_msg({"open_interest_base_quantums": 1}), errors.ERR_INVALID_PERPETUAL,
                 "a new perpetual starts with open interest 0 and funding index 0", id="open interest at creation"),
    pytest.param(create_msg({"funding_index": -1}), errors.ERR_INVALID_PERPETUAL, "open interest 0 and funding index 0",
                 id="a funding index at creation"),
    pytest.param(create_msg(pair={"perpetual_id": 1}), errors.ERR_INVALID_CLOB_PAIR,
                 "clob pair 3 must name perpetual 3", id="a pair of another perpetual"),
    pytest.param(create_msg(pair={"step_base_quantums": 0}), errors.ERR_INVALID_CLOB_PAIR,
                 "step_base_quantums and subticks_per_tick must be positive", id="step 0"),
    pytest.param(create_msg(pair={"subticks_per_tick": 0}), errors.ERR_INVALID_CLOB_PAIR,
                 "step_base_quantums and subticks_per_tick must be positive", id="tick 0"),
    pytest.param(create_msg(pair={"quantum_conversion_exponent": 31}), errors.ERR_INVALID_CLOB_PAIR,
                 "quantum_conversion_exponent must be in -30..30", id="QCE 31"),
    pytest.param(create_msg(pair={"quantum_conversion_exponent": -31}), errors.ERR_INVALID_CLOB_PAIR,
                 "quantum_conversion_exponent must be in -30..30", id="QCE -31"),
    pytest.param(create_msg(pair={"status": 5}), errors.ERR_INVALID_CLOB_PAIR,
                 "status must be active, post-only, cancel-only or paused", id="a final-settlement pair"),
    pytest.param(create_msg(account=1), errors.ERR_UNAUTHORIZED, "only the chain authority", id="not the authority"),
]


@pytest.mark.parametrize("msg, code, words", BAD_CREATES)
def test_bad_new_perpetuals_are_refused(ex, msg, code, words):
    account = 1 if code is errors.ERR_UNAUTHORIZED else 0
    res = ex.block([msg_tx(account, 1, [msg])]).tx_results[0]
    assert res.code == code.code and words in res.log, res.log
    assert len(query(ex, "/perpetuals/list")[1]["perpetuals"]) == 3


@pytest.mark.parametrize("perp, pair", [
    pytest.param({"atomic_resolution": 30}, {"quantum_conversion_exponent": 30, "status": 4},
                 id="resolution and QCE 30, paused"),
    pytest.param({"atomic_resolution": -30}, {"quantum_conversion_exponent": -30, "status": 2},
                 id="resolution and QCE -30, post-only"),
    pytest.param({}, {"status": 3}, id="cancel-only"),
])
def test_new_perpetuals_on_the_bounds_are_accepted(ex, perp, pair):
    assert ex.block([msg_tx(0, 1, [create_msg(perp, pair)])]).tx_results[0].code == 0


# --- fee tiers -------------------------------------------------------------------------------------------------

def test_new_fee_tiers_apply_to_the_next_fill_and_keep_the_other_params(ex):
    tiers = [exchange_pb2.FeeTier(name="flat", maker_fee_ppm=-20, taker_fee_ppm=300)]
    res = ex.block([msg_tx(0, 1, [tx_pb2.Msg(set_fee_tiers=tx_pb2.MsgSetFeeTiers(authority=ADDRS[0],
                                                                               fee_tiers=tiers))])])
    assert res.tx_results[0].code == 0 and events_of(res.tx_results[0], "fee_tiers") == [{"tiers": "1"}]
    code, params = query(ex, "/clob/params")
    assert params["fee_tiers"] == [{"name": "flat", "absolute_volume_requirement_quote_quantums": "0",
                                    "total_volume_share_requirement_ppm": 0, "maker_volume_share_requirement_ppm": 0,
                                    "maker_fee_ppm": -20, "taker_fee_ppm": 300}]
    assert (params["short_block_window"], params["max_open_orders_per_subaccount"],
            params["max_stateful_window_ns"]) == (40, 200, str(95 * 86_400 * 10**9))
    bad = [exchange_pb2.FeeTier(name="x", maker_fee_ppm=-301, taker_fee_ppm=300)]
    res = ex.block([msg_tx(0, 2, [tx_pb2.Msg(set_fee_tiers=tx_pb2.MsgSetFeeTiers(authority=ADDRS[0],
                                                                               fee_tiers=bad))])])
    assert res.tx_results[0].code == errors.ERR_INVALID_FEE_TIERS.code
    res = ex.block([msg_tx(1, 1, [tx_pb2.Msg(set_fee_tiers=tx_pb2.MsgSetFeeTiers(authority=ADDRS[1],
                                                                               fee_tiers=tiers))])])
    assert res.tx_results[0].code == errors.ERR_UNAUTHORIZED.code


# --- queries ---------------------------------------------------------------------------------------------------

def rest_book(r) -> None:
    """Asks: 2 orders at 64,010 (0.0001 + 0.0002 BTC), 1 at 64,020; bids: 63,990 and 63,980."""
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, BTC_STEP, 64_010 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),
                              place(2, SELL, 2 * BTC_STEP, 64_010 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),
                              place(3, SELL, BTC_STEP, 64_020 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)]),
             orders_tx(3, 1, [place(1, BUY, BTC_STEP, 63_990 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),
                              place(2, BUY, 5 * BTC_STEP, 63_980 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)])])


def test_order_book_levels_and_depth(ex):
    rest_book(ex)
    code, full = query(ex, "/clob/orderbook/btc-usd")  # any case
    assert full["asks"][0] == {"subticks": str(64_010 * ONE_DOLLAR_BTC), "price": "64010",
                               "quantums": str(3 * BTC_STEP), "size": "0.0003", "orders": 2}
    assert [a["price"] for a in full["asks"]] == ["64010", "64020"]
    assert [(b["price"], b["size"], b["orders"]) for b in full["bids"]] == [("63990", "0.0001", 1),
                                                                           ("63980", "0.0005", 1)]
    code, top = query(ex, "/clob/orderbook/0/1")  # by id, depth 1
    assert (top["market"], top["clob_pair_id"], top["status"]) == ("BTC-USD", 0, "active")
    assert [a["price"] for a in top["asks"]] == ["64010"] and [b["price"] for b in top["bids"]] == ["63990"]
    assert query(ex, "/clob/orderbook/BTC-USD/1000")[0] == 0


def test_order_book_of_committed_state_while_a_block_is_pending(ex):
    rest_book(ex)
    _, before = query(ex, "/clob/orderbook/BTC-USD/1")
    ex.block([orders_tx(4, 1, [place(1, BUY, BTC_STEP, 64_000 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                     height_hint=nxt(ex))])], commit=False)
    _, during = query(ex, "/clob/orderbook/BTC-USD/1")
    assert during == before  # the uncommitted bid at 64,000 is not shown
    _, full = query(ex, "/clob/orderbook/BTC-USD")
    assert [(a["price"], a["quantums"], a["orders"]) for a in full["asks"]] == [
        ("64010", str(3 * BTC_STEP), 2), ("64020", str(BTC_STEP), 1)]
    assert [b["price"] for b in full["bids"]] == ["63990", "63980"]


@pytest.mark.parametrize("path, code, words", [
    pytest.param("/clob/orderbook/DOGE-USD", errors.ERR_UNKNOWN_CLOB_PAIR,
                 "no market 'DOGE-USD'; markets: BTC-USD, ETH-USD, SOL-USD", id="unknown market"),
    pytest.param("/clob/orderbook/7", errors.ERR_UNKNOWN_CLOB_PAIR, "no market '7'", id="unknown id"),
    pytest.param("/clob/orderbook/BTC-USD/0", errors.ERR_BAD_QUERY_PATH, "depth must be 1..1000", id="depth 0"),
    pytest.param("/clob/orderbook/BTC-USD/1001", errors.ERR_BAD_QUERY_PATH, "depth must be 1..1000",
                 id="depth 1001"),
    pytest.param(f"/subaccounts/show/{ADDRS[1]}/128", errors.ERR_INVALID_SUBACCOUNT,
                 "subaccount number '128' is not in 0..127", id="subaccount 128"),
    pytest.param(f"/clob/orders/{ADDRS[1]}/x", errors.ERR_INVALID_SUBACCOUNT, "subaccount number 'x'",
                 id="orders of subaccount x"),
])
def test_bad_queries_are_answered_with_a_code(ex, path, code, words):
    got, log = query(ex, path)
    assert got == code.code and words in log, log


def test_orders_query_answers_every_field(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(5, SELL, 2 * BTC_STEP, 65_000 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                     height_hint=h)])])
    code, out = query(ex, f"/clob/orders/{ADDRS[2]}/0")
    assert out == {"orders": [{
        "owner": ADDRS[2], "subaccount_number": 0, "client_id": 5, "order_flags": 0, "clob_pair_id": 0,
        "market": "BTC-USD", "side": "sell", "time_in_force": "post-only", "reduce_only": False,
        "subticks": str(65_000 * ONE_DOLLAR_BTC), "price": "65000", "quantums": "2000000", "size": "0.0002",
        "remaining_quantums": "2000000", "remaining": "0.0002", "good_til_block": str(h + 20),
        "good_til_block_time_ns": "0", "sequence": "1", "placed_height": str(h)}]}
    assert query(ex, f"/clob/orders/{ADDRS[2]}/1")[1] == {"orders": []}
    assert len(query(ex, f"/clob/orders/{ADDRS[2]}")[1]["orders"]) == 1


def test_subaccount_query_after_the_price_moves():
    """Account 1 buys 1 BTC at 64,000 (taker fee 32): quote 100,000 - 64,000 - 32 = 35,968. BTC to 66,000:
    notional 66,000, unrealized PnL +2,000, TNC 101,968, IMR 3,300, MMR 1,980, leverage 66,000 / 101,968 = 0.64."""
    r = chain(ve=True)
    h = nxt(r)
    price_block(r, [orders_tx(2, 1, [place(1, SELL, ONE_BTC, P64K, tif=POST_ONLY, height_hint=h)]),
                    orders_tx(1, 1, [place(1, BUY, ONE_BTC, P64K, tif=IOC, height_hint=h)])])
    price_block(r, prices={BTC: 6_600_000_000})
    s = subaccount(r, 1)
    (pos,) = s["positions"]
    assert (pos["side"], pos["size"], pos["entry_price"], pos["oracle_price"], pos["notional"]) == (
        "long", "1", "64000", "66000", "66000")
    assert (pos["unrealized_pnl"], pos["funding_index"], pos["perpetual_id"]) == ("2000", "0", 0)
    assert (s["quote_balance"], s["total_net_collateral"], s["initial_margin_requirement"],
            s["maintenance_margin_requirement"], s["free_collateral"]) == ("35968", "101968", "3300", "1980", "98668")
    assert (s["leverage"], s["liquidatable"], s["unsettled_funding_quote_quantums"]) == ("0.64", False, "0")
    short = subaccount(r, 2)
    (pos,) = short["positions"]
    # the short sold at 64,000 and the price rose by 2,000
    assert (pos["side"], pos["size"], pos["unrealized_pnl"], pos["entry_price"]) == ("short", "-1", "-2000", "64000")


def test_markets_query_shows_tiers_prices_and_open_interest(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(1, SELL, ONE_BTC, P64K, tif=POST_ONLY, height_hint=h)]),
              orders_tx(1, 1, [place(1, BUY, ONE_BTC, P64K, tif=IOC, height_hint=h)])])
    code, out = query(ex, "/perpetuals/list")
    btc, eth, sol = out["perpetuals"]
    assert (btc["id"], btc["ticker"], btc["market_id"], btc["atomic_resolution"], btc["market_type"]) == (
        0, "BTC-USD", 0, -10, "cross")
    assert btc["liquidity_tier"] == {"id": 0, "name": "Large-Cap", "initial_margin_ppm": 50_000,
                                     "maintenance_fraction_ppm": 600_000,
                                     "open_interest_lower_cap_quote_quantums": "0",
                                     "open_interest_upper_cap_quote_quantums": "0"}
    assert (btc["open_interest_base_quantums"], btc["open_interest"], btc["funding_index"]) == (
        str(ONE_BTC), "1", "0")
    assert (btc["oracle_price"], btc["mark_price"], btc["oracle_stale"]) == ("64000", "64000", False)
    assert btc["clob_pair"]["tick_usd"] == "1" and btc["clob_pair"]["step"] == "0.0001"
    assert sol["market_type"] == "isolated" and sol["liquidity_tier"]["open_interest_upper_cap_quote_quantums"] == \
        "1000000000000"
    assert eth["oracle_price"] == "3000"


# --- genesis ---------------------------------------------------------------------------------------------------

def resting(**fields) -> dict:
    base = {"owner": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "client_id": 1, "clob_pair_id": BTC, "side": "SIDE_SELL",
            "quantums": "1000000", "remaining_quantums": "1000000", "subticks": "6500000000", "good_til_block": "30",
            "sequence": "4"}
    return {**base, **fields}


BAD_ORDERS = [
    pytest.param({"clob_pair_id": 9}, id="an unknown pair"),
    pytest.param({"owner": "AAAA"}, id="an owner that is not 20 bytes"),
    pytest.param({"subaccount_number": 128}, id="subaccount 128"),
    pytest.param({"order_flags": 32}, id="flags 32"),
    pytest.param({"side": "SIDE_UNSPECIFIED"}, id="no side"),
    pytest.param({"remaining_quantums": "0"}, id="nothing remaining"),
    pytest.param({"remaining_quantums": "2000000"}, id="more remaining than the size"),
    pytest.param({"subticks": "0"}, id="no price"),
    pytest.param({"quantums": "1500000", "remaining_quantums": "1000000"}, id="an off-step size"),
    pytest.param({"subticks": "6500050000"}, id="an off-tick price"),
    pytest.param({"good_til_block": "0"}, id="no good-til"),
    pytest.param({"good_til_block_time_ns": "5"}, id="both good-tils"),
    pytest.param({"good_til_block": "0", "good_til_block_time_ns": "5"}, id="a good-til time with short-term flags"),
    pytest.param({"order_flags": 64}, id="long-term flags with a good-til block"),
    pytest.param({"good_til_block": "0", "good_til_block_time_ns": "-5", "order_flags": 64},
                 id="a negative good-til time"),
]


@pytest.mark.parametrize("fields", BAD_ORDERS)
def test_genesis_orders_that_could_not_rest_are_refused(fields):
    state = exchange_app_state()
    state["clob"]["orders"] = [resting(**fields)]
    with pytest.raises(errors.AppError) as info:
        MemReplica().init_chain(state)
    assert info.value.code == errors.ERR_INVALID_GENESIS.code
    assert "clob.orders[0] is not a valid resting order" in info.value.log, info.value.log


@pytest.mark.parametrize("mutate, words", [
    pytest.param(lambda c: c.update(orders=[resting(), resting(sequence="5")]), "clob.orders[1] repeats an order id",
                 id="a repeated order id"),
    pytest.param(lambda c: c.update(clob_pairs=c["clob_pairs"][:2]), "every perpetual needs exactly one clob pair",
                 id="a perpetual without a pair"),
    pytest.param(lambda c: c.update(clob_pairs=c["clob_pairs"] + [{**c["clob_pairs"][0], "id": 7}]),
                 "every perpetual needs exactly one clob pair", id="two pairs of one perpetual"),
    pytest.param(lambda c: c["clob_pairs"][2].update(perpetual_id=5), "perpetual 2 has no clob pair",
                 id="a pair naming no perpetual"),
    pytest.param(lambda c: c["clob_pairs"][1].update(subticks_per_tick="0"),
                 "perpetual 1 / clob pair 1: invalid_clob_pair: step_base_quantums and subticks_per_tick",
                 id="a pair with tick 0"),
    pytest.param(lambda c: c.update(params={**DEFAULT_PARAMS, "fee_tiers": []}),
                 "clob.params: invalid_fee_tiers: at least one fee tier is needed", id="no fee tier"),
    pytest.param(lambda c: c.update(params=[]), "clob.params must be an object", id="params not an object"),
    pytest.param(lambda c: c.update(stats=[{"owner": "perp1x", "buckets": ""}]),
                 "clob.stats[0].owner 'perp1x' is not an address", id="stats of a bad owner"),
    pytest.param(lambda c: c.update(stats=[{"owner": ADDRS[1], "buckets": "zz"}]), "clob.stats[0].buckets is not hex",
                 id="stats buckets not hex"),
    pytest.param(lambda c: c.update(stats=[{"owner": "", "buckets": "00" * 23}]),
                 "clob.stats[0].buckets: not whole 24-byte buckets", id="a short bucket"),
    pytest.param(lambda c: c.update(next_sequence="x"), "clob.next_sequence must be a decimal string",
                 id="a bad next sequence"),
])
def test_bad_clob_genesis_is_refused(mutate, words):
    state = exchange_app_state()
    mutate(state["clob"])
    with pytest.raises(errors.AppError) as info:
        MemReplica().init_chain(state)
    assert info.value.code == errors.ERR_INVALID_GENESIS.code and words in info.value.log, info.value.log


def test_clob_genesis_must_be_an_object():
    state = exchange_app_state()
    state["clob"] = []
    with pytest.raises(errors.AppError, match="clob genesis must be an object"):
        MemReplica().init_chain(state)


def test_clob_genesis_restores_orders_sequence_and_stats_and_exports_them():
    owner_b64 = __import__("base64").b64encode(A[2]).decode()
    day = 1_700_000_000 // 86_400  # genesis time (1.7e18 ns) in days
    buckets = "%016x%016x%016x" % (day, 5_000, 2_000)
    state = exchange_app_state()
    state["bank"]["balances"].append({"address": ADDRS[7], "amount_quote_quantums": "1"})
    state["clob"].update(orders=[resting(owner=owner_b64)], next_sequence="9",
                         stats=[{"owner": "", "buckets": buckets}, {"owner": ADDRS[2], "buckets": buckets}])
    r = chain(state)
    assert [(a["price"], a["size"]) for a in book(r)["asks"]] == [("65000", "0.0001")]
    exported = clob_genesis.export_genesis(BranchStore(r.store))
    assert exported["next_sequence"] == "9"
    assert exported["stats"] == [{"owner": "", "buckets": buckets}, {"owner": ADDRS[2], "buckets": buckets}]
    (o,) = exported["orders"]
    assert (o["owner"], o["side"], o["quantums"], o["good_til_block"], o["sequence"]) == (
        owner_b64, "SIDE_SELL", "1000000", "30", "4")
    assert exported["params"]["short_block_window"] == 40 and len(exported["params"]["fee_tiers"]) == 9
    assert [p["id"] for p in exported["clob_pairs"] if "id" in p] == [1, 2]  # protobuf JSON leaves out id 0
    # the restored volume counts for fee tiers: account 2 has 5,000 of total, 2,000 as maker
    assert keeper.get_volume(BranchStore(r.store), A[2], 1_700_000_000 * 10**9) == keeper.Volume(5_000, 2_000)
    # the next placement takes sequence 9
    h = nxt(r)
    r.block([orders_tx(3, 1, [place(1, SELL, BTC_STEP, 66_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)])])
    seqs = sorted(o["sequence"] for o in clob_genesis.export_genesis(BranchStore(r.store))["orders"])
    assert seqs == ["4", "9"]


def test_clob_genesis_without_params_uses_the_defaults():
    state = exchange_app_state()
    state["clob"].pop("params", None)
    r = chain(state)
    params = query(r, "/clob/params")[1]
    assert (params["default_market_slippage_ppm"], params["max_market_slippage_ppm"]) == (50_000, 500_000)
    assert [(t["name"], t["maker_fee_ppm"], t["taker_fee_ppm"]) for t in params["fee_tiers"]][:3] == [
        ("1", 100, 500), ("2", 100, 450), ("3", 50, 400)]
