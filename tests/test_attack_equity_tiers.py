"""Adversarial review of equity tiers (dYdX x/clob equity tier limits; docs/exchange.md "Equity tiers").

Each test tries one way to bypass the cap or to make it wrong or non-deterministic. Tests that pass are kept as
regression tests (the attack is resisted, or the behaviour is dYdX's and is pinned so a change is deliberate);
expected numbers are worked by hand in the docstrings and comments.

Numbers: tests/exchange_helpers.py BTC market (oracle $64,000 = 6 400 000 000 subticks, 1 subtick = $0.00001 per
BTC, step 1 000 000 base quantums = 0.0001 BTC, tick 100 000 subticks = $1, QCE -9, IM 5 %), dYdX standard fee
tier 1 (maker 100 ppm, taker 500 ppm), the default (dYdX mainnet) equity tiers: short-term and long-term 0 @ 0 USDC,
1 @ 20 USDC, 5 @ 100 USDC, 10 @ 1 000 USDC, 100 @ 10 000 USDC, 1 000 (long-term 200) @ 100 000 USDC.

A "small bid" is 0.0001 BTC at $1,000 (100 000 000 subticks): quote 1 000 000 base × 1e8 × 1e-9 = 100 000 quote
quantums ($0.10), far below the oracle so it never crosses and its collateral pre-check needs only cents.
"""

from __future__ import annotations

import json

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app import errors
from app.clob import keeper as clob_keeper
from app.clob.book import rebuild
from app.clob.genesis import DEFAULT_PARAMS
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals.genesis import to_dict
from app.store import BranchStore
from tests.attack_helpers import (
    LockStep,
    RandomFlow,
    app_state,
    cancel_replace,
    deposit_msg,
    random_flow_state,
    raw,
    statuses,
    transfer_msg,
    withdraw_msg,
)
from tests.exchange_helpers import (
    BTC,
    BTC_STEP,
    BUY,
    ETH,
    FOK,
    IOC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    actions_of,
    cancel,
    msg_tx,
    orders_tx,
    place,
)
from tests.helpers import ADDRS, GENESIS_TIME_NS, ONE_USDC
from tests.mutation_helpers import MemReplica

EQUITY = str(errors.ERR_EQUITY_TIER_LIMIT.code)  # "719"
LONG_TERM = 64
P1K = 1_000 * ONE_DOLLAR_BTC  # $1,000 in subticks
P64K = 64_000 * ONE_DOLLAR_BTC


def flat(limit: int) -> list[dict]:
    """One tier: any TNC >= 0 may rest ``limit`` orders of the kind (a negative TNC: none)."""
    return [{"usd_tnc_required_quote_quantums": "0", "limit": limit}]


def chain(deposits: dict, orders: list[dict] | None = None, next_sequence: int | None = None,
          **param_overrides) -> MemReplica:
    """The exchange genesis with only ``deposits`` ({account or (account, number): quote quantums}), optional
    resting ``orders`` and clob param overrides; at height 1."""
    state = app_state()
    state["subaccounts"]["deposits"] = [
        {"owner": ADDRS[k if isinstance(k, int) else k[0]], "number": 0 if isinstance(k, int) else k[1],
         "amount_quote_quantums": str(v)} for k, v in deposits.items()]
    if param_overrides:
        state["clob"]["params"] = {**DEFAULT_PARAMS, **param_overrides}
    if orders is not None:
        state["clob"]["orders"] = orders
        state["clob"]["next_sequence"] = str(next_sequence)
    r = MemReplica()
    r.init_chain(state)
    r.block([])
    return r


def nxt(r) -> int:
    return r.app.info()[0] + 1


def small_bid(client_id: int, h: int, *, number: int = 0, pair: int = BTC, long_term: bool = False, tif: int = 0,
              gtb: int = 0) -> tx_pb2.OrderAction:
    if pair == ETH:  # 0.001 ETH at $100
        return place(client_id, BUY, 1_000_000, 100_000_000, pair=ETH, number=number, tif=tif, gtb=gtb,
                     gtbt_ns=GENESIS_TIME_NS + 10**12 if long_term else 0, height_hint=h)
    return place(client_id, BUY, BTC_STEP, P1K, number=number, tif=tif, gtb=gtb,
                 gtbt_ns=GENESIS_TIME_NS + 10**12 if long_term else 0, height_hint=h)


def kind_count(r, account: int, number: int = 0, flags: int = 0) -> int:
    """The app's in-memory count (what the cap compares) -- checked against the store by :func:`stored_counts`."""
    return r.app._books.kind_count(raw(account), number, flags)


def stored_counts(store) -> dict[bytes, int]:
    """(owner, number, flags) -> resting orders, from the committed orders themselves."""
    out: dict[bytes, int] = {}
    for okey, order in clob_keeper.iter_orders(BranchStore(store)):
        k = order.owner + bytes((order.subaccount_number, order.order_flags))
        out[k] = out.get(k, 0) + 1
    return out


def by_index(res_tx) -> dict[str, dict]:
    return {a["action_index"] + ("/" + a["step"] if "step" in a else ""): a for a in actions_of(res_tx)}


def removed(res_tx) -> list[tuple[str, str]]:
    return [(e_attrs["client_id"], e_attrs["reason"]) for e_attrs in
            (dict(e.attributes) for e in res_tx.events if e.type == "order_removed")]


