"""Stored form of a subaccount (app/subaccounts/state.py): the spliced encoding of an updated copy is byte-identical
to a full encoding, whatever positions changed (opened, grown, closed, funding-settled), and the bytes are exactly the
documented layout."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from app.subaccounts import keeper
from app.subaccounts.state import Position, SubaccountState, decode_subaccount, encode_subaccount
from app.subaccounts.state import _encode_full, _splice


def test_layout_is_big_endian_header_then_positions_sorted_by_perpetual():
    sub = SubaccountState(-5, {7: Position(7, -3, 11, 4), 2: Position(2, 9, -1, 0)})
    want = (struct.pack(">q", -5) + struct.pack(">IqqQ", 2, 9, -1, 0) + struct.pack(">IqqQ", 7, -3, 11, 4))
    assert encode_subaccount(sub) == want


def test_splice_writes_the_header_and_every_kind_of_change():
    base = decode_subaccount(encode_subaccount(SubaccountState(100, {1: Position(1, 5, 0, 50), 3: Position(3, -2, 0, 20),
                                                                      9: Position(9, 1, 0, 10)})))
    after = base.copy()
    after.quote_balance_quote_quantums = 7
    keeper.apply_position_delta(after, 3, 0, 2, 0)  # closes 3
    keeper.apply_position_delta(after, 5, 0, -4, 40)  # opens 5 between 3 and 9
    keeper.apply_position_delta(after, 0, 0, 6, -60)  # opens 0 before everything
    keeper.apply_position_delta(after, 9, 0, 1, -10)  # grows the last one
    keeper.apply_position_delta(after, 12, 0, 1, -10)  # opens after the last one
    want = (struct.pack(">q", 7) + struct.pack(">IqqQ", 0, 6, 0, 60) + struct.pack(">IqqQ", 1, 5, 0, 50)
            + struct.pack(">IqqQ", 5, -4, 0, 40) + struct.pack(">IqqQ", 9, 2, 0, 20)
            + struct.pack(">IqqQ", 12, 1, 0, 10))
    assert encode_subaccount(after) == want
    assert _splice(after) == want  # 3 positions: encode_subaccount encodes in full; the splice must agree
    assert base.raw == encode_subaccount(SubaccountState(100, {1: Position(1, 5, 0, 50), 3: Position(3, -2, 0, 20),
                                                               9: Position(9, 1, 0, 10)}))


def test_funding_settled_positions_are_rewritten():
    """prepare() settles a freshly decoded state in place: the new funding indexes must reach the stored bytes."""
    from app.perpetuals.keeper import MarginView

    class View(MarginView):
        def __init__(self):
            super().__init__(None)

        def info(self, pid):
            return type("I", (), {"funding_index": 1_000 if pid == 4 else 0})()

    sub = decode_subaccount(encode_subaccount(SubaccountState(0, {4: Position(4, 10, 0, 0), 6: Position(6, 1, 0, 0)})))
    from app.subaccounts.state import SubaccountId

    keeper.settle_funding(None, SubaccountId(b"\x01" * 20, 0), sub, View())
    after = sub.copy()
    got = decode_subaccount(_splice(after))
    assert _splice(after) == encode_subaccount(after)
    assert got.positions[4].funding_index == 1_000
    assert got.positions[6].funding_index == 0


_pos = st.builds(lambda size, index, entry: (size, index, entry),
                 st.integers(-2**40, 2**40).filter(bool), st.integers(-2**40, 2**40), st.integers(0, 2**40))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(st.integers(0, 40), _pos, max_size=20), st.integers(-2**50, 2**50),
       st.lists(st.tuples(st.integers(0, 40), st.integers(-2**20, 2**20), st.integers(-2**20, 2**20)), max_size=12),
       st.integers(-2**50, 2**50), st.booleans())
def test_splice_equals_full_encoding(positions, quote, deltas, new_quote, copy_twice):
    base = decode_subaccount(encode_subaccount(SubaccountState(
        quote, {pid: Position(pid, s, i, e) for pid, (s, i, e) in positions.items()})))
    after = base.copy()
    for pid, size_delta, quote_delta in deltas:
        if size_delta:
            keeper.apply_position_delta(after, pid, 3, size_delta, quote_delta)
        if copy_twice:
            after = after.copy()
    after.quote_balance_quote_quantums = new_quote
    assert encode_subaccount(after) == _encode_full(after)
    assert _splice(after) == _encode_full(after)  # whatever the sizes: the splice alone agrees too


def _spy(monkeypatch) -> list[str]:
    """Records which encoder encode_subaccount chose (the bytes are the same either way; the choice is the speed)."""
    from app.subaccounts import state

    used: list[str] = []
    splice, full = state._splice, state._encode_full
    monkeypatch.setattr(state, "_splice", lambda sub: used.append("splice") or splice(sub))
    monkeypatch.setattr(state, "_encode_full", lambda sub: used.append("full") or full(sub))
    return used


def _decoded(n_positions: int) -> SubaccountState:
    return decode_subaccount(encode_subaccount(SubaccountState(
        1, {pid: Position(pid, 10 + pid, 0, 5) for pid in range(n_positions)})))


def test_a_long_subaccount_with_few_changes_is_spliced_a_short_one_or_many_changes_in_full(monkeypatch):
    """encode_subaccount's rule (state.py: splice for >= 8 positions and <= 8 changes): 8 positions with 8 distinct
    changes are spliced; 7 positions, 9 changes, or a state that was never decoded are encoded in full."""
    used = _spy(monkeypatch)
    for n_positions, n_changes, want in ((8, 8, "splice"), (8, 1, "splice"), (7, 1, "full"), (9, 9, "full")):
        after = _decoded(n_positions).copy()
        for pid in range(n_changes):
            keeper.apply_position_delta(after, pid, 0, 1, -1)
        used.clear()
        got = encode_subaccount(after)
        assert used == [want], (n_positions, n_changes)
        assert got == _encode_full(after)
    decoded = _decoded(9)
    used.clear()
    encode_subaccount(decoded)  # not a copy: its bytes are its own, encoded in full
    assert used == ["full"]


def test_a_copy_forgets_repeated_changes_so_a_busy_subaccount_is_still_spliced(monkeypatch):
    """SubaccountState.copy keeps the list of changed positions as is up to 8 entries and de-duplicates a longer one:
    a subaccount changed 12 times in two markets (a market maker filled again and again) has 2 changes after a
    copy, so the next copy's encoding still splices."""
    used = _spy(monkeypatch)
    sub = _decoded(10).copy()
    for i in range(12):
        keeper.apply_position_delta(sub, i % 2, 0, 1, -1)
    again = sub.copy()
    assert again.changed == [0, 1]
    keeper.apply_position_delta(again, 5, 0, 1, -1)
    used.clear()
    assert encode_subaccount(again) == _encode_full(again)
    assert used == ["splice"]
