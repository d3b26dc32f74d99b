"""Fuzzing the exchange with signed user input: nothing crashes, every outcome is explained, rejected input changes
nothing, the chain's invariants hold after every block, and replicas agree.

Each Hypothesis example is a few blocks (oracle tx at index 0, with an occasional price move of up to ±20 %) of
txs signed by accounts 1..4 (funded, with subaccounts 0, 1, 2 and account 2's subaccount 127), 5 (USDC in the
bank, no subaccount) and 6 (nothing at all). The txs carry:

- order actions of every kind (place, cancel, batch cancel, cancel-replace, the empty action), one or many per tx,
  also spread over two MsgOrders of one tx: valid ones around the current oracle price (short- and long-term,
  every time in force, market and reduce-only orders, big and small sizes) and valid orders with one field (most
  often), two or three, or all of them replaced by an edge value of the field's proto range (0, 1, off-by-one of the
  tick / step / good-til window, 2^31-1, 2^32-1, 2^62(+1), 2^63-1, 2^64-1, int64 minimum, past / future
  good-til-block(-time), unknown clob pair ids, subaccount numbers 0..255 and beyond, side / time in force outside
  their enums, order flags other than 0 and 64, slippage at and beyond its bounds) or, a third of the time, any value
  of the range; cancels, batch cancels and cancel-replaces of plausible or edge order ids; a maker / taker pair from
  two different accounts that cross at the same price, so fills really happen;
- deposits, withdrawals (to oneself, others, the pools, the fee collector, invalid addresses) and transfers with
  extreme amounts and subaccount numbers; messages naming another owner than the signer; order actions mixed with
  other messages; more than 200 actions; a MsgOrders without actions; replays of earlier txs.

Before the random examples, one explicit example (:func:`edge_sweep`) tries every listed edge value of every field
one at a time on an otherwise valid action or message, on top of open positions, and then after a 20 % price drop
that leaves an account below initial margin: an edge is never left to the luck of the draw, and a failure there is
reported at once (explicit examples are not shrunk). Random failures are shrunk, which can take a few minutes.

Every tx goes through CheckTx, then the block (every tx, whatever CheckTx said: a proposer can include anything)
through FinalizeBlock and Commit. Checked:

1. No exception escapes CheckTx, PrepareProposal, ProcessProposal (which accepts the honest proposal), FinalizeBlock,
   Commit or a query; every result has an integer code, a non-zero one a codespace and a log; a tx that passed its
   ante carries one ``order_action`` event per action (two for a cancel-replace: its cancel and place steps, also when
   the stateless checks refused it) with a known status, and a ``rejected`` one carries a
   non-zero code and a non-empty reason.
2. After every block: the per-block invariants (FinalizeBlock runs bank.check_block_conservation and
   subaccounts.check_block_invariants and would raise), and over the whole committed state
   tests/attack_helpers.check_global_money (bank supply, pools back the quote balances, Σ long = Σ short = open
   interest), the book never crossed (attack_helpers.best_prices, i.e. the public order-book query), the in-memory
   book equal to the one rebuilt from the stored orders, each stored order well-formed (on tick and step, 0 <
   remaining <= size, unexpired, with exactly its expiry-index entry), and each subaccount well-formed (number
   0..127, no zero position, an isolated position alone).
3. "Rejected changes nothing". A tx is *fully rejected* when its result code is non-zero, or when it is an order tx
   all of whose actions are ``rejected`` (or ``skipped``: a cancel-replace's placement after its cancel failed). A
   third replica runs every block without the fully rejected txs (same oracle tx, same block time). Its results for
   the txs it kept must equal the first replica's, and its committed state must equal the first replica's key for
   key except exactly what the rejected txs' ante legitimately keeps (app/tx/ante.py: once the ante passed, the
   nonce, the budget use and the fee stay even though a message fails):
   - the auth account entry of a signer whose rejected tx passed its ante: there the first replica's nonce window
     must be exactly the third one's plus the nonces of those txs (budget levels are not compared);
   - bank balances: the signer paid each such tx's fee (the ``tx`` event's ``fee_quote_quantums``: the
     per-message fee of non-trading messages, 0 for order txs) to the fee collector; everything else equal.
   This is sound because removing these txs can only leave their signers with more budget, more USDC in the bank and
   fewer used nonces, which can turn no accepted tx into a rejected one (nonces are unique and increasing per
   signer, a replay repeats a tx's bytes; budgets are far from exhausted), and bank USDC is not collateral for
   orders. It is stronger than "the rejected tx's writes are empty": it also catches a rejected action that changes
   what later actions of the block do (the book, the placement sequence, the working set of subaccounts).
4. Determinism: a second replica runs the same blocks without CheckTx, restarted from its LevelDB before every
   block (the book rebuilt from the store): identical app hashes, tx results and block events per block.

The whole run is also asserted to have exercised fills, resting orders, cancels and many distinct rejection codes,
so it does not only test rejection.
"""

from __future__ import annotations

import collections
import json
import pathlib
import tempfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from perpchain.v1 import tx_pb2

from app.auth import keeper as auth_keeper
from app.auth import keys as auth_keys
from app.bank import keeper as bank_keeper
from app.bank import keys as bank_keys
from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.clob import keeper as clob_keeper
from app.clob import keys as clob_keys
from app.clob.book import rebuild as rebuild_books
from app.lib.address import decode_address_or_none, encode_address
from app.perpetuals import keeper as perpetuals_keeper
from app.subaccounts import keeper as subaccounts_keeper
from app.subaccounts.keeper import CROSS_POOL, isolated_pool
from app.subaccounts.state import MAX_SUBACCOUNT_NUMBER
from node.client.txbuilder import sign_tx
from tests.attack_helpers import best_prices, check_global_money, committed, random_flow_state
from tests.exchange_helpers import BTC, BTC_PRICE, BUY, ETH, FOK, IOC, POST_ONLY, SELL, SOL
from tests.helpers import ADDRS, BLOCK_INTERVAL_NS, CHAIN_ID, GENESIS_TIME_NS, KEYS, Replica
from tests.oracle_helpers import extended_commit

