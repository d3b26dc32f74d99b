"""clob tx handlers (app/clob/handlers.py): behaviours pinned after its mutation run (docs/mutation.md, issue #9):
the exact refusal of a malformed MsgOrders, and the exact messages of clob-pair and perpetual validation (the
authority's MsgCreatePerpetual and genesis go through them)."""

from __future__ import annotations

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app.clob import handlers
from app.errors import ERR_INVALID_ADDRESS, ERR_INVALID_CLOB_PAIR, ERR_INVALID_ORDER, ERR_INVALID_PERPETUAL, AppError
from app.store import BranchStore
from tests.exchange_helpers import BTC, place
from tests.helpers import ADDRS
from tests.mutation_helpers import mem_exchange


def refusal(fn, *args) -> tuple[int, str]:
    """(code, log) of the AppError ``fn(*args)`` raises; the log is "<error name>: <message>"."""
    with pytest.raises(AppError) as e:
        fn(*args)
    return e.value.code, e.value.log


def expected(err, message: str) -> tuple[int, str]:
    return err.code, f"{err.name}: {message}"


def test_a_malformed_orders_message_is_refused_with_the_field_named():
    assert refusal(handlers.signers_orders, tx_pb2.MsgOrders(owner="nope", actions=[place(1, 1, 1, 1)])) == expected(
        ERR_INVALID_ADDRESS, "owner 'nope' is not a valid perp1... address")
    assert refusal(handlers.signers_orders, tx_pb2.MsgOrders(owner=ADDRS[1])) == expected(
        ERR_INVALID_ORDER, "MsgOrders carries no action")


@pytest.fixture
def store():
    return BranchStore(mem_exchange().store)


def new_market(**perp_fields) -> tuple[exchange_pb2.Perpetual, exchange_pb2.ClobPair]:
    """Perpetual and pair 50 on BTC's oracle market and tier 0, valid unless ``perp_fields`` break them."""
    perp = exchange_pb2.Perpetual(id=50, ticker="NEW-USD", market_id=BTC, atomic_resolution=-10, liquidity_tier=0,
                                  market_type=exchange_pb2.MARKET_TYPE_CROSS)
    for k, v in perp_fields.items():
        setattr(perp, k, v)
    pair = exchange_pb2.ClobPair(id=50, perpetual_id=50, step_base_quantums=1_000_000, subticks_per_tick=100_000,
                                 quantum_conversion_exponent=-9, status=exchange_pb2.CLOB_PAIR_STATUS_ACTIVE)
    return perp, pair


@pytest.mark.parametrize("fields, message", [
    ({"market_type": exchange_pb2.MARKET_TYPE_UNSPECIFIED}, "market_type must be cross or isolated"),
    ({"atomic_resolution": 31}, "atomic_resolution must be in -30..30 and the ticker set"),
    ({"ticker": ""}, "atomic_resolution must be in -30..30 and the ticker set"),
    ({"open_interest_base_quantums": 1}, "a new perpetual starts with open interest 0 and funding index 0"),
    ({"funding_index": -1}, "a new perpetual starts with open interest 0 and funding index 0"),
])
def test_a_new_perpetual_is_refused_with_its_reason(store, fields, message):
    assert refusal(handlers.create_perpetual, store, *new_market(**fields)) == expected(ERR_INVALID_PERPETUAL, message)


@pytest.mark.parametrize("fields, message", [
    ({"quantum_conversion_exponent": 31}, "quantum_conversion_exponent must be in -30..30"),
    ({"quantum_conversion_exponent": -31}, "quantum_conversion_exponent must be in -30..30"),
    ({"status": 0}, "status must be active, post-only, cancel-only or paused"),
    ({"status": 5}, "status must be active, post-only, cancel-only or paused"),
])
def test_a_clob_pair_is_refused_with_its_reason(store, fields, message):
    _, pair = new_market()
    pair.perpetual_id = BTC
    for k, v in fields.items():
        setattr(pair, k, v)
    assert refusal(handlers.validate_pair, store, pair) == expected(ERR_INVALID_CLOB_PAIR, message)
    pair.quantum_conversion_exponent, pair.status = 30, 4  # the bounds themselves are valid
    handlers.validate_pair(store, pair)
