"""Equity tiers (dYdX x/clob equity tier limits): how many orders a subaccount may rest, by its total net collateral.

Every expected number is worked out by hand from the dYdX mainnet tiers (app/clob/genesis.py DEFAULT_PARAMS:
short-term 0 @ 0, 1 @ 20 USDC, 5 @ 100 USDC, 10 @ 1 000 USDC, 100 @ 10 000 USDC, 1 000 @ 100 000 USDC; long-term
the same but 200 at the top) and the BTC market of tests/exchange_helpers.py (oracle $64,000, taker fee 500 ppm)."""

from __future__ import annotations

import json

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app import errors
from app.clob import keeper
from app.clob.book import Books
from app.clob.genesis import DEFAULT_PARAMS
from tests.attack_helpers import app_state, statuses
from tests.exchange_helpers import (
    BTC,
    BTC_STEP,
    BUY,
    ETH,
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
from tests.helpers import ADDRS, ONE_USDC
from tests.mutation_helpers import MemReplica, refused
from tests.test_attack_equity_tiers import chain, nxt, small_bid

SHORT = [exchange_pb2.EquityTierLimit(**{**t, "usd_tnc_required_quote_quantums": int(t["usd_tnc_required_quote_quantums"])})
         for t in DEFAULT_PARAMS["short_term_order_equity_tiers"]]
STATEFUL = [exchange_pb2.EquityTierLimit(**{**t, "usd_tnc_required_quote_quantums": int(t["usd_tnc_required_quote_quantums"])})
            for t in DEFAULT_PARAMS["stateful_order_equity_tiers"]]
LONG_TERM = 64  # order flags
EQUITY = str(errors.ERR_EQUITY_TIER_LIMIT.code)


def tier(required: int, limit: int) -> exchange_pb2.EquityTierLimit:
    return exchange_pb2.EquityTierLimit(usd_tnc_required_quote_quantums=required, limit=limit)


# --- the tier choice --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tnc, short, stateful", [
    (-1, 0, 0), (0, 0, 0), (19_999_999, 0, 0), (20_000_000, 1, 1), (99_999_999, 1, 1), (100_000_000, 5, 5),
    (999_999_999, 5, 5), (1_000_000_000, 10, 10), (10_000_000_000, 100, 100), (99_999_999_999, 100, 100),
    (100_000_000_000, 1000, 200), (10**18, 1000, 200),
])
def test_the_limit_is_the_last_tier_whose_requirement_the_tnc_meets(tnc, short, stateful):
    assert keeper.equity_tier_limit(SHORT, tnc) == short
    assert keeper.equity_tier_limit(STATEFUL, tnc) == stateful


def test_no_tiers_means_no_cap_and_a_first_tier_above_zero_allows_nothing_below_it():
    assert keeper.equity_tier_limit([], 10**18) is None
    assert keeper.equity_tier_limit([tier(50, 3)], 49) == 0
    assert keeper.equity_tier_limit([tier(50, 3)], 50) == 3


def test_valid_tiers_are_ascending_and_limited_to_ten_million_orders():
    keeper.validate_equity_tiers([], "x")
    keeper.validate_equity_tiers([tier(0, 10_000_000), tier(1, 0)], "x")  # a limit may shrink; 10 M is allowed
    e = refused(keeper.validate_equity_tiers, [tier(0, 1), tier(5, 10_000_001)], "short_term_order_equity_tiers")
    assert e.code == errors.ERR_INVALID_EQUITY_TIERS.code
    assert e.message == "short_term_order_equity_tiers[1]: limit 10000001 is above 10000000 orders"
    e = refused(keeper.validate_equity_tiers, [tier(0, 1), tier(7, 2), tier(7, 3)], "stateful_order_equity_tiers")
    assert e.message == ("stateful_order_equity_tiers[2]: usd_tnc_required_quote_quantums 7 must be above the "
                         "previous tier's 7 (strictly ascending)")
    e = refused(keeper.validate_equity_tiers, [tier(9, 1), tier(8, 2)], "f")
    assert e.code == errors.ERR_INVALID_EQUITY_TIERS.code and "f[1]" in e.message


# --- on a chain -------------------------------------------------------------------------------------------------