# --- the chain -------------------------------------------------------------------------------------------------------

FIRST_HEIGHT = 2  # block 1 commits genesis
SHORT_WINDOW = 40  # clob DEFAULT_PARAMS short_block_window
LONG_WINDOW_NS = 95 * 86_400 * 10**9  # clob DEFAULT_PARAMS max_stateful_window_ns
STEP = 1_000_000  # every pair's step_base_quantums (tests/exchange_helpers.PAIRS)
TICK = {BTC: 100_000, ETH: 100_000, SOL: 1_000_000}
GENESIS_PRICES = {BTC: BTC_PRICE, ETH: 3_000_000_000, SOL: 15_000_000_000}  # = subticks for these pairs
MARKET_NAMES = {BTC: "BTC-USD", ETH: "ETH-USD", SOL: "SOL-USD"}
TRADERS = (1, 2, 3, 4)
SIGNERS = (1, 2, 3, 4, 1, 2, 3, 4, 5, 6)  # 5: bank USDC, no subaccount; 6: nothing
U32_MAX, U64_MAX, I64_MAX, I64_MIN = 2**32 - 1, 2**64 - 1, 2**63 - 1, -(2**63)
MAX_ORDER_QUANTUMS = 1 << 62
STATUSES = {"rejected", "skipped", "canceled", "resting", "partially_filled_resting", "filled", "partially_filled",
            "not_filled"}


def time_of(height: int) -> int:
    return GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS


def fuzz_state() -> dict:
    """The exchange genesis (deep-copied), subaccounts 0..2 of accounts 1..4 funded, and account 2's subaccount 127."""
    state = random_flow_state()
    state["subaccounts"]["deposits"].append({"owner": ADDRS[2], "number": MAX_SUBACCOUNT_NUMBER,
                                             "amount_quote_quantums": str(10_000 * 10**6)})
    return state


# --- strategies: plain dicts (readable falsifying examples), turned into signed txs by build_blocks -----------------
# One composite (``scenarios``); the helpers below are plain functions of its ``draw`` that only draw module-level
# strategies (building strategies inside a draw costs more than running the blocks).

# Edge values per field. Height- and price-relative ones are tokens ("rel", offset from the block height / time /
# the oracle price rounded to the tick), ("tick", k) = k ticks, ("top_tick", 0) = the largest uint64 on the tick,
# resolved by :func:`resolve_field` when the block is known; ("abs", v) is v.
NUMBER_EDGES = (0, 1, 2, 126, 127, 128, 200, 255, 256, 2**31 - 1, 2**31, U32_MAX)
CLIENT_ID_EDGES = (0, 1, 12, 2**31 - 1, 2**31, U32_MAX)
PAIR_EDGES = (0, 1, 2, 3, 4, 255, 256, 2**31 - 1, U32_MAX)
ENUM_EDGES = (0, 1, 2, 3, 4, -1, 2**31 - 1, -(2**31))  # proto3 open enums: any int32
FLAG_EDGES = (0, 64, 1, 32, 63, 65, 128, 255, 256, U32_MAX)
QUANTUM_EDGES = (0, 1, STEP - 1, STEP, STEP + 1, 2 * STEP - 1, 10**10, 2**31 - 1, U32_MAX,
                 MAX_ORDER_QUANTUMS - MAX_ORDER_QUANTUMS % STEP, MAX_ORDER_QUANTUMS, MAX_ORDER_QUANTUMS + 1, I64_MAX,
                 2**63, U64_MAX - U64_MAX % STEP, U64_MAX)
SUBTICK_EDGES = (("abs", 0), ("abs", 1), ("tick", 1), ("tick", 1, -1), ("tick", 1, 1), ("rel", 0), ("rel", 1),
                 ("rel", -1), ("rel", "tick"), ("abs", 2**31 - 1), ("abs", U32_MAX), ("abs", I64_MAX),
                 ("top_tick", 0), ("abs", U64_MAX))
GTB_EDGES = (("rel", -1), ("rel", 0), ("rel", 1), ("rel", SHORT_WINDOW), ("rel", SHORT_WINDOW + 1), ("abs", 0),
             ("abs", 1), ("abs", 2**31 - 1), ("abs", U32_MAX), ("abs", I64_MAX), ("abs", U64_MAX))
GTBT_EDGES = (("rel", -BLOCK_INTERVAL_NS), ("rel", -1), ("rel", 0), ("rel", 1), ("rel", LONG_WINDOW_NS),
              ("rel", LONG_WINDOW_NS + 1), ("abs", 0), ("abs", -1), ("abs", 1), ("abs", I64_MIN), ("abs", 2**62),
              ("abs", I64_MAX))
SLIPPAGE_EDGES = (0, 1, 50_000, 499_999, 500_000, 500_001, 999_999, 1_000_000, 2**31 - 1, U32_MAX)
AMOUNT_EDGES = (0, 1, 10**6 - 1, 10**6, 10**9, 10**10, 5 * 10**10, 10**11, 10**11 + 1, 9 * 10**11, 10**12, I64_MAX,
                2**63, U64_MAX)


def edges_or_any(edges, any_value: st.SearchStrategy) -> st.SearchStrategy:
    """An edge value two times in three, else any value of the range."""
    return st.one_of(st.sampled_from(edges), st.sampled_from(edges), any_value)


