"""Attacks on the exchange core (subaccounts, margin, order book, matching, fees, admission).

Written as a hostile review: each finding was first a failing test (xfail, strict) and is now fixed, so every test
here guards a fix (the docstrings keep the finding: what, how, impact). The others are attacks that did NOT work;
they stay as regression tests. Market numbers are the ones of tests/exchange_helpers.py: BTC $64,000
(tick $1, step 0.0001 BTC), ETH $3,000, SOL $150 (isolated market, tier 4: IM 5 %, MF 60 %, OI caps 0.5M / 1M USDC;
tick $0.01, step 0.1 SOL); accounts 1..4 start with 100,000 USDC in subaccount 0; fees maker 100 / taker 500 ppm.
"""

from __future__ import annotations

import json

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app import errors
from app.auth import keeper as auth_keeper
from app.clob.genesis import DEFAULT_PARAMS
from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.lib.address import encode_address
from app.lib.math import UINT64_MAX
from app.subaccounts.keeper import CROSS_POOL, isolated_pool
from node.client.txbuilder import msg_send
from tests.attack_helpers import (
    ONE_SOL,
    SOL_PRICE,
    SOL_STEP,
    USD,
    LockStep,
    RandomFlow,
    app_state,
    batch_cancel,
    best_prices,
    cancel_replace,
    check_global_money,
    committed,
    deposit_msg,
    pool_breakdown,
    random_flow_state,
    raw,
    risks,
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
    ONE_BTC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    SOL,
    actions_of,
    cancel,
    fills_of,
    msg_tx,
    orders_tx,
    place,
    price_block,
    subaccount,
)
from tests.helpers import ADDRS, Replica

P64K = 64_000 * ONE_DOLLAR_BTC
TEN_SOL = 10 * ONE_SOL


def chain_of(tmp_path, state=None, ve: bool = False) -> Replica:
    r = Replica(tmp_path / "db")
    r.init_chain(state if state is not None else app_state(), vote_extensions_enable_height=1 if ve else 0)
    r.block([])
    return r


@pytest.fixture
def ex(tmp_path):
    r = chain_of(tmp_path)
    yield r
    r.close()


def nxt(r: Replica) -> int:
    return r.app.info()[0] + 1


def quote(r: Replica, account: int, number: int = 0) -> int:
    return int(subaccount(r, account, number)["quote_balance_quote_quantums"])


# =====================================================================================================================
# CRITICAL: chain halt or USDC created / destroyed
# =====================================================================================================================

@pytest.mark.parametrize("make", [
    pytest.param(lambda: msg_send(ADDRS[1], encode_address(CROSS_POOL), 1), id="send 1 quantum to the cross pool"),
    pytest.param(lambda: msg_send(ADDRS[1], encode_address(isolated_pool(SOL)), 1), id="send to an isolated pool"),
    pytest.param(lambda: withdraw_msg(1, USD, recipient=encode_address(CROSS_POOL)),
                 id="withdraw to the cross pool (its own pool)"),
    pytest.param(lambda: withdraw_msg(1, USD, recipient=encode_address(isolated_pool(SOL))),
                 id="withdraw to an isolated pool"),
])
def test_usdc_sent_to_a_collateral_pool_halts_the_chain(ex, make):
    """What: ``check_block_invariants`` compares the change of the pools' bank balances with the change of the
    subaccounts' quote balances, but nothing stops anyone from paying a pool's module address directly: MsgSend has
    no recipient check, and MsgWithdraw accepts any recipient. Reproduce: account 1 sends 1 quote quantum to
    ``module_address("subaccounts")`` (or withdraws 1 USDC with that recipient: the pool pays itself, the subaccount
    loses 1 USDC that nobody gains). CheckTx admits the tx; FinalizeBlock raises InvariantViolation on every
    validator. Impact: anyone halts the chain for 0.01 USDC. Fix: refuse module-account recipients (at least the
    collateral pools, also for withdrawals) in MsgSend/MsgWithdraw with an AppError, as Cosmos SDK's
    BlockedAddrs does; a pool should only be credited by the subaccounts module."""
    tx = msg_tx(1, 1, [make()])
    res = ex.block([tx])  # raises InvariantViolation today
    assert res.tx_results[0].code != 0
    check_global_money(ex)


@pytest.mark.parametrize("path", [
    pytest.param(f"/subaccounts/show/{ADDRS[1]}/\u00b2", id="subaccount number"),
    pytest.param(f"/clob/orders/{ADDRS[1]}/\u00b2", id="orders subaccount number"),
    pytest.param("/clob/orderbook/\u00b2", id="market name"),
    pytest.param("/clob/orderbook/BTC-USD/\u00b2", id="book depth"),
])
def test_a_public_query_with_a_unicode_digit_stops_the_node(ex, path):
    """What: app/clob/queries.py validates numbers with ``str.isdigit()``, which is true for '²' (and other
    non-decimal digits), then calls ``int()``, which raises ValueError. ``Application.query`` only catches AppError
    and node/abci/server.py turns any other exception into a fatal ResponseException and stops the node.
    Reproduce: ``abci_query`` on ``/subaccounts/show/<addr>/²`` (CometBFT's public RPC forwards it). Impact: any
    anonymous HTTP client stops any node exposing RPC. Fix: use ``text.isdecimal() and text.isascii()`` (or a
    try/except around int) in parse_sid, find_pair and check_depth; defensively, make Application.query answer any
    exception as an error code instead of letting it escape."""
    res = ex.app.query(path, b"")
    assert res.code != 0


