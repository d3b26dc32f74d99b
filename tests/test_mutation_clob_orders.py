"""clob order actions: behaviours no other test pinned, found by mutation testing (docs/mutation.md, issue #9).

Every refusal of a malformed action (its code and reason), the stateful checks on their bounds (pair status, oracle
staleness, the good-til windows, nearest valid size and price, the slippage bound, reduce-only direction, open-order
limit), the market order's protective limit, the block's phase order for batch cancels and cancel-replaces, the
fields of order_action / fill / order_removed events, and CheckTx over a batch. In-memory replicas only.

Market BTC-USD (tests/exchange_helpers.py): oracle $64,000 = 6_400_000_000 subticks, tick $1 = 100_000 subticks,
step 0.0001 BTC = 1_000_000 base quantums; IM 5 %; fees maker 100 / taker 500 ppm (tier 1). Accounts 1..4 hold
100 000 USDC in subaccount 0.
"""

from __future__ import annotations

import pytest
from perpchain.v1 import exchange_pb2, prices_pb2, tx_pb2

from app import errors
from app.clob import actions, keeper
from app.clob.genesis import DEFAULT_PARAMS
from app.context import BlockInfo
from app.lib.address import decode_address_or_none
from app.prices import keeper as prices_keeper
from app.store import BranchStore
from tests.attack_helpers import app_state as exchange_app_state  # deep copy: the helpers' lists are shared
from tests.exchange_helpers import (
    BTC,
    ETH,
    BTC_STEP,
    BUY,
    FOK,
    IOC,
    ONE_BTC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    actions_of,
    book,
    cancel,
    fills_of,
    orders_tx,
    place,
)
from tests.helpers import ADDRS, CHAIN_ID
from tests.mutation_helpers import MemReplica, refused

A = [decode_address_or_none(a) for a in ADDRS]
P64K = 64_000 * ONE_DOLLAR_BTC
T = 1_700_000_000_000_000_000  # a block time (ns)
WINDOW_NS = 95 * 86_400 * 10**9


def chain(**state_kwargs) -> MemReplica:
    r = MemReplica()
    r.init_chain(exchange_app_state(**state_kwargs))
    r.block([])
    return r


@pytest.fixture
def ex():
    return chain()


def nxt(r) -> int:
    return r.app.info()[0] + 1


def p(**fields) -> tx_pb2.PlaceOrder:
    base = {"client_id": 1, "clob_pair_id": BTC, "side": BUY, "quantums": BTC_STEP, "subticks": P64K,
            "good_til_block": 10}
    return tx_pb2.PlaceOrder(**{**base, **fields})


def oid(**fields) -> tx_pb2.OrderId:
    return tx_pb2.OrderId(**{"client_id": 1, "clob_pair_id": BTC, **fields})


# --- stateless -------------------------------------------------------------------------------------------------

