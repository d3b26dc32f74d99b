"""app/prices behaviour the mutation run found unpinned (docs/mutation.md, app/prices survivors; issue #8).

Each test calls the prices functions directly on an in-memory store (no LevelDB, no Application): genesis
validation and its boundaries, the export keys, the market view of /prices/market(s), the block step's events and
its use of the basis source, key bytes, the mark's floor, staleness, vote-extension boundaries and the oracle
caches. Every expected value is worked out by hand from docs/oracle.md in the comments, never read back from the code.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from perpchain.v1 import prices_pb2, state_pb2

from app import errors
from app.context import BlockInfo
from app.events import Event
from app.lib.crypto import SignatureMemo
from app.lib.encoding import encode_proto
from app.prices import keeper, keys
from app.prices.abci import process_oracle_prices
from app.prices.expected import no_basis
from app.prices.genesis import export_genesis, init_genesis
from app.prices.logic import compute_mark, is_stale, vote_extension_sign_bytes
from app.prices.params import BLOCK_ID_FLAG_COMMIT, ORACLE_TX_MARKER
from app.prices.queries import format_scaled, query_market, query_markets
from app.prices.votes import (
    MarketIndex,
    OracleCache,
    _extension_verifies,
    decode_oracle_tx_or_none,
    decode_vote_extension_or_none,
    encode_vote_extension,
)
from app.store import BranchStore
from tests.helpers import CHAIN_ID, VALIDATOR_KEYS

G = 1_700_000_000_000_000_000  # genesis time (ns)
SECOND = 1_000_000_000
INT64_MAX = 9_223_372_036_854_775_807  # 2^63 - 1


class MemStore:
    """The smallest CommittedReader: a dict, iterated in key order."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def iterate(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        for k in sorted(self.data):
            if k >= start and (end is None or k < end):
                yield k, self.data[k]


def fresh_store() -> BranchStore:
    return BranchStore(MemStore())


def btc(**changes) -> dict:
    m = {"id": 0, "pair": "BTC-USD", "exponent": -5, "min_price_change_ppm": 1000, "price": "6400000000"}
    m.update(changes)
    return m


def base_state() -> dict:
    return {"params": {"stale_after_ns": "10000000000"}, "markets": [btc()]}


def genesis_store(state: dict, genesis_time_ns: int = G) -> BranchStore:
    store = fresh_store()
    init_genesis(store, state, genesis_time_ns)
    return store


# --- genesis: refusals name the field first (docs/oracle.md: "a message naming the field") ----------------------------
def _params(**kv):
    def f(state):
        state["params"].update(kv)
        return state
    return f


def _market(**kv):
    def f(state):
        state["markets"][0].update(kv)
        return state
    return f


def _markets(value):
    def f(state):
        state["markets"] = value
        return state
    return f


def _whole(value):
    return lambda state: value


