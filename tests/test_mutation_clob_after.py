"""clob: behaviours pinned after the full mutation run of app/clob (docs/mutation.md, issue #9). In-memory chains
(tests/mutation_helpers.MemReplica); numbers worked by hand in the comments.

Market BTC-USD as in tests/exchange_helpers.py (oracle $64,000, 1 dollar = 100 000 subticks), but some tests give
its pair a step of 1 base quantum so that positions of exactly 1 can be built and reduced.
"""

from __future__ import annotations

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.clob import genesis as clob_genesis
from app.lib.address import encode_address
from app.store import BranchStore
from app.subaccounts.keeper import CROSS_POOL, isolated_pool
from tests.attack_helpers import Nonces
from tests.attack_helpers import app_state as exchange_app_state  # deep copy: the helpers' lists are shared
from tests.exchange_helpers import (
    BTC,
    BUY,
    ETH,
    IOC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    SOL,
    actions_of,
    cancel,
    exchange_chain,
    fills_of,
    height_of,
    msg_tx,
    orders_tx,
    place,
    price_block,
    subaccount,
)
from tests.helpers import ADDRS
from tests.mutation_helpers import mem_exchange

P64K = 64_000 * ONE_DOLLAR_BTC


def position(r, account: int) -> int:
    return sum(int(p["size_base_quantums"]) for p in subaccount(r, account)["positions"] if p["market"] == "BTC-USD")


@pytest.fixture
def step1():
    state = exchange_app_state()
    for p in state["clob"]["clob_pairs"]:
        if p["id"] == BTC:
            p["step_base_quantums"] = "1"
    return mem_exchange(state)


def trade_one(r, buyer: int, seller: int, cid: int, nonce: Nonces) -> None:
    """``seller`` rests a post-only ask of 1 base quantum at $64,000; ``buyer`` takes it with an IOC."""
    h = height_of(r) + 1
    r.block([orders_tx(seller, nonce(seller), [place(cid, SELL, 1, P64K, tif=POST_ONLY, height_hint=h)])])
    res = r.block([orders_tx(buyer, nonce(buyer), [place(cid, BUY, 1, P64K, tif=IOC, height_hint=h + 1)])])
    assert len(fills_of(res.tx_results[0])) == 1, actions_of(res.tx_results[0])


def test_a_reduce_only_taker_closes_a_position_of_exactly_one_base_quantum(step1):
    nonce = Nonces()
    trade_one(step1, 1, 2, 1, nonce)  # account 1 long 1
    assert position(step1, 1) == 1
    h = height_of(step1) + 1
    step1.block([orders_tx(3, nonce(3), [place(2, BUY, 5, P64K, tif=POST_ONLY, height_hint=h)])])
    res = step1.block([orders_tx(1, nonce(1), [place(3, SELL, 5, P64K, tif=IOC, reduce_only=True,
                                                     height_hint=h + 1)])])
    assert [f["quantums"] for f in fills_of(res.tx_results[0])] == ["1"]  # clamped to the position
    assert position(step1, 1) == 0


