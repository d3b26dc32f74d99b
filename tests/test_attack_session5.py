"""Attacks on the exchange core, session 5: rollback of fill-or-kill attempts (fees, volume, open interest), fee
tiers at their boundaries, self-trade prevention across subaccounts, market-order limits, reduce-only clamps,
isolated-market constraints on resting orders, withdrawal / transfer margin edges, the block's phase order,
cancel-replace and batch cancel edges.

Found and fixed: (1) a reduce-only GTC taker whose fill is clamped to its position rests its remainder across
the maker it clamped against (crossed book; the flat reduce-only bid then blocks post-only asks); (2) USDC sent to the
deterministic address of a future isolated pool before the perpetual becomes isolated stays there: a flat isolated
market with a funded pool, Σ pools != Σ claims, and the exported state is refused by InitChain.

Markets as in tests/exchange_helpers.py: BTC-USD (perpetual 0, cross) oracle $64,000 (value = size × price ÷ 1e9 quote
quantums for size in 1e-10 BTC and price in 1e-5 USD), tick $1 = 100,000 subticks, step 0.0001 BTC = 1e6 base
quantums; a fill's quote = subticks × quantums ÷ 1e9. IM 5 %, MF 60 % (MM 3 %). SOL-USD (perpetual 2, isolated) $150,
1 SOL = 1e7 base quantums, tick $0.01 = 1e6 subticks, step 0.1 SOL. Accounts 1..4 hold 100,000 USDC in subaccount 0.
Default fee tier 1: maker 100 ppm, taker 500 ppm. Every number in a docstring is worked by hand.
"""

from __future__ import annotations

import pytest

from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.lib.address import decode_address_or_none, encode_address
from app.perpetuals import keeper as pk
from app.store import BranchStore
from app.subaccounts import keeper as sk
from tests.attack_helpers import (
    ONE_SOL,
    SOL_PRICE,
    app_state,
    batch_cancel,
    cancel_replace,
    check_global_money,
    pool_breakdown,
    statuses,
    transfer_msg,
    withdraw_msg,
)
from tests.exchange_helpers import (
    BTC,
    BUY,
    FOK,
    IOC,
    ONE_BTC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    SOL,
    actions_of,
    book,
    cancel,
    fills_of,
    msg_tx,
    orders_tx,
    place,
    subaccount,
)
from tests.helpers import ADDRS, ONE_USDC
from tests.mutation_helpers import mem_exchange

USD = ONE_USDC
A = [decode_address_or_none(a) for a in ADDRS]
P64K = 64_000 * ONE_DOLLAR_BTC
TENTH = ONE_BTC // 10  # 0.1 BTC: 6,400 USDC at $64,000
D = ONE_DOLLAR_BTC


def nxt(r) -> int:
    return r.app.info()[0] + 1


def events_of(result, kind: str) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == kind]


def quote(r, account: int, number: int = 0) -> int:
    return int(subaccount(r, account, number)["quote_balance_quote_quantums"])


def size(r, account: int, number: int = 0, pid: int = BTC) -> int:
    for p in subaccount(r, account, number)["positions"]:
        if int(p["perpetual_id"]) == pid:
            return int(p["size_base_quantums"])
    return 0


def oi(r, pid: int = BTC) -> int:
    return pk.get_perpetual(BranchStore(r.store), pid).open_interest_base_quantums


def collector(r) -> int:
    return r.balance_of(FEE_COLLECTOR_ADDRESS)


def exact_pools(r) -> None:
    check_global_money(r)
    for pool, (held, owed) in pool_breakdown(r).items():
        assert held == owed, f"pool {encode_address(pool)} holds {held}, its subaccounts own {owed}"


def asks(r, market: str = "BTC-USD") -> list[tuple[int, int]]:
    return [(int(level["subticks"]), int(level["quantums"])) for level in book(r, market)["asks"]]


def bids(r, market: str = "BTC-USD") -> list[tuple[int, int]]:
    return [(int(level["subticks"]), int(level["quantums"])) for level in book(r, market)["bids"]]


def with_deposit(state: dict, account: int, number: int, amount: int) -> dict:
    state["subaccounts"]["deposits"].append({"owner": ADDRS[account], "number": number,
                                             "amount_quote_quantums": str(amount)})
    return state


# =====================================================================================================================
# A fill-or-kill that cannot fill completely leaves no trace: balances, book, open interest, fees, 30-day volume
# =====================================================================================================================

def test_a_killed_fok_leaves_no_fee_no_volume_and_no_open_interest():
    """Fee tiers: tier "1" maker 100 / taker 500 ppm; tier "2" needs 1 quote quantum of 30-day volume, maker 0 /
    taker 0. Block 1: account 2 asks 0.1 BTC at $64,000, account 3 asks 0.1 BTC at $64,001 (post-only); account 1
    sends a FOK buy of 0.3 BTC up to $64,001: only 0.2 BTC is offered, so the attempt (two fills) is rolled back:
    nobody's quote, position, open interest or the fee collector moves, and both asks are still on the book.
    Block 2: account 1 buys 0.1 BTC IOC at $64,000 from account 2: if the killed attempt had counted any volume,
    account 1 would now be in tier "2" (taker 0); it must still pay tier "1": ⌈6,400e6 × 500 ÷ 1e6⌉ = 3,200,000,
    and account 2 (maker) ⌈6,400e6 × 100 ÷ 1e6⌉ = 640,000."""
    state = app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": 100, "taker_fee_ppm": 500},
                                 {"name": "2", "absolute_volume_requirement_quote_quantums": "1",
                                  "maker_fee_ppm": 0, "taker_fee_ppm": 0}])
    r = mem_exchange(state)
    c0 = collector(r)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, 3 * TENTH, P64K + D, tif=FOK, height_hint=h)])])
    assert statuses(res.tx_results[2]) == ["rejected"]
    assert fills_of(res.tx_results[2]) == []
    assert [quote(r, a) for a in (1, 2, 3)] == [100_000 * USD] * 3
    assert [size(r, a) for a in (1, 2, 3)] == [0, 0, 0]
    assert oi(r) == 0 and collector(r) == c0
    assert asks(r) == [(P64K, TENTH), (P64K + D, TENTH)]
    exact_pools(r)
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [place(2, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    (fill,) = fills_of(res.tx_results[0])
    assert (fill["taker_fee_quote_quantums"], fill["maker_fee_quote_quantums"]) == ("3200000", "640000")
    assert (fill["taker_fee_tier"], fill["maker_fee_tier"]) == ("1", "1")  # the tier's name, as query clob params
    assert quote(r, 1) == 100_000 * USD - 6_400 * USD - 3_200_000
    assert quote(r, 2) == 100_000 * USD + 6_400 * USD - 640_000
    assert collector(r) - c0 == 3_840_000
    exact_pools(r)


def test_fok_that_fills_exactly_across_two_levels_is_kept():
    """The same book; a FOK buy of exactly 0.2 BTC up to $64,001 fills both asks: 6,400 + 6,400.1 = 12,800.1 USDC;
    taker fees ⌈6,400e6 × 5e-4⌉ + ⌈6,400.1e6 × 5e-4⌉ = 3,200,000 + 3,200,050; makers pay 640,000 and 640,010.
    Open interest 0.2 BTC."""
    r = mem_exchange(app_state())
    c0 = collector(r)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, 2 * TENTH, P64K + D, tif=FOK, height_hint=h)])])
    assert statuses(res.tx_results[2]) == ["filled"]
    assert quote(r, 1) == 100_000 * USD - 12_800_100_000 - 3_200_000 - 3_200_050
    assert quote(r, 2) == 100_000 * USD + 6_400 * USD - 640_000
    assert quote(r, 3) == 100_000 * USD + 6_400_100_000 - 640_010
    assert oi(r) == 2 * TENTH and size(r, 1) == 2 * TENTH
    assert collector(r) - c0 == 3_200_000 + 3_200_050 + 640_000 + 640_010
    assert asks(r) == []
    exact_pools(r)