REFUSED = [
    pytest.param(_whole([]), "prices", "genesis must be an object", id="a prices genesis that is a list is refused"),
    pytest.param(_params(stale_after_ns="0"), "prices.params.stale_after_ns", "must be positive",
                 id="a default staleness window of 0 ns is refused"),
    pytest.param(_params(stale_after_ns="9223372036854775808"), "prices.params.stale_after_ns", "exceeds int64",
                 id="a default staleness window of 2^63 ns is refused"),
    pytest.param(_params(stale_after_ns=5), "prices.params.stale_after_ns", "must be a decimal string",
                 id="a default staleness window given as a JSON number is refused"),
    pytest.param(_params(mark_basis_smoothing_ppm=1_000_001), "prices.params.mark_basis_smoothing_ppm",
                 "must be an integer in [0, 1000000], got 1000001", id="smoothing above one million ppm is refused"),
    pytest.param(_params(mark_basis_smoothing_ppm=-1), "prices.params.mark_basis_smoothing_ppm",
                 "must be an integer in [0, 1000000], got -1", id="negative smoothing is refused"),
    pytest.param(_params(mark_basis_smoothing_ppm="5"), "prices.params.mark_basis_smoothing_ppm",
                 "got '5'", id="smoothing given as a string is refused"),
    pytest.param(_params(mark_basis_clamp_ppm=1_000_001), "prices.params.mark_basis_clamp_ppm",
                 "must be an integer in [0, 1000000], got 1000001", id="clamp above one million ppm is refused"),
    pytest.param(_params(mark_basis_clamp_ppm=True), "prices.params.mark_basis_clamp_ppm",
                 "got True", id="clamp given as a JSON boolean is refused"),
    pytest.param(_markets({"id": 0}), "prices.markets", "must be a list of at most 1000",
                 id="markets given as an object is refused"),
    pytest.param(_markets([btc(id=i, pair=f"C{i}-USD") for i in range(1001)]), "prices.markets",
                 "must be a list of at most 1000", id="1001 markets are refused"),
    pytest.param(_markets([5]), "prices.markets[0]", "must be an object", id="a market that is a number is refused"),
    pytest.param(_market(id="0"), "prices.markets[0].id", "must be an integer in [0, 4294967295], got '0'",
                 id="a market id given as a string is refused"),
    pytest.param(_market(id=True), "prices.markets[0].id", "got True", id="a market id given as a boolean is refused"),
    pytest.param(_market(id=1 << 32), "prices.markets[0].id", "got 4294967296", id="market id 2^32 is refused"),
    pytest.param(_market(id=-1), "prices.markets[0].id", "got -1", id="market id -1 is refused"),
    pytest.param(_market(exponent=-19), "prices.markets[0].exponent", "must be an integer in [-18, 0], got -19",
                 id="exponent -19 is refused"),
    pytest.param(_market(exponent=1), "prices.markets[0].exponent", "got 1", id="exponent 1 is refused"),
    pytest.param(_market(min_price_change_ppm=0), "prices.markets[0].min_price_change_ppm",
                 "must be an integer in [1, 9999], got 0", id="min price change of 0 ppm is refused"),
    pytest.param(_market(min_price_change_ppm=10_000), "prices.markets[0].min_price_change_ppm", "got 10000",
                 id="min price change of 10 000 ppm is refused"),
    pytest.param(_markets([btc(), btc(id=1)]), "prices.markets[1].pair", "BTC-USD is not unique",
                 id="two markets with the same pair are refused"),
    pytest.param(_markets([btc(), btc(pair="ETH-USD")]), "prices.markets[1].id", "0 is not unique",
                 id="two markets with the same id are refused"),
    pytest.param(_market(stale_after_ns="9223372036854775808"), "prices.markets[0].stale_after_ns", "exceeds int64",
                 id="a market staleness window of 2^63 ns is refused"),
    pytest.param(_market(stale_after_ns=5), "prices.markets[0].stale_after_ns", "must be a decimal string",
                 id="a market staleness window given as a JSON number is refused"),
    pytest.param(_market(price=5), "prices.markets[0].price", "must be a decimal string",
                 id="a starting price given as a JSON number is refused"),
    pytest.param(_market(price="18446744073709551616"), "prices.markets[0].price", "exceeds uint64",
                 id="a starting price of 2^64 is refused"),
]


@pytest.mark.parametrize("mutate, field, fragment", REFUSED)
def test_invalid_prices_genesis_is_refused_naming_the_field(mutate, field, fragment):
    state = mutate(base_state())
    with pytest.raises(errors.AppError) as exc:
        init_genesis(fresh_store(), state, G)
    assert exc.value.error is errors.ERR_INVALID_GENESIS
    assert exc.value.message.startswith(field + " "), exc.value.message
    assert fragment in exc.value.message


ACCEPTED = [
    pytest.param("params", "stale_after_ns", "1", id="a default staleness window of 1 ns is accepted"),
    pytest.param("params", "stale_after_ns", str(INT64_MAX), id="a default staleness window of 2^63-1 ns is accepted"),
    pytest.param("params", "mark_basis_smoothing_ppm", 0, id="smoothing 0 ppm is accepted"),
    pytest.param("params", "mark_basis_smoothing_ppm", 1_000_000, id="smoothing 1 000 000 ppm is accepted"),
    pytest.param("params", "mark_basis_clamp_ppm", 0, id="clamp 0 ppm is accepted"),
    pytest.param("params", "mark_basis_clamp_ppm", 1_000_000, id="clamp 1 000 000 ppm is accepted"),
    pytest.param("market", "id", (1 << 32) - 1, id="market id 2^32-1 is accepted"),
    pytest.param("market", "exponent", 0, id="exponent 0 (the maximum) is accepted"),
    pytest.param("market", "exponent", -18, id="exponent -18 (the minimum) is accepted"),
    pytest.param("market", "min_price_change_ppm", 1, id="min price change of 1 ppm is accepted"),
    pytest.param("market", "min_price_change_ppm", 9_999, id="min price change of 9 999 ppm is accepted"),
    pytest.param("market", "stale_after_ns", str(INT64_MAX), id="a market staleness window of 2^63-1 ns is accepted"),
    pytest.param("market", "price", "18446744073709551615", id="a starting price of 2^64-1 is accepted"),
]


@pytest.mark.parametrize("section, key, value", ACCEPTED)
def test_boundary_values_are_accepted_and_exported_as_given(section, key, value):
    state = base_state()
    if section == "params":
        state["params"][key] = value
    else:
        state["markets"][0][key] = value
    exported = export_genesis(genesis_store(state))
    got = exported["params"][key] if section == "params" else exported["markets"][0][key]
    assert got == value


