"""Attacks on the exchange, session 5b: restart / rebuild consistency of the in-memory book, genesis export ->
InitChain round trips, market status and liquidity-tier changes with live orders and positions, admission budgets
at their exact edges, query numbers worked by hand, and the CLI's human-unit conversions.

Markets and units as in tests/test_attack_session5.py: BTC-USD oracle $64,000, a fill's quote = subticks ×
quantums ÷ 1e9, tick $1 = 100,000 subticks, step 0.0001 BTC = 1e6 base quantums, 0.1 BTC = 1e9 base quantums =
6,400 USDC at $64,000. IM 5 %, MF 60 % (MM 3 %). Accounts 1..4 hold 100,000 USDC in subaccount 0 (and 900,000 USDC
in the bank). Default fee tier 1: maker 100 ppm, taker 500 ppm. Every number in a docstring is worked by hand.
"""

from __future__ import annotations

import copy
import json

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app import errors

from tests.attack_helpers import app_state, cancel_replace, check_global_money, statuses
from tests.exchange_helpers import (
    BTC,
    BUY,
    ETH,
    IOC,
    ONE_BTC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    actions_of,
    book,
    cancel,
    fills_of,
    msg_tx,
    orders_tx,
    place,
    subaccount,
)
from tests.helpers import ADDRS, BLOCK_INTERVAL_NS, CHAIN_ID, GENESIS_TIME_NS, ONE_USDC, VALIDATOR_KEYS
from tests.mutation_helpers import MemReplica, mem_exchange
from tests.test_attack_session5 import asks, bids, exact_pools, nxt, size

USD = ONE_USDC
P64K = 64_000 * ONE_DOLLAR_BTC
TENTH = ONE_BTC // 10
D = ONE_DOLLAR_BTC


def _queries(r) -> dict:
    """Every answer a client could compare: books (full depth), orders and subaccounts of accounts 1..4, balances."""
    out = {}
    for m in ("BTC-USD", "ETH-USD", "SOL-USD"):
        out["book " + m] = r.app.query(f"/clob/orderbook/{m}/1000", b"").value
    for a in (1, 2, 3, 4):
        out[f"orders {a}"] = r.app.query(f"/clob/orders/{ADDRS[a]}", b"").value
        out[f"subs {a}"] = r.app.query(f"/subaccounts/of/{ADDRS[a]}", b"").value
        out[f"bank {a}"] = r.app.query(f"/bank/balance/{ADDRS[a]}", b"").value
        out[f"auth {a}"] = r.app.query(f"/auth/account/{ADDRS[a]}", b"").value
    out["perps"] = r.app.query("/perpetuals/list", b"").value
    out["prices"] = r.app.query("/prices/markets", b"").value
    return out


def _twin_blocks(a, b, txs, restart_b: bool = True):
    """The same block on both replicas (b restarted first): identical results and app hashes."""
    if restart_b:
        b.restart()
    ra, rb = a.block(list(txs)), b.block(list(txs))
    assert ra.app_hash == rb.app_hash
    assert ra.tx_results == rb.tx_results
    assert ra.events == rb.events
    return ra


def _book_state(r, pair: int = BTC):
    """(open counts per pair and per kind, index) of the in-memory book, normalised for comparison."""
    books = r.app.committed_books()
    side = books.pair(pair)
    return (dict(books.open_counts), dict(books.kind_counts), dict(books.index),
            [(p, list(side.bids.levels[p])) for p in side.bids.prices],
            [(p, list(side.asks.levels[p])) for p in side.asks.prices])


# =====================================================================================================================
# Restart: the rebuilt book equals the journaled one
# =====================================================================================================================

