"""clob genesis (app/clob/genesis.py): behaviours pinned after its mutation run (docs/mutation.md, issue #9): exact
refusals (with the path of the bad entry), the edges of a restorable order (subaccount 127, a buy, one quantum
left), the stored form of the next placement sequence, and stats entries without an owner or buckets."""

from __future__ import annotations

import base64
import copy

import pytest

from app import errors
from app.clob import keys
from app.store import BranchStore
from tests.attack_helpers import app_state
from tests.exchange_helpers import BTC, book
from tests.mutation_helpers import MemReplica, mem_exchange

OWNER_B64 = base64.b64encode(bytes(20)).decode()


def refused(mutate) -> str:
    state = app_state()
    mutate(state)
    with pytest.raises(errors.AppError) as info:
        MemReplica().init_chain(state)
    assert info.value.code == errors.ERR_INVALID_GENESIS.code
    return info.value.log


@pytest.mark.parametrize("mutate, log", [
    pytest.param(lambda s: s.update(clob=[]), "clob genesis must be an object", id="not an object"),
    pytest.param(lambda s: s["clob"].update(clob_pairs=s["clob"]["clob_pairs"] + [{**s["clob"]["clob_pairs"][0],
                                                                                     "id": 7}]),
                 "every perpetual needs exactly one clob pair", id="two pairs of one perpetual"),
    pytest.param(lambda s: s["clob"]["clob_pairs"][0].update(id="x"),
                 "clob.clob_pairs[0]: Failed to parse id field: invalid literal for int() with base 10: 'x'.",
                 id="a malformed pair"),
    pytest.param(lambda s: s["clob"].update(orders=[{"client_id": "x"}]),
                 "clob.orders[0]: Failed to parse client_id field: invalid literal for int() with base 10: 'x'.",
                 id="a malformed order"),
    pytest.param(lambda s: s["clob"].update(stats=["x"]), "clob.stats[0].owner None is not an address",
                 id="a stats entry that is not an object"),
    pytest.param(lambda s: s["clob"].update(stats=[{}]), "clob.stats[0].owner None is not an address",
                 id="a stats entry without an owner"),
])
def test_bad_clob_genesis_is_refused_exactly(mutate, log):
    assert refused(mutate) == f"invalid_genesis: {log}"


def test_restorable_order_edges_subaccount_127_a_buy_and_one_quantum_left():
    """Three resting orders on BTC-USD: subaccount 127's ask, a bid, and an ask with 1 of its 1 000 000 base
    quantums left; all restored (the book shows the bid at $64,000 and 1 000 001 quantums of asks at $65,000)."""
    base = {"owner": OWNER_B64, "clob_pair_id": BTC, "quantums": "1000000", "good_til_block": "30"}
    state = app_state()
    state["clob"]["orders"] = [
        {**base, "client_id": 1, "subaccount_number": 127, "side": "SIDE_SELL", "remaining_quantums": "1000000",
         "subticks": "6500000000", "sequence": "1"},
        {**base, "client_id": 2, "side": "SIDE_BUY", "remaining_quantums": "1000000", "subticks": "6400000000",
         "sequence": "2"},
        {**base, "client_id": 3, "side": "SIDE_SELL", "remaining_quantums": "1", "subticks": "6500000000",
         "sequence": "3"},
    ]
    state["clob"]["next_sequence"] = "4"  # above every stored sequence (required since session 5)
    r = mem_exchange(state)
    b = book(r)
    assert [(x["price"], x["quantums"]) for x in b["bids"]] == [("64000", "1000000")]
    assert [(x["price"], x["quantums"]) for x in b["asks"]] == [("65000", "1000001")]


def test_next_sequence_is_stored_as_8_big_endian_bytes_and_stats_buckets_may_be_left_out():
    """next_sequence 9 -> 00 00 00 00 00 00 00 09 (consensus state: its bytes are in the app hash); a stats entry
    with an owner of "" and no buckets stores empty exchange-wide stats."""
    state = app_state()
    state["clob"].update(next_sequence="9", stats=[{"owner": ""}])
    r = mem_exchange(state)
    store = BranchStore(r.store)
    assert store.get(keys.SEQUENCE_KEY) == bytes(7) + b"\x09"
    assert store.get(keys.GLOBAL_STATS_KEY) == b""