def test_exactly_one_thousand_markets_are_accepted():
    state = base_state()
    state["markets"] = [btc(id=i, pair=f"C{i}-USD") for i in range(1000)]
    exported = export_genesis(genesis_store(state))
    assert [m["id"] for m in exported["markets"]] == list(range(1000))


def test_default_params_when_genesis_gives_none():
    # docs/oracle.md: stale_after_ns default 15 s, smoothing 100 000 ppm, clamp 5 000 ppm.
    assert export_genesis(genesis_store({}))["params"] == {
        "stale_after_ns": "15000000000", "mark_basis_smoothing_ppm": 100_000, "mark_basis_clamp_ppm": 5_000}
    assert keeper.default_params() == prices_pb2.PricesParams(
        stale_after_ns=15_000_000_000, mark_basis_smoothing_ppm=100_000, mark_basis_clamp_ppm=5_000)


def test_export_keeps_every_param_and_market_field_and_imports_back():
    state = {
        "params": {"stale_after_ns": "7000000000", "mark_basis_smoothing_ppm": 250_000, "mark_basis_clamp_ppm": 12_345},
        "markets": [  # given out of id order; exported in id order
            {"id": 9, "pair": "PEPE-USD", "exponent": -15, "min_price_change_ppm": 2500},  # no price, no window
            {"id": 2, "pair": "SOL-USD", "exponent": -8, "min_price_change_ppm": 1500, "stale_after_ns": "3000000000",
             "price": "15000000000"},
        ],
    }
    expected = {
        "params": {"stale_after_ns": "7000000000", "mark_basis_smoothing_ppm": 250_000, "mark_basis_clamp_ppm": 12_345},
        "markets": [
            # A priced market starts with mark = price, basis 0, last updated at the genesis time, fresh; an unpriced
            # one with zeros and stale. The export carries all of it (an import restores the mark and its clock).
            {"id": 2, "pair": "SOL-USD", "exponent": -8, "min_price_change_ppm": 1500, "stale_after_ns": "3000000000",
             "price": "15000000000", "mark_price": "15000000000", "basis_ema": "0", "last_update_height": "0",
             "last_update_time_ns": str(G), "reporters": 0, "reported_power": "0", "stale": False},
            {"id": 9, "pair": "PEPE-USD", "exponent": -15, "min_price_change_ppm": 2500, "stale_after_ns": "0",
             "price": "0", "mark_price": "0", "basis_ema": "0", "last_update_height": "0", "last_update_time_ns": "0",
             "reporters": 0, "reported_power": "0", "stale": True},
        ],
    }
    exported = export_genesis(genesis_store(state))
    assert exported == expected
    assert export_genesis(genesis_store(exported)) == expected
    # Imported at a later genesis time, the exported clock is kept (not reset to the new genesis time).
    assert export_genesis(genesis_store(exported, G + 5 * SECOND)) == expected


def test_an_exported_mark_and_clock_are_restored_and_checked():
    """A market exported mid-life: mark 6 401 500 000 (basis EMA +1 500 000 over the 6 400 000 000 oracle), last
    updated at height 41, G + 40 s, by 3 reporters of power 30, fresh. Imported, every field is back; a mark of 0
    with a price, a basis beyond int64, a non-boolean stale are refused."""
    from app.errors import AppError

    market = {"id": 0, "pair": "BTC-USD", "exponent": -5, "min_price_change_ppm": 1000, "stale_after_ns": "0",
              "price": "6400000000", "mark_price": "6401500000", "basis_ema": "1500000", "last_update_height": "41",
              "last_update_time_ns": str(G + 40 * SECOND), "reporters": 3, "reported_power": "30", "stale": False}
    store = genesis_store({"markets": [market]}, G + 100 * SECOND)
    assert keeper.get_market_price(store, 0) == prices_pb2.MarketPrice(
        id=0, oracle_price=6_400_000_000, mark_price=6_401_500_000, basis_ema=1_500_000, last_update_height=41,
        last_update_time_ns=G + 40 * SECOND, reporters=3, reported_power=30, stale=False)
    for field, bad in (("mark_price", "0"), ("basis_ema", str(INT64_MAX + 1)), ("basis_ema", "1.5"),
                       ("stale", "no"), ("basis_ema", "-" + str(INT64_MAX + 1))):
        with pytest.raises(AppError) as err:
            genesis_store({"markets": [{**market, field: bad}]})
        assert field in err.value.log
    assert keeper.get_market_price(genesis_store({"markets": [{**market, "basis_ema": "-1500000"}]}), 0).basis_ema \
        == -1_500_000


