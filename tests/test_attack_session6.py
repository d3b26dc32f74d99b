"""Attacks on session 6's performance changes: LevelDB's committed-value read cache, the memoized write-set and the
one-update app hash, the window-only recheck of short-term order txs, exported_height at InitChain, the mark of an
oracle market shared by several perpetuals, the fused position_risk, the placement pre-check's own copy and the
book's key index, and the NamedTuple value types.

Markets and units as in tests/test_attack_session5.py: BTC-USD oracle $64,000, tick $1 = 100,000 subticks,
0.1 BTC = 1e9 base quantums = 6,400 USDC at $64,000. IM 5 %. Accounts 1..4 hold 100,000 USDC in subaccount 0.
Every expected number is worked by hand in the test's docstring.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app import errors
from app.store import BranchStore, compute_app_hash
from node.storage.leveldb import META_APP_HASH, META_HEIGHT, LevelDBStore
from tests.attack_helpers import app_state, cancel_replace
from tests.exchange_helpers import (
    BUY,
    FOK,
    IOC,
    ONE_BTC,
    ONE_DOLLAR_BTC,
    SELL,
    cancel,
    msg_tx,
    orders_tx,
    place,
)
from tests.helpers import ADDRS, CHAIN_ID, GENESIS_TIME_NS, ONE_USDC, Replica
from tests.mutation_helpers import MemReplica, mem_exchange

USD = ONE_USDC
D = ONE_DOLLAR_BTC
P64K = 64_000 * D
TENTH = ONE_BTC // 10


def nxt(r) -> int:
    return r.app._last_height() + 1


def _levels(r, side: str, market: str = "BTC-USD") -> list[tuple[int, int]]:
    res = r.app.query(f"/clob/orderbook/{market}/100", b"")
    assert res.code == 0, res.log
    return [(int(lv["subticks"]), int(lv["quantums"])) for lv in json.loads(res.value)[side]]


def _statuses(result) -> list[str]:
    return [dict(e.attributes)["status"] for e in result.events if e.type == "order_action"]


# =====================================================================================================================
# 1. LevelDBStore's read cache
# =====================================================================================================================

def _raw_db(store: LevelDBStore) -> dict[bytes, bytes]:
    return dict(store._db.iterator())


def _assert_cache_is_committed(store: LevelDBStore) -> None:
    """Every cached entry (value or absence) equals what LevelDB holds."""
    for key, value in store._cache.items():
        assert store._db.get(key) == value, key


def test_cached_absence_value_and_delete_follow_each_commit(tmp_path):
    """k1 read while absent (a cached absence), k2 read with v1: commit 1 sets k1=a, deletes k2; get answers a / None;
    commit 2 sets k2=b, deletes k1; get answers None / b; iterate agrees with get; a reopened store agrees too."""
    store = LevelDBStore(tmp_path / "db")
    k1, k2, k3 = b"\x01k1", b"\x01k2", b"\x01k3"
    store.commit([(k2, b"v1"), (k3, b"c")], 1, b"h1")
    assert (store.get(k1), store.get(k2)) == (None, b"v1")
    store.commit([(k1, b"a"), (k2, None)], 2, b"h2")
    assert (store.get(k1), store.get(k2), store.get(k3)) == (b"a", None, b"c")
    store.commit([(k1, None), (k2, b"b")], 3, b"h3")
    assert (store.get(k1), store.get(k2), store.get(k3)) == (None, b"b", b"c")
    assert list(store.iterate(b"\x01", None)) == [(k2, b"b"), (k3, b"c")]
    _assert_cache_is_committed(store)
    store.close()
    again = LevelDBStore(tmp_path / "db")
    assert (again.get(k1), again.get(k2), again.get(k3), again.last_height()) == (None, b"b", b"c", 3)
    again.close()


def test_a_refused_commit_changes_neither_the_cache_nor_the_db(tmp_path):
    """At height 1 with k = v1 cached: a commit of height 3 (not 2) raises before writing; a commit whose batch holds a
    value LevelDB refuses (a str) raises inside the transaction batch, so nothing of it is written. Both times get
    still answers v1, the other key of the batch stays absent, and the height stays 1."""
    store = LevelDBStore(tmp_path / "db")
    k, other = b"\x01k", b"\x01other"
    store.commit([(k, b"v1")], 1, b"h1")
    assert store.get(k) == b"v1" and store.get(other) is None
    with pytest.raises(RuntimeError):
        store.commit([(k, b"v2")], 3, b"h3")
    with pytest.raises(TypeError):
        store.commit([(k, b"v2"), (other, "not bytes")], 2, b"h2")
    assert (store.get(k), store.get(other), store.last_height(), store.last_app_hash()) == (b"v1", None, 1, b"h1")
    assert _raw_db(store) == {k: b"v1", META_HEIGHT: (1).to_bytes(8, "big"), META_APP_HASH: b"h1"}
    _assert_cache_is_committed(store)
    store.close()


def test_a_tiny_cache_that_starts_over_stays_exact(tmp_path):
    """cache_entries = 2 over 10 keys: reads in between commits keep clearing the cache; after 5 commits that each
    rewrite or delete some of the keys, every get equals LevelDB's value."""
    store = LevelDBStore(tmp_path / "db", cache_entries=2)
    keys = [b"\x01" + bytes([i]) for i in range(10)]
    model: dict[bytes, bytes] = {}
    for height in range(1, 6):
        writes = []
        for i, key in enumerate(keys):
            if (i + height) % 3 == 0:
                writes.append((key, None))
                model.pop(key, None)
            elif (i * height) % 2 == 0:
                value = b"h%d-%d" % (height, i)
                writes.append((key, value))
                model[key] = value
        for key in keys[::3]:
            store.get(key)
        store.commit(writes, height, b"h%d" % height)
        assert len(store._cache) <= 2
        assert [store.get(key) for key in keys] == [model.get(key) for key in keys]
    store.close()