def test_rebuilt_book_after_partial_fills_replace_and_long_term_expiry_equals_the_live_one():
    """Two replicas, fed the same blocks; B restarts (a new Application over the same store) before each block.
    Block h: account 2 asks id 1 0.1 BTC at $64,001 (short-term), id 2 0.2 BTC at $64,001 long-term (GTBT = time of
    block h+3), id 3 0.1 BTC at $64,002; account 3 bids id 1 0.1 at $63,999 and long-term id 2 0.1 at $63,999.
    Block h+1: account 1 buys 0.15 BTC IOC at $64,001: fills id 1 (0.1) then 0.05 of id 2 (time priority) ->
    id 2 rests with 0.15 left. Block h+2: account 2 cancel-replaces id 3 with id 4 0.1 at $64,001 (new sequence:
    behind id 2). Then (before h+3) the two books are identical (levels, per-level order, open counts); in block h+3
    id 2 expires (GTBT reached) and account 1 buys 0.1 IOC at $64,001: it fills id 4. Every block: same results and
    app hash on both."""
    state = app_state()
    a, b = mem_exchange(copy.deepcopy(state)), mem_exchange(copy.deepcopy(state))
    h = nxt(a)
    t3 = GENESIS_TIME_NS + (h + 3) * BLOCK_INTERVAL_NS
    _twin_blocks(a, b, [orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, height_hint=h),
                                         place(2, SELL, 2 * TENTH, P64K + D, gtbt_ns=t3, height_hint=h),
                                         place(3, SELL, TENTH, P64K + 2 * D, height_hint=h)]),
                        orders_tx(3, 1, [place(1, BUY, TENTH, P64K - D, height_hint=h),
                                         place(2, BUY, TENTH, P64K - D, gtbt_ns=t3 + 10**12, height_hint=h)])])
    res = _twin_blocks(a, b, [orders_tx(1, 1, [place(1, BUY, TENTH + TENTH // 2, P64K + D, tif=IOC,
                                                     height_hint=h + 1)])])
    assert [(f["maker_client_id"], f["quantums"]) for f in fills_of(res.tx_results[0])] == \
        [("1", str(TENTH)), ("2", str(TENTH // 2))]
    _twin_blocks(a, b, [orders_tx(2, 2, [cancel_replace(3, place(4, SELL, TENTH, P64K + D, height_hint=h + 2))])])
    b.restart()
    assert asks(a) == asks(b) == [(P64K + D, TENTH + TENTH // 2 + TENTH)]
    assert book(a)["asks"][0]["orders"] == 2
    assert _book_state(a) == _book_state(b)
    assert _queries(a) == _queries(b)
    res = _twin_blocks(a, b, [orders_tx(1, 2, [place(2, BUY, TENTH, P64K + D, tif=IOC, height_hint=h + 3)])])
    expired = [dict(e.attributes)["client_id"] for e in res.events if e.type == "order_removed"]
    assert expired == ["2"]
    assert [(f["maker_client_id"], f["quantums"]) for f in fills_of(res.tx_results[0])] == [("4", str(TENTH))]
    b.restart()
    assert asks(a) == asks(b) == []
    assert bids(a) == bids(b) == [(P64K - D, 2 * TENTH)]
    assert _book_state(a) == _book_state(b)
    exact_pools(a)


def test_restart_between_finalize_and_commit_rebuilds_the_committed_book_only():
    """A block that places account 2's ask is finalized but not committed, then the node restarts: the book (and
    queries) show nothing; the same block again gives the same app hash as the first finalize."""
    r = mem_exchange(app_state())
    h = nxt(r)
    txs = [orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, height_hint=h)])]
    first = r.block(txs, commit=False)
    r.restart()
    assert asks(r) == []
    again = r.block(txs)
    assert again.app_hash == first.app_hash
    assert asks(r) == [(P64K + D, TENTH)]


# =====================================================================================================================
# Genesis export -> InitChain: same queries, same future
# =====================================================================================================================

def _import_at_same_height(r) -> MemReplica:
    """A fresh chain from r's export, whose first block has r's next height (so short-term orders' good-til-blocks
    and block times mean the same)."""
    fresh = MemReplica()
    validators = [(bytes(k.verify_key), 10) for k in VALIDATOR_KEYS]
    state = json.dumps(json.loads(json.dumps(r.app.export_genesis()))).encode()
    fresh.app.init_chain(CHAIN_ID, GENESIS_TIME_NS, state, validators, nxt(r))
    return fresh


def _without_mark(queries: dict) -> dict:
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("mark_price", "mark_price_usd", "basis_ema")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return {k: strip(json.loads(v)) for k, v in queries.items()}


def _block_at(r, height: int, txs):
    res = r.app.finalize_block(height, GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS, list(txs), None)
    r.app.commit()
    return res


def _busy_chain():
    """Fee tiers: "1" maker 100 / taker 500; "2" from 3,000 USDC of 30-day volume: maker 0 / taker 200.
    Block h: account 2 asks 0.1 BTC at $64,000 (short-term, GTB h+20) and 0.1 at $64,010 long-term; account 3
    bids 0.1 at $63,990; account 4 asks 10 SOL at $150 (isolated). Block h+1: account 1 buys 0.1 BTC IOC at $64,000
    (3,200 USDC each), and its subaccount 1 buys 1 SOL IOC at $150 from account 4 (isolated positions: 150 USDC).
    Volume: account 1 3,350 USDC, account 2 3,200 USDC: both in tier "2" from the next block."""
    state = app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": 100, "taker_fee_ppm": 500},
                                 {"name": "2", "absolute_volume_requirement_quote_quantums": str(3_000 * USD),
                                  "maker_fee_ppm": 0, "taker_fee_ppm": 200}])
    state["subaccounts"]["deposits"].append({"owner": ADDRS[1], "number": 1,
                                             "amount_quote_quantums": str(10_000 * USD)})
    r = mem_exchange(state)
    h = nxt(r)
    sol_tick = 1_000_000
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, height_hint=h),
                              place(2, SELL, TENTH, P64K + 10 * D, gtbt_ns=GENESIS_TIME_NS + 10**13, height_hint=h)]),
              orders_tx(3, 1, [place(1, BUY, TENTH, P64K - 10 * D, height_hint=h)]),
              orders_tx(4, 1, [place(1, SELL, 10 * 10_000_000, 15_000 * sol_tick, pair=2, height_hint=h)])])
    res = r.block([orders_tx(1, 1, [place(1, BUY, TENTH // 2, P64K, tif=IOC, height_hint=h + 1),
                                    place(2, BUY, 10_000_000, 15_000 * sol_tick, pair=2, number=1, tif=IOC,
                                          height_hint=h + 1)])])
    assert statuses(res.tx_results[0]) == ["filled", "filled"], actions_of(res.tx_results[0])
    return r


def test_export_import_reproduces_every_query_and_the_next_block():
    """The busy chain (resting short- and long-term orders, a partially filled maker, cross and isolated positions,
    30-day volume, used nonces and budgets) is exported and imported with its next height. Every query of both
    chains answers the same, and the same next block gives the same tx results: account 1 buys 0.05 BTC IOC at
    $64,010: it fills the rest of id 1 (0.05 at $64,000: 3,200 USDC) then 0.05 of the long-term id 2 at $64,010
    (3,200.5 USDC). Account 1 is in tier "2" only through the exported 30-day volume: taker fee 200 ppm =
    640,000 and 640,100 quote quantums; account 2's maker fee 0. A replay of account 1's nonce 1 is refused on
    both."""
    r = _busy_chain()
    fresh = _import_at_same_height(r)
    h = nxt(r)
    txs = [orders_tx(1, 2, [place(3, BUY, TENTH, P64K + 10 * D, tif=IOC, height_hint=h)]),
           orders_tx(1, 1, [place(9, BUY, TENTH, P64K + 10 * D, tif=IOC, height_hint=h)])]
    ra = r.block(txs)
    rb = _block_at(fresh, h, txs)
    fills = fills_of(ra.tx_results[0])
    assert [(f["maker_client_id"], f["quantums"], f["quote_quantums"], f["taker_fee_quote_quantums"])
            for f in fills] == [("1", str(TENTH // 2), str(3_200 * USD), str(640_000)),
                                ("2", str(TENTH // 2), str(3_200_500_000), str(640_100))]
    assert [f["maker_fee_quote_quantums"] for f in fills] == ["0", "0"]
    assert ra.tx_results[1].code != 0  # nonce 1 used
    assert ra.tx_results == rb.tx_results
    assert ra.events == rb.events
    assert _without_mark(_queries(r)) == _without_mark(_queries(fresh))  # the mark price: see the next test
    check_global_money(fresh)
    exact_pools(fresh)


# Found by this attack (fixed): the export now carries every MarketPrice field (mark, basis EMA, last update).
def test_export_import_keeps_the_mark_price():
    """The mark price = oracle + basis EMA, where the EMA (state: MarketPrice.basis_ema) follows the book's mid.
    With the default smoothing, after a few blocks of a book whose mid is above the oracle the mark differs from the
    oracle. docs/state.md: 'importing [the export] reproduces the state'. The imported chain must show the same
    mark price, and after one more identical block both marks must still agree."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + 200 * D, height_hint=h)]),
             orders_tx(3, 1, [place(1, BUY, TENTH, P64K + 100 * D, height_hint=h)])])
    for _ in range(3):
        r.block([])
    mark = json.loads(r.app.query("/prices/market/BTC-USD", b"").value)["mark_price"]
    assert int(mark) != 6_400_000_000  # mid $64,150 > oracle: the EMA moved the mark up
    fresh = _import_at_same_height(r)
    _block_at(fresh, nxt(r), [])
    r.block([])
    assert json.loads(fresh.app.query("/prices/market/BTC-USD", b"").value)["mark_price"] == \
        json.loads(r.app.query("/prices/market/BTC-USD", b"").value)["mark_price"]


# =====================================================================================================================
# Market status and perpetual parameter changes with live orders and positions
# =====================================================================================================================

def _authority(nonce: int, *msgs) -> bytes:
    return msg_tx(0, nonce, list(msgs))


def _status(status: int, pair: int = BTC) -> tx_pb2.Msg:
    return tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(authority=ADDRS[0], clob_pair_id=pair,
                                                                      status=status))


def test_a_status_change_applies_to_every_order_action_of_its_block_even_earlier_txs():
    """Block h: account 2 rests an ask 0.1 BTC at $64,001. Block h+1 (in this order): account 1's IOC buy 0.1 at
    $64,001, account 3's post-only bid at $63,999, then the authority's MsgSetClobPairStatus(post-only). Non-order
    messages run before every order action (docs/exchange.md, the block rule), so the IOC is refused (709) and the
    post-only bid rests. Block h+2: cancel-only: account 2 cancels its ask (accepted), account 3's post-only bid id 2
    is refused (709). Block h+3: active again: account 1 sells 0.1 IOC at $63,999: fills account 3's id 1 bid."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, height_hint=h)])])
    res = r.block([orders_tx(1, 1, [place(1, BUY, TENTH, P64K + D, tif=IOC, height_hint=h + 1)]),
                   orders_tx(3, 1, [place(1, BUY, TENTH, P64K - D, tif=POST_ONLY, height_hint=h + 1)]),
                   _authority(1, _status(exchange_pb2.CLOB_PAIR_STATUS_POST_ONLY))])
    assert res.tx_results[2].code == 0, res.tx_results[2].log
    assert [(a["status"], a.get("code")) for a in actions_of(res.tx_results[0])] == [("rejected", "709")]
    assert statuses(res.tx_results[1]) == ["resting"]
    assert fills_of(res.tx_results[0]) == []
    res = r.block([_authority(2, _status(exchange_pb2.CLOB_PAIR_STATUS_CANCEL_ONLY)),
                   orders_tx(2, 2, [cancel(1)]),
                   orders_tx(3, 2, [place(2, BUY, TENTH, P64K - 2 * D, tif=POST_ONLY, height_hint=h + 2)])])
    assert statuses(res.tx_results[1]) == ["canceled"]
    assert [(a["status"], a.get("code")) for a in actions_of(res.tx_results[2])] == [("rejected", "709")]
    assert asks(r) == [] and bids(r) == [(P64K - D, TENTH)]
    res = r.block([_authority(3, _status(exchange_pb2.CLOB_PAIR_STATUS_ACTIVE)),
                   orders_tx(1, 2, [place(2, SELL, TENTH, P64K - D, tif=IOC, height_hint=h + 3)])])
    assert [(f["maker_client_id"], f["quantums"]) for f in fills_of(res.tx_results[1])] == [("1", str(TENTH))]
    assert (size(r, 1), size(r, 3)) == (-TENTH, TENTH)
    exact_pools(r)


def _tier(tid: int, im: int, mf: int) -> tx_pb2.Msg:
    return tx_pb2.Msg(upsert_liquidity_tier=tx_pb2.MsgUpsertLiquidityTier(authority=ADDRS[0], tier=exchange_pb2.LiquidityTier(
        id=tid, name=f"t{tid}", initial_margin_ppm=im, maintenance_fraction_ppm=mf,
        impact_notional_quote_quantums=10_000 * USD)))


def _move_perp(pid: int, tier: int) -> tx_pb2.Msg:
    return tx_pb2.Msg(update_perpetual=tx_pb2.MsgUpdatePerpetual(authority=ADDRS[0], perpetual_id=pid,
                                                                 liquidity_tier=tier, set_liquidity_tier=True))


def _margin(r, account: int) -> tuple[int, int, int, int]:
    s = subaccount(r, account)
    return tuple(int(s[k]) for k in ("total_net_collateral_quote_quantums", "initial_margin_requirement_quote_quantums",
                                     "maintenance_margin_requirement_quote_quantums", "free_collateral_quote_quantums"))


def test_moving_a_perpetual_to_another_tier_reprices_the_margin_of_open_positions():
    """Account 2 asks 0.1 BTC at $64,000 (maker fee 640,000), account 1 buys it IOC (taker fee 3,200,000): account 1
    long 0.1 BTC, quote 100,000e6 − 6,400e6 − 3.2e6 = 93,596.8e6; TNC = 93,596.8e6 + 6,400e6 = 99,996.8e6;
    IMR = 5 % of 6,400e6 = 320e6, MMR = 60 % of it = 192e6. The authority creates tier 7 (IM 20 %, MF 50 %) and moves
    BTC there: IMR = 1,280e6, MMR = 640e6, free collateral = 99,996.8e6 − 1,280e6 = 98,716.8e6. The next withdrawal
    may leave exactly TNC = IMR: 98,716.8e6 passes... one more quantum is refused (tested first)."""
    from tests.attack_helpers import withdraw_msg

    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    assert _margin(r, 1) == (99_996_800_000, 320 * USD, 192 * USD, 99_996_800_000 - 320 * USD)
    res = r.block([_authority(1, _tier(7, 200_000, 500_000), _move_perp(BTC, 7))])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert _margin(r, 1) == (99_996_800_000, 1_280 * USD, 640 * USD, 98_716_800_000)
    assert _margin(r, 2)[1:3] == (1_280 * USD, 640 * USD)
    res = r.block([msg_tx(1, 2, [withdraw_msg(1, 98_716_800_000 + 1)])])
    assert res.tx_results[0].code != 0
    res = r.block([msg_tx(1, 3, [withdraw_msg(1, 98_716_800_000)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert _margin(r, 1) == (1_280 * USD, 1_280 * USD, 640 * USD, 0)
    exact_pools(r)


def test_a_tier_upsert_changes_every_perpetual_on_it_and_checks_new_orders_against_it():
    """BTC and ETH are both on tier 0 (IM 5 %). The authority upserts tier 0 with IM 99 %: a post-only bid of
    1.6 BTC at $64,000 (102,400 USDC notional, IMR 101,376 USDC > TNC 100,000) is refused, a bid of 1 BTC
    (IMR 63,360 USDC) rests; /perpetuals/list shows IM 990,000 ppm for both BTC and ETH."""
    r = mem_exchange(app_state())
    h = nxt(r)
    res = r.block([_authority(1, _tier(0, 990_000, 600_000))])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    res = r.block([orders_tx(1, 1, [place(1, BUY, 16 * TENTH, P64K, tif=POST_ONLY, height_hint=h + 1),
                                    place(2, BUY, ONE_BTC, P64K, tif=POST_ONLY, height_hint=h + 1)])])
    assert [a["status"] for a in actions_of(res.tx_results[0])] == ["rejected", "resting"]
    perps = json.loads(r.app.query("/perpetuals/list", b"").value)["perpetuals"]
    assert [p["liquidity_tier"]["initial_margin_ppm"] for p in perps[:2]] == [990_000, 990_000]


def test_switching_a_market_to_isolated_with_resting_cross_orders_keeps_the_isolation_rule():
    """ETH (perpetual 1) is cross and flat; ETH $3,000, 1 ETH = 1e9 base quantums, subticks = oracle units
    (3,000,000,000 = $3,000). Account 2 (subaccount 0) gets a BTC short (sells 0.1 BTC at $64,000 to account 1)
    and rests an ETH ask 1 ETH at $3,000; account 4 (flat) rests an ETH ask 1 ETH at $3,001. The authority switches
    ETH to isolated (allowed: no open interest). Account 3 (flat) buys 2 ETH IOC up to $3,001: account 2's ask would
    give it an isolated position beside its BTC short: it must be removed, not filled; account 4's fills: accounts 3
    and 4 hold isolated ETH positions; every pool exact."""
    r = mem_exchange(app_state())
    h = nxt(r)
    eth = 1_000_000_000
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h),
                              place(2, SELL, eth, 3_000_000_000, pair=ETH, tif=POST_ONLY, height_hint=h)]),
             orders_tx(4, 1, [place(1, SELL, eth, 3_001_000_000, pair=ETH, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    assert size(r, 2) == -TENTH
    res = r.block([_authority(1, tx_pb2.Msg(update_perpetual=tx_pb2.MsgUpdatePerpetual(
        authority=ADDRS[0], perpetual_id=ETH, market_type=exchange_pb2.MARKET_TYPE_ISOLATED)))])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    res = r.block([orders_tx(3, 1, [place(1, BUY, 2 * eth, 3_001_000_000, pair=ETH, tif=IOC, height_hint=h + 2)])])
    fills = fills_of(res.tx_results[0])
    assert [f["maker"] for f in fills] == [ADDRS[4]], fills
    assert size(r, 2, pid=ETH) == 0 and size(r, 3, pid=ETH) == eth and size(r, 4, pid=ETH) == -eth
    assert asks(r, "ETH-USD") == []
    check_global_money(r)
    exact_pools(r)


# =====================================================================================================================
# Admission budgets at their exact edges
# =====================================================================================================================

def _budget(r, account: int) -> dict:
    return json.loads(r.app.query(f"/auth/account/{ADDRS[account]}", b"").value)["budget"]


def _small_account_state() -> dict:
    """Account 5 holds 1,000 USDC in the bank and no subaccount: request capacity = 50 + 1,000 ÷ 100 = 60, refill
    max(1, 60 × 100,000 ÷ 1e6) = 6 per block; cancels 4× : capacity 240, refill 24."""
    state = app_state()
    for b in state["bank"]["balances"]:
        if b["address"] == ADDRS[5]:
            b["amount_quote_quantums"] = str(1_000 * USD)
    return state


def _places(n: int, h: int, first: int = 1) -> list:
    return [place(first + i, BUY, TENTH, P64K - D, tif=IOC, height_hint=h) for i in range(n)]


def test_request_budget_exact_edge_refill_and_an_unused_nonce():
    """Block h: a tx of 60 placements (nonce 1) passes the ante (its actions are refused: no collateral in a
    subaccount, but they used the budget); a second tx of 1 placement (nonce 2) in the same block is rate_limited
    (17). Block h+1: refill 6: a tx of 7 placements with nonce 2 is refused (17), then a tx of 6 placements with the
    same nonce 2 passes (the refused tx did not use it); cancels are a separate bucket: 240 cancels pass in the same
    block (200 + 40 in two txs), the 241st is refused. The bank balance never moved (order txs pay no fee)."""
    r = mem_exchange(_small_account_state())
    b0 = _budget(r, 5)
    assert (b0["request_capacity"], b0["request_refill_per_block"], b0["cancel_capacity"],
            b0["cancel_refill_per_block"], b0["requests_available"]) == ("60", "6", "240", "24", "60")
    h = nxt(r)
    res = r.block([orders_tx(5, 1, _places(60, h)), orders_tx(5, 2, _places(1, h, 100))])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert res.tx_results[1].code == 17
    assert _budget(r, 5)["requests_available"] == "6"
    cancels = [cancel(1000 + i) for i in range(200)]
    res = r.block([orders_tx(5, 2, _places(7, h + 1, 200)), orders_tx(5, 2, _places(6, h + 1, 300)),
                   orders_tx(5, 3, cancels), orders_tx(5, 4, cancels[:40]), orders_tx(5, 5, cancels[:1])])
    assert [t.code for t in res.tx_results] == [17, 0, 0, 0, 17]
    b = _budget(r, 5)
    assert (b["requests_available"], b["cancels_available"]) == ("6", "24")
    assert r.balance(5) == 1_000 * USD
    # nonce 5 is still usable
    res = r.block([orders_tx(5, 5, cancels[:1])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log


def test_an_oversized_batch_is_refused_whole_and_keeps_its_nonce_and_budget():
    """201 actions in one tx (over MAX_ORDER_ACTIONS = 200) are refused before the ante: nonce 1 and the budget stay
    unused; 200 actions with nonce 1 then pass and use 200 requests of account 1's 1,000 (capacity
    min(1,000, 50 + 900,000 ÷ 100)), leaving 800 + refill 100 at the next height."""
    r = mem_exchange(app_state())
    h = nxt(r)
    res = r.block([orders_tx(1, 1, _places(201, h))])
    assert res.tx_results[0].code != 0
    assert _budget(r, 1)["requests_available"] == "1000"
    res = r.block([orders_tx(1, 1, _places(200, h + 1))])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert _budget(r, 1)["requests_available"] == "900"


# =====================================================================================================================
# Query numbers worked by hand
# =====================================================================================================================

def test_subaccount_numbers_of_a_long_and_a_short_traded_off_the_oracle():
    """Account 2 asks 0.1 BTC at $64,100 (post-only), account 1 buys it IOC: quote 0.1 × 64,100 = 6,410 USDC;
    taker fee 500 ppm = 3.205 USDC, maker fee 100 ppm = 0.641 USDC. Oracle $64,000: notional ±6,400 USDC.
    Long (1): quote 100,000 − 6,410 − 3.205 = 93,586.795; entry $64,100; uPnL 6,400 − 6,410 = −10;
      TNC 93,586.795 + 6,400 = 99,986.795; IMR 5 % × 6,400 = 320; MMR 192; FC 99,666.795;
      leverage ⌊6,400 × 100 ÷ 99,986.795⌋ ÷ 100 = 0.06.
    Short (2): quote 100,000 + 6,410 − 0.641 = 106,409.359; entry $64,100; uPnL −6,400 + 6,410 = +10;
      TNC 106,409.359 − 6,400 = 100,009.359; IMR 320; MMR 192; FC 99,689.359; leverage 0.06.
    Then account 1 buys 0.1 more at $64,000 (account 4's ask): entry notional 12,810 over 0.2 BTC: entry $64,050;
    then sells 0.05 at $64,200 to account 3's bid: entry notional shrinks pro rata to 12,810 × 0.15 ÷ 0.2 = 9,607.5:
    entry still $64,050, size 0.15."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + 100 * D, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, TENTH, P64K + 100 * D, tif=IOC, height_hint=h)])])
    want = {
        1: dict(quote_balance="93586.795", total_net_collateral="99986.795", initial_margin_requirement="320",
                maintenance_margin_requirement="192", free_collateral="99666.795", leverage="0.06",
                side="long", entry_price="64100", unrealized_pnl="-10", notional="6400"),
        2: dict(quote_balance="106409.359", total_net_collateral="100009.359", initial_margin_requirement="320",
                maintenance_margin_requirement="192", free_collateral="99689.359", leverage="0.06",
                side="short", entry_price="64100", unrealized_pnl="10", notional="-6400"),
    }
    for account, w in want.items():
        s = subaccount(r, account)
        (p,) = s["positions"]
        got = {k: s[k] for k in ("quote_balance", "total_net_collateral", "initial_margin_requirement",
                                 "maintenance_margin_requirement", "free_collateral", "leverage")}
        got.update({k: p[k] for k in ("side", "entry_price", "unrealized_pnl", "notional")})
        assert got == w, account
        assert s["liquidatable"] is False
    h = nxt(r)
    r.block([orders_tx(4, 1, [place(1, SELL, TENTH, P64K, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 2, [place(2, BUY, TENTH, P64K, tif=IOC, height_hint=h)])])
    (p,) = subaccount(r, 1)["positions"]
    assert (p["size"], p["entry_price"]) == ("0.2", "64050")
    h = nxt(r)
    r.block([orders_tx(1, 3, [place(3, SELL, TENTH // 2, P64K + 200 * D, tif=IOC, height_hint=h)]),
             orders_tx(3, 1, [place(1, BUY, TENTH // 2, P64K + 200 * D, tif=POST_ONLY, height_hint=h)])])
    (p,) = subaccount(r, 1)["positions"]
    assert (p["size"], p["entry_price"], p["unrealized_pnl"]) == ("0.15", "64050", "-7.5")  # 9,600 − 9,607.5


def test_orderbook_levels_aggregate_remaining_sizes_and_counts_and_depth_cuts_levels():
    """Asks: account 2 0.1 at $64,001 and 0.2 at $64,001 (then 0.05 of the first is filled by account 1: level
    $64,001 = 0.25 BTC in 2 orders), account 3 0.1 at $64,003; bids: account 4 0.1 at $63,990 and 0.1 at $63,980.
    Depth 1: one level per side; full depth: 2 and 2; best bid < best ask."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, height_hint=h),
                              place(2, SELL, 2 * TENTH, P64K + D, height_hint=h)]),
             orders_tx(3, 1, [place(1, SELL, TENTH, P64K + 3 * D, height_hint=h)]),
             orders_tx(4, 1, [place(1, BUY, TENTH, P64K - 10 * D, height_hint=h),
                              place(2, BUY, TENTH, P64K - 20 * D, height_hint=h)])])
    r.block([orders_tx(1, 1, [place(1, BUY, TENTH // 2, P64K + D, tif=IOC, height_hint=h + 1)])])
    full = book(r)
    assert [(l["price"], l["size"], l["orders"]) for l in full["asks"]] == [("64001", "0.25", 2), ("64003", "0.1", 1)]
    assert [(l["price"], l["size"], l["orders"]) for l in full["bids"]] == [("63990", "0.1", 1), ("63980", "0.1", 1)]
    one = json.loads(r.app.query("/clob/orderbook/BTC-USD/1", b"").value)
    assert (len(one["asks"]), len(one["bids"])) == (1, 1)
    assert one["asks"][0] == full["asks"][0] and one["bids"][0] == full["bids"][0]
    # the uncommitted-block path of the same query answers the same
    r.block([], commit=False)
    assert book(r) == full


# =====================================================================================================================
# The CLI's human units (node/client/market.py), called directly
# =====================================================================================================================

def _markets():
    from node.client.market import Market

    # BTC: subticks = USD × 10^(6 − 10 + 9) = USD × 1e5; tick 1e5 = $1; step 1e6 = 0.0001 BTC
    btc = Market("BTC-USD", 0, 0, -10, -9, 1_000_000, 100_000)
    # SOL: subticks = USD × 10^(6 − 7 + 9) = USD × 1e8; tick 1e6 = $0.01; step 1e6 = 0.1 SOL
    sol = Market("SOL-USD", 2, 2, -7, -9, 1_000_000, 1_000_000)
    # ETH: subticks = USD × 10^(6 − 9 + 9) = USD × 1e6; tick 1e5 = $0.1; step 1e6 = 0.001 ETH
    eth = Market("ETH-USD", 1, 1, -9, -9, 1_000_000, 100_000)
    return btc, sol, eth


@pytest.mark.parametrize("which, text, want", [
    ("btc", "64000", 6_400_000_000), ("btc", " 64000. ", 6_400_000_000), ("btc", "64000.000000000000000", 6_400_000_000),
    ("btc", "1", 100_000), ("sol", ".5", 50_000_000), ("sol", "150.01", 15_001_000_000),
    ("eth", "3000.1", 3_000_100_000), ("eth", "0.1", 100_000),
])
def test_price_text_converts_exactly(which, text, want):
    from node.client.market import price_to_subticks

    btc, sol, eth = _markets()
    assert price_to_subticks({"btc": btc, "sol": sol, "eth": eth}[which], text) == want


@pytest.mark.parametrize("which, text, nearest", [
    ("btc", "64000.5", "64000 or 64001"), ("btc", "0.5", "1"), ("sol", "150.005", "150 or 150.01"),
    ("eth", "3000.05", "3000 or 3000.1"), ("btc", "64000.00000000000000001", "64000 or 64001"),
])
def test_off_tick_prices_are_refused_with_the_nearest_valid_ones(which, text, nearest):
    from node.client.market import MarketError, price_to_subticks

    btc, sol, eth = _markets()
    with pytest.raises(MarketError) as info:
        price_to_subticks({"btc": btc, "sol": sol, "eth": eth}[which], text)
    assert str(info.value).endswith("nearest valid: " + nearest)


@pytest.mark.parametrize("which, text, want", [
    ("btc", "0.1", 1_000_000_000), ("btc", "0.0001", 1_000_000), ("btc", "1.2345", 12_345_000_000),
    ("sol", "0.1", 1_000_000), ("sol", "10", 100_000_000), ("eth", "0.001", 1_000_000), ("eth", ".25", 250_000_000),
])
def test_size_text_converts_exactly(which, text, want):
    from node.client.market import size_to_base_quantums

    btc, sol, eth = _markets()
    assert size_to_base_quantums({"btc": btc, "sol": sol, "eth": eth}[which], text) == want


@pytest.mark.parametrize("which, text, nearest", [
    ("btc", "0.00015", "0.0001 or 0.0002"), ("btc", "0.00005", "0.0001"), ("sol", "0.15", "0.1 or 0.2"),
    ("eth", "1.0005", "1 or 1.001"),
])
def test_off_step_sizes_are_refused_with_the_nearest_valid_ones(which, text, nearest):
    from node.client.market import MarketError, size_to_base_quantums

    btc, sol, eth = _markets()
    with pytest.raises(MarketError) as info:
        size_to_base_quantums({"btc": btc, "sol": sol, "eth": eth}[which], text)
    assert str(info.value).endswith("nearest valid: " + nearest)


@pytest.mark.parametrize("text", ["1e-4", "-1", "+1", "1_000", "NaN", "Infinity", "0", "0.0", "", ".", "1.2.3",
                                  "١٢", "１", "0x10"])
def test_odd_number_texts_are_refused_as_market_errors(text):
    from node.client.market import MarketError, price_to_subticks, size_to_base_quantums

    btc, _, _ = _markets()
    with pytest.raises(MarketError):
        size_to_base_quantums(btc, text)
    with pytest.raises(MarketError):
        price_to_subticks(btc, text)


def test_prices_and_sizes_beyond_the_chain_limits_are_refused():
    """uint64 max = 18,446,744,073,709,551,615 subticks = $184,467,440,737,095.51615 on BTC: $184,467,440,737,096 is
    above it (a multiple of the tick); MAX_ORDER_QUANTUMS bounds the size."""
    from app.clob.actions import MAX_ORDER_QUANTUMS
    from node.client.market import MarketError, price_to_subticks, size_to_base_quantums

    btc, _, _ = _markets()
    assert price_to_subticks(btc, "184467440737095") == 18_446_744_073_709_500_000
    with pytest.raises(MarketError, match="above the largest price"):
        price_to_subticks(btc, "184467440737096")
    largest = MAX_ORDER_QUANTUMS - MAX_ORDER_QUANTUMS % btc.step_base_quantums
    from app.lib.units import format_scaled

    assert size_to_base_quantums(btc, format_scaled(largest, -10)) == largest
    with pytest.raises(MarketError, match="above the largest order size"):
        size_to_base_quantums(btc, format_scaled(largest + btc.step_base_quantums, -10))


# Found by this attack (fixed): find_market tested name.isdigit() (true for '²', '٢') and called int(): '²' raised a
# bare ValueError instead of MarketError, '٢' (Arabic-Indic two) selected clob pair 2; now ASCII digits only, as the
# chain's own lookup.


@pytest.mark.parametrize("name", ["²", "٢", "٣", "99999999999999999999999", "-1", "BTC"])
def test_find_market_refuses_odd_names_with_a_market_error(name):
    """find_market's contract: 'A market by ticker (any case) or clob pair id; else MarketError listing the
    markets'. Only ASCII decimal ids name a pair (as the chain's queries: app/clob/queries.is_ascii_number)."""
    from node.client.market import MarketError, find_market

    with pytest.raises(MarketError, match="markets: BTC-USD"):
        find_market(list(_markets()), name)


# =====================================================================================================================
# Genesis orders: the book's invariants
# =====================================================================================================================

def _two_sided_export():
    """Account 2 asks 0.1 BTC at $64,001 (sequence 1), account 3 bids 0.1 BTC at $63,999 (sequence 2)."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, gtb=h + 40, height_hint=h)]),
             orders_tx(3, 1, [place(1, BUY, TENTH, P64K - D, gtb=h + 40, height_hint=h)])])
    state = json.loads(json.dumps(r.app.export_genesis()))
    assert [(o["side"], o["sequence"]) for o in state["clob"]["orders"]] in (
        [("SIDE_SELL", "1"), ("SIDE_BUY", "2")], [("SIDE_BUY", "2"), ("SIDE_SELL", "1")])
    assert state["clob"]["next_sequence"] == "3"
    return state


def _init(state: dict):
    from app.errors import AppError

    fresh = MemReplica()
    try:
        fresh.init_chain(state)
    except AppError as err:
        return err
    return fresh


# Found by this attack (fixed in app/clob/genesis.py).
def test_a_genesis_with_a_crossed_book_is_refused():
    """The exported two-sided book, with the bid moved to $64,002 (above the ask at $64,001): InitChain must refuse
    it (invalid genesis, 202)."""
    state = _two_sided_export()
    for o in state["clob"]["orders"]:
        if o["side"] == "SIDE_BUY":
            o["subticks"] = str(P64K + 2 * D)
    out = _init(state)
    if not isinstance(out, MemReplica):
        assert out.code == 202
        return
    out.block([])
    bid, ask = bids(out), asks(out)
    assert bid[0][0] < ask[0][0], f"crossed book from genesis: best bid {bid[0][0]} >= best ask {ask[0][0]}"


# Found by this attack (fixed in app/clob/genesis.py).
def test_a_genesis_next_sequence_not_above_the_stored_orders_is_refused():
    """The exported book (sequences 1 and 2) with next_sequence "1": the next placement would get sequence 1 (the
    ask's). InitChain must refuse it (202)."""
    state = _two_sided_export()
    state["clob"]["next_sequence"] = "1"
    out = _init(state)
    assert not isinstance(out, MemReplica)
    assert out.code == 202


# =====================================================================================================================
# Mark price when two perpetuals share one oracle market
# =====================================================================================================================

def test_the_btc_mark_follows_the_btc_book_not_a_newer_perpetual_on_the_same_oracle():
    """The authority creates perpetual 20 'BTC2-USD' (pair 20) on oracle market 0. BTC-USD's book: bid $63,999 /
    ask $64,001 (mid $64,000 = oracle: basis 0). BTC2's book: bid $64,900 / ask $65,100 (mid $65,000). After a few
    blocks BTC-USD's mark (market 0) should still be the oracle, $64,000 (its own book has basis 0): the book of the
    market's lowest clob pair id drives its mark (app/clob/basis.py); before, the last pair listed did."""
    r = mem_exchange(app_state())
    create = tx_pb2.Msg(create_perpetual=tx_pb2.MsgCreatePerpetual(
        authority=ADDRS[0],
        perpetual=exchange_pb2.Perpetual(id=20, ticker="BTC2-USD", market_id=0, atomic_resolution=-10,
                                         liquidity_tier=0, market_type=exchange_pb2.MARKET_TYPE_CROSS),
        clob_pair=exchange_pb2.ClobPair(id=20, perpetual_id=20, step_base_quantums=1_000_000,
                                        subticks_per_tick=100_000, quantum_conversion_exponent=-9, status=1)))
    res = r.block([msg_tx(0, 1, [create])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, gtb=h + 40, height_hint=h),
                              place(2, SELL, TENTH, P64K + 1_100 * D, pair=20, gtb=h + 40, height_hint=h)]),
             orders_tx(3, 1, [place(1, BUY, TENTH, P64K - D, gtb=h + 40, height_hint=h),
                              place(2, BUY, TENTH, P64K + 900 * D, pair=20, gtb=h + 40, height_hint=h)])])
    for _ in range(3):
        r.block([])
    market = json.loads(r.app.query("/prices/market/BTC-USD", b"").value)
    assert (market["mark_price"], market["basis_ema"]) == ("6400000000", "0")


def test_out_of_request_budget_a_cancel_passes_but_a_cancel_replace_does_not():
    """Account 5 holds 2,000 USDC in the bank and deposits 1,000 into subaccount 0 at genesis: bank 1,000 ->
    capacity 60, refill 6. Block h: a resting bid id 1 (0.0001 BTC at $60,000) + 59 IOC bids of 0.0001 BTC (nothing
    to match) use 60 requests. Block h+1: 6 more IOCs use the refill. Block h+2 (budget 6): a tx of 6 IOCs uses it;
    then a cancel-replace of id 1 (1 request + 1 cancel) is rate_limited (17) while a plain cancel of id 1 (1 of
    the 240 cancels) passes. CheckTx agrees, and the CheckTx refused for budget leaves its nonce free in the
    mempool view: the plain cancel with the same nonce is then admitted."""
    state = app_state()
    for b in state["bank"]["balances"]:
        if b["address"] == ADDRS[5]:
            b["amount_quote_quantums"] = str(2_000 * USD)
    state["subaccounts"]["deposits"].append({"owner": ADDRS[5], "number": 0,
                                             "amount_quote_quantums": str(1_000 * USD)})
    r = mem_exchange(state)
    assert _budget(r, 5)["request_capacity"] == "60"
    step = 1_000_000

    def iocs(n, h, first):
        return [place(first + i, BUY, step, P64K - D, tif=IOC, height_hint=h) for i in range(n)]

    h = nxt(r)
    res = r.block([orders_tx(5, 1, [place(1, BUY, step, 60_000 * D, height_hint=h, gtb=h + 40)] + iocs(59, h, 10))])
    assert statuses(res.tx_results[0]) == ["resting"] + ["not_filled"] * 59
    r.block([orders_tx(5, 2, iocs(6, h + 1, 100))])
    assert _budget(r, 5)["requests_available"] == "6"
    h = nxt(r)
    burn = orders_tx(5, 3, iocs(6, h, 200))
    assert r.app.check_tx(burn).code == 0
    replace = orders_tx(5, 4, [cancel_replace(1, place(2, BUY, step, 60_000 * D, height_hint=h))])
    assert r.app.check_tx(replace).code == 17
    plain = orders_tx(5, 4, [cancel(1)])
    assert r.app.check_tx(plain).code == 0  # nonce 4 was not taken by the refused tx
    res = r.block([burn, replace, plain])
    assert [t.code for t in res.tx_results] == [0, 17, 0]
    assert statuses(res.tx_results[2]) == ["canceled"]
    assert bids(r) == []


def test_formatted_prices_and_sizes_convert_back_to_the_same_integers():
    """Round trip on every market: subticks -> price text -> subticks, base quantums -> size text -> base quantums,
    for multiples of the tick / step from 1 to large (deterministic sample), and notional_usdc = quote quantums ÷ 1e6
    (0.1 BTC at $64,000 = 6400 USDC)."""
    from node.client.market import (
        base_quantums_to_size,
        notional_usdc,
        price_to_subticks,
        size_to_base_quantums,
        subticks_to_price,
    )

    for m in _markets():
        for k in (1, 2, 7, 10, 99, 100, 12_345, 10**6 + 1, 10**9 + 7):
            subticks = k * m.subticks_per_tick
            assert price_to_subticks(m, subticks_to_price(m, subticks)) == subticks
            quantums = k * m.step_base_quantums
            assert size_to_base_quantums(m, base_quantums_to_size(m, quantums)) == quantums
    btc = _markets()[0]
    assert notional_usdc(btc, TENTH, P64K) == "6400"
    assert notional_usdc(btc, 1_000_000, 100_000) == "0.0001"  # 0.0001 BTC at $1 = 1e6 × 1e5 ÷ 1e9 = 100 quantums


@pytest.mark.parametrize("text, ppm", [("1", 1_000_000), ("1.0", 1_000_000),
                                       ("1.00", 1_000_000),  # found by this attack (fixed): was refused
                                       ("0.6", 600_000), ("0.05", 50_000)])
def test_cli_margin_fractions_accept_one_however_written(text, ppm):
    from node.cli.markets import _fraction_ppm

    assert _fraction_ppm(text, "maintenance fraction") == ppm


def test_a_flip_gives_the_new_side_the_entry_of_the_flipping_fill():
    """Account 1 buys 0.1 BTC at $64,100 (account 2's ask; taker fee 3.205 USDC). Then it sells 0.3 BTC IOC at
    $64,000 into account 3's post-only bid: it closes 0.1 (realizes −10 USDC) and opens a 0.2 short whose entry is
    $64,000 (12,800 USDC). Quote: 100,000 − 6,410 − 3.205 + 19,200 − 9.6 (500 ppm of 19,200) = 112,777.195;
    TNC = 112,777.195 − 12,800 = 99,977.195 (= 100,000 − 10 − 12.805 of fees); uPnL 0; IMR 5 % × 12,800 = 640."""
    r = mem_exchange(app_state())
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + 100 * D, tif=POST_ONLY, height_hint=h)]),
             orders_tx(1, 1, [place(1, BUY, TENTH, P64K + 100 * D, tif=IOC, height_hint=h)])])
    r.block([orders_tx(3, 1, [place(1, BUY, 3 * TENTH, P64K, tif=POST_ONLY, height_hint=h + 1)]),
             orders_tx(1, 2, [place(2, SELL, 3 * TENTH, P64K, tif=IOC, height_hint=h + 1)])])
    s = subaccount(r, 1)
    (p,) = s["positions"]
    assert (p["side"], p["size"], p["entry_price"], p["unrealized_pnl"]) == ("short", "-0.2", "64000", "0")
    assert (s["quote_balance"], s["total_net_collateral"], s["initial_margin_requirement"]) == \
        ("112777.195", "99977.195", "640")
    exact_pools(r)


def test_an_export_starts_its_chain_at_the_exported_height_plus_one():
    """Account 5 (capacity 60, refill 6) uses all 60 requests at height 12 of chain A and rests a short-term ask
    (good_til_block 12 + 40 = 52) through account 2. Heights in the export are A's, so InitChain refuses the export
    at CometBFT's default initial height 1 (found by this attack: it was accepted, and then budgets did not refill
    and the ask outlived its window until B reached A's height). At initial height 13 (= exported 12 + 1, what
    perpd init writes): account 5 has one block of refill (6 requests) in B's first block, as in A's next block,
    and the ask leaves B's book after height 52, its window."""
    r = mem_exchange(_small_account_state())
    while nxt(r) < 12:
        r.block([])
    h = nxt(r)
    assert h == 12
    res = r.block([orders_tx(5, 1, _places(60, h)),
                   orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, gtb=h + 40, height_hint=h)])])
    assert res.tx_results[0].code == 0 and res.tx_results[1].code == 0
    assert _budget(r, 5)["requests_available"] == "6"
    exported = json.loads(json.dumps(r.app.export_genesis()))
    assert exported["exported_height"] == "12"
    at_one = MemReplica()
    with pytest.raises(errors.AppError) as refused:
        at_one.app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(exported).encode(), [], 1)
    assert refused.value.error is errors.ERR_INVALID_GENESIS
    assert refused.value.message == ("this state was exported at height 12: start the chain with initial_height 13 "
                                     "(got 1); perpd init --app-state writes it")
    fresh = MemReplica()
    fresh.init_chain(exported)  # tests/helpers.Replica: initial height = exported + 1 = 13
    assert nxt(fresh) == 1 and fresh.app._last_height() == 12
    # Height 13: exactly one block of refill, 6 requests: 7 placements are rate-limited (nonce 2 stays unused), 6 pass.
    res = fresh.block([orders_tx(5, 2, _places(7, 13, first=100)), orders_tx(5, 2, _places(6, 13, first=200))])
    assert res.tx_results[0].code == errors.ERR_RATE_LIMITED.code, res.tx_results[0].log
    assert res.tx_results[1].code == 0, res.tx_results[1].log
    while nxt(fresh) <= 52:
        fresh.block([])
    assert len(asks(fresh)) == 1  # height 52: still inside good_til_block 52
    fresh.block([])  # height 53
    assert asks(fresh) == []