def test_right_after_genesis_a_priced_market_is_fresh_and_an_unpriced_one_stale():
    state = base_state()  # window 10 s
    state["markets"].append({"id": 3, "pair": "PEPE-USD", "exponent": -15, "min_price_change_ppm": 2500})  # no price
    store = genesis_store(state)
    assert keeper.get_market_price(store, 0) == prices_pb2.MarketPrice(
        id=0, oracle_price=6_400_000_000, mark_price=6_400_000_000, last_update_time_ns=G, stale=False)
    assert keeper.get_market_price(store, 3) == prices_pb2.MarketPrice(id=3, stale=True)
    # Block 1, one second later: nothing flips, so no market_stale / market_fresh event.
    assert process_oracle_prices(store, BlockInfo(1, G + SECOND, CHAIN_ID), [], no_basis) == []
    assert keeper.get_market_price(store, 0).stale is False
    assert keeper.get_market_price(store, 3).stale is True


@pytest.mark.parametrize(
    "block_time_ns, stale",
    [
        # own window 2 s (the chain default is 10 s): stale strictly after 2 s without an agreed median
        pytest.param(G + 2 * SECOND, False, id="a market is fresh exactly at the end of its own window"),
        pytest.param(G + 2 * SECOND + 1, True, id="a market goes stale 1 ns after its own window, not the default"),
    ],
)
def test_a_markets_own_staleness_window_is_used(block_time_ns, stale):
    state = base_state()
    state["markets"][0]["stale_after_ns"] = "2000000000"
    store = genesis_store(state)
    process_oracle_prices(store, BlockInfo(1, block_time_ns, CHAIN_ID), [], no_basis)
    assert keeper.get_market_price(store, 0).stale is stale


def test_a_market_without_a_price_is_stale_whatever_the_time():
    # Genesis at time 0: an unpriced market has last_update_time_ns 0, and 1 s later is well within the 10 s
    # window; it is stale only because it has no price (docs/oracle.md: stale = oracle_price == 0 or ...).
    state = base_state()
    state["markets"] = [{"id": 3, "pair": "PEPE-USD", "exponent": -15, "min_price_change_ppm": 2500}]
    store = genesis_store(state, genesis_time_ns=0)
    assert process_oracle_prices(store, BlockInfo(1, SECOND, CHAIN_ID), [], no_basis) == []
    assert keeper.get_market_price(store, 3).stale is True


# --- the block step: events and the basis source --------------------------------------------------------------------
def _update(price: int, reporters: int = 3, power: int = 30) -> prices_pb2.PriceUpdate:
    return prices_pb2.PriceUpdate(market_id=0, price=price, reporters=reporters, reported_power=power)


@pytest.mark.parametrize(
    "median, price_after, applied",
    [
        # min change at 6_400_000_000 and 1000 ppm: floor(6_400_000_000 × 1000 / 10^6) = 6_400_000
        pytest.param(6_500_000_000, "6500000000", "true", id="a median that moved enough is applied"),
        pytest.param(6_400_100_000, "6400000000", "false", id="a median that moved 100 000 < 6 400 000 is not"),
    ],
)
def test_oracle_price_event_carries_every_field(median, price_after, applied):
    store = genesis_store(base_state())
    events = process_oracle_prices(store, BlockInfo(2, G + SECOND, CHAIN_ID), [_update(median)], no_basis)
    assert events == [Event("oracle_price", (
        ("market", "BTC-USD"), ("median", str(median)), ("price", price_after), ("applied", applied),
        ("reporters", "3"), ("reported_power", "30")))]


def test_market_stale_and_fresh_events_carry_the_last_update():
    store = genesis_store(base_state())  # window 10 s, BTC priced at genesis
    t3 = G + SECOND
    events = process_oracle_prices(store, BlockInfo(3, t3, CHAIN_ID), [_update(6_500_000_000)], no_basis)
    assert [e.type for e in events] == ["oracle_price"]  # fresh before and after: no flip
    # Block 4: 10 s + 1 ns after block 3's median -> stale; the event names block 3 and its time.
    events = process_oracle_prices(store, BlockInfo(4, t3 + 10 * SECOND + 1, CHAIN_ID), [], no_basis)
    assert events == [Event("market_stale", (("market", "BTC-USD"), ("last_update_height", "3"),
                                             ("last_update_time_ns", "1700000001000000000")))]
    # Block 5: the same median again (moves 0 < 6 500 000: not applied) still refreshes the market.
    t5 = G + 12 * SECOND
    events = process_oracle_prices(store, BlockInfo(5, t5, CHAIN_ID), [_update(6_500_000_000)], no_basis)
    assert events[1:] == [Event("market_fresh", (("market", "BTC-USD"), ("last_update_height", "5"),
                                                 ("last_update_time_ns", "1700000012000000000")))]
    assert ("applied", "false") in events[0].attributes