def _params(**fields):
    def mutate(state):
        from app.clob.genesis import DEFAULT_PARAMS
        state["clob"]["params"] = {**DEFAULT_PARAMS, **fields}
    return mutate


def _params_without(field):
    def mutate(state):
        from app.clob.genesis import DEFAULT_PARAMS
        state["clob"]["params"] = {k: v for k, v in DEFAULT_PARAMS.items() if k != field}
    return mutate


@pytest.mark.parametrize("mutate, log", [
    pytest.param(_params_without("short_block_window"),
                 "short_block_window must be at least 1 block (short-term orders need a window)",
                 id="no short-term window"),
    pytest.param(_params(max_stateful_window_ns="0"),
                 "max_stateful_window_ns must be at least 1 ns (long-term orders need a window)",
                 id="long-term window 0"),
    pytest.param(_params(max_stateful_window_ns="-1"),
                 "max_stateful_window_ns must be at least 1 ns (long-term orders need a window)",
                 id="long-term window -1"),
    pytest.param(_params(max_market_slippage_ppm=1_000_000),
                 "max_market_slippage_ppm must be below 1000000 (0 = no bound)", id="max slippage 100 %"),
    pytest.param(_params_without("default_market_slippage_ppm"), "default_market_slippage_ppm must be in 1..999999",
                 id="no default slippage"),
    pytest.param(_params(default_market_slippage_ppm=1_000_000, max_market_slippage_ppm=0),
                 "default_market_slippage_ppm must be in 1..999999", id="default slippage 100 %"),
    pytest.param(_params(default_market_slippage_ppm=900_000, max_market_slippage_ppm=100_000),
                 "default_market_slippage_ppm 900000 is above max_market_slippage_ppm 100000",
                 id="default above the bound"),
    pytest.param(_params(max_order_actions_per_block=399),
                 "max_order_actions_per_block 399 is below 400: one valid tx (200 cancel-replaces) could never fit in "
                 "a block (0 = no cap)", id="block cap below one full tx"),
    pytest.param(_params(max_order_actions_per_block=1),
                 "max_order_actions_per_block 1 is below 400: one valid tx (200 cancel-replaces) could never fit in "
                 "a block (0 = no cap)", id="block cap 1"),
])
def test_clob_params_a_chain_cannot_run_with_are_refused(mutate, log):
    """A params object that leaves a window or the default slippage out (0) would refuse every order of that kind
    (helper review, session 7): refused at genesis with the field named."""
    assert refused(mutate) == f"invalid_genesis: clob.params: {log}"


@pytest.mark.parametrize("fields", [
    pytest.param({"short_block_window": 1, "max_stateful_window_ns": "1"}, id="windows of 1"),
    pytest.param({"default_market_slippage_ppm": 999_999, "max_market_slippage_ppm": 0}, id="no bound"),
    pytest.param({"default_market_slippage_ppm": 1, "max_market_slippage_ppm": 999_999}, id="widest bound"),
    pytest.param({"default_market_slippage_ppm": 500_000, "max_market_slippage_ppm": 500_000}, id="default = bound"),
    pytest.param({"max_order_actions_per_block": 0}, id="no block cap"),
    pytest.param({"max_order_actions_per_block": 400}, id="block cap of exactly one full tx"),
])
def test_clob_params_on_the_edges_are_accepted(fields):
    state = app_state()
    _params(**fields)(state)
    MemReplica().init_chain(state)


