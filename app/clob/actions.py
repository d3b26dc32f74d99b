"""Order actions: validation (stateless and stateful) and execution of place, cancel, batch cancel, cancel-replace.

``validate_*`` functions raise AppError and change nothing; CheckTx runs them against committed state (it never
matches). ``execute_*`` functions run in FinalizeBlock, one action at a time in its own state branch and book
journal mark (app/clob/abci.py), so a refused action leaves no trace.
"""

from __future__ import annotations

import dataclasses

from perpchain.v1 import exchange_pb2, tx_pb2

from app.clob import keeper, keys
from app.clob.book import BUY, SELL, Books
from app.clob.logic import fee_quote_quantums, fill_amount_to_quote_quantums, price_to_subticks, round_to_multiple
from app.clob.matching import match_taker, order_removed_event
from app.context import BlockInfo
from app.errors import (
    ERR_CLOB_PAIR_STATUS,
    ERR_EQUITY_TIER_LIMIT,
    ERR_FILL_OR_KILL_NOT_FILLED,
    ERR_INVALID_GOOD_TIL,
    ERR_INVALID_ORDER,
    ERR_INVALID_QUANTUMS,
    ERR_INVALID_SUBTICKS,
    ERR_ORDER_EXISTS,
    ERR_POSITION_OVERFLOW,
    ERR_POST_ONLY_WOULD_CROSS,
    ERR_PRICE_UNAVAILABLE,
    ERR_REDUCE_ONLY,
    ERR_STALE_ORACLE,
    ERR_TOO_MANY_OPEN_ORDERS,
    AppError,
)
from app.events import Event
from app.lib.math import INT64_MAX, ONE_MILLION, UINT64_MAX, Rounding, div_round
from app.perpetuals.keeper import MarginView
from app.store import BranchStore, CommittedReader
from app.subaccounts import keeper as subaccounts_keeper
from app.subaccounts.logic import CollateralCheck, check_update
from app.subaccounts.state import MAX_SUBACCOUNT_NUMBER, SubaccountId, SubaccountState

ACTIVE = exchange_pb2.CLOB_PAIR_STATUS_ACTIVE
POST_ONLY_STATUS = exchange_pb2.CLOB_PAIR_STATUS_POST_ONLY
IOC = exchange_pb2.TIME_IN_FORCE_IOC
POST_ONLY = exchange_pb2.TIME_IN_FORCE_POST_ONLY
FOK = exchange_pb2.TIME_IN_FORCE_FILL_OR_KILL
RESTING = exchange_pb2.TIME_IN_FORCE_UNSPECIFIED
TIF_NAMES = {RESTING: "gtc", IOC: "ioc", POST_ONLY: "post-only", FOK: "fok"}
MAX_ORDER_QUANTUMS = 1 << 62  # base quantums; keeps every position and sum inside int64
STATUS_NAMES = {0: "unspecified", 1: "active", 2: "post-only", 3: "cancel-only", 4: "paused", 5: "final-settlement"}


# --- stateless ---------------------------------------------------------------------------------------------------