def test_the_basis_source_is_asked_with_the_new_oracle_price_and_moves_the_mark():
    state = base_state()  # default smoothing 100 000 ppm, clamp 5 000 ppm
    state["markets"].append({"id": 3, "pair": "PEPE-USD", "exponent": -15, "min_price_change_ppm": 2500})  # no price
    store = genesis_store(state)
    calls = []

    def basis(s, market_id, oracle_price):
        calls.append((s, market_id, oracle_price))
        return -2_000_000

    process_oracle_prices(store, BlockInfo(2, G + SECOND, CHAIN_ID), [_update(6_500_000_000)], basis)
    assert len(calls) == 1 and calls[0][0] is store
    assert calls[0][1:] == (0, 6_500_000_000)  # the applied median, and never asked for the unpriced market
    # ema = 0 + trunc(-2_000_000 × 100_000 / 10^6) = -200_000; bound floor(6_500_000_000 × 5_000 / 10^6) = 32_500_000
    price = keeper.get_market_price(store, 0)
    assert (price.basis_ema, price.mark_price) == (-200_000, 6_499_800_000)
    assert keeper.get_market_price(store, 3).mark_price == 0


# --- keys and keeper ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key_fn, market_id, expected",
    [
        pytest.param(keys.market_param_key, 1, b"\x04\x00\x00\x00\x00\x01", id="param key of market 1"),
        pytest.param(keys.market_param_key, (1 << 32) - 1, b"\x04\x00\xff\xff\xff\xff", id="param key of 2^32-1"),
        pytest.param(keys.market_price_key, 0x01020304, b"\x04\x01\x01\x02\x03\x04",
                     id="price key is the id as 4 big-endian bytes"),
    ],
)
def test_key_layout_matches_the_documented_state_table(key_fn, market_id, expected):
    assert key_fn(market_id) == expected


def test_the_params_key_is_0x04_0x02():
    assert keys.PARAMS_KEY == b"\x04\x02"


def test_an_unknown_market_reads_as_an_empty_price_of_that_id():
    assert keeper.get_market_price(fresh_store(), 42) == prices_pb2.MarketPrice(id=42)


@pytest.mark.parametrize(
    "market_id, param, price",
    [
        pytest.param(0, prices_pb2.MarketParam(id=0, pair="BTC-USD", exponent=-5, min_price_change_ppm=1000),
                     prices_pb2.MarketPrice(id=0, oracle_price=6_400_000_000, mark_price=6_400_000_000,
                                            last_update_time_ns=G),
                     id="a genesis market reads back its param and price"),
        pytest.param(1, None, None, id="an unknown market reads as None"),
    ],
)
def test_market_param_and_price_or_none(market_id, param, price):
    store = genesis_store(base_state())
    assert keeper.get_market_param_or_none(store, market_id) == param
    assert keeper.get_market_price_or_none(store, market_id) == price


# --- logic ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "oracle, ema, sample, smoothing, clamp, expected",
    [
        # ema 0 + trunc(0) = 0; bound floor(1 × 5000 / 10^6) = 0; mark max(1, 1 + 0) = 1
        pytest.param(1, 0, None, 100_000, 5_000, (1, 0), id="oracle price 1 gives mark 1"),
        # ema -10 + trunc((-10 + 10) × 0.1) = -10; bound 10; mark max(1, 10 - 10) = 1
        pytest.param(10, -10, -10, 100_000, 1_000_000, (1, -10), id="mark is floored at 1 when the basis cancels it"),
        # ema -10 + trunc((-20 + 10) × 0.1) = -11, clamped to -10; mark max(1, 0) = 1
        pytest.param(10, -10, -20, 100_000, 1_000_000, (1, -10), id="a clamped basis still leaves mark 1"),
    ],
)
def test_mark_price_is_at_least_one(oracle, ema, sample, smoothing, clamp, expected):
    assert compute_mark(oracle, ema, sample, smoothing, clamp) == expected


@pytest.mark.parametrize(
    "block_time, last_update, price, window, stale",
    [
        pytest.param(100, 90, 1, 10, False, id="price 1 updated exactly one window ago is fresh"),
        pytest.param(100, 100, 0, 10, True, id="price 0 is stale even right after an update"),
        pytest.param(101, 90, 1, 10, True, id="one ns past the window is stale"),
    ],
)
def test_is_stale(block_time, last_update, price, window, stale):
    assert is_stale(block_time, last_update, price, window) is stale


# --- queries --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, exponent, text",
    [
        pytest.param(5, 0, "5", id="exponent 0 is the integer itself"),
        pytest.param(5, 2, "500", id="a positive exponent appends zeros"),
        pytest.param(5, -3, "0.005", id="fewer digits than decimals are zero-padded"),
        pytest.param(123_456, -2, "1234.56", id="two decimals"),
        pytest.param(0, -5, "0.00000", id="zero keeps its decimals"),
        pytest.param(6_400_000_000, -5, "64000.00000", id="BTC at 64 000 USD"),
    ],
)
def test_format_scaled(value, exponent, text):
    assert format_scaled(value, exponent) == text


