"""clob: behaviours pinned for the survivors left open by the mutation run of app/clob (docs/mutation.md, "Open"):
reduce-only clamps of positions off the step grid, the position half of the int64 guard of a fill, the open-interest
scaled margin of each side of a fill, the sweep of an isolated pool when its market goes flat, and the rounding and
the uint64 cap of a market order's protective limit. In-memory chains (tests/mutation_helpers.mem_exchange); every
expected number is worked by hand in the comments.

Markets as in tests/exchange_helpers.py unless a test changes its genesis: BTC-USD (oracle $64,000, exponent -5,
atomic resolution -10, QCE -9: 1 subtick = $0.00001 per BTC, tick $1 = 100 000 subticks, step 1 000 000 base
quantums = 0.0001 BTC), SOL-USD (isolated, tier 4: IM 5 %, MF 60 %, OI caps 500 000 / 1 000 000 USDC; oracle $150
= 15 000 000 000 subticks, 1 SOL = 10^7 base quantums). A fill's quote = floor(subticks x base x 10^QCE); fee tier 1
of the default params: maker 100 ppm, taker 500 ppm, each ceil(quote x ppm / 1e6).
"""

from __future__ import annotations

import pytest

from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.lib.address import encode_address
from app.subaccounts.keeper import CROSS_POOL, isolated_pool
from tests.attack_helpers import SOL_PRICE, Nonces
from tests.attack_helpers import app_state as exchange_app_state  # deep copy: the helpers' lists are shared
from tests.exchange_helpers import (
    BTC,
    BUY,
    IOC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    SOL,
    actions_of,
    book,
    fills_of,
    height_of,
    orders_tx,
    place,
    subaccount,
)
from tests.helpers import ADDRS, ONE_USDC
from tests.mutation_helpers import mem_exchange

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
P64K = 64_000 * ONE_DOLLAR_BTC


def _by_id(items: list[dict], ident: int) -> dict:
    (item,) = [i for i in items if i["id"] == ident]
    return item


def _positions(state: dict, perpetual: int, holders: list[tuple[int, int, int]]) -> None:
    """Genesis positions (account, subaccount number, size) in ``perpetual``, its open interest = Σ longs."""
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[owner], "number": number, "positions": [{"perpetual_id": perpetual,
                                                                  "size_base_quantums": str(size)}]}
        for owner, number, size in holders]
    _by_id(state["perpetuals"]["perpetuals"], perpetual)["open_interest_base_quantums"] = str(
        sum(size for _, _, size in holders if size > 0))


def position(r, account: int, perpetual: int = BTC, number: int = 0) -> int:
    ticker = {BTC: "BTC-USD", SOL: "SOL-USD"}[perpetual]
    return sum(int(p["size_base_quantums"]) for p in subaccount(r, account, number)["positions"]
               if p["market"] == ticker)


def removed_of(result) -> list[tuple[str, str, str]]:
    """(client id, remaining quantums, reason) of every order_removed event of a tx."""
    return [(e["client_id"], e["remaining_quantums"], e["reason"])
            for e in (dict(ev.attributes) for ev in result.events if ev.type == "order_removed")]


# --- reduce-only orders of a position off the step grid ------------------------------------------------------------

@pytest.fixture
def off_grid():
    """Genesis: account 3 long 1 500 000 BTC base quantums (1.5 steps of 1 000 000), account 4 short as much; both
    also hold their 100 000 USDC deposit. A position off the step grid cannot come from orders (every order and fill
    is a multiple of the step, and a pair's step never changes) but is valid state that a genesis may set."""
    state = exchange_app_state()
    _positions(state, BTC, [(3, 0, 1_500_000), (4, 0, -1_500_000)])
    return mem_exchange(state)