STATELESS = [
    pytest.param(tx_pb2.OrderAction(place=p(subaccount_number=128)), errors.ERR_INVALID_ORDER,
                 "subaccount_number 128 outside 0..127", id="place from subaccount 128"),
    pytest.param(tx_pb2.OrderAction(place=p(side=0)), errors.ERR_INVALID_ORDER, "side must be buy or sell",
                 id="no side"),
    pytest.param(tx_pb2.OrderAction(place=p(side=3)), errors.ERR_INVALID_ORDER, "side must be buy or sell",
                 id="an unknown side"),
    pytest.param(tx_pb2.OrderAction(place=p(quantums=(1 << 62) + 1)), errors.ERR_INVALID_QUANTUMS,
                 "quantums must be in 1..4611686018427387904", id="size above 2^62"),
    pytest.param(tx_pb2.OrderAction(place=p(time_in_force=7)), errors.ERR_INVALID_ORDER, "unknown time_in_force 7",
                 id="an unknown time in force"),
    pytest.param(tx_pb2.OrderAction(place=p(good_til_block=0)), errors.ERR_INVALID_GOOD_TIL,
                 "set exactly one of good_til_block (short-term) and good_til_block_time_ns", id="no good-til"),
    pytest.param(tx_pb2.OrderAction(place=p(good_til_block_time_ns=T)), errors.ERR_INVALID_GOOD_TIL,
                 "set exactly one of good_til_block", id="both good-tils"),
    pytest.param(tx_pb2.OrderAction(place=p(good_til_block=0, good_til_block_time_ns=-5)), errors.ERR_INVALID_GOOD_TIL,
                 "good_til_block_time_ns must be positive", id="a negative good-til time"),
    pytest.param(tx_pb2.OrderAction(place=p(good_til_block=0, good_til_block_time_ns=T, time_in_force=FOK)),
                 errors.ERR_INVALID_ORDER, "long-term (good-til-time) orders cannot be IOC or FOK",
                 id="a long-term fill-or-kill"),
    pytest.param(tx_pb2.OrderAction(place=p(subticks=0, market_slippage_ppm=1, time_in_force=POST_ONLY)),
                 errors.ERR_INVALID_ORDER, "a market order is IOC; time_in_force must be unset or ioc",
                 id="a post-only market order"),
    pytest.param(tx_pb2.OrderAction(place=p(subticks=0, market_slippage_ppm=1, time_in_force=FOK)),
                 errors.ERR_INVALID_ORDER, "a market order is IOC", id="a fill-or-kill market order"),
    pytest.param(tx_pb2.OrderAction(place=p(subticks=0, market_slippage_ppm=1, good_til_block=0,
                                            good_til_block_time_ns=T)),
                 errors.ERR_INVALID_ORDER, "a market order is short-term (good_til_block)",
                 id="a long-term market order"),
    pytest.param(tx_pb2.OrderAction(place=p(subticks=0, market_slippage_ppm=1_000_000)), errors.ERR_INVALID_ORDER,
                 "market_slippage_ppm must be below 1000000", id="100 % slippage"),
    pytest.param(tx_pb2.OrderAction(place=p(subticks=0)), errors.ERR_INVALID_SUBTICKS,
                 "a limit order needs subticks > 0",
                 id="a limit order without a price"),
    pytest.param(tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=oid(subaccount_number=128))),
                 errors.ERR_INVALID_ORDER, "subaccount_number 128 outside 0..127", id="cancel from subaccount 128"),
    pytest.param(tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=oid(order_flags=32))), errors.ERR_INVALID_ORDER,
                 "order_flags must be 0 (short-term) or 64 (long-term)", id="cancel with flags 32"),
    pytest.param(tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(subaccount_number=128)), errors.ERR_INVALID_ORDER,
                 "subaccount_number 128 outside 0..127", id="batch cancel from subaccount 128"),
    pytest.param(tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(order_flags=1)), errors.ERR_INVALID_ORDER,
                 "order_flags must be 0 or 64", id="batch cancel with flags 1"),
    pytest.param(tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(client_ids=range(201))), errors.ERR_INVALID_ORDER,
                 "a batch cancel lists at most 200 client ids", id="batch cancel of 201 ids"),
    pytest.param(tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(order_id=oid(order_flags=1), place=p())),
                 errors.ERR_INVALID_ORDER, "order_flags must be 0 (short-term) or 64", id="cancel-replace: bad id"),
    pytest.param(tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(order_id=oid(), place=p(side=0))),
                 errors.ERR_INVALID_ORDER, "side must be buy or sell", id="cancel-replace: bad placement"),
    pytest.param(tx_pb2.OrderAction(), errors.ERR_INVALID_ORDER, "empty order action", id="an empty action"),
]


@pytest.mark.parametrize("action, code, words", STATELESS)
def test_malformed_actions_are_refused_with_code_and_reason(action, code, words):
    err = refused(actions.validate_action_stateless, action)
    assert err.code == code.code and words in err.log, err.log


