"""BranchStore against a dict model, and the app-hash definition."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.store import BranchStore, compute_app_hash, prefix_end
from node.storage.leveldb import LevelDBStore
from tests.helpers import Replica, send_tx

keys = st.binary(min_size=1, max_size=3).map(lambda b: b"\x01" + b)
ops = st.lists(st.tuples(st.sampled_from(["set", "delete", "branch", "write"]), keys, st.binary(max_size=4)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(base=st.dictionaries(keys, st.binary(min_size=1, max_size=4), max_size=20), ops=ops)
def test_branches_match_a_dict_model(tmp_path_factory, base, ops):
    db = LevelDBStore(tmp_path_factory.mktemp("db"))
    db.commit(sorted(base.items()), 1, b"h")
    model_stack = [dict(base)]
    stack = [BranchStore(db)]
    for op, k, v in ops:
        if op == "set":
            stack[-1].set(k, v)
            model_stack[-1][k] = v
        elif op == "delete":
            stack[-1].delete(k)
            model_stack[-1].pop(k, None)
        elif op == "branch":
            stack.append(BranchStore(stack[-1]))
            model_stack.append(dict(model_stack[-1]))
        elif op == "write" and len(stack) > 1:
            stack.pop().write()
            top = model_stack.pop()
            model_stack[-1] = top
        model = model_stack[-1]
        assert list(stack[-1].iterate(b"\x01", None)) == sorted(model.items())
        assert stack[-1].get(k) == model.get(k)
    lo, hi = b"\x01\x40", b"\x01\xc0"
    assert list(stack[-1].iterate(lo, hi)) == sorted((a, b) for a, b in model_stack[-1].items() if lo <= a < hi)
    db.close()


def test_prefix_end():
    assert prefix_end(b"\x01") == b"\x02"
    assert prefix_end(b"\x01\xff") == b"\x02"
    assert prefix_end(b"\xff\xff") is None


WS = [(b"\x01a", b"1"), (b"\x01b", None), (b"\x01c", b"\x00\x10\x20")]


@pytest.mark.parametrize(
    "prev, write_set",
    [
        pytest.param(b"prev2", WS, id="previous app hash differs"),
        pytest.param(b"prev", [(b"\x01a", b"2"), *WS[1:]], id="one value differs in its only byte"),
        pytest.param(b"prev", [*WS[:2], (b"\x01c", b"\x00\x10\x21")], id="one value differs in its last byte"),
        pytest.param(b"prev", [(b"\x01a", None), *WS[1:]], id="a set becomes a delete"),
        pytest.param(b"prev", [WS[0], (b"\x01b", b"1"), WS[2]], id="a delete becomes a set"),
        pytest.param(b"prev", [WS[0], (b"\x01b", b""), WS[2]], id="a delete becomes a set of the empty value"),
        pytest.param(b"prev", [(b"\x01a", b"1"), (b"\x01b", None)], id="one entry less"),
        # Without value lengths, b"1" then the delete of b"\x01b" (02 01 62 | 00) read as this one value.
        pytest.param(b"prev", [(b"\x01a", b"1\x02\x01b\x00"), WS[2]], id="framing: a value cannot swallow an entry"),
        # Without key lengths, WS's first two entries (01 61 | 01 | 01 31, 01 62 | 00) read as this one deleted key.
        pytest.param(b"prev", [(b"\x01a\x01\x011\x01b", None), WS[2]], id="framing: a key cannot swallow an entry"),
        pytest.param(b"prev", [(b"\x01d", b"1"), *WS[1:]], id="a key differs, same value"),
    ],
)
def test_app_hash_changes_with_every_part(prev, write_set):
    h = compute_app_hash(b"prev", WS)
    assert len(h) == 32 and h == compute_app_hash(b"prev", list(WS))
    assert compute_app_hash(prev, write_set) != h


def test_app_hash_sees_a_one_quantum_difference_between_two_blocks(tmp_path):
    """Two chains, same txs but 5 vs 6 quantums sent: same keys written, one byte of two values differs."""
    a, b = Replica(tmp_path / "a"), Replica(tmp_path / "b")
    assert a.init_chain() == b.init_chain()
    assert a.block([]).app_hash == b.block([]).app_hash
    ra, rb = a.block([send_tx(1, 2, 5, 1)]), b.block([send_tx(1, 2, 6, 1)])
    assert [r.code for r in ra.tx_results] == [r.code for r in rb.tx_results] == [0]
    assert [k for k, _ in a.store.iterate(b"\x01", None)] == [k for k, _ in b.store.iterate(b"\x01", None)]
    assert ra.app_hash != rb.app_hash
    a.close()
    b.close()


def test_a_commit_that_fails_midway_writes_nothing(tmp_path):
    """One LevelDB batch per block, written as a transaction: all of block H or none of it."""
    store = LevelDBStore(tmp_path / "db")
    store.commit([(b"\x01a", b"1")], 1, b"h1")
    with pytest.raises(TypeError):
        store.commit([(b"\x01a", b"2"), (b"\x01b", "not bytes")], 2, b"h2")  # type: ignore[list-item]
    store.close()
    store = LevelDBStore(tmp_path / "db")
    assert (store.last_height(), store.last_app_hash(), store.get(b"\x01a")) == (1, b"h1", b"1")
    store.close()


reads_and_commits = st.lists(st.one_of(
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("commit"), st.dictionaries(keys, st.one_of(st.none(), st.binary(min_size=1, max_size=3)),
                                                 max_size=4))), max_size=40)


@settings(max_examples=150, deadline=None)
@given(steps=reads_and_commits, cache_entries=st.sampled_from([1, 2, 3, 1 << 18]))
def test_the_read_cache_always_answers_the_committed_value(tmp_path_factory, steps, cache_entries):
    """Cached values and cached absences follow every commit (sets and deletes), also when the cache is full and
    starts over."""
    db = LevelDBStore(tmp_path_factory.mktemp("db"), cache_entries=cache_entries)
    model: dict[bytes, bytes] = {}
    height = 0
    for op, arg in steps:
        if op == "get":
            assert db.get(arg) == model.get(arg)
        else:
            height += 1
            db.commit(sorted(arg.items()), height, b"h")
            for k, v in arg.items():
                if v is None:
                    model.pop(k, None)
                else:
                    model[k] = v
        assert len(db._cache) <= cache_entries
    for k in model:
        assert db.get(k) == model[k]
    db.close()


def test_a_failed_commit_leaves_the_read_cache_at_the_last_block(tmp_path):
    store = LevelDBStore(tmp_path / "db")
    store.commit([(b"\x01a", b"1")], 1, b"h1")
    assert store.get(b"\x01a") == b"1" and store.get(b"\x01b") is None  # both cached now
    with pytest.raises(TypeError):
        store.commit([(b"\x01a", b"2"), (b"\x01b", "not bytes")], 2, b"h2")  # type: ignore[list-item]
    assert (store.get(b"\x01a"), store.get(b"\x01b")) == (b"1", None)
    store.commit([(b"\x01a", None), (b"\x01b", b"3")], 2, b"h2")
    assert (store.get(b"\x01a"), store.get(b"\x01b")) == (None, b"3")
    store.close()


def test_write_set_follows_every_write_after_being_asked(tmp_path):
    """write_set() is sorted once and kept: a set, a delete or a child branch written into it must show."""
    db = LevelDBStore(tmp_path / "db")
    block = BranchStore(db)
    block.set(b"\x01b", b"2")
    assert block.write_set() == [(b"\x01b", b"2")]
    block.set(b"\x01a", b"1")
    assert block.write_set() == [(b"\x01a", b"1"), (b"\x01b", b"2")]
    block.delete(b"\x01b")
    assert block.write_set() == [(b"\x01a", b"1"), (b"\x01b", None)]
    child = BranchStore(block)
    child.set(b"\x01c", b"3")
    assert child.write_set() == [(b"\x01c", b"3")]
    child.write()
    assert child.write_set() == []
    assert block.write_set() == [(b"\x01a", b"1"), (b"\x01b", None), (b"\x01c", b"3")]
    db.close()