def _open_and_close_ten_sol(r: Replica) -> None:
    """Accounts 1 (long) and 2 (short) open 10 SOL at $150 in subaccount 0 (it has no position: SOL is isolated,
    so their 100,000 USDC move to pool subaccounts:2), then close it at $150. Fills: 1,500 USDC; fees 0.75 (taker
    500 ppm) + 0.15 (maker 100 ppm) on each fill."""
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TEN_SOL, SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, TEN_SOL, SOL_PRICE, pair=SOL, tif=IOC, height_hint=h)])])
    assert [s for t in res.tx_results for s in statuses(t)] == ["resting", "filled"]
    assert subaccount(r, 1)["collateral_pool"] == encode_address(isolated_pool(SOL))
    h = nxt(r)
    res = r.block([orders_tx(2, 2, [place(2, BUY, TEN_SOL, SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 2, [place(2, SELL, TEN_SOL, SOL_PRICE, pair=SOL, tif=IOC, reduce_only=True,
                                          height_hint=h)])])
    assert [s for t in res.tx_results for s in statuses(t)] == ["resting", "filled"]
    assert subaccount(r, 1)["positions"] == [] and subaccount(r, 2)["positions"] == []


def _withdraw_everything(r: Replica, nonces: dict[int, int]) -> list[int]:
    codes = []
    for account in (3, 4, 2, 1):
        for number in (0, 1):
            q = quote(r, account, number)
            if q > 0:
                nonces[account] = nonces.get(account, 0) + 1
                tx = msg_tx(account, nonces[account], [withdraw_msg(account, q, number)])
                codes.append(r.block([tx]).tx_results[0].code)
    return codes


def test_isolated_open_and_close_at_the_oracle_keeps_every_pool_exact(ex):
    """Regression (a first version of this attack found it; fixed in 253600b while this file was written): the
    fees of a fill that closes an isolated position were paid from the cross pool while the isolated pool kept
    them. Now: after accounts 1 and 2 open and close 10 SOL, each pool holds exactly its subaccounts' quote
    balances (subaccounts:2 holds 0), and every account can withdraw everything."""
    _open_and_close_ten_sol(ex)
    for pool, (held, owed) in pool_breakdown(ex).items():
        assert held == owed, f"pool {encode_address(pool)} holds {held}, its subaccounts own {owed}"
    assert _withdraw_everything(ex, {1: 2, 2: 2}) == [0, 0, 0, 0]
    assert ex.balance_of(isolated_pool(SOL)) == 0 and ex.balance_of(CROSS_POOL) == 0


P170 = 17_000_000_000  # SOL $170


def _close_into_a_thin_isolated_pool(r: Replica) -> None:
    """Account 1 (subaccount 1: 1,000 USDC) buys 10 SOL at $150 from account 2 (subaccount 1: 100 USDC, short;
    TNC 99.85 >= IMR 75): pool subaccounts:2 holds 1,099.10. Account 3 (subaccount 0, no position) bids 10 SOL at
    $170 post-only; account 1 sells its 10 SOL into it (IOC, reduce-only): it closes, account 3 opens. Everyone
    stays solvent (account 2: TNC 99.85 at the $150 oracle; account 3 paid $200 over the oracle from 100,000)."""
    res = r.block([msg_tx(1, 1, [transfer_msg(1, 1, 1_000 * USD, to_number=1)]),
                   msg_tx(2, 1, [transfer_msg(2, 2, 100 * USD, to_number=1)])])
    assert [t.code for t in res.tx_results] == [0, 0]
    h = nxt(r)
    res = r.block([orders_tx(2, 2, [place(1, SELL, TEN_SOL, SOL_PRICE, pair=SOL, number=1, tif=POST_ONLY,
                                          height_hint=h)]),
                   orders_tx(1, 2, [place(1, BUY, TEN_SOL, SOL_PRICE, pair=SOL, number=1, tif=IOC, height_hint=h)])])
    assert [statuses(t) for t in res.tx_results] == [["resting"], ["filled"]]
    h = nxt(r)
    res = r.block([orders_tx(3, 1, [place(1, BUY, TEN_SOL, P170, pair=SOL, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 3, [place(2, SELL, TEN_SOL, P170, pair=SOL, number=1, tif=IOC, reduce_only=True,
                                          height_hint=h)])])
    assert [statuses(t) for t in res.tx_results] == [["resting"], ["filled"]]
    assert all(not risk.is_liquidatable() for risk in risks(r).values())


def test_closing_into_a_thin_isolated_pool_strands_usdc(ex):
    """What: in process_fill both sides are persisted taker first. When the taker closes an isolated position and
    the maker opens one, ``persist`` moves ``min(taker quote after, isolated pool balance)`` to the cross pool while
    the pool does not yet hold the maker's collateral; the cap silently binds. Reproduce: (setup above) account 1
    closes 10 SOL bought at $150 by selling at $170 to account 3, who opens. The pool held 1,099.10 (accounts 1 and
    2), account 1's quote after the fill is 1,198.40: only 1,099.10 move to cross. Nobody is insolvent, yet the
    cross pool now holds 99.30 USDC less than its subaccounts' balances and subaccounts:2 holds 99.30 more than its
    members'. The per-block check sums all pools, so it does not notice. Impact: USDC moves from cross users into an
    isolated pool; once the isolated traders leave, it stays there with no owner and the last cross withdrawal
    fails (next test). (The first version of this finding -- closing fees paid by the cross pool -- was fixed in
    253600b; this is the same accounting hole through the cap and the order of the two sides.) Fix: move the
    openers' collateral before the closers' (or net all pool moves of the fill at its end), never cap the move
    (a shortfall is bad debt for the insurance fund, not something to hide), and check the invariant per pool."""
    _close_into_a_thin_isolated_pool(ex)
    for pool, (held, owed) in pool_breakdown(ex).items():
        assert held == owed, f"pool {encode_address(pool)} holds {held}, its subaccounts own {owed}"


def test_after_a_capped_close_the_last_withdrawal_fails(ex):
    """Impact of the previous finding: account 2 then buys back its 10 SOL short from account 3 at $150 (both
    close; no SOL position is left). Every subaccount withdraws its whole quote balance: the cross pool runs out
    99.30 USDC early, the last withdrawal is refused although the subaccount shows the money, and subaccounts:2
    keeps 99.30 USDC that no subaccount owns."""
    _close_into_a_thin_isolated_pool(ex)
    h = nxt(ex)
    res = ex.block([orders_tx(3, 2, [place(2, SELL, TEN_SOL, SOL_PRICE, pair=SOL, tif=POST_ONLY, reduce_only=True,
                                           height_hint=h)]),
                    orders_tx(2, 3, [place(2, BUY, TEN_SOL, SOL_PRICE, pair=SOL, number=1, tif=IOC, reduce_only=True,
                                           height_hint=h)])])
    assert [statuses(t) for t in res.tx_results] == [["resting"], ["filled"]]
    assert json.loads(ex.app.query("/perpetuals/list", b"").value)["perpetuals"][SOL][
        "open_interest_base_quantums"] == "0"
    codes = _withdraw_everything(ex, {1: 3, 2: 3, 3: 2})
    assert codes == [0] * len(codes), codes
    assert ex.balance_of(isolated_pool(SOL)) == 0


def _dust_market_state() -> dict:
    """A perpetual the validation accepts: atomic resolution -30 (allowed: -30..30) on the BTC oracle, its pair with
    QCE -30, step 1 and tick 1. A position of 2^62 base quantums is 4.6e-12 BTC: notional, margin, fill value and
    fees all 0. Equity tiers off: the subaccounts hold no collateral, which is the point (dYdX's tiers would refuse
    their resting orders before OI could be reached)."""
    state = app_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, "short_term_order_equity_tiers": [],
                               "stateful_order_equity_tiers": []}
    state["perpetuals"]["perpetuals"].append({"id": 3, "ticker": "DUST-USD", "market_id": BTC,
                                              "atomic_resolution": -30, "liquidity_tier": 0,
                                              "market_type": "MARKET_TYPE_CROSS"})
    state["clob"]["clob_pairs"].append({"id": 3, "perpetual_id": 3, "step_base_quantums": "1",
                                        "subticks_per_tick": "1", "quantum_conversion_exponent": -30,
                                        "status": "CLOB_PAIR_STATUS_ACTIVE"})
    return state


def test_open_interest_beyond_uint64_halts_the_chain(tmp_path):
    """What: each position is bounded (int64, orders up to 2^62) but open interest, the *sum* of all longs, is stored
    in a uint64 proto field with no bound: ``perp.open_interest_base_quantums = old + delta`` raises ValueError
    ('Value out of range'), which is not an AppError. Reproduce: on a perpetual with atomic resolution -30 (accepted
    by MsgCreatePerpetual and genesis), accounts 1 and 2 trade 2^62 base quantums in four subaccount pairs (worth 0:
    no collateral needed); the fourth fill takes OI to 2^64. Impact: any user halts the chain once such a market
    exists. Fix: refuse a fill whose OI would leave uint64 (position_overflow, like the int64 position check), and
    refuse perpetual parameters where one step is worth less than one quote quantum at any sane price."""
    r = chain_of(tmp_path, _dust_market_state())
    q = 1 << 62
    h = nxt(r)
    sells = [place(n, SELL, q, 1, pair=3, number=n, tif=POST_ONLY, height_hint=h) for n in range(4)]
    buys = [place(n, BUY, q, 1, pair=3, number=n, tif=IOC, height_hint=h) for n in range(4)]
    res = r.block([orders_tx(2, 1, sells), orders_tx(1, 1, buys)])  # ValueError today
    buy_statuses = statuses(res.tx_results[1])
    assert buy_statuses[:3] == ["filled"] * 3 and buy_statuses[3] != "filled"
    check_global_money(r)
    r.close()


# =====================================================================================================================
# HIGH: a rule bypassed
# =====================================================================================================================

def test_an_unfunded_key_gets_free_order_txs_admitted(ex):
    """What: order txs pay no fee (docs/transactions.md: 'the fee makes a flood from many accounts cost money'), the
    budget of an account with zero balance is the base 50 requests / 200 cancels, and CheckTx admits an order tx as
    soon as one action 'would pass' -- and a batch cancel always passes (check_action only checks that the pair
    exists). Reproduce: KEYS[7] (never funded, no subaccount) signs a 12 KB MsgOrders of 100 batch cancels of 30
    client ids it never placed; CheckTx answers 0, the block includes it and writes an account record (nonce
    window, budget) for it. Keys are free, so a Sybil flood of such txs is unbounded and costs nothing, contrary to
    the admission design ('A Sybil flood is bounded by Σ budgets (collateral) and costs its fee per tx'). Fix:
    refuse order txs from a signer that has neither a bank balance nor a funded subaccount (or give such accounts a
    zero budget), and make CheckTx treat a cancel / batch cancel that would find no order as failing."""
    tx = orders_tx(7, 1, [batch_cancel(BTC, client_ids=range(1000, 1030))] * 100)
    assert ex.balance(7) == 0
    assert ex.app.check_tx(tx).code != 0


def test_a_clamped_reduce_only_maker_leaves_the_book_crossed(ex):
    """What: in match_taker a reduce-only maker's fill is clamped to its position, but its unfilled remainder stays
    on the book although the position is now 0; the taker then continues to worse levels and its remainder rests
    at its limit, above that ask. Reproduce: account 2 is long 0.1 BTC and rests a reduce-only sell of 0.3 BTC at
    $64,100; account 4 sends a resting buy of 0.5 BTC at $64,200: it fills 0.1, rests 0.4 at $64,200, while the
    0.2 reduce-only ask at $64,100 stays. The docs promise 'The book is never crossed after any action'. Impact:
    post-only quotes are refused against a phantom price, the L2 book (and any mark price built on it) shows a
    crossed market, and the resting bid is not matched although a crossing ask is shown. Fix: after a reduce-only
    maker's clamped fill, remove it (or shrink its remaining) when it has nothing left to reduce, and skip it when
    its room is 0 before the taker rests."""
    h = nxt(ex)
    ex.block([orders_tx(3, 1, [place(1, SELL, 1000 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h)]),
              orders_tx(2, 1, [place(1, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    res = ex.block([orders_tx(2, 2, [place(2, SELL, 3000 * BTC_STEP, 64_100 * ONE_DOLLAR_BTC, reduce_only=True,
                                           height_hint=nxt(ex))])])
    assert statuses(res.tx_results[0]) == ["resting"]
    res = ex.block([orders_tx(4, 1, [place(1, BUY, 5000 * BTC_STEP, 64_200 * ONE_DOLLAR_BTC, height_hint=nxt(ex))])])
    assert [f["quantums"] for f in fills_of(res.tx_results[0])] == [str(1000 * BTC_STEP)]
    bid, ask = best_prices(ex, "BTC-USD")
    assert bid is None or ask is None or bid < ask, f"crossed book: bid {bid} >= ask {ask}"


# =====================================================================================================================
# MEDIUM
# =====================================================================================================================

def test_market_order_slippage_above_the_chain_bound_is_accepted(ex):
    """What: docs/exchange.md gives market orders 'at most 50 %' slippage and ClobParams has
    max_market_slippage_ppm = 500,000, but validate_place_stateless only refuses >= 1,000,000 and nothing reads the
    param on chain (only node/cli/clob.py). Reproduce: a market buy with market_slippage_ppm 900,000 on BTC at
    $64,000 gets a protective limit of $121,600 and is accepted. Impact: a rule of the chain is not enforced; a
    wallet or bot that builds its own tx can sweep the book to 1.9x the oracle (or sell at 0.000001x) in one
    action. Fix: refuse market_slippage_ppm > params.max_market_slippage_ppm in validate_place (CheckTx and
    FinalizeBlock)."""
    res = ex.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, 0, slippage_ppm=900_000, height_hint=nxt(ex))])])
    (action,) = actions_of(res.tx_results[0])
    assert action["status"] == "rejected", action


# =====================================================================================================================
# LOW: genesis validation (operator input, but it halts the node later or raises a non-AppError at InitChain)
# =====================================================================================================================

def test_genesis_stats_of_the_wrong_length_halt_the_first_order(tmp_path):
    """What: clob.init_genesis stores ``bytes.fromhex(buckets)`` as is; _decode_buckets later unpacks 24-byte
    records. Reproduce: genesis stats {owner: account 1, buckets: '00'*5}; account 1 places any order. Impact: the
    genesis (or an exported-and-edited state) passes InitChain and the chain halts at the first order of that owner
    (CheckTx raises first: the node stops). Fix: validate the length (multiple of 24), ascending days and the
    global entry in init_genesis; answer AppError(invalid_genesis)."""
    state = app_state()
    state["clob"]["stats"] = [{"owner": ADDRS[1], "buckets": "00" * 5}]
    r = Replica(tmp_path / "db")
    try:
        r.init_chain(state)
    except errors.AppError:
        r.close()
        return  # refused at genesis: fixed
    r.block([])
    tx = orders_tx(1, 1, [place(1, BUY, BTC_STEP, 60_000 * ONE_DOLLAR_BTC, height_hint=nxt(r))])
    try:
        assert r.app.check_tx(tx).code == 0
        assert statuses(r.block([tx]).tx_results[0]) == ["resting"]
    finally:
        r.close()


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda s: s["clob"].__setitem__("stats", [{"owner": ADDRS[1], "buckets": "abc"}]),
                 id="stats not hex"),
    pytest.param(lambda s: s["clob"].__setitem__("next_sequence", "-1"), id="negative next_sequence"),
    pytest.param(lambda s: s["clob"].__setitem__("orders", [{
        "owner": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "subaccount_number": 300, "client_id": 1, "clob_pair_id": 0,
        "side": "SIDE_BUY", "quantums": "1000000", "subticks": "100000", "good_til_block": "5",
        "remaining_quantums": "1000000"}]), id="order of subaccount 300"),
])
def test_odd_clob_genesis_raises_app_error(tmp_path, mutate):
    """What: clob.init_genesis converts without checks (bytes.fromhex, int().to_bytes, bytes((number,))). Impact:
    an operator gets a traceback instead of a clear invalid_genesis; for CometBFT a non-AppError in InitChain is a
    crash. Fix: validate every field (hex, ranges, subaccount number <= 127, flags 0/64, side, tick/step) and
    raise AppError(ERR_INVALID_GENESIS)."""
    state = app_state()
    mutate(state)
    r = Replica(tmp_path / "db")
    try:
        with pytest.raises(errors.AppError):
            r.init_chain(state)
    finally:
        r.close()


