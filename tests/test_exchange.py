"""The exchange core in-process: subaccounts and margin, order validation, matching, fees, block phase order.

Numbers are worked by hand (comments). Market BTC-USD: oracle $64,000 (price 6_400_000_000, exponent -5), atomic
resolution -10, QCE -9: 1 subtick = 1 oracle unit = $0.00001 per BTC, tick $1 = 100_000 subticks, step 0.0001 BTC
= 1_000_000 base quantums; quote value of a fill = subticks × base × 1e-9 (floor). Large-Cap tier: IM 5 %, MM 3 %.
Fee tier 1 (default): maker 100 ppm, taker 500 ppm, ceil. Accounts 1..4 start with 100 000 USDC in subaccount 0.
"""

from __future__ import annotations

import json

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.subaccounts.keeper import CROSS_POOL
from tests.exchange_helpers import (
    BTC,
    BTC_PRICE,
    BTC_STEP,
    BUY,
    DEPOSIT,
    FOK,
    IOC,
    ONE_BTC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    actions_of,
    book,
    cancel,
    exchange_app_state,
    exchange_chain,
    fills_of,
    height_of,
    msg_tx,
    orders_tx,
    place,
    price_block,
    subaccount,
)
from tests.helpers import ADDRS, FEE, ONE_USDC, Replica

USD = ONE_USDC  # quote quantums per USD
P64K = 64_000 * ONE_DOLLAR_BTC


@pytest.fixture
def ex(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain(exchange_app_state())
    r.block([])
    yield r
    r.close()


@pytest.fixture
def chain(tmp_path):
    r = exchange_chain(tmp_path / "db")
    yield r
    r.close()


def nxt(r: Replica) -> int:
    return height_of(r) + 1


def quote(r: Replica, account: int, number: int = 0) -> int:
    return int(subaccount(r, account, number)["quote_balance_quote_quantums"])


def position(r: Replica, account: int, number: int = 0, market: str = "BTC-USD") -> int:
    for p in subaccount(r, account, number)["positions"]:
        if p["market"] == market:
            return int(p["size_base_quantums"])
    return 0


def deposit_msg(account: int, amount: int, number: int = 0) -> tx_pb2.Msg:
    return tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(owner=ADDRS[account], subaccount_number=number,
                                                amount_quote_quantums=amount))


def withdraw_msg(account: int, amount: int, number: int = 0, owner: int | None = None) -> tx_pb2.Msg:
    return tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(owner=ADDRS[account if owner is None else owner],
                                                  subaccount_number=number, amount_quote_quantums=amount))


def transfer_msg(account: int, to: int, amount: int, number: int = 0, to_number: int = 0) -> tx_pb2.Msg:
    return tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[account], subaccount_number=number,
                                                  recipient_owner=ADDRS[to], recipient_subaccount_number=to_number,
                                                  amount_quote_quantums=amount))


# --- subaccounts ---------------------------------------------------------------------------------------------------

def test_genesis_deposits_sit_in_the_cross_pool(ex):
    assert quote(ex, 1) == 100_000 * USD
    assert ex.balance(1) == 900_000 * USD
    assert ex.balance_of(CROSS_POOL) == 4 * 100_000 * USD


def test_deposit_withdraw_transfer(ex):
    res = ex.block([msg_tx(1, 1, [deposit_msg(1, 10 * USD)]),
                    msg_tx(1, 2, [withdraw_msg(1, 4 * USD)]),
                    msg_tx(1, 3, [transfer_msg(1, 2, 3 * USD, to_number=5)])])
    assert [t.code for t in res.tx_results] == [0, 0, 0], [t.log for t in res.tx_results]
    assert quote(ex, 1) == (100_000 + 10 - 4 - 3) * USD
    assert quote(ex, 2, 5) == 3 * USD
    # bank: -10 deposit, +4 withdrawal, and three 0.01 USDC fees
    assert ex.balance(1) == 900_000 * USD - 10 * USD + 4 * USD - 3 * FEE
    assert ex.balance_of(CROSS_POOL) == (400_000 + 10 - 4) * USD


@pytest.mark.parametrize("msg, code", [
    pytest.param(withdraw_msg(2, USD, owner=2), errors.ERR_UNAUTHORIZED, id="withdraw from another user's subaccount"),
    pytest.param(tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[2], recipient_owner=ADDRS[1],
                                                        amount_quote_quantums=USD)),
                 errors.ERR_UNAUTHORIZED, id="transfer out of another user's subaccount"),
    pytest.param(withdraw_msg(1, USD, number=128), errors.ERR_INVALID_SUBACCOUNT, id="subaccount number 128"),
    pytest.param(withdraw_msg(1, 0), errors.ERR_INVALID_AMOUNT, id="zero amount"),
    pytest.param(withdraw_msg(1, 100_001 * USD), errors.ERR_INSUFFICIENT_FUNDS, id="more than the subaccount holds"),
    pytest.param(deposit_msg(1, 2_000_000 * USD), errors.ERR_INSUFFICIENT_FUNDS, id="deposit more than the bank balance"),
])
def test_bad_subaccount_messages_change_nothing(ex, msg, code):
    tx = msg_tx(1, 1, [msg])
    assert ex.app.check_tx(tx).code == code.code
    before = (quote(ex, 1), quote(ex, 2), ex.balance_of(CROSS_POOL))
    assert ex.block([tx]).tx_results[0].code == code.code
    assert (quote(ex, 1), quote(ex, 2), ex.balance_of(CROSS_POOL)) == before