@pytest.mark.parametrize("action, kind", [
    pytest.param(tx_pb2.OrderAction(place=p(quantums=1 << 62)), "place", id="a size of exactly 2^62"),
    pytest.param(tx_pb2.OrderAction(place=p(subticks=0, market_slippage_ppm=999_999, time_in_force=IOC)), "place",
                 id="an IOC market order with 99.9999 % slippage"),
    pytest.param(tx_pb2.OrderAction(place=p(good_til_block=0, good_til_block_time_ns=T, time_in_force=POST_ONLY)),
                 "place", id="a long-term post-only order"),
    pytest.param(tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(subaccount_number=127, order_flags=64,
                                                                    client_ids=range(200))),
                 "batch_cancel", id="a batch cancel of 200 long-term ids in subaccount 127"),
    pytest.param(tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=oid(order_flags=64))), "cancel",
                 id="a long-term cancel"),
])
def test_well_formed_actions_on_the_bounds_pass(action, kind):
    assert actions.validate_action_stateless(action) == kind


# --- stateful placement checks ---------------------------------------------------------------------------------

def block(height: int = 10, time_ns: int = T) -> BlockInfo:
    return BlockInfo(height=height, block_time_ns=time_ns, chain_id=CHAIN_ID)


def with_pair_status(r, status: int) -> BranchStore:
    s = BranchStore(r.store)
    pair = exchange_pb2.ClobPair()
    pair.CopyFrom(keeper.get_pair(s, BTC))
    pair.status = status
    keeper.set_pair(s, pair)
    return s


@pytest.mark.parametrize("status, post_only, words", [
    pytest.param(2, False, "clob pair 0 is post-only: only post-only orders are accepted",
                 id="post-only pair, resting order"),
    pytest.param(3, True, "clob pair 0 is cancel-only: no order is accepted", id="cancel-only pair"),
    pytest.param(4, True, "clob pair 0 is paused: no order is accepted", id="paused pair"),
])
def test_pair_status_refuses_placements(ex, status, post_only, words):
    s = with_pair_status(ex, status)
    err = refused(actions.validate_place, s, block(), A[1], p(time_in_force=POST_ONLY if post_only else 0))
    assert err.code == errors.ERR_CLOB_PAIR_STATUS.code and words in err.log, err.log


def test_a_post_only_pair_takes_post_only_orders(ex):
    s = with_pair_status(ex, 2)
    placed = actions.validate_place(s, block(), A[1], p(time_in_force=POST_ONLY))
    assert placed.order.time_in_force == POST_ONLY


def with_price(r, **fields) -> BranchStore:
    s = BranchStore(r.store)
    price = prices_pb2.MarketPrice()
    price.CopyFrom(prices_keeper.get_market_price(s, BTC))
    for k, v in fields.items():
        setattr(price, k, v)
    prices_keeper.apply_market_price(s, price)
    return s


def test_no_oracle_price_refuses_every_order(ex):
    err = refused(actions.validate_place, with_price(ex, oracle_price=0), block(), A[1], p(reduce_only=True))
    assert err.code == errors.ERR_PRICE_UNAVAILABLE.code and "perpetual 0 has no oracle price yet" in err.log


def test_a_stale_oracle_accepts_only_reduce_only_orders(ex):
    s = with_price(ex, stale=True)
    err = refused(actions.validate_place, s, block(), A[1], p())
    assert err.code == errors.ERR_STALE_ORACLE.code
    assert "the oracle price of perpetual 0 is stale: only reduce-only orders are accepted" in err.log
    err = refused(actions.validate_place, s, block(), A[1], p(reduce_only=True))  # past the staleness check
    assert err.code == errors.ERR_REDUCE_ONLY.code