def validate_place_stateless(p: tx_pb2.PlaceOrder) -> None:
    """Checks that need no state: side, sizes, time in force, good-til fields, market-order fields."""
    if not 0 <= p.subaccount_number <= MAX_SUBACCOUNT_NUMBER:
        raise AppError(ERR_INVALID_ORDER, f"subaccount_number {p.subaccount_number} outside 0..{MAX_SUBACCOUNT_NUMBER}")
    if p.side not in (BUY, SELL):
        raise AppError(ERR_INVALID_ORDER, "side must be buy or sell")
    if p.quantums == 0 or p.quantums > MAX_ORDER_QUANTUMS:
        raise AppError(ERR_INVALID_QUANTUMS, f"quantums must be in 1..{MAX_ORDER_QUANTUMS}")
    if p.time_in_force not in TIF_NAMES:
        raise AppError(ERR_INVALID_ORDER, f"unknown time_in_force {p.time_in_force}")
    if (p.good_til_block == 0) == (p.good_til_block_time_ns == 0):
        raise AppError(ERR_INVALID_GOOD_TIL, "set exactly one of good_til_block (short-term) and good_til_block_time_ns "
                                             "(long-term)")
    if p.good_til_block_time_ns < 0:
        raise AppError(ERR_INVALID_GOOD_TIL, "good_til_block_time_ns must be positive")
    if p.good_til_block_time_ns and p.time_in_force in (IOC, FOK):
        raise AppError(ERR_INVALID_ORDER, "long-term (good-til-time) orders cannot be IOC or FOK (dYdX)")
    if p.market_slippage_ppm:
        if p.subticks != 0:
            raise AppError(ERR_INVALID_ORDER, "a market order has no limit price (subticks 0); its bound comes from "
                                              "market_slippage_ppm and the oracle price")
        if p.time_in_force not in (RESTING, IOC):
            raise AppError(ERR_INVALID_ORDER, "a market order is IOC; time_in_force must be unset or ioc")
        if p.good_til_block_time_ns:
            raise AppError(ERR_INVALID_ORDER, "a market order is short-term (good_til_block)")
        if p.market_slippage_ppm >= ONE_MILLION:
            raise AppError(ERR_INVALID_ORDER, "market_slippage_ppm must be below 1000000")
    elif p.subticks == 0:
        raise AppError(ERR_INVALID_SUBTICKS, "a limit order needs subticks > 0")


def validate_order_id_stateless(oid: tx_pb2.OrderId) -> None:
    if not 0 <= oid.subaccount_number <= MAX_SUBACCOUNT_NUMBER:
        raise AppError(ERR_INVALID_ORDER, f"subaccount_number {oid.subaccount_number} outside 0..{MAX_SUBACCOUNT_NUMBER}")
    if oid.order_flags not in (keys.SHORT_TERM, keys.LONG_TERM):
        raise AppError(ERR_INVALID_ORDER, f"order_flags must be {keys.SHORT_TERM} (short-term) or {keys.LONG_TERM} "
                                          "(long-term)")


def validate_action_stateless(action: tx_pb2.OrderAction) -> str:
    """Returns the action kind; raises on a malformed action."""
    kind = action.WhichOneof("action")
    if kind == "place":
        validate_place_stateless(action.place)
    elif kind == "cancel":
        validate_order_id_stateless(action.cancel.order_id)
    elif kind == "batch_cancel":
        b = action.batch_cancel
        if not 0 <= b.subaccount_number <= MAX_SUBACCOUNT_NUMBER:
            raise AppError(ERR_INVALID_ORDER, f"subaccount_number {b.subaccount_number} outside 0..127")
        if b.order_flags not in (keys.SHORT_TERM, keys.LONG_TERM):
            raise AppError(ERR_INVALID_ORDER, "order_flags must be 0 or 64")
        if len(b.client_ids) > 200:
            raise AppError(ERR_INVALID_ORDER, "a batch cancel lists at most 200 client ids")
    elif kind == "cancel_replace":
        validate_order_id_stateless(action.cancel_replace.order_id)
        validate_place_stateless(action.cancel_replace.place)
    else:
        raise AppError(ERR_INVALID_ORDER, "empty order action")
    return kind


# --- stateful validation of a placement --------------------------------------------------------------------------

@dataclasses.dataclass
class Placement:
    pair: exchange_pb2.ClobPair
    order: exchange_pb2.Order  # the taker / resting order (not stored yet)
    limit_subticks: int
    before: SubaccountState  # the placing subaccount, funding settled, before this order


def order_flags_of(p: tx_pb2.PlaceOrder) -> int:
    return keys.LONG_TERM if p.good_til_block_time_ns else keys.SHORT_TERM