def _query_store() -> BranchStore:
    store = fresh_store()
    keeper.set_params(store, prices_pb2.PricesParams(stale_after_ns=9_000_000_000, mark_basis_smoothing_ppm=100_000,
                                                     mark_basis_clamp_ppm=5_000))
    keeper.set_market(
        store, prices_pb2.MarketParam(id=9, pair="PEPE-USD", exponent=-15, min_price_change_ppm=2500,
                                      stale_after_ns=2_000_000_000),
        prices_pb2.MarketPrice(id=9, stale=True))
    keeper.set_market(
        store, prices_pb2.MarketParam(id=7, pair="ETH-USD", exponent=-6, min_price_change_ppm=250),
        prices_pb2.MarketPrice(id=7, oracle_price=3_000_123_456, mark_price=3_000_200_000, basis_ema=76_544,
                               last_update_height=12, last_update_time_ns=1_700_000_006_000_000_000, reporters=3,
                               reported_power=30, stale=False))
    return store


ETH_VIEW = {
    "id": 7, "pair": "ETH-USD", "exponent": -6, "min_price_change_ppm": 250,
    "stale_after_ns": "9000000000",  # the market's own is 0: the chain default
    "oracle_price": "3000123456", "oracle_price_usd": "3000.123456",
    "mark_price": "3000200000", "mark_price_usd": "3000.200000", "basis_ema": "76544",
    "last_update_height": "12", "last_update_time_ns": "1700000006000000000", "stale": False,
    "reporters": 3, "reported_power": "30", "total_power": "40",
}
PEPE_VIEW = {
    "id": 9, "pair": "PEPE-USD", "exponent": -15, "min_price_change_ppm": 2500,
    "stale_after_ns": "2000000000",  # its own window
    "oracle_price": "0", "oracle_price_usd": "0.000000000000000",
    "mark_price": "0", "mark_price_usd": "0.000000000000000", "basis_ema": "0",
    "last_update_height": "0", "last_update_time_ns": "0", "stale": True,
    "reporters": 0, "reported_power": "0", "total_power": "40",
}


def test_query_markets_lists_every_market_in_id_order_with_every_field():
    assert query_markets(_query_store(), 40) == {"markets": [ETH_VIEW, PEPE_VIEW]}


@pytest.mark.parametrize(
    "pair, view",
    [pytest.param("ETH-USD", ETH_VIEW, id="ETH with the default window"),
     pytest.param("PEPE-USD", PEPE_VIEW, id="PEPE with its own window")],
)
def test_query_market_by_pair(pair, view):
    assert query_market(_query_store(), pair, 40) == view


def test_query_market_of_an_unknown_pair_fails_with_unknown_market():
    with pytest.raises(errors.AppError) as exc:
        query_market(_query_store(), "DOGE-USD", 40)
    assert exc.value.error is errors.ERR_UNKNOWN_MARKET and exc.value.code == 302
    assert "'DOGE-USD'" in exc.value.message


# --- vote extensions ------------------------------------------------------------------------------------------------
def _ve(ids, prices) -> bytes:
    return encode_proto(prices_pb2.OracleVoteExtension(market_ids=ids, prices=prices))


@pytest.mark.parametrize(
    "prices, ids, expected_prices",
    [
        pytest.param({0: 5, 1: 0, 2: 7, 3: 1 << 64, 9: 3}, [0, 2], [5, 7],
                     id="a zero price, a price of 2^64 and an unknown market are dropped"),
        pytest.param({0: (1 << 64) - 1}, [0], [(1 << 64) - 1], id="a price of 2^64-1 is kept"),
    ],
)
def test_encode_vote_extension_keeps_only_valid_prices(prices, ids, expected_prices):
    ve = prices_pb2.OracleVoteExtension.FromString(encode_vote_extension(prices, [0, 1, 2, 3]))
    assert (list(ve.market_ids), list(ve.prices)) == (ids, expected_prices)


def _sized_extension(n_ten_byte_prices: int) -> bytes:
    """1067 markets with 5-byte ids (>= 2^28): field 1 = 1 + 2 + 5335 = 5338 bytes. Prices >= 2^63 take 10 bytes,
    those in [2^56, 2^63) take 9: 1056 × 10 + 11 × 9 = 10659, field 2 = 1 + 2 + 10659 = 10662; total 16 000.
    One more 10-byte price (and one fewer 9-byte) makes 16 001."""
    ids = [(1 << 28) + k for k in range(1067)]
    prices = [(1 << 63) + k for k in range(n_ten_byte_prices)] + [(1 << 56) + k for k in range(1067 - n_ten_byte_prices)]
    return _ve(ids, prices)