@pytest.mark.parametrize("fields, code, words", [
    pytest.param({"quantums": 500_000}, errors.ERR_INVALID_QUANTUMS,
                 "size 500000 base quantums is not a multiple of the step 1000000; nearest valid: 1000000",
                 id="below one step: only one suggestion"),
    pytest.param({"quantums": 2_500_000}, errors.ERR_INVALID_QUANTUMS, "nearest valid: 2000000 or 3000000",
                 id="between two steps"),
    pytest.param({"subticks": 50_000}, errors.ERR_INVALID_SUBTICKS,
                 "price 50000 subticks is not a multiple of the tick 100000; nearest valid: 100000",
                 id="below one tick: only one suggestion"),
    pytest.param({"subticks": 250_000}, errors.ERR_INVALID_SUBTICKS, "nearest valid: 200000 or 300000",
                 id="between two ticks"),
    pytest.param({"subticks": 0, "market_slippage_ppm": 500_001}, errors.ERR_INVALID_ORDER,
                 "market_slippage_ppm 500001 is above the chain's bound 500000", id="slippage above the chain bound"),
    pytest.param({"good_til_block": 9}, errors.ERR_INVALID_GOOD_TIL,
                 "good_til_block 9 must be within 10..50 (height .. height + 40)", id="good til the previous block"),
    pytest.param({"good_til_block": 51}, errors.ERR_INVALID_GOOD_TIL, "good_til_block 51 must be within 10..50",
                 id="good til 41 blocks ahead"),
    pytest.param({"good_til_block": 0, "good_til_block_time_ns": T}, errors.ERR_INVALID_GOOD_TIL,
                 f"good_til_block_time_ns {T} must be after the block time {T} and at most {WINDOW_NS} ns later",
                 id="good til the block time itself"),
    pytest.param({"good_til_block": 0, "good_til_block_time_ns": T + WINDOW_NS + 1}, errors.ERR_INVALID_GOOD_TIL,
                 "must be after the block time", id="good til 95 days and 1 ns"),
])
def test_placement_bounds_are_refused_with_the_nearest_valid_values(ex, fields, code, words):
    err = refused(actions.validate_place, BranchStore(ex.store), block(), A[1], p(**fields))
    assert err.code == code.code and words in err.log, err.log


@pytest.mark.parametrize("fields", [
    pytest.param({"good_til_block": 10}, id="good til this block"),
    pytest.param({"good_til_block": 50}, id="good til 40 blocks ahead"),
    pytest.param({"good_til_block": 0, "good_til_block_time_ns": T + 1}, id="good til 1 ns after the block time"),
    pytest.param({"good_til_block": 0, "good_til_block_time_ns": T + WINDOW_NS}, id="good til exactly 95 days"),
    pytest.param({"subticks": 0, "market_slippage_ppm": 500_000}, id="slippage exactly at the chain bound"),
])
def test_placements_on_the_bounds_pass(ex, fields):
    placed = actions.validate_place(BranchStore(ex.store), block(), A[1], p(**fields))
    assert placed.order.remaining_quantums == BTC_STEP and placed.order.placed_height == 10


def test_the_slippage_bound_is_off_when_the_chain_sets_none():
    r = chain(fee_tiers=None)
    s = BranchStore(r.store)
    params = exchange_pb2.ClobParams()
    params.CopyFrom(keeper.get_params(s))
    params.max_market_slippage_ppm = 0
    keeper.set_params(s, params)
    placed = actions.validate_place(s, block(), A[1], p(subticks=0, market_slippage_ppm=900_000))
    # buy: 64,000 × 1.9 = 121,600 USD
    assert placed.limit_subticks == 121_600 * ONE_DOLLAR_BTC


@pytest.mark.parametrize("side, slippage, limit_usd", [
    pytest.param(BUY, 10_000, 64_640, id="buy 1 %: 64,000 x 1.01"),
    pytest.param(SELL, 10_000, 63_360, id="sell 1 %: 64,000 x 0.99"),
    pytest.param(SELL, 15, 64_000, id="sell 0.0015 %: 63,999.04 rounds up to the tick (toward the oracle)"),
    pytest.param(BUY, 15, 64_000, id="buy 0.0015 %: 64,000.96 rounds down to the tick (toward the oracle)"),
])
def test_market_order_limit_moves_against_the_taker_and_aligns_toward_the_oracle(ex, side, slippage, limit_usd):
    placed = actions.validate_place(BranchStore(ex.store), block(), A[1], p(side=side, subticks=0,
                                                                           market_slippage_ppm=slippage))
    assert placed.limit_subticks == limit_usd * ONE_DOLLAR_BTC
    assert placed.order.subticks == placed.limit_subticks and placed.order.time_in_force == IOC