def open_30_btc(r: Replica, price_block_fn=None) -> None:
    """Account 2 rests a post-only ask of 30 BTC at $64,000; account 1 buys it with IOC.

    Fill: 30 BTC × $64,000 = $1,920,000. Taker (1) fee 500 ppm = $960, maker (2) fee 100 ppm = $192.
    Account 1: quote 100,000 - 1,920,000 - 960 = -1,820,960; TNC at $64k = 99,040; IMR 96,000; MMR 57,600.
    Account 2: quote 100,000 + 1,920,000 - 192 = 2,019,808; TNC 99,808.
    """
    h = nxt(r)
    txs = [orders_tx(2, 101, [place(1, SELL, 30 * ONE_BTC, P64K, tif=POST_ONLY, height_hint=h)]),
           orders_tx(1, 101, [place(1, BUY, 30 * ONE_BTC, P64K, tif=IOC, height_hint=h)])]
    results = price_block_fn(txs)[1] if price_block_fn else r.block(txs).tx_results
    assert [a["status"] for t in results for a in actions_of(t)] == ["resting", "filled"]
    assert quote(r, 1) == -1_820_960 * USD and quote(r, 2) == 2_019_808 * USD


def test_open_position_margin_numbers(ex):
    open_30_btc(ex)
    s = subaccount(ex, 1)
    assert s["total_net_collateral_quote_quantums"] == str(99_040 * USD)
    assert s["initial_margin_requirement_quote_quantums"] == str(96_000 * USD)
    assert s["maintenance_margin_requirement_quote_quantums"] == str(57_600 * USD)
    assert s["free_collateral_quote_quantums"] == str(3_040 * USD)
    assert s["positions"][0]["entry_price"] == "64000" and s["positions"][0]["unrealized_pnl_quote_quantums"] == "0"
    assert ex.balance_of(FEE_COLLECTOR_ADDRESS) == (960 + 192) * USD + 2 * 0  # order txs pay no non-trading fee


def test_withdrawal_must_leave_initial_margin_even_with_unrealized_profit(chain):
    """The Hyperliquid ETH-whale lesson: profit on paper cannot be pulled out below initial margin."""
    open_30_btc(chain, lambda txs: price_block(chain, txs))
    _, res = price_block(chain, [msg_tx(1, 1, [withdraw_msg(1, 3_041 * USD)])])
    assert res[0].code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code  # TNC 95,999 < IMR 96,000
    _, res = price_block(chain, [msg_tx(1, 2, [withdraw_msg(1, 3_040 * USD)])])
    assert res[0].code == 0  # TNC 96,000 = IMR: allowed
    # BTC to $66,000: TNC = -1,824,000 + 30 × 66,000 = 156,000; IMR = 1,980,000 × 5 % = 99,000: 57,000 free.
    price_block(chain, prices={BTC: 6_600_000_000})
    assert subaccount(chain, 1)["free_collateral_quote_quantums"] == str(57_000 * USD)
    _, res = price_block(chain, [msg_tx(1, 3, [withdraw_msg(1, 57_001 * USD)]),
                                 msg_tx(1, 4, [transfer_msg(1, 3, 57_001 * USD)])])
    assert [t.code for t in res] == [errors.ERR_NEWLY_UNDERCOLLATERALIZED.code] * 2
    assert all(t.log.endswith(f"; at most {57_000 * USD} quote quantums can leave now") for t in res), res
    _, res = price_block(chain, [msg_tx(1, 5, [transfer_msg(1, 3, 57_000 * USD)])])
    assert res[0].code == 0
    # Below initial margin now (price back to $64,000): still-undercollateralized withdrawals are refused too.
    price_block(chain, prices={BTC: P64K})
    _, res = price_block(chain, [msg_tx(1, 6, [withdraw_msg(1, USD)])])
    assert res[0].code == errors.ERR_STILL_UNDERCOLLATERALIZED.code
    assert res[0].log.endswith("; at most 0 quote quantums can leave now"), res[0].log  # TNC below IMR: nothing


# --- order validation ----------------------------------------------------------------------------------------------

def _rest_ask(r: Replica, account: int, client_id: int, size: int, dollars: int, nonce: int):
    res = r.block([orders_tx(account, nonce, [place(client_id, SELL, size, dollars * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                                    height_hint=nxt(r))])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])


BAD_ORDERS = [
    pytest.param(lambda h: place(1, BUY, 0, P64K, height_hint=h), errors.ERR_INVALID_QUANTUMS, "1..", id="zero size"),
    pytest.param(lambda h: place(1, BUY, 1_500_000, P64K, height_hint=h), errors.ERR_INVALID_QUANTUMS,
                 "nearest valid: 1000000 or 2000000", id="off-step size"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, P64K + 50_000, height_hint=h), errors.ERR_INVALID_SUBTICKS,
                 "nearest valid: 6400000000 or 6400100000", id="off-tick price"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, 0, height_hint=h), errors.ERR_INVALID_SUBTICKS, "subticks > 0",
                 id="zero price"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, P64K, pair=9, height_hint=h), errors.ERR_UNKNOWN_CLOB_PAIR,
                 "clob pair 9", id="unknown market"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, P64K, gtb=h - 1), errors.ERR_INVALID_GOOD_TIL, "good_til_block",
                 id="expired good-til-block"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, P64K, gtb=h + 41), errors.ERR_INVALID_GOOD_TIL, "+ 40",
                 id="good-til-block beyond the 40-block window"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, P64K, gtbt_ns=1), errors.ERR_INVALID_GOOD_TIL, "after the block time",
                 id="good-til-time in the past"),
    pytest.param(lambda h: place(1, SELL, BTC_STEP, P64K, reduce_only=True, height_hint=h), errors.ERR_REDUCE_ONLY,
                 "would open or grow", id="reduce-only without a position"),
    pytest.param(lambda h: place(1, BUY, 40 * ONE_BTC, P64K, height_hint=h), errors.ERR_NEWLY_UNDERCOLLATERALIZED,
                 "initial margin", id="insufficient collateral (40 BTC needs 128,000 of margin)"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, P64K, tif=IOC, gtbt_ns=10**30 % 2**63), errors.ERR_INVALID_ORDER,
                 "IOC or FOK", id="long-term IOC"),
    pytest.param(lambda h: place(1, BUY, BTC_STEP, P64K, slippage_ppm=10_000, height_hint=h), errors.ERR_INVALID_ORDER,
                 "no limit price", id="market order with a limit price"),
    pytest.param(lambda h: tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(client_id=77))),
                 errors.ERR_ORDER_NOT_FOUND, "not on the book", id="cancel of an unknown order"),
]


