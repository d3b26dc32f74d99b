"""The memos of app/subaccounts/keeper (prepare, compute_risk, _uncapped_sums, _position_risk) do the work their
docstrings promise: a subaccount prepared twice in one view is decoded and settled once (its funding events reported
both times); a state decoded from bytes already seen in the view costs no position computation, a copy changed in one
perpetual recomputes that position only (old and new size: O(1) per fill, not O(positions)), and one (perpetual,
size, open interest) is priced once per view. Counted calls, not timings; the values are worked out by hand.

Markets (tests/exchange_helpers): BTC $64,000 (atomic resolution -10), ETH $3,000 (-9), both Large-Cap: IMF 5 %,
maintenance 60 % of it, no open-interest scaling.
"""

from __future__ import annotations

import pytest

from app.lib.address import decode_address_or_none as decode_address
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals import logic as perp_logic
from app.perpetuals.keeper import MarginView
from app.store import BranchStore
from app.subaccounts import keeper
from app.subaccounts.state import Position, SubaccountId, SubaccountState, decode_subaccount, encode_subaccount
from tests.exchange_helpers import BTC, ETH, ONE_BTC
from tests.helpers import ADDRS
from tests.mutation_helpers import mem_exchange

ONE_ETH = 10**9
USDC = 10**6
QUOTE = -5_000 * USDC


@pytest.fixture()
def store():
    return mem_exchange().store


def _raw(quote: int = QUOTE) -> bytes:
    return encode_subaccount(SubaccountState(quote, {BTC: Position(BTC, ONE_BTC // 10, 0, 6_400 * USDC),
                                                     ETH: Position(ETH, 2 * ONE_ETH, 0, 6_000 * USDC)}))


@pytest.fixture()
def calls(monkeypatch):
    """(perpetual, size) of every keeper._position_risk call."""
    seen = []
    real = keeper._position_risk

    def spy(view, pid, size, oi):
        seen.append((pid, size))
        return real(view, pid, size, oi)

    monkeypatch.setattr(keeper, "_position_risk", spy)
    return seen


def _risk(r) -> tuple[int, int, int]:
    return r.net_collateral_quote_quantums, r.initial_margin_quote_quantums, r.maintenance_margin_quote_quantums


# 0.1 BTC = $6,400: IM $320, MM $192; 2 ETH = $6,000: IM $300, MM $180; quote -$5,000.
HAND = (-5_000 * USDC + 6_400 * USDC + 6_000 * USDC, 620 * USDC, 372 * USDC)


def test_a_state_decoded_from_bytes_already_priced_in_the_view_costs_no_position(store, calls):
    view = MarginView(store)
    raw = _raw()
    assert _risk(keeper.compute_risk(store, decode_subaccount(raw), None, view)) == HAND
    assert calls == [(BTC, ONE_BTC // 10), (ETH, 2 * ONE_ETH)]
    calls.clear()
    assert _risk(keeper.compute_risk(store, decode_subaccount(raw), None, view)) == HAND  # another decoding
    assert calls == []


def test_a_copy_changed_in_one_perpetual_recomputes_that_position_only(store, calls):
    view = MarginView(store)
    parent = decode_subaccount(_raw())
    keeper.compute_risk(store, parent, None, view)
    calls.clear()
    child = parent.copy()
    # buys 0.0001 BTC for $6.40: BTC 0.1001 = $6,406.40, IM $320.32, MM $192.192
    keeper.apply_position_delta(child, BTC, 0, ONE_BTC // 10_000, -6_400_000)
    child.quote_balance_quote_quantums -= 6_400_000
    assert _risk(keeper.compute_risk(store, child, None, view)) == (
        -5_006_400_000 + 6_406_400_000 + 6_000 * USDC, 620_320_000, 372_192_000)
    assert calls == [(BTC, ONE_BTC // 10), (BTC, ONE_BTC // 10 + ONE_BTC // 10_000)]  # the old and the new BTC
    calls.clear()
    # A copy of the copy (the next fill of the same subaccount) starts from the copy's sums: sells 1 ETH for $3,000,
    # ETH 1 = $3,000, IM $150, MM $90.
    grandchild = child.copy()
    keeper.apply_position_delta(grandchild, ETH, 0, -ONE_ETH, 3_000 * USDC)
    grandchild.quote_balance_quote_quantums += 3_000 * USDC
    assert _risk(keeper.compute_risk(store, grandchild, None, view)) == (
        -2_006_400_000 + 6_406_400_000 + 3_000 * USDC, 470_320_000, 282_192_000)
    assert calls == [(ETH, 2 * ONE_ETH), (ETH, ONE_ETH)]


def test_one_position_is_priced_once_per_view(store, monkeypatch):
    priced = []
    real = perp_logic.position_risk

    def spy(size, *args):
        priced.append(size)
        return real(size, *args)

    monkeypatch.setattr(perp_logic, "position_risk", spy)
    view = MarginView(store)
    assert _risk(keeper.compute_risk(store, decode_subaccount(_raw()), None, view)) == HAND
    assert priced == [ONE_BTC // 10, 2 * ONE_ETH]
    # Other bytes (another quote balance), the same positions: nothing priced again.
    assert _risk(keeper.compute_risk(store, decode_subaccount(_raw(QUOTE + USDC)), None, view)) == (
        HAND[0] + USDC, HAND[1], HAND[2])
    assert priced == [ONE_BTC // 10, 2 * ONE_ETH]


def test_a_subaccount_prepared_twice_in_one_view_is_decoded_and_settled_once(store, monkeypatch):
    """Account 1 holds 0.1 BTC long entered at index 0; BTC's funding index is 5 (quote quantums per base quantum ×
    1e6 in dYdX's units): funding ⌊-(5 - 0) × 1e9 ÷ 1e6⌋ = -5,000 quote quantums, one event. A second prepare in the
    same view decodes nothing and reports the same delta and event (each prepared update persists its own)."""
    branch = BranchStore(store)
    sid = SubaccountId(decode_address(ADDRS[1]), 0)
    keeper.set_subaccount(branch, sid, SubaccountState(QUOTE, {BTC: Position(BTC, ONE_BTC // 10, 0, 6_400 * USDC)}))
    perpetuals_keeper.set_funding_index(branch, BTC, 5)
    decoded = []
    real = keeper.decode_subaccount
    monkeypatch.setattr(keeper, "decode_subaccount", lambda raw: decoded.append(raw) or real(raw))
    view = MarginView(branch)
    first = keeper.prepare(branch, sid, view)
    second = keeper.prepare(branch, sid, view)
    assert len(decoded) == 1
    for prep in (first, second):
        assert prep.funding_delta == -5_000
        assert [e.type for e in prep.funding_events] == ["funding_settlement"]
        assert prep.before.quote_balance_quote_quantums == QUOTE - 5_000
        assert prep.before.positions[BTC].funding_index == 5
    other = keeper.prepare(branch, SubaccountId(decode_address(ADDRS[2]), 0), view)  # another subaccount: decoded
    assert other.before.quote_balance_quote_quantums == 100_000 * USDC
    assert len(decoded) == 2