def test_reduce_only_direction_and_the_placed_order(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(1, SELL, 3 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)]),
              orders_tx(1, 1, [place(1, BUY, 3 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])  # 1 long, 2 short
    s = BranchStore(ex.store)
    err = refused(actions.validate_place, s, block(), A[1], p(side=BUY, reduce_only=True))
    assert err.code == errors.ERR_REDUCE_ONLY.code
    assert err.log == ("reduce_only_would_increase: reduce-only buy would open or grow the position: the subaccount "
                       "holds a long position of 3000000 base quantums in perpetual 0")
    err = refused(actions.validate_place, s, block(), A[2], p(side=SELL, reduce_only=True))
    assert err.log.endswith("reduce-only sell would open or grow the position: the subaccount holds a short position "
                            "of 3000000 base quantums in perpetual 0")
    err = refused(actions.validate_place, s, block(), A[3], p(side=SELL, reduce_only=True))
    assert err.log.endswith("reduce-only sell would open or grow the position: the subaccount holds no position in "
                            "perpetual 0")
    # the smallest long there is: one base quantum (set directly; fills move whole steps)
    from app.subaccounts import keeper as subaccounts_keeper
    from app.subaccounts.state import Position, SubaccountId, SubaccountState

    tiny = BranchStore(s)
    subaccounts_keeper.set_subaccount(tiny, SubaccountId(A[4], 0), SubaccountState(10**9, {0: Position(0, 1, 0, 0)}))
    err = refused(actions.validate_place, tiny, block(), A[4], p(side=BUY, reduce_only=True))
    assert err.log.endswith("the subaccount holds a long position of 1 base quantums in perpetual 0"), err.log
    placed = actions.validate_place(s, block(), A[1], p(side=SELL, reduce_only=True, client_id=9, subaccount_number=0,
                                                        good_til_block=0, good_til_block_time_ns=T + 5,
                                                        time_in_force=POST_ONLY))
    o = placed.order
    assert (o.owner, o.subaccount_number, o.client_id, o.order_flags, o.clob_pair_id, o.side, o.quantums) == (
        A[1], 0, 9, 64, BTC, SELL, BTC_STEP)
    assert (o.subticks, o.good_til_block, o.good_til_block_time_ns, o.time_in_force, o.reduce_only) == (
        P64K, 0, T + 5, POST_ONLY, True)
    assert (o.remaining_quantums, o.placed_height, placed.pair.id) == (BTC_STEP, 10, BTC)
    ok = actions.validate_place(s, block(), A[2], p(side=BUY, reduce_only=True))
    assert ok.order.reduce_only


def test_an_order_that_could_not_be_margined_is_refused_and_one_that_can_passes(ex):
    """Full size as if filled at its price, paying the maker fee: 31 BTC at 64,000 = 1,984,000 notional, IMR 5 % =
    99,200; TNC = 100,000 - 198.4 fee = 99,801.6: passes. 32 BTC: IMR 102,400 > 99,795.2: refused."""
    s = BranchStore(ex.store)
    actions.validate_place(s, block(), A[1], p(quantums=31 * ONE_BTC))
    err = refused(actions.validate_place, s, block(), A[1], p(quantums=32 * ONE_BTC))
    assert err.code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code
    assert "order (as if fully filled at its price)" in err.log


# --- execution ---------------------------------------------------------------------------------------------------

def test_the_open_order_limit_counts_resting_orders_per_subaccount_and_pair():
    r = MemReplica()
    state = exchange_app_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, "max_open_orders_per_subaccount": 2}
    r.init_chain(state)
    r.block([])
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(i, BUY, BTC_STEP, (60_000 + i) * ONE_DOLLAR_BTC, height_hint=h)
                                    for i in (1, 2, 3)]
                             + [place(4, BUY, BTC_STEP, 60_000 * ONE_DOLLAR_BTC, tif=IOC, height_hint=h),
                                place(5, BUY, BTC_STEP, 2_000_000_000, pair=ETH, height_hint=h)])])  # ETH at $2,000
    acts = actions_of(res.tx_results[0])
    # the limit is per subaccount and pair, and an IOC order never rests so it is not counted
    assert [a["status"] for a in acts] == ["resting", "resting", "rejected", "not_filled", "resting"]
    assert acts[2]["code"] == str(errors.ERR_TOO_MANY_OPEN_ORDERS.code)
    assert "subaccount 0 already has 2 open orders on pair 0" in acts[2]["reason"]