@pytest.mark.parametrize("make, code, words", BAD_ORDERS)
def test_bad_order_refused_in_check_tx_and_in_the_block(ex, make, code, words):
    h = nxt(ex)
    tx = orders_tx(1, 1, [make(h)])
    res = ex.app.check_tx(tx)
    assert res.code == code.code and words in res.log, res.log
    before_book, before_sub = book(ex), subaccount(ex, 1)
    out = ex.block([tx]).tx_results[0]
    assert out.code == 0  # the tx itself is fine (nonce used); the action is refused with its own status
    (action,) = actions_of(out)
    assert action["status"] == "rejected" and action["code"] == str(code.code) and words in action["reason"]
    assert book(ex) == before_book and subaccount(ex, 1) == before_sub


def test_duplicate_order_id_and_post_only_cross_and_paused_market(ex):
    _rest_ask(ex, 2, 5, BTC_STEP, 64_000, 1)
    h = nxt(ex)
    res = ex.block([orders_tx(2, 2, [place(5, SELL, BTC_STEP, 64_100 * ONE_DOLLAR_BTC, height_hint=h)]),
                    orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)])])
    dup, cross = actions_of(res.tx_results[0])[0], actions_of(res.tx_results[1])[0]
    assert dup["code"] == str(errors.ERR_ORDER_EXISTS.code)
    assert cross["code"] == str(errors.ERR_POST_ONLY_WOULD_CROSS.code) and "6400000000" in cross["reason"]
    pause = tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(authority=ADDRS[0], clob_pair_id=BTC,
                                                                       status=4))
    assert ex.block([msg_tx(0, 1, [pause])]).tx_results[0].code == 0
    h = nxt(ex)
    for action in (place(9, BUY, BTC_STEP, P64K, height_hint=h), cancel(5)):
        res = ex.app.check_tx(orders_tx(2, 10 + action.WhichOneof("action").__len__(), [action]))
        assert res.code == errors.ERR_CLOB_PAIR_STATUS.code, res.log
    # Only the authority changes a market's status.
    not_authority = tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(authority=ADDRS[1], clob_pair_id=BTC,
                                                                               status=1))
    assert ex.block([msg_tx(1, 3, [not_authority])]).tx_results[0].code == errors.ERR_UNAUTHORIZED.code


def test_another_users_subaccount_and_oversized_batch_fail_the_whole_tx(ex):
    from node.client.txbuilder import sign_tx
    from tests.helpers import CHAIN_ID, KEYS

    spoof = sign_tx(KEYS[1], CHAIN_ID, 1, [tx_pb2.Msg(orders=tx_pb2.MsgOrders(
        owner=ADDRS[2], actions=[place(1, BUY, BTC_STEP, P64K, height_hint=nxt(ex))]))])
    assert ex.app.check_tx(spoof).code == errors.ERR_UNAUTHORIZED.code
    big = orders_tx(1, 1, [cancel(i) for i in range(201)])
    assert ex.app.check_tx(big).code == errors.ERR_TOO_MANY_ACTIONS.code
    mixed = msg_tx(1, 2, [tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[cancel(1)])),
                          withdraw_msg(1, USD)])
    assert ex.app.check_tx(mixed).code == errors.ERR_MIXED_MESSAGES.code
    res = ex.block([spoof, big, mixed])
    assert [t.code for t in res.tx_results] == [errors.ERR_UNAUTHORIZED.code, errors.ERR_TOO_MANY_ACTIONS.code,
                                                errors.ERR_MIXED_MESSAGES.code]


def test_rate_limit_counts_placements_and_cancels_separately(tmp_path):
    """Budget: capacity 50 + balance // 100 USDC (900,000 USDC in the bank -> 9,050, capped at 1,000) requests;
    a bank-poor account (0 USDC, 100,000 USDC deposited) has the base 50 requests and 200 cancels."""
    from app.clob.genesis import DEFAULT_PARAMS  # noqa: F401 -- the default params are in the genesis

    r = Replica(tmp_path / "db")
    state = exchange_app_state(depositors=(1, 2))
    state["bank"]["balances"].append({"address": ADDRS[6], "amount_quote_quantums": str(100_000 * USD + 1)})
    state["subaccounts"]["deposits"].append({"owner": ADDRS[6], "number": 0, "amount_quote_quantums":
                                             str(100_000 * USD)})
    r.init_chain(state)
    r.block([])
    h = nxt(r)
    places = [place(i, BUY, BTC_STEP, (60_000 - i) * ONE_DOLLAR_BTC, height_hint=h) for i in range(51)]
    tx = orders_tx(6, 1, places)
    assert r.app.check_tx(tx).code == errors.ERR_RATE_LIMITED.code
    assert r.block([tx]).tx_results[0].code == errors.ERR_RATE_LIMITED.code
    ok = r.block([orders_tx(6, 1, places[:50])]).tx_results[0]
    assert ok.code == 0 and all(a["status"] == "resting" for a in actions_of(ok))
    # Requests are spent (5 refill per block), but the larger cancel budget still lets it pull every quote.
    assert r.app.check_tx(orders_tx(6, 2, [place(99, BUY, BTC_STEP, P64K // 2, height_hint=nxt(r))] * 6)).code == \
        errors.ERR_RATE_LIMITED.code
    pull = r.block([orders_tx(6, 3, [cancel(i) for i in range(50)])]).tx_results[0]
    assert pull.code == 0 and [a["status"] for a in actions_of(pull)] == ["canceled"] * 50
    assert book(r)["bids"] == []
    r.close()


# --- matching --------------------------------------------------------------------------------------------------------

def test_price_time_priority_at_the_makers_price(ex):
    """Asks: A 0.1 @ 64,010 (first), B 0.1 @ 64,000, C 0.1 @ 64,000 (after B). A buy of 0.25 at 64,010 fills
    B 0.1 @ 64,000, C 0.1 @ 64,000, then A 0.05 @ 64,010."""
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_010, 1)
    _rest_ask(ex, 3, 1, 1000 * BTC_STEP, 64_000, 1)
    _rest_ask(ex, 4, 1, 1000 * BTC_STEP, 64_000, 1)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 2500 * BTC_STEP, 64_010 * ONE_DOLLAR_BTC, height_hint=nxt(ex))])])
    fills = fills_of(res.tx_results[0])
    assert [(f["maker"], f["subticks"], f["quantums"]) for f in fills] == [
        (ADDRS[3], str(P64K), str(1000 * BTC_STEP)), (ADDRS[4], str(P64K), str(1000 * BTC_STEP)),
        (ADDRS[2], str(64_010 * ONE_DOLLAR_BTC), str(500 * BTC_STEP))]
    # 0.1 BTC × 64,000 = 6,400 USD; 0.05 × 64,010 = 3,200.5 USD
    assert [f["quote_quantums"] for f in fills] == [str(6_400 * USD), str(6_400 * USD), str(3_200_500_000)]
    assert actions_of(res.tx_results[0])[0]["status"] == "filled"
    asks = book(ex)["asks"]
    assert asks == [{"subticks": str(64_010 * ONE_DOLLAR_BTC), "price": "64010", "quantums": str(500 * BTC_STEP),
                     "size": "0.05", "orders": 1}]