def test_get_of_the_metadata_keys_follows_commits(tmp_path):
    """Found by this attack (fixed): commit() wrote the metadata keys without updating their cached values."""
    store = LevelDBStore(tmp_path / "db")
    store.commit([(b"\x01a", b"1")], 1, b"hash-1")
    assert store.get(META_HEIGHT) == (1).to_bytes(8, "big")
    store.commit([(b"\x01a", b"2")], 2, b"hash-2")
    assert list(store.iterate(b"\x00", b"\x01")) == [(META_APP_HASH, b"hash-2"), (META_HEIGHT, (2).to_bytes(8, "big"))]
    try:
        assert (store.get(META_HEIGHT), store.get(META_APP_HASH)) == ((2).to_bytes(8, "big"), b"hash-2")
    finally:
        store.close()


def test_a_leveldb_chain_through_genesis_orders_cancels_and_a_restart_keeps_the_cache_exact(tmp_path):
    """A real-LevelDB replica and an in-memory one fed the same blocks (genesis committed with block 1, then a
    resting bid, a fill, a cancel, a re-finalized (uncommitted) block): same app hash at every height; after every
    commit each cached entry equals LevelDB's value and every committed key reads back through get; after a restart
    the next block's app hash still matches."""
    state = app_state()
    disk, mem = Replica(tmp_path / "db"), MemReplica()
    disk.init_chain(json.loads(json.dumps(state)))
    mem.init_chain(json.loads(json.dumps(state)))

    def both(txs, commit=True):
        a, b = disk.block(list(txs), commit=commit), mem.block(list(txs), commit=commit)
        assert a.app_hash == b.app_hash
        assert a.tx_results == b.tx_results
        if commit:
            _assert_cache_is_committed(disk.store)
            for key, value in disk.store._db.iterator(start=b"\x01"):
                assert disk.store.get(key) == value

    both([])
    h = nxt(disk)
    both([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, gtb=h + 20)]),
          orders_tx(3, 1, [place(1, BUY, TENTH, P64K - D, gtb=h + 20)])])
    both([orders_tx(1, 1, [place(1, BUY, TENTH // 2, P64K + D, tif=IOC, gtb=h + 20)])])
    # A block finalized and dropped (CometBFT restarted), then the same height with other txs.
    both([orders_tx(3, 2, [cancel(1)])], commit=False)
    disk.app.discard_pending()
    mem.app.discard_pending()
    both([orders_tx(2, 2, [cancel(1)])])
    assert _levels(disk, "asks") == [] and _levels(disk, "bids") == [(P64K - D, TENTH)]
    disk.restart()
    both([orders_tx(3, 2, [cancel(1)])])
    assert _levels(disk, "bids") == _levels(mem, "bids") == []
    disk.close()


# =====================================================================================================================
# 2. BranchStore.write_set memo and the app hash encoding
# =====================================================================================================================

def _uvarint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _documented_hash(prev: bytes, write_set) -> bytes:
    """H(prev || H(entries)), entry = uvarint(len key) key flag [uvarint(len value) value], streamed entry by entry."""
    inner = hashlib.sha256()
    for key, value in write_set:
        inner.update(_uvarint(len(key)) + key)
        if value is None:
            inner.update(b"\x00")
        else:
            inner.update(b"\x01" + _uvarint(len(value)) + value)
    return hashlib.sha256(prev + inner.digest()).digest()


def test_the_app_hash_is_the_documented_encoding_at_varint_edges():
    """Keys and values of length 0/1/127/128/300/16383/16384 (1-, 2- and 3-byte varints), an empty value (a set, flag
    0x01 + length 0) and a delete (flag 0x00) of the same key give three different hashes, each equal to the
    documented encoding hashed by hand."""
    entries = []
    for i, n in enumerate((1, 127, 128, 300, 16383, 16384)):
        entries.append((b"\x01" + bytes([i]) * (n - 1), b"v" * n))
    entries.append((b"\x02", b""))
    entries.append((b"\x03" * 200, None))
    entries.sort()
    prev = b"p" * 32
    assert compute_app_hash(prev, entries) == _documented_hash(prev, entries)
    assert compute_app_hash(b"", []) == hashlib.sha256(hashlib.sha256(b"").digest()).digest()
    set_empty, deleted, absent = [(b"\x02", b"")], [(b"\x02", None)], []
    hashes = {compute_app_hash(b"", ws) for ws in (set_empty, deleted, absent)}
    assert len(hashes) == 3
    assert compute_app_hash(b"", set_empty) == _documented_hash(b"", set_empty)
    assert compute_app_hash(b"", deleted) == _documented_hash(b"", deleted)


class _Dict:
    def __init__(self, data):
        self.data = dict(data)

    def get(self, key):
        return self.data.get(key)

    def iterate(self, start, end):
        for k in sorted(self.data):
            if k >= start and (end is None or k < end):
                yield k, self.data[k]


def test_the_write_set_memo_is_dropped_by_every_kind_of_write():
    """A block branch's write_set is asked (memoized), then changed by: its own set, its own delete, a tx branch's
    write, a grandchild written through a child and the child written, an iterate in between (read only). Each
    time the next write_set is the sorted dict of all writes, and the app hash follows it."""
    committed = _Dict({b"\x01a": b"A", b"\x01z": b"Z"})
    block = BranchStore(committed)
    block.set(b"\x01m", b"M")
    assert block.write_set() == [(b"\x01m", b"M")]
    block.delete(b"\x01a")
    assert block.write_set() == [(b"\x01a", None), (b"\x01m", b"M")]
    tx = BranchStore(block)
    tx.set(b"\x01b", b"B")
    assert block.write_set() == [(b"\x01a", None), (b"\x01m", b"M")]  # not written through yet
    tx.write()
    assert block.write_set() == [(b"\x01a", None), (b"\x01b", b"B"), (b"\x01m", b"M")]
    child = BranchStore(block)
    grandchild = BranchStore(child)
    grandchild.set(b"\x01c", b"C")
    grandchild.delete(b"\x01z")
    grandchild.write()
    assert child.write_set() == [(b"\x01c", b"C"), (b"\x01z", None)]
    assert list(block.iterate(b"\x01", None)) == [(b"\x01b", b"B"), (b"\x01m", b"M"), (b"\x01z", b"Z")]
    child.write()
    expected = [(b"\x01a", None), (b"\x01b", b"B"), (b"\x01c", b"C"), (b"\x01m", b"M"), (b"\x01z", None)]
    assert block.write_set() == expected
    assert compute_app_hash(b"x", block.write_set()) == _documented_hash(b"x", expected)
    block.set(b"\x01a", b"A2")  # a delete turned back into a set
    assert block.write_set()[0] == (b"\x01a", b"A2")


def test_the_genesis_block_commits_genesis_and_block_writes_and_hashes_only_the_block():
    """InitChain's app hash is H(b"" || H(genesis writes)); block 1's is H(genesis hash || H(block 1 writes)) although
    its Commit writes genesis + block 1 (the memoized genesis write-set is dropped when block 1 is written into it):
    the LevelDB store then holds every genesis key and the block's last-block-time key."""
    import tempfile

    from app.consensus import keeper as consensus_keeper

    with tempfile.TemporaryDirectory() as tmp:
        r = Replica(tmp)
        genesis_hash = r.init_chain(app_state())
        genesis_writes = list(r.app._genesis.store.write_set())
        assert genesis_hash == _documented_hash(b"", genesis_writes)
        res = r.block([], commit=False)
        block_writes = list(r.app._pending.store.write_set())
        assert res.app_hash == _documented_hash(genesis_hash, block_writes)
        r.app.commit()
        stored = dict(r.store.iterate(b"\x01", None))
        expected = {k: v for k, v in genesis_writes if v is not None}
        expected.update({k: v for k, v in block_writes if v is not None})
        for k, v in block_writes:
            if v is None:
                expected.pop(k, None)
        assert stored == expected
        assert r.store.last_app_hash() == res.app_hash
        assert consensus_keeper.get_last_block_time_ns(r.store) == GENESIS_TIME_NS + 500_000_000
        r.close()


# =====================================================================================================================
# 3. Recheck of short-term order txs
# =====================================================================================================================

def _small_account_state() -> dict:
    """Account 5 holds 1,000 USDC in the bank and no subaccount: request capacity = 50 + 1,000 ÷ 100 = 60, refill
    max(1, 60 × 100,000 ÷ 1e6) = 6 per block."""
    state = app_state()
    for b in state["bank"]["balances"]:
        if b["address"] == ADDRS[5]:
            b["amount_quote_quantums"] = str(1_000 * USD)
    return state


def _iocs(n: int, h: int, first: int = 1) -> list:
    return [place(first + i, BUY, TENTH, P64K - D, tif=IOC, gtb=h + 5) for i in range(n)]


def test_rechecks_rebuild_the_pending_budget_and_count_it_across_txs():
    """Account 5 uses its 60 requests at height h (a tx of 60 IOC placements: the ante passes, the actions are refused,
    no subaccount). After that block its budget is the refill, 6. Rechecks (the pending view was cleared at Commit) of
    its three pending short-term txs: 4 placements (nonce 2) pass, 4 more (nonce 3) are rate_limited (4 > 6 - 4), 2
    (nonce 4) pass: the window-only recheck still runs the ante against the rebuilt view."""
    r = mem_exchange(_small_account_state())
    h = nxt(r)
    assert r.block([orders_tx(5, 1, _iocs(60, h))]).tx_results[0].code == 0
    h = nxt(r)
    a, b, c = orders_tx(5, 2, _iocs(4, h, 100)), orders_tx(5, 3, _iocs(4, h, 200)), orders_tx(5, 4, _iocs(2, h, 300))
    assert [r.app.check_tx(t, recheck=True).code for t in (a, b, c)] == [0, errors.ERR_RATE_LIMITED.code, 0]


def test_a_recheck_that_drops_an_expired_tx_leaves_its_nonce_free():
    """Account 2's tx (nonce 5) of one short-term bid good til block h is rechecked at h + 1: dropped (704). Its ante ran
    in a discarded branch and it never entered the pending view, so a new tx of account 2 with nonce 5 (a bid good til
    h + 10) is admitted."""
    r = mem_exchange()
    h = nxt(r)
    expired = orders_tx(2, 5, [place(1, BUY, TENTH, P64K - D, gtb=h)])
    assert r.app.check_tx(expired).code == 0
    r.block([])
    assert r.app.check_tx(expired, recheck=True).code == errors.ERR_INVALID_GOOD_TIL.code
    fresh = orders_tx(2, 5, [place(2, BUY, TENTH, P64K - D, gtb=h + 10)])
    assert r.app.check_tx(fresh).code == 0


def test_an_empty_action_does_not_keep_an_expired_tx_in_the_mempool():
    """Found by this attack (fixed): an empty action counted as short-term, so [empty, bid good til h] was kept at
    h + 1. An empty action now makes the recheck a full check, which refuses the tx (no action passes: the first
    error, the empty action's, 711)."""
    r = mem_exchange()
    h = nxt(r)
    tx = orders_tx(2, 5, [tx_pb2.OrderAction(), place(1, BUY, TENTH, P64K - D, gtb=h)])
    assert r.app.check_tx(tx).code == 0  # the bid passes: the tx is admitted
    r.block([])
    refused = r.app.check_tx(tx, recheck=True)
    assert (refused.code, refused.log) == (errors.ERR_INVALID_ORDER.code, "invalid_order: empty order action")


def test_odd_actions_on_recheck_do_not_crash():
    """Rechecks of txs a first CheckTx would refuse, never crashing: a cancel-replace without a placement (its default
    placement has good_til_block 0: expired, 704); a lone empty action (not short-term: the full check refuses it,
    711); a placement with a negative good-til-time (long-term: the full check refuses it, 704 from the stateless
    check)."""
    r = mem_exchange()
    no_place = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(order_id=tx_pb2.OrderId(client_id=1)))
    assert r.app.check_tx(orders_tx(2, 1, [no_place]), recheck=True).code == errors.ERR_INVALID_GOOD_TIL.code
    assert r.app.check_tx(orders_tx(2, 2, [tx_pb2.OrderAction()]), recheck=True).code == errors.ERR_INVALID_ORDER.code
    negative = place(1, BUY, TENTH, P64K - D, gtbt_ns=-5)
    assert r.app.check_tx(orders_tx(2, 3, [negative]), recheck=True).code == errors.ERR_INVALID_GOOD_TIL.code


def test_a_long_term_cancel_replace_of_a_short_term_order_gets_the_full_check():
    """cancel-replace of short-term id 9 (absent) by a long-term placement of 1 BTC (IM 3,200 USDC) after account 1
    withdrew down to 1,000 USDC: not all short-term, so the full check runs and refuses it (no action would pass: the
    cancel names no order: order_not_found, the first error)."""
    from tests.attack_helpers import withdraw_msg

    r = mem_exchange()
    assert r.block([msg_tx(1, 1, [withdraw_msg(1, 99_000 * USD)])]).tx_results[0].code == 0
    gtbt = GENESIS_TIME_NS + 3600 * 10**9
    tx = orders_tx(1, 2, [cancel_replace(9, place(1, BUY, ONE_BTC, P64K, gtbt_ns=gtbt))])
    assert r.app.check_tx(tx, recheck=True).code == errors.ERR_ORDER_NOT_FOUND.code


# =====================================================================================================================
# 4. exported_height at InitChain, initial_height_of, validate_app_state
# =====================================================================================================================

BAD_HEIGHTS = [12, True, 12.0, "", "١٢", "１２", "+12", " 12", "12 ", "-1", "0", "1e3", "0x10", "²",
               "9223372036854775807", "00000000000000000012", ["12"], {"h": "12"}]


@pytest.mark.parametrize("value", BAD_HEIGHTS, ids=repr)
def test_a_malformed_exported_height_is_refused_everywhere(value):
    """Each value: InitChain refuses it at initial heights 1 and 13 with 202 and the format message;
    initial_height_of gives 1 except for an ASCII-digit string of <= 19 characters (then its value + 1: "0" -> 1,
    "9223372036854775807" -> 2^63); validate_app_state raises GenesisError naming exported_height."""
    from node.genesis import GenesisError, initial_height_of, validate_app_state

    state = app_state()
    state["exported_height"] = value
    for initial in (1, 13):
        with pytest.raises(errors.AppError) as refused:
            MemReplica().app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(state).encode(), [], initial)
        assert refused.value.error is errors.ERR_INVALID_GENESIS
        assert refused.value.message == "exported_height must be a decimal string in 1..2^63-2"
    expected = {"0": 1, "9223372036854775807": 2**63}.get(value, 1) if isinstance(value, str) else 1
    assert initial_height_of(state) == expected
    with pytest.raises(GenesisError) as bad:
        validate_app_state(CHAIN_ID, state)
    assert "exported_height" in str(bad.value)


def test_exported_height_edges_that_are_accepted():
    """"0000000000000000012" (19 characters, value 12) starts at 13; "9223372036854775806" (2^63 - 2) starts at
    2^63 - 1 (int64 max), the largest; a null exported_height is no export (any initial height). initial_height_of
    agrees and validate_app_state passes."""
    from node.genesis import initial_height_of, validate_app_state

    for value, initial in (("0000000000000000012", 13), ("9223372036854775806", 2**63 - 1), (None, 1)):
        state = app_state()
        state["exported_height"] = value
        MemReplica().app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(state).encode(), [], initial)
        assert initial_height_of(state) == initial
        validate_app_state(CHAIN_ID, state)
    state = app_state()
    state["exported_height"] = None
    MemReplica().app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(state).encode(), [], 7)


def test_patch_genesis_writes_the_exported_initial_height(tmp_path):
    """patch_genesis of an export at height 41: initial_height "42" and vote extensions from 42."""
    from node.genesis import patch_genesis

    path = tmp_path / "genesis.json"
    path.write_text(json.dumps({"consensus_params": {"abci": {"vote_extensions_enable_height": "1"}}}))
    state = app_state()
    state["exported_height"] = "41"
    doc = patch_genesis(path, CHAIN_ID, state)
    assert (doc["initial_height"], doc["consensus_params"]["abci"]["vote_extensions_enable_height"]) == ("42", "42")
    assert json.loads(path.read_text())["initial_height"] == "42"


def test_an_imported_chain_is_not_exported_before_its_first_block():
    """Found by this attack (fixed): before its first Commit an imported chain exported an empty state with
    exported_height '0' (only the committed store is read). Exporting with nothing committed is now refused; after the
    first block the export carries the imported state."""
    a = mem_exchange()
    for _ in range(3):
        a.block([])
    exported = json.loads(json.dumps(a.app.export_genesis()))
    assert exported["exported_height"] == "4"
    b = MemReplica()
    b.init_chain(exported)  # initial height 5, pending
    with pytest.raises(errors.AppError) as refused:
        b.app.export_genesis()
    assert refused.value.error is errors.ERR_INVALID_GENESIS
    assert refused.value.message == ("nothing is committed yet: there is no state to export (before the first block, "
                                     "the genesis file is the state)")
    b.block([])
    assert b.app.export_genesis() == {**exported, "exported_height": "5"}


# =====================================================================================================================
# 5. An oracle market shared by two perpetuals: which book drives the mark
# =====================================================================================================================

def _create_btc2(pair_id: int) -> bytes:
    return msg_tx(0, 1, [tx_pb2.Msg(create_perpetual=tx_pb2.MsgCreatePerpetual(
        authority=ADDRS[0],
        perpetual=exchange_pb2.Perpetual(id=20, ticker="BTC2-USD", market_id=0, atomic_resolution=-10,
                                         liquidity_tier=0, market_type=exchange_pb2.MARKET_TYPE_CROSS),
        clob_pair=exchange_pb2.ClobPair(id=pair_id, perpetual_id=20, step_base_quantums=1_000_000,
                                        subticks_per_tick=100_000, quantum_conversion_exponent=-9, status=1)))])


def _mark_after_two_books(btc_pair: int, btc2_pair: int) -> tuple[str, str]:
    state = app_state()
    state["clob"]["clob_pairs"][0]["id"] = btc_pair
    r = mem_exchange(state)
    res = r.block([_create_btc2(btc2_pair)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, TENTH, P64K + D, pair=btc_pair, gtb=h + 40),
                                    place(2, SELL, TENTH, P64K + 1_100 * D, pair=btc2_pair, gtb=h + 40)]),
                   orders_tx(3, 1, [place(1, BUY, TENTH, P64K - D, pair=btc_pair, gtb=h + 40),
                                    place(2, BUY, TENTH, P64K + 900 * D, pair=btc2_pair, gtb=h + 40)])])
    assert _statuses(res.tx_results[0]) == _statuses(res.tx_results[1]) == ["resting", "resting"]
    for _ in range(3):
        r.block([])
    market = json.loads(r.app.query("/prices/market/BTC-USD", b"").value)
    return market["mark_price"], market["basis_ema"]