def _abs(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(lo, hi).map(lambda v: ("abs", v))


U32_NUMBERS = edges_or_any(NUMBER_EDGES, st.integers(0, U32_MAX))
U32_ANY = edges_or_any(CLIENT_ID_EDGES, st.integers(0, U32_MAX))
PAIR_IDS = edges_or_any(PAIR_EDGES, st.integers(0, U32_MAX))
FLAGS = edges_or_any(FLAG_EDGES, st.integers(0, U32_MAX))
AMOUNTS = edges_or_any(AMOUNT_EDGES, st.integers(0, U64_MAX))
FIELD_EDGE_LISTS = {"subaccount_number": NUMBER_EDGES, "client_id": CLIENT_ID_EDGES, "clob_pair_id": PAIR_EDGES,
                    "side": ENUM_EDGES, "quantums": QUANTUM_EDGES, "subticks": SUBTICK_EDGES,
                    "good_til_block": GTB_EDGES, "good_til_block_time_ns": GTBT_EDGES, "time_in_force": ENUM_EDGES,
                    "reduce_only": (False, True), "market_slippage_ppm": SLIPPAGE_EDGES}
FIELD_EDGES = {"subaccount_number": U32_NUMBERS, "client_id": U32_ANY, "clob_pair_id": PAIR_IDS,
               "side": st.sampled_from(ENUM_EDGES), "quantums": edges_or_any(QUANTUM_EDGES, st.integers(0, U64_MAX)),
               "subticks": edges_or_any(SUBTICK_EDGES, _abs(0, U64_MAX)),
               "good_til_block": edges_or_any(GTB_EDGES, _abs(0, U64_MAX)),
               "good_til_block_time_ns": edges_or_any(GTBT_EDGES, _abs(I64_MIN, I64_MAX)),
               "time_in_force": st.sampled_from(ENUM_EDGES), "reduce_only": st.booleans(),
               "market_slippage_ppm": edges_or_any(SLIPPAGE_EDGES, st.integers(0, U32_MAX))}
ORDER_FIELDS = tuple(FIELD_EDGES)
MUTATED_FIELDS = st.lists(st.sampled_from(ORDER_FIELDS), min_size=2, max_size=3, unique=True)


def resolve_field(name: str, value, pair: int, height: int, prices: dict) -> int:
    if not isinstance(value, tuple):
        return value
    kind, v, *more = value
    if kind == "abs":
        return v
    tick = TICK.get(pair, TICK[BTC])
    if name == "good_til_block":
        return height + v
    if name == "good_til_block_time_ns":
        return time_of(height) + v
    oracle = prices.get(pair, BTC_PRICE)
    if kind == "tick":
        return v * tick + sum(more)
    if kind == "top_tick":
        return U64_MAX - U64_MAX % tick
    return oracle - oracle % tick + (tick if v == "tick" else v)


def field_edge(draw, name: str, pair: int, height: int, prices: dict) -> int:
    return resolve_field(name, draw(FIELD_EDGES[name]), pair, height, prices)


def pick(draw, options):
    return draw(st.sampled_from(options))


def rarely(draw, one_in: int) -> bool:
    """True once in ``one_in`` draws; shrinks to False (the simpler case)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


def repeat(draw, most: int, element, first: bool = True) -> list:
    """Up to ``most`` elements (the first one always when ``first``), each further one with probability 3/4. Drawn
    as "another one?" choices, so Hypothesis shrinks the list by deleting any element."""
    out = [element()] if first else []
    while len(out) < most and draw(st.integers(0, 3)) != 0:
        out.append(element())
    return out


def good_place(draw, height: int, prices: dict, pair: int | None = None, side: int | None = None,
               tif: int | None = None, price: int | None = None, plain: bool = False) -> dict:
    """A valid-looking placement near the oracle: pair-appropriate subaccount, on tick and step, in its window
    (``plain``: never a market or reduce-only order)."""
    pair = pick(draw, (BTC, BTC, ETH, SOL)) if pair is None else pair
    number = 2 if pair == SOL else pick(draw, (0, 0, 1))
    if rarely(draw, 4):  # any subaccount: cross and isolated markets in one subaccount
        number = pick(draw, (0, 1, 2))
    side = pick(draw, (BUY, SELL)) if side is None else side
    tick, oracle = TICK[pair], prices[pair]
    if price is None:
        price = max(tick, oracle - oracle % tick + draw(st.integers(-4, 4)) * tick)
    steps = pick(draw, (100, 1_000, 10_000, 200_000)) if rarely(draw, 3) else draw(st.integers(1, 30))
    order = {"subaccount_number": number, "client_id": draw(st.integers(0, 12)), "clob_pair_id": pair, "side": side,
             "quantums": STEP * steps, "subticks": price, "good_til_block": height + draw(st.integers(0, 3))}
    if tif is None:
        tif = pick(draw, (0, 0, IOC, POST_ONLY, FOK))
    if tif:
        order["time_in_force"] = tif
    if tif in (0, POST_ONLY) and rarely(draw, 5):  # long-term
        order["good_til_block"] = 0
        order["good_til_block_time_ns"] = time_of(height) + draw(st.integers(1, 4)) * BLOCK_INTERVAL_NS
    elif tif in (0, IOC) and not plain and rarely(draw, 10):  # market order
        order["subticks"] = 0
        order["market_slippage_ppm"] = pick(draw, (1, 10_000, 50_000, 500_000))
    if not plain and rarely(draw, 7):
        order["reduce_only"] = True
    return order


def any_place(draw, height: int, prices: dict) -> dict:
    """Valid-looking (4 in 10), with one field at an edge value of its range (4 in 10), two or three fields (1 in
    10), or every field (1 in 10)."""
    kind = draw(st.integers(0, 9))
    if kind == 9:
        pair = draw(PAIR_IDS)
        return {name: field_edge(draw, name, pair, height, prices) for name in ORDER_FIELDS}
    order = good_place(draw, height, prices)
    if kind >= 4:
        for name in draw(MUTATED_FIELDS) if kind == 8 else [pick(draw, ORDER_FIELDS)]:
            order[name] = field_edge(draw, name, order["clob_pair_id"], height, prices)
    return order


def order_id(draw) -> dict:
    if not rarely(draw, 3):  # plausible: hits orders placed before
        pair = pick(draw, (BTC, ETH, SOL))
        return {"subaccount_number": 2 if pair == SOL else pick(draw, (0, 1)),
                "client_id": draw(st.integers(0, 12)), "clob_pair_id": pair, "order_flags": pick(draw, (0, 0, 64))}
    return {"subaccount_number": draw(U32_NUMBERS), "client_id": draw(U32_ANY), "clob_pair_id": draw(PAIR_IDS),
            "order_flags": draw(FLAGS)}


def batch_cancel(draw) -> dict:
    if not rarely(draw, 3):
        pair = pick(draw, (BTC, ETH, SOL))
        return {"subaccount_number": 2 if pair == SOL else pick(draw, (0, 1)), "clob_pair_id": pair,
                "client_ids": repeat(draw, 4, lambda: draw(st.integers(0, 12)), first=False),
                "order_flags": pick(draw, (0, 0, 64))}
    ids = list(range(201)) if rarely(draw, 6) else repeat(draw, 5, lambda: draw(U32_ANY), first=False)
    return {"subaccount_number": draw(U32_NUMBERS), "clob_pair_id": draw(PAIR_IDS), "client_ids": ids,
            "order_flags": draw(FLAGS)}


def any_action(draw, height: int, prices: dict) -> tuple:
    kind = pick(draw, ("place", "place", "place", "cancel", "batch_cancel", "cancel_replace", "empty"))
    if kind == "place":
        return kind, any_place(draw, height, prices)
    if kind == "cancel":
        return kind, order_id(draw)
    if kind == "batch_cancel":
        return kind, batch_cancel(draw)
    if kind == "cancel_replace":
        return kind, {"order_id": order_id(draw), "place": any_place(draw, height, prices)}
    return kind, {}


def actions(draw, height: int, prices: dict, most: int) -> list[tuple]:
    return repeat(draw, most, lambda: any_action(draw, height, prices))


OWNERS = ("self",) * 4 + (1, 2, 3, 4, 5, 6, 7, "perp1invalid", "", "SELF_UPPER")


def money_msg(draw) -> tuple:
    """Half the time one that can succeed (own subaccounts 0..2, amounts up to 20,000 USDC), else edge values."""
    kind = pick(draw, ("deposit", "withdraw", "transfer"))
    if not rarely(draw, 2):
        body = {"owner": "self", "subaccount_number": pick(draw, (0, 1, 2)),
                "amount_quote_quantums": pick(draw, (1, 10**6, 10**9, 2 * 10**10))}
        if kind == "withdraw":
            body["recipient"] = pick(draw, ("", "self", 1, 2, 7))
        elif kind == "transfer":
            body["recipient_owner"] = pick(draw, ("self", 1, 2, 3, 4, 5))
            body["recipient_subaccount_number"] = pick(draw, (0, 1, 2, 3))
        return kind, body
    number = draw(U32_NUMBERS) if rarely(draw, 3) else pick(draw, (0, 1, 2))
    body = {"owner": pick(draw, OWNERS), "subaccount_number": number, "amount_quote_quantums": draw(AMOUNTS)}
    if kind == "withdraw":
        body["recipient"] = pick(draw, ("", "", "self", 1, 2, 5, 7, "cross_pool", "sol_pool", "btc_pool",
                                        "fee_collector", "perp1invalid", "SELF_UPPER"))
    elif kind == "transfer":
        body["recipient_owner"] = pick(draw, ("self", 1, 2, 3, 4, 5, 6, 7, "cross_pool", "perp1invalid"))
        body["recipient_subaccount_number"] = draw(U32_NUMBERS) if rarely(draw, 3) else pick(draw, (0, 1, 2, 127))
    return kind, body


TX_KINDS = ("orders",) * 6 + ("cross",) * 2 + ("money",) * 2 + ("two_msg_orders", "mixed", "too_many", "no_actions",
                                                                 "replay")


def block_txs(draw, height: int, prices: dict, n_earlier: int) -> list[dict]:
    txs: list[dict] = []
    while len(txs) < 8 and draw(st.integers(0, 3)) != 0:
        kind = pick(draw, TX_KINDS)
        signer = pick(draw, SIGNERS)
        if kind == "orders":
            owner = pick(draw, OWNERS) if rarely(draw, 4) else "self"
            txs.append({"kind": kind, "signer": signer, "owner": owner, "actions": actions(draw, height, prices, 6)})
        elif kind == "cross":
            # A maker and a taker from two different accounts at the same price: fills really happen.
            maker = pick(draw, TRADERS)
            taker = pick(draw, tuple(t for t in TRADERS if t != maker))
            pair = pick(draw, (BTC, ETH, SOL))
            side = pick(draw, (BUY, SELL))
            tick = TICK[pair]
            price = max(tick, prices[pair] - prices[pair] % tick + draw(st.integers(-2, 2)) * tick)
            make = good_place(draw, height, prices, pair=pair, side=side, tif=pick(draw, (0, POST_ONLY)),
                              price=price, plain=True)
            take = good_place(draw, height, prices, pair=pair, side=SELL if side == BUY else BUY,
                              tif=pick(draw, (0, IOC, FOK)), price=price, plain=True)
            if rarely(draw, 2):
                take["quantums"] = make["quantums"]
            txs.append({"kind": "orders", "signer": maker, "owner": "self", "actions": [("place", make)]})
            txs.append({"kind": "orders", "signer": taker, "owner": "self", "actions": [("place", take)]})
        elif kind == "money":
            txs.append({"kind": kind, "signer": signer,
                        "msgs": repeat(draw, 3, lambda: money_msg(draw))})
        elif kind == "two_msg_orders":
            txs.append({"kind": kind, "signer": signer, "owner": "self", "actions": actions(draw, height, prices, 3),
                        "actions2": actions(draw, height, prices, 3)})
        elif kind == "mixed":
            txs.append({"kind": kind, "signer": signer, "owner": "self", "actions": actions(draw, height, prices, 2),
                        "msgs": [money_msg(draw)]})
        elif kind == "too_many":
            txs.append({"kind": kind, "signer": signer, "owner": "self",
                        "actions": [any_action(draw, height, prices)]})
        elif kind == "no_actions":
            txs.append({"kind": kind, "signer": signer, "owner": "self"})
        elif n_earlier + len(txs):
            txs.append({"kind": "replay", "of": draw(st.integers(0, n_earlier + len(txs) - 1))})
    return txs


PRICE_MOVES = st.dictionaries(st.sampled_from((BTC, ETH, SOL)),
                              st.sampled_from((-200_000, -50_000, -5_000, 5_000, 50_000, 200_000)), min_size=1)


@st.composite
def scenarios(draw) -> list[dict]:
    """1..4 blocks: {height, prices (the oracle report of the block, None: none), txs (specs)}."""
    prices = dict(GENESIS_PRICES)
    blocks = []
    n_txs = 0
    while not blocks or (len(blocks) < 4 and draw(st.integers(0, 2)) != 0):
        height = FIRST_HEIGHT + len(blocks)
        report = None
        if rarely(draw, 3):
            move = draw(PRICE_MOVES)
            for m, ppm in move.items():
                prices[m] += prices[m] * ppm // 1_000_000
            report = {m: prices[m] for m in sorted(move)}
        txs = block_txs(draw, height, dict(prices), n_txs)
        n_txs += len(txs)
        blocks.append({"height": height, "prices": report, "txs": txs})
    return blocks


def edge_sweep() -> list[dict]:
    """An explicit example, run before the random ones: every edge value of every field, one field at a time, so
    each is tried on an otherwise valid action or message whatever the random draws. Block 1 opens positions
    (account 1 long 10 BTC against account 2; account 3 long 10 SOL against account 4, isolated) and rests orders to
    cancel; block 2 is the sweep (placements, cancels, batch cancels, cancel-replaces, deposits, withdrawals,
    transfers); block 3 drops BTC by 20 % (account 1 is then below initial margin) and tries its orders and
    withdrawals, and reduce-only ones on both sides."""
    h1, h2, h3 = FIRST_HEIGHT, FIRST_HEIGHT + 1, FIRST_HEIGHT + 2
    btc_bid = BTC_PRICE - 10 * TICK[BTC]
    sol = GENESIS_PRICES[SOL]

    def place(height: int, client_id: int, **fields) -> tuple:
        return "place", {"subaccount_number": 0, "client_id": client_id, "clob_pair_id": BTC, "side": BUY,
                         "quantums": STEP, "subticks": btc_bid, "good_til_block": height + 5, **fields}

    def orders(signer: int, acts: list) -> list[dict]:
        return [{"kind": "orders", "signer": signer, "owner": "self", "actions": acts[i:i + 6]}
                for i in range(0, len(acts), 6)]

    block1 = [
        *orders(2, [place(h1, 1, side=SELL, quantums=100_000 * STEP, subticks=BTC_PRICE, time_in_force=POST_ONLY)]),
        *orders(1, [place(h1, 1, quantums=100_000 * STEP, subticks=BTC_PRICE, time_in_force=IOC)]),
        *orders(4, [place(h1, 1, subaccount_number=2, clob_pair_id=SOL, side=SELL, quantums=100 * STEP,
                          subticks=sol)]),
        *orders(3, [place(h1, 1, subaccount_number=2, clob_pair_id=SOL, quantums=100 * STEP, subticks=sol,
                          time_in_force=FOK)]),
        *orders(1, [place(h1, 0), place(h1, 2, good_til_block=0, good_til_block_time_ns=time_of(h1) + 10**12),
                    place(h1, 3, subaccount_number=1, clob_pair_id=ETH, subticks=GENESIS_PRICES[ETH] - 10**6)]),
    ]
    places, ids, money = [], [], []
    for name, edges in FIELD_EDGE_LISTS.items():
        for value in edges:
            p = place(h2, 100 + len(places))[1]
            p[name] = resolve_field(name, value, p["clob_pair_id"], h2, GENESIS_PRICES)
            places.append(("place", p))
    base_id = {"subaccount_number": 0, "client_id": 0, "clob_pair_id": BTC, "order_flags": 0}
    for name, edges in (("subaccount_number", NUMBER_EDGES), ("client_id", CLIENT_ID_EDGES),
                        ("clob_pair_id", PAIR_EDGES), ("order_flags", FLAG_EDGES)):
        ids += [dict(base_id, **{name: v}) for v in edges]
    cancels = [("cancel", oid) for oid in ids]
    batches = [("batch_cancel", {"subaccount_number": oid["subaccount_number"], "clob_pair_id": oid["clob_pair_id"],
                                 "client_ids": [oid["client_id"]], "order_flags": oid["order_flags"]}) for oid in ids]
    batches += [("batch_cancel", {"subaccount_number": 0, "clob_pair_id": BTC, "client_ids": list(CLIENT_ID_EDGES)}),
                ("batch_cancel", {"subaccount_number": 0, "clob_pair_id": BTC, "client_ids": list(range(201))})]
    replaces = [("cancel_replace", {"order_id": oid, "place": place(h2, 300 + i)[1]}) for i, oid in enumerate(ids)]
    for kind in ("deposit", "withdraw", "transfer"):
        extra = {"withdraw": {"recipient": ""}, "transfer": {"recipient_owner": 2, "recipient_subaccount_number": 0},
                 "deposit": {}}[kind]
        money += [(kind, {"owner": "self", "subaccount_number": 1, "amount_quote_quantums": a, **extra})
                  for a in AMOUNT_EDGES]
        money += [(kind, {"owner": "self", "subaccount_number": n, "amount_quote_quantums": 10**6, **extra})
                  for n in NUMBER_EDGES]
        money += [(kind, {"owner": o, "subaccount_number": 1, "amount_quote_quantums": 10**6, **extra})
                  for o in OWNERS[3:]]
    money += [("withdraw", {"owner": "self", "subaccount_number": 1, "amount_quote_quantums": 10**6, "recipient": r})
              for r in ("self", 2, 5, 7, "cross_pool", "sol_pool", "btc_pool", "fee_collector", "perp1invalid",
                        "SELF_UPPER")]
    money += [("transfer", {"owner": "self", "subaccount_number": 1, "amount_quote_quantums": 10**6,
                            "recipient_owner": r, "recipient_subaccount_number": n})
              for r in ("self", 3, 5, 6, 7, "cross_pool", "perp1invalid") for n in (0, 2, 127, 128, U32_MAX)]
    block2 = [*orders(3, places), *orders(1, cancels), *orders(1, batches), *orders(1, replaces)]
    block2 += [{"kind": "money", "signer": 1 + i % 4, "msgs": [m]} for i, m in enumerate(money)]
    reduce_sells = [place(h3, 500 + i, side=SELL, reduce_only=True, **{name: resolve_field(name, v, BTC, h3, {})})
                    for i, (name, v) in enumerate([("quantums", q) for q in QUANTUM_EDGES]
                                                  + [("time_in_force", t) for t in ENUM_EDGES])]
    block3 = [
        *orders(2, [place(h3, 7, subticks=BTC_PRICE * 8 // 10 - 10 * TICK[BTC], quantums=10_000 * STEP,
                          time_in_force=POST_ONLY)]),
        *orders(1, [place(h3, 8, quantums=STEP), place(h3, 9, side=SELL, quantums=STEP, subticks=BTC_PRICE)]),
        *orders(1, reduce_sells),
        *orders(2, [place(h3, 10, reduce_only=True, quantums=STEP, subticks=BTC_PRICE, time_in_force=IOC)]),
        {"kind": "money", "signer": 1, "msgs": [("withdraw", {"owner": "self", "subaccount_number": 0,
                                                              "amount_quote_quantums": 1, "recipient": ""})]},
        {"kind": "money", "signer": 1, "msgs": [("transfer", {"owner": "self", "subaccount_number": 0,
                                                              "amount_quote_quantums": 1, "recipient_owner": 2,
                                                              "recipient_subaccount_number": 0})]},
        {"kind": "money", "signer": 1, "msgs": [("deposit", {"owner": "self", "subaccount_number": 0,
                                                             "amount_quote_quantums": 50_000 * 10**6})]},
    ]
    return [{"height": h1, "prices": None, "txs": block1}, {"height": h2, "prices": None, "txs": block2},
            {"height": h3, "prices": {BTC: BTC_PRICE * 8 // 10}, "txs": block3}]


# --- building signed txs ------------------------------------------------------------------------------------------

def _address(who, signer: int) -> str:
    if who == "self":
        return ADDRS[signer]
    if who == "SELF_UPPER":
        return ADDRS[signer].upper()
    if isinstance(who, int):
        return ADDRS[who]
    special = {"cross_pool": CROSS_POOL, "sol_pool": isolated_pool(SOL), "btc_pool": isolated_pool(BTC),
               "fee_collector": FEE_COLLECTOR_ADDRESS}
    return encode_address(special[who]) if who in special else who


def build_action(spec: tuple) -> tx_pb2.OrderAction:
    kind, body = spec
    if kind == "place":
        return tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(**body))
    if kind == "cancel":
        return tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(**body)))
    if kind == "batch_cancel":
        return tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(**body))
    if kind == "cancel_replace":
        return tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
            order_id=tx_pb2.OrderId(**body["order_id"]), place=tx_pb2.PlaceOrder(**body["place"])))
    return tx_pb2.OrderAction()


def build_money(spec: tuple, signer: int) -> tx_pb2.Msg:
    kind, body = spec
    body = dict(body, owner=_address(body["owner"], signer))
    if kind == "deposit":
        return tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(**body))
    if kind == "withdraw":
        return tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(**dict(body, recipient=_address(body["recipient"], signer))))
    return tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(**dict(body, recipient_owner=_address(body["recipient_owner"],
                                                                                         signer))))


def build_blocks(scenario: list[dict]) -> list[tuple[dict, list[bytes]]]:
    """Signed txs per block; each signer's nonces count 1, 2, 3, ... in block order (replays repeat bytes)."""
    nonces: collections.Counter = collections.Counter()
    built: list[bytes] = []
    out = []
    for block in scenario:
        txs = []
        for spec in block["txs"]:
            if spec["kind"] == "replay":
                tx = built[spec["of"]]
            else:
                signer = spec["signer"]
                nonces[signer] += 1
                msgs = []
                if "actions" in spec or spec["kind"] == "no_actions":
                    owner = _address(spec["owner"], signer)
                    actions = [build_action(a) for a in spec.get("actions", [])]
                    if spec["kind"] == "too_many":
                        actions = actions * 201
                    msgs.append(tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=owner, actions=actions)))
                    if "actions2" in spec:
                        msgs.append(tx_pb2.Msg(orders=tx_pb2.MsgOrders(
                            owner=owner, actions=[build_action(a) for a in spec["actions2"]])))
                msgs.extend(build_money(m, signer) for m in spec.get("msgs", []))
                tx = sign_tx(KEYS[signer], CHAIN_ID, nonces[signer], msgs)
            built.append(tx)
            txs.append(tx)
        out.append((block, txs))
    return out


