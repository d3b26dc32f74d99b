"""clob genesis (app/clob/genesis.py): behaviours pinned after its mutation run (docs/mutation.md, issue #9): exact
refusals (with the path of the bad entry), the edges of a restorable order (subaccount 127, a buy, one quantum
left), the stored form of the next placement sequence, and stats entries without an owner or buckets."""

from __future__ import annotations

import base64

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
])
def test_clob_params_on_the_edges_are_accepted(fields):
    state = app_state()
    _params(**fields)(state)
    MemReplica().init_chain(state)