def test_a_later_perpetual_with_a_higher_pair_id_does_not_steer_the_mark():
    """BTC-USD on pair 10 (bid $63,999 / ask $64,001: mid = oracle, basis 0); BTC2-USD created later on oracle market 0
    as pair 20 with bid $64,900 / ask $65,100 (mid $65,000). BTC-USD's mark stays the oracle, $64,000."""
    assert _mark_after_two_books(10, 20) == ("6400000000", "0")


def test_a_later_perpetual_with_a_lower_pair_id_does_not_steer_the_mark():
    """Found by this attack (fixed): BTC2-USD created later on oracle market 0 as pair 3, below BTC-USD's pair 10,
    took over the market's mark with its own book. Such a listing is now refused (the lowest pair id of an oracle
    market drives its mark, so a later pair must come above it); BTC-USD's mark stays the oracle."""
    state = app_state()
    state["clob"]["clob_pairs"][0]["id"] = 10
    r = mem_exchange(state)
    res = r.block([_create_btc2(3)])
    assert res.tx_results[0].code == errors.ERR_INVALID_CLOB_PAIR.code
    assert res.tx_results[0].log == ("invalid_clob_pair: oracle market 0 is already traded on clob pair 10: a later "
                                     "pair on it needs a higher id than 10 (the lowest drives the market's mark price)")
    for _ in range(3):
        r.block([])
    market = json.loads(r.app.query("/prices/market/BTC-USD", b"").value)
    assert (market["mark_price"], market["basis_ema"]) == ("6400000000", "0")