# =====================================================================================================================
# Fee tiers: the volume of a block counts from the next block on, exactly at the requirement
# =====================================================================================================================

def test_fee_tier_reached_exactly_applies_from_the_next_block_only():
    """Tiers: "1" maker 100 / taker 500; "2" from 6,400 USDC of 30-day volume: maker 0 / taker 300. Block 1: two
    trades of 0.1 BTC at $64,000 between account 1 (taker) and account 2 (maker): both fills of block 1 pay tier
    "1" (volume counts at the end of the order phase): taker 3,200,000 each, maker 640,000 each. Block 2: another
    trade: both accounts now have 12,800 USDC >= 6,400 of volume: taker ⌈6,400e6 × 300e-6⌉ = 1,920,000, maker 0.
    Account 3 (no volume) trading with account 4 in block 2 still pays tier "1"."""
    state = app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": 100, "taker_fee_ppm": 500},
                                 {"name": "2", "absolute_volume_requirement_quote_quantums": str(6_400 * USD),
                                  "maker_fee_ppm": 0, "taker_fee_ppm": 300}])
    r = mem_exchange(state)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h),
                                    place(2, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, TENTH, P64K, tif=IOC, height_hint=h),
                                    place(2, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    fees = [(f["taker_fee_quote_quantums"], f["maker_fee_quote_quantums"]) for f in fills_of(res.tx_results[1])]
    assert fees == [("3200000", "640000")] * 2
    h = nxt(r)
    res = r.block([orders_tx(2, 2, [place(3, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(4, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 2, [place(3, BUY, TENTH, P64K, tif=IOC, height_hint=h)]),
                   orders_tx(3, 1, [place(1, BUY, TENTH, P64K + D, tif=IOC, height_hint=h)])])
    (f1,) = fills_of(res.tx_results[2])
    (f3,) = fills_of(res.tx_results[3])
    assert (f1["taker_fee_quote_quantums"], f1["maker_fee_quote_quantums"]) == ("1920000", "0")
    # 6,400.1 USDC: taker ⌈3,200,050⌉, maker ⌈640,010⌉
    assert (f3["taker_fee_quote_quantums"], f3["maker_fee_quote_quantums"]) == ("3200050", "640010")
    assert quote(r, 1) == 100_000 * USD - 3 * 6_400 * USD - 2 * 3_200_000 - 1_920_000
    assert quote(r, 2) == 100_000 * USD + 3 * 6_400 * USD - 2 * 640_000
    exact_pools(r)


# =====================================================================================================================
# Self-trade prevention across an owner's subaccounts
# =====================================================================================================================

def test_self_trade_removes_the_owners_maker_in_another_subaccount_only():
    """Account 1 subaccount 1 (10,000 USDC) asks 0.1 BTC at $64,000; account 2 asks 0.1 BTC at $64,001 (both
    post-only). Account 1 subaccount 0 buys 0.1 BTC IOC up to $64,001: its own ask is removed (self_trade, nothing
    moves for subaccount 1), the buy fills against account 2 at $64,001: quote 6,400.1 USDC, taker fee
    ⌈6,400,100,000 × 5e-4⌉ = 3,200,050, maker fee 640,010."""
    r = mem_exchange(with_deposit(app_state(), 1, 1, 10_000 * USD))
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, SELL, TENTH, P64K, number=1, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 2, [place(2, BUY, TENTH, P64K + D, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[2]) == ["filled"]
    removed = events_of(res.tx_results[2], "order_removed")
    assert [(e["owner"], e["number"], e["reason"]) for e in removed] == [(ADDRS[1], "1", "self_trade")]
    (fill,) = fills_of(res.tx_results[2])
    assert (fill["maker"], fill["subticks"], fill["quote_quantums"]) == (ADDRS[2], str(P64K + D), "6400100000")
    assert quote(r, 1, 1) == 10_000 * USD and size(r, 1, 1) == 0
    assert quote(r, 1) == 100_000 * USD - 6_400_100_000 - 3_200_050
    assert quote(r, 2) == 100_000 * USD + 6_400_100_000 - 640_010
    assert asks(r) == []
    exact_pools(r)


# =====================================================================================================================
# Market orders: the protective limit from the oracle, aligned to the tick toward the oracle
# =====================================================================================================================

@pytest.mark.parametrize("side, slippage, inside, outside", [
    # buy 1 %: ⌊6.4e9 × 1.01⌋ = 6,464,000,000 (on a tick): $64,640 fills, $64,641 does not
    (BUY, 10_000, 64_640, 64_641),
    # sell 1 %: ⌈6.4e9 × 0.99⌉ = 6,336,000,000: $63,360 fills, $63,359 does not
    (SELL, 10_000, 63_360, 63_359),
    # buy 123 ppm: ⌊6.4e9 × 1.000123⌋ = 6,400,787,200 -> down to the tick: 6,400,700,000 ($64,007)
    (BUY, 123, 64_007, 64_008),
    # sell 123 ppm: ⌈6.4e9 × 0.999877⌉ = 6,399,212,800 -> up to the tick: 6,399,300,000 ($63,993)
    (SELL, 123, 63_993, 63_992),
])
def test_market_order_limit_is_the_slipped_oracle_rounded_toward_it(side, slippage, inside, outside):
    """Account 2 quotes 0.1 BTC at ``inside`` and account 3 0.1 BTC at ``outside`` (post-only, opposite side);
    account 1's market order of 0.2 BTC fills exactly the 0.1 BTC at ``inside`` (partially_filled, the rest is
    dropped); quote = inside × 0.1 USDC; taker fee ⌈quote × 5e-4⌉."""
    maker_side = SELL if side == BUY else BUY
    r = mem_exchange(app_state())
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, maker_side, TENTH, inside * D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, maker_side, TENTH, outside * D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, side, 2 * TENTH, 0, slippage_ppm=slippage, height_hint=h)])])
    assert statuses(res.tx_results[2]) == ["partially_filled"]
    (fill,) = fills_of(res.tx_results[2])
    q = inside * 100_000  # inside USD × 0.1 BTC in quote quantums
    fee = -(-q * 500 // 1_000_000)
    assert (fill["subticks"], fill["quote_quantums"], fill["taker_fee_quote_quantums"]) == \
        (str(inside * D), str(q), str(fee))
    assert quote(r, 1) == 100_000 * USD + (q if side == SELL else -q) - fee
    assert size(r, 1) == (TENTH if side == BUY else -TENTH)
    exact_pools(r)


# =====================================================================================================================
# Reduce-only takers never flip
# =====================================================================================================================

def test_reduce_only_taker_is_clamped_to_the_position_and_never_flips():
    """Block 1: account 1 buys 0.1 BTC from account 2 at $64,000 (taker fee 3.2 USDC). Block 2: account 3 bids 0.5
    BTC at $64,000 (post-only); account 1 sends a reduce-only IOC sell of 0.3 BTC: it fills 0.1 BTC only (its
    whole position), then stops: position 0, quote 100,000 - 6,400 - 3.2 + 6,400 - 3.2 = 99,993.6 USDC; account 3
    long 0.1 BTC with 0.4 BTC still bid; open interest 0.1 BTC (account 3 long, account 2 short)."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    assert size(r, 1) == TENTH
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, BUY, 5 * TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 2, [place(2, SELL, 3 * TENTH, P64K, tif=IOC, reduce_only=True, height_hint=h)])])
    (a,) = actions_of(res.tx_results[1])
    assert a["status"] == "partially_filled" and a["filled_quantums"] == str(TENTH)
    assert size(r, 1) == 0 and quote(r, 1) == 99_993_600_000
    assert size(r, 3) == TENTH and bids(r) == [(P64K, 4 * TENTH)]
    assert oi(r) == TENTH
    exact_pools(r)


def test_reduce_only_gtc_remainder_never_rests_beyond_the_position():
    """Account 1 long 0.1 BTC (as above). It places a reduce-only GTC sell of 0.3 BTC at $64,000 with no bid: the
    whole order rests (reduce-only is clamped at fills). Account 3 then buys 0.3 BTC IOC at $64,000: account 1's
    ask fills 0.1 BTC (its position), then is removed (nothing left to reduce), and account 3's remaining 0.2 BTC is
    not filled: account 1 flat, account 3 long 0.1, no ask left; quote of account 1 = 100,000 - 6,400 - 3.2 + 6,400
    - 0.64 = 99,996.16 USDC."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [place(2, SELL, 3 * TENTH, P64K, reduce_only=True, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting"]
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, BUY, 3 * TENTH, P64K, tif=IOC, height_hint=h)])])
    (a,) = actions_of(res.tx_results[0])
    assert a["status"] == "partially_filled" and a["filled_quantums"] == str(TENTH)
    assert size(r, 1) == 0 and size(r, 3) == TENTH
    assert quote(r, 1) == 99_996_160_000
    assert asks(r) == []
    exact_pools(r)