def validate_place(store: CommittedReader, block: BlockInfo, owner: bytes, p: tx_pb2.PlaceOrder,
                   view: MarginView | None = None, books: Books | None = None) -> Placement:
    """Everything a placement needs except matching: pair and status, oracle, tick/step, good-til window,
    duplicate id, reduce-only direction, and the collateral check of a hypothetical full fill at the order's price
    (dYdX AddOrderToOrderbookSubaccountUpdatesCheck). Raises AppError; changes nothing. With ``books`` (FinalizeBlock)
    the duplicate-id check asks the book's key index, which holds exactly the stored orders (app/clob/book.py)."""
    pair = keeper.get_pair(store, p.clob_pair_id)
    params = keeper.get_params(store)
    post_only = p.time_in_force == POST_ONLY
    if pair.status != ACTIVE and not (pair.status == POST_ONLY_STATUS and post_only):
        raise AppError(ERR_CLOB_PAIR_STATUS, f"clob pair {pair.id} is {STATUS_NAMES.get(pair.status)}: "
                                             + ("only post-only orders are accepted" if pair.status == POST_ONLY_STATUS
                                                else "no order is accepted"))
    view = view if view is not None else MarginView(store)
    info = view.info(pair.perpetual_id)
    if info.price == 0:
        raise AppError(ERR_PRICE_UNAVAILABLE, f"perpetual {info.perpetual_id} has no oracle price yet")
    if info.stale and not p.reduce_only:
        raise AppError(ERR_STALE_ORACLE, f"the oracle price of perpetual {info.perpetual_id} is stale: only "
                                         "reduce-only orders are accepted until it is fresh")
    step, tick = pair.step_base_quantums, pair.subticks_per_tick
    if p.quantums % step:
        lo = p.quantums - p.quantums % step
        raise AppError(ERR_INVALID_QUANTUMS, f"size {p.quantums} base quantums is not a multiple of the step {step}; "
                                             f"nearest valid: {lo or step}" + (f" or {lo + step}" if lo else ""))
    if p.market_slippage_ppm:
        if params.max_market_slippage_ppm and p.market_slippage_ppm > params.max_market_slippage_ppm:
            raise AppError(ERR_INVALID_ORDER, f"market_slippage_ppm {p.market_slippage_ppm} is above the chain's bound "
                                              f"{params.max_market_slippage_ppm}")
        limit = market_order_limit(pair, info, p.side, p.market_slippage_ppm)
    else:
        if p.subticks % tick:
            lo = p.subticks - p.subticks % tick
            raise AppError(ERR_INVALID_SUBTICKS, f"price {p.subticks} subticks is not a multiple of the tick {tick}; "
                                                 f"nearest valid: {lo or tick}" + (f" or {lo + tick}" if lo else ""))
        limit = p.subticks
    flags = order_flags_of(p)
    if flags == keys.SHORT_TERM:
        window = params.short_block_window
        if not block.height <= p.good_til_block <= block.height + window:
            raise AppError(ERR_INVALID_GOOD_TIL, f"good_til_block {p.good_til_block} must be within "
                                                 f"{block.height}..{block.height + window} (height .. height + "
                                                 f"{window})")
    else:
        window_ns = params.max_stateful_window_ns
        if not block.block_time_ns < p.good_til_block_time_ns <= block.block_time_ns + window_ns:
            raise AppError(ERR_INVALID_GOOD_TIL, f"good_til_block_time_ns {p.good_til_block_time_ns} must be after the "
                                                 f"block time {block.block_time_ns} and at most {window_ns} ns later")
    okey = keys.order_key(owner, p.subaccount_number, p.clob_pair_id, p.client_id, flags)
    if (okey in books.index) if books is not None else keeper.get_order_or_none(store, okey) is not None:
        raise AppError(ERR_ORDER_EXISTS, f"order {keeper.describe_key(okey)} is already on the book (cancel it or use "
                                         "another client id)")
    sid = SubaccountId(owner, p.subaccount_number)
    prep = subaccounts_keeper.prepare(store, sid, view)
    position = prep.before.size_of(pair.perpetual_id)
    if p.reduce_only:
        growing = position == 0 or (position > 0) == (p.side == BUY)
        if growing:
            held = (f"a {'long' if position > 0 else 'short'} position of {abs(position)} base quantums" if position
                    else "no position")
            raise AppError(ERR_REDUCE_ONLY, f"reduce-only {'buy' if p.side == BUY else 'sell'} would open or grow the "
                                            f"position: the subaccount holds {held} in perpetual {pair.perpetual_id}")
    else:
        subaccounts_keeper.validate_isolated_update(store, prep.before, [pair.perpetual_id], view)
        _collateral_precheck(store, block, prep, pair, p.side, p.quantums, limit, view)
    order = exchange_pb2.Order(
        owner=owner, subaccount_number=p.subaccount_number, client_id=p.client_id, order_flags=flags,
        clob_pair_id=p.clob_pair_id, side=p.side, quantums=p.quantums, subticks=limit,
        good_til_block=p.good_til_block, good_til_block_time_ns=p.good_til_block_time_ns,
        time_in_force=IOC if p.market_slippage_ppm else p.time_in_force, reduce_only=p.reduce_only,
        remaining_quantums=p.quantums, placed_height=block.height)
    return Placement(pair, order, limit, prep.before)