@pytest.mark.parametrize("subaccounts, open_interest", [
    pytest.param([{"owner": ADDRS[5], "number": 0, "quote_balance_quote_quantums": "0",
                   "positions": [{"perpetual_id": BTC, "size_base_quantums": str(ONE_BTC)}]}], {},
                 id="a long without a short, OI 0"),
    pytest.param([{"owner": ADDRS[5], "number": 0, "quote_balance_quote_quantums": "0",
                   "positions": [{"perpetual_id": BTC, "size_base_quantums": str(ONE_BTC)},
                                 {"perpetual_id": SOL, "size_base_quantums": str(-ONE_SOL)}]},
                  {"owner": ADDRS[4], "number": 1, "quote_balance_quote_quantums": "0",
                   "positions": [{"perpetual_id": BTC, "size_base_quantums": str(-ONE_BTC)},
                                 {"perpetual_id": SOL, "size_base_quantums": str(ONE_SOL)}]}],
                 {BTC: ONE_BTC, SOL: ONE_SOL}, id="isolated and cross positions in one subaccount"),
])
def test_genesis_positions_breaking_the_invariants_are_refused(tmp_path, subaccounts, open_interest):
    """What: subaccounts.check_genesis checks only USDC (Σ pools = Σ quote balances). It does not check Σ long =
    Σ short = open interest per perpetual, the isolated-market rule, nor per-pool backing. Reproduce: genesis with
    a 1 BTC long and no short (OI 0), or subaccounts holding BTC and SOL (isolated) together. Impact: an exported
    and edited (or hand-written) genesis starts a chain whose invariants are already broken, and
    check_block_invariants, which compares deltas, never notices. Fix: check_genesis verifies, per perpetual,
    Σ long = Σ short = OI, every subaccount against validate_isolated_update, and each pool against its members."""
    state = app_state()
    state["subaccounts"]["subaccounts"] = subaccounts
    for perp in state["perpetuals"]["perpetuals"]:
        perp["open_interest_base_quantums"] = str(open_interest.get(perp["id"], 0))
    r = Replica(tmp_path / "db")
    try:
        with pytest.raises(errors.AppError):
            r.init_chain(state)
    finally:
        r.close()