def test_action_event_attributes(ex):
    h = nxt(ex)
    res = ex.block([orders_tx(2, 1, [place(7, SELL, 2 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)]),
                    orders_tx(1, 1, [place(8, BUY, 3 * BTC_STEP, P64K, tif=IOC, height_hint=h),
                                     tx_pb2.OrderAction(place=p(side=0)),
                                     cancel(5, flags=64)])])
    maker, = actions_of(res.tx_results[0])
    assert maker == {"owner": ADDRS[2], "action_index": "0", "kind": "place", "subaccount_number": "0",
                     "clob_pair_id": "0", "client_id": "7", "side": "sell", "quantums": "2000000",
                     "filled_quantums": "0", "remaining_quantums": "2000000", "status": "resting",
                     "subticks": str(P64K)}
    taker, bad, missing = sorted(actions_of(res.tx_results[1]), key=lambda a: a["action_index"])
    assert taker == {"owner": ADDRS[1], "action_index": "0", "kind": "place", "subaccount_number": "0",
                     "clob_pair_id": "0", "client_id": "8", "side": "buy", "quantums": "3000000",
                     "filled_quantums": "2000000", "remaining_quantums": "1000000", "status": "partially_filled",
                     "subticks": str(P64K)}
    assert (bad["status"], bad["code"]) == ("rejected", str(errors.ERR_INVALID_ORDER.code))
    assert {k: missing[k] for k in ("kind", "subaccount_number", "clob_pair_id", "client_id", "order_flags", "status",
                                    "code")} == {"kind": "cancel", "subaccount_number": "0", "clob_pair_id": "0",
                                                 "client_id": "5", "order_flags": "64", "status": "rejected",
                                                 "code": str(errors.ERR_ORDER_NOT_FOUND.code)}
    # 0.0002 BTC at 64,000 = 12.8 USD; taker fee 500 ppm = 6,400; maker fee 100 ppm = 1,280 quote quantums
    (fill,) = fills_of(res.tx_results[1])
    assert fill == {"clob_pair_id": "0", "perpetual_id": "0", "taker": ADDRS[1], "taker_number": "0",
                    "taker_client_id": "8", "maker": ADDRS[2], "maker_number": "0", "maker_client_id": "7",
                    "maker_order_flags": "0", "taker_side": "buy", "subticks": str(P64K), "quantums": "2000000",
                    "quote_quantums": "12800000", "taker_fee_quote_quantums": "6400",
                    "maker_fee_quote_quantums": "1280", "taker_fee_tier": "1", "maker_fee_tier": "1"}
    assert list(fill) == ["clob_pair_id", "perpetual_id", "taker", "taker_number", "taker_client_id", "maker",
                          "maker_number", "maker_client_id", "maker_order_flags", "taker_side", "subticks", "quantums",
                          "quote_quantums", "taker_fee_quote_quantums", "maker_fee_quote_quantums", "taker_fee_tier",
                          "maker_fee_tier"]  # the documented order (docs/exchange.md)


def test_a_canceled_order_event_and_status(ex):
    ex.block([orders_tx(2, 1, [place(4, SELL, 2 * BTC_STEP, 65_000 * ONE_DOLLAR_BTC, gtbt_ns=T + 10**12)])])
    res = ex.block([orders_tx(2, 2, [cancel(4, flags=64)])])
    (a,) = actions_of(res.tx_results[0])
    assert (a["status"], a["remaining_quantums"], a["order_flags"]) == ("canceled", "2000000", "64")
    (removed,) = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "order_removed"]
    assert removed == {"owner": ADDRS[2], "number": "0", "clob_pair_id": "0", "client_id": "4", "order_flags": "64",
                       "remaining_quantums": "2000000", "reason": "canceled"}


