"""The order phase's working set of subaccounts (app/subaccounts/keeper.start_working_set, issue #9 performance):
subaccounts changed by fills live in memory during the phase and are written once at its end. A refused action must
leave them exactly as it found them, whether the action was the first to touch a subaccount in the block or a later
one, and what is written must be what a fill-by-fill write would have written. Numbers are worked by hand."""

from __future__ import annotations

import copy

import pytest

from app import errors
from app.subaccounts.state import decode_subaccount, encode_subaccount
from app.subaccounts import keys as sub_keys
from tests.exchange_helpers import (
    BTC_STEP,
    BUY,
    FOK,
    IOC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    actions_of,
    book,
    exchange_app_state,
    fills_of,
    orders_tx,
    place,
    subaccount,
)
from tests.helpers import ADDRS, ONE_USDC, Replica

P64K = 64_000 * ONE_DOLLAR_BTC


@pytest.fixture
def ex(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain(exchange_app_state())
    r.block([])
    yield r
    r.close()


def _nxt(r: Replica) -> int:
    return r.app.info()[0] + 1


def _state(r: Replica, account: int) -> tuple[int, int]:
    """(quote balance, BTC position) in quote / base quantums."""
    sub = subaccount(r, account)
    size = sum(int(p["size_base_quantums"]) for p in sub["positions"] if p["market"] == "BTC-USD")
    return int(sub["quote_balance_quote_quantums"]), size


def _rest(r: Replica, account: int, nonce: int, client_id: int, steps: int) -> None:
    res = r.block([orders_tx(account, nonce, [place(client_id, SELL, steps * BTC_STEP, P64K, tif=POST_ONLY,
                                                    height_hint=_nxt(r))])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting"


def test_a_refused_fill_or_kill_undoes_its_fills_in_the_working_set(ex):
    """Account 2 asks 1000 steps at $64,000, then account 3 asks 200 steps at the same price (later in time).
    One block: account 1 buys 500 steps IOC (fills account 2), then a FOK for 1000 steps finds only 500 + 200 = 700
    and is refused after filling both makers in memory. The block must leave: account 1 long 500 steps having paid
    0.05 BTC × 64,000 = 3,200 USDC + 5 bps taker fee 1.6; account 2 short 500 steps, +3,200 − 1 bp maker fee 0.32;
    account 3 untouched (first touched by the refused action); both asks on the book with 500 and 200 steps."""
    _rest(ex, 2, 1, 1, 1000)
    _rest(ex, 3, 1, 1, 200)
    h = _nxt(ex)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 500 * BTC_STEP, P64K, tif=IOC, height_hint=h)]),
                    orders_tx(1, 2, [place(2, BUY, 1000 * BTC_STEP, P64K, tif=FOK, height_hint=h)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "filled"
    refused = actions_of(res.tx_results[1])[0]
    assert refused["code"] == str(errors.ERR_FILL_OR_KILL_NOT_FILLED.code) and fills_of(res.tx_results[1]) == []
    deposit = 100_000 * ONE_USDC
    assert _state(ex, 1) == (deposit - 3_200 * ONE_USDC - 1_600_000, 500 * BTC_STEP)
    assert _state(ex, 2) == (deposit + 3_200 * ONE_USDC - 320_000, -500 * BTC_STEP)
    assert _state(ex, 3) == (deposit, 0)
    assert [(a["price"], a["quantums"], a["orders"]) for a in book(ex)["asks"]] == [
        ("64000", str(700 * BTC_STEP), 2)]


def test_a_subaccount_filled_many_times_in_one_block_is_written_once_with_the_sum(ex):
    """Account 2 asks 1000 steps; account 1 takes it in five IOC buys of 200 steps, in one block (five actions of
    one tx). Each fill: 0.02 BTC × 64,000 = 1,280 USDC, taker fee 0.64, maker fee 0.128. Written once at the end of
    the phase: account 1 long 1000 steps at −5 × 1,280.64; account 2 short 1000 steps at +5 × 1,279.872; and the
    stored bytes are the plain encoding of that state (what a fill-by-fill write would have left)."""
    _rest(ex, 2, 1, 1, 1000)
    h = _nxt(ex)
    res = ex.block([orders_tx(1, 1, [place(10 + i, BUY, 200 * BTC_STEP, P64K, tif=IOC, height_hint=h)
                                     for i in range(5)])])
    assert [a["status"] for a in actions_of(res.tx_results[0])] == ["filled"] * 5
    assert len(fills_of(res.tx_results[0])) == 5
    deposit = 100_000 * ONE_USDC
    assert _state(ex, 1) == (deposit - 5 * 1_280_640_000, 1000 * BTC_STEP)
    assert _state(ex, 2) == (deposit + 5 * 1_279_872_000, -1000 * BTC_STEP)
    assert book(ex)["asks"] == []
    from app.lib.address import decode_address_or_none

    for account in (1, 2):
        raw = ex.app._base()[0].get(sub_keys.subaccount_key(decode_address_or_none(ADDRS[account]), 0))
        assert raw is not None and encode_subaccount(decode_subaccount(raw)) == raw


def test_a_refused_action_after_a_successful_one_on_the_same_maker_keeps_the_first(ex):
    """Account 2's ask of 300 steps. Account 1: IOC 100 steps (fills), then FOK 300 steps (only 200 left: refused
    after filling 200 in memory), then IOC 100 steps (fills). 100 steps = 0.01 BTC × 64,000 = 640 USDC, taker fee
    0.32, maker fee 0.064: account 1 ends long 200 steps at −2 × 640.32, account 2 short 200 steps at
    +2 × 639.936; 100 steps stay on the book."""
    _rest(ex, 2, 1, 1, 300)
    h = _nxt(ex)
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 100 * BTC_STEP, P64K, tif=IOC, height_hint=h),
                                     place(2, BUY, 300 * BTC_STEP, P64K, tif=FOK, height_hint=h),
                                     place(3, BUY, 100 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    statuses = [a.get("status") for a in actions_of(res.tx_results[0])]
    assert statuses == ["filled", "rejected", "filled"]
    deposit = 100_000 * ONE_USDC
    assert _state(ex, 1) == (deposit - 2 * 640_320_000, 200 * BTC_STEP)
    assert _state(ex, 2) == (deposit + 2 * 639_936_000, -200 * BTC_STEP)
    assert [(a["price"], a["quantums"]) for a in book(ex)["asks"]] == [("64000", str(100 * BTC_STEP))]


def test_the_fill_event_names_each_side_from_its_own_order(tmp_path):
    """Every attribute of the fill event comes from the right side (app/clob/matching.fill_event): BTC-USD listed as
    clob pair 9 (perpetual 0), the maker is account 2's subaccount 5 with a long-term order (flags 64) and 2 M USDC
    of 30-day volume (the default tier "2": >= 1 M USDC), the taker account 1's subaccount 3 with a short-term IOC
    buy and no volume (tier "1"). 0.0002 BTC at 64,000 = 12.8 USDC: taker fee 500 ppm = 6,400, maker fee (tier "2":
    100 ppm) 1,280 quote quantums."""
    import struct

    from app.clob.keeper import NS_PER_DAY
    from tests.helpers import GENESIS_TIME_NS

    state = copy.deepcopy(exchange_app_state())  # the helpers' pair dicts are shared module constants
    state["clob"]["clob_pairs"][0]["id"] = 9
    state["subaccounts"]["deposits"] += [
        {"owner": ADDRS[1], "number": 3, "amount_quote_quantums": str(1_000 * ONE_USDC)},
        {"owner": ADDRS[2], "number": 5, "amount_quote_quantums": str(1_000 * ONE_USDC)}]
    day = GENESIS_TIME_NS // NS_PER_DAY
    state["clob"]["stats"] = [{"owner": ADDRS[2], "buckets": struct.pack(">QQQ", day, 2_000_000 * ONE_USDC, 0).hex()}]
    r = Replica(tmp_path / "db")
    r.init_chain(state)
    r.block([])
    try:
        res = r.block([orders_tx(2, 1, [place(7, SELL, 2 * BTC_STEP, P64K, pair=9, number=5, tif=POST_ONLY,
                                              gtbt_ns=GENESIS_TIME_NS + 10**12)])])
        assert actions_of(res.tx_results[0])[0]["status"] == "resting"
        res = r.block([orders_tx(1, 1, [place(8, BUY, 2 * BTC_STEP, P64K, pair=9, number=3, tif=IOC,
                                              height_hint=_nxt(r))])])
        (fill,) = fills_of(res.tx_results[0])
        assert fill == {"clob_pair_id": "9", "perpetual_id": "0", "taker": ADDRS[1], "taker_number": "3",
                        "taker_client_id": "8", "maker": ADDRS[2], "maker_number": "5", "maker_client_id": "7",
                        "maker_order_flags": "64", "taker_side": "buy", "subticks": str(P64K), "quantums": "2000000",
                        "quote_quantums": "12800000", "taker_fee_quote_quantums": "6400",
                        "maker_fee_quote_quantums": "1280", "taker_fee_tier": "1", "maker_fee_tier": "2"}
    finally:
        r.close()


def test_a_reduce_only_order_that_outlived_its_subaccount_is_removed_when_reached(ex):
    """Account 3 buys 0.01 BTC at 64,000 (pays 640 + taker fee 0.32), rests a reduce-only ask of 0.01 BTC at 70,000,
    sells the 0.01 BTC at 63,000 to account 4's bid (receives 630 − taker fee 0.315), and withdraws its whole quote
    balance: 100,000 − 640.32 + 629.685 = 99,989.365 USDC. The subaccount is now empty, so it is not stored, while its
    reduce-only ask still rests. A taker that reaches the ask finds nothing to reduce (the maker is read through
    current_subaccount: not in the working set, absent from the store, so an empty subaccount): the ask is removed
    with that reason and nothing fills."""
    from app.lib.address import decode_address_or_none
    from tests.helpers import GENESIS_TIME_NS
    from perpchain.v1 import tx_pb2

    from node.client.txbuilder import sign_tx
    from tests.helpers import CHAIN_ID, KEYS

    h = _nxt(ex)
    res = ex.block([orders_tx(2, 1, [place(1, SELL, 100 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)]),
                    orders_tx(4, 1, [place(1, BUY, 100 * BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                           height_hint=h)])])
    res = ex.block([orders_tx(3, 1, [place(1, BUY, 100 * BTC_STEP, P64K, tif=IOC, height_hint=_nxt(ex))])])
    assert actions_of(res.tx_results[0])[0]["status"] == "filled"
    res = ex.block([orders_tx(3, 2, [place(2, SELL, 100 * BTC_STEP, 70_000 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                           reduce_only=True, gtbt_ns=GENESIS_TIME_NS + 10**12)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting"
    res = ex.block([orders_tx(3, 3, [place(3, SELL, 100 * BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=IOC,
                                           height_hint=_nxt(ex))])])
    assert actions_of(res.tx_results[0])[0]["status"] == "filled"
    left = 100_000 * ONE_USDC - 640_320_000 + 629_685_000  # 99,989.365 USDC
    assert _state(ex, 3) == (left, 0)
    withdraw = tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(owner=ADDRS[3], subaccount_number=0,
                                                      amount_quote_quantums=left))
    res = ex.block([sign_tx(KEYS[3], CHAIN_ID, 4, [withdraw])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert ex.app._base()[0].get(sub_keys.subaccount_key(decode_address_or_none(ADDRS[3]), 0)) is None
    res = ex.block([orders_tx(1, 1, [place(1, BUY, 100 * BTC_STEP, 70_000 * ONE_DOLLAR_BTC, tif=IOC,
                                           height_hint=_nxt(ex))])])
    taker = actions_of(res.tx_results[0])[0]
    assert (taker["status"], taker["filled_quantums"]) == ("not_filled", "0")
    removed = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "order_removed"]
    assert [(r["owner"], r["client_id"], r["reason"]) for r in removed] == [
        (ADDRS[3], "2", "reduce_only_nothing_to_reduce")]
    assert book(ex)["asks"] == [] and fills_of(res.tx_results[0]) == []


def test_after_the_flush_the_view_reads_the_store_again():
    """flush_working_set writes each changed subaccount once and closes the working set: the same view then prepares
    from the store (what was flushed), and a persist writes straight through."""
    from app.lib.address import decode_address_or_none
    from app.perpetuals.keeper import MarginView
    from app.store import BranchStore
    from app.subaccounts import keeper as sk
    from app.subaccounts.state import SubaccountId
    from tests.mutation_helpers import mem_exchange

    branch = BranchStore(mem_exchange().store)
    sid = SubaccountId(decode_address_or_none(ADDRS[1]), 0)
    view = MarginView(branch)
    sk.start_working_set(view)
    prep = sk.prepare(branch, sid, view)
    prep.after.quote_balance_quote_quantums -= 7
    sk.persist(branch, prep, view)
    assert sk.get_subaccount(branch, sid).quote_balance_quote_quantums == 100_000 * ONE_USDC  # not written yet
    sk.flush_working_set(branch, view)
    assert sk.get_subaccount(branch, sid).quote_balance_quote_quantums == 100_000 * ONE_USDC - 7
    again = sk.prepare(branch, sid, view)
    assert again.before.quote_balance_quote_quantums == 100_000 * ONE_USDC - 7
    again.after.quote_balance_quote_quantums -= 3
    sk.persist(branch, again, view)
    assert sk.get_subaccount(branch, sid).quote_balance_quote_quantums == 100_000 * ONE_USDC - 10


def test_a_refused_fills_failure_kind_sees_the_open_interest_of_the_phase(tmp_path):
    """The *before* risk of a fill's collateral check uses the open interest as this block's earlier fills left it
    (app/clob/matching._check_side; dYdX writes OI after every fill), not the stored one: kills mutants _14/_18.

    SOL-USD (isolated, $150, IM 5 %, MF 60 %) with OI caps 0 / 1,000 USDC: IMF = 5 % + 95 % x OI notional / $1,000,
    100 % from $1,000. No fees. Account 3 has 120 USDC.
    Block A: account 4 rests a sell of 1 SOL at $150, account 3 buys it (IOC): OI 1 SOL ($150).
    Block B: account 2 rests a sell of 5 SOL at $150; account 3 rests a buy of 1 SOL at $149 (its placement check:
    2 SOL = $300 at IMF 5 % + 95 % x 0.3 = 33.5 % -> IMR 100.5 <= NC 121); then the takers: account 1 buys 5 SOL
    (OI 6 SOL = $900), account 4 sells 1 SOL into account 3's bid at $149.
    Account 3 before that fill: quote 120 - 150 = -30, NC 120; IMR at the phase's OI ($900: IMF 90.5 %) = 135.75 >
    120, so it is already under initial margin (at the stored OI, $150: IMF 19.25 %, IMR 28.875, it would look
    *newly* so). After: 2 SOL long, quote -30 - 149 = -179, NC = -179 + 300 = 121; OI 7 SOL ($1,050: IMF 100 %):
    IMR 300; MMR 4.5 -> 9 grows: refused as *still* undercollateralized, the maker removed, account 4's taker order
    not filled."""
    state = copy.deepcopy(exchange_app_state(fee_tiers=[{"name": "free", "maker_fee_ppm": 0, "taker_fee_ppm": 0}]))
    tier = state["perpetuals"]["liquidity_tiers"][1]
    tier["open_interest_lower_cap_quote_quantums"] = "0"
    tier["open_interest_upper_cap_quote_quantums"] = str(1_000 * ONE_USDC)
    for d in state["subaccounts"]["deposits"]:
        if d["owner"] == ADDRS[3]:
            d["amount_quote_quantums"] = str(120 * ONE_USDC)
    sol, one_sol, sol_price = 2, 10_000_000, 15_000_000_000
    r = Replica(tmp_path / "db")
    r.init_chain(state)
    r.block([])
    try:
        h = _nxt(r)
        res = r.block([orders_tx(4, 1, [place(1, SELL, one_sol, sol_price, pair=sol, tif=POST_ONLY, height_hint=h)]),
                       orders_tx(3, 1, [place(1, BUY, one_sol, sol_price, pair=sol, tif=IOC, height_hint=h)])])
        assert [actions_of(t)[0]["status"] for t in res.tx_results] == ["resting", "filled"]
        h = _nxt(r)
        res = r.block([
            orders_tx(2, 1, [place(1, SELL, 5 * one_sol, sol_price, pair=sol, tif=POST_ONLY, height_hint=h)]),
            orders_tx(3, 2, [place(2, BUY, one_sol, sol_price - 100_000_000, pair=sol, tif=POST_ONLY,
                                   height_hint=h)]),
            orders_tx(1, 1, [place(1, BUY, 5 * one_sol, sol_price, pair=sol, tif=IOC, height_hint=h)]),
            orders_tx(4, 2, [place(2, SELL, one_sol, sol_price - 100_000_000, pair=sol, tif=IOC, height_hint=h)])])
        assert [actions_of(t)[0]["status"] for t in res.tx_results] == ["resting", "resting", "filled", "not_filled"]
        (removed,) = [dict(e.attributes) for e in res.tx_results[3].events if e.type == "order_removed"]
        assert removed["owner"] == ADDRS[3] and removed["client_id"] == "2"
        assert removed["reason"] == ("collateral: still_undercollateralized: net collateral 121000000 quote quantums "
                                     "< initial margin 300000000 quote quantums")
        sub = subaccount(r, 3)
        assert sub["quote_balance_quote_quantums"] == str(-30 * ONE_USDC)
        assert [p["size_base_quantums"] for p in sub["positions"]] == [str(one_sol)]
    finally:
        r.close()