# --- reading results and state ------------------------------------------------------------------------------------

def decoded_orders(tx: bytes) -> list[tx_pb2.OrderAction] | None:
    """The order actions of one of our txs (None if it is not an order-only tx)."""
    body = tx_pb2.TxBody.FromString(tx_pb2.Tx.FromString(tx).body)
    if not body.messages or any(m.WhichOneof("sum") != "orders" for m in body.messages):
        return None
    return [a for m in body.messages for a in m.orders.actions]


def attrs_of(result, event_type: str) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == event_type]


def check_results(user_txs: list[bytes], results, stats: collections.Counter) -> None:
    """Point 1 of the module docstring, for one block's user txs."""
    assert len(results) == len(user_txs)
    for tx, res in zip(user_txs, results):
        assert isinstance(res.code, int) and res.code >= 0, res
        actions = attrs_of(res, "order_action")
        if res.code:
            stats[f"tx:{res.code}"] += 1
            assert res.codespace and res.log, res
            assert not actions, f"a tx that failed ({res.log}) reports order actions {actions}"
            continue
        assert len(attrs_of(res, "tx")) == 1, res  # the ante passed: its signer event
        orders = decoded_orders(tx)
        if orders is None:
            stats["money_ok"] += 1
            continue
        # One event per action, two for a cancel-replace (its cancel and place steps, also when the stateless
        # checks refused it).
        expected = collections.Counter({str(i): 2 if a.WhichOneof("action") == "cancel_replace" else 1
                                        for i, a in enumerate(orders)})
        assert collections.Counter(a["action_index"] for a in actions) == expected, (expected, actions)
        for i, a in enumerate(orders):
            steps = sorted(e.get("step", "") for e in actions if e["action_index"] == str(i))
            want = ["cancel", "place"] if a.WhichOneof("action") == "cancel_replace" else [""]
            assert steps == want, (i, steps, actions)
        for a in actions:
            assert a.get("status") in STATUSES, a
            stats[f"status:{a['status']}"] += 1
            if a["status"] == "rejected":
                assert a.get("code", "").isdigit() and int(a["code"]) > 0, a
                assert a.get("reason"), a
                stats[f"action:{a['code']}"] += 1
        stats["fills"] += len(attrs_of(res, "fill"))