EXT_16000 = _sized_extension(1056)
EXT_16001 = _sized_extension(1057)
BIG_INDEX_IDS = [(1 << 28) + k for k in range(1067)]


def test_the_sized_extensions_have_the_intended_sizes():
    assert (len(EXT_16000), len(EXT_16001)) == (16_000, 16_001)


@pytest.mark.parametrize(
    "extension, accepted",
    [pytest.param(EXT_16000, True, id="an extension of exactly 16 000 bytes is decoded"),
     pytest.param(EXT_16001, False, id="an extension of 16 001 bytes is refused")],
)
def test_vote_extension_size_limit_is_inclusive(extension, accepted):
    decoded = decode_vote_extension_or_none(extension, MarketIndex(BIG_INDEX_IDS))
    assert (decoded is not None) is accepted
    cached = OracleCache(BIG_INDEX_IDS, {}).decode(extension)
    assert (cached is not None) is accepted
    if accepted:
        assert decoded[0].tolist() == list(range(1067)) and cached[0].tolist() == list(range(1067))


@pytest.mark.parametrize(
    "extension, accepted",
    [pytest.param(EXT_16000, True, id="a signed extension of exactly 16 000 bytes verifies"),
     pytest.param(EXT_16001, False, id="a signed extension of 16 001 bytes does not")],
)
def test_extension_signature_check_size_limit_is_inclusive(extension, accepted):
    key = VALIDATOR_KEYS[0]
    validator = state_pb2.Validator(address=b"\x01" * 20, pub_key_ed25519=bytes(key.verify_key), power=10)
    height, round_ = 8, 0
    signature = key.sign(vote_extension_sign_bytes(extension, height - 1, round_, CHAIN_ID)).signature
    assert _extension_verifies(extension, signature, validator, height, round_, CHAIN_ID, SignatureMemo()) is accepted


@pytest.mark.parametrize(
    "index_ids, ids, prices, positions",
    [
        pytest.param([4], [4], [9], [0], id="a chain with exactly one market accepts its extension"),
        pytest.param([0, 5, 10], [0, 5, 10], [1, 2, 3], [0, 1, 2], id="all markets of a sparse chain"),
        pytest.param([0, 5, 10], [0, 3, 5], [1, 2, 3], None, id="an unknown id between two known ids is refused"),
        pytest.param([0, 5, 10], [0, 5, 11], [1, 2, 3], None, id="an unknown id past the last market is refused"),
        pytest.param([0, 1, 2], [0, 2, 1], [1, 2, 3], None, id="ids out of order after the second are refused"),
        pytest.param([0, 1], [0, 1], [(1 << 64) - 1, 5], [0, 1],
                     id="a price of 2^64-1 next to a small one decodes exactly"),
    ],
)
def test_decode_vote_extension(index_ids, ids, prices, positions):
    decoded = decode_vote_extension_or_none(_ve(ids, prices), MarketIndex(index_ids))
    if positions is None:
        assert decoded is None
    else:
        assert decoded[0].tolist() == positions and decoded[1].tolist() == prices


# --- medians and the oracle caches -----------------------------------------------------------------------------------
def _validators(n: int, power: int = 10) -> dict[bytes, state_pb2.Validator]:
    return {bytes([i + 1]) * 20: state_pb2.Validator(address=bytes([i + 1]) * 20, power=power) for i in range(n)}


def _votes(per_validator: list[dict[int, int]], market_ids: list[int]) -> list[tuple[bytes, int, bytes]]:
    return [(bytes([i + 1]) * 20, BLOCK_ID_FLAG_COMMIT, encode_vote_extension(p, market_ids))
            for i, p in enumerate(per_validator)]


def _updates(updates) -> list[tuple[int, int, int, int]]:
    return [(u.market_id, u.price, u.reporters, u.reported_power) for u in updates]


@pytest.mark.parametrize(
    "market_ids, per_validator, expected",
    [
        # 100, 200, 300 at power 10 each: cumulative 10 × 2 < 30, 20 × 2 >= 30 -> 200
        pytest.param([4], [{4: 100}, {4: 200}, {4: 300}], [(4, 200, 3, 30)],
                     id="a chain with exactly one market publishes its median"),
        # market 0: 2^63+1, 2^63+2, 2^64-1 -> the second; market 1: 5, 6, 7 -> 6
        pytest.param([0, 1], [{0: (1 << 64) - 1, 1: 5}, {0: (1 << 63) + 1, 1: 6}, {0: (1 << 63) + 2, 1: 7}],
                     [(0, (1 << 63) + 2, 3, 30), (1, 6, 3, 30)],
                     id="prices above 2^63 are medianed exactly as uint64"),
    ],
)
def test_medians(market_ids, per_validator, expected):
    cache = OracleCache(market_ids, _validators(3))
    assert _updates(cache.updates_for(_votes(per_validator, market_ids))) == expected


