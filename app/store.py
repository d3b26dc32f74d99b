"""Key-value state, branches and the app hash.

State is a flat, ordered key space. Each module owns one key prefix (one
byte, listed in :data:`MODULE_PREFIXES`) and is its only writer. Prefix
``0x00`` is reserved for the node's commit metadata.

Layers, from the bottom:
- the committed store (LevelDB, implemented in ``node/storage``) behind the
  :class:`CommittedReader` protocol;
- a block branch (:class:`BranchStore`) holding one block's writes;
- per-tx branches over the block branch: written through on success,
  discarded on an :class:`~app.errors.AppError`.

The app hash is defined only here (:func:`compute_app_hash`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

from app.lib.encoding import uvarint

# One byte per module. Append-only; never reuse a retired byte.
PREFIX_META = b"\x00"  # reserved for node/storage commit metadata
PREFIX_BANK = b"\x01"
PREFIX_AUTH = b"\x02"
PREFIX_CONSENSUS = b"\x03"
PREFIX_PRICES = b"\x04"
PREFIX_PERPETUALS = b"\x05"
PREFIX_SUBACCOUNTS = b"\x06"
PREFIX_CLOB = b"\x07"

MODULE_PREFIXES = {
    "bank": PREFIX_BANK,
    "auth": PREFIX_AUTH,
    "consensus": PREFIX_CONSENSUS,
    "prices": PREFIX_PRICES,
    "perpetuals": PREFIX_PERPETUALS,
    "subaccounts": PREFIX_SUBACCOUNTS,
    "clob": PREFIX_CLOB,
}


class CommittedReader(Protocol):
    """Read access to committed state, in key order."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Ascending (key, value) pairs with start <= key < end (end None = unbounded)."""
        ...


class CommitStore(CommittedReader, Protocol):
    """Committed state plus the atomic commit of one block (node/storage implements it)."""

    def last_height(self) -> int: ...

    def last_app_hash(self) -> bytes: ...

    def commit(self, writes: list[tuple[bytes, bytes | None]], height: int, app_hash: bytes) -> None:
        """Apply a sorted write-set with the height and app hash, atomically and durably."""
        ...


def prefix_end(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key starting with ``prefix`` (None if unbounded)."""
    b = bytearray(prefix)
    while b:
        if b[-1] != 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return None


class BranchStore:
    """A copy-on-write layer over a parent store; ``write()`` pushes writes down.

    Deletions are recorded as ``None`` so they shadow the parent's value.
    """

    __slots__ = ("_parent", "_writes", "_sorted")

    def __init__(self, parent: CommittedReader) -> None:
        self._parent = parent
        self._writes: dict[bytes, bytes | None] = {}
        self._sorted: list[tuple[bytes, bytes | None]] | None = None  # write_set() until the next write

    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._parent.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        if not key or key[:1] == PREFIX_META:
            raise ValueError("state keys must carry a module prefix")
        self._writes[key] = value
        self._sorted = None

    def delete(self, key: bytes) -> None:
        self._writes[key] = None
        self._sorted = None

    def iterate(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Merge of this branch's writes and the parent's keys, ascending, deletions hidden."""
        mine = sorted(k for k in self._writes if k >= start and (end is None or k < end))
        parent_iter = self._parent.iterate(start, end)
        pk, pv = next(parent_iter, (None, None))
        i = 0
        while pk is not None or i < len(mine):
            if i < len(mine) and (pk is None or mine[i] <= pk):
                k = mine[i]
                i += 1
                if pk == k:
                    pk, pv = next(parent_iter, (None, None))
                v = self._writes[k]
                if v is not None:
                    yield k, v
            else:
                yield pk, pv
                pk, pv = next(parent_iter, (None, None))

    def iterate_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.iterate(prefix, prefix_end(prefix))

    def write(self) -> None:
        """Push this branch's writes into its parent branch."""
        parent = self._parent
        if not isinstance(parent, BranchStore):
            raise TypeError("only a branch over a branch can be written through")
        parent._writes.update(self._writes)
        parent._sorted = None
        self._writes = {}
        self._sorted = None

    def write_set(self) -> list[tuple[bytes, bytes | None]]:
        """This branch's writes sorted by key (None = delete); sorted once however often a block asks (invariant
        checks, app hash, commit). The list is shared: do not change it."""
        if self._sorted is None:
            self._sorted = sorted(self._writes.items())
        return self._sorted

    def parent_value(self, key: bytes) -> bytes | None:
        return self._parent.get(key)

    def parent_store(self) -> CommittedReader:
        """What this branch is layered on (read-only use: comparing a block's state with the one before)."""
        return self._parent

    def __len__(self) -> int:
        return len(self._writes)


def compute_app_hash(prev_app_hash: bytes, write_set: list[tuple[bytes, bytes | None]]) -> bytes:
    """H(prev_app_hash || H(sorted write-set)), sha256.

    Each entry is encoded as uvarint(len(key)) key flag [uvarint(len(value)) value]
    with flag 0x01 for a set and 0x00 for a delete, so the encoding is injective.
    O(changes), and a divergence shows up at the exact block where it happened.
    """
    parts: list[bytes] = []  # hashed in one update: the digest of the concatenation, with fewer calls
    append = parts.append
    for key, value in write_set:
        append(uvarint(len(key)))
        append(key)
        if value is None:
            append(b"\x00")
        else:
            append(b"\x01")
            append(uvarint(len(value)))
            append(value)
    inner = hashlib.sha256(b"".join(parts)).digest()
    return hashlib.sha256(prev_app_hash + inner).digest()