def test_batch_cancel_filters_by_flags_and_client_ids(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(1, SELL, BTC_STEP, 65_000 * ONE_DOLLAR_BTC, height_hint=h),
                               place(2, SELL, BTC_STEP, 65_001 * ONE_DOLLAR_BTC, height_hint=h),
                               place(3, SELL, BTC_STEP, 65_002 * ONE_DOLLAR_BTC, height_hint=h),
                               place(1, SELL, BTC_STEP, 65_003 * ONE_DOLLAR_BTC, gtbt_ns=T + 10**12)])])
    only = tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC, client_ids=[1, 3]))
    res = ex.block([orders_tx(2, 2, [only])])
    assert actions_of(res.tx_results[0])[0]["canceled"] == "2"  # short-term 1 and 3; the long-term 1 stays
    assert [a["price"] for a in book(ex)["asks"]] == ["65001", "65003"]
    long_term = tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC, order_flags=64))
    res = ex.block([orders_tx(2, 3, [long_term])])
    (a,) = actions_of(res.tx_results[0])
    assert (a["canceled"], a["subaccount_number"], a["clob_pair_id"]) == ("1", "0", "0")
    assert [a["price"] for a in book(ex)["asks"]] == ["65001"]


def test_a_paused_pair_refuses_cancels_and_batch_cancels(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(1, SELL, BTC_STEP, 65_000 * ONE_DOLLAR_BTC, height_hint=h + 5)])])
    pause = tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(authority=ADDRS[0], clob_pair_id=BTC, status=4))
    from tests.exchange_helpers import msg_tx

    assert ex.block([msg_tx(0, 1, [pause])]).tx_results[0].code == 0
    batch = tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))
    res = ex.block([orders_tx(2, 2, [cancel(1), batch])])
    for a in actions_of(res.tx_results[0]):
        assert a["code"] == str(errors.ERR_CLOB_PAIR_STATUS.code)
        assert "clob pair 0 is paused: its book is frozen (cancels too)" in a["reason"]
    assert len(book(ex)["asks"]) == 1


# --- the block's phase order -----------------------------------------------------------------------------------

def test_a_batch_cancel_runs_before_takers_placed_earlier_in_the_block(ex):
    ex.block([orders_tx(2, 1, [place(1, SELL, BTC_STEP, P64K, tif=POST_ONLY, height_hint=nxt(ex))])])
    h = nxt(ex)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, tif=IOC, height_hint=h)]),
                    orders_tx(2, 2, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))])])
    assert fills_of(res.tx_results[0]) == [] and actions_of(res.tx_results[1])[0]["canceled"] == "1"


def test_a_post_only_cancel_replace_rests_before_takers_placed_earlier_in_the_block(ex):
    ex.block([orders_tx(2, 1, [place(1, SELL, BTC_STEP, 64_100 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=nxt(ex))])])
    h = nxt(ex)
    replace = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(client_id=1, clob_pair_id=BTC),
        place=tx_pb2.PlaceOrder(client_id=2, clob_pair_id=BTC, side=SELL, quantums=BTC_STEP, subticks=P64K,
                                good_til_block=h + 5, time_in_force=POST_ONLY)))
    res = ex.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, tif=IOC, height_hint=h)]),
                    orders_tx(2, 2, [replace])])
    # the cancel (phase 1) and the post-only placement (phase 2) run before the IOC (phase 3): it fills at 64,000
    assert [(f["maker_client_id"], f["subticks"]) for f in fills_of(res.tx_results[0])] == [("2", str(P64K))]


def test_a_taker_reduce_only_order_stops_when_its_position_is_closed(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(1, SELL, BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)]),
              orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, tif=IOC, height_hint=h)])])  # account 1 long 1 step
    h = nxt(ex)
    res = ex.block([orders_tx(3, 1, [place(1, BUY, BTC_STEP, 63_990 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),
                                     place(2, BUY, BTC_STEP, 63_980 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)]),
                    orders_tx(1, 2, [place(2, SELL, 3 * BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=IOC, reduce_only=True,
                                           height_hint=h)])])
    (a,) = actions_of(res.tx_results[1])
    assert (a["status"], a["filled_quantums"], a["stopped"]) == ("partially_filled", str(BTC_STEP),
                                                                  "reduce_only_nothing_to_reduce")
    assert len(book(ex)["bids"]) == 1  # the second bid was never touched