def fully_rejected(tx: bytes, res) -> bool:
    if res.code:
        return True
    actions = attrs_of(res, "order_action")
    return decoded_orders(tx) is not None and all(a["status"] in ("rejected", "skipped") for a in actions)


def state_of(r: Replica) -> dict[bytes, bytes]:
    return dict(r.store.iterate(b"\x01", None))


def check_state(r: Replica, height: int) -> None:
    """Point 2 of the module docstring, over the committed state of ``r`` after block ``height``."""
    check_global_money(r)
    for market in MARKET_NAMES.values():
        bid, ask = best_prices(r, market)
        assert bid is None or ask is None or bid < ask, f"{market} crossed: bid {bid} >= ask {ask}"
    store = committed(r)
    live = r.app.committed_books()
    assert live is not None
    assert live.index == rebuild_books(store).index, "the in-memory book differs from the stored orders"
    pairs = {p.id: p for p in clob_keeper.iter_pairs(store)}
    expiry = set()
    block_time = time_of(height)
    for okey, o in clob_keeper.iter_orders(store):
        assert okey == clob_keeper.key_of(o)
        pair = pairs[o.clob_pair_id]
        assert o.quantums % pair.step_base_quantums == 0 and o.subticks % pair.subticks_per_tick == 0, o
        assert 0 < o.remaining_quantums <= o.quantums and o.subticks > 0 and o.side in (BUY, SELL), o
        assert o.time_in_force in (0, POST_ONLY) and o.subaccount_number <= MAX_SUBACCOUNT_NUMBER, o
        if o.order_flags == clob_keys.SHORT_TERM:
            assert height <= o.good_til_block <= o.placed_height + SHORT_WINDOW and not o.good_til_block_time_ns, o
            expiry.add(clob_keys.expiry_block_key(o.good_til_block, okey))
        else:
            assert o.order_flags == clob_keys.LONG_TERM and not o.good_til_block, o
            assert o.good_til_block_time_ns > block_time, o
            expiry.add(clob_keys.expiry_time_key(o.good_til_block_time_ns, okey))
    stored_expiry = {k for k, _ in store.iterate_prefix(clob_keys.EXPIRY_BLOCK_PREFIX)} | \
                    {k for k, _ in store.iterate_prefix(clob_keys.EXPIRY_TIME_PREFIX)}
    assert stored_expiry == expiry, "expiry index and stored orders disagree"
    isolated = {p.id for p in perpetuals_keeper.iter_perpetuals(store) if p.market_type == perpetuals_keeper.ISOLATED}
    for sid, sub in subaccounts_keeper.iter_subaccounts(store):
        assert 0 <= sid.number <= MAX_SUBACCOUNT_NUMBER, sid
        assert I64_MIN <= sub.quote_balance_quote_quantums <= I64_MAX, (sid, sub)
        assert all(p.size_base_quantums for p in sub.positions.values()), (sid, sub)
        if isolated & set(sub.positions):
            assert len(sub.positions) == 1, (sid, sub)
    for i in range(1, 8):
        for path in (f"/subaccounts/of/{ADDRS[i]}", f"/clob/orders/{ADDRS[i]}", f"/auth/account/{ADDRS[i]}",
                     f"/bank/balance/{ADDRS[i]}"):
            res = r.app.query(path, b"")
            assert res.code in (0, 203), (path, res)  # 203: not_found (no subaccount)
            if res.code == 0:
                json.loads(res.value)