@pytest.mark.parametrize("side", [BUY, SELL])
def test_a_resting_reduce_only_order_whose_position_was_closed_is_removed_not_filled(step1, side):
    """side BUY: account 1 short 1 rests a reduce-only bid, closes the short elsewhere, then a seller comes; SELL: the
    mirror image (long 1, reduce-only ask, a buyer comes)."""
    nonce = Nonces()
    if side == BUY:
        trade_one(step1, 2, 1, 1, nonce)  # account 1 short 1
    else:
        trade_one(step1, 1, 2, 1, nonce)  # account 1 long 1
    h = height_of(step1) + 1
    price = (63_000 if side == BUY else 65_000) * ONE_DOLLAR_BTC
    res = step1.block([orders_tx(1, nonce(1), [place(5, side, 1, price, reduce_only=True, height_hint=h + 10)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting"
    if side == BUY:
        trade_one(step1, 1, 3, 2, nonce)  # closes the short elsewhere: flat
    else:
        trade_one(step1, 3, 1, 2, nonce)  # closes the long elsewhere: flat
    assert position(step1, 1) == 0
    h = height_of(step1) + 1
    res = step1.block([orders_tx(4, nonce(4), [place(9, SELL if side == BUY else BUY, 1, price, tif=IOC,
                                                     height_hint=h)])])
    assert fills_of(res.tx_results[0]) == []  # the order would now open a position: removed, nothing filled
    removed = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "order_removed"]
    assert [(e["client_id"], e["reason"]) for e in removed] == [("5", "reduce_only_nothing_to_reduce")]
    assert position(step1, 1) == 0


# --- the authority's MsgUpdatePerpetual: refusals and event, exactly -----------------------------------------------

def _update(r, signer: int, nonce: int, authority: str | None = None, **fields):
    msg = tx_pb2.Msg(update_perpetual=tx_pb2.MsgUpdatePerpetual(
        authority=ADDRS[signer] if authority is None else authority, perpetual_id=BTC, **fields))
    return r.block([msg_tx(signer, nonce, [msg])]).tx_results[0]


@pytest.fixture
def ex():
    return mem_exchange()


def test_update_perpetual_event_names_the_perpetual_its_tier_and_type(ex):
    res = _update(ex, 0, 1, liquidity_tier=4, set_liquidity_tier=True)
    assert res.code == 0, res.log
    assert [(e.type, dict(e.attributes)) for e in res.events if e.type == "perpetual_updated"] == [
        ("perpetual_updated", {"perpetual_id": "0", "liquidity_tier": "4", "market_type": "1"})]


def test_update_perpetual_refusals_say_exactly_why(ex):
    res = _update(ex, 0, 1, market_type=7)
    assert (res.code, res.log) == (errors.ERR_INVALID_PERPETUAL.code,
                                   f"{errors.ERR_INVALID_PERPETUAL.name}: market_type must be cross or isolated")
    nonce = Nonces()
    nonce(0)
    h = height_of(ex) + 1
    ex.block([orders_tx(2, nonce(2), [place(1, SELL, 10**6, P64K, tif=POST_ONLY, height_hint=h)])])
    ex.block([orders_tx(1, nonce(1), [place(1, BUY, 10**6, P64K, tif=IOC, height_hint=h + 1)])])  # open interest
    res = _update(ex, 0, nonce(0), market_type=2)
    assert (res.code, res.log) == (errors.ERR_INVALID_PERPETUAL.code,
                                   f"{errors.ERR_INVALID_PERPETUAL.name}: perpetual 0 has open interest: its market "
                                   "type can only change when no position is open")


def test_a_bad_authority_address_is_refused_naming_the_authority_field(ex):
    res = _update(ex, 0, 1, authority="perp1nothing", liquidity_tier=4, set_liquidity_tier=True)
    assert (res.code, res.log) == (errors.ERR_INVALID_ADDRESS.code, f"{errors.ERR_INVALID_ADDRESS.name}: authority "
                                                                    "'perp1nothing' is not a valid perp1... address")


# --- CheckTx of batch cancels: exact refusals -----------------------------------------------------------------------

def _batch_cancel_tx(account: int, nonce: int, pair: int = BTC):
    return orders_tx(account, nonce, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=pair))])


def test_check_tx_refuses_a_batch_cancel_that_matches_nothing_or_a_paused_pair_exactly(ex):
    res = ex.app.check_tx(_batch_cancel_tx(1, 1))
    assert (res.code, res.log) == (errors.ERR_ORDER_NOT_FOUND.code,
                                   f"{errors.ERR_ORDER_NOT_FOUND.name}: the batch cancel matches no resting order")
    paused = tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(authority=ADDRS[0], clob_pair_id=BTC,
                                                                         status=4))
    assert ex.block([msg_tx(0, 1, [paused])]).tx_results[0].code == 0
    res = ex.app.check_tx(_batch_cancel_tx(1, 1))
    assert (res.code, res.log) == (errors.ERR_CLOB_PAIR_STATUS.code,
                                   f"{errors.ERR_CLOB_PAIR_STATUS.name}: clob pair 0 is paused: its book is frozen "
                                   "(cancels too)")


# --- queries and export --------------------------------------------------------------------------------------------

def _query(r, path: str):
    import json

    res = r.app.query(path, b"")
    return res.code, (json.loads(res.value) if res.code == 0 else res.log)


@pytest.mark.parametrize("path", ["/clob/orders/nobody", "/subaccounts/of/nobody"])
def test_a_bad_owner_in_a_query_is_named_exactly(ex, path):
    assert _query(ex, path) == (errors.ERR_INVALID_ADDRESS.code,
                                f"{errors.ERR_INVALID_ADDRESS.name}: owner 'nobody' is not a valid perp1... address")