# =====================================================================================================================
# 7. The book's key index against the stored orders, within one block
# =====================================================================================================================

def _index_matches_store(r) -> list[tuple[int, int, int]]:
    """The in-memory book's key index equals the stored orders (keys, pair, side, price); returns the stored
    (client id, side, subticks) in key order."""
    from app.clob import keeper

    stored = list(keeper.iter_orders(BranchStore(r.store)))
    books = r.app.committed_books()
    assert books is not None
    assert {k: v[:3] for k, v in books.index.items()} == {k: (o.clob_pair_id, o.side, o.subticks) for k, o in stored}
    # and a rebuilt book (a restart) agrees
    r.restart()
    assert set(r.app.committed_books().index) == set(books.index)
    return [(o.client_id, o.side, o.subticks) for _, o in stored]


def test_a_rolled_back_fill_or_kill_leaves_the_makers_id_taken_in_the_same_block():
    """Account 2 rests ask id 7 (0.1 BTC at $64,001). Next block: account 1's FOK buy of 0.2 BTC at $64,001 matches the
    0.1 and is killed (712, rolled back: ask 7 is back in the store and the index); then account 2 places ask id 7
    again in the same block: order_exists (705). The book keeps one 0.1 ask at $64,001."""
    r = mem_exchange()
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(7, SELL, TENTH, P64K + D, gtb=h + 20)])])
    res = r.block([orders_tx(1, 1, [place(1, BUY, 2 * TENTH, P64K + D, tif=FOK, gtb=h + 20)]),
                   orders_tx(2, 2, [place(7, SELL, TENTH, P64K + 2 * D, gtb=h + 20)])])
    codes = [dict(e.attributes).get("code") for t in res.tx_results for e in t.events if e.type == "order_action"]
    assert codes == [str(errors.ERR_FILL_OR_KILL_NOT_FILLED.code), str(errors.ERR_ORDER_EXISTS.code)]
    assert _levels(r, "asks") == [(P64K + D, TENTH)]
    assert _index_matches_store(r) == [(7, SELL, P64K + D)]