def set_funding_index(r: MemReplica, index: int) -> None:
    """Move BTC's funding index in committed state (as tests/test_attack_session7.py does): the next load of a
    position settles against it."""
    b = BranchStore(r.store)
    perpetuals_keeper.set_funding_index(b, BTC, index)
    r.store.commit(list(b.write_set()), r.store.last_height(), r.store.last_app_hash())
    r.restart()


# --- the counts follow every way an order leaves the book ------------------------------------------------------

def test_a_fully_filled_maker_frees_its_slot_for_a_later_placement_of_the_same_block():
    """Account 1 (20 USDC: 1 order) rests a small bid. Next block: account 4 sells into it (IOC, tx 1), then
    account 1 places a GTC bid (tx 2, same phase, later) -> rests: the filled maker left the count. A post-only bid
    in the same block (phase 2, before the fill) is refused: the slot is still taken then.
    After the fill account 1 holds 0.0001 BTC bought at $1,000: quote 20 - 0.10 - 0.00001 (maker fee
    ceil(100 000 x 100 / 1e6) = 10) = 19.89999 USDC, position worth $6.40: TNC 26.29999 USDC, still tier 1."""
    r = chain({1: 20 * ONE_USDC, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    assert statuses(r.block([orders_tx(1, 1, [small_bid(1, h)])]).tx_results[0]) == ["resting"]
    h = nxt(r)
    res = r.block([orders_tx(4, 1, [place(1, SELL, BTC_STEP, P1K, tif=IOC, height_hint=h)]),
                   orders_tx(1, 2, [small_bid(2, h, tif=POST_ONLY), small_bid(3, h)])])
    assert statuses(res.tx_results[0]) == ["filled"]
    po, gtc = actions_of(res.tx_results[1])
    assert po["code"] == EQUITY and "has 1 open short-term orders" in po["reason"]
    assert gtc["status"] == "resting"
    assert gtc.get("code") is None
    assert kind_count(r, 1) == 1
    sub = json.loads(r.app.query(f"/subaccounts/show/{ADDRS[1]}/0", b"").value)
    assert sub["quote_balance_quote_quantums"] == str(20 * ONE_USDC - 100_000 - 10)


def test_a_maker_placed_and_filled_in_the_same_block_frees_its_slot_in_that_block():
    """All in one block, phase 3 in block order: account 1 (20 USDC) rests bid 1 (tx 1), account 4's IOC sell fills
    it (tx 2), account 1's bid 2 (tx 3) rests -- the slot came back within the block -- and bid 3 (tx 4) is
    refused (1 >= 1)."""
    r = chain({1: 20 * ONE_USDC, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [small_bid(1, h)]),
                   orders_tx(4, 1, [place(1, SELL, BTC_STEP, P1K, tif=IOC, height_hint=h)]),
                   orders_tx(1, 2, [small_bid(2, h)]), orders_tx(1, 3, [small_bid(3, h)])])
    assert [statuses(t) for t in res.tx_results] == [["resting"], ["filled"], ["resting"], ["rejected"]]
    assert kind_count(r, 1) == 1


def test_a_partially_filled_maker_keeps_its_slot():
    """Account 1 (20 USDC) rests 0.0002 BTC at $1,000; account 4 sells 0.0001 into it: 0.0001 stays on the book and
    still counts, so account 1's next bid is refused (1 >= 1)."""
    r = chain({1: 20 * ONE_USDC, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [place(1, BUY, 2 * BTC_STEP, P1K, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(4, 1, [place(1, SELL, BTC_STEP, P1K, tif=IOC, height_hint=h)]),
                   orders_tx(1, 2, [small_bid(2, h)])])
    assert statuses(res.tx_results[0]) == ["filled"]
    assert actions_of(res.tx_results[1])[0]["code"] == EQUITY
    assert kind_count(r, 1) == 1


def test_self_trade_removal_frees_the_slot_and_a_failed_fok_puts_it_back():
    """Account 1 (20 USDC) rests bid 1. Its own FOK sell at $1,000 removes bid 1 (self-trade) and then finds
    nothing: the FOK fails and its branch (with the removal) is rolled back -> bid 1 is back and still counts, so
    GTC bid 3 of the same tx is refused. Next block an IOC sell does the same removal and succeeds (not_filled):
    the slot is free and GTC bid 5 rests."""
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(1, h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [place(2, SELL, BTC_STEP, P1K, tif=FOK, height_hint=h), small_bid(3, h)])])
    fok, bid3 = actions_of(res.tx_results[0])
    assert fok["code"] == str(errors.ERR_FILL_OR_KILL_NOT_FILLED.code)
    assert bid3["code"] == EQUITY and "has 1 open short-term orders" in bid3["reason"]
    assert removed(res.tx_results[0]) == []  # the rolled-back removal left no event
    assert kind_count(r, 1) == 1
    h = nxt(r)
    res = r.block([orders_tx(1, 3, [place(4, SELL, BTC_STEP, P1K, tif=IOC, height_hint=h), small_bid(5, h)])])
    assert statuses(res.tx_results[0]) == ["not_filled", "resting"]
    assert removed(res.tx_results[0]) == [("1", "self_trade")]
    assert kind_count(r, 1) == 1
    assert stored_counts(r.store) == {raw(1) + bytes((0, 0)): 1}


def test_a_maker_removed_by_its_collateral_check_frees_the_slot():
    """Flat short-term tier (1 order whatever the TNC). Account 1 (100 USDC) rests 0.01 BTC at $63,000 (pre-check:
    quote 100 - 630 - 0.063 fee, position $640: TNC 109.937 >= IM 32), then withdraws 95 USDC (no position: allowed).
    Account 4's IOC sell hits the bid: account 1 would hold 0.01 BTC with TNC 5 + 10 - 0.063 = 14.937 < IM 32, so
    the maker is removed ("collateral: ..."), the IOC is not filled, and account 1's later bid in the block rests."""
    r = chain({1: 100 * ONE_USDC, 4: 100_000 * ONE_USDC}, short_term_order_equity_tiers=flat(1))
    h = nxt(r)
    r.block([orders_tx(1, 1, [place(1, BUY, 100 * BTC_STEP, 63_000 * ONE_DOLLAR_BTC, height_hint=h)])])
    res = r.block([msg_tx(1, 2, [withdraw_msg(1, 95 * ONE_USDC)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    h = nxt(r)
    res = r.block([orders_tx(4, 1, [place(1, SELL, 100 * BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=IOC,
                                          height_hint=h)]),
                   orders_tx(1, 3, [small_bid(2, h)])])
    assert statuses(res.tx_results[0]) == ["not_filled"]
    [(cid, reason)] = removed(res.tx_results[0])
    assert cid == "1" and reason.startswith("collateral: ")
    assert statuses(res.tx_results[1]) == ["resting"]
    assert kind_count(r, 1) == 1


def test_a_reduce_only_maker_with_nothing_to_reduce_is_removed_and_frees_the_slot():
    """Tiers: 1 short-term order below 10 000 USDC (accounts 1, 2), 10 above (account 4). Account 1 buys 0.0001 BTC
    (IOC at $64,000 from account 4's post-only ask), rests a reduce-only sell of 0.0001 at $65,000 (count 1), then
    closes the position with an IOC sell into account 4's $63,000 bid (IOC: not capped). Account 2's buy at $65,000 then meets the reduce-only ask with
    nothing left to reduce: removed ("reduce_only_nothing_to_reduce"), and account 1 may rest again."""
    r = chain({1: 1_000 * ONE_USDC, 2: 1_000 * ONE_USDC, 4: 100_000 * ONE_USDC},
              short_term_order_equity_tiers=[{"usd_tnc_required_quote_quantums": "0", "limit": 1},
                                             {"usd_tnc_required_quote_quantums": str(10_000 * ONE_USDC),
                                              "limit": 10}])
    h = nxt(r)
    r.block([orders_tx(4, 1, [place(1, SELL, BTC_STEP, P64K, tif=POST_ONLY, height_hint=h),
                              place(2, BUY, BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["filled"]
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [place(2, SELL, BTC_STEP, 65_000 * ONE_DOLLAR_BTC, reduce_only=True,
                                          height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting"]
    h = nxt(r)
    res = r.block([orders_tx(1, 3, [place(3, SELL, BTC_STEP, 63_000 * ONE_DOLLAR_BTC, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["filled"]
    assert kind_count(r, 1) == 1  # the reduce-only ask still rests (nothing removes it until it is met)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, BUY, BTC_STEP, 65_000 * ONE_DOLLAR_BTC, tif=IOC, height_hint=h)]),
                   orders_tx(1, 4, [small_bid(4, h)])])
    assert statuses(res.tx_results[0]) == ["not_filled"]
    assert removed(res.tx_results[0]) == [("2", "reduce_only_nothing_to_reduce")]
    assert statuses(res.tx_results[1]) == ["resting"]
    assert kind_count(r, 1) == 1


def test_expired_orders_leave_the_count_before_the_blocks_placements():
    """Account 1 (20 USDC) rests a short-term bid with good_til_block = h and a long-term bid good until the block
    time of h+1. In block h+1 both expire (good_til_block < height; good_til_block_time <= block time) before any
    placement, so a new bid of each kind rests."""
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    t_next = GENESIS_TIME_NS + (h + 1) * 500_000_000  # tests/helpers BLOCK_INTERVAL_NS
    res = r.block([orders_tx(1, 1, [small_bid(1, h, gtb=h),
                                    place(2, BUY, BTC_STEP, P1K, gtbt_ns=t_next, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting", "resting"]
    res = r.block([orders_tx(1, 2, [small_bid(3, h + 1), small_bid(4, h + 1, long_term=True)])])
    assert statuses(res.tx_results[0]) == ["resting", "resting"]
    assert sorted(dict(e.attributes)["reason"] for e in res.events if e.type == "order_removed") == \
        ["expired", "expired"]
    assert kind_count(r, 1) == 1 and kind_count(r, 1, flags=LONG_TERM) == 1


# --- cancels before placements, across txs; refused actions change nothing --------------------------------------

def test_cancel_in_a_later_tx_of_the_block_still_runs_before_the_placement():
    """Account 1 (20 USDC) rests bid 1. Next block: tx 1 places bid 2, tx 2 (later nonce) cancels bid 1. Cancels run
    first whatever the block order: bid 2 rests. The reverse trick -- place first and cancel in a later block --
    cannot overfill: the placement is refused (1 >= 1)."""
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(1, h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [small_bid(2, h)]), orders_tx(1, 3, [cancel(1)])])
    assert statuses(res.tx_results[0]) == ["resting"]
    assert statuses(res.tx_results[1]) == ["canceled"]
    assert kind_count(r, 1) == 1


def test_cancel_replace_at_the_limit_replaces_and_a_second_placement_cannot_ride_on_it():
    """Account 1 at its limit (1) cancel-replaces bid 1 by bid 2 and, in the same tx, also places bid 3: the cancel
    half frees one slot, bid 2 (earlier action) takes it, bid 3 is refused. A cancel-replace whose cancel finds
    nothing places nothing (skipped)."""
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(1, h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [cancel_replace(1, small_bid(2, h)), small_bid(3, h),
                                    cancel_replace(99, small_bid(4, h))])])
    acts = by_index(res.tx_results[0])
    assert acts["0/cancel"]["status"] == "canceled" and acts["0/place"]["status"] == "resting"
    assert acts["1"]["code"] == EQUITY
    assert acts["2/place"]["status"] == "skipped"
    assert kind_count(r, 1) == 1


def test_refused_placements_and_refused_txs_leave_the_counts_alone():
    """Account 1 (100 USDC: 5 orders) rests 4 bids. Then, in one block: a post-only bid that would cross account
    4's $2,000 ask, a bid with a bad tick, a FOK that cannot fill, a duplicate
    client id, and a tx reusing nonce 1 (refused whole) carrying 3 bids. Counts stay 4, so exactly one more bid
    rests afterwards and the next is refused."""
    r = chain({1: 100 * ONE_USDC, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(i, h) for i in (1, 2, 3, 4)]),
             orders_tx(4, 1, [place(1, SELL, BTC_STEP, 2_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)])])
    assert kind_count(r, 1) == 4
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [place(5, BUY, BTC_STEP, 2_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),
                                    place(6, BUY, BTC_STEP, P1K + 1, height_hint=h),
                                    place(7, BUY, 5 * BTC_STEP, 2_000 * ONE_DOLLAR_BTC, tif=FOK, height_hint=h),
                                    small_bid(1, h)]),
                   orders_tx(1, 1, [small_bid(10, h), small_bid(11, h), small_bid(12, h)])])
    codes = [a.get("code") for a in actions_of(res.tx_results[0])]
    assert codes == [str(errors.ERR_POST_ONLY_WOULD_CROSS.code), str(errors.ERR_INVALID_SUBTICKS.code),
                     str(errors.ERR_FILL_OR_KILL_NOT_FILLED.code), str(errors.ERR_ORDER_EXISTS.code)]
    assert res.tx_results[1].code != 0  # nonce 1 reused: refused whole, nothing queued
    assert kind_count(r, 1) == 4
    h = nxt(r)
    res = r.block([orders_tx(1, 3, [small_bid(20, h), small_bid(21, h)])])
    assert [a.get("code") for a in actions_of(res.tx_results[0])] == [None, EQUITY]
    assert "has 5 open short-term orders; its total net collateral 100000000" in \
        actions_of(res.tx_results[0])[1]["reason"]


def test_ioc_fok_and_market_orders_are_never_capped_post_only_and_long_term_are():
    """Account 1 with 19.999999 USDC (tier 0: rests nothing): an IOC, a FOK and a market order are not capped (they
    fail or fill on their own terms), a post-only and a long-term GTC are refused 719 naming 0 allowed."""
    r = chain({1: 19_999_999, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(4, 1, [place(1, SELL, 3 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, tif=IOC, height_hint=h),
                                    place(2, BUY, BTC_STEP, P64K, tif=FOK, height_hint=h),
                                    place(3, BUY, BTC_STEP, 0, slippage_ppm=10_000, height_hint=h),
                                    small_bid(4, h, tif=POST_ONLY),
                                    small_bid(5, h, long_term=True)])])
    acts = by_index(res.tx_results[0])
    assert [acts[i]["status"] for i in "012"] == ["filled", "filled", "filled"]
    assert [acts[i].get("code") for i in "34"] == [EQUITY, EQUITY]
    # the post-only bid ran first (phase 2), before the fills: TNC 19 999 999
    assert acts["3"]["reason"].endswith("collateral 19999999 quote quantums allows 0 (equity tiers: query clob params)")
    # 3 fills of $6.40 at the oracle price, each paying the taker fee ceil(6 400 000 x 500 / 1e6) = 3 200:
    # TNC 19 999 999 - 9 600 = 19 990 399
    assert acts["4"]["reason"] == ("equity_tier_limit: subaccount 0 has 0 open long-term orders; its total net "
                                 "collateral 19990399 quote quantums allows 0 (equity tiers: query clob params)")


# --- separate subaccounts, separate kinds, all pairs ------------------------------------------------------------

def test_each_subaccount_number_and_each_kind_has_its_own_count():
    """Account 1 has 20 USDC in subaccounts 0 and 127: each rests 1 short-term and 1 long-term order (4 in all), on
    BTC and ETH mixed; the fifth and sixth are refused. Subaccount 5 (no collateral) rests nothing."""
    r = chain({(1, 0): 20 * ONE_USDC, (1, 127): 20 * ONE_USDC})
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [small_bid(1, h), small_bid(2, h, number=127, pair=ETH),
                                    small_bid(3, h, long_term=True, pair=ETH), small_bid(4, h, number=127,
                                                                                         long_term=True),
                                    small_bid(5, h, number=127), small_bid(6, h, pair=ETH, long_term=True),
                                    small_bid(7, h, number=5)])])
    acts = actions_of(res.tx_results[0])
    assert [a.get("code") for a in acts] == [None, None, None, None, EQUITY, EQUITY, EQUITY]
    assert "subaccount 127 has 1 open short-term orders" in acts[4]["reason"]
    assert "subaccount 0 has 1 open long-term orders" in acts[5]["reason"]
    # subaccount 5 has nothing: its bid far below the oracle passes the collateral pre-check (it would gain $6.30)
    assert "subaccount 5 has 0 open short-term orders; its total net collateral 0 quote quantums allows 0" in \
        acts[6]["reason"]
    assert stored_counts(r.store) == {raw(1) + bytes((0, 0)): 1, raw(1) + bytes((0, 64)): 1,
                                      raw(1) + bytes((127, 0)): 1, raw(1) + bytes((127, 64)): 1}


# --- which TNC --------------------------------------------------------------------------------------------------

def _long_position_at_tier_boundary():
    """Account 3 deposits 100.32005 USDC and buys 0.01 BTC at $64,000 (IOC, taker fee 500 ppm): quote
    100 320 050 - 640 000 000 - 320 000 = -539 999 950; the position is worth 640 000 000 at the oracle:
    TNC = 100 000 050 quote quantums, tier 5 (>= 100 USDC) by 50 quote quantums."""
    r = chain({3: 100_320_050, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(4, 1, [place(1, SELL, 100 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, BUY, 100 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["filled"]
    sub = json.loads(r.app.query(f"/subaccounts/show/{ADDRS[3]}/0", b"").value)
    assert sub["quote_balance_quote_quantums"] == "-539999950"
    return r


def test_the_tier_uses_the_tnc_with_funding_settled():
    """After BTC's funding index moves from 0 to 1, account 3's long of 10^8 base quantums owes
    -(1 - 0) x 10^8 ppm = 100 quote quantums: settled TNC 99 999 950 < 100 USDC -> tier 1 (unsettled it would be
    100 000 050 -> tier 5). The second bid is refused naming the settled TNC."""
    r = _long_position_at_tier_boundary()
    set_funding_index(r, 1)
    h = nxt(r)
    res = r.block([orders_tx(3, 2, [small_bid(1, h), small_bid(2, h)])])
    ok, no = actions_of(res.tx_results[0])
    assert ok["status"] == "resting"
    assert no["reason"] == ("equity_tier_limit: subaccount 0 has 1 open short-term orders; its total net collateral "
                            "99999950 quote quantums allows 1 (equity tiers: query clob params)")


def test_a_negative_tnc_meets_no_tier_even_for_a_reduce_only_order():
    """Funding index 2 000 000: account 3 owes 2 x 10^6 x 10^8 / 10^6 = 200 000 000 quote quantums; TNC
    100 000 050 - 200 000 000 = -99 999 950. A reduce-only GTC sell (skips the collateral pre-check) is refused by
    the tier (0 allowed); a reduce-only IOC is not capped (nothing to match: not_filled)."""
    r = _long_position_at_tier_boundary()
    set_funding_index(r, 2_000_000)
    h = nxt(r)
    res = r.block([orders_tx(3, 2, [place(1, SELL, BTC_STEP, 70_000 * ONE_DOLLAR_BTC, reduce_only=True,
                                          height_hint=h),
                                    place(2, SELL, BTC_STEP, 70_000 * ONE_DOLLAR_BTC, reduce_only=True, tif=IOC,
                                          height_hint=h)])])
    gtc, ioc = actions_of(res.tx_results[0])
    assert gtc["reason"] == ("equity_tier_limit: subaccount 0 has 0 open short-term orders; its total net "
                             "collateral -99999950 quote quantums allows 0 (equity tiers: query clob params)")
    assert ioc["status"] == "not_filled"


def test_non_order_messages_of_the_block_move_the_tier_before_its_placements():
    """Non-order messages run before every order action of the block: a withdrawal of 0.000001 USDC by account 1
    (20 USDC) placed *after* its order tx in the block still drops it to tier 0 first (the bid is refused), and the
    authority's MsgSetEquityTiers in the same block applies to the block's placements (account 2, 20 USDC, gets 2)."""
    r = chain({1: 20 * ONE_USDC, 2: 20 * ONE_USDC})
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [small_bid(1, h)]), msg_tx(1, 2, [withdraw_msg(1, 1)]),
                   orders_tx(2, 1, [small_bid(1, h), small_bid(2, h), small_bid(3, h)]),
                   msg_tx(0, 1, [tx_pb2.Msg(set_equity_tiers=tx_pb2.MsgSetEquityTiers(
                       authority=ADDRS[0],
                       short_term_order_equity_tiers=[exchange_pb2.EquityTierLimit(
                           usd_tnc_required_quote_quantums=20 * ONE_USDC, limit=2)]))])])
    assert res.tx_results[1].code == 0 and res.tx_results[3].code == 0
    assert actions_of(res.tx_results[0])[0]["reason"].endswith(
        "its total net collateral 19999999 quote quantums allows 0 (equity tiers: query clob params)")
    assert [a.get("code") for a in actions_of(res.tx_results[2])] == [None, None, EQUITY]


# --- determinism: restart, FinalizeBlock twice, a different block first; the cap as an invariant ---------------

STEPPED = [{"usd_tnc_required_quote_quantums": str(v * ONE_USDC), "limit": n}
           for v, n in ((0, 0), (20, 1), (60_000, 2), (99_000, 3))]


@pytest.mark.parametrize("tiers, cap", [(flat(1), 1), (STEPPED, None)], ids=["flat", "by-tnc"])
def test_random_flow_keeps_the_cap_and_counts_match_a_rebuilt_book(tmp_path, tiers, cap):
    """Random traffic (tests/attack_helpers.RandomFlow: every time in force, reduce-only, cancels, batch cancels,
    cancel-replaces, deposits, withdrawals, transfers, oracle moves) on replicas run plainly, with FinalizeBlock
    twice, with another block first, and restarted mid-block (LockStep checks that app hashes, results and events
    agree). After every block each replica's in-memory kind counts equal both a book rebuilt from its store and a
    count of the stored orders. "flat": 1 short-term and 1 long-term order whatever the TNC >= 0, so no subaccount
    may ever rest more than 1 of a kind. "by-tnc": tiers around the flow's balances (50 000 / 100 000 USDC
    subaccounts moving by trades, deposits, withdrawals), so the TNC -- funding-settled, at moving oracle prices,
    from memoized risk sums that a restarted replica recomputes -- decides, and must decide alike everywhere."""
    state = random_flow_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, "short_term_order_equity_tiers": tiers,
                               "stateful_order_equity_tiers": tiers}
    ls = LockStep(tmp_path, state)
    flow = RandomFlow(seed=7)
    refused = resting = 0
    try:
        for _ in range(25):
            txs, prices = flow.block_txs(ls.height() + 1)
            for res in ls.block(txs, prices):
                for a in actions_of(res):
                    refused += a.get("code") == EQUITY
                    resting += a.get("status") in ("resting", "partially_filled_resting")
            for mode, rep in ls.replicas.items():
                counts = stored_counts(rep.store)
                if cap is not None:
                    assert max(counts.values(), default=0) <= cap, mode
                if rep.app._books is not None:
                    assert rep.app._books.kind_counts == counts, mode
                assert rebuild(rep.store).kind_counts == counts, mode
    finally:
        ls.close()
    assert refused > 10 and resting > 10, (refused, resting)  # the cap did bind, and orders did rest


# --- genesis, governance, collateral moved away: pinned behaviour (as dYdX) -------------------------------------

def test_genesis_orders_are_not_checked_against_the_tiers():
    """Genesis accepts 3 resting short-term orders of account 2, which has no collateral at all (tier 0 allows 0).
    dYdX does not re-check equity tiers at genesis either. They count: after depositing 20 USDC (tier 1) account 2's
    next bid is refused naming 3 open orders."""
    orders = [to_dict(exchange_pb2.Order(
        owner=raw(2), subaccount_number=0, client_id=i, order_flags=0, clob_pair_id=BTC, side=BUY,
        quantums=BTC_STEP, subticks=P1K - i * ONE_DOLLAR_BTC, good_til_block=30, remaining_quantums=BTC_STEP,
        sequence=i)) for i in (1, 2, 3)]
    r = chain({4: 100_000 * ONE_USDC}, orders=orders, next_sequence=4)
    assert kind_count(r, 2) == 3
    h = nxt(r)
    res = r.block([msg_tx(2, 1, [deposit_msg(2, 20 * ONE_USDC)]), orders_tx(2, 2, [small_bid(9, h)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert actions_of(res.tx_results[1])[0]["reason"] == (
        "equity_tier_limit: subaccount 0 has 3 open short-term orders; its total net collateral 20000000 quote "
        "quantums allows 1 (equity tiers: query clob params)")


def test_lower_tiers_keep_resting_orders_and_only_refuse_new_ones():
    """Account 1 (100 USDC) rests 5 bids; the authority lowers the short-term tiers to 1 order at any TNC: the 5
    stay (as dYdX: the limit applies to new orders), the next placement is refused naming 5 open, 1 allowed."""
    r = chain({1: 100 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(i, h) for i in range(1, 6)])])
    res = r.block([msg_tx(0, 1, [tx_pb2.Msg(set_equity_tiers=tx_pb2.MsgSetEquityTiers(
        authority=ADDRS[0], short_term_order_equity_tiers=[exchange_pb2.EquityTierLimit(limit=1)]))])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert kind_count(r, 1) == 5
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [small_bid(9, h)])])
    assert "has 5 open short-term orders; its total net collateral 100000000 quote quantums allows 1" in \
        actions_of(res.tx_results[0])[0]["reason"]


def test_collateral_moved_to_another_subaccount_leaves_the_orders_behind():
    """LIMITATION (as dYdX, which also checks only at placement; an EnforceEquityTierLimits with TODO bodies in
    one dYdX branch shows the gap is known): the tier is checked at placement only. Account 1 rests a long-term bid
    from subaccount 0 with 20 USDC, then moves the 20 USDC to subaccount 1 (allowed: subaccount 0 has no position)
    and rests another there: 2 long-term orders backed by 20 USDC, and
    subaccount 0 (TNC 0) keeps its order. Repeating over 128 subaccounts (or other owners) multiplies the cap; the
    orders left behind fail their maker collateral check when met, so they are phantom depth. docs/exchange.md's
    "This is what stops one funded account from filling the book" overstates it."""
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(1, h, long_term=True)])])
    h = nxt(r)
    res = r.block([msg_tx(1, 2, [transfer_msg(1, 1, 20 * ONE_USDC, number=0, to_number=1)]),
                   orders_tx(1, 3, [small_bid(2, h, number=1, long_term=True), small_bid(3, h, long_term=True)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    moved, again = actions_of(res.tx_results[1])
    assert moved["status"] == "resting"
    assert again["reason"] == ("equity_tier_limit: subaccount 0 has 1 open long-term orders; its total net "
                               "collateral 0 quote quantums allows 0 (equity tiers: query clob params)")
    assert stored_counts(r.store) == {raw(1) + bytes((0, 64)): 1, raw(1) + bytes((1, 64)): 1}


# --- divergences from dYdX and other pinned behaviour ------------------------------------------------------------

def test_over_the_limit_replacements_rest_but_never_raise_the_count():
    """dYdX exempts a replacement (same OrderId) from the equity-tier check: it adds no order. Here a cancel-replace
    of an order of the same subaccount and kind may rest while the count is below max(limit, the count at the start
    of the block's order phase). Account 3 rests 5 bids at tier 5 (TNC 100 000 050); funding then takes 100 quote
    quantums (TNC 99 999 950: tier 1, limit 1). One block: a plain bid 6 first, then cancel-replaces of bids 1 and 2
    (same ids), then bid 7. Cancels run first (5 -> 3); bid 6 needs 3 < 1: refused; the replacements need 3 < 5 and
    4 < 5: both rest; bid 7 needs 5 < 1: refused. The count is back at 5, never above."""
    r = _long_position_at_tier_boundary()
    h = nxt(r)
    res = r.block([orders_tx(3, 2, [small_bid(i, h) for i in range(1, 6)])])
    assert statuses(res.tx_results[0]) == ["resting"] * 5
    set_funding_index(r, 1)
    h = nxt(r)
    res = r.block([orders_tx(3, 3, [small_bid(6, h), cancel_replace(1, small_bid(1, h)),
                                    cancel_replace(2, small_bid(2, h)), small_bid(7, h)])])
    acts = by_index(res.tx_results[0])
    assert acts["0"]["reason"] == ("equity_tier_limit: subaccount 0 has 3 open short-term orders; its total net "
                                   "collateral 99999950 quote quantums allows 1 (equity tiers: query clob params)")
    assert [acts[k]["status"] for k in ("1/cancel", "1/place", "2/cancel", "2/place")] == [
        "canceled", "resting", "canceled", "resting"]
    assert acts["3"]["reason"].startswith("equity_tier_limit: subaccount 0 has 5 open short-term orders;")
    assert kind_count(r, 3) == 5


def test_a_replacement_of_another_kind_or_subaccount_gets_no_floor():
    """The floor applies only when the cancelled order has the placement's subaccount and kind. Account 3 as above
    (5 short-term bids, now limit 1): a cancel-replace of short-term bid 1 by a long-term bid (long-term count 0 < 1:
    rests), and one of bid 2 by a short-term bid of subaccount 1 (no collateral: TNC 0, limit 0: refused, with no
    floor from subaccount 0's five)."""
    r = _long_position_at_tier_boundary()
    h = nxt(r)
    r.block([orders_tx(3, 2, [small_bid(i, h) for i in range(1, 6)])])
    set_funding_index(r, 1)
    h = nxt(r)
    res = r.block([orders_tx(3, 3, [cancel_replace(1, small_bid(1, h, long_term=True)),
                                    cancel_replace(2, small_bid(8, h, number=1))])])
    acts = by_index(res.tx_results[0])
    assert acts["0/place"]["status"] == "resting"
    assert acts["1/place"]["reason"] == ("equity_tier_limit: subaccount 1 has 0 open short-term orders; its total "
                                         "net collateral 0 quote quantums allows 0 (equity tiers: query clob params)")
    assert kind_count(r, 3) == 3 and kind_count(r, 3, flags=LONG_TERM) == 1


def test_checktx_refuses_a_resting_placement_whose_tier_allows_none():
    """dYdX checks short-term orders in CheckTx and returns early for a 0 limit without counting; CheckTx here judges
    what it can without the book: a tier that allows 0 orders. Account 1 with 19.999999 USDC (tier 0): its GTC bid is
    refused at CheckTx (719); its IOC passes (never capped); with 20 USDC (tier 1) the GTC passes CheckTx."""
    r = chain({1: 19_999_999, 2: 20 * ONE_USDC})
    h = nxt(r)
    res = r.app.check_tx(orders_tx(1, 1, [small_bid(1, h)]))
    assert res.code == 719
    assert res.log == ("equity_tier_limit: subaccount 0 has 0 open short-term orders; its total net collateral "
                       "19999999 quote quantums allows 0 (equity tiers: query clob params)")
    assert r.app.check_tx(orders_tx(1, 1, [small_bid(1, h, long_term=True)])).code == 719
    assert r.app.check_tx(orders_tx(1, 1, [place(2, BUY, BTC_STEP, 1_000 * ONE_DOLLAR_BTC, tif=IOC,
                                                 height_hint=h)])).code == 0
    assert r.app.check_tx(orders_tx(2, 1, [small_bid(1, h)])).code == 0


def test_an_empty_list_is_no_cap_for_its_kind_only():
    """Short-term list emptied (no cap), long-term list the default: account 1 with 19.999999 USDC (tier 0) rests 3
    short-term bids but no long-term one."""
    r = chain({1: 19_999_999}, short_term_order_equity_tiers=[])
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [small_bid(1, h), small_bid(2, h), small_bid(3, h),
                                    small_bid(4, h, long_term=True)])])
    assert [a.get("code") for a in actions_of(res.tx_results[0])] == [None, None, None, EQUITY]
    assert kind_count(r, 1) == 3 and kind_count(r, 1, flags=LONG_TERM) == 0


def test_export_and_import_keep_the_tiers_and_the_counts():
    """An exported state (5 resting bids of account 1 at 100 USDC, the default tiers -- the first, 0 @ 0, exports as
    {} and reads back as 0 @ 0) imports into a chain whose in-memory counts and refusals are the same: the 6th bid
    is refused naming 5 open orders and 100 USDC."""
    r = chain({1: 100 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(i, h) for i in range(1, 6)])])
    state = r.app.export_genesis()
    r2 = MemReplica()
    r2.init_chain(state)
    r2.block([])
    assert json.loads(r2.app.query("/clob/params", b"").value) == json.loads(r.app.query("/clob/params", b"").value)
    assert r2.app._books.kind_counts == r.app._books.kind_counts == {raw(1) + bytes((0, 0)): 5}
    h = nxt(r2)
    res = r2.block([orders_tx(1, 2, [small_bid(9, h)])])
    assert "has 5 open short-term orders; its total net collateral 100000000 quote quantums allows 5" in \
        actions_of(res.tx_results[0])[0]["reason"]


def test_the_collateral_pre_check_answers_before_the_tier():
    """DIVERGENCE (cosmetic; dYdX PlaceStatefulOrder and the memclob check the equity tier before the collateral):
    account 1 with 19.999999 USDC (tier 0) bidding 1 BTC at $64,000 (IM 3 200 USDC) is refused for collateral
    (602 newly_undercollateralized), not 719."""
    r = chain({1: 19_999_999})
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, 10_000 * BTC_STEP, P64K, height_hint=h)])])
    assert actions_of(res.tx_results[0])[0]["code"] == str(errors.ERR_NEWLY_UNDERCOLLATERALIZED.code)