def test_orders_and_subaccounts_of_an_owner_cover_every_subaccount_number(ex):
    nonce = Nonces()
    deposit = tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(owner=ADDRS[1], subaccount_number=5, amount_quote_quantums=10**9))
    assert ex.block([msg_tx(1, nonce(1), [deposit])]).tx_results[0].code == 0
    h = height_of(ex) + 1
    res = ex.block([orders_tx(1, nonce(1), [place(1, SELL, 10**6, 70_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),
                                            place(2, SELL, 10**6, 70_001 * ONE_DOLLAR_BTC, tif=POST_ONLY, number=5,
                                                  height_hint=h)])])
    assert [a["status"] for a in actions_of(res.tx_results[0])] == ["resting", "resting"]
    code, out = _query(ex, f"/clob/orders/{ADDRS[1]}")
    assert code == 0 and sorted((o["subaccount_number"], o["client_id"]) for o in out["orders"]) == [(0, 1), (5, 2)]
    code, out = _query(ex, f"/clob/orders/{ADDRS[1]}/5")
    assert code == 0 and [o["client_id"] for o in out["orders"]] == [2]
    code, out = _query(ex, f"/subaccounts/of/{ADDRS[1]}")
    assert code == 0 and [(s["number"], s["quote_balance_quote_quantums"]) for s in out["subaccounts"]] == [
        (0, str(100_000 * 10**6)), (5, str(10**9))]


def test_export_of_a_chain_without_trades_has_no_volume_entries(ex):
    assert clob_genesis.export_genesis(BranchStore(ex.store))["stats"] == []


# --- CheckTx accepts valid cancels ---------------------------------------------------------------------------------

def test_check_tx_accepts_a_cancel_and_a_batch_cancel_of_resting_orders(ex):
    cid = (1 << 24) | 7  # a client id whose first key byte is not 0: a key prefix one byte too long would miss it
    h = height_of(ex) + 1
    ex.block([orders_tx(1, 1, [place(cid, SELL, 10**6, 70_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h + 10)])])
    res = ex.app.check_tx(orders_tx(1, 2, [cancel(cid)]))
    assert (res.code, res.log) == (0, "")
    res = ex.app.check_tx(orders_tx(1, 3, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))]))
    assert (res.code, res.log) == (0, "")


def test_a_perpetual_whose_market_has_no_price_yet_lists_no_oracle_price():
    state = exchange_app_state()
    for m in state["prices"]["markets"]:
        if m["id"] == ETH:
            del m["price"]
    r = mem_exchange(state)
    code, out = _query(r, "/perpetuals/list")
    assert code == 0
    by_id = {p["id"]: p for p in out["perpetuals"]}
    assert by_id[ETH]["oracle_price"] is None
    assert by_id[BTC]["oracle_price"] == "64000"


# --- fees in an isolated market ------------------------------------------------------------------------------------