def test_check_tx_looks_at_every_msg_orders_of_a_tx(ex):
    """What: CheckTx runs check_orders per message, and check_orders raises when none of *that message's* actions
    passes, so the tx is refused although the same actions in one MsgOrders are admitted (and FinalizeBlock runs
    them all, one status each). Reproduce: msgs [MsgOrders(cancel of an unknown order), MsgOrders(a valid bid)]:
    CheckTx 706; the same two actions in one MsgOrders: 0. Impact: a client batching by message gets valid
    placements refused at the mempool. Fix: decide over all actions of the tx (check the tx's flattened action
    list once)."""
    good = place(1, BUY, BTC_STEP, P64K // 2, height_hint=nxt(ex))
    tx = msg_tx(1, 1, [tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[cancel(5)])),
                       tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[good]))])
    assert ex.app.check_tx(orders_tx(1, 2, [cancel(5), good])).code == 0
    assert ex.app.check_tx(tx).code == 0


# =====================================================================================================================
# Attacks that did NOT work (regression tests)
# =====================================================================================================================

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_flow_conserves_usdc_and_replicas_agree(tmp_path, seed):
    """Random traffic over 30 blocks (orders of every kind on BTC/ETH/SOL-isolated, cancels, batch cancels,
    cancel-replaces, deposits, withdrawals to others, transfers across pools, oracle moves ±0.5..5 %), replayed by
    four replicas: plain, FinalizeBlock twice before Commit, a reordered block finalized first, and restarted
    before and in the middle of every block. Checks after every block: identical app hashes, tx results and
    events; Σ bank balances = supply; the pools together hold Σ quote balances; Σ long = Σ short = open
    interest; and, in blocks without an oracle move, no update takes a subaccount from NC >= MMR to NC < MMR
    (a fill may end below initial margin only if it is 'not worse', which keeps NC/MMR >= 1)."""
    chain = LockStep(tmp_path, random_flow_state())
    flow = RandomFlow(seed)
    fills = 0
    try:
        for _ in range(30):
            txs, prices = flow.block_txs(chain.height() + 1)
            before = risks(chain.main)
            res = chain.block(txs, prices)
            fills += sum(len(fills_of(t)) for t in res)
            check_global_money(chain.main)
            if prices is None:
                after = risks(chain.main)
                for key, risk in after.items():
                    old = before.get(key)
                    if old is not None and old.is_maintenance_collateralized():
                        assert risk.is_maintenance_collateralized(), (key, old, risk)
        assert fills > 10  # the flow really trades
    finally:
        chain.close()