def _order(client_id: int, side: str, dollars: int, sequence: int, pair: int = BTC) -> dict:
    """A resting short-term order of 0.0001 coin at ``dollars`` (BTC-USD and ETH-USD: 100 000 subticks = $1)."""
    return {"owner": OWNER_B64, "clob_pair_id": pair, "quantums": "1000000", "good_til_block": "30",
            "client_id": client_id, "side": side, "remaining_quantums": "1000000",
            "subticks": str(dollars * 100_000), "sequence": str(sequence)}


def _with_orders(orders, next_sequence=None):
    def mutate(state):
        state["clob"]["orders"] = orders
        if next_sequence is not None:
            state["clob"]["next_sequence"] = str(next_sequence)
    return mutate


@pytest.mark.parametrize("mutate, log", [
    pytest.param(_with_orders([_order(1, "SIDE_SELL", 65_000, 1), _order(2, "SIDE_SELL", 66_000, 1)], 3),
                 "clob.orders[1] repeats placement sequence 1 (time priority must be total)", id="same sequence"),
    pytest.param(_with_orders([_order(1, "SIDE_BUY", 65_000, 1), _order(2, "SIDE_SELL", 65_000, 2)], 3),
                 "clob.orders[1] crosses the book of clob pair 0: best bid 6500000000 >= best ask 6500000000 subticks",
                 id="bid equals ask"),
    # best bid = the highest bid (63,000 then 64,000), best ask = the lowest ask (66,000 then 65,000): a bid at
    # 65,500 crosses 65,000 though not the last ask listed
    pytest.param(_with_orders([_order(1, "SIDE_BUY", 63_000, 1), _order(2, "SIDE_BUY", 64_000, 2),
                               _order(3, "SIDE_BUY", 62_000, 3), _order(4, "SIDE_SELL", 65_000, 4),
                               _order(5, "SIDE_SELL", 66_000, 5), _order(6, "SIDE_BUY", 65_500, 6)], 7),
                 "clob.orders[5] crosses the book of clob pair 0: best bid 6550000000 >= best ask 6500000000 subticks",
                 id="a bid above the lowest ask"),
    pytest.param(_with_orders([_order(1, "SIDE_SELL", 65_000, 1)]),
                 "clob.next_sequence 1 must be above every stored order's sequence (largest 1)",
                 id="orders without next_sequence"),
    pytest.param(_with_orders([_order(1, "SIDE_SELL", 65_000, 1), _order(2, "SIDE_SELL", 65_000, 5)], 5),
                 "clob.next_sequence 5 must be above every stored order's sequence (largest 5)",
                 id="next_sequence equal to the largest"),
    pytest.param(lambda s: s["clob"].update(stats=[{"owner": "", "buckets": "zz"}]), "clob.stats[0].buckets is not hex",
                 id="buckets not hex"),
    pytest.param(lambda s: s["clob"].update(stats=[{"owner": "", "buckets": "00" * 25}]),
                 "clob.stats[0].buckets: not whole 24-byte buckets", id="buckets of 25 bytes"),
])
def test_restored_orders_and_stats_that_would_corrupt_the_book_are_refused_exactly(mutate, log):
    assert refused(mutate) == f"invalid_genesis: {log}"


def test_each_pair_has_its_own_best_prices_and_an_ask_at_one_subtick_rests():
    """A bid at $64,000 on BTC-USD and an ask at $1 on ETH-USD do not cross (different books); on a pair whose tick
    is 1 subtick, an ask at 1 subtick with no bid is a valid book (the best bid starts at 0, not 1)."""
    state = copy.deepcopy(app_state())
    state["clob"]["clob_pairs"][1]["subticks_per_tick"] = "1"
    state["clob"]["orders"] = [_order(1, "SIDE_BUY", 64_000, 1),
                               {**_order(2, "SIDE_SELL", 1, 2, pair=1)},
                               {**_order(3, "SIDE_SELL", 0, 3, pair=1), "client_id": 3, "subticks": "1"}]
    state["clob"]["next_sequence"] = "4"
    r = mem_exchange(state)
    assert [(x["price"]) for x in book(r)["bids"]] == ["64000"]
    assert len(book(r, "ETH-USD")["asks"]) == 2