def test_ids_freed_in_a_block_can_be_placed_again_in_that_block():
    """Account 2 rests asks id 7 (0.1 at $64,001, good til h + 1) and id 8 (0.1 at $64,003), id 9 (0.1 at $64,004).
    Block h + 2: id 7 expired at the block's start, so placing id 7 again (0.1 at $64,010) rests; account 1's IOC buy
    of 0.1 at $64,003 fills id 8 completely, then account 2 (a later tx) places id 8 again at $64,020: rests; a
    cancel of id 9 (phase 1) and a placement of id 9 in the same tx (phase 3): rests; a cancel-replace of id 9 by
    id 9 would find the re-placed one only after phase 1, so in the next block it replaces it at $64,030. Index and
    store agree after each block."""
    r = mem_exchange()
    h = nxt(r)
    r.block([orders_tx(2, 1, [place(7, SELL, TENTH, P64K + D, gtb=h + 1), place(8, SELL, TENTH, P64K + 3 * D, gtb=h + 20),
                              place(9, SELL, TENTH, P64K + 4 * D, gtb=h + 20)])])
    r.block([])  # h + 1: id 7 still valid
    assert _levels(r, "asks")[0] == (P64K + D, TENTH)
    res = r.block([orders_tx(2, 2, [place(7, SELL, TENTH, P64K + 10 * D, gtb=h + 20)]),
                   orders_tx(1, 1, [place(1, BUY, TENTH, P64K + 3 * D, tif=IOC, gtb=h + 20)]),
                   orders_tx(2, 3, [place(8, SELL, TENTH, P64K + 20 * D, gtb=h + 20)]),
                   orders_tx(2, 4, [cancel(9), place(9, SELL, TENTH, P64K + 25 * D, gtb=h + 20)])])
    assert [t.code for t in res.tx_results] == [0, 0, 0, 0]
    assert _statuses(res.tx_results[0]) == ["resting"]
    assert _statuses(res.tx_results[1]) == ["filled"]
    assert _statuses(res.tx_results[2]) == ["resting"]
    assert _statuses(res.tx_results[3]) == ["canceled", "resting"]
    assert _index_matches_store(r) == [(7, SELL, P64K + 10 * D), (8, SELL, P64K + 20 * D), (9, SELL, P64K + 25 * D)]
    res = r.block([orders_tx(2, 5, [cancel_replace(9, place(9, SELL, TENTH, P64K + 30 * D, gtb=h + 20))])])
    assert _statuses(res.tx_results[0]) == ["canceled", "resting"]
    assert _index_matches_store(r) == [(7, SELL, P64K + 10 * D), (8, SELL, P64K + 20 * D), (9, SELL, P64K + 30 * D)]
    assert _levels(r, "asks") == [(P64K + 10 * D, TENTH), (P64K + 20 * D, TENTH), (P64K + 30 * D, TENTH)]