def test_partial_fill_rests_the_remainder_and_the_book_never_crosses(ex):
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_000, 1)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 3000 * BTC_STEP, 64_005 * ONE_DOLLAR_BTC, height_hint=nxt(ex))])])
    action = actions_of(res.tx_results[0])[0]
    assert action["status"] == "partially_filled_resting" and action["filled_quantums"] == str(1000 * BTC_STEP)
    b = book(ex)
    assert b["asks"] == [] and b["bids"][0]["price"] == "64005" and b["bids"][0]["size"] == "0.2"


def test_self_trade_removes_the_resting_maker_and_the_taker_continues(ex):
    _rest_ask(ex, 1, 1, 1000 * BTC_STEP, 64_000, 1)  # own ask, oldest
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_000, 1)
    res = ex.block([orders_tx(1, 2, [place(2, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=nxt(ex))])])
    t = res.tx_results[0]
    removed = [dict(e.attributes) for e in t.events if e.type == "order_removed"]
    assert removed[0]["reason"] == "self_trade" and removed[0]["owner"] == ADDRS[1]
    assert [f["maker"] for f in fills_of(t)] == [ADDRS[2]]
    assert book(ex)["asks"] == []


def test_fill_or_kill_and_ioc(ex):
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_000, 1)
    h = nxt(ex)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 2000 * BTC_STEP, P64K, tif=FOK, height_hint=h)])])
    a = actions_of(res.tx_results[0])[0]
    assert a["code"] == str(errors.ERR_FILL_OR_KILL_NOT_FILLED.code) and fills_of(res.tx_results[0]) == []
    assert book(ex)["asks"][0]["size"] == "0.1" and position(ex, 1) == 0  # no trace
    res = ex.block([orders_tx(1, 2, [place(2, BUY, 2000 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    a = actions_of(res.tx_results[0])[0]
    assert a["status"] == "partially_filled" and a["remaining_quantums"] == str(1000 * BTC_STEP)
    assert book(ex)["bids"] == [] and position(ex, 1) == 1000 * BTC_STEP


def test_market_order_stops_at_its_slippage_bound(ex):
    """1 % above the oracle: 64,000 × 1.01 = 64,640 (floor to the $1 tick). The ask at 64,500 fills, 64,700 not."""
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_500, 1)
    _rest_ask(ex, 3, 1, 1000 * BTC_STEP, 64_700, 1)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 2000 * BTC_STEP, 0, slippage_ppm=10_000, height_hint=nxt(ex))])])
    a = actions_of(res.tx_results[0])[0]
    assert a["subticks"] == str(64_640 * ONE_DOLLAR_BTC) and a["status"] == "partially_filled"
    assert [f["maker"] for f in fills_of(res.tx_results[0])] == [ADDRS[2]]


def test_reduce_only_is_clamped_to_the_position(ex):
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_000, 1)
    ex.block([orders_tx(1, 1, [place(1, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=nxt(ex))])])
    assert position(ex, 1) == 1000 * BTC_STEP  # long 0.1
    ex.block([orders_tx(3, 1, [place(1, BUY, 5000 * BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                     height_hint=nxt(ex))])])
    res = ex.block([orders_tx(1, 2, [place(2, SELL, 3000 * BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=IOC,
                                           reduce_only=True, height_hint=nxt(ex))])])
    assert [f["quantums"] for f in fills_of(res.tx_results[0])] == [str(1000 * BTC_STEP)]
    assert position(ex, 1) == 0


def test_orders_expire_in_the_block_they_expire(chain):
    h = nxt(chain)
    # Short-term good til h+1: rests in h and h+1, gone in h+2. Long-term: good til 2 blocks of block time later.
    from tests.helpers import BLOCK_INTERVAL_NS, GENESIS_TIME_NS

    gtbt = GENESIS_TIME_NS + (h + 2) * BLOCK_INTERVAL_NS
    _, res = price_block(chain, [orders_tx(2, 1, [place(1, SELL, BTC_STEP, 65_000 * ONE_DOLLAR_BTC, gtb=h + 1),
                                                  place(2, SELL, BTC_STEP, 65_001 * ONE_DOLLAR_BTC, gtbt_ns=gtbt)])])
    assert [a["status"] for a in actions_of(res[0])] == ["resting", "resting"]
    price_block(chain)  # h+1
    assert len(book(chain)["asks"]) == 2
    out, _ = price_block(chain)  # h+2: block time = gtbt -> the long-term one expires too
    assert book(chain)["asks"] == []
    assert sorted(dict(e.attributes)["client_id"] for e in out.events if e.type == "order_removed") == ["1", "2"]