def market_order_limit(pair: exchange_pb2.ClobPair, info, side: int, slippage_ppm: int) -> int:
    """Protective limit of a market order: the oracle price moved by ``slippage_ppm`` against the taker, in subticks,
    aligned to the tick toward the oracle (buy: floor, sell: ceil), at least one tick."""
    oracle = price_to_subticks(info.price, info.price_exponent, pair.quantum_conversion_exponent,
                               info.atomic_resolution, Rounding.FLOOR if side == BUY else Rounding.CEIL)
    factor = ONE_MILLION + slippage_ppm if side == BUY else ONE_MILLION - slippage_ppm
    raw = div_round(oracle * factor, ONE_MILLION, Rounding.FLOOR if side == BUY else Rounding.CEIL)
    limit = round_to_multiple(raw, pair.subticks_per_tick, up=side != BUY)
    return min(max(limit, pair.subticks_per_tick), UINT64_MAX - UINT64_MAX % pair.subticks_per_tick)


def _collateral_precheck(store: CommittedReader, block: BlockInfo, prep, pair: exchange_pb2.ClobPair, side: int,
                         quantums: int, subticks: int, view: MarginView) -> None:
    """The order's full size as if filled at its own price, paying the maker fee (ceil); must pass the collateral
    check. Mirrors dYdX AddOrderToOrderbookSubaccountUpdatesCheck (x/clob/keeper/orders.go)."""
    quote = fill_amount_to_quote_quantums(subticks, quantums, pair.quantum_conversion_exponent)
    maker_ppm, _ = keeper.fee_ppm(store, prep.sid.owner, block.block_time_ns, maker=True, memo=view.fees)
    fee = fee_quote_quantums(quote, maker_ppm)
    after = prep.after  # the placement's own prepared copy: nothing else reads it after this check
    size_delta = quantums if side == BUY else -quantums
    quote_delta = -quote if side == BUY else quote
    funding_index = view.info(pair.perpetual_id).funding_index
    subaccounts_keeper.apply_position_delta(after, pair.perpetual_id, funding_index, size_delta, quote_delta)
    after.quote_balance_quote_quantums += quote_delta - fee
    if abs(after.size_of(pair.perpetual_id)) > INT64_MAX:
        raise AppError(ERR_INVALID_QUANTUMS, "the order would take the position beyond int64 base quantums")
    if abs(after.quote_balance_quote_quantums) > INT64_MAX:  # no fill could store it (the stored form is int64)
        raise AppError(ERR_POSITION_OVERFLOW, f"the order, as if fully filled at its price, would take the quote "
                                              f"balance to {after.quote_balance_quote_quantums} quote quantums, "
                                              "beyond int64")
    new = subaccounts_keeper.compute_risk(store, after, None, view)
    if new.is_initial_collateralized():
        return
    old = subaccounts_keeper.compute_risk(store, prep.before, None, view)
    result = check_update(old, new)
    if result is not CollateralCheck.SUCCESS:
        subaccounts_keeper.raise_for(result, "order (as if fully filled at its price)", old, new)