def compare_without_rejected(full: Replica, lean: Replica, removed_nonces: dict[bytes, set[int]],
                             fees: collections.Counter) -> None:
    """Point 3 of the module docstring: ``full`` ran every tx, ``lean`` all but the fully rejected ones."""
    a, b = state_of(full), state_of(lean)
    for signer, nonces in removed_nonces.items():
        key = auth_keys.account_key(signer)
        got = auth_keeper.decode_account(a.pop(key)).nonces
        before = auth_keeper.decode_account(b.pop(key)).nonces if key in b else []
        assert got == sorted(set(before) | nonces), \
            f"{encode_address(signer)}: nonces {got}, expected {sorted(before)} plus the rejected txs' {sorted(nonces)}"
    n = len(bank_keys.BALANCE_PREFIX)
    bal_a = {k[n:]: bank_keeper.decode_amount(a.pop(k)) for k in list(a) if k.startswith(bank_keys.BALANCE_PREFIX)}
    bal_b = {k[n:]: bank_keeper.decode_amount(b.pop(k)) for k in list(b) if k.startswith(bank_keys.BALANCE_PREFIX)}
    expected = collections.Counter(bal_b)
    for signer, fee in fees.items():
        expected[signer] -= fee
        expected[FEE_COLLECTOR_ADDRESS] += fee
    wrong = {encode_address(k): (bal_a.get(k, 0), expected.get(k, 0))
             for k in set(bal_a) | set(expected) if bal_a.get(k, 0) != expected.get(k, 0)}
    assert not wrong, f"bank balances (got, expected) differ beyond the rejected txs' fees: {wrong}"
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))

    def show(state: dict, k: bytes) -> str:
        return "absent" if k not in state else repr(state[k][:40].hex() + ("..." if len(state[k]) > 40 else ""))

    assert not diff, f"rejected txs changed state ({len(diff)} keys): " + "; ".join(
        f"key {k.hex()}: {show(a, k)} with them, {show(b, k)} without" for k in diff[:6])


