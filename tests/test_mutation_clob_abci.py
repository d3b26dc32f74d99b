"""clob block phase (app/clob/abci.py): behaviours pinned after its mutation run (docs/mutation.md, issue #9): the
reason of an expiry, every order_action event naming its owner and the exact event of a cancel-replace whose cancel half
failed. In-memory chains (tests/mutation_helpers.mem_exchange).

Market BTC-USD as in tests/exchange_helpers.py: oracle $64,000, tick $1 = 100 000 subticks, step 0.0001 BTC = 10^6
base quantums.
"""

from __future__ import annotations

from perpchain.v1 import tx_pb2

from app import errors
from tests.exchange_helpers import (
    BTC,
    ONE_DOLLAR_BTC,
    SELL,
    actions_of,
    height_of,
    orders_tx,
    place,
)
from tests.helpers import ADDRS
from tests.mutation_helpers import mem_exchange

STEP = 1_000_000
P65K = 65_000 * ONE_DOLLAR_BTC


def test_an_order_that_expires_leaves_with_reason_expired():
    """A short-term ask good til block h+1 rests in block h+1 and leaves in block h+2 (good_til_block < height) with
    one block event order_removed, reason "expired", naming the order."""
    r = mem_exchange()
    h = height_of(r) + 1
    r.block([orders_tx(2, 1, [place(7, SELL, STEP, P65K, gtb=h + 1)])])
    r.block([])  # h+1: still on the book
    res = r.block([])  # h+2: gone
    removed = [dict(e.attributes) for e in res.events if e.type == "order_removed"]
    assert removed == [{"owner": ADDRS[2], "number": "0", "clob_pair_id": str(BTC), "client_id": "7",
                        "order_flags": "0", "remaining_quantums": str(STEP), "reason": "expired"}]


def test_every_order_action_event_names_its_owner_and_a_failed_cancel_half_skips_the_placement():
    """One tx of account 2: a resting ask (status resting), then a cancel-replace of an unknown order: its cancel half
    is rejected (order_not_found) and its placement half is skipped with the exact reason. Every order_action event
    names account 2 as owner; the skipped half lists the placement's attributes, with step "place"."""
    r = mem_exchange()
    h = height_of(r) + 1
    gone = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(client_id=99, clob_pair_id=BTC),
        place=tx_pb2.PlaceOrder(client_id=31, clob_pair_id=BTC, side=SELL, quantums=STEP, subticks=P65K,
                                good_til_block=h + 10)))
    res = r.block([orders_tx(2, 1, [place(1, SELL, STEP, P65K, height_hint=h), gone])])
    acts = actions_of(res.tx_results[0])
    assert [a["owner"] for a in acts] == [ADDRS[2]] * 3
    # phase order: the cancel half runs with the cancels, before both placements
    assert [(a["kind"], a.get("step"), a["status"]) for a in acts] == [
        ("cancel_replace", "cancel", "rejected"), ("place", None, "resting"), ("cancel_replace", "place", "skipped")]
    assert acts[0]["code"] == str(errors.ERR_ORDER_NOT_FOUND.code)
    assert acts[2] == {"owner": ADDRS[2], "action_index": "1", "kind": "cancel_replace", "subaccount_number": "0",
                       "clob_pair_id": str(BTC), "client_id": "31", "side": "sell", "quantums": str(STEP),
                       "step": "place", "status": "skipped",
                       "reason": "the cancel half did not succeed: nothing was placed"}



def test_a_cancel_replace_that_fails_its_stateless_checks_still_names_each_step():
    """Found by tests/test_fuzz_exchange.py: a cancel-replace whose order id has flags 1 (neither short-term 0 nor
    long-term 64) is refused by the stateless checks. Its cancel half must still say step "cancel" (rejected,
    invalid_order, with the id it named) and its placement half step "place", skipped — as for any refused cancel
    half — and a placement's side outside buy/sell is named by its number, not as "sell"."""
    r = mem_exchange()
    h = height_of(r) + 1
    bad = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(client_id=5, clob_pair_id=BTC, order_flags=1),
        place=tx_pb2.PlaceOrder(client_id=6, clob_pair_id=BTC, side=7, quantums=STEP, subticks=P65K,
                                good_til_block=h + 10)))
    acts = actions_of(r.block([orders_tx(2, 1, [bad])]).tx_results[0])
    assert [(a["kind"], a["step"], a["status"]) for a in acts] == [
        ("cancel_replace", "cancel", "rejected"), ("cancel_replace", "place", "skipped")]
    assert acts[0]["code"] == str(errors.ERR_INVALID_ORDER.code), acts[0]
    assert (acts[0]["client_id"], acts[0]["order_flags"]) == ("5", "1")
    assert (acts[1]["client_id"], acts[1]["side"]) == ("6", "7")
    assert acts[1]["reason"] == "the cancel half did not succeed: nothing was placed"
