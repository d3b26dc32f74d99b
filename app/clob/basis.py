"""The order book's basis for the mark price (app/prices/expected.py BasisSource): book mid minus oracle.

mid = ⌊(best bid + best ask) ÷ 2⌋ subticks, converted to the oracle's price units (price = subticks ÷
10^(exponent − QCE + atomic_resolution + 6), floor; the inverse of dYdX PriceToSubticks); None when the pair has
no two-sided book. The prices module smooths and clamps it (mark_basis_smoothing_ppm, mark_basis_clamp_ppm), so a
thin or manipulated book moves the mark by at most the clamp, and only gradually. The book is the one the block
starts from (committed state).
"""

from __future__ import annotations

from app.clob import keeper
from app.clob.book import Books, mid_subticks
from app.lib.math import Rounding, div_round
from app.perpetuals import keeper as perpetuals_keeper
from app.prices import keeper as prices_keeper
from app.store import CommittedReader


class BookBasis:
    """BasisSource for one block: maps each oracle market to its clob pair once, then answers per market.

    An oracle market has one mark price. When several perpetuals use the same oracle market, the book of the lowest
    clob pair id (the first listed) drives it: a perpetual listed later on that market cannot steer an existing
    market's mark with its own book (the later ones share the mark; their books do not move it)."""

    def __init__(self, books: Books, store: CommittedReader) -> None:
        self._books = books
        self._pairs: dict[int, tuple[int, int]] = {}  # market id -> (clob pair id, price->subticks exponent)
        for pair in keeper.iter_pairs(store):  # ascending clob pair id
            perp = perpetuals_keeper.get_perpetual(store, pair.perpetual_id)
            if perp.market_id in self._pairs:
                continue
            param = prices_keeper.get_market_param_or_none(store, perp.market_id)
            if param is not None:
                self._pairs[perp.market_id] = (pair.id, param.exponent - pair.quantum_conversion_exponent
                                               + perp.atomic_resolution + 6)

    def __call__(self, store: CommittedReader, market_id: int, oracle_price: int) -> int | None:
        entry = self._pairs.get(market_id)
        if entry is None:
            return None
        pair_id, x = entry
        mid = mid_subticks(self._books, pair_id)
        if mid is None:
            return None
        price = div_round(mid, 10**x, Rounding.FLOOR) if x >= 0 else mid * 10 ** abs(x)
        return price - oracle_price