def test_cancel_batch_cancel_and_cancel_replace(ex):
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(i, SELL, BTC_STEP, (65_000 + i) * ONE_DOLLAR_BTC, height_hint=h)
                               for i in range(1, 6)])])
    assert len(book(ex)["asks"]) == 5
    batch = tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC, client_ids=[1, 2]))
    replace = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(client_id=3, clob_pair_id=BTC),
        place=tx_pb2.PlaceOrder(client_id=30, clob_pair_id=BTC, side=SELL, quantums=BTC_STEP,
                                subticks=66_000 * ONE_DOLLAR_BTC, good_til_block=h + 10)))
    gone = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(client_id=99, clob_pair_id=BTC),
        place=tx_pb2.PlaceOrder(client_id=31, clob_pair_id=BTC, side=SELL, quantums=BTC_STEP,
                                subticks=66_001 * ONE_DOLLAR_BTC, good_til_block=h + 10)))
    res = ex.block([orders_tx(2, 2, [batch, replace, gone, cancel(4)])])
    statuses = [(a["kind"], a.get("step"), a["status"]) for a in actions_of(res.tx_results[0])]
    assert statuses == [("batch_cancel", None, "canceled"), ("cancel_replace", "cancel", "canceled"),
                        ("cancel_replace", "cancel", "rejected"), ("cancel", None, "canceled"),
                        ("cancel_replace", "place", "resting"), ("cancel_replace", "place", "skipped")]
    assert [a["price"] for a in book(ex)["asks"]] == ["65005", "66000"]
    res = ex.block([orders_tx(2, 3, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))])])
    assert actions_of(res.tx_results[0])[0]["canceled"] == "2" and book(ex)["asks"] == []


def test_cancels_run_before_placements_and_post_only_before_takers_in_a_block(ex):
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_000, 1)
    h = nxt(ex)
    # Proposer order: the taker first, then the maker's cancel; the cancel still runs first: no fill.
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=h)]),
                    orders_tx(2, 2, [cancel(1)])])
    assert fills_of(res.tx_results[0]) == [] and actions_of(res.tx_results[1])[0]["status"] == "canceled"
    # Taker first, then a post-only ask: the post-only rests first, then the taker fills against it.
    res = ex.block([orders_tx(1, 2, [place(2, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=nxt(ex))]),
                    orders_tx(3, 1, [place(1, SELL, 1000 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=nxt(ex))])])
    assert [f["maker"] for f in fills_of(res.tx_results[0])] == [ADDRS[3]]


def test_a_maker_failing_its_collateral_check_is_removed_and_matching_continues(ex):
    """Account 3's ask was fine when placed; it then withdrew to 10 USD, so a 1 BTC short (IMR 3,200) fails."""
    _rest_ask(ex, 3, 1, ONE_BTC, 64_000, 1)
    _rest_ask(ex, 2, 1, ONE_BTC, 64_000, 1)
    assert ex.block([msg_tx(3, 2, [withdraw_msg(3, 99_990 * USD)])]).tx_results[0].code == 0
    res = ex.block([orders_tx(1, 1, [place(1, BUY, ONE_BTC, P64K, tif=IOC, height_hint=nxt(ex))])])
    t = res.tx_results[0]
    removed = [dict(e.attributes) for e in t.events if e.type == "order_removed"]
    assert removed[0]["owner"] == ADDRS[3] and removed[0]["reason"].startswith("collateral")
    assert [f["maker"] for f in fills_of(t)] == [ADDRS[2]] and position(ex, 1) == ONE_BTC


def test_a_taker_failing_its_collateral_check_stops(ex):
    """Account 4 keeps 3,210 USD: buying 1 BTC at 64,000 needs IMR 3,200. The placement check (maker fee
    100 ppm = 6.4) passes: 3,203.6 >= 3,200; the fill pays the taker fee 500 ppm = 32: 3,178 < 3,200 -> stops."""
    _rest_ask(ex, 2, 1, ONE_BTC, 64_000, 1)
    assert ex.block([msg_tx(4, 1, [withdraw_msg(4, 96_790 * USD)])]).tx_results[0].code == 0
    res = ex.block([orders_tx(4, 2, [place(1, BUY, ONE_BTC, P64K, height_hint=nxt(ex))])])
    a = actions_of(res.tx_results[0])[0]
    assert a["status"] == "not_filled" and a["stopped"].startswith("collateral") and fills_of(res.tx_results[0]) == []
    assert book(ex)["bids"] == [] and len(book(ex)["asks"]) == 1  # the remainder did not rest; the maker stays


# --- fees ------------------------------------------------------------------------------------------------------------

REBATE_TIERS = [{"name": "1", "maker_fee_ppm": -50, "taker_fee_ppm": 250}]


@pytest.mark.parametrize("tiers, taker_fee, maker_fee", [
    # 0.0001 BTC at $64,001: quote 6.4001 USD = 6,400,100. Taker 500 ppm: 3,200.05 -> 3,201; maker 100 ppm:
    # 640.01 -> 641 (ceil). With a -50 ppm rebate: -320.005 -> -320 (ceil rounds a rebate toward zero); taker 250
    # ppm: 1,600.025 -> 1,601.
    pytest.param(None, 3_201, 641, id="default tier: fees round up"),
    pytest.param(REBATE_TIERS, 1_601, -320, id="maker rebate rounds toward zero"),
])
def test_fee_rounding_and_the_fee_collector(tmp_path, tiers, taker_fee, maker_fee):
    r = Replica(tmp_path / "db")
    r.init_chain(exchange_app_state(fee_tiers=tiers))
    r.block([])
    _rest_ask(r, 2, 1, BTC_STEP, 64_001, 1)
    res = r.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, 64_001 * ONE_DOLLAR_BTC, tif=IOC, height_hint=nxt(r))])])
    (f,) = fills_of(res.tx_results[0])
    assert (f["quote_quantums"], f["taker_fee_quote_quantums"], f["maker_fee_quote_quantums"]) == (
        "6400100", str(taker_fee), str(maker_fee))
    assert quote(r, 1) == DEPOSIT - 6_400_100 - taker_fee
    assert quote(r, 2) == DEPOSIT + 6_400_100 - maker_fee
    assert r.balance_of(FEE_COLLECTOR_ADDRESS) == taker_fee + maker_fee
    r.close()


