"""app/application.py: the composition root's edges (issue #8: survivors of `make mutation MODULE=app/application.py`).

Before InitChain, bad app_state, the genesis and block app hash as golden vectors (recomputed with hashlib from the
definition in docs/state.md), CheckTx's height and time, the proposal byte budget, the events and query answers
whose fields were not pinned, and the Commit/discard bookkeeping. Expected values are worked out by hand.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from app import errors
from app.application import Application, match_path, proto_size_of_tx
from app.errors import AppError, InvariantViolation
from app.prices.params import ORACLE_TX_MARKER
from app.tx.mempool import MempoolView
from node.client.txbuilder import msg_send, msg_set_validator_power, sign_tx
from node.storage.leveldb import LevelDBStore
from tests.exchange_helpers import BTC_STEP, BUY, exchange_app_state, orders_tx, place
from tests.helpers import (
    ADDRS,
    BLOCK_INTERVAL_NS,
    CHAIN_ID,
    FEE,
    GENESIS_TIME_NS,
    KEYS,
    ONE_USDC,
    VALIDATOR_KEYS,
    Replica,
    genesis_app_state,
    send_tx,
)
from tests.oracle_helpers import BTC, extended_commit, oracle_app_state

VALIDATORS = [(bytes(k.verify_key), 10) for k in VALIDATOR_KEYS]
NEW_VALIDATOR = hashlib.sha256(b"application-mutation-validator").digest()


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def varint(n: int) -> bytes:
    out = b""
    while True:
        if n < 0x80:
            return out + bytes([n])
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7


def encode_write_set(writes) -> bytes:
    """docs/state.md: uvarint(len key) key 0x01 uvarint(len value) value | uvarint(len key) key 0x00."""
    out = b""
    for k, v in writes:
        out += varint(len(k)) + k + (b"\x00" if v is None else b"\x01" + varint(len(v)) + v)
    return out


def time_of(height: int) -> int:
    return GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS


def query(app: Application, path: str) -> dict:
    res = app.query(path, b"")
    assert res.code == 0, res.log
    return json.loads(res.value)


# --- before InitChain -----------------------------------------------------------------------------------------------
def test_a_fresh_node_before_init_chain(tmp_path):
    """The node's price daemon and CometBFT's handshake may ask before InitChain ran."""
    store = LevelDBStore(tmp_path / "db")
    app = Application(store)
    assert app.info() == (0, b"")
    assert app.chain_id == ""
    assert app.markets() == []
    assert app.expects_oracle_tx(1) is False and app.expects_oracle_tx(2) is False
    with pytest.raises(InvariantViolation, match="^Commit without a finalized block$"):
        app.commit()
    with pytest.raises(InvariantViolation, match="^FinalizeBlock height 2, expected 1$"):
        app.finalize_block(2, time_of(2), [])
    store.close()


def test_a_data_directory_in_another_state_format_is_refused(tmp_path):
    store = LevelDBStore(tmp_path / "db")
    chain_info_format_3 = b"\x0a\x01c" + b"\x10\x01" + b"\x28\x03"  # ChainInfo{chain_id "c", initial 1, format 3}
    store.commit([(b"\x03\x00", chain_info_format_3)], 1, b"h")
    with pytest.raises(errors.IncompatibleState, match="^the data directory holds state format 3; this perpd reads "
                                                       "format 4 only"):
        Application(store)
    store.close()


def test_a_restarted_node_knows_its_chain_id(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain()
    r.block([])
    r.restart()
    assert r.app.chain_id == CHAIN_ID
    assert r.app.check_tx(send_tx(1, 2, 1, 1)).code == 0
    r.close()


# --- InitChain ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "app_state, message",
    [
        pytest.param(b"", "bank.authority '' is not a valid address",
                     id="empty app_state bytes are an empty genesis (defaults): the bank then lacks its authority"),
        pytest.param(b"{}", "bank.authority '' is not a valid address", id="an app_state without a bank section"),
        pytest.param(b"[]", "app_state must be a JSON object", id="a JSON list"),
        pytest.param(b'"bank"', "app_state must be a JSON object", id="a JSON string"),
    ],
)
def test_init_chain_refuses_bad_app_state(tmp_path, app_state, message):
    store = LevelDBStore(tmp_path / "db")
    with pytest.raises(AppError) as exc:
        Application(store).init_chain(CHAIN_ID, GENESIS_TIME_NS, app_state, VALIDATORS, 1, 0)
    assert (exc.value.error, exc.value.message) == (errors.ERR_INVALID_GENESIS, message)
    store.close()


@pytest.mark.parametrize(
    "app_state",
    [pytest.param(b"{bad", id="truncated JSON"), pytest.param(b"\xff\xfe\x00", id="bytes that are not UTF-8 text")],
)
def test_init_chain_refuses_app_state_that_is_not_json(tmp_path, app_state):
    store = LevelDBStore(tmp_path / "db")
    with pytest.raises(AppError) as exc:
        Application(store).init_chain(CHAIN_ID, GENESIS_TIME_NS, app_state, VALIDATORS, 1, 0)
    assert exc.value.error is errors.ERR_INVALID_GENESIS
    assert exc.value.message.startswith("app_state is not JSON: ")
    store.close()


def test_vote_extensions_are_off_unless_init_chain_enables_them(tmp_path):
    store = LevelDBStore(tmp_path / "db")
    app = Application(store)
    app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(oracle_app_state()).encode(), VALIDATORS, 1)
    assert [app.expects_oracle_tx(h) for h in (1, 2, 3, 100)] == [False] * 4
    assert app.prepare_proposal([], 1 << 20, 2) == []
    store.close()


def test_genesis_and_block_app_hash_golden(tmp_path):
    """app_hash(genesis) = sha256("" ‖ sha256(write-set)); app_hash(1) = sha256(app_hash(genesis) ‖ sha256(...))."""
    r = Replica(tmp_path / "db")
    genesis_hash = r.init_chain()
    genesis_writes = r.app._genesis.store.write_set()
    assert genesis_hash == sha(b"" + sha(encode_write_set(genesis_writes)))
    written = dict(genesis_writes)
    # ChainInfo{chain_id = 1, initial_height = 2, genesis_time_ns = 3, state_format = 5 (4)}; enable height 0 omitted.
    assert written[b"\x03\x00"] == (b"\x0a\x0e" + CHAIN_ID.encode() + b"\x10\x01" + b"\x18" + varint(GENESIS_TIME_NS)
                                    + b"\x28\x04")
    assert b"\x03\x02" + b"\x00" * 7 + b"\x01" in written  # the genesis validator set, effective from height 1

    res = r.app.finalize_block(1, time_of(1), [])
    block_writes = r.app._pending.store.write_set()
    assert res.app_hash == sha(genesis_hash + sha(encode_write_set(block_writes)))
    assert dict(block_writes)[b"\x03\x04"] == time_of(1).to_bytes(8, "big")  # last block time, u64 BE
    assert r.app.commit() == 0  # retain_height 0: keep every block
    assert r.app.info() == (1, res.app_hash)
    r.close()


# --- Commit bookkeeping ---------------------------------------------------------------------------------------------
def test_commit_needs_a_finalized_block_each_time(replica):
    with pytest.raises(InvariantViolation, match="^Commit without a finalized block$"):
        replica.app.commit()  # block 1 was committed by the fixture
    replica.app.finalize_block(2, time_of(2), [])
    replica.app.discard_pending()
    with pytest.raises(InvariantViolation, match="^Commit without a finalized block$"):
        replica.app.commit()
    replica.app.finalize_block(2, time_of(2), [])
    assert replica.app.commit() == 0
    with pytest.raises(InvariantViolation, match="^Commit without a finalized block$"):
        replica.app.commit()


def test_commit_right_after_init_chain_is_refused(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain()
    with pytest.raises(InvariantViolation, match="^Commit without a finalized block$"):
        r.app.commit()
    r.close()


def test_discard_pending_on_a_restarted_node_before_any_block(replica):
    replica.restart()
    replica.app.discard_pending()  # no book built yet: nothing to roll back
    assert [t.code for t in replica.block([send_tx(1, 2, 1, 1)]).tx_results] == [0]


# --- oracle txs outside their place -------------------------------------------------------------------------------
ORACLE_LIKE = ORACLE_TX_MARKER + b"\x0a\x00"
APP_ONLY_LOG = "app_only_tx: oracle txs are only valid as tx 0"


def test_check_tx_refuses_an_oracle_tx(replica):
    res = replica.app.check_tx(ORACLE_LIKE)
    assert (res.code, res.codespace, res.log) == (16, "tx", APP_ONLY_LOG)


def test_an_oracle_tx_before_vote_extensions_are_enabled_is_a_user_tx_and_refused(replica):
    res = replica.block([ORACLE_LIKE, send_tx(1, 2, 1, 1)])
    assert [(t.code, t.codespace, t.log) for t in res.tx_results] == [(16, "tx", APP_ONLY_LOG), (0, "", "")]


@pytest.fixture
def oracle_chain(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain(oracle_app_state(), vote_extensions_enable_height=1)
    r.block([])
    yield r
    r.close()


def _oracle_proposal(r: Replica, txs=(), max_bytes: int = 1 << 20):
    height = r.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 4)
    return height, r.app.prepare_proposal(list(txs), max_bytes, height, ext), last


def test_an_oracle_tx_at_index_1_is_refused_in_a_block(oracle_chain):
    height, proposal, last = _oracle_proposal(oracle_chain)
    res = oracle_chain.block([proposal[0], ORACLE_LIKE], last_commit=last)
    assert [(t.code, t.log) for t in res.tx_results] == [(0, ""), (16, APP_ONLY_LOG)]


def test_an_empty_block_while_the_oracle_tx_is_due_moves_no_price(oracle_chain):
    before = query(oracle_chain.app, "/prices/market/BTC-USD")
    res = oracle_chain.block([])
    assert res.tx_results == ()
    after = query(oracle_chain.app, "/prices/market/BTC-USD")
    assert (after["oracle_price"], after["last_update_height"]) == (before["oracle_price"], before["last_update_height"])


@pytest.mark.parametrize(
    "second, accepted",
    [
        pytest.param(lambda: send_tx(1, 2, 1, 1), True, id="oracle tx then a valid user tx: accepted"),
        pytest.param(lambda: b"junk", False, id="oracle tx then junk: rejected"),
        pytest.param(lambda: ORACLE_LIKE, False, id="oracle tx then a second oracle tx: rejected"),
    ],
)
def test_process_proposal_checks_every_tx_after_the_oracle_tx(oracle_chain, second, accepted):
    height, proposal, last = _oracle_proposal(oracle_chain)
    assert oracle_chain.app.process_proposal([proposal[0], second()], height, last) is accepted


def test_a_market_priced_at_genesis_is_fresh_in_block_1(oracle_chain):
    btc = query(oracle_chain.app, "/prices/market/BTC-USD")
    assert (btc["stale"], btc["oracle_price"]) == (False, "6400000000")


def test_the_oracle_cache_survives_a_commit_when_markets_and_validators_do_not_change(oracle_chain):
    cache = oracle_chain.app.consensus_view().oracle
    oracle_chain.block([])
    assert oracle_chain.app.consensus_view().oracle is cache


def test_the_oracle_tx_without_a_last_commit_argument(tmp_path):
    """The ABCI layer always passes the last commit; the default (round 0, no votes) is what a chain starting above
    height 1 has at its first block."""
    r = Replica(tmp_path / "db")
    app = r.app
    app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(oracle_app_state()).encode(), VALIDATORS, 100, 1)
    proposal = app.prepare_proposal([], 1 << 20, 100)
    assert len(proposal) == 1 and proposal[0].startswith(ORACLE_TX_MARKER)
    assert app.process_proposal(proposal, 100)
    assert [t.code for t in app.finalize_block(100, time_of(100), proposal).tx_results] == [0]
    r.close()


# --- the proposal's byte budget -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, size",
    [
        pytest.param(0, 2, id="an empty tx: tag + length byte"),
        pytest.param(127, 129, id="127 bytes: a one-byte length"),
        pytest.param(128, 131, id="128 bytes: a two-byte length"),
        pytest.param(300, 303, id="300 bytes"),
        pytest.param(16_384, 16_388, id="16384 bytes: a three-byte length"),
    ],
)
def test_proto_size_of_tx(n, size):
    assert proto_size_of_tx(n) == size


def _proto_size(tx: bytes) -> int:
    return 1 + len(varint(len(tx))) + len(tx)


def test_prepare_proposal_packs_up_to_exactly_max_tx_bytes(replica):
    txs = [send_tx(1, 2, 1, n) for n in range(1, 4)]
    exact = sum(_proto_size(t) for t in txs)
    assert replica.app.prepare_proposal(txs, exact, 2) == txs
    assert replica.app.prepare_proposal(txs, exact - 1, 2) == txs[:2]


def test_a_tx_that_does_not_fit_does_not_stop_smaller_ones(replica):
    big = sign_tx(KEYS[1], CHAIN_ID, 1, [msg_send(ADDRS[1], ADDRS[2], 1)], memo="m" * 256)
    small = [send_tx(1, 2, 1, 2), send_tx(1, 2, 1, 3)]
    budget = sum(_proto_size(t) for t in small)
    assert _proto_size(big) > budget
    assert replica.app.prepare_proposal([big, *small], budget, 2) == small


def test_an_oracle_marker_tx_in_the_mempool_is_skipped_not_a_stop(replica):
    good = send_tx(1, 2, 1, 1)
    assert replica.app.prepare_proposal([ORACLE_LIKE, good], 1 << 20, 2) == [good]


def test_the_oracle_tx_counts_against_max_tx_bytes(oracle_chain):
    user = send_tx(1, 2, 1, 1)
    height, full, _ = _oracle_proposal(oracle_chain, [user])
    assert full[1:] == [user]
    budget = _proto_size(full[0]) + _proto_size(user)
    assert _oracle_proposal(oracle_chain, [user], budget)[1] == full
    assert _oracle_proposal(oracle_chain, [user], budget - 1)[1] == full[:1]


# --- CheckTx -------------------------------------------------------------------------------------------------------
def test_check_tx_when_the_mempool_view_is_full(replica):
    replica.app._mempool = MempoolView(max_entries=1)
    first = send_tx(1, 2, 1, 1)
    assert replica.app.check_tx(first).code == 0
    res = replica.app.check_tx(send_tx(2, 1, 1, 1))
    assert (res.code, res.codespace, res.log) == (
        19, "tx", "mempool_full: this node's pending-tx view is full until the next block; retry")
    assert replica.app.check_tx(first).code == 0  # a tx already in the view still answers as the first time


def test_check_tx_of_a_validator_change(replica):
    tx = sign_tx(KEYS[0], CHAIN_ID, 1, [msg_set_validator_power(ADDRS[0], NEW_VALIDATOR, 5)])
    assert replica.app.check_tx(tx).code == 0


@pytest.fixture
def exchange(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain(exchange_app_state(), vote_extensions_enable_height=1)
    yield r
    r.close()


def _order(nonce: int, client_id: int, *, gtb: int = 0, gtbt_ns: int = 0) -> bytes:
    # 0.0001 BTC bid at $60 000 (6 000 000 000 subticks, a multiple of the $1 tick), far below the $64 000 oracle.
    return orders_tx(1, nonce, [place(client_id, BUY, BTC_STEP, 6_000_000_000, gtb=gtb, gtbt_ns=gtbt_ns)])


def test_check_tx_before_the_first_block_uses_the_genesis_time(exchange):
    res = exchange.app.check_tx(_order(1, 1, gtbt_ns=GENESIS_TIME_NS))
    assert res.code == 704, res.log
    assert f"must be after the block time {GENESIS_TIME_NS} and at most" in res.log
    assert exchange.app.check_tx(_order(2, 2, gtbt_ns=GENESIS_TIME_NS + 1)).code == 0


def test_check_tx_uses_the_next_height_and_the_last_block_time(exchange):
    exchange.block([])  # height 1 at time_of(1)
    assert exchange.app.check_tx(_order(1, 1, gtb=1)).code == 704  # CheckTx validates for height 2
    assert exchange.app.check_tx(_order(2, 2, gtb=2)).code == 0
    assert exchange.app.check_tx(_order(3, 3, gtbt_ns=time_of(1))).code == 704
    assert exchange.app.check_tx(_order(4, 4, gtbt_ns=time_of(1) + 1)).code == 0


@pytest.mark.parametrize(
    "between",
    [
        pytest.param(lambda r: r.block([]), id="after a commit"),
        pytest.param(lambda r: (r.block([]), r.app.finalize_block(2, time_of(2), []), r.app.discard_pending()),
                     id="after a discarded block"),
        pytest.param(lambda r: (r.block([]), r.restart()), id="after a restart"),
    ],
)
def test_check_tx_of_an_order_after(exchange, between):
    between(exchange)
    res = exchange.app.check_tx(_order(1, 1, gtb=exchange.app.info()[0] + 1))
    assert res.code == 0, res.log
    res = exchange.app.check_tx(_order(2, 2, gtbt_ns=time_of(1) + 1))
    assert res.code == 0, res.log


def test_the_committed_book_is_offered_only_between_blocks(exchange):
    exchange.block([])
    assert exchange.app.committed_books() is not None
    res = exchange.app.finalize_block(2, time_of(2), [_order(1, 1, gtb=3)])
    assert res.tx_results[0].code == 0
    assert exchange.app.committed_books() is None  # the block's order is not committed yet
    exchange.app.commit()
    books = exchange.app.committed_books()
    assert books is not None and books is exchange.app.committed_books()


def test_the_positions_view_is_built_once(exchange):
    exchange.block([])
    view = exchange.app.positions_view()
    assert view is not None and exchange.app.positions_view() is view


# --- events ---------------------------------------------------------------------------------------------------------
def test_every_tx_that_passed_the_ante_emits_its_tx_event(replica):
    ok, failed = replica.block([send_tx(1, 2, 5, 7), send_tx(3, 2, 2_000_000 * ONE_USDC, 9)]).tx_results
    assert (ok.code, ok.events[0].type, ok.events[0].attributes) == (
        0, "tx", (("signer", ADDRS[1]), ("nonce", "7"), ("fee_quote_quantums", str(FEE))))
    assert [e.type for e in ok.events] == ["tx", "transfer"]
    assert failed.code == errors.ERR_INSUFFICIENT_FUNDS.code
    assert failed.log.startswith("insufficient_funds: ")
    assert [(e.type, e.attributes) for e in failed.events] == [
        ("tx", (("signer", ADDRS[3]), ("nonce", "9"), ("fee_quote_quantums", str(FEE))))]


def test_the_block_announces_validator_updates(replica):
    tx = sign_tx(KEYS[0], CHAIN_ID, 1, [msg_set_validator_power(ADDRS[0], NEW_VALIDATOR, 5)])
    res = replica.block([tx])
    assert res.validator_updates == ((NEW_VALIDATOR, 5),)
    assert [(e.type, e.attributes) for e in res.events if e.type == "validator_update"] == [
        ("validator_update", (("pub_key", NEW_VALIDATOR.hex()), ("power", "5"), ("effective_height", "4")))]


# --- queries --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/foo/bar", id="an unknown two-segment path"),
        pytest.param("/foo/bar/baz", id="an unknown three-segment path"),
        pytest.param("/prices/market", id="a market query without its pair"),
        pytest.param("/bank/supply/extra", id="a known path with one segment too many"),
        pytest.param("", id="the empty path"),
    ],
)
def test_an_unknown_query_path(replica, path):
    res = replica.app.query(path, b"")
    assert (res.code, res.codespace, res.log, res.value) == (
        201, "app", f"unknown_query: unknown query path {path!r}", b"")


def test_a_query_at_a_height_that_is_not_kept(replica):
    res = replica.app.query("/bank/supply", b"", height=5)
    assert (res.code, res.codespace, res.log, res.value) == (
        205, "app", "height_unavailable: state at height 5 is not kept; this node serves only its latest committed "
                    "height 1 (query with height 0)", b"")
    assert replica.app.query("/bank/supply", b"", height=1).code == 0


def test_query_answers_are_json_with_sorted_keys(replica):
    app_hash = replica.app.info()[1].hex()
    assert replica.app.query("/app/info", b"").value == (
        '{"app_hash": "' + app_hash + '", "chain_id": "' + CHAIN_ID + '", "height": "1"}').encode()


def test_the_prices_markets_query(oracle_chain):
    markets = query(oracle_chain.app, "/prices/markets")["markets"]
    assert [m["pair"] for m in markets] == ["BTC-USD", "ETH-USD", "SOL-USD", "PEPE-USD"]
    assert markets[0] == query(oracle_chain.app, "/prices/market/BTC-USD")
    assert markets[0]["total_power"] == "40"


@pytest.mark.parametrize(
    "pattern, parts, expected",
    [
        pytest.param(("bank", "supply"), ["bank", "supply"], [], id="a fixed path"),
        pytest.param(("bank", "supply"), ["bank"], None, id="one segment short"),
        pytest.param(("bank", "supply"), ["bank", "supply", "x"], None, id="one segment too many"),
        pytest.param(("bank", "supply"), ["bank", "other"], None, id="a segment differs"),
        pytest.param(("bank", "balance", "*"), ["bank", "balance", "perp1x"], ["perp1x"], id="a wildcard segment"),
        pytest.param(("a", "*", "*"), ["a", "b", "c"], ["b", "c"], id="two wildcards in order"),
        pytest.param(("clob", "orderbook", "*", "?"), ["clob", "orderbook", "BTC-USD"], ["BTC-USD", None],
                     id="an optional last segment absent"),
        pytest.param(("clob", "orderbook", "*", "?"), ["clob", "orderbook", "BTC-USD", "5"], ["BTC-USD", "5"],
                     id="an optional last segment present"),
        pytest.param(("clob", "orderbook", "*", "?"), ["clob", "orderbook"], None, id="the wildcard before it missing"),
        pytest.param(("clob", "orderbook", "*", "?"), ["clob", "orderbook", "a", "b", "c"], None,
                     id="two segments after the wildcard"),
        pytest.param(("clob", "orderbook", "*", "?"), ["clob", "books", "a"], None, id="optional pattern, a fixed differs"),
        pytest.param((), [], [], id="the empty pattern matches the empty path"),
        pytest.param((), ["x"], None, id="the empty pattern matches nothing else"),
        pytest.param(("?",), [], [None], id="only an optional segment, absent"),
        pytest.param(("?",), ["x"], ["x"], id="only an optional segment, present"),
    ],
)
def test_match_path(pattern, parts, expected):
    assert match_path(pattern, parts) == expected


def test_export_genesis_has_one_section_per_module_and_reimports(tmp_path):
    a = Replica(tmp_path / "a")
    state = exchange_app_state()
    a.init_chain(state, vote_extensions_enable_height=1)
    a.block([send_tx(1, 2, 7, 1)])
    exported = a.app.export_genesis()
    assert sorted(exported) == ["auth", "bank", "clob", "exported_height", "perpetuals", "prices", "subaccounts"]
    assert exported["exported_height"] == "1"
    assert [m["pair"] for m in exported["prices"]["markets"]] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    b = Replica(tmp_path / "b")
    b.init_chain(json.loads(json.dumps(exported)), vote_extensions_enable_height=1)
    b.block([])
    assert b.app.export_genesis() == {**exported, "exported_height": "2"}
    a.close()
    b.close()


def test_genesis_sections_default_to_empty(tmp_path):
    """Only the bank section is required; every other module starts from its defaults."""
    r = Replica(tmp_path / "db")
    r.init_chain(genesis_app_state())
    r.block([])
    exported = r.app.export_genesis()
    assert exported["prices"]["markets"] == [] and exported["auth"]["accounts"] == []
    r.close()
