"""What prices needs from modules above it (declared here, implemented there)."""

from __future__ import annotations

from typing import Protocol

from app.store import CommittedReader


class BasisSource(Protocol):
    """The order book's view of a market's basis: impact mid minus oracle, in price units, or None.

    Until the order book exists (#4) there is no source and the basis EMA decays to 0, so mark = oracle.
    """

    def __call__(self, store: CommittedReader, market_id: int, oracle_price: int) -> int | None: ...


def no_basis(store: CommittedReader, market_id: int, oracle_price: int) -> int | None:
    return None