def test_two_placements_of_one_id_in_one_block_rest_once():
    """Account 2 places ask id 5 twice in one block (two txs, $64,001 then $64,002) and a cancel-replace of id 5 whose
    cancel half runs first (phase 1: nothing to cancel yet, skipped): the first rests, the second is order_exists
    (705), the replace's cancel is order_not_found (706) and its placement skipped. One ask."""
    r = mem_exchange()
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(5, SELL, TENTH, P64K + D, gtb=h + 20)]),
                   orders_tx(2, 2, [place(5, SELL, TENTH, P64K + 2 * D, gtb=h + 20)]),
                   orders_tx(2, 3, [cancel_replace(5, place(5, SELL, TENTH, P64K + 3 * D, gtb=h + 20))])])
    assert _statuses(res.tx_results[0]) == ["resting"]
    assert _statuses(res.tx_results[1]) == ["rejected"]
    assert dict(next(e for e in res.tx_results[1].events if e.type == "order_action").attributes)["code"] == \
        str(errors.ERR_ORDER_EXISTS.code)
    assert _statuses(res.tx_results[2]) == ["rejected", "skipped"]
    assert _index_matches_store(r) == [(5, SELL, P64K + D)]


# =====================================================================================================================
# 6. position_risk = (net_collateral, *margin_requirements)
# =====================================================================================================================