def test_long_term_orders_on_a_paused_pair_hold_their_slots_until_they_expire():
    """LIMITATION (two documented rules together): a paused pair's book is frozen -- no cancels -- but its orders
    still count over every pair. Account 1 (20 USDC) rests a long-term bid on ETH; the authority pauses ETH; the
    account can neither cancel it nor rest a long-term order on BTC until it expires (up to 95 days)."""
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(1, h, pair=ETH, long_term=True)])])
    res = r.block([msg_tx(0, 1, [tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(
        authority=ADDRS[0], clob_pair_id=ETH, status=exchange_pb2.CLOB_PAIR_STATUS_PAUSED))])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [cancel(1, pair=ETH, flags=LONG_TERM), small_bid(2, h, long_term=True)])])
    cancel_res, bid = actions_of(res.tx_results[0])
    assert cancel_res["code"] == str(errors.ERR_CLOB_PAIR_STATUS.code)
    assert bid["code"] == EQUITY and "has 1 open long-term orders" in bid["reason"]


def test_a_cancel_replace_with_a_subaccount_number_beyond_a_byte_is_refused_not_a_crash():
    """The floor is read before the actions are validated: a cancel-replace naming subaccount 300 (uint32 on the wire;
    bytes((300,)) would raise ValueError in the count lookup) is refused with invalid_order and the block goes
    on."""
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [cancel_replace(1, small_bid(1, h, number=300), number=300), small_bid(2, h)])])
    acts = by_index(res.tx_results[0])
    assert acts["0/cancel"]["code"] == str(errors.ERR_INVALID_ORDER.code) and "300" in acts["0/cancel"]["reason"]
    assert acts["0/place"]["status"] == "skipped" and acts["1"]["status"] == "resting"