@pytest.mark.parametrize(
    "market_ids, validators, same",
    [
        pytest.param([1, 0], _validators(3), True, id="the same markets in another order are the same view"),
        pytest.param([0, 1, 2], _validators(3), False, id="a new market is a new view"),
        pytest.param([0, 1], _validators(3, power=11), False, id="a validator power change is a new view"),
    ],
)
def test_oracle_cache_same_view(market_ids, validators, same):
    assert OracleCache([0, 1], _validators(3)).same_view(market_ids, validators) is same


def test_oracle_cache_keeps_at_most_max_decoded_extensions_evicting_the_oldest():
    cache = OracleCache([0], _validators(3))
    cache.MAX_DECODED = 2
    exts = [encode_vote_extension({0: p}, [0]) for p in (1, 2, 3)]
    for ext in exts:
        assert cache.decode(ext)[1].tolist() == [int(ext[-1])]  # the one price, < 128: its own last byte
    assert list(cache._decoded) == exts[1:]
    assert cache.decode(exts[0])[1].tolist() == [1]  # decoded afresh after eviction


def test_oracle_cache_keeps_at_most_max_updates_median_sets_evicting_the_oldest():
    cache = OracleCache([0], _validators(3))
    cache.MAX_UPDATES = 2
    vote_sets = [_votes([{0: p}] * 3, [0]) for p in (100, 200, 300)]
    for p, votes in zip((100, 200, 300), vote_sets):
        assert _updates(cache.updates_for(votes)) == [(0, p, 3, 30)]
    assert len(cache._updates) == 2
    assert _updates(cache.updates_for(vote_sets[0])) == [(0, 100, 3, 30)]  # recomputed after eviction


@pytest.mark.parametrize(
    "tx, expected",
    [
        pytest.param(b"\x0a\x02\x08\x01", None, id="a user tx is not an oracle tx"),
        pytest.param(ORACLE_TX_MARKER + encode_proto(prices_pb2.OracleTx(round=2)), prices_pb2.OracleTx(round=2),
                     id="an oracle tx decodes"),
        pytest.param(ORACLE_TX_MARKER + b"\xff", None, id="a marker followed by garbage decodes to None"),
    ],
)
def test_decode_oracle_tx_or_none(tx, expected):
    assert decode_oracle_tx_or_none(tx) == expected


def test_an_exported_market_s_optional_fields_default_name_themselves_and_take_their_int64_edges():
    """An entry with a mark_price and nothing else of the export: basis 0, never updated (height 0, time 0), no
    reporters, power 0, fresh because it has a price. Each field refused names itself
    (prices.markets[0].<field>); a mark and a basis of exactly INT64_MAX (and -INT64_MAX) are accepted."""
    from app.errors import AppError

    base = {"id": 0, "pair": "BTC-USD", "exponent": -5, "min_price_change_ppm": 1000, "price": "6400000000",
            "mark_price": "6400000001"}
    assert keeper.get_market_price(genesis_store({"markets": [base]}), 0) == prices_pb2.MarketPrice(
        id=0, oracle_price=6_400_000_000, mark_price=6_400_000_001, stale=False)
    for field, bad in (("mark_price", "x"), ("basis_ema", "x"), ("last_update_height", "x"),
                       ("last_update_time_ns", "x"), ("reporters", "x"), ("reported_power", "x"), ("stale", 1)):
        with pytest.raises(AppError) as err:
            genesis_store({"markets": [{**base, field: bad}]})
        assert f"prices.markets[0].{field}" in err.value.log, (field, err.value.log)
    edge = {**base, "mark_price": str(INT64_MAX), "basis_ema": str(INT64_MAX)}
    mp = keeper.get_market_price(genesis_store({"markets": [edge]}), 0)
    assert (mp.mark_price, mp.basis_ema) == (INT64_MAX, INT64_MAX)
    assert keeper.get_market_price(genesis_store({"markets": [{**edge, "basis_ema": str(-INT64_MAX)}]}),
                                   0).basis_ema == -INT64_MAX


def test_an_exported_market_s_reporters_take_the_uint32_range():
    """reporters is a uint32 count: 2^32 - 1 is accepted, 2^32 refused with the range in the message."""
    from app.errors import AppError

    base = {"id": 0, "pair": "BTC-USD", "exponent": -5, "min_price_change_ppm": 1000, "price": "6400000000",
            "mark_price": "6400000000"}
    assert keeper.get_market_price(genesis_store({"markets": [{**base, "reporters": 4_294_967_295}]}),
                                   0).reporters == 4_294_967_295
    with pytest.raises(AppError) as err:
        genesis_store({"markets": [{**base, "reporters": 4_294_967_296}]})
    assert err.value.log.endswith("prices.markets[0].reporters must be an integer in [0, 4294967295], got 4294967296")