def test_twenty_usdc_rests_one_order_of_each_kind(tmp_path):
    r = chain({1: 20 * ONE_USDC})
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [small_bid(1, h), small_bid(2, h), small_bid(3, h, pair=ETH)]),
                   orders_tx(1, 2, [small_bid(4, h, long_term=True), small_bid(5, h, long_term=True)])])
    first, second, eth = actions_of(res.tx_results[0])
    assert first["status"] == "resting"
    assert second["status"] == "rejected" and second["code"] == EQUITY
    assert second["reason"] == ("equity_tier_limit: subaccount 0 has 1 open short-term orders; its total net "
                                "collateral 20000000 quote quantums allows 1 (equity tiers: query clob params)")
    assert eth["code"] == EQUITY  # counted over every pair
    long_ok, long_refused = actions_of(res.tx_results[1])
    assert long_ok["status"] == "resting"  # long-term orders have their own count
    assert long_refused["code"] == EQUITY and "1 open long-term orders" in long_refused["reason"]
    # an IOC never rests: not capped (it finds nothing to fill at $1,000 and is dropped)
    h = nxt(r)
    res = r.block([orders_tx(1, 3, [small_bid(6, h, tif=IOC)])])
    assert statuses(res.tx_results[0]) == ["not_filled"]
    # cancels run first: cancel + place in one tx replaces the resting order
    res = r.block([orders_tx(1, 4, [small_bid(7, h + 1), cancel(1)])])
    assert {a["action_index"]: a["status"] for a in actions_of(res.tx_results[0])} == {"0": "resting",
                                                                                       "1": "canceled"}
    orders = json.loads(r.app.query(f"/clob/orders/{ADDRS[1]}", b"").value)["orders"]
    assert sorted((o["client_id"], o["order_flags"]) for o in orders) == [(4, LONG_TERM), (7, 0)]


