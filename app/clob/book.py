"""The in-memory order book: an index of the resting orders in state, by pair, side, price and time.

Not a second source of truth: the orders (sizes, owners, ...) live in state; this index only orders their keys
for matching (price, then placement sequence). It is rebuilt from the store by :func:`rebuild` (start-up and
tests call the same function), and every change inside a block is journaled so a failed action, a repeated
FinalizeBlock or a discarded block rolls the index back exactly (the restarting replica of the determinism
harness checks that a rebuilt book gives the same app hashes).

Deterministic by construction: prices are kept in a sorted list (bisect), each level is a list sorted by
sequence, nothing iterates a set.
"""

from __future__ import annotations

import bisect

from perpchain.v1 import exchange_pb2

from app.clob import keys
from app.store import CommittedReader, prefix_end

BUY = exchange_pb2.SIDE_BUY
SELL = exchange_pb2.SIDE_SELL


class SideBook:
    """One side of one pair: ascending price list and price -> [(sequence, order key)] ascending by sequence."""

    __slots__ = ("prices", "levels")

    def __init__(self) -> None:
        self.prices: list[int] = []
        self.levels: dict[int, list[tuple[int, bytes]]] = {}

    def insert(self, price: int, seq: int, okey: bytes) -> None:
        level = self.levels.get(price)
        if level is None:
            bisect.insort(self.prices, price)
            level = self.levels[price] = []
        if not level or level[-1][0] < seq:
            level.append((seq, okey))
        else:
            bisect.insort(level, (seq, okey))

    def remove(self, price: int, seq: int, okey: bytes) -> None:
        level = self.levels[price]
        i = bisect.bisect_left(level, (seq, okey))
        if i >= len(level) or level[i] != (seq, okey):
            raise KeyError(okey)
        del level[i]
        if not level:
            del self.levels[price]
            del self.prices[bisect.bisect_left(self.prices, price)]


class PairBook:
    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids = SideBook()
        self.asks = SideBook()

    def side(self, side: int) -> SideBook:
        return self.bids if side == BUY else self.asks

    def best_price(self, side: int) -> int | None:
        """Best resting price of ``side`` (highest bid, lowest ask)."""
        prices = self.side(side).prices
        if not prices:
            return None
        return prices[-1] if side == BUY else prices[0]

    def levels_from_best(self, side: int):
        """(price, level) from the best price outward (a snapshot of the price list)."""
        s = self.side(side)
        prices = list(reversed(s.prices)) if side == BUY else list(s.prices)
        for price in prices:
            level = s.levels.get(price)
            if level:
                yield price, level


class Books:
    """Every pair's book plus a key index, open-order counts per subaccount and pair and per subaccount and order kind
    (the equity-tier caps), with an undo journal."""

    def __init__(self) -> None:
        self.pairs: dict[int, PairBook] = {}
        self.index: dict[bytes, tuple[int, int, int, int]] = {}  # order key -> (pair, side, price, seq)
        self.open_counts: dict[bytes, int] = {}  # order key[:25] (owner, number, pair) -> resting orders
        self.kind_counts: dict[bytes, int] = {}  # order key[:21] + flags byte (owner, number, kind) -> resting orders
        self._journal: list[tuple] = []

    def pair(self, clob_pair_id: int) -> PairBook:
        book = self.pairs.get(clob_pair_id)
        if book is None:
            book = self.pairs[clob_pair_id] = PairBook()
        return book

    def add(self, okey: bytes, clob_pair_id: int, side: int, price: int, seq: int) -> None:
        self._add(okey, clob_pair_id, side, price, seq)
        self._journal.append(("add", okey))

    def remove(self, okey: bytes) -> None:
        entry = self._remove(okey)
        self._journal.append(("remove", okey, *entry))

    def _add(self, okey: bytes, clob_pair_id: int, side: int, price: int, seq: int) -> None:
        if okey in self.index:
            raise KeyError(f"order {okey.hex()} already in the book")
        self.pair(clob_pair_id).side(side).insert(price, seq, okey)
        self.index[okey] = (clob_pair_id, side, price, seq)
        group = okey[:25]
        self.open_counts[group] = self.open_counts.get(group, 0) + 1
        kind = okey[:21] + okey[29:]
        self.kind_counts[kind] = self.kind_counts.get(kind, 0) + 1

    def _remove(self, okey: bytes) -> tuple[int, int, int, int]:
        entry = self.index.pop(okey)
        clob_pair_id, side, price, seq = entry
        self.pair(clob_pair_id).side(side).remove(price, seq, okey)
        group = okey[:25]
        left = self.open_counts[group] - 1
        if left:
            self.open_counts[group] = left
        else:
            del self.open_counts[group]
        kind = okey[:21] + okey[29:]
        left = self.kind_counts[kind] - 1
        if left:
            self.kind_counts[kind] = left
        else:
            del self.kind_counts[kind]
        return entry

    def open_count(self, owner: bytes, number: int, clob_pair_id: int) -> int:
        return self.open_counts.get(owner + bytes((number,)) + clob_pair_id.to_bytes(4, "big"), 0)

    def kind_count(self, owner: bytes, number: int, order_flags: int) -> int:
        """Resting orders of one subaccount with these flags (short-term or long-term), over every pair."""
        return self.kind_counts.get(owner + bytes((number, order_flags)), 0)

    # --- journal ------------------------------------------------------------------------------------------------
    def mark(self) -> int:
        return len(self._journal)

    def rollback(self, mark: int = 0) -> None:
        """Undo every change after ``mark`` (newest first)."""
        while len(self._journal) > mark:
            op = self._journal.pop()
            if op[0] == "add":
                self._remove(op[1])
            else:
                self._add(op[1], *op[2:])

    def commit(self) -> None:
        """The block was committed: its changes become the book's base state."""
        self._journal.clear()

    def has_uncommitted(self) -> bool:
        return bool(self._journal)


def rebuild(store: CommittedReader) -> Books:
    """The book of the given state: every stored order, by pair, side, price and sequence."""
    books = Books()
    n = len(keys.ORDER_PREFIX)
    for key, raw in store.iterate(keys.ORDER_PREFIX, prefix_end(keys.ORDER_PREFIX)):
        order = exchange_pb2.Order.FromString(raw)
        books._add(key[n:], order.clob_pair_id, order.side, order.subticks, order.sequence)
    return books


def mid_subticks(books: Books, clob_pair_id: int) -> int | None:
    """⌊(best bid + best ask) ÷ 2⌋ in subticks, or None when a side is empty."""
    book = books.pairs.get(clob_pair_id)
    if book is None:
        return None
    bid, ask = book.best_price(BUY), book.best_price(SELL)
    if bid is None or ask is None:
        return None
    return (bid + ask) >> 1  # floor of the mid (both non-negative)
