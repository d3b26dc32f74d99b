"""The book basis of the mark price (app/clob/basis.py) for both signs of the subticks -> price exponent
x = exponent - QCE + atomic_resolution + 6 (the exchange's test markets all have x = 0, where both branches agree):
behaviours pinned after its mutation run (docs/mutation.md). Numbers by hand."""

from __future__ import annotations

import pytest

from app.clob.basis import BookBasis
from app.clob.book import BUY, SELL, Books
from tests.attack_helpers import app_state
from tests.exchange_helpers import BTC
from tests.mutation_helpers import mem_exchange


def basis_for(x: int) -> BookBasis:
    """A BookBasis over a chain whose BTC pair (oracle exponent -5, atomic resolution -10) has the quantum conversion
    exponent that makes x = -5 - QCE - 10 + 6, i.e. QCE = -9 - x; its book: best bid 1 000 050, best ask 1 000 150
    subticks (mid 1 000 100). The market -> (pair, x) mapping is derived from the chain's committed state."""
    state = app_state()
    (pair,) = [p for p in state["clob"]["clob_pairs"] if p["id"] == BTC]
    pair["quantum_conversion_exponent"] = -9 - x
    r = mem_exchange(state)
    books = Books()
    books._add(b"b" * 30, BTC, BUY, 1_000_050, 1)
    books._add(b"a" * 30, BTC, SELL, 1_000_150, 2)
    return BookBasis(books, store=r.store)


@pytest.mark.parametrize("x, oracle, expected", [
    (2, 10_000, 1),  # price = floor(1 000 100 / 10^2) = 10 001; basis = 10 001 - 10 000
    (3, 1_000, 0),  # floor(1 000 100 / 10^3) = 1 000 (rounded down)
    (-3, 1_000_000_000, 100_000),  # price = 1 000 100 x 10^3 = 1 000 100 000
    (0, 1_000_000, 100),  # price = mid
])
def test_basis_is_the_mid_in_oracle_units_minus_the_oracle_price(x, oracle, expected):
    assert basis_for(x)(None, BTC, oracle) == expected


def test_no_basis_for_an_unmapped_market():
    assert basis_for(0)(None, 99, 1) is None