def test_fee_collector_is_never_drained_by_rebates_on_tiny_fills(tmp_path):
    """The largest allowed rebate (-10,000 ppm) against the lowest taker fee (10,000 ppm): rebates round toward 0,
    fees up, the taker's fee is paid before the maker's rebate. 200 one-step fills at the lowest price (1 tick =
    $1 for 0.0001 BTC: quote 100 quantums: fee 1, rebate -1) and at odd prices: the fee collector never goes
    negative, and USDC is conserved."""
    state = app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": -10_000, "taker_fee_ppm": 10_000}])
    r = chain_of(tmp_path, state)
    for i, dollars in enumerate((1, 3, 7, 63_999, 64_001)):
        h = nxt(r)
        res = r.block([orders_tx(2, 1 + i, [place(100 * i + k, SELL, BTC_STEP, dollars * ONE_DOLLAR_BTC,
                                                  tif=POST_ONLY, height_hint=h) for k in range(40)]),
                       orders_tx(1, 1 + i, [place(100 * i + k, BUY, BTC_STEP, dollars * ONE_DOLLAR_BTC, tif=IOC,
                                                  height_hint=h) for k in range(40)])])
        fs = fills_of(res.tx_results[1])
        assert len(fs) == 40
        for f in fs:
            assert int(f["taker_fee_quote_quantums"]) + int(f["maker_fee_quote_quantums"]) >= 0
        check_global_money(r)
    assert r.balance_of(FEE_COLLECTOR_ADDRESS) >= 0
    r.close()


def _hundred_percent_oi_state() -> dict:
    """SOL (isolated) with OI caps 0 / 1,000 USDC: 10 SOL ($1,500) of open interest puts IMF at 100 %.
    Accounts 1..4 start with 2,000 USDC each."""
    state = app_state()
    tier = state["perpetuals"]["liquidity_tiers"][1]
    tier["open_interest_lower_cap_quote_quantums"] = "0"
    tier["open_interest_upper_cap_quote_quantums"] = str(1_000 * USD)
    for d in state["subaccounts"]["deposits"]:
        d["amount_quote_quantums"] = str(2_000 * USD)
    return state