def test_position_risk_equals_the_two_functions_on_an_edge_grid():
    """Sizes 0, ±1, ±999,999, ±1e18, ±(2^63 - 1); k = e + r + 6 in {-12, -9, -1, 0, 1, 5}; prices 1, 6.4e9, 2^64 - 1;
    IM 0 / 1 / 5 % / 100 %; MF 0 / 60 % / 100 %; OI caps off (0, 0), (0, 1), (5e11, 1e12), (1e12, 1e12); OI 0, 1,
    1e15: the fused function returns exactly net_collateral and margin_requirements."""
    from app.perpetuals.logic import margin_requirements, net_collateral, position_risk

    sizes = [0, 1, -1, 999_999, -999_999, 10**18, -10**18, 2**63 - 1, -(2**63 - 1)]
    exps = [(-10, -8), (-10, -5), (-3, -4), (-1, -5), (0, -5), (5, -6)]  # (atomic_resolution, price_exponent)
    n = 0
    for q in sizes:
        for r_, e in exps:
            for price in (1, 6_400_000_000, 2**64 - 1):
                for im in (0, 1, 50_000, 1_000_000):
                    for mf in (0, 600_000, 1_000_000):
                        for lo, hi in ((0, 0), (0, 1), (5 * 10**11, 10**12), (10**12, 10**12)):
                            for oi in (0, 1, 10**15):
                                want = (net_collateral(q, r_, price, e),
                                        *margin_requirements(q, r_, price, e, im, mf, lo, hi, oi))
                                assert position_risk(q, r_, price, e, im, mf, lo, hi, oi) == want
                                n += 1
    assert n == 9 * 6 * 3 * 4 * 3 * 4 * 3