def test_just_under_twenty_usdc_rests_nothing_but_may_still_take(tmp_path):
    r = chain({1: 19_999_999, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(4, 1, [place(1, SELL, BTC_STEP, 64_000 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [small_bid(1, h), place(2, BUY, BTC_STEP, 64_000 * ONE_DOLLAR_BTC, tif=IOC,
                                                     height_hint=h)])])
    rest, take = actions_of(res.tx_results[0])
    assert rest["code"] == EQUITY and "total net collateral 19999999 quote quantums allows 0" in rest["reason"]
    assert take["status"] == "filled"


def test_the_tier_follows_total_net_collateral_not_the_quote_balance(tmp_path):
    """Account 3 (100 USDC: tier 5) buys 0.01 BTC at $64,000: quote 100 − 640 − 0.32 fee = −540.32 USDC, the
    position is worth 640 USDC at the oracle, TNC = 99.68 USDC: tier 1 (the quote balance alone would be tier 0)."""
    r = chain({3: 100 * ONE_USDC, 4: 100_000 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(4, 1, [place(1, SELL, 100 * BTC_STEP, 64_000 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                    height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, BUY, 100 * BTC_STEP, 64_000 * ONE_DOLLAR_BTC, tif=IOC,
                                          height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["filled"]
    sub = json.loads(r.app.query(f"/subaccounts/show/{ADDRS[3]}/0", b"").value)
    assert sub["quote_balance_quote_quantums"] == "-540320000"
    h = nxt(r)
    res = r.block([orders_tx(3, 2, [small_bid(2, h), small_bid(3, h)])])
    ok, no = actions_of(res.tx_results[0])
    assert ok["status"] == "resting"
    assert no["reason"] == ("equity_tier_limit: subaccount 0 has 1 open short-term orders; its total net "
                            "collateral 99680000 quote quantums allows 1 (equity tiers: query clob params)")


def test_the_kind_counts_follow_the_book_and_its_journal():
    books = Books()
    owner = bytes(range(20))

    def okey(number: int, pair: int, client_id: int, flags: int) -> bytes:  # app/clob/keys order key, no prefix
        return owner + bytes((number,)) + pair.to_bytes(4, "big") + client_id.to_bytes(4, "big") + bytes((flags,))

    books.add(okey(3, 0, 1, 0), 0, BUY, 5, 1)
    mark = books.mark()
    books.add(okey(3, 2, 9, LONG_TERM), 2, BUY, 5, 2)
    books.add(okey(3, 1, 9, LONG_TERM), 1, SELL, 7, 3)
    books.add(okey(4, 1, 9, LONG_TERM), 1, SELL, 7, 4)
    assert [books.kind_count(owner, n, f) for n, f in ((3, LONG_TERM), (3, 0), (4, LONG_TERM), (4, 0))] == [2, 1, 1, 0]
    books.remove(okey(3, 2, 9, LONG_TERM))
    assert books.kind_count(owner, 3, LONG_TERM) == 1
    books.rollback(mark)
    assert [books.kind_count(owner, n, f) for n, f in ((3, LONG_TERM), (3, 0), (4, LONG_TERM))] == [0, 1, 0]
    books.remove(okey(3, 0, 1, 0))
    assert books.kind_counts == {}


def set_tiers(r, account: int, nonce: int, short, stateful):
    return r.block([msg_tx(account, nonce, [tx_pb2.Msg(set_equity_tiers=tx_pb2.MsgSetEquityTiers(
        authority=ADDRS[account], short_term_order_equity_tiers=short, stateful_order_equity_tiers=stateful))])])


def test_the_authority_replaces_the_tiers_and_only_valid_ones():
    r = chain({1: 20 * ONE_USDC})
    res = set_tiers(r, 0, 1, [tier(0, 2)], [])
    assert res.tx_results[0].code == 0
    assert [dict(e.attributes) for e in res.tx_results[0].events if e.type == "equity_tiers"] == [
        {"short_term_tiers": "1", "stateful_tiers": "0"}]
    params = json.loads(r.app.query("/clob/params", b"").value)
    assert params["short_term_order_equity_tiers"] == [{"usd_tnc_required_quote_quantums": "0", "limit": 2}]
    assert params["stateful_order_equity_tiers"] == [] and params["max_open_orders_per_subaccount"] == 200
    assert len(params["fee_tiers"]) == 9
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [small_bid(1, h), small_bid(2, h), small_bid(3, h)])])
    assert statuses(res.tx_results[0]) == ["resting", "resting", "rejected"]  # now 2, whatever the TNC
    assert actions_of(res.tx_results[0])[2]["reason"].endswith("allows 2 (equity tiers: query clob params)")
    assert set_tiers(r, 1, 2, [tier(0, 9)], []).tx_results[0].code == errors.ERR_UNAUTHORIZED.code
    res = set_tiers(r, 0, 2, [tier(0, 9)], [tier(5, 1), tier(5, 2)])
    assert res.tx_results[0].code == errors.ERR_INVALID_EQUITY_TIERS.code
    assert "stateful_order_equity_tiers[1]: usd_tnc_required_quote_quantums 5 must be above" in res.tx_results[0].log
    res = set_tiers(r, 0, 3, [tier(0, 10_000_001)], [])
    assert "short_term_order_equity_tiers[0]: limit 10000001 is above 10000000 orders" in res.tx_results[0].log
    assert json.loads(r.app.query("/clob/params", b"").value)["short_term_order_equity_tiers"][0]["limit"] == 2


def test_genesis_refuses_invalid_equity_tiers():
    state = app_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, "stateful_order_equity_tiers": [
        {"usd_tnc_required_quote_quantums": "0", "limit": 10_000_001}]}
    r = MemReplica()
    with pytest.raises(Exception, match=r"stateful_order_equity_tiers\[0\]: limit 10000001"):
        r.init_chain(state)


def test_the_subaccount_query_shows_open_orders_against_the_tier():
    """Account 1 (100 USDC: tier 5 of each kind) rests 2 short-term bids and 1 long-term bid; account 2 (20 USDC)
    nothing. After the short-term list is emptied, short-term reads 'no cap'."""
    from node.cli.subaccounts import subaccount_text

    r = chain({1: 100 * ONE_USDC, 2: 20 * ONE_USDC})
    h = nxt(r)
    r.block([orders_tx(1, 1, [small_bid(1, h), small_bid(2, h), small_bid(3, h, long_term=True)])])

    def show(account: int) -> dict:
        return json.loads(r.app.query(f"/subaccounts/show/{ADDRS[account]}/0", b"").value)

    assert show(1)["open_orders"] == {"short_term": {"open": 2, "allowed": 5}, "long_term": {"open": 1, "allowed": 5}}
    assert show(2)["open_orders"] == {"short_term": {"open": 0, "allowed": 1}, "long_term": {"open": 0, "allowed": 1}}
    assert set_tiers(r, 0, 1, [], STATEFUL).tx_results[0].code == 0
    res = show(1)
    assert res["open_orders"]["short_term"] == {"open": 2, "allowed": None}
    assert subaccount_text(res).splitlines()[-1] == ("  open orders (equity tier)      short-term 2 of no cap, "
                                                     "long-term 1 of 5")