@pytest.mark.parametrize("maker_ppm, taker_ppm, sol_price, quantums, maker_fee, taker_fee", [
    # 10 SOL at $150 = 1 500 USDC: maker rebate 100 ppm = 0.15 USDC from the fee collector, taker 500 ppm = 0.75 USDC
    pytest.param(-100, 500, 15_000_000_000, 10**8, -150_000, 750_000, id="a maker rebate into the isolated pool"),
    # SOL at $0.01: 0.1 SOL = 0.001 USDC = 1 000 quote quantums; taker 1 000 ppm: a fee of exactly 1 quote quantum
    pytest.param(0, 1_000, 1_000_000, 10**6, 0, 1, id="a taker fee of one quote quantum"),
])
def test_fees_of_an_isolated_fill_move_between_its_pool_and_the_fee_collector(maker_ppm, taker_ppm, sol_price,
                                                                                quantums, maker_fee, taker_fee):
    """The SOL market's oracle price and its subticks are the same integer (exponent -8; a price of S subticks is
    S x 10^(QCE - atomic resolution - 6) = S x 1e-8 USD per SOL); a fill's quote = subticks x base quantums x 1e-9."""

    state = exchange_app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": maker_ppm, "taker_fee_ppm": taker_ppm}])
    for m in state["prices"]["markets"]:
        if m["id"] == SOL:
            m["price"] = str(sol_price)
    r = mem_exchange(state)
    notional = sol_price * quantums // 10**9
    collector0 = r.balance_of(FEE_COLLECTOR_ADDRESS)
    h = height_of(r) + 1
    res = r.block([orders_tx(2, 1, [place(1, SELL, quantums, sol_price, pair=SOL, tif=POST_ONLY, height_hint=h)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])
    res = r.block([orders_tx(1, 1, [place(1, BUY, quantums, sol_price, pair=SOL, tif=IOC, height_hint=h + 1)])])
    fills = fills_of(res.tx_results[0])
    assert [(f["maker_fee_quote_quantums"], f["taker_fee_quote_quantums"]) for f in fills] == [
        (str(maker_fee), str(taker_fee))]
    deposit = 100_000 * 10**6
    assert int(subaccount(r, 1)["quote_balance_quote_quantums"]) == deposit - notional - taker_fee
    assert int(subaccount(r, 2)["quote_balance_quote_quantums"]) == deposit + notional - maker_fee
    assert r.balance_of(FEE_COLLECTOR_ADDRESS) - collector0 == taker_fee + maker_fee
    assert r.balance_of(isolated_pool(SOL)) == 2 * deposit - taker_fee - maker_fee


def test_a_fill_is_checked_against_the_open_interest_it_creates():
    """SOL (tier 4: IM 5 %, OI caps 500 000 / 1 000 000 USDC) starts with no open interest. Accounts 1 and 2 hold
    100 000 USDC each. A 5 000 SOL trade at $150 (750 000 USDC) would leave open interest at 750 000 USDC: IMF
    5 % + 95 % x 250k / 500k = 52.5 %, IMR 393 750 USDC each side, so neither side passes (at the pre-trade OI, 5 %:
    37 500, both would); no fill happens. 2 000 SOL (300 000 USDC, under the lower cap): IMR 15 000, it fills."""

    price = 15_000_000_000  # $150 in subticks (see the isolated-fee test)
    for sol, fills in ((5_000, 0), (2_000, 1)):
        r = mem_exchange()
        h = height_of(r) + 1
        size = sol * 10**7
        res = r.block([orders_tx(2, 1, [place(1, SELL, size, price, pair=SOL, tif=POST_ONLY, height_hint=h)])])
        assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])
        res = r.block([orders_tx(1, 1, [place(1, BUY, size, price, pair=SOL, tif=IOC, height_hint=h + 1)])])
        assert len(fills_of(res.tx_results[0])) == fills, (sol, actions_of(res.tx_results[0]))


def test_maker_and_taker_pay_by_their_own_volume_not_the_exchanges():
    """Tier 2 needs 5 000 USDC of the account's own 30-day volume (maker 0 instead of 100 ppm, taker 300 instead of
    500). Accounts 3 and 4 trade 0.1 BTC at $64,000 = 6 400 USDC (the exchange's volume is then 6 400); in the next
    block accounts 2 (maker) and 1 (taker), with no volume of their own, trade 0.01 BTC (640 USDC): both tier 1,
    maker 100 ppm = 0.064 USDC, taker 500 ppm = 0.32 USDC."""
    tiers = [{"name": "1", "maker_fee_ppm": 100, "taker_fee_ppm": 500},
             {"name": "2", "absolute_volume_requirement_quote_quantums": str(5_000 * 10**6), "maker_fee_ppm": 0,
              "taker_fee_ppm": 300}]
    r = mem_exchange(exchange_app_state(fee_tiers=tiers))
    h = height_of(r) + 1
    r.block([orders_tx(4, 1, [place(1, SELL, 1000 * 10**6, P64K, tif=POST_ONLY, height_hint=h)])])
    res = r.block([orders_tx(3, 1, [place(1, BUY, 1000 * 10**6, P64K, tif=IOC, height_hint=h + 1)])])
    assert len(fills_of(res.tx_results[0])) == 1
    h = height_of(r) + 1
    r.block([orders_tx(2, 1, [place(1, SELL, 100 * 10**6, P64K, tif=POST_ONLY, height_hint=h)])])
    res = r.block([orders_tx(1, 1, [place(1, BUY, 100 * 10**6, P64K, tif=IOC, height_hint=h + 1)])])
    assert [(f["maker_fee_tier"], f["maker_fee_quote_quantums"], f["taker_fee_tier"], f["taker_fee_quote_quantums"])
            for f in fills_of(res.tx_results[0])] == [("1", "64000", "1", "320000")]