def test_fee_tiers_that_could_pay_more_rebate_than_fee_are_refused(tmp_path):
    r = Replica(tmp_path / "db")
    with pytest.raises(errors.AppError, match="rebate"):
        r.init_chain(exchange_app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": -300, "taker_fee_ppm": 250}]))
    r.close()


# --- conservation, open interest, atomicity, restart --------------------------------------------------------------

def test_usdc_and_open_interest_after_trading(ex):
    open_30_btc(ex)
    perps = json.loads(ex.app.query("/perpetuals/list", b"").value)["perpetuals"]
    assert perps[BTC]["open_interest_base_quantums"] == str(30 * ONE_BTC)
    supply = int(json.loads(ex.app.query("/bank/supply", b"").value)["amount_quote_quantums"])
    from app.bank.keeper import iter_balances
    from app.store import BranchStore

    assert sum(amount for _, amount in iter_balances(BranchStore(ex.store))) == supply
    # pool = Σ subaccount quote balances (-1,820,960 + 2,019,808 + 100,000 + 100,000 USD) ...
    assert ex.balance_of(CROSS_POOL) == (400_000 - 960 - 192) * USD
    # ... and closing both positions brings open interest back to 0.
    h = nxt(ex)
    ex.block([orders_tx(2, 200, [place(2, BUY, 30 * ONE_BTC, P64K, tif=POST_ONLY, height_hint=h)]),
              orders_tx(1, 200, [place(2, SELL, 30 * ONE_BTC, P64K, tif=IOC, reduce_only=True, height_hint=h)])])
    perps = json.loads(ex.app.query("/perpetuals/list", b"").value)["perpetuals"]
    assert perps[BTC]["open_interest_base_quantums"] == "0" and position(ex, 1) == position(ex, 2) == 0


def test_a_refused_action_in_a_batch_leaves_no_trace_and_the_others_run(ex):
    _rest_ask(ex, 2, 1, 1000 * BTC_STEP, 64_000, 1)
    h = nxt(ex)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 500 * BTC_STEP, P64K, tif=IOC, height_hint=h),
                                     place(2, BUY, 1_500_000, P64K, height_hint=h),
                                     place(3, BUY, 500 * BTC_STEP, P64K, tif=FOK, height_hint=h),
                                     place(4, BUY, 500 * BTC_STEP, P64K, tif=FOK, height_hint=h)])])
    statuses = [(a["client_id"], a["status"]) for a in actions_of(res.tx_results[0])]
    assert statuses == [("1", "filled"), ("2", "rejected"), ("3", "filled"), ("4", "rejected")]
    assert position(ex, 1) == 1000 * BTC_STEP and book(ex)["asks"] == []


def test_funding_hook_settles_before_a_position_changes(ex):
    """A test sets BTC's funding index to 5 (1e-6 quote quantums per base quantum): a long of 0.1 BTC
    (1e9 base quantums) pays 5 × 1e9 ÷ 1e6 = 5,000 quote quantums when its position next changes, and the
    short maker of this fill settles too (it receives 5,000) before its position changes."""
    from app.clob import abci as clob_abci
    from app.context import BlockInfo
    from app.lib.address import decode_address_or_none
    from app.perpetuals import keeper as perpetuals_keeper
    from app.store import BranchStore
    from app.subaccounts.keeper import get_subaccount
    from app.subaccounts.state import SubaccountId

    _rest_ask(ex, 2, 1, 2000 * BTC_STEP, 64_000, 1)
    ex.block([orders_tx(1, 1, [place(1, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=nxt(ex))])])
    before = quote(ex, 1)
    store = BranchStore(ex.store)
    perpetuals_keeper.set_funding_index(store, BTC, 5)
    books = ex.app.committed_books()
    block = BlockInfo(height=nxt(ex), block_time_ns=0, chain_id="perpchain-test")
    owner = decode_address_or_none(ADDRS[1])
    action = place(2, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=block.height)
    out = clob_abci.process_order_actions(store, books, block, [clob_abci.QueuedAction(0, 0, owner, action)])
    books.rollback()  # the branch is thrown away: the committed book must stay as it was
    settlement = [dict(e.attributes) for e in out[0] if e.type == "funding_settlement"]
    # payment = what the position paid: the long pays 5,000, the short maker (0.1 BTC) receives 5,000
    assert [(s["owner"], s["index_delta"], s["payment_quote_quantums"]) for s in settlement] == [
        (ADDRS[1], "5", "5000"), (ADDRS[2], "5", "-5000")]
    sub = get_subaccount(store, SubaccountId(owner, 0))
    # then the fill: 0.1 BTC @ 64,000 costs 6,400 USD and the 3.2 USD taker fee
    assert sub.quote_balance_quote_quantums == before - 5_000 - 6_400 * USD - 3_200_000
    assert sub.positions[BTC].funding_index == 5 and sub.positions[BTC].size_base_quantums == 2000 * BTC_STEP
    maker = get_subaccount(store, SubaccountId(decode_address_or_none(ADDRS[2]), 0))
    assert maker.positions[BTC].funding_index == 5
    assert book(ex)["asks"][0]["size"] == "0.1"  # committed view unchanged


