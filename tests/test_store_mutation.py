"""app/store.py: branch edge cases and the app-hash encoding as golden vectors (issue #8).

The app hash is recomputed here by hand with hashlib from its definition in docs/state.md; a change of the encoding
that every replica makes alike is invisible to the "replicas agree" tests but not to these vectors.
"""

from __future__ import annotations

import hashlib

import pytest

from app.store import BranchStore, compute_app_hash, prefix_end


class DictStore:
    """A minimal committed store: a dict read in key order."""

    def __init__(self, items: dict[bytes, bytes] | None = None) -> None:
        self.items = dict(items or {})

    def get(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def iterate(self, start: bytes, end: bytes | None):
        for k in sorted(self.items):
            if start <= k and (end is None or k < end):
                yield k, self.items[k]


A, B, C, D = b"\x01a", b"\x01b", b"\x01c", b"\x01d"


@pytest.mark.parametrize(
    "prefix, expected",
    [
        pytest.param(b"\x01", b"\x02", id="one byte: incremented"),
        pytest.param(b"\x07\x00\xfe", b"\x07\x00\xff", id="only the last byte is incremented"),
        pytest.param(b"\x01\xff", b"\x02", id="a trailing 0xff is dropped and the byte before incremented"),
        pytest.param(b"\x01\xff\xff", b"\x02", id="several trailing 0xff are dropped"),
        pytest.param(b"\xff", None, id="all 0xff: unbounded"),
        pytest.param(b"", None, id="the empty prefix: unbounded"),
    ],
)
def test_prefix_end(prefix, expected):
    assert prefix_end(prefix) == expected


def _ops(*ops):
    return list(ops)


@pytest.mark.parametrize(
    "parent, ops, start, end, expected",
    [
        pytest.param({}, _ops(("set", A, b"1")), A, B, [(A, b"1")], id="a key written exactly at start is included"),
        pytest.param({}, _ops(("set", B, b"1")), A, B, [], id="a key written exactly at end is excluded"),
        pytest.param({}, _ops(("set", A, b"1")), B, None, [], id="a key written below start is excluded"),
        pytest.param({}, _ops(("set", A, b"1"), ("set", D, b"4")), A, None, [(A, b"1"), (D, b"4")],
                     id="end None is unbounded for the branch's own keys"),
        pytest.param({A: b"p"}, _ops(("set", A, b"b")), A, None, [(A, b"b")],
                     id="the branch overwrites the parent's last key: the parent runs out right there"),
        pytest.param({A: b"p", C: b"q"}, _ops(("set", A, b"b")), A, None, [(A, b"b"), (C, b"q")],
                     id="the branch overwrites a parent key that has a successor"),
        pytest.param({A: b"p", C: b"q"}, _ops(("set", B, b"2"), ("set", D, b"4")), A, None,
                     [(A, b"p"), (B, b"2"), (C, b"q"), (D, b"4")], id="parent and branch keys interleave in order"),
        pytest.param({B: b"p", D: b"q"}, _ops(("set", A, b"1"), ("set", C, b"3")), A, None,
                     [(A, b"1"), (B, b"p"), (C, b"3"), (D, b"q")], id="the branch's key comes first"),
        pytest.param({A: b"p", B: b"q"}, _ops(("delete", A)), A, None, [(B, b"q")], id="a deleted parent key is hidden"),
        pytest.param({A: b"p"}, _ops(("delete", B)), A, None, [(A, b"p")],
                     id="deleting a key the parent lacks shows nothing"),
        pytest.param({A: b"p", B: b"q", C: b"r"}, _ops(), B, C, [(B, b"q")], id="parent keys outside [start, end) are not read"),
        pytest.param({A: b"p"}, _ops(("set", B, b"")), A, None, [(A, b"p"), (B, b"")], id="an empty value is a value"),
        pytest.param({}, _ops(), A, None, [], id="nothing at all"),
    ],
)
def test_iterate_merges_branch_and_parent(parent, ops, start, end, expected):
    branch = BranchStore(DictStore(parent))
    for op in ops:
        if op[0] == "set":
            branch.set(op[1], op[2])
        else:
            branch.delete(op[1])
    assert list(branch.iterate(start, end)) == expected


def test_iterate_prefix_stays_inside_the_prefix():
    branch = BranchStore(DictStore({b"\x01\x00": b"x", b"\x01\xff\xff": b"y", b"\x02": b"z", b"\x00z": b"m"}))
    branch.set(b"\x01\x05", b"w")
    assert list(branch.iterate_prefix(b"\x01")) == [(b"\x01\x00", b"x"), (b"\x01\x05", b"w"), (b"\x01\xff\xff", b"y")]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(b"", id="the empty key"),
        pytest.param(b"\x00", id="the bare meta prefix"),
        pytest.param(b"\x00height", id="a key under the node's meta prefix"),
    ],
)
def test_set_refuses_keys_without_a_module_prefix(key):
    branch = BranchStore(DictStore())
    with pytest.raises(ValueError, match="^state keys must carry a module prefix$"):
        branch.set(key, b"1")
    assert branch.write_set() == []