def test_open_interest_may_reach_exactly_uint64_max_but_not_beyond():
    """Genesis: BTC longs of 2^63-1 and 2^63-6 (account 5, subaccounts 1 and 2) against equal shorts (account 6):
    open interest 2^64-7 = UINT64_MAX - 6 (step 1). Accounts 1 and 2 open 6 more: exactly UINT64_MAX, allowed. One more
    base quantum would pass it: the taker stops, nothing fills."""

    int64_max, uint64_max = 2**63 - 1, 2**64 - 1
    state = exchange_app_state()
    for p in state["clob"]["clob_pairs"]:
        if p["id"] == BTC:
            p["step_base_quantums"] = "1"
    for p in state["perpetuals"]["perpetuals"]:
        if p["id"] == BTC:
            p["open_interest_base_quantums"] = str(uint64_max - 6)
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[owner], "number": number, "positions": [{"perpetual_id": BTC, "size_base_quantums": str(size)}]}
        for owner, number, size in ((5, 1, int64_max), (5, 2, int64_max - 5), (6, 1, -int64_max),
                                    (6, 2, -(int64_max - 5)))]
    r = mem_exchange(state)
    h = height_of(r) + 1
    r.block([orders_tx(2, 1, [place(1, SELL, 7, P64K, tif=POST_ONLY, height_hint=h)])])
    res = r.block([orders_tx(1, 1, [place(1, BUY, 6, P64K, tif=IOC, height_hint=h + 1)])])
    assert [f["quantums"] for f in fills_of(res.tx_results[0])] == ["6"]
    res = r.block([orders_tx(3, 1, [place(1, BUY, 1, P64K, tif=IOC, height_hint=h + 2)])])
    assert fills_of(res.tx_results[0]) == []
    assert position(r, 3) == 0


# --- reduce-only makers that do reduce; fees of exactly one quote quantum; int64 guards ----------------------------

def test_resting_reduce_only_makers_fill_up_to_their_position_then_leave(step1):
    """Account 1 is long 3 (step 1). It rests a reduce-only ask for 5 at $64,000; behind it at the same price a plain
    ask of account 2 for 5. Account 3 buys 2: filled by account 1 (room left 1: it stays). Account 4 buys 5: 1 from
    account 1 (its room is then 0: it leaves the book, reason reduce_only_nothing_to_reduce), 4 from account 2."""
    nonce = Nonces()
    for cid in (1, 2, 3):
        trade_one(step1, 1, 4, cid, nonce)  # account 1 long 3 (account 4 short 3)
    assert position(step1, 1) == 3
    h = height_of(step1) + 1
    step1.block([orders_tx(1, nonce(1), [place(10, SELL, 5, P64K, reduce_only=True, height_hint=h + 10)])])
    step1.block([orders_tx(2, nonce(2), [place(11, SELL, 5, P64K, tif=POST_ONLY, height_hint=h + 10)])])
    res = step1.block([orders_tx(3, nonce(3), [place(12, BUY, 2, P64K, tif=IOC, height_hint=h + 2)])])
    assert [(f["maker"], f["quantums"], f["taker_side"]) for f in fills_of(res.tx_results[0])] == [
        (ADDRS[1], "2", "buy")]
    assert position(step1, 1) == 1
    res = step1.block([orders_tx(4, nonce(4), [place(13, BUY, 5, P64K, tif=IOC, height_hint=h + 3)])])
    assert [(f["maker"], f["quantums"]) for f in fills_of(res.tx_results[0])] == [(ADDRS[1], "1"), (ADDRS[2], "4")]
    removed = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "order_removed"]
    assert [(e["client_id"], e["reason"]) for e in removed] == [("10", "reduce_only_nothing_to_reduce")]
    assert position(step1, 1) == 0