def test_the_book_is_rebuilt_after_a_restart_with_identical_results(tmp_path):
    a, b = Replica(tmp_path / "a"), Replica(tmp_path / "b")
    for r in (a, b):
        r.init_chain(exchange_app_state())
        r.block([])
    for step in range(6):
        h = nxt(a)
        txs = [orders_tx(2, 10 + step, [place(step, SELL, (step + 1) * BTC_STEP, (64_000 + step) * ONE_DOLLAR_BTC,
                                              height_hint=h)]),
               orders_tx(3, 10 + step, [place(step, BUY, (step + 2) * BTC_STEP, (63_990 + 3 * step) * ONE_DOLLAR_BTC,
                                              height_hint=h)])]
        b.restart()  # b rebuilds its book from LevelDB before every block
        ra, rb = a.block(txs), b.block(txs)
        assert ra.app_hash == rb.app_hash
        assert book(a) == book(b)
    a.close()
    b.close()


# --- isolated markets ------------------------------------------------------------------------------------------------

SOL_DOLLAR = 10**8  # SOL-USD: atomic -7, QCE -9 -> subticks = USD × 10^(6 - 7 + 9); tick 1_000_000 = $0.01
ONE_SOL = 10**7  # base quantums


def test_isolated_market_pool_and_constraints(ex):
    """SOL-USD is isolated (oracle $150). Account 1 funds subaccount 1 with 1,000 USDC and buys 10 SOL there from
    account 2's subaccount 1; the 1,000 USDC (its quote balance before the opening fill) moves to SOL's pool."""
    from app.subaccounts.keeper import isolated_pool

    sol_pool = isolated_pool(2)
    res = ex.block([msg_tx(1, 1, [deposit_msg(1, 1_000 * USD, number=1)]),
                    msg_tx(2, 1, [deposit_msg(2, 1_000 * USD, number=1)])])
    assert [t.code for t in res.tx_results] == [0, 0]
    h = nxt(ex)
    res = ex.block([orders_tx(2, 2, [place(1, SELL, 10 * ONE_SOL, 150 * SOL_DOLLAR, pair=2, number=1, tif=POST_ONLY,
                                           height_hint=h)]),
                    orders_tx(1, 2, [place(1, BUY, 10 * ONE_SOL, 150 * SOL_DOLLAR, pair=2, number=1, tif=IOC,
                                           height_hint=h)])])
    assert [a["status"] for t in res.tx_results for a in actions_of(t)] == ["resting", "filled"]
    # 10 SOL × $150 = $1,500; taker fee 0.75, maker fee 0.15. Both subaccounts opened SOL positions: their quote
    # balances before the fill (1,000 USDC each) moved from the cross pool to SOL's pool.
    assert ex.balance_of(sol_pool) == 2_000 * USD - 750_000 - 150_000
    assert ex.balance_of(CROSS_POOL) == 400_000 * USD
    assert subaccount(ex, 1, 1)["collateral_pool"] == subaccount(ex, 2, 1)["collateral_pool"]
    # An isolated subaccount trades nothing else; a cross subaccount with positions opens no isolated position.
    open_btc = orders_tx(1, 3, [place(2, BUY, BTC_STEP, P64K, number=1, height_hint=nxt(ex))])
    assert ex.app.check_tx(open_btc).code == errors.ERR_ISOLATED_MARKET_CONSTRAINT.code
    ex.block([orders_tx(3, 1, [place(1, SELL, BTC_STEP, P64K, tif=POST_ONLY, height_hint=nxt(ex))])])
    ex.block([orders_tx(4, 1, [place(1, BUY, BTC_STEP, P64K, tif=IOC, height_hint=nxt(ex))])])
    assert position(ex, 4) == BTC_STEP
    open_sol = orders_tx(4, 2, [place(2, BUY, ONE_SOL, 150 * SOL_DOLLAR, pair=2, height_hint=nxt(ex))])
    assert ex.app.check_tx(open_sol).code == errors.ERR_ISOLATED_MARKET_CONSTRAINT.code
    # Closing: account 1 sells its 10 SOL back at $151 to account 2 (which closes its short too): both quote
    # balances after the closing fill move back to the cross pool, and SOL's pool is empty again.
    h = nxt(ex)
    res = ex.block([orders_tx(2, 3, [place(2, BUY, 10 * ONE_SOL, 151 * SOL_DOLLAR, pair=2, number=1, tif=POST_ONLY,
                                           height_hint=h)]),
                    orders_tx(1, 4, [place(3, SELL, 10 * ONE_SOL, 151 * SOL_DOLLAR, pair=2, number=1, tif=IOC,
                                           reduce_only=True, height_hint=h)])])
    assert [a["status"] for t in res.tx_results for a in actions_of(t)] == ["resting", "filled"]
    assert ex.balance_of(sol_pool) == 0
    # account 1: 1,000 - 1,500 - 0.75 + 1,510 - 0.755 (taker fee ceil(1,510 × 500 ppm) = 0.755) = 1,008.495
    assert quote(ex, 1, 1) == 1_008_495_000
    # cross pool: every deposit back, less all fees: SOL 0.75 + 0.15 + 0.755 + 0.151, BTC (0.0001 at 64,000 =
    # $6.40) 3,200 + 640
    assert ex.balance_of(CROSS_POOL) == 402_000 * USD - (750_000 + 150_000 + 755_000 + 151_000) - (3_200 + 640)