def test_a_reduce_only_maker_off_the_step_grid_fills_only_whole_steps_of_its_position(off_grid):
    """Kills matching.match_taker _100 (room + room % step).

    Account 3 (long 1 500 000) rests a reduce-only ask of 2 000 000 at $64,000; account 1 buys 2 000 000 (IOC). The
    maker's room is its position rounded down to the step: 1 500 000 - 1 500 000 % 1 000 000 = 1 000 000, so the fill
    is 1 000 000 (not 1 500 000 + 500 000 = 2 000 000, which would flip account 3 short 500 000). Its room left,
    500 000, is under one step: the order (1 000 000 left) leaves the book, reason reduce_only_nothing_to_reduce.
    Account 3 is left long 500 000; the taker's other 1 000 000 finds nothing."""
    r = off_grid
    h = height_of(r) + 1
    res = r.block([orders_tx(3, 1, [place(1, SELL, 2_000_000, P64K, reduce_only=True, height_hint=h + 5)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])
    res = r.block([orders_tx(1, 1, [place(1, BUY, 2_000_000, P64K, tif=IOC, height_hint=h + 1)])])
    assert [(f["maker"], f["quantums"]) for f in fills_of(res.tx_results[0])] == [(ADDRS[3], "1000000")]
    assert removed_of(res.tx_results[0]) == [("1", "1000000", "reduce_only_nothing_to_reduce")]
    (action,) = actions_of(res.tx_results[0])
    assert (action["status"], action["filled_quantums"], action["remaining_quantums"]) == (
        "partially_filled", "1000000", "1000000")
    assert (position(r, 3), position(r, 1)) == (500_000, 1_000_000)


def test_a_reduce_only_taker_off_the_step_grid_fills_only_whole_steps_of_its_position(off_grid):
    """Kills matching.match_taker _112 (room += room % step).

    Account 2 rests a bid of 2 000 000 at $64,000; account 3 (long 1 500 000) sells 2 000 000 reduce-only (IOC). Its
    room is 1 500 000 - 500 000 = 1 000 000 (the mutant: 1 500 000 + 500 000 = 2 000 000, a flip to short 500 000):
    1 000 000 fills, 1 000 000 of the taker is left unfilled, account 3 stays long 500 000 and the bid keeps
    1 000 000."""
    r = off_grid
    h = height_of(r) + 1
    res = r.block([orders_tx(2, 1, [place(1, BUY, 2_000_000, P64K, tif=POST_ONLY, height_hint=h + 5)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])
    res = r.block([orders_tx(3, 1, [place(1, SELL, 2_000_000, P64K, tif=IOC, reduce_only=True, height_hint=h + 1)])])
    assert [(f["maker"], f["quantums"], f["taker_side"]) for f in fills_of(res.tx_results[0])] == [
        (ADDRS[2], "1000000", "sell")]
    (action,) = actions_of(res.tx_results[0])
    assert (action["status"], action["filled_quantums"], action["remaining_quantums"]) == (
        "partially_filled", "1000000", "1000000")
    assert (position(r, 3), position(r, 2)) == (500_000, 1_000_000)
    assert [(b["subticks"], b["quantums"]) for b in book(r)["bids"]] == [(str(P64K), "1000000")]


# --- the position half of a fill's int64 guard ----------------------------------------------------------------------

def test_a_maker_may_reach_exactly_int64_max_base_quantums_but_is_removed_beyond():
    """Kills matching._side_update _39 (the size read for perpetual None, i.e. never checked) and _40 (>= INT64_MAX).

    Step 1 for BTC. Genesis: account 3 long INT64_MAX - 3 (account 4 short as much). Account 3 rests bids of 2 at
    $64,000 (client 1) and 2 at $63,999 (client 2); each, checked alone at placement, would leave INT64_MAX - 1.
    Account 1 sells 3: 2 from client 1 (INT64_MAX - 1), then 1 from client 2: exactly INT64_MAX, allowed (client 2
    keeps 1). Account 1 sells 1 more: client 2 would take account 3 to INT64_MAX + 1, beyond int64: the maker is
    removed with that reason and nothing fills. Quote amounts stay tiny (2 x $64,000 x 1e-10 x 1e6 = 12.8 -> 12
    quote quantums), so only the position half of the guard can fire."""
    state = exchange_app_state()
    _by_id(state["clob"]["clob_pairs"], BTC)["step_base_quantums"] = "1"
    _positions(state, BTC, [(3, 0, INT64_MAX - 3), (4, 0, -(INT64_MAX - 3))])
    r = mem_exchange(state)
    nonce = Nonces()
    h = height_of(r) + 1
    p63999 = P64K - ONE_DOLLAR_BTC
    res = r.block([orders_tx(3, nonce(3), [place(1, BUY, 2, P64K, tif=POST_ONLY, height_hint=h + 10),
                                           place(2, BUY, 2, p63999, tif=POST_ONLY, height_hint=h + 10)])])
    assert [a["status"] for a in actions_of(res.tx_results[0])] == ["resting", "resting"], actions_of(res.tx_results[0])
    res = r.block([orders_tx(1, nonce(1), [place(1, SELL, 3, p63999, tif=IOC, height_hint=h + 1)])])
    assert [(f["maker_client_id"], f["quantums"]) for f in fills_of(res.tx_results[0])] == [("1", "2"), ("2", "1")]
    assert removed_of(res.tx_results[0]) == []
    assert position(r, 3) == INT64_MAX
    res = r.block([orders_tx(1, nonce(1), [place(2, SELL, 1, p63999, tif=IOC, height_hint=h + 2)])])
    assert fills_of(res.tx_results[0]) == []
    assert removed_of(res.tx_results[0]) == [
        ("2", "1", "collateral: position_overflow: position or quote balance beyond int64")]
    assert (position(r, 3), position(r, 1)) == (INT64_MAX, -3)


# --- each side of a fill is checked at the open interest the fill creates -------------------------------------------

@pytest.mark.parametrize("thin", ["taker", "maker"])
def test_only_the_side_short_of_the_oi_scaled_margin_stops_the_fill(thin):
    """Kills matching.process_fill _98 (thin taker checked without the fill's OI delta) and _109 (thin maker).

    SOL starts flat. Account 1 (taker, buys) and account 2 (maker, sells) trade 5 000 SOL at $150 = 750 000 USDC;
    one of them holds 100 000 USDC (thin), the other 500 000. After the fill the open interest would be 5 000 SOL =
    750 000 USDC: IMF = 50 000 + floor(950 000 x (750 000 - 500 000) / (1 000 000 - 500 000)) = 525 000 ppm, IMR =
    ceil(750 000 x 0.525) = 393 750 USDC per side (at the pre-fill OI, 0: 5 %, 37 500 — the thin side would pass).
    Fees: taker ceil(750 000 USDC x 500 / 1e6) = 375 USDC, maker 75 USDC. The thick side keeps 500 000 - fee >=
    393 750: it passes. The thin side's net collateral (deposit - fee; the position's value offsets the quote it
    moved): taker 100 000 - 375 = 99 625 USDC, maker 100 000 - 75 = 99 925 USDC < 393 750, and it was flat (MMR 0 ->
    22 500): newly undercollateralized. So nothing fills: a thin taker stops (its order is not placed, the maker
    stays), a thin maker is removed (the taker finds nothing else)."""
    state = exchange_app_state()
    thick = 2 if thin == "taker" else 1
    for d in state["subaccounts"]["deposits"]:
        if d["owner"] == ADDRS[thick]:
            d["amount_quote_quantums"] = str(500_000 * ONE_USDC)
    r = mem_exchange(state)
    h = height_of(r) + 1
    size = 5_000 * 10**7
    res = r.block([orders_tx(2, 1, [place(1, SELL, size, SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h + 5)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])
    res = r.block([orders_tx(1, 1, [place(1, BUY, size, SOL_PRICE, pair=SOL, tif=IOC, height_hint=h + 1)])])
    assert fills_of(res.tx_results[0]) == []
    (action,) = actions_of(res.tx_results[0])
    assert (action["status"], action["filled_quantums"]) == ("not_filled", "0")
    if thin == "taker":
        assert action["stopped"] == ("collateral: newly_undercollateralized: net collateral 99625000000 quote quantums "
                                     "< initial margin 393750000000 quote quantums")
        assert removed_of(res.tx_results[0]) == []
        assert [(a["subticks"], a["quantums"]) for a in book(r, "SOL-USD")["asks"]] == [(str(SOL_PRICE), str(size))]
    else:
        assert "stopped" not in action
        assert removed_of(res.tx_results[0]) == [
            ("1", str(size), "collateral: newly_undercollateralized: net collateral 99925000000 quote quantums < "
                             "initial margin 393750000000 quote quantums")]
        assert book(r, "SOL-USD")["asks"] == []
    assert (position(r, 1, SOL), position(r, 2, SOL)) == (0, 0)


# --- the isolated pool is swept when its market goes flat ----------------------------------------------------------

def test_an_isolated_pool_left_with_usdc_when_its_market_goes_flat_returns_it_to_the_cross_pool():
    """Kills matching.process_fill _168 (OI - change == 0), _170 (== 1) and _172 (the sweep of perpetual None).

    Genesis: SOL open interest 0.1 SOL = 1 000 000 base quantums: account 3/1 long it, account 4/1 short it, each
    with 100 USDC. The SOL pool holds their 200 USDC plus 7 USDC that belong to the cross side: account 5/0, a cross
    subaccount, has a claim of 7 USDC that the cross pool does not hold (Σ pools = Σ claims overall). That is the
    shape subaccounts.keeper.pay_from_pool leaves after paying a closing member partly out of the cross pool: the
    isolated pool then holds more than its remaining members' quote balances, the cross pool as much less.
    Account 4 rests a bid for 0.1 SOL at $150; account 3 sells into it: both close, open interest 1 000 000 -
    1 000 000 = 0.
    quote = 15e9 x 1e6 x 1e-9 = 15 000 000; taker fee ceil(15e6 x 500 / 1e6) = 7 500, maker ceil(15e6 x 100 / 1e6)
    = 1 500. Account 3 leaves with 100e6 + 15e6 - 7 500 = 114 992 500, account 4 with 100e6 - 15e6 - 1 500 =
    84 998 500, both paid out of the SOL pool to the cross pool; the fees (9 000) go from the SOL pool to the fee
    collector. The SOL pool then holds 207e6 - 114 992 500 - 84 998 500 - 9 000 = 7 000 000, which the sweep returns
    to the cross pool: SOL pool 0, cross pool + 114 992 500 + 84 998 500 + 7 000 000 = + 206 991 000."""
    state = exchange_app_state()
    _positions(state, SOL, [(3, 1, 1_000_000), (4, 1, -1_000_000)])
    for entry in state["subaccounts"]["subaccounts"]:
        entry["quote_balance_quote_quantums"] = str(100 * ONE_USDC)
    state["subaccounts"]["subaccounts"].append({"owner": ADDRS[5], "number": 0,
                                                "quote_balance_quote_quantums": str(7 * ONE_USDC)})
    state["bank"]["balances"].append({"address": encode_address(isolated_pool(SOL)),
                                      "amount_quote_quantums": str(207 * ONE_USDC)})
    r = mem_exchange(state)
    cross0, collector0 = r.balance_of(CROSS_POOL), r.balance_of(FEE_COLLECTOR_ADDRESS)
    assert r.balance_of(isolated_pool(SOL)) == 207 * ONE_USDC
    h = height_of(r) + 1
    res = r.block([orders_tx(4, 1, [place(1, BUY, 1_000_000, SOL_PRICE, pair=SOL, number=1, tif=POST_ONLY,
                                          height_hint=h + 5)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])
    res = r.block([orders_tx(3, 1, [place(1, SELL, 1_000_000, SOL_PRICE, pair=SOL, number=1, tif=IOC,
                                          height_hint=h + 1)])])
    assert [(f["quantums"], f["quote_quantums"], f["taker_fee_quote_quantums"], f["maker_fee_quote_quantums"])
            for f in fills_of(res.tx_results[0])] == [("1000000", "15000000", "7500", "1500")]
    assert (position(r, 3, SOL, 1), position(r, 4, SOL, 1)) == (0, 0)
    assert int(subaccount(r, 3, 1)["quote_balance_quote_quantums"]) == 114_992_500
    assert int(subaccount(r, 4, 1)["quote_balance_quote_quantums"]) == 84_998_500
    assert r.balance_of(isolated_pool(SOL)) == 0
    assert r.balance_of(CROSS_POOL) - cross0 == 206_991_000
    assert r.balance_of(FEE_COLLECTOR_ADDRESS) - collector0 == 9_000


# --- a market order's protective limit -----------------------------------------------------------------------------

def _market_limit(r, account: int, side: int, slippage_ppm: int, quantums: int) -> str:
    """The limit (subticks) of a market order sent to an empty book, as its order_action event reports it."""
    res = r.block([orders_tx(account, 1, [place(1, side, quantums, 0, tif=IOC, slippage_ppm=slippage_ppm,
                                                height_hint=height_of(r) + 1)])])
    (action,) = actions_of(res.tx_results[0])
    assert (action["status"], action["filled_quantums"]) == ("not_filled", "0"), action
    return action["subticks"]


def test_a_market_orders_limit_rounds_an_off_grid_oracle_price_and_its_slippage_toward_the_oracle():
    """Kills actions.market_order_limit _12, _13, _14 (rounding of the oracle price in subticks) and _29, _30, _31
    (rounding of the slippage product): a buy rounds both down, a sell both up (dYdX: the protective price never
    allows more slippage than asked).

    BTC market with exponent -6 and price 64 000 012 345 ($64,000.012345): in subticks, price x 10^(-6 + 9 - 10 + 6)
    = 6 400 001 234.5, off the subtick grid; tick 1 subtick (so the alignment to the tick hides nothing).
    Buy, 1 % (factor 1 010 000): floor(6 400 001 234 x 1.01) = floor(6 464 001 246.34) = 6 464 001 246 (oracle
    rounded up instead: floor(6 400 001 235 x 1.01) = floor(6 464 001 247.35) = 6 464 001 247; product rounded up:
    6 464 001 247).
    Sell, 1 % (factor 990 000): ceil(6 400 001 235 x 0.99) = ceil(6 336 001 222.65) = 6 336 001 223 (oracle rounded
    down instead: ceil(6 400 001 234 x 0.99) = ceil(6 336 001 221.66) = 6 336 001 222; product rounded down:
    6 336 001 222)."""
    state = exchange_app_state()
    market = _by_id(state["prices"]["markets"], BTC)
    market["exponent"], market["price"] = -6, "64000012345"
    _by_id(state["clob"]["clob_pairs"], BTC)["subticks_per_tick"] = "1"
    r = mem_exchange(state)
    assert _market_limit(r, 1, BUY, 10_000, 1_000_000) == "6464001246"
    assert _market_limit(r, 2, SELL, 10_000, 1_000_000) == "6336001223"


def test_a_market_buys_limit_is_capped_at_the_largest_tick_multiple_below_2_64():
    """Kills actions.market_order_limit _48 (cap UINT64_MAX + UINT64_MAX % tick).

    BTC oracle price 13 000 000 000 000 000 000 subticks (exponent -5: subticks = price), tick 100 000, step 1. A buy
    with 50 % slippage: 13e18 x 1.5 = 19.5e18, a multiple of the tick, beyond 2^64 - 1 = 18 446 744 073 709 551 615.
    The cap is the largest tick multiple below it: 18 446 744 073 709 551 615 - 51 615 = 18 446 744 073 709 500 000
    (the mutant's bound, UINT64_MAX + 51 615, is no uint64). The order, 1 base quantum, passes its collateral check:
    quote floor(cap x 1e-9) = 18 446 744 073 (about 18 447 USDC) out of 100 000 USDC, for a position worth
    13e18 x 1e-9 = 13 000 USDC."""
    state = exchange_app_state()
    _by_id(state["prices"]["markets"], BTC)["price"] = "13000000000000000000"
    _by_id(state["clob"]["clob_pairs"], BTC)["step_base_quantums"] = "1"
    r = mem_exchange(state)
    cap = UINT64_MAX - UINT64_MAX % 100_000
    assert cap == 18_446_744_073_709_500_000
    assert _market_limit(r, 1, BUY, 500_000, 1) == str(cap)