def test_a_removed_reduce_only_maker_does_not_stop_the_taker_at_that_level(step1):
    """Account 1, flat, has a resting reduce-only bid (its short was closed); behind it a plain bid of account 2 at the
    same price. A seller's IOC skips the removed maker and fills against account 2; the fill says the taker sold."""
    nonce = Nonces()
    trade_one(step1, 2, 1, 1, nonce)  # account 1 short 1
    h = height_of(step1) + 1
    price = 63_000 * ONE_DOLLAR_BTC
    step1.block([orders_tx(1, nonce(1), [place(5, BUY, 1, price, reduce_only=True, height_hint=h + 10)])])
    trade_one(step1, 1, 3, 2, nonce)  # flat again
    h = height_of(step1) + 1
    step1.block([orders_tx(2, nonce(2), [place(6, BUY, 1, price, tif=POST_ONLY, height_hint=h + 10)])])
    res = step1.block([orders_tx(4, nonce(4), [place(9, SELL, 1, price, tif=IOC, height_hint=h + 1)])])
    assert [(f["maker"], f["quantums"], f["taker_side"]) for f in fills_of(res.tx_results[0])] == [
        (ADDRS[2], "1", "sell")]


def test_a_resting_reduce_only_bid_of_a_short_fills():
    r = mem_exchange()
    nonce = Nonces()
    h = height_of(r) + 1
    r.block([orders_tx(2, nonce(2), [place(1, BUY, 10**6, P64K, tif=POST_ONLY, height_hint=h)])])
    r.block([orders_tx(1, nonce(1), [place(1, SELL, 10**6, P64K, tif=IOC, height_hint=h + 1)])])  # account 1 short
    h = height_of(r) + 1
    r.block([orders_tx(1, nonce(1), [place(2, BUY, 10**6, P64K, reduce_only=True, height_hint=h + 10)])])
    res = r.block([orders_tx(3, nonce(3), [place(3, SELL, 10**6, P64K, tif=IOC, height_hint=h + 1)])])
    assert [f["quantums"] for f in fills_of(res.tx_results[0])] == [str(10**6)]
    assert position(r, 1) == 0


def test_an_action_whose_fills_owe_exactly_one_quote_quantum_pays_it():
    """Step 1: 1 base quantum at $64,000 = 6.4 -> 6 quote quantums; taker fee 1 000 ppm: ceil(0.006) = 1; maker 0."""

    state = exchange_app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": 0, "taker_fee_ppm": 1_000}])
    for p in state["clob"]["clob_pairs"]:
        if p["id"] == BTC:
            p["step_base_quantums"] = "1"
    r = mem_exchange(state)
    collector0, pool0 = r.balance_of(FEE_COLLECTOR_ADDRESS), r.balance_of(CROSS_POOL)
    trade_one(r, 1, 2, 1, Nonces())
    assert r.balance_of(FEE_COLLECTOR_ADDRESS) - collector0 == 1
    assert pool0 - r.balance_of(CROSS_POOL) == 1


def test_a_maker_whose_quote_balance_would_pass_int64_is_removed_and_exactly_int64_max_is_allowed():
    """Account 5 (genesis: quote INT64_MAX - 11, no position; the cross pool holds it) rests asks of 2 and then 1 base
    quantum (step 1). Account 1 buys 2: 12.8 -> 12 quote quantums, maker fee ceil(12 x 100 / 1e6) = 1: account 5's
    quote becomes exactly INT64_MAX (allowed). Account 1 buys 1 more: +6 - 1 would pass int64: the maker is removed
    (position_overflow) and nothing fills."""

    int64_max = 2**63 - 1
    state = exchange_app_state()
    for p in state["clob"]["clob_pairs"]:
        if p["id"] == BTC:
            p["step_base_quantums"] = "1"
    state["subaccounts"]["subaccounts"] = [{"owner": ADDRS[5], "number": 0,
                                           "quote_balance_quote_quantums": str(int64_max - 11)}]
    state["bank"]["balances"].append({"address": encode_address(CROSS_POOL),
                                      "amount_quote_quantums": str(int64_max - 11)})
    r = mem_exchange(state)
    nonce = Nonces()
    h = height_of(r) + 1
    r.block([orders_tx(5, nonce(5), [place(1, SELL, 2, P64K, tif=POST_ONLY, height_hint=h + 10),
                                     place(2, SELL, 1, P64K + ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h + 10)])])
    res = r.block([orders_tx(1, nonce(1), [place(1, BUY, 2, P64K, tif=IOC, height_hint=h + 1)])])
    assert [f["quantums"] for f in fills_of(res.tx_results[0])] == ["2"]
    assert int(subaccount(r, 5)["quote_balance_quote_quantums"]) == int64_max
    res = r.block([orders_tx(1, nonce(1), [place(2, BUY, 1, P64K + ONE_DOLLAR_BTC, tif=IOC, height_hint=h + 2)])])
    assert fills_of(res.tx_results[0]) == []
    removed = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "order_removed"]
    assert [(e["client_id"], e["reason"]) for e in removed] == [
        ("2", "collateral: position_overflow: position or quote balance beyond int64")]