def test_position_risk_by_hand():
    """BTC (r = -10, e = -5, k = -9) at 6.4e9: a 0.1 BTC short is -6,400 USDC of net collateral, IMR 5 % = 320 USDC,
    MMR ceil(320 × 60 %) = 192 USDC. One base quantum short: 6.4e9 ÷ 1e9 = 6.4 -> -6 (toward zero), IMR ceil(0.3) = 1,
    MMR ceil(0.6) = 1. With OI scaling (caps 0 / 1e12) and OI 78,125,000,000 base quantums (5e11 quote quantums): OIMF
    = 50,000 + floor(950,000 × 0.5) = 525,000 ppm: the 0.1 BTC IMR is 3,360 USDC, MMR still 192 USDC."""
    from app.perpetuals.logic import position_risk

    assert position_risk(-TENTH, -10, 6_400_000_000, -5, 50_000, 600_000, 0, 0, 0) == \
        (-6_400_000_000, 320_000_000, 192_000_000)
    assert position_risk(-1, -10, 6_400_000_000, -5, 50_000, 600_000, 0, 0, 0) == (-6, 1, 1)
    assert position_risk(TENTH, -10, 6_400_000_000, -5, 50_000, 600_000, 0, 10**12, 78_125_000_000) == \
        (6_400_000_000, 3_360_000_000, 192_000_000)


# =====================================================================================================================
# 8. NamedTuple value types
# =====================================================================================================================

def test_cost_budget_event_subaccount_id_keep_their_value_semantics():
    """Cost + Cost adds field-wise (not tuple concatenation); tx_cost of an order tx with 2 placements, 1 cancel and
    1 cancel-replace is 3 requests + 2 cancels; of a deposit + a send 2 requests and 2 fee messages. SubaccountIds
    sort by owner then number. Events are hashable and compare by value; an Event's attributes keep keyword order."""
    from app.auth.admission import Cost
    from app.events import Event
    from app.subaccounts.state import SubaccountId
    from app.tx.router import tx_cost
    from node.client.txbuilder import msg_send
    from tests.attack_helpers import deposit_msg

    assert Cost(1, 2, 3) + Cost(4, 5, 6) == Cost(5, 7, 9)
    assert len(Cost(1, 2, 3) + Cost(4, 5, 6)) == 3
    orders = tx_pb2.MsgOrders(owner=ADDRS[1], actions=[
        place(1, BUY, TENTH, P64K), place(2, BUY, TENTH, P64K), cancel(3), cancel_replace(4, place(5, BUY, TENTH, P64K))])
    assert tx_cost([("orders", orders)]) == Cost(requests=3, cancels=2, fee_messages=0)
    send = msg_send(ADDRS[1], ADDRS[2], 1)
    assert tx_cost([("deposit", deposit_msg(1, 5).deposit), ("send", send.send)]) == Cost(2, 0, 2)
    a, b = b"\x01" * 20, b"\x02" * 20
    assert sorted([SubaccountId(b, 0), SubaccountId(a, 5), SubaccountId(a, 1)]) == \
        [SubaccountId(a, 1), SubaccountId(a, 5), SubaccountId(b, 0)]
    e1, e2 = Event.of("fill", b=1, a=2), Event.of("fill", b=1, a=2)
    assert e1 == e2 and hash(e1) == hash(e2) and len({e1, e2}) == 1
    assert e1.attributes == (("b", "1"), ("a", "2"))
    assert Event.of("fill", a=2, b=1) != e1


def test_a_market_after_a_shared_one_still_drives_its_own_mark():
    """Pairs in id order: BTC-USD 0 (market 0), SOL-USD 2, BTC2-USD 20 (market 0 again: skipped, BTC-USD drives it),
    ETH-USD 30 (market 1). ETH's book bid $3,000.50 / ask $3,001.50 (ETH: exponent -6, resolution -9, QCE -9, so a
    subtick is one price unit): mid 3,001,000,000 = oracle + 1,000,000. Three blocks see it; the EMA (10 % smoothing,
    clamp 0.5 % = 15,000,000) goes 100,000, 190,000, 271,000: ETH's mark 3,000,271,000. The shared market's skip must
    not end the mapping of the pairs after it."""
    state = app_state()
    state["clob"]["clob_pairs"][1]["id"] = 30
    r = mem_exchange(state)
    assert r.block([_create_btc2(20)]).tx_results[0].code == 0
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, 1_000_000, 3_001_500_000, pair=30, gtb=h + 40)]),
                   orders_tx(3, 1, [place(1, BUY, 1_000_000, 3_000_500_000, pair=30, gtb=h + 40)])])
    assert _statuses(res.tx_results[0]) == _statuses(res.tx_results[1]) == ["resting"]
    for _ in range(3):
        r.block([])
    market = json.loads(r.app.query("/prices/market/ETH-USD", b"").value)
    assert (market["mark_price"], market["basis_ema"]) == ("3000271000", "271000")