def test_set_accepts_a_one_byte_module_key_and_keeps_the_value():
    branch = BranchStore(DictStore())
    branch.set(b"\x01", b"v")
    branch.set(b"\x07\x00", b"w")
    assert (branch.get(b"\x01"), branch.get(b"\x07\x00")) == (b"v", b"w")


def test_a_delete_shadows_the_parent_and_is_recorded_as_none():
    branch = BranchStore(DictStore({A: b"p"}))
    branch.delete(A)
    assert branch.get(A) is None
    assert branch.parent_value(A) == b"p"
    assert branch.write_set() == [(A, None)]
    assert len(branch) == 1


def test_parent_value_ignores_the_branch_own_write():
    branch = BranchStore(DictStore({A: b"old"}))
    branch.set(A, b"new")
    assert (branch.get(A), branch.parent_value(A), branch.parent_value(B)) == (b"new", b"old", None)


def test_write_pushes_into_the_parent_and_leaves_an_empty_usable_branch():
    block = BranchStore(DictStore({A: b"p"}))
    tx = BranchStore(block)
    tx.set(B, b"2")
    tx.delete(A)
    tx.write()
    assert block.write_set() == [(A, None), (B, b"2")]
    assert len(tx) == 0 and tx.write_set() == []
    assert tx.get(B) == b"2" and tx.get(A) is None  # reads now fall through to the parent
    tx.set(C, b"3")  # and the branch is still usable
    tx.write()
    assert block.write_set() == [(A, None), (B, b"2"), (C, b"3")]


def test_only_a_branch_over_a_branch_can_be_written_through():
    branch = BranchStore(DictStore())
    branch.set(A, b"1")
    with pytest.raises(TypeError, match="^only a branch over a branch can be written through$"):
        branch.write()
    assert branch.write_set() == [(A, b"1")]


def test_write_set_is_sorted_by_key():
    branch = BranchStore(DictStore())
    for k in (D, A, C):
        branch.set(k, k)
    branch.delete(B)
    assert branch.write_set() == [(A, A), (B, None), (C, C), (D, D)]


# --- app hash golden vectors (docs/state.md) -------------------------------------------------------------------
def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


LONG_KEY = b"\x01" + b"k" * 129  # 130 bytes: its length is the two-byte uvarint 0x82 0x01
LONG_VALUE = b"v" * 200  # 200 = 0x48 + 1*128: uvarint 0xc8 0x01


@pytest.mark.parametrize(
    "prev, write_set, encoded",
    [
        pytest.param(b"", [], b"", id="nothing written: sha256 of the empty string"),
        pytest.param(b"prev", [(b"\x01a", b"1")], b"\x02\x01a" + b"\x01" + b"\x011", id="one set"),
        pytest.param(b"prev", [(b"\x01b", None)], b"\x02\x01b" + b"\x00", id="one delete: flag 0x00, no value"),
        pytest.param(b"prev", [(b"\x01a", b"1"), (b"\x01b", None), (b"\x01c", b"\x00\x10\x20")],
                     b"\x02\x01a\x01\x011" + b"\x02\x01b\x00" + b"\x02\x01c\x01\x03\x00\x10\x20",
                     id="a set, a delete and a set in key order"),
        pytest.param(b"", [(b"\x01e", b"")], b"\x02\x01e\x01\x00", id="a set of the empty value: length 0"),
        pytest.param(b"h", [(LONG_KEY, LONG_VALUE)], b"\x82\x01" + LONG_KEY + b"\x01" + b"\xc8\x01" + LONG_VALUE,
                     id="lengths of 128 and more take two uvarint bytes"),
    ],
)
def test_app_hash_golden_vectors(prev, write_set, encoded):
    assert compute_app_hash(prev, write_set) == sha(prev + sha(encoded))