# --- the run ------------------------------------------------------------------------------------------------------

def run_scenario(base: pathlib.Path, scenario: list[dict], stats: collections.Counter) -> None:
    names = ("checked", "restarting", "lean")
    reps = {name: Replica(base / name) for name in names}
    try:
        for r in reps.values():
            r.init_chain(fuzz_state(), vote_extensions_enable_height=1)
            r.block([])
        checked, restarting, lean = reps["checked"], reps["restarting"], reps["lean"]
        removed_nonces: dict[bytes, set[int]] = {}
        fees: collections.Counter = collections.Counter()
        for block, user_txs in build_blocks(scenario):
            height = block["height"]
            assert checked.app.info()[0] + 1 == height
            t = time_of(height)
            ext, last = extended_commit(height - 1, [dict(block["prices"] or {})] * 4)
            for tx in user_txs:
                res = checked.app.check_tx(tx)
                assert isinstance(res.code, int) and (res.code == 0 or (res.codespace and res.log)), res
                stats[f"check:{res.code}"] += 1
            proposal = checked.app.prepare_proposal(list(user_txs), 1 << 22, height, ext)
            assert checked.app.process_proposal(proposal, height, last), "the honest proposal was refused"
            oracle_tx = proposal[0]
            # The block as decided: every tx, whatever CheckTx and PrepareProposal said.
            res_full = checked.app.finalize_block(height, t, [oracle_tx, *user_txs], last)
            checked.app.commit()
            assert res_full.tx_results[0].code == 0, res_full.tx_results[0].log
            results = res_full.tx_results[1:]
            check_results(user_txs, results, stats)
            check_state(checked, height)

            restarting.restart()
            res_restarted = restarting.app.finalize_block(height, t, [oracle_tx, *user_txs], last)
            restarting.app.commit()
            assert res_restarted.app_hash == res_full.app_hash, f"restarted replica diverged at height {height}"
            assert res_restarted.tx_results == res_full.tx_results and res_restarted.events == res_full.events

            kept = []
            for tx, res in zip(user_txs, results):
                if not fully_rejected(tx, res):
                    kept.append((tx, res))
                    continue
                stats["fully_rejected"] += 1
                for ev in attrs_of(res, "tx"):  # the ante passed: the nonce and fee stay
                    signer = decode_address_or_none(ev["signer"])
                    removed_nonces.setdefault(signer, set()).add(int(ev["nonce"]))
                    fees[signer] += int(ev["fee_quote_quantums"])
            stats["kept"] += len(kept)
            res_lean = lean.app.finalize_block(height, t, [oracle_tx, *(tx for tx, _ in kept)], last)
            lean.app.commit()
            for i, ((tx, res), got) in enumerate(zip(kept, res_lean.tx_results[1:])):
                assert got == res, f"height {height}: kept tx {i} answered differently without the rejected txs"
            assert res_lean.events == res_full.events
            compare_without_rejected(checked, lean, removed_nonces, fees)
    finally:
        for r in reps.values():
            r.close()


def test_fuzz_exchange_never_crashes_and_rejected_input_changes_nothing(tmp_path):
    stats: collections.Counter = collections.Counter()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenario=scenarios())
    @example(scenario=edge_sweep())
    def fuzz(scenario):
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            run_scenario(pathlib.Path(d), scenario, stats)

    fuzz()
    print(sorted(stats.items()))  # what the run exercised (pytest -s)
    # The run exercised the exchange, not only its rejections.
    assert stats["fills"] >= 20, stats
    for status in ("resting", "filled", "canceled", "rejected"):
        assert stats[f"status:{status}"] >= 5, (status, stats)
    for code in (602, 704, 706, 708, 711, 712):  # collateral, good-til, not found, reduce-only, malformed, FOK
        assert stats[f"action:{code}"] >= 1, (code, stats)
    assert stats["fully_rejected"] >= 50 and stats["kept"] >= 50 and stats["money_ok"] >= 5, stats