# --- execution ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ActionEnv:
    store: BranchStore  # the action's own branch
    books: Books
    block: BlockInfo
    events: list[Event]
    view: MarginView  # the order phase's margin data (prices and parameters cannot change during it)
    ledger: keeper.FillLedger  # this action's fills: notional and cross-pool fees


def execute_place(env: ActionEnv, owner: bytes, p: tx_pb2.PlaceOrder, replacement_floor: int = 0) -> dict:
    """Validate, then match and/or rest. Returns the status attributes of the action event. ``replacement_floor``:
    the equity-tier floor of a cancel-replace's placement (app/clob/abci.py _replacement_floor)."""
    placement = validate_place(env.store, env.block, owner, p, env.view, env.books)
    pair, order, limit = placement.pair, placement.order, placement.limit_subticks
    book = env.books.pair(pair.id)
    opposite = SELL if order.side == BUY else BUY
    best = book.best_price(opposite)
    if order.time_in_force == POST_ONLY:
        if best is not None and _crosses(order.side, limit, best):
            raise AppError(ERR_POST_ONLY_WOULD_CROSS, f"post-only {'buy' if order.side == BUY else 'sell'} at {limit} "
                                                      f"subticks would cross the best opposite price {best} subticks")
    params = keeper.get_params(env.store)
    rests = order.time_in_force in (RESTING, POST_ONLY)
    if rests and params.max_open_orders_per_subaccount and env.books.open_count(
            owner, order.subaccount_number, pair.id) >= params.max_open_orders_per_subaccount:
        raise AppError(ERR_TOO_MANY_OPEN_ORDERS, f"subaccount {order.subaccount_number} already has "
                                                 f"{params.max_open_orders_per_subaccount} open orders on pair "
                                                 f"{pair.id}")
    if rests:
        _equity_tier_check(env, params, order, placement.before, replacement_floor)
    outcome = match_taker(env.store, env.books, env.block, pair, order, limit, env.events, env.view, env.ledger) \
        if order.time_in_force != POST_ONLY else None
    filled = outcome.filled_quantums if outcome else 0
    if order.time_in_force == FOK and order.remaining_quantums:
        raise AppError(ERR_FILL_OR_KILL_NOT_FILLED, f"fill-or-kill: only {filled} base quantums of {order.quantums} "
                                                    "base quantums could fill")
    status = {"filled_quantums": filled, "remaining_quantums": order.remaining_quantums}
    stopped = outcome.taker_failed if outcome else ""
    if rests and order.remaining_quantums and not stopped:
        order.sequence = keeper.next_sequence(env.store)
        okey = keeper.insert_order(env.store, order)
        env.books.add(okey, pair.id, order.side, limit, order.sequence)
        status["status"] = "resting" if filled == 0 else "partially_filled_resting"
    elif order.remaining_quantums == 0:
        status["status"] = "filled"
    else:
        status["status"] = "partially_filled" if filled else "not_filled"
        if stopped:
            status["stopped"] = stopped
    status["subticks"] = limit
    return status


def _equity_tier(store: BranchStore, view: MarginView, params: exchange_pb2.ClobParams, order: exchange_pb2.Order,
                 before: SubaccountState) -> tuple[int | None, int]:
    """(open orders of the order's kind its subaccount may rest — None: no cap —, the subaccount's total net
    collateral before the order in quote quantums). The tier list is the order's kind's: short-term or long-term."""
    tiers = params.short_term_order_equity_tiers if order.order_flags == keys.SHORT_TERM \
        else params.stateful_order_equity_tiers
    if not tiers:
        return None, 0
    tnc = subaccounts_keeper.compute_risk(store, before, None, view).net_collateral_quote_quantums
    return keeper.equity_tier_limit(tiers, tnc), tnc


def _equity_tier_refusal(order: exchange_pb2.Order, held: int, tnc: int, limit: int) -> AppError:
    kind = "short-term" if order.order_flags == keys.SHORT_TERM else "long-term"
    return AppError(ERR_EQUITY_TIER_LIMIT, f"subaccount {order.subaccount_number} has {held} open {kind} orders; its "
                                           f"total net collateral {tnc} quote quantums allows {limit} (equity tiers: "
                                           "query clob params)")