def test_the_mark_price_follows_the_book_mid_smoothed_and_clamped(chain):
    """Bid 64,100 / ask 64,300: mid 64,200, basis +200 USD = 20,000,000 price units. Each block the EMA moves 10 %
    of the way (mark_basis_smoothing_ppm 100,000) and is clamped to 0.5 % of the oracle (320 USD), so the mark goes
    64,020, 64,038, ... toward 64,200; with a one-sided book the basis decays back toward 0."""
    h = nxt(chain)
    price_block(chain, [orders_tx(2, 1, [place(1, SELL, BTC_STEP, 64_300 * ONE_DOLLAR_BTC, tif=POST_ONLY, gtb=h + 30)]),
                        orders_tx(3, 1, [place(1, BUY, BTC_STEP, 64_100 * ONE_DOLLAR_BTC, tif=POST_ONLY, gtb=h + 30)])])
    marks = []
    for _ in range(3):
        price_block(chain)
        marks.append(json.loads(chain.app.query("/prices/market/BTC-USD", b"").value)["mark_price"])
    # EMA: 0 -> 2,000,000 -> 3,800,000 -> 5,420,000 price units (trunc of 10 % of the gap each block)
    assert marks == [str(BTC_PRICE + 2_000_000), str(BTC_PRICE + 3_800_000), str(BTC_PRICE + 5_420_000)]


def test_fee_tiers_see_volume_up_to_the_previous_block(tmp_path):
    """Tier 2 needs 5,000 USD of 30-day volume (taker 100 ppm instead of 500). Account 1 trades 6,400 USD in one
    block: both of its fills there still pay tier 1 (500 ppm: 3.2 USD on 6,400); in the next block it is tier 2
    (100 ppm: 0.64 USD on 6,400) -- fills are recorded for fee tiers at the end of the block, as dYdX x/stats does."""
    tiers = [{"name": "1", "maker_fee_ppm": 0, "taker_fee_ppm": 500},
             {"name": "2", "absolute_volume_requirement_quote_quantums": str(5_000 * USD), "maker_fee_ppm": 0,
              "taker_fee_ppm": 100}]
    r = Replica(tmp_path / "db")
    r.init_chain(exchange_app_state(fee_tiers=tiers))
    r.block([])
    _rest_ask(r, 2, 1, 3000 * BTC_STEP, 64_000, 1)
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, 500 * BTC_STEP, P64K, tif=IOC, height_hint=h),
                                    place(2, BUY, 500 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    assert [(f["taker_fee_tier"], f["taker_fee_quote_quantums"]) for f in fills_of(res.tx_results[0])] == [
        ("1", "1600000"), ("1", "1600000")]  # tiers by name, as query clob params lists them
    res = r.block([orders_tx(1, 2, [place(3, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=nxt(r))])])
    assert [(f["taker_fee_tier"], f["taker_fee_quote_quantums"]) for f in fills_of(res.tx_results[0])] == [
        ("2", "640000")]
    r.close()


def test_the_authority_moves_a_perpetual_to_another_tier_and_type(ex):
    """Tier 4 (IM 5 %, OI-scaled between 0.5 M and 1 M USDC of open interest) for BTC; cross -> isolated only while
    BTC has no open interest; nobody else may do it."""
    def update(signer, nonce, **fields):
        msg = tx_pb2.Msg(update_perpetual=tx_pb2.MsgUpdatePerpetual(authority=ADDRS[signer], perpetual_id=BTC,
                                                                    **fields))
        return ex.block([msg_tx(signer, nonce, [msg])]).tx_results[0]

    assert update(1, 1, liquidity_tier=4, set_liquidity_tier=True).code == errors.ERR_UNAUTHORIZED.code
    assert update(0, 1, liquidity_tier=9, set_liquidity_tier=True).code == errors.ERR_UNKNOWN_LIQUIDITY_TIER.code
    assert update(0, 2, liquidity_tier=4, set_liquidity_tier=True).code == 0
    perps = json.loads(ex.app.query("/perpetuals/list", b"").value)["perpetuals"]
    assert perps[BTC]["liquidity_tier"]["id"] == 4
    _rest_ask(ex, 2, 1, BTC_STEP, 64_000, 1)
    ex.block([orders_tx(1, 2, [place(1, BUY, BTC_STEP, P64K, tif=IOC, height_hint=nxt(ex))])])  # nonce 1 was used
    assert position(ex, 1) == BTC_STEP
    assert update(0, 3, market_type=2).code == errors.ERR_INVALID_PERPETUAL.code  # open interest 0.0001 BTC
    # ETH has no open interest: it may become isolated, and its pool is then a module account users cannot pay
    msg = tx_pb2.Msg(update_perpetual=tx_pb2.MsgUpdatePerpetual(authority=ADDRS[0], perpetual_id=1, market_type=2))
    assert ex.block([msg_tx(0, 4, [msg])]).tx_results[0].code == 0
    from app.lib.address import encode_address
    from app.subaccounts.keeper import isolated_pool
    from node.client.txbuilder import msg_send

    gift = msg_tx(3, 1, [msg_send(ADDRS[3], encode_address(isolated_pool(1)), 1)])
    assert ex.app.check_tx(gift).code == errors.ERR_MODULE_ACCOUNT.code


def test_a_batch_cancel_names_the_listed_client_ids_that_were_not_resting(ex):
    """Orders 1..3 rest (short-term); a batch cancel of [9, 2, 7, 3, 2] cancels 2 and 3 and names 9 and 7, in the
    list's order, each once. A batch cancel of every order names none; nor does a list that was all found."""
    h = nxt(ex)
    ex.block([orders_tx(2, 1, [place(i, SELL, BTC_STEP, (65_000 + i) * ONE_DOLLAR_BTC, height_hint=h)
                               for i in range(1, 4)])])
    res = ex.block([orders_tx(2, 2, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(
        clob_pair_id=BTC, client_ids=[9, 2, 7, 3, 2]))])])
    [a] = actions_of(res.tx_results[0])
    assert (a["status"], a["canceled"], a["not_found"]) == ("canceled", "2", "9,7")
    res = ex.block([orders_tx(2, 3, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(
        clob_pair_id=BTC, client_ids=[1]))])])
    [a] = actions_of(res.tx_results[0])
    assert (a["canceled"], "not_found" in a) == ("1", False)
    res = ex.block([orders_tx(2, 4, [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=BTC))])])
    [a] = actions_of(res.tx_results[0])
    assert (a["canceled"], "not_found" in a) == ("0", False)