def test_hundred_percent_oi_negative_tnc_cannot_withdraw_transfer_or_grow(tmp_path):
    """Account 1 holds all the open interest (long 10 SOL), account 2 is short 10 SOL; OI notional $1,500 >= the
    upper cap: IMF 100 %. The precheck of account 3's 7 SOL buy saw IMF at the current OI, the fill sees the
    post-trade OI (IMF 100 %): account 2 (the maker) cannot carry 17 SOL short and is removed, nothing fills.
    Then SOL triples to $450: account 2's TNC is -1,000.15 USDC. It cannot withdraw, transfer out, sell more
    (grow), buy back at the oracle (its NC/MMR would fall), or trade another market; a deposit in is accepted.
    Account 1 (all the OI) can withdraw exactly its free collateral (IMR = 100 % of notional) and no more.
    When SOL then falls to $50, the scaled IMF falls too (OI notional $500: IMF 52.5 %) and frees collateral that
    account 1 can withdraw; a further fall to $10 takes it below zero, and it is then stuck the same way."""
    r = chain_of(tmp_path, _hundred_percent_oi_state(), ve=True)
    h = nxt(r)
    _, res = price_block(r, [orders_tx(2, 1, [place(1, SELL, 2 * TEN_SOL, SOL_PRICE, pair=SOL, tif=POST_ONLY,
                                                    height_hint=h)]),
                             orders_tx(1, 1, [place(1, BUY, TEN_SOL, SOL_PRICE, pair=SOL, tif=IOC, height_hint=h)]),
                             orders_tx(3, 1, [place(1, BUY, 7 * ONE_SOL, SOL_PRICE, pair=SOL, tif=IOC,
                                                    height_hint=h)])])
    assert [statuses(t) for t in res] == [["resting"], ["filled"], ["not_filled"]]
    s1, s2 = subaccount(r, 1), subaccount(r, 2)
    assert s1["initial_margin_requirement_quote_quantums"] == str(1_500 * USD)  # 100 % of $1,500
    assert s2["initial_margin_requirement_quote_quantums"] == str(1_500 * USD)
    price_block(r, prices={SOL: 3 * SOL_PRICE})
    s2 = subaccount(r, 2)
    assert int(s2["total_net_collateral_quote_quantums"]) == -1_000_150_000
    h = nxt(r)
    _, res = price_block(r, [
        msg_tx(2, 10, [withdraw_msg(2, 1)]),
        msg_tx(2, 11, [transfer_msg(2, 3, 1)]),
        msg_tx(2, 12, [transfer_msg(2, 2, 1, to_number=1)]),
        orders_tx(2, 13, [place(2, SELL, SOL_STEP, 3 * SOL_PRICE, pair=SOL, height_hint=h),
                          place(3, BUY, SOL_STEP, 3 * SOL_PRICE, pair=SOL, height_hint=h),
                          place(4, BUY, BTC_STEP, P64K, height_hint=h)]),
        orders_tx(4, 1, [place(1, SELL, SOL_STEP, 3 * SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h)]),
    ])
    assert [t.code for t in res[:3]] == [errors.ERR_STILL_UNDERCOLLATERALIZED.code] * 3
    refused = actions_of(res[3])
    assert [a["status"] for a in refused] == ["rejected", "rejected", "rejected"], refused
    assert [a["code"] for a in refused] == [str(errors.ERR_STILL_UNDERCOLLATERALIZED.code)] * 2 + [
        str(errors.ERR_ISOLATED_MARKET_CONSTRAINT.code)]
    # Account 1: TNC 4,999.25, IMR 4,500 (100 %): 499.25 free, not a quantum more.
    _, res = price_block(r, [msg_tx(1, 10, [withdraw_msg(1, 499_250_001)]),
                             msg_tx(1, 11, [withdraw_msg(1, 499_250_000)])])
    assert [t.code for t in res] == [errors.ERR_NEWLY_UNDERCOLLATERALIZED.code, 0]
    # SOL $50: account 1's quote balance is 0 now, so TNC = 10 x $50 = 500; OI notional $500 -> IMF 5 % + 95 % x 0.5
    # = 52.5 %: IMR 262.5; 237.5 free.
    price_block(r, prices={SOL: SOL_PRICE // 3})
    s1 = subaccount(r, 1)
    assert s1["initial_margin_requirement_quote_quantums"] == str(262_500_000)
    _, res = price_block(r, [msg_tx(1, 12, [withdraw_msg(1, 237_500_001)]),
                             msg_tx(1, 13, [withdraw_msg(1, 237_500_000)])])
    assert [t.code for t in res] == [errors.ERR_NEWLY_UNDERCOLLATERALIZED.code, 0]
    price_block(r, prices={SOL: SOL_PRICE // 15})  # $10
    s1 = subaccount(r, 1)
    assert int(s1["total_net_collateral_quote_quantums"]) < 0
    h = nxt(r)
    _, res = price_block(r, [msg_tx(1, 14, [withdraw_msg(1, 1)]),
                             orders_tx(1, 15, [place(5, BUY, SOL_STEP, SOL_PRICE // 15, pair=SOL, height_hint=h)])])
    assert res[0].code == errors.ERR_STILL_UNDERCOLLATERALIZED.code
    assert statuses(res[1]) == ["rejected"]
    check_global_money(r)
    r.close()


def test_input_edges_never_raise_anything_but_app_errors(tmp_path):
    """Huge and zero sizes and prices, client id 2^32-1, subaccounts 127 and 128, good-til values at the type limits,
    unknown pairs, 200-action batches that cancel and re-place one id, a 200-id batch cancel, a 201-id one, market
    orders at 1 ppm and 999,999 ppm, flags 63: every action gets a status, nothing escapes FinalizeBlock or CheckTx,
    money is conserved, replicas agree."""
    chain = LockStep(tmp_path, app_state())
    r = chain.main
    h = chain.height() + 1
    t0 = 1_700_000_000_000_000_000
    big = (1 << 62) - (1 << 62) % BTC_STEP
    odd = [
        place(1, BUY, UINT64_MAX, P64K, height_hint=h),
        place(2, BUY, 0, P64K, height_hint=h),
        # refused (606): as if filled at its price, it would pay ~8.5e28 quote quantums, beyond the int64 a quote
        # balance is stored in (it used to rest; session-10 probe)
        place(3, SELL, big, UINT64_MAX - UINT64_MAX % 100_000, height_hint=h),
        place(4, BUY, big, 100_000, height_hint=h),  # needs 460M USD of margin
        place(15, BUY, 1 << 62, 100_000, height_hint=h),  # off-step
        place(2**32 - 1, BUY, BTC_STEP, P64K // 2, number=127, height_hint=h),  # empty subaccount
        place(5, BUY, BTC_STEP, P64K // 2, number=128, height_hint=h),
        place(6, BUY, BTC_STEP, P64K // 2, gtb=UINT64_MAX),
        place(7, BUY, BTC_STEP, P64K // 2, gtbt_ns=2**63 - 1),
        place(8, BUY, BTC_STEP, P64K // 2, gtbt_ns=t0 + 95 * 86_400 * 10**9),
        place(9, BUY, BTC_STEP, P64K // 2, pair=2**32 - 1, height_hint=h),
        place(10, BUY, BTC_STEP, 0, slippage_ppm=1, height_hint=h),
        place(11, SELL, BTC_STEP, 0, slippage_ppm=999_999, height_hint=h),
        place(12, SELL, BTC_STEP, 0, slippage_ppm=1_000_000, height_hint=h),
        place(13, BUY, big, 0, slippage_ppm=999_999, height_hint=h),
        tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(client_id=1, order_flags=63))),
        tx_pb2.OrderAction(),
        batch_cancel(BTC, client_ids=range(200)),
        batch_cancel(BTC, client_ids=range(201)),
        batch_cancel(2**32 - 1),
        cancel_replace(2**32 - 1, place(14, BUY, BTC_STEP, P64K // 2, height_hint=h), number=127),
    ]
    assert r.app.check_tx(orders_tx(1, 1, odd)).code == 0
    refused = r.app.check_tx(orders_tx(1, 2, odd[2:3]))
    assert refused.code == errors.ERR_POSITION_OVERFLOW.code and "beyond int64" in refused.log, refused.log
    res = chain.block([orders_tx(1, 1, odd)])
    assert len(actions_of(res[0])) == len(odd) + 1  # the cancel-replace reports both halves
    huge_ask = next(a for a in actions_of(res[0]) if a.get("client_id") == "3")
    assert huge_ask["status"] == "rejected" and huge_ask["code"] == str(errors.ERR_POSITION_OVERFLOW.code)
    # 200 actions: cancel and re-place the same client id, alternating; and orders on many pairs in one tx.
    h = chain.height() + 1
    churn = []
    for i in range(100):
        churn += [cancel(77), place(77, BUY, BTC_STEP, (50_000 + i) * ONE_DOLLAR_BTC, height_hint=h)]
    many = [place(i, BUY, BTC_STEP, 1_000 * ONE_DOLLAR_BTC, pair=p, height_hint=h) for i in range(50)
            for p in (BTC, ETH, SOL, 9)]
    res = chain.block([orders_tx(2, 1, churn), orders_tx(3, 1, many[:200])])
    st = statuses(res[0])
    # cancels run first (none found), then the first placement rests, the 99 others find the id taken
    assert st.count("rejected") == 199 and st.count("resting") == 1
    assert len(actions_of(res[1])) == 200
    check_global_money(r)
    chain.close()


def test_odd_perpetual_parameters_do_not_raise(tmp_path):
    """MsgCreatePerpetual (authority) with atomic resolution ±30, QCE ±30, tick and step 1 and uint64 max, on the
    BTC oracle; then orders of every size and price edge, fills, queries: nothing escapes but AppError, money is
    conserved. (The one overflow found on such a market is the open-interest finding above.)"""
    r = chain_of(tmp_path)
    msgs = []
    combos = [(30, -30, 1, 1), (-30, 30, 1, 1), (30, 30, UINT64_MAX, UINT64_MAX), (-30, -30, 1, UINT64_MAX)]
    for i, (res_, qce, step, tick) in enumerate(combos):
        pid = 10 + i
        msgs.append(tx_pb2.Msg(create_perpetual=tx_pb2.MsgCreatePerpetual(
            authority=ADDRS[0],
            perpetual=exchange_pb2.Perpetual(id=pid, ticker=f"ODD{i}-USD", market_id=BTC, atomic_resolution=res_,
                                             liquidity_tier=0, market_type=exchange_pb2.MARKET_TYPE_ISOLATED
                                             if i % 2 else exchange_pb2.MARKET_TYPE_CROSS),
            clob_pair=exchange_pb2.ClobPair(id=pid, perpetual_id=pid, step_base_quantums=step, subticks_per_tick=tick,
                                            quantum_conversion_exponent=qce, status=1))))
    res = r.block([msg_tx(0, 1, msgs)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    nonce = {1: 0, 2: 0}
    for pid in range(10, 14):
        h = nxt(r)
        acts = {1: [], 2: []}
        for k, (q, s) in enumerate([(1, 1), (1 << 62, 1), (1, UINT64_MAX), (1 << 40, 1 << 40)]):
            acts[2].append(place(k, SELL, q, s, pair=pid, tif=POST_ONLY, height_hint=h))
            acts[1].append(place(k, BUY, q, s, pair=pid, tif=IOC, height_hint=h))
            acts[1].append(place(100 + k, BUY, q, 0, pair=pid, slippage_ppm=500_000, height_hint=h))
        txs = []
        for a in (2, 1):
            nonce[a] += 1
            txs.append(orders_tx(a, nonce[a], acts[a]))
            assert r.app.check_tx(txs[-1]).code in (0, errors.ERR_NEWLY_UNDERCOLLATERALIZED.code,
                                                    errors.ERR_INVALID_SUBTICKS.code, errors.ERR_INVALID_QUANTUMS.code,
                                                    errors.ERR_POSITION_OVERFLOW.code)
        r.block(txs)
        for a in (1, 2):
            assert r.app.query(f"/subaccounts/of/{ADDRS[a]}", b"").code == 0
        assert r.app.query(f"/clob/orderbook/{pid}", b"").code == 0
        check_global_money(r)
    assert r.app.query("/perpetuals/list", b"").code == 0
    r.close()


def test_refused_actions_leave_no_trace_in_book_or_state(tmp_path):
    """A FOK that removes its owner's own ask (self-trade prevention) and fills three levels before it fails, a
    cancel-replace whose placement is refused after its cancel succeeded, a post-only that would cross: only the
    cancel half stays (order 9 gone); the self-trade removal and the fills are rolled back (no event, own ask 8
    still rests, balances unchanged); the replicas (journaled book, FinalizeBlock twice or reordered first,
    rebuilt after a restart) agree, and the next taker trades against exactly the old book."""
    a = LockStep(tmp_path / "a", app_state())
    h = a.height() + 1
    setup = [orders_tx(2, 1, [place(i, SELL, 1000 * BTC_STEP, (64_000 + i) * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                    height_hint=h + 10) for i in range(3)]),
             orders_tx(1, 1, [place(8, SELL, 1000 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h + 10),
                              place(9, SELL, 1000 * BTC_STEP, P64K, tif=POST_ONLY, height_hint=h + 10)])]
    a.block(setup)
    state_before = {k: subaccount(a.main, k) for k in (1, 2, 3)}
    h = a.height() + 1
    res = a.block([orders_tx(1, 2, [
        place(20, BUY, 10_000 * BTC_STEP, 64_010 * ONE_DOLLAR_BTC, tif=FOK, height_hint=h),  # STP, 3 levels, fails
        cancel_replace(9, place(21, BUY, 10_000 * ONE_BTC, 63_000 * ONE_DOLLAR_BTC, height_hint=h)),  # place refused
        place(22, BUY, BTC_STEP, 64_002 * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h),  # would cross
    ])])
    st = [(x["kind"], x.get("step"), x.get("client_id"), x["status"], x.get("code")) for x in actions_of(res[0])]
    assert st == [
        ("cancel_replace", "cancel", "9", "canceled", None),
        ("place", None, "22", "rejected", str(errors.ERR_POST_ONLY_WOULD_CROSS.code)),
        ("place", None, "20", "rejected", str(errors.ERR_FILL_OR_KILL_NOT_FILLED.code)),
        ("cancel_replace", "place", "21", "rejected", str(errors.ERR_NEWLY_UNDERCOLLATERALIZED.code)),
    ], st
    assert [e.type for e in res[0].events if e.type not in ("order_action", "tx")] == ["order_removed"]  # the cancel
    book_after = json.loads(a.main.app.query("/clob/orderbook/BTC-USD", b"").value)
    assert book_after["bids"] == []
    assert [(lv["price"], lv["orders"]) for lv in book_after["asks"]] == [("64000", 2), ("64001", 1), ("64002", 1)]
    after = {k: subaccount(a.main, k) for k in (1, 2, 3)}
    # account 1's short-term orders: 8 and 9 before, 8 after (the cancel half stays); everything else unchanged
    assert [state_before[1].pop("open_orders")["short_term"]["open"],
            after[1].pop("open_orders")["short_term"]["open"]] == [2, 1]
    assert after == state_before
    res = a.block([orders_tx(3, 1, [place(1, BUY, 2500 * BTC_STEP, 64_002 * ONE_DOLLAR_BTC, tif=IOC,
                                          height_hint=a.height() + 1)])])
    assert [(f["maker"], f["maker_client_id"]) for f in fills_of(res[0])] == [
        (ADDRS[2], "0"), (ADDRS[1], "8"), (ADDRS[2], "1")]
    check_global_money(a.main)
    a.close()


def test_orders_expiring_in_a_block_are_gone_before_its_takers(tmp_path):
    """Expiry runs before the order phase: a short-term ask good til H and a long-term ask good til the block time
    of H+1 rest through H; a taker in H+1 that would cross both finds neither, and a fresh ask placed in H+1
    itself fills it. Money and the four replica modes agree."""
    from tests.helpers import BLOCK_INTERVAL_NS, GENESIS_TIME_NS

    chain = LockStep(tmp_path, app_state())
    h = chain.height() + 1
    res = chain.block([orders_tx(2, 1, [
        place(1, SELL, 1000 * BTC_STEP, P64K, gtb=h, tif=POST_ONLY),
        place(2, SELL, 1000 * BTC_STEP, P64K, gtbt_ns=GENESIS_TIME_NS + (h + 1) * BLOCK_INTERVAL_NS, tif=POST_ONLY),
    ])])
    assert statuses(res[0]) == ["resting", "resting"]
    h = chain.height() + 1
    res = chain.block([orders_tx(1, 1, [place(1, BUY, 2000 * BTC_STEP, 64_001 * ONE_DOLLAR_BTC, tif=IOC,
                                              height_hint=h)]),
                       orders_tx(3, 1, [place(1, SELL, 1000 * BTC_STEP, 64_001 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                              height_hint=h)])])
    assert [(f["maker"], f["subticks"]) for f in fills_of(res[0])] == [(ADDRS[3], str(64_001 * ONE_DOLLAR_BTC))]
    assert actions_of(res[0])[0]["remaining_quantums"] == str(1000 * BTC_STEP)
    assert best_prices(chain.main, "BTC-USD") == (None, None)
    check_global_money(chain.main)
    chain.close()


def test_order_tx_budget_counts_every_action_of_every_message(ex):
    """Admission: a tx with two MsgOrders (30 placements; 20 cancels + 10 cancel-replaces) uses 40 requests and 30
    cancels, as many as it executes; 201 actions spread over two messages are refused as a whole."""
    h = nxt(ex)
    first = tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[
        place(i, BUY, BTC_STEP, (50_000 + i) * ONE_DOLLAR_BTC, height_hint=h) for i in range(30)]))
    second = tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[cancel(100 + i) for i in range(20)] + [
        cancel_replace(i, place(200 + i, BUY, BTC_STEP, 40_000 * ONE_DOLLAR_BTC, height_hint=h)) for i in range(10)]))
    before = auth_keeper.get_params(committed(ex))
    res = ex.block([msg_tx(1, 1, [first, second])])
    assert res.tx_results[0].code == 0
    acct = auth_keeper.get_account(committed(ex), raw(1))
    capacity = before.max_capacity_requests  # 900,000 USDC in the bank: capped
    assert (acct.requests, acct.cancels) == (capacity - 40, capacity * before.cancel_multiplier - 30)
    big = msg_tx(1, 2, [tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[cancel(i) for i in range(101)])),
                        tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[cancel(i) for i in range(100)]))])
    assert ex.app.check_tx(big).code == errors.ERR_TOO_MANY_ACTIONS.code
    assert ex.block([big]).tx_results[0].code == errors.ERR_TOO_MANY_ACTIONS.code


def test_isolated_pool_moves_keep_the_total_and_refuse_mixing(ex):
    """Isolated collateral moves: a subaccount opens SOL (its whole quote balance moves to subaccounts:2), then
    cannot trade BTC, a cross subaccount with BTC cannot open SOL, transfers between a cross and an isolated
    subaccount move bank USDC between the pools, a position flip inside SOL keeps the pool, and withdrawals to
    other addresses leave every pool backing exactly its subaccounts."""
    h = nxt(ex)
    ex.block([orders_tx(3, 1, [place(1, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h),
                               place(2, SELL, TEN_SOL, SOL_PRICE, pair=SOL, tif=POST_ONLY, number=0,
                                     height_hint=h)])])
    res = ex.block([orders_tx(1, 1, [place(1, BUY, ONE_BTC // 10, P64K, tif=IOC, height_hint=nxt(ex)),
                                     place(2, BUY, TEN_SOL, SOL_PRICE, pair=SOL, tif=IOC, height_hint=nxt(ex))])])
    st = actions_of(res.tx_results[0])
    assert st[0]["status"] == "filled" and st[1]["code"] == str(errors.ERR_ISOLATED_MARKET_CONSTRAINT.code)
    # account 4: subaccount 1 opens SOL against account 3's remaining... account 3 holds BTC short: it cannot
    # make SOL (its resting SOL ask was placed before it held BTC and is removed at the fill).
    res = ex.block([msg_tx(4, 1, [transfer_msg(4, 4, 10_000 * USD, to_number=1)]),
                    orders_tx(4, 2, [place(1, BUY, TEN_SOL, SOL_PRICE, pair=SOL, number=1, tif=IOC,
                                           height_hint=nxt(ex))])])
    removed = [dict(e.attributes) for e in res.tx_results[1].events if e.type == "order_removed"]
    assert removed and removed[0]["reason"].startswith("collateral")
    h = nxt(ex)
    res = ex.block([orders_tx(2, 1, [place(1, SELL, TEN_SOL, SOL_PRICE, pair=SOL, tif=POST_ONLY, height_hint=h)]),
                    orders_tx(4, 3, [place(2, BUY, TEN_SOL, SOL_PRICE, pair=SOL, number=1, tif=IOC,
                                           height_hint=h)])])
    assert statuses(res.tx_results[1]) == ["filled"]
    pool = isolated_pool(SOL)
    assert subaccount(ex, 4, 1)["collateral_pool"] == encode_address(pool)
    # 4/1 flips from long 10 to short 10 SOL: one fill of 20 against account 2's bid; still isolated.
    h = nxt(ex)
    res = ex.block([orders_tx(2, 2, [place(2, BUY, 2 * TEN_SOL, SOL_PRICE, pair=SOL, tif=POST_ONLY,
                                           height_hint=h)]),
                    orders_tx(4, 4, [place(3, SELL, 2 * TEN_SOL, SOL_PRICE, pair=SOL, number=1, tif=IOC,
                                           height_hint=h)])])
    assert statuses(res.tx_results[1]) == ["filled"]
    assert subaccount(ex, 4, 1)["positions"][0]["size_base_quantums"] == str(-TEN_SOL)
    assert subaccount(ex, 4, 1)["collateral_pool"] == encode_address(pool)
    # transfers across pools and withdrawals to another address
    res = ex.block([msg_tx(4, 5, [transfer_msg(4, 1, 1_000 * USD, number=1, to_number=3)]),
                    msg_tx(1, 2, [transfer_msg(1, 4, 500 * USD, to_number=1)]),
                    msg_tx(4, 6, [withdraw_msg(4, 100 * USD, number=1, recipient=ADDRS[5])]),
                    msg_tx(2, 3, [deposit_msg(2, 7 * USD)])])
    assert [t.code for t in res.tx_results] == [0, 0, 0, 0], [t.log for t in res.tx_results]
    check_global_money(ex)
