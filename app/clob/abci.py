"""The clob module's block steps: expiry, then every queued order action in the block's fixed phase order.

Phase order inside a block (whatever order the proposer chose; docs/exchange.md):
  1. every cancel (cancel, batch cancel, and the cancel half of a cancel-replace), in block order;
  2. every post-only placement (incl. post-only cancel-replaces whose cancel succeeded), in block order;
  3. every other placement (resting limit, IOC, FOK, market), in block order.
So makers can always pull or refresh quotes before takers in the same block trade against them (Hyperliquid
orders each block the same way). Each action runs in its own state branch and book-journal mark: a refused
action leaves no trace, and gets its own ``order_action`` event with a status, code and reason.
"""

from __future__ import annotations

import dataclasses

from perpchain.v1 import tx_pb2

from app.clob import keeper
from app.clob.actions import (
    POST_ONLY,
    ActionEnv,
    execute_batch_cancel,
    execute_cancel,
    execute_place,
    order_flags_of,
    validate_action_stateless,
)
from app.clob.book import Books
from app.clob.matching import order_removed_event, settle_cross_pool_fees
from app.context import BlockInfo
from app.errors import AppError
from app.events import Event
from app.lib.address import encode_address
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals.keeper import MarginView
from app.store import BranchStore
from app.subaccounts import keeper as subaccounts_keeper
from app.subaccounts.state import MAX_SUBACCOUNT_NUMBER


@dataclasses.dataclass
class QueuedAction:
    tx_index: int
    action_index: int
    owner: bytes
    action: tx_pb2.OrderAction


def process_expired_orders(store: BranchStore, books: Books, block: BlockInfo) -> list[Event]:
    """Orders leave the book in the block they expire: good_til_block < height, or good_til_block_time <= time."""
    events = []
    for okey in list(keeper.iter_expired(store, block.height, block.block_time_ns)):
        order = keeper.get_order(store, okey)
        keeper.delete_order(store, okey, order)
        books.remove(okey)
        events.append(order_removed_event(order, "expired"))
    return events


def _phase(q: QueuedAction) -> int:
    """1 cancels, 2 post-only placements, 3 other placements (a cancel-replace by its placement's time in force)."""
    kind = q.action.WhichOneof("action")
    if kind in ("cancel", "batch_cancel"):
        return 1
    place = q.action.place if kind == "place" else q.action.cancel_replace.place if kind == "cancel_replace" else None
    if place is not None and place.time_in_force == POST_ONLY:
        return 2
    return 3


def process_order_actions(store: BranchStore, books: Books, block: BlockInfo,
                          queued: list[QueuedAction]) -> dict[int, list[Event]]:
    """Run every queued action in phase order; returns the events of each tx (by tx index)."""
    out: dict[int, list[Event]] = {}
    floors: dict[tuple[int, int], int] = {}  # cancel-replace -> its placement's equity-tier floor
    replaced: dict[tuple[int, int], bool] = {}  # cancel-replace whose cancel succeeded
    # Prices, tiers and perpetual parameters are fixed from here to the end of the order phase.
    view = MarginView(store)
    # subaccounts and open interest are written once, at the end of the phase
    perpetuals_keeper.start_order_phase(view)
    subaccounts_keeper.start_working_set(view)
    volume = keeper.FillLedger()
    # Phase 1 also runs the cancel half of each cancel-replace.
    phases: tuple[list, list, list] = ([], [], [])
    for q in queued:
        if q.action.WhichOneof("action") == "cancel_replace":
            phases[0].append((q, True))
            floors[(q.tx_index, q.action_index)] = _replacement_floor(books, q)  # before any cancel of the block
        phases[_phase(q) - 1].append((q, False))
    for batch in phases:
        for q, cancel_half in batch:
            _run(store, books, block, q, out, (floors, replaced), view, volume, cancel_half=cancel_half)
    subaccounts_keeper.flush_working_set(store, view)
    perpetuals_keeper.flush_open_interest(store, view)
    volume.write(store, block.block_time_ns)  # fee tiers of later blocks see this block's volume
    return out


