"""The subaccount query (app/clob/queries.py query_subaccount, `perpd query subaccounts show`): every field of a
subaccount with a long of one base quantum and a short, and the leverage over several positions; behaviours pinned
after the mutation run of queries.py (docs/mutation.md). Numbers worked by hand below.

Markets (tests/exchange_helpers.py): BTC-USD oracle 6 400 000 000 x 10^-5 = $64,000, atomic resolution -10, so a
position of s base quantums is worth s x 6.4e9 x 10^(-5 - 10 + 6) = s x 6.4 quote quantums (truncated toward zero);
ETH-USD 3 000 000 000 x 10^-6 = $3,000, atomic resolution -9: s x 3 quote quantums. Tier 0: IM 5 %, MM 3 %.
"""

from __future__ import annotations

import pytest

from app.clob import queries
from app.errors import ERR_INVALID_ADDRESS, AppError
from app.lib.address import encode_address
from app.store import BranchStore
from app.subaccounts.keeper import CROSS_POOL
from tests.attack_helpers import app_state
from tests.exchange_helpers import BTC, ETH
from tests.helpers import ADDRS
from tests.mutation_helpers import mem_exchange


def position(pid: int, size: int, entry: int) -> dict:
    return {"perpetual_id": pid, "size_base_quantums": str(size), "entry_notional_quote_quantums": str(entry)}


@pytest.fixture
def r():
    """Account 3 (subaccount 0, 100 000 USDC deposited): long 1 BTC base quantum (entry 6 quote quantums) and short
    2 ETH (entry 5 000 USDC). Account 1 (subaccount 5, 91 quote quantums deposited): long 1 base quantum of each.
    Account 4 holds the other side of every position."""
    state = app_state()
    state["subaccounts"]["deposits"].append({"owner": ADDRS[1], "number": 5, "amount_quote_quantums": "91"})
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[3], "number": 0, "positions": [position(BTC, 1, 6), position(ETH, -2 * 10**9, 5 * 10**9)]},
        {"owner": ADDRS[1], "number": 5, "positions": [position(BTC, 1, 6), position(ETH, 1, 3)]},
        {"owner": ADDRS[4], "number": 0, "positions": [position(BTC, -2, 12), position(ETH, 2 * 10**9 - 1, 5 * 10**9)]},
    ]
    for p in state["perpetuals"]["perpetuals"]:
        p["open_interest_base_quantums"] = {BTC: "2", ETH: str(2 * 10**9)}.get(p["id"], "0")
    return mem_exchange(state)


def test_every_field_of_a_subaccount_with_a_one_quantum_long_and_a_short(r):
    """BTC long 1: notional floor(6.4) = 6, entry price 6e-6 USDC / 1e-10 BTC = $60,000, PnL 6 - 6 = 0. ETH short
    2e9: notional -6e9 (-6,000 USDC), entry 5e9 / 2 ETH = $2,500, PnL -6e9 - (-5e9) = -1e9. TNC = 1e11 + 6 - 6e9 =
    94 000 000 006. IMR = ceil(6.4 x 5 %) + 6e9 x 5 % = 1 + 300 000 000; MMR = ceil(6.4 x 3 %) + 1.8e8 = 180 000 001.
    Leverage = floor(gross 6 000 000 006 x 100 / TNC) / 100 = floor(6.38) / 100 = 0.06. No book: mark = oracle."""
    out = queries.query_subaccount(BranchStore(r.store), ADDRS[3], None)  # no number: subaccount 0
    common = {"funding_index": "0"}
    assert out == {
        "owner": ADDRS[3], "number": 0, "quote_balance_quote_quantums": "100000000000", "quote_balance": "100000",
        "unsettled_funding_quote_quantums": "0", "collateral_pool": encode_address(CROSS_POOL),
        "positions": [
            {**common, "perpetual_id": BTC, "market": "BTC-USD", "side": "long", "size_base_quantums": "1",
             "size": "0.0000000001", "entry_price": "60000", "oracle_price": "64000", "mark_price": "64000",
             "notional_quote_quantums": "6", "notional": "0.000006", "unrealized_pnl_quote_quantums": "0",
             "unrealized_pnl": "0"},
            {**common, "perpetual_id": ETH, "market": "ETH-USD", "side": "short",
             "size_base_quantums": "-2000000000", "size": "-2", "entry_price": "2500", "oracle_price": "3000",
             "mark_price": "3000", "notional_quote_quantums": "-6000000000", "notional": "-6000",
             "unrealized_pnl_quote_quantums": "-1000000000", "unrealized_pnl": "-1000"},
        ],
        "total_net_collateral_quote_quantums": "94000000006", "total_net_collateral": "94000.000006",
        "initial_margin_requirement_quote_quantums": "300000001", "initial_margin_requirement": "300.000001",
        "maintenance_margin_requirement_quote_quantums": "180000001", "maintenance_margin_requirement": "180.000001",
        "free_collateral_quote_quantums": "93700000005", "free_collateral": "93700.000005",
        "leverage": "0.06", "liquidatable": False,
        # TNC 94 000 USDC: the 10 000 USDC tier of both default lists (100 orders), none resting
        "open_orders": {"short_term": {"open": 0, "allowed": 100}, "long_term": {"open": 0, "allowed": 100}},
    }