def _equity_tier_check(env: ActionEnv, params: exchange_pb2.ClobParams, order: exchange_pb2.Order,
                       before: SubaccountState, replacement_floor: int) -> None:
    """An order that may rest must fit the equity tier of its subaccount's total net collateral before the order:
    its resting orders of the same kind (short-term or long-term, over every pair) stay below the tier's limit, or
    below ``replacement_floor`` for a replacement. Mirrors dYdX ValidateSubaccountEquityTierLimitForNewOrder
    (x/clob/keeper/equity_tier_limit.go)."""
    limit, tnc = _equity_tier(env.store, env.view, params, order, before)
    if limit is None:
        return
    held = env.books.kind_count(order.owner, order.subaccount_number, order.order_flags)
    if held >= max(limit, replacement_floor):
        raise _equity_tier_refusal(order, held, tnc, limit)


def check_equity_tier_floor(store: BranchStore, view: MarginView, placement: Placement) -> None:
    """CheckTx's part of the equity-tier check: without the book only a tier that allows no order at all can be
    judged, so a placement that may rest is refused when its subaccount's tier limit is 0 (dYdX refuses such an
    order at CheckTx too: ValidateSubaccountEquityTierLimitForNewOrder returns early on a 0 limit)."""
    order = placement.order
    if order.time_in_force not in (RESTING, POST_ONLY):
        return
    limit, tnc = _equity_tier(store, view, keeper.get_params(store), order, placement.before)
    if limit == 0:
        raise _equity_tier_refusal(order, 0, tnc, 0)


def _crosses(side: int, limit: int, best_opposite: int) -> bool:
    return best_opposite <= limit if side == BUY else best_opposite >= limit


def validate_cancel(store: CommittedReader, owner: bytes, oid: tx_pb2.OrderId) -> tuple[bytes, exchange_pb2.Order]:
    pair = keeper.get_pair(store, oid.clob_pair_id)
    if pair.status == exchange_pb2.CLOB_PAIR_STATUS_PAUSED:
        raise AppError(ERR_CLOB_PAIR_STATUS, f"clob pair {pair.id} is paused: its book is frozen (cancels too)")
    okey = keys.order_key(owner, oid.subaccount_number, oid.clob_pair_id, oid.client_id, oid.order_flags)
    return okey, keeper.get_order(store, okey)


def execute_cancel(env: ActionEnv, owner: bytes, oid: tx_pb2.OrderId) -> dict:
    okey, order = validate_cancel(env.store, owner, oid)
    keeper.delete_order(env.store, okey, order)
    env.books.remove(okey)
    env.events.append(order_removed_event(order, "canceled"))
    return {"status": "canceled", "remaining_quantums": order.remaining_quantums}


def execute_batch_cancel(env: ActionEnv, owner: bytes, b: tx_pb2.BatchCancel) -> dict:
    pair = keeper.get_pair(env.store, b.clob_pair_id)
    if pair.status == exchange_pb2.CLOB_PAIR_STATUS_PAUSED:
        raise AppError(ERR_CLOB_PAIR_STATUS, f"clob pair {pair.id} is paused: its book is frozen (cancels too)")
    wanted = dict.fromkeys(b.client_ids)
    prefix = owner + bytes((b.subaccount_number,)) + b.clob_pair_id.to_bytes(4, "big")
    canceled: dict[int, None] = {}  # client ids, in book order
    for okey, order in list(keeper.iter_orders(env.store, prefix)):
        if order.order_flags != b.order_flags or (wanted and order.client_id not in wanted):
            continue
        keeper.delete_order(env.store, okey, order)
        env.books.remove(okey)
        env.events.append(order_removed_event(order, "canceled"))
        canceled[order.client_id] = None
    missing = [str(cid) for cid in wanted if cid not in canceled]  # listed, but none of that kind rested
    return {"status": "canceled", "canceled": len(canceled), **({"not_found": ",".join(missing)} if missing else {})}