def _replacement_floor(books: Books, q: QueuedAction) -> int:
    """The equity-tier floor of a cancel-replace's placement: when it replaces an order of its own subaccount and
    kind, the subaccount's open orders of that kind at the start of the order phase (before any cancel), else 0. Its
    placement may rest while the count is below max(tier limit, floor), so a replacement never raises the count above
    where it started the block, even when the tier now allows fewer (dYdX exempts a replacement from the equity-tier
    check: it adds no order)."""
    cr = q.action.cancel_replace
    flags = order_flags_of(cr.place)
    number = cr.place.subaccount_number
    # (not yet validated: a number beyond 0..127 fails the action later, and gets no floor)
    if cr.order_id.subaccount_number != number or cr.order_id.order_flags != flags or number > MAX_SUBACCOUNT_NUMBER:
        return 0
    return books.kind_count(q.owner, number, flags)


def _run(store: BranchStore, books: Books, block: BlockInfo, q: QueuedAction, out: dict[int, list[Event]],
         replacements: tuple[dict[tuple[int, int], int], dict[tuple[int, int], bool]], view: MarginView,
         volume: keeper.FillLedger, cancel_half: bool) -> None:
    kind = q.action.WhichOneof("action")
    floors, replaced = replacements
    attrs = {"action_index": q.action_index, "kind": kind}
    if kind == "cancel_replace":  # each half's event names its step, whatever refuses it
        if cancel_half:
            attrs.update(_id_attrs(q.action.cancel_replace.order_id), step="cancel")
        else:
            attrs.update(_order_attrs(q.action.cancel_replace.place), step="place")
            if (q.tx_index, q.action_index) not in replaced:  # refused, or the action failed its stateless checks
                attrs.update(status="skipped", reason="the cancel half did not succeed: nothing was placed")
                out.setdefault(q.tx_index, []).append(_action_event(q.owner, attrs))
                return
    branch = BranchStore(store)
    mark = books.mark()
    perpetuals_keeper.start_action(view)
    events: list[Event] = []
    env = ActionEnv(branch, books, block, events, view, keeper.FillLedger())
    try:
        validate_action_stateless(q.action)
        if kind == "place":
            attrs.update(_order_attrs(q.action.place))
            attrs.update(execute_place(env, q.owner, q.action.place))
        elif kind == "cancel":
            attrs.update(_id_attrs(q.action.cancel.order_id))
            attrs.update(execute_cancel(env, q.owner, q.action.cancel.order_id))
        elif kind == "batch_cancel":
            b = q.action.batch_cancel
            attrs.update(subaccount_number=b.subaccount_number, clob_pair_id=b.clob_pair_id)
            attrs.update(execute_batch_cancel(env, q.owner, b))
        elif cancel_half:
            attrs.update(execute_cancel(env, q.owner, q.action.cancel_replace.order_id))
            replaced[(q.tx_index, q.action_index)] = True
        else:
            attrs.update(execute_place(env, q.owner, q.action.cancel_replace.place,
                                       replacement_floor=floors[(q.tx_index, q.action_index)]))
    except AppError as err:
        books.rollback(mark)
        perpetuals_keeper.rollback_action(view)
        attrs.update(status="rejected", code=err.code, reason=err.log)
        out.setdefault(q.tx_index, []).append(_action_event(q.owner, attrs))
        return
    settle_cross_pool_fees(branch, env.ledger)
    branch.write()
    volume.merge(env.ledger)
    out.setdefault(q.tx_index, []).append(_action_event(q.owner, attrs))
    out[q.tx_index].extend(events)


def _action_event(owner: bytes, attrs: dict) -> Event:
    """``order_action{owner, <attrs in order>}``: as Event.of would build it, without re-packing ``attrs`` as keywords
    (one per action)."""
    return Event("order_action", (("owner", encode_address(owner)), *[(k, str(v)) for k, v in attrs.items()]))


SIDE_NAMES = {1: "buy", 2: "sell"}  # tx_pb2 SIDE_BUY, SIDE_SELL


def _order_attrs(p: tx_pb2.PlaceOrder) -> dict:
    return {"subaccount_number": p.subaccount_number, "clob_pair_id": p.clob_pair_id, "client_id": p.client_id,
            "side": SIDE_NAMES.get(p.side, str(p.side)), "quantums": p.quantums}  # a skipped half is not validated


def _id_attrs(oid: tx_pb2.OrderId) -> dict:
    return {"subaccount_number": oid.subaccount_number, "clob_pair_id": oid.clob_pair_id, "client_id": oid.client_id,
            "order_flags": oid.order_flags}