def test_leverage_sums_every_position(r):
    """Account 1 / 5: notionals 6 (BTC) + 3 (ETH), TNC = 91 + 9 = 100 quote quantums: leverage = floor(9 x 100 /
    100) / 100 = 0.09 (the last position alone would give 0.03)."""
    out = queries.query_subaccount(BranchStore(r.store), ADDRS[1], "5")
    assert [p["notional_quote_quantums"] for p in out["positions"]] == ["6", "3"]
    assert (out["total_net_collateral_quote_quantums"], out["leverage"]) == ("100", "0.09")


def test_a_bad_owner_is_refused_naming_the_field(r):
    with pytest.raises(AppError) as e:
        queries.query_subaccount(BranchStore(r.store), "perp1x", None)
    assert (e.value.code, e.value.log) == (ERR_INVALID_ADDRESS.code,
                                           "invalid_address: owner 'perp1x' is not a valid perp1... address")


@pytest.mark.parametrize("depth", ["0", "1001", "x"])
def test_an_order_book_depth_outside_1_to_1000_is_refused_exactly(r, depth):
    res = r.app.query(f"/clob/orderbook/BTC-USD/{depth}", b"")
    assert res.log == "bad_query_path: depth must be 1..1000"


@pytest.fixture
def priceless():
    """ETH-USD's oracle price never arrived (genesis price 0). Account 3 long 1 ETH (entry 3 000 USDC), account 4
    short it. Account 2 / subaccount 6: 7 quote quantums deposited and short 1 BTC base quantum (entry 6) against
    account 1's long."""
    state = app_state()
    for m in state["prices"]["markets"]:
        if m["id"] == ETH:
            m["price"] = "0"
    state["subaccounts"]["deposits"].append({"owner": ADDRS[2], "number": 6, "amount_quote_quantums": "7"})
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[3], "number": 0, "positions": [position(ETH, 10**9, 3 * 10**9)]},
        {"owner": ADDRS[4], "number": 0, "positions": [position(ETH, -10**9, 3 * 10**9)]},
        {"owner": ADDRS[2], "number": 6, "positions": [position(BTC, -1, 6)]},
        {"owner": ADDRS[1], "number": 0, "positions": [position(BTC, 1, 6)]},
    ]
    for p in state["perpetuals"]["perpetuals"]:
        p["open_interest_base_quantums"] = {BTC: "1", ETH: str(10**9)}.get(p["id"], "0")
    return mem_exchange(state)


def test_a_position_without_an_oracle_price_shows_no_prices_and_the_margin_error(priceless):
    """No price: notional 0, oracle and mark price null, PnL 0 - 3e9; the margin block is replaced by the error; the
    perpetuals list shows no mark price either."""
    store = BranchStore(priceless.store)
    out = queries.query_subaccount(store, ADDRS[3], "0")
    (p,) = out["positions"]
    assert (p["notional_quote_quantums"], p["oracle_price"], p["mark_price"], p["unrealized_pnl_quote_quantums"]) == (
        "0", None, None, "-3000000000")
    assert out["error"] == "price_unavailable: perpetual 1 (market 1) has no oracle price yet"
    assert "total_net_collateral_quote_quantums" not in out
    (eth,) = [x for x in queries.query_perpetuals(store)["perpetuals"] if x["id"] == ETH]
    assert (eth["oracle_price"], eth["mark_price"]) == (None, None)


def test_leverage_at_a_total_net_collateral_of_one_quote_quantum(priceless):
    """Account 2 / 6: 7 + notional(-1 BTC base quantum) = 7 + trunc(-6.4) = 1 quote quantum of TNC; gross 6:
    leverage = floor(6 x 100 / 1) / 100 = 6."""
    out = queries.query_subaccount(BranchStore(priceless.store), ADDRS[2], "6")
    assert (out["total_net_collateral_quote_quantums"], out["leverage"]) == ("1", "6")
