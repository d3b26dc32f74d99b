"""BranchStore against a dict model, and the app-hash definition."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.store import BranchStore, compute_app_hash, prefix_end
from node.storage.leveldb import LevelDBStore

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


def test_app_hash_depends_on_every_part():
    ws = [(b"\x01a", b"1"), (b"\x01b", None)]
    h = compute_app_hash(b"prev", ws)
    assert h == compute_app_hash(b"prev", list(ws))
    assert h != compute_app_hash(b"prev2", ws)
    assert h != compute_app_hash(b"prev", [(b"\x01a", b"1"), (b"\x01b", b"")])  # delete != empty value
    assert h != compute_app_hash(b"prev", [(b"\x01a1", None)])  # framing is injective
    assert len(h) == 32


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