def test_post_only_is_checked_against_the_lowest_ask_not_any_ask(ex):
    """Asks at $65,000 and $66,000: a post-only bid at $65,500 would cross the best ask ($65,000) and is refused."""

    h = height_of(ex) + 1
    ex.block([orders_tx(2, 1, [place(1, SELL, 10**6, 65_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),
                               place(2, SELL, 10**6, 66_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)])])
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 10**6, 65_500 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                           height_hint=h + 1)])])
    (action,) = actions_of(res.tx_results[0])
    assert (action["status"], action["code"]) == ("rejected", str(errors.ERR_POST_ONLY_WOULD_CROSS.code))


def test_a_batch_cancel_removes_only_its_own_orders_in_that_market_and_says_canceled(ex):
    """Account 1 rests two BTC asks (client ids 5 and 2^24 + 6) and an ETH ask; account 2 rests a BTC ask. Account 1's
    batch cancel of BTC removes exactly its two BTC orders, each with reason "canceled"."""


    big = (1 << 24) | 6
    h = height_of(ex) + 1
    ex.block([orders_tx(1, 1, [place(5, SELL, 10**6, 70_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h + 10),
                               place(big, SELL, 10**6, 70_001 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h + 10),
                               place(7, SELL, 10**6, 4_000 * 10**6, pair=ETH, tif=POST_ONLY, height_hint=h + 10)]),
              orders_tx(2, 1, [place(8, SELL, 10**6, 70_002 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h + 10)])])
    res = ex.block([orders_tx(1, 2, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))])])
    removed = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "order_removed"]
    assert sorted((int(e["client_id"]), e["reason"]) for e in removed) == [(5, "canceled"), (big, "canceled")]
    code, out = _query(ex, "/clob/orders/" + ADDRS[1])
    assert [o["client_id"] for o in out["orders"]] == [7]
    code, out = _query(ex, "/clob/orders/" + ADDRS[2])
    assert [o["client_id"] for o in out["orders"]] == [8]


def test_an_account_under_initial_margin_may_trade_when_the_trade_makes_it_less_risky(tmp_path):
    """dYdX's collateral check of a fill (x/subaccounts UpdateSubaccounts, "not getting worse"): account 1 buys 20 BTC
    at $64,000 (taker fee 500 ppm = 640 USDC), then BTC's oracle falls to $62,000: NC = 100 000 - 640 - 40 000 =
    59 360 < IMR 62 000 (MMR 37 200). Selling 0.1 BTC at $62,000 (fee 3.1): NC 59 356.9, IMR 61 690, MMR 37 014 —
    still under initial margin, but NC/MMR rises from 1.5957 to 1.6036, so the fill passes."""

    r = exchange_chain(tmp_path / "db")
    try:
        twenty = 20 * 10**10

        def order(account, nonce, cid, side, size, price, tif):
            return orders_tx(account, nonce, [place(cid, side, size, price, tif=tif, height_hint=height_of(r) + 1)])

        _, res = price_block(r, [order(2, 1, 1, SELL, twenty, P64K, POST_ONLY)])
        assert actions_of(res[0])[0]["status"] == "resting", actions_of(res[0])
        _, res = price_block(r, [order(1, 1, 1, BUY, twenty, P64K, IOC)])
        assert len(fills_of(res[0])) == 1, actions_of(res[0])
        price_block(r, prices={BTC: 6_200_000_000})
        sub = subaccount(r, 1)
        assert int(sub["total_net_collateral_quote_quantums"]) < int(sub["initial_margin_requirement_quote_quantums"])
        p62k = 62_000 * ONE_DOLLAR_BTC
        _, res = price_block(r, [order(3, 1, 1, BUY, 10**9, p62k, POST_ONLY)])
        assert actions_of(res[0])[0]["status"] == "resting", actions_of(res[0])
        _, res = price_block(r, [order(1, 2, 2, SELL, 10**9, p62k, IOC)])
        assert [f["quantums"] for f in fills_of(res[0])] == [str(10**9)], actions_of(res[0])
        assert position(r, 1) == twenty - 10**9
    finally:
        r.close()