# --- CheckTx and the message's own checks ----------------------------------------------------------------------

def test_check_tx_reports_the_first_refusal_when_no_action_would_pass(ex):
    h = nxt(ex)
    tx = orders_tx(1, 1, [place(1, BUY, 1_500_000, P64K, height_hint=h), cancel(9)])
    res = ex.app.check_tx(tx)
    assert res.code == errors.ERR_INVALID_QUANTUMS.code, res.log
    ok = orders_tx(1, 2, [cancel(9), place(2, BUY, BTC_STEP, P64K, height_hint=h)])
    assert ex.app.check_tx(ok).code == 0  # one action would pass


def test_check_tx_batch_cancel_must_match_a_resting_order(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(4, SELL, BTC_STEP, 65_000 * ONE_DOLLAR_BTC, height_hint=h + 5)])])
    cases = [
        (tx_pb2.BatchCancel(clob_pair_id=BTC, client_ids=[5]), errors.ERR_ORDER_NOT_FOUND.code),
        (tx_pb2.BatchCancel(clob_pair_id=BTC, order_flags=64), errors.ERR_ORDER_NOT_FOUND.code),
        (tx_pb2.BatchCancel(clob_pair_id=BTC, subaccount_number=1), errors.ERR_ORDER_NOT_FOUND.code),
        (tx_pb2.BatchCancel(clob_pair_id=7), errors.ERR_UNKNOWN_CLOB_PAIR.code),
        (tx_pb2.BatchCancel(clob_pair_id=BTC, client_ids=[5, 4]), 0),
        (tx_pb2.BatchCancel(clob_pair_id=BTC), 0),
    ]
    for n, (batch, code) in enumerate(cases):
        res = ex.app.check_tx(orders_tx(2, 10 + n, [tx_pb2.OrderAction(batch_cancel=batch)]))
        assert res.code == code, (batch, res.log)
        if code == errors.ERR_ORDER_NOT_FOUND.code:
            assert "the batch cancel matches no resting order" in res.log


def test_check_tx_cancel_replace_needs_the_order_to_cancel(ex):
    replace = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(client_id=3, clob_pair_id=BTC), place=p(good_til_block=nxt(ex) + 1)))
    assert ex.app.check_tx(orders_tx(1, 1, [replace])).code == errors.ERR_ORDER_NOT_FOUND.code


@pytest.mark.parametrize("n_actions, code, words", [
    pytest.param(0, errors.ERR_INVALID_ORDER, "MsgOrders carries no action", id="no action"),
    pytest.param(201, errors.ERR_TOO_MANY_ACTIONS, "201 order actions, at most 200 per tx", id="201 actions"),
])
def test_msg_orders_needs_1_to_200_actions(ex, n_actions, code, words):
    res = ex.app.check_tx(orders_tx(1, 1, [cancel(i) for i in range(n_actions)]))
    assert res.code == code.code and words in res.log, res.log


def test_check_tx_refuses_a_batch_cancel_on_a_paused_pair_as_the_block_would(ex):
    from tests.exchange_helpers import msg_tx

    ex.block([orders_tx(2, 1, [place(1, SELL, BTC_STEP, 65_000 * ONE_DOLLAR_BTC, height_hint=nxt(ex) + 5)])])
    pause = tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(authority=ADDRS[0], clob_pair_id=BTC,
                                                                       status=4))
    assert ex.block([msg_tx(0, 1, [pause])]).tx_results[0].code == 0
    tx = orders_tx(2, 2, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))])
    in_block = actions_of(ex.block([tx], commit=False).tx_results[0])[0]
    assert in_block["code"] == str(errors.ERR_CLOB_PAIR_STATUS.code)  # what the block does
    ex.app.commit()
    tx = orders_tx(2, 3, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))])
    assert ex.app.check_tx(tx).code == errors.ERR_CLOB_PAIR_STATUS.code  # CheckTx answered 0 before the fix