def _lower_to_one(r: MemReplica, nonce: int = 1) -> None:
    """The authority sets both tier lists to 1 order at any TNC >= 0."""
    one = [exchange_pb2.EquityTierLimit(limit=1)]
    res = r.block([msg_tx(0, nonce, [tx_pb2.Msg(set_equity_tiers=tx_pb2.MsgSetEquityTiers(
        authority=ADDRS[0], short_term_order_equity_tiers=one, stateful_order_equity_tiers=one))])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log


def test_a_cancel_replace_across_kinds_does_not_borrow_the_other_kinds_floor():
    """Account 1 (100 USDC) rests 5 short-term bids and long-term bid 9; the tiers drop to 1. One block: a plain
    cancel of short-term bid 3 (5 -> 4) and a cancel-replace of long-term bid 9 by short-term bid 10. The replaced
    order is long-term, so the short-term placement gets no floor: 4 open >= 1, refused (a floor of the short-term
    start count, 5, would have let it rest)."""
    r = chain({1: 100 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(i, h) for i in range(1, 6)] + [small_bid(9, h, long_term=True)])])
    _lower_to_one(r)
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [cancel(3), cancel_replace(9, small_bid(10, h), flags=LONG_TERM)])])
    acts = by_index(res.tx_results[0])
    assert acts["0"]["status"] == "canceled" and acts["1/cancel"]["status"] == "canceled"
    assert acts["1/place"]["reason"] == ("equity_tier_limit: subaccount 0 has 4 open short-term orders; its total "
                                         "net collateral 100000000 quote quantums allows 1 (equity tiers: query clob "
                                         "params)")
    assert (kind_count(r, 1), kind_count(r, 1, flags=LONG_TERM)) == (4, 0)


def test_subaccount_127_replaces_above_its_limit():
    """The last subaccount number (127) gets its floor like any other: account 1's subaccount 127 (100 USDC) rests 2
    bids, the tiers drop to 1, and a cancel-replace of bid 1 rests (1 open < max(1, 2))."""
    r = chain({(1, 127): 100 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(1, h, number=127), small_bid(2, h, number=127)])])
    _lower_to_one(r)
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [cancel_replace(1, small_bid(1, h, number=127), number=127)])])
    assert by_index(res.tx_results[0])["0/place"]["status"] == "resting"
    assert kind_count(r, 1, number=127) == 2