# =====================================================================================================================
# Isolated markets: a subaccount's resting cross order cannot fill once it holds an isolated position
# =====================================================================================================================

def test_resting_cross_order_of_a_subaccount_that_just_opened_an_isolated_position_is_removed():
    """Account 1 subaccount 0 (flat) bids 10 SOL at $150 and 0.1 BTC at $64,000 (post-only, both accepted: it holds
    nothing). Account 2 sells 10 SOL IOC: account 1 opens long 10 SOL (isolated). Account 3 then sells 0.1 BTC IOC
    into account 1's BTC bid: the fill would give account 1 a cross position next to its isolated one, so the bid
    is removed and account 3 is not filled. SOL pool: both openers' 100,000 USDC move in, then the fees: taker
    ⌈1,500e6 × 5e-4⌉ = 750,000 and maker 150,000 -> 199,999.1 USDC; account 1 quote 100,000 - 1,500 - 0.15."""
    r = mem_exchange(app_state())
    h = nxt(r)
    ten = 10 * ONE_SOL
    res = r.block([orders_tx(1, 1, [place(1, BUY, ten, SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h),
                                    place(2, BUY, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(2, 1, [place(1, SELL, ten, SOL_PRICE, pair=SOL, tif=IOC, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting", "resting"]
    assert statuses(res.tx_results[1]) == ["filled"]
    assert statuses(res.tx_results[2]) == ["not_filled"]
    removed = events_of(res.tx_results[2], "order_removed")
    assert len(removed) == 1 and removed[0]["owner"] == ADDRS[1] and removed[0]["client_id"] == "2"
    assert size(r, 1, pid=SOL) == ten and size(r, 1) == 0 and size(r, 3) == 0
    assert quote(r, 1) == 100_000 * USD - 1_500 * USD - 150_000
    assert r.balance_of(sk.isolated_pool(SOL)) == 199_999_100_000
    assert bids(r) == []
    exact_pools(r)


# =====================================================================================================================
# Withdrawals and transfers stop exactly at initial margin
# =====================================================================================================================

@pytest.mark.parametrize("kind", ["withdraw", "transfer"])
@pytest.mark.parametrize("extra, ok", [(0, True), (1, False)], ids=["exactly IMR", "one quantum below"])
def test_outflow_stops_exactly_at_initial_margin(kind, extra, ok):
    """Account 1 buys 1 BTC at $64,000 from account 2 (taker fee ⌈64,000e6 × 5e-4⌉ = 32 USDC): quote 100,000 -
    64,000 - 32 = 35,968 USDC, NC = 35,968 + 64,000 = 99,968 USDC, IMR = 5 % × 64,000 = 3,200 USDC. It may move out
    96,768 USDC (NC = IMR afterwards), not one quantum more."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, ONE_BTC, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, ONE_BTC, P64K, tif=IOC, height_hint=h)])])
    assert quote(r, 1) == 35_968 * USD
    amount = 96_768 * USD + extra
    msg = withdraw_msg(1, amount) if kind == "withdraw" else transfer_msg(1, 3, amount)
    res = r.block([msg_tx(1, 2, [msg])])
    assert (res.tx_results[0].code == 0) == ok, res.tx_results[0].log
    assert quote(r, 1) == (35_968 * USD - amount if ok else 35_968 * USD)
    if ok:
        s = subaccount(r, 1)
        assert int(s["total_net_collateral_quote_quantums"]) == int(s["initial_margin_requirement_quote_quantums"]) == 3_200 * USD
    exact_pools(r)


# =====================================================================================================================
# Phase order: cancels first, post-only before takers, whatever the block order
# =====================================================================================================================

def test_takers_first_in_the_block_still_see_cancels_and_post_only_quotes_first():
    """Block 1: account 2 rests an ask of 0.1 BTC at $64,000 (GTC). Block 2, in this block order: account 1's IOC
    buy of 0.1 BTC up to $64,001, then account 2's cancel of its ask, then account 3's post-only ask of 0.1 BTC at
    $64,001. Phases: the cancel runs first, the post-only ask second, the IOC last: account 1 buys from account 3
    at $64,001 (6,400.1 USDC), account 2 never trades."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, TENTH, P64K + D, tif=IOC, height_hint=h)]),
                   orders_tx(2, 2, [cancel(1)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)])])
    assert statuses(res.tx_results[1]) == ["canceled"]
    assert statuses(res.tx_results[2]) == ["resting"]
    assert statuses(res.tx_results[0]) == ["filled"]
    (fill,) = fills_of(res.tx_results[0])
    assert fill["maker"] == ADDRS[3] and fill["subticks"] == str(P64K + D)
    assert quote(r, 2) == 100_000 * USD and size(r, 2) == 0
    exact_pools(r)


# =====================================================================================================================
# Cancel-replace and batch cancel
# =====================================================================================================================

def test_cancel_replace_to_a_crossing_post_only_in_the_same_block_as_a_taker():
    """Block 1: account 2 rests a post-only ask of 0.1 BTC at $64,010. Block 2: account 1 sends an IOC buy of 0.1
    BTC up to $64,005; account 2 cancel-replaces its ask with a post-only ask at $64,005. Phase order: cancel,
    then the post-only replacement (the book is empty: it rests), then the IOC fills it at $64,005: quote
    6,400.5 USDC, maker fee ⌈640,050⌉, taker ⌈3,200,250⌉."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + 10 * D, tif=POST_ONLY, height_hint=h)])])
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, TENTH, P64K + 5 * D, tif=IOC, height_hint=h)]),
                   orders_tx(2, 2, [cancel_replace(1, place(2, SELL, TENTH, P64K + 5 * D, tif=POST_ONLY,
                                                            height_hint=h))])])
    assert statuses(res.tx_results[0]) == ["filled"]
    assert statuses(res.tx_results[1]) == ["canceled", "resting"]
    assert quote(r, 1) == 100_000 * USD - 6_400_500_000 - 3_200_250
    assert quote(r, 2) == 100_000 * USD + 6_400_500_000 - 640_050
    assert asks(r) == []
    exact_pools(r)


def test_cancel_replace_whose_cancel_misses_places_nothing_even_if_valid():
    """Account 2 cancel-replaces client id 7 (never placed) with a valid post-only ask: the cancel half is
    rejected, the placement is skipped: no order, nothing changes."""
    r = mem_exchange(app_state())
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [cancel_replace(7, place(8, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h))])])
    assert statuses(res.tx_results[0]) == ["rejected", "skipped"]
    assert asks(r) == []
    exact_pools(r)


def test_batch_cancel_by_ids_touches_only_the_named_subaccount_pair_and_flags():
    """Account 1 rests short-term bids with client ids 1, 2 on BTC in subaccount 0, id 1 on BTC in subaccount 1,
    id 1 on ETH in subaccount 0 and a long-term bid with id 1 on BTC in subaccount 0. A batch cancel of
    (subaccount 0, BTC, short-term, ids [1, 99]) removes exactly one order; the other four stay."""
    from tests.attack_helpers import ETH_PRICE

    from tests.helpers import BLOCK_INTERVAL_NS, GENESIS_TIME_NS

    r = mem_exchange(with_deposit(app_state(), 1, 1, 10_000 * USD))
    h = nxt(r)
    gtbt = GENESIS_TIME_NS + (h + 100) * BLOCK_INTERVAL_NS
    res = r.block([orders_tx(1, 1, [place(1, BUY, TENTH, P64K - D, height_hint=h),
                                    place(2, BUY, TENTH, P64K - 2 * D, height_hint=h),
                                    place(1, BUY, TENTH, P64K - 3 * D, number=1, height_hint=h),
                                    place(1, BUY, 1_000_000, ETH_PRICE - 100_000, pair=1, height_hint=h),
                                    place(1, BUY, TENTH, P64K - 4 * D, gtbt_ns=gtbt, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting"] * 5
    res = r.block([orders_tx(1, 2, [batch_cancel(client_ids=[1, 99])])])
    (a,) = actions_of(res.tx_results[0])
    assert (a["status"], a["canceled"]) == ("canceled", "1")
    assert bids(r) == [(P64K - 2 * D, TENTH), (P64K - 3 * D, TENTH), (P64K - 4 * D, TENTH)]
    assert len(book(r, "ETH-USD")["bids"]) == 1
    exact_pools(r)


# =====================================================================================================================
# Open-interest-scaled initial margin at a fill (isolated SOL: IM 5 %, caps 500,000 / 1,000,000 USDC)
# =====================================================================================================================

@pytest.mark.parametrize("short_by, filled", [(0, True), (1, False)], ids=["exactly enough", "one quantum short"])
def test_oi_scaled_initial_margin_uses_the_open_interest_after_the_fill(short_by, filled):
    """Account 2 (1,000,000 USDC) asks 5,000 SOL at $150 (post-only; its placement check sees OI 0: IMF 5 %).
    Account 1 holds X USDC and buys 5,000 SOL IOC: notional 750,000 USDC; after the fill OI = 5,000 SOL = 750,000
    USDC: IMF = 50,000 + ⌊950,000 × 250,000 ÷ 500,000⌋ = 525,000 ppm; IMR = 750,000 × 52.5 % = 393,750 USDC.
    Taker fee ⌈750,000e6 × 5e-4⌉ = 375 USDC: NC = X - 375 USDC. X = 394,125 USDC fills exactly; one quantum less
    fails the taker's check: nothing fills, nothing moves. (Account 1's own placement check sees OI 0: IMF 5 %,
    maker fee 75 USDC: it passes either way.)"""
    x = 394_125 * USD - short_by
    state = app_state(depositors=(3, 4))
    state["subaccounts"]["deposits"] += [{"owner": ADDRS[1], "number": 0, "amount_quote_quantums": str(x)},
                                         {"owner": ADDRS[2], "number": 0, "amount_quote_quantums": str(1_000_000 * USD)}]
    for b in state["bank"]["balances"]:
        if b["address"] == ADDRS[2]:
            b["amount_quote_quantums"] = str(int(b["amount_quote_quantums"]) + 1_000_000 * USD)
    r = mem_exchange(state)
    h = nxt(r)
    n = 5_000 * ONE_SOL
    res = r.block([orders_tx(2, 1, [place(1, SELL, n, SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, n, SOL_PRICE, pair=SOL, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting"]
    if filled:
        assert statuses(res.tx_results[1]) == ["filled"]
        s = subaccount(r, 1)
        assert int(s["initial_margin_requirement_quote_quantums"]) == 393_750 * USD
        assert int(s["total_net_collateral_quote_quantums"]) == 393_750 * USD
        assert oi(r, SOL) == n
    else:
        assert statuses(res.tx_results[1]) == ["not_filled"]
        assert quote(r, 1) == x and oi(r, SOL) == 0
        assert asks(r, "SOL-USD") == [(SOL_PRICE, n)]
    exact_pools(r)


# =====================================================================================================================
# Rebates over a multi-level sweep (cross): the collector nets taker fees minus rebates, per fill rounding
# =====================================================================================================================

def test_rebates_over_a_three_level_sweep_round_per_fill():
    """Fee tier: maker -50 ppm, taker 250 ppm. Accounts 2, 3, 4 ask 0.1 BTC at $64,000 / $64,001 / $64,002; account
    1 buys 0.3 BTC IOC up to $64,002. Quotes 6,400,000,000 / 6,400,100,000 / 6,400,200,000; taker fees ⌈q × 250e-6⌉
    = 1,600,000 / 1,600,025 / 1,600,050; rebates toward zero: -320,000 / -320,005 / -320,010. Collector +4,800,075
    - 960,015 = 3,840,060."""
    r = mem_exchange(app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": -50, "taker_fee_ppm": 250}]))
    c0 = collector(r)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(4, 1, [place(1, SELL, TENTH, P64K + 2 * D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, 3 * TENTH, P64K + 2 * D, tif=IOC, height_hint=h)])])
    fees = [(f["taker_fee_quote_quantums"], f["maker_fee_quote_quantums"]) for f in fills_of(res.tx_results[3])]
    assert fees == [("1600000", "-320000"), ("1600025", "-320005"), ("1600050", "-320010")]
    assert collector(r) - c0 == 3_840_060
    assert quote(r, 1) == 100_000 * USD - 19_200_300_000 - 4_800_075
    assert [quote(r, a) for a in (2, 3, 4)] == [100_000 * USD + 6_400_000_000 + 320_000,
                                                100_000 * USD + 6_400_100_000 + 320_005,
                                                100_000 * USD + 6_400_200_000 + 320_010]
    exact_pools(r)


# =====================================================================================================================
# Transfers out of an isolated subaccount: exactly to initial margin, pools exact
# =====================================================================================================================

@pytest.mark.parametrize("extra, ok", [(0, True), (1, False)], ids=["exactly IMR", "one quantum below"])
def test_transfer_out_of_an_isolated_subaccount_to_its_own_cross_subaccount(extra, ok):
    """Account 2 asks 10 SOL at $150 (post-only), account 1 buys it (IOC): account 1 quote 100,000 - 1,500 - 0.75 =
    98,499.25 USDC, NC = 99,999.25, IMR = 5 % × 1,500 = 75 USDC (OI 1,500 USDC, below the lower cap). SOL pool:
    200,000 - 0.75 - 0.15 = 199,999.10 USDC. Account 1 moves 99,924.25 USDC to its subaccount 1 (cross): allowed,
    NC = IMR = 75 afterwards; SOL pool 100,074.85 = -1,425 + 101,499.85 (accounts 1 and 2). One quantum more is
    refused and nothing moves."""
    r = mem_exchange(app_state())
    h = nxt(r)
    ten = 10 * ONE_SOL
    r.block([orders_tx(2, 1, [place(1, SELL, ten, SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, ten, SOL_PRICE, pair=SOL, tif=IOC, height_hint=h)])])
    assert quote(r, 1) == 98_499_250_000
    assert r.balance_of(sk.isolated_pool(SOL)) == 199_999_100_000
    amount = 99_924_250_000 + extra
    res = r.block([msg_tx(1, 2, [transfer_msg(1, 1, amount, 0, 1)])])
    assert (res.tx_results[0].code == 0) == ok, res.tx_results[0].log
    if ok:
        assert quote(r, 1) == -1_425 * USD and quote(r, 1, 1) == amount
        assert r.balance_of(sk.isolated_pool(SOL)) == 100_074_850_000
    else:
        assert quote(r, 1) == 98_499_250_000 and quote(r, 1, 1) == 0
        assert r.balance_of(sk.isolated_pool(SOL)) == 199_999_100_000
    exact_pools(r)


# =====================================================================================================================
# A taker stops when a later fill fails its check (taker fee above the maker fee of the placement check)
# =====================================================================================================================

def test_taker_stops_midway_when_its_taker_fees_break_initial_margin():
    """Account 5 holds 641.28 USDC and places a GTC buy of 0.2 BTC at $64,000: the placement check (full size at
    its price, maker fee 100 ppm) gives NC = 641.28 - 1.28 = 640 >= IMR 640: accepted. Accounts 2 and 3 ask 0.1 BTC
    each at $64,000. Fill 1 (taker fee 3.2): NC = 638.08 >= IMR 320: ok. Fill 2: NC = 634.88 < IMR 640: the taker
    stops; its remaining 0.1 BTC is not rested. Account 5: long 0.1, quote 641.28 - 6,400 - 3.2 = -5,761.92 USDC;
    account 3's ask is still on the book."""
    state = app_state()
    state["subaccounts"]["deposits"].append({"owner": ADDRS[5], "number": 0, "amount_quote_quantums": "641280000"})
    r = mem_exchange(state)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(5, 1, [place(1, BUY, 2 * TENTH, P64K, height_hint=h)])])
    (a,) = actions_of(res.tx_results[2])
    assert a["status"] == "partially_filled" and a["filled_quantums"] == str(TENTH) and "stopped" in a
    assert size(r, 5) == TENTH and quote(r, 5) == -5_761_920_000
    assert asks(r) == [(P64K, TENTH)] and bids(r) == []
    exact_pools(r)


# =====================================================================================================================
# A maker that no longer has the collateral is removed; the taker continues at the same price
# =====================================================================================================================

def test_underfunded_maker_is_removed_and_the_taker_fills_the_next_order_of_the_level():
    """Block 1: account 5 (1,000 USDC) asks 0.1 BTC at $64,000 (placement check: NC 999.36 >= 320), then account 2
    asks 0.1 BTC at $64,000 (later in time). Block 2: account 5 withdraws 900 USDC (no position: allowed). Block 3:
    account 1 buys 0.1 BTC IOC: account 5's fill would leave NC = 100 - 0.64 < IMR 320: its ask is removed and the
    taker fills account 2's ask. Account 5 keeps 100 USDC, no position."""
    state = app_state()
    state["subaccounts"]["deposits"].append({"owner": ADDRS[5], "number": 0, "amount_quote_quantums": str(1_000 * USD)})
    r = mem_exchange(state)
    h = nxt(r)
    r.block([orders_tx(5, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)])])
    res = r.block([msg_tx(5, 2, [withdraw_msg(5, 900 * USD)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["filled"]
    removed = events_of(res.tx_results[0], "order_removed")
    assert [e["owner"] for e in removed] == [ADDRS[5]] and removed[0]["reason"].startswith("collateral")
    (fill,) = fills_of(res.tx_results[0])
    assert fill["maker"] == ADDRS[2]
    assert quote(r, 5) == 100 * USD and size(r, 5) == 0
    assert asks(r) == []
    exact_pools(r)


# =====================================================================================================================
# The same client id short-term and long-term: a cancel names its flags
# =====================================================================================================================

def test_same_client_id_short_and_long_term_are_two_orders():
    """Account 1 rests a short-term bid (id 7, $63,999) and a long-term bid (id 7, $63,998): two orders. A cancel of
    id 7 with flags 64 removes only the long-term one."""
    from tests.helpers import BLOCK_INTERVAL_NS, GENESIS_TIME_NS

    r = mem_exchange(app_state())
    h = nxt(r)
    gtbt = GENESIS_TIME_NS + (h + 100) * BLOCK_INTERVAL_NS
    res = r.block([orders_tx(1, 1, [place(7, BUY, TENTH, P64K - D, height_hint=h),
                                    place(7, BUY, TENTH, P64K - 2 * D, gtbt_ns=gtbt, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting", "resting"]
    res = r.block([orders_tx(1, 2, [cancel(7, flags=64)])])
    assert statuses(res.tx_results[0]) == ["canceled"]
    assert bids(r) == [(P64K - D, TENTH)]
    exact_pools(r)


# =====================================================================================================================
# FOUND: a reduce-only GTC taker clamped to its position rests its remainder across the maker it just hit
# =====================================================================================================================

def test_reduce_only_gtc_taker_does_not_rest_across_the_maker_it_clamped_against():
    """Block 1: account 2 bids 0.1 BTC at $64,000 (post-only), account 1 sells 0.1 BTC IOC: account 1 short 0.1.
    Block 2: account 3 asks 0.3 BTC at $64,000 (post-only); account 1 sends a reduce-only GTC buy of 0.5 BTC at
    $64,001. The fill is clamped to account 1's position: 0.1 BTC at $64,000; account 3 still asks 0.2 BTC at
    $64,000. Account 1 is now flat: nothing is left to reduce, so its remaining 0.4 BTC must not rest (a resting
    reduce-only order with nothing to reduce is removed, docs/exchange.md), and in any case the book must never be
    crossed after an action. Expected: bids [] and asks [($64,000, 0.2 BTC)]. Actual: the 0.4 BTC remainder rests
    at $64,001 above the $64,000 ask (found by a random flow, seed 9: ETH bid 2990.2 over ask 2990.1)."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, BUY, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, SELL, TENTH, P64K, tif=IOC, height_hint=h)])])
    assert size(r, 1) == -TENTH
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, SELL, 3 * TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 2, [place(2, BUY, 5 * TENTH, P64K + D, reduce_only=True, height_hint=h)])])
    (a,) = actions_of(res.tx_results[1])
    assert (a["status"], a["filled_quantums"], a["remaining_quantums"], a["stopped"]) == (
        "partially_filled", str(TENTH), str(4 * TENTH), "reduce_only_nothing_to_reduce")
    assert size(r, 1) == 0 and size(r, 3) == -TENTH
    exact_pools(r)
    assert asks(r) == [(P64K, 2 * TENTH)]
    assert bids(r) == []  # before the fix: [(P64K + D, 4 * TENTH)]: bid $64,001 >= ask $64,000


# =====================================================================================================================
# Expiry boundaries: good_til_block < height, good_til_block_time <= block time, before any taker of the block
# =====================================================================================================================

def test_expiry_boundaries_short_and_long_term():
    """Block h: account 2 rests asks of 0.1 BTC: id 1 at $64,000 with good_til_block h (valid in block h only),
    id 2 at $64,001 long-term with good_til_block_time = time of block h+1 (expires in block h+1), id 3 at $64,002
    long-term one nanosecond later (still valid in block h+1). Block h+1: account 1 buys 0.3 BTC IOC up to $64,002:
    ids 1 and 2 left the book first (order_removed{expired} block events), so it fills 0.1 BTC from id 3 only."""
    from tests.helpers import BLOCK_INTERVAL_NS, GENESIS_TIME_NS

    r = mem_exchange(app_state())
    h = nxt(r)
    t1 = GENESIS_TIME_NS + (h + 1) * BLOCK_INTERVAL_NS
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, gtb=h, tif=POST_ONLY, height_hint=h),
                                    place(2, SELL, TENTH, P64K + D, gtbt_ns=t1, tif=POST_ONLY, height_hint=h),
                                    place(3, SELL, TENTH, P64K + 2 * D, gtbt_ns=t1 + 1, tif=POST_ONLY,
                                          height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting"] * 3
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, 3 * TENTH, P64K + 2 * D, tif=IOC, height_hint=h)])])
    expired = sorted(int(dict(e.attributes)["client_id"]) for e in res.events
                     if e.type == "order_removed" and dict(e.attributes)["reason"] == "expired")
    assert expired == [1, 2]
    (fill,) = fills_of(res.tx_results[0])
    assert (fill["maker_client_id"], fill["quantums"]) == ("3", str(TENTH))
    assert asks(r) == []
    exact_pools(r)


def test_a_rejected_action_takes_no_placement_sequence_and_keeps_time_priority():
    """One tx of account 2: ask A (id 1) at $64,000, an off-tick ask (rejected), ask B (id 3) at $64,000; then
    account 3 asks C at $64,000 in a later tx. Account 1 buys 0.1 BTC, then 0.1, then 0.1 (three IOCs of one tx):
    the fills follow A, B, C (time priority); the rejected action left nothing."""
    r = mem_exchange(app_state())
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h),
                                    place(2, SELL, TENTH, P64K + 1, tif=POST_ONLY, height_hint=h),
                                    place(3, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting", "rejected", "resting"]
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(i, BUY, TENTH, P64K, tif=IOC, height_hint=h) for i in (1, 2, 3)])])
    assert [(f["maker"], f["maker_client_id"]) for f in fills_of(res.tx_results[0])] == \
        [(ADDRS[2], "1"), (ADDRS[2], "3"), (ADDRS[3], "1")]
    exact_pools(r)


# =====================================================================================================================
# A killed FOK restores the makers it removed (self-trade, collateral) in state and in the in-memory book
# =====================================================================================================================

def test_a_killed_fok_restores_removed_makers_with_their_time_priority():
    """Block 1 (in this order): account 1 subaccount 1 asks 0.1 BTC at $64,000 (A), account 5 (1,000 USDC) asks 0.1
    BTC at $64,000 (B), account 2 asks 0.1 BTC at $64,001 (C), all post-only. Block 2: account 5 withdraws 900 USDC
    (B can no longer fill: NC 100 - 0.64 < IMR 320). Block 3: account 1 subaccount 0 sends a FOK buy of 0.3 BTC up to
    $64,001: A is removed (self-trade), B is removed (collateral), C fills 0.1: only 0.1 of 0.3: killed, so A and B
    are back, nothing moved. The book is the same as before, also after a restart (rebuilt from the store). Block 4:
    account 3 buys 0.1 BTC IOC at $64,000: it fills A (oldest at the best price)."""
    state = with_deposit(app_state(), 1, 1, 10_000 * USD)
    state["subaccounts"]["deposits"].append({"owner": ADDRS[5], "number": 0, "amount_quote_quantums": str(1_000 * USD)})
    r = mem_exchange(state)
    h = nxt(r)
    r.block([orders_tx(1, 1, [place(1, SELL, TENTH, P64K, number=1, tif=POST_ONLY, height_hint=h)]),
             orders_tx(5, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)])])
    assert r.block([msg_tx(5, 2, [withdraw_msg(5, 900 * USD)])]).tx_results[0].code == 0
    before = asks(r)
    assert before == [(P64K, 2 * TENTH), (P64K + D, TENTH)]
    h = nxt(r)
    res = r.block([orders_tx(1, 2, [place(2, BUY, 3 * TENTH, P64K + D, tif=FOK, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["rejected"]
    assert asks(r) == before
    r.restart()
    assert asks(r) == before
    assert [quote(r, 1), quote(r, 1, 1), quote(r, 2), quote(r, 5)] == [100_000 * USD, 10_000 * USD, 100_000 * USD,
                                                                        100 * USD]
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    (fill,) = fills_of(res.tx_results[0])
    assert (fill["maker"], fill["maker_number"]) == (ADDRS[1], "1")
    exact_pools(r)


def test_a_flat_reduce_only_remainder_does_not_block_post_only_quotes():
    """As above: after block 2 account 1 is flat, yet its reduce-only bid of 0.4 BTC at $64,001 rests. Block 3:
    account 4 posts a post-only ask of 0.1 BTC at $64,001. No order on the book can ever trade with it at that
    price (account 1 has nothing to reduce), so it should rest; instead it is refused as 'would cross'."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, BUY, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, SELL, TENTH, P64K, tif=IOC, height_hint=h)])])
    h = nxt(r)
    r.block([orders_tx(3, 1, [place(1, SELL, 3 * TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 2, [place(2, BUY, 5 * TENTH, P64K + D, reduce_only=True, height_hint=h)])])
    assert size(r, 1) == 0
    h = nxt(r)
    res = r.block([orders_tx(4, 1, [place(1, SELL, TENTH, P64K + D, tif=POST_ONLY, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting"]  # before the fix: rejected, 707 post_only_would_cross


def test_batch_cancel_runs_before_placements_of_the_same_block():
    """Rule (docs/exchange.md): every cancel of a block runs before every placement. Account 1's first tx places a
    GTC bid (id 1); its second tx, later in the block, batch-cancels all its short-term BTC orders: the batch cancel
    runs first (finds nothing: canceled 0), the bid is placed afterwards and rests."""
    r = mem_exchange(app_state())
    h = nxt(r)
    res = r.block([orders_tx(1, 1, [place(1, BUY, TENTH, P64K - D, height_hint=h)]),
                   orders_tx(1, 2, [batch_cancel()])])
    (a,) = actions_of(res.tx_results[1])
    assert (a["status"], a["canceled"]) == ("canceled", "0")
    assert statuses(res.tx_results[0]) == ["resting"]
    assert bids(r) == [(P64K - D, TENTH)]


def _status_tx(nonce: int, status: int) -> bytes:
    from perpchain.v1 import tx_pb2

    return msg_tx(0, nonce, [tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(
        authority=ADDRS[0], clob_pair_id=BTC, status=status))])


def test_paused_book_is_frozen_but_orders_still_expire():
    """Account 2 rests an ask (good_til_block h+1) and a bid. The authority pauses BTC. While paused: a cancel and a
    batch cancel are refused, a post-only placement is refused; in block h+2 the ask (GTB h+1) expires anyway.
    Nothing moves."""
    from perpchain.v1 import exchange_pb2

    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, gtb=h + 1, height_hint=h),
                              place(2, BUY, TENTH, P64K - D, height_hint=h)])])
    res = r.block([_status_tx(1, exchange_pb2.CLOB_PAIR_STATUS_PAUSED)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    res = r.block([orders_tx(2, 2, [cancel(2), batch_cancel(), place(3, SELL, TENTH, P64K + 5 * D, tif=POST_ONLY,
                                                                     height_hint=nxt(r))])])
    assert statuses(res.tx_results[0]) == ["rejected"] * 3
    assert asks(r) == [] and bids(r) == [(P64K - D, TENTH)]
    assert [quote(r, a) for a in (1, 2)] == [100_000 * USD] * 2
    exact_pools(r)


@pytest.mark.parametrize("tiers, taker_fee, maker_fee", [
    (None, 1, 1),  # 500 ppm of 1,000 = 0.5 -> 1; 100 ppm -> 0.1 -> 1
    ([{"name": "1", "maker_fee_ppm": -110, "taker_fee_ppm": 110}], 1, 0),  # 0.11 -> 1; -0.11 -> 0 (toward zero)
], ids=["default tiers", "rebate tier"])
def test_the_smallest_isolated_fill_rounds_fees_up_and_rebates_toward_zero(tiers, taker_fee, maker_fee):
    """SOL (isolated): account 2 asks 0.1 SOL at $0.01 (one tick, 1e6 subticks; post-only), account 1 buys it IOC:
    quote = 1e6 × 1e6 ÷ 1e9 = 1,000 quote quantums. Both open: each moves its 100,000 USDC into the SOL pool, which
    then pays the fees: pool = 200,000 USDC - taker fee - maker fee; the collector gains exactly the fees."""
    r = mem_exchange(app_state(fee_tiers=tiers) if tiers else app_state())
    c0 = collector(r)
    h = nxt(r)
    tick = 1_000_000
    res = r.block([orders_tx(2, 1, [place(1, SELL, ONE_SOL // 10, tick, pair=SOL, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, ONE_SOL // 10, tick, pair=SOL, tif=IOC, height_hint=h)])])
    (fill,) = fills_of(res.tx_results[1])
    assert (fill["quote_quantums"], fill["taker_fee_quote_quantums"], fill["maker_fee_quote_quantums"]) == \
        ("1000", str(taker_fee), str(maker_fee))
    assert quote(r, 1) == 100_000 * USD - 1_000 - taker_fee
    assert quote(r, 2) == 100_000 * USD + 1_000 - maker_fee
    assert r.balance_of(sk.isolated_pool(SOL)) == 200_000 * USD - taker_fee - maker_fee
    assert collector(r) - c0 == taker_fee + maker_fee
    exact_pools(r)


def test_cancel_replace_whose_placement_fails_statefully_leaves_the_old_order_canceled():
    """Documented semantics (docs/exchange.md: 'the placement happens only if the cancel found the order'): the two
    halves are separate units. Account 2 rests an ask of 0.1 BTC at $64,010; it cancel-replaces it with a post-only
    ask at $63,999 that would cross account 3's bid at $64,000: the cancel succeeds (phase 1), the placement is
    refused (707). Result: no ask at all (the old one is gone), nothing else moved. An invalid replacement (off-tick:
    refused statelessly) on the other hand keeps the old order: the cancel half is refused too."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + 10 * D, height_hint=h),
                              place(5, SELL, TENTH, P64K + 20 * D, height_hint=h)]),
             orders_tx(3, 1, [place(1, BUY, TENTH, P64K, tif=POST_ONLY, height_hint=h)])])
    h = nxt(r)
    bad_place = place(2, SELL, TENTH, P64K - D, tif=POST_ONLY, height_hint=h)
    bad_place.place.quantums = 0  # stateless failure
    res = r.block([orders_tx(2, 2, [cancel_replace(1, place(2, SELL, TENTH, P64K - D, tif=POST_ONLY, height_hint=h)),
                                    cancel_replace(5, bad_place)])])
    acts = actions_of(res.tx_results[0])
    # phase 1: both cancel halves (the second refused statelessly); phase 2: both placements (the first refused by
    # the book, the second skipped: its cancel half did not succeed, as for any refused cancel half)
    assert [(a["action_index"], a["step"], a["status"]) for a in acts] == [
        ("0", "cancel", "canceled"), ("1", "cancel", "rejected"), ("0", "place", "rejected"), ("1", "place", "skipped")]
    assert acts[2]["code"] == "707"
    assert asks(r) == [(P64K + 20 * D, TENTH)]
    assert bids(r) == [(P64K, TENTH)]
    assert [quote(r, a) for a in (2, 3)] == [100_000 * USD] * 2
    exact_pools(r)


# =====================================================================================================================
# FOUND: the address of a future isolated pool can be funded before it becomes a module account
# =====================================================================================================================

def _send_msg(frm: int, to_raw: bytes, amount: int):
    from perpchain.v1 import tx_pb2

    return tx_pb2.Msg(send=tx_pb2.MsgSend(from_address=ADDRS[frm], to_address=encode_address(to_raw),
                                          amount_quote_quantums=amount))


def _make_eth_isolated(nonce: int) -> bytes:
    from perpchain.v1 import exchange_pb2, tx_pb2

    return msg_tx(0, nonce, [tx_pb2.Msg(update_perpetual=tx_pb2.MsgUpdatePerpetual(
        authority=ADDRS[0], perpetual_id=1, market_type=exchange_pb2.MARKET_TYPE_ISOLATED))])


def _restarts_from_export(r) -> None:
    from app.errors import AppError
    from tests.mutation_helpers import MemReplica

    fresh = MemReplica()
    try:
        fresh.init_chain(r.app.export_genesis())
    except AppError as err:  # before the fix: isolated perpetual 1 has no position but a funded pool
        pytest.fail(f"exported state refused as genesis: {err.log}")


def _cleared(result) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == "isolated_pool_cleared"]


def test_usdc_sent_to_a_future_isolated_pool_goes_to_the_fee_collector_when_the_market_becomes_isolated():
    """Found by this attack (fixed): ETH (perpetual 1) is cross; its future isolated pool is
    module_address('subaccounts:1'), a deterministic address nobody can sign for. Block 1: account 3 sends 1 USDC
    there (MsgSend: not a module account yet, so accepted). Block 2: the authority makes ETH isolated (allowed: no
    open interest). A flat isolated market must have an empty pool (Σ pools = Σ claims; InitChain refuses an export
    otherwise), so the switch moves the stray 1 000 000 quote quantums to the fee collector with an
    isolated_pool_cleared event: the collector gains exactly the authority's tx fee + 1 000 000, the pool holds 0,
    the money checks hold and the export restarts a chain."""
    r = mem_exchange(app_state())
    pool = sk.isolated_pool(1)
    res = r.block([msg_tx(3, 1, [_send_msg(3, pool, 1 * USD)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert r.balance_of(pool) == 1 * USD
    authority0, collector0 = r.balance_of_address(ADDRS[0]), collector(r)
    res = r.block([_make_eth_isolated(1)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    fee = authority0 - r.balance_of_address(ADDRS[0])
    assert (r.balance_of(pool), collector(r) - collector0) == (0, fee + 1 * USD)
    assert _cleared(res.tx_results[0]) == [{"perpetual_id": "1", "amount_quote_quantums": str(1 * USD),
                                            "recipient": encode_address(FEE_COLLECTOR_ADDRESS)}]
    check_global_money(r)
    exact_pools(r)
    _restarts_from_export(r)
    # Now a module account: a second send is refused.
    res = r.block([msg_tx(3, 2, [_send_msg(3, pool, 1 * USD)])])
    assert res.tx_results[0].code != 0


def test_a_subaccount_of_a_future_isolated_pool_is_closed_to_the_fee_collector_when_the_market_becomes_isolated():
    """Found by the session-15 attack (F1): a subaccount transfer to module_address('subaccounts:1')/0 and /127 while
    ETH is still cross passes (not a module account yet); once ETH is isolated nobody could move that USDC. The switch
    closes both subaccounts: 5 + 2 USDC leave the cross pool for the fee collector, one isolated_pool_cleared event
    per subaccount; money checks hold; later transfers there are refused (104)."""
    from perpchain.v1 import tx_pb2

    def transfer(nonce: int, to: bytes, number: int, amount: int) -> bytes:
        return msg_tx(3, nonce, [tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(
            owner=ADDRS[3], recipient_owner=encode_address(to), recipient_subaccount_number=number,
            amount_quote_quantums=amount))])

    r = mem_exchange(app_state())
    pool = sk.isolated_pool(1)
    res = r.block([transfer(1, pool, 0, 5 * USD), transfer(2, pool, 127, 2 * USD)])
    assert [t.code for t in res.tx_results] == [0, 0], [t.log for t in res.tx_results]
    assert quote(r, 3) == 100_000 * USD - 7 * USD
    authority0, collector0 = r.balance_of_address(ADDRS[0]), collector(r)
    res = r.block([_make_eth_isolated(1)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    fee = authority0 - r.balance_of_address(ADDRS[0])
    assert collector(r) - collector0 == fee + 7 * USD
    assert list(sk.iter_subaccounts(BranchStore(r.store), pool)) == []
    to = encode_address(FEE_COLLECTOR_ADDRESS)
    assert _cleared(res.tx_results[0]) == [
        {"perpetual_id": "1", "subaccount_number": "0", "amount_quote_quantums": str(5 * USD), "recipient": to},
        {"perpetual_id": "1", "subaccount_number": "127", "amount_quote_quantums": str(2 * USD), "recipient": to}]
    check_global_money(r)
    exact_pools(r)
    _restarts_from_export(r)
    res = r.block([transfer(3, pool, 0, 1)])
    assert res.tx_results[0].code == 104, res.tx_results[0].log


def test_usdc_sent_to_the_pool_of_a_perpetual_not_yet_created_goes_to_the_fee_collector_at_creation():
    """Found by this attack (fixed), the MsgCreatePerpetual path: account 3 sends 2 USDC to
    module_address('subaccounts:20'); the authority then creates isolated perpetual 20 (pair 20) on the BTC oracle
    market. Its pool opens empty: the 2 000 000 quote quantums go to the fee collector (event), the money checks
    hold and the export restarts a chain. A cross perpetual created the same way leaves such USDC where it is (no
    pool opens; it stays an ordinary balance nobody can spend)."""
    from perpchain.v1 import exchange_pb2, tx_pb2

    r = mem_exchange(app_state())
    pool = sk.isolated_pool(20)
    res = r.block([msg_tx(3, 1, [_send_msg(3, pool, 2 * USD)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    authority0, collector0 = r.balance_of_address(ADDRS[0]), collector(r)
    create = tx_pb2.Msg(create_perpetual=tx_pb2.MsgCreatePerpetual(
        authority=ADDRS[0],
        perpetual=exchange_pb2.Perpetual(id=20, ticker="BTC2-USD", market_id=0, atomic_resolution=-10,
                                         liquidity_tier=0, market_type=exchange_pb2.MARKET_TYPE_ISOLATED),
        clob_pair=exchange_pb2.ClobPair(id=20, perpetual_id=20, step_base_quantums=1_000_000,
                                        subticks_per_tick=100_000, quantum_conversion_exponent=-9, status=1)))
    res = r.block([msg_tx(0, 1, [create])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    fee = authority0 - r.balance_of_address(ADDRS[0])
    assert (r.balance_of(pool), collector(r) - collector0) == (0, fee + 2 * USD)
    assert [c["amount_quote_quantums"] for c in _cleared(res.tx_results[0])] == [str(2 * USD)]
    check_global_money(r)
    exact_pools(r)
    _restarts_from_export(r)


def test_a_reduce_only_taker_with_room_for_two_makers_fills_both():
    """Kills match_taker's stop firing on any reduce-only fill (`taker_room is not None or ...`). Block 1: account 1
    sells 0.3 BTC IOC to account 2's bid at $64,000: short 0.3. Block 2: account 3 asks 0.1 BTC at $64,000 and 0.2
    BTC at $64,001 (post-only); account 1 buys 0.3 reduce-only IOC up to $64,001: room 0.3 covers both asks, so 0.1 +
    0.2 fill, the order is filled and account 1 is flat; the stop only comes once the room is used up."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, BUY, 3 * TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, SELL, 3 * TENTH, P64K, tif=IOC, height_hint=h)])])
    assert size(r, 1) == -3 * TENTH
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h),
                                    place(2, SELL, 2 * TENTH, P64K + D, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 2, [place(2, BUY, 3 * TENTH, P64K + D, tif=IOC, reduce_only=True, height_hint=h)])])
    assert [f["quantums"] for f in fills_of(res.tx_results[1])] == [str(TENTH), str(2 * TENTH)]
    (a,) = actions_of(res.tx_results[1])
    assert (a["status"], a["filled_quantums"], "stopped" in a) == ("filled", str(3 * TENTH), False)
    assert size(r, 1) == 0 and asks(r) == []
    exact_pools(r)


def test_a_reduce_only_taker_whose_position_is_under_one_step_stops_without_filling():
    """Kills match_taker's room-0 stop (reason None or another text; `return` for `break` is equivalent). Genesis:
    account 3 long 500 000 base quantums (half a step; account 4 short as much): valid state a genesis may set, not
    reachable by orders. Account 2 bids 0.1 BTC at $64,000; account 3 sells 0.1 BTC reduce-only IOC: its room is
    500 000 rounded down to the step = 0, so nothing fills: not_filled, stopped reduce_only_nothing_to_reduce, the bid
    stays."""
    state = app_state()
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[3], "number": 0, "positions": [{"perpetual_id": BTC, "size_base_quantums": "500000"}]},
        {"owner": ADDRS[4], "number": 0, "positions": [{"perpetual_id": BTC, "size_base_quantums": "-500000"}]}]
    (perp,) = [p for p in state["perpetuals"]["perpetuals"] if p["id"] == BTC]
    perp["open_interest_base_quantums"] = "500000"
    r = mem_exchange(state)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, BUY, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, TENTH, P64K, tif=IOC, reduce_only=True, height_hint=h)])])
    (a,) = actions_of(res.tx_results[1])
    assert (a["status"], a["filled_quantums"], a.get("stopped")) == ("not_filled", "0", "reduce_only_nothing_to_reduce")
    assert fills_of(res.tx_results[1]) == [] and bids(r) == [(P64K, TENTH)] and size(r, 3) == 500_000
    exact_pools(r)
