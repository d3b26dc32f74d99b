"""Matching: one taker against the book, price-time priority, fills at the maker's price.

Rules (docs/exchange.md "Matching"):
- the best opposite price first, and within a price the oldest order (placement sequence) first;
- a fill happens at the maker's price; its quote value is floor(subticks × base × 10^QCE) (dYdX
  FillAmountToQuoteQuantums), fees are ceil(quote × ppm / 1e6) per side (a negative maker ppm is a rebate);
- self-trade prevention: a resting order of the taker's owner (any subaccount) is removed and the taker continues;
- reduce-only orders (taker or maker) are clamped to the opposite position at fill time; a resting reduce-only
  order with nothing left to reduce is removed, and a reduce-only taker that used all its room stops (its
  remainder is not placed);
- every fill passes the collateral check for both subaccounts (dYdX UpdateSubaccounts with a Match update:
  funding settled first, open interest as the fill would leave it); a maker that fails is removed and matching
  continues, a taker that fails stops (its remainder is not placed).
Mirrors dYdX x/clob/keeper/process_single_match.go (ProcessSingleMatch, persistMatchedOrders) and the memclob's
matching loop; the book itself is on chain here (Hyperliquid-style), so matching runs once, in FinalizeBlock.
"""

from __future__ import annotations

import dataclasses

from perpchain.v1 import exchange_pb2

from app.bank import keeper as bank_keeper
from app.clob import keeper
from app.clob.book import BUY, Books
from app.clob.logic import fee_quote_quantums, fill_amount_to_quote_quantums
from app.context import BlockInfo
from app.errors import ERR_POSITION_OVERFLOW, AppError
from app.events import Event
from app.lib.address import encode_address
from app.lib.math import INT64_MAX, UINT64_MAX
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals.keeper import MarginView
from app.store import BranchStore
from app.subaccounts import keeper as subaccounts_keeper
from app.subaccounts.logic import CollateralCheck, check_update
from app.subaccounts.state import SubaccountId


@dataclasses.dataclass
class MatchOutcome:
    filled_quantums: int = 0
    taker_failed: str = ""  # why the taker stopped early ("" = it did not)


def crosses(side: int, limit_subticks: int, resting_subticks: int) -> bool:
    """A buy at ``limit`` crosses an ask at or below it; a sell crosses a bid at or above it."""
    return resting_subticks <= limit_subticks if side == BUY else resting_subticks >= limit_subticks


def reducible(position_size: int, side: int) -> int:
    """How much an order of ``side`` can reduce a position (0 when it would grow or open one)."""
    if side == BUY:
        return -position_size if position_size < 0 else 0
    return position_size if position_size > 0 else 0


def match_taker(store: BranchStore, books: Books, block: BlockInfo, pair: exchange_pb2.ClobPair,
                taker: exchange_pb2.Order, limit_subticks: int, events: list[Event], view: MarginView,
                volume: keeper.FillLedger) -> MatchOutcome:
    """Fill ``taker`` (not on the book) against the opposite side up to ``limit_subticks``; updates
    ``taker.remaining_quantums``. Never raises AppError: every failure is an outcome."""
    out = MatchOutcome()
    opposite = exchange_pb2.SIDE_SELL if taker.side == BUY else BUY
    book = books.pair(pair.id)
    taker_sid = SubaccountId(taker.owner, taker.subaccount_number)
    taker_fee_ppm, taker_tier = keeper.fee_ppm(store, taker.owner, block.block_time_ns, maker=False, memo=view.fees)
    for price, level in book.levels_from_best(opposite):
        if taker.remaining_quantums == 0 or out.taker_failed or not crosses(taker.side, limit_subticks, price):
            break
        for _, mkey in list(level):
            if taker.remaining_quantums == 0 or out.taker_failed:
                break
            maker = keeper.get_order(store, mkey)
            if maker.owner == taker.owner:
                _remove(store, books, mkey, maker, "self_trade", events)
                continue
            fill = min(taker.remaining_quantums, maker.remaining_quantums)
            maker_room = None
            if maker.reduce_only:
                room = maker_room = reducible(_position(store, maker, view), maker.side)
                if room < pair.step_base_quantums:
                    _remove(store, books, mkey, maker, "reduce_only_nothing_to_reduce", events)
                    continue
                fill = min(fill, room - room % pair.step_base_quantums)
            taker_room = None
            if taker.reduce_only:
                room = reducible(_position(store, taker, view), taker.side)
                room -= room % pair.step_base_quantums
                if room == 0:
                    out.taker_failed = "reduce_only_nothing_to_reduce"
                    break
                fill = min(fill, room)
                taker_room = room
            result = process_fill(store, block, pair, taker, taker_sid, taker_fee_ppm, taker_tier, maker, fill,
                                  events, view, volume)
            if result.maker_error:
                _remove(store, books, mkey, maker, f"collateral: {result.maker_error}", events)
            if result.taker_error:
                out.taker_failed = f"collateral: {result.taker_error}"
            if result.maker_error or result.taker_error:
                continue
            out.filled_quantums += fill
            taker.remaining_quantums -= fill
            if taker_room is not None and fill == taker_room and taker.remaining_quantums:
                # A reduce-only taker that used all its room stops here: its remainder must not rest (it could sit
                # across the maker it was clamped against) nor look for more.
                out.taker_failed = "reduce_only_nothing_to_reduce"
            left = maker.remaining_quantums - fill
            if left == 0:
                keeper.delete_order(store, mkey, maker)
                books.remove(mkey)
            elif maker_room is not None and maker_room - fill < pair.step_base_quantums:
                # A reduce-only maker clamped to its position: nothing left to reduce, so it must not stay on the
                # book (it would cross the taker's remainder).
                maker.remaining_quantums = left
                _remove(store, books, mkey, maker, "reduce_only_nothing_to_reduce", events)
            else:
                keeper.update_remaining(store, mkey, maker, left)
    return out


def _position(store: BranchStore, order: exchange_pb2.Order, view: MarginView) -> int:
    pair = keeper.get_pair(store, order.clob_pair_id)
    sub = subaccounts_keeper.current_subaccount(store, SubaccountId(order.owner, order.subaccount_number), view)
    return sub.size_of(pair.perpetual_id)


def _remove(store: BranchStore, books: Books, okey: bytes, order: exchange_pb2.Order, reason: str,
            events: list[Event]) -> None:
    keeper.delete_order(store, okey, order)
    books.remove(okey)
    events.append(order_removed_event(order, reason))


def order_removed_event(order: exchange_pb2.Order, reason: str) -> Event:
    return Event.of("order_removed", owner=encode_address(order.owner), number=order.subaccount_number,
                    clob_pair_id=order.clob_pair_id, client_id=order.client_id, order_flags=order.order_flags,
                    remaining_quantums=order.remaining_quantums, reason=reason)


@dataclasses.dataclass
class FillResult:
    taker_error: str = ""
    maker_error: str = ""


def _side_update(store: BranchStore, sid: SubaccountId, perpetual_id: int, funding_index: int, is_buy: bool,
                 fill: int, quote: int, fee: int, view: MarginView):
    """Load, settle, check the isolated-market rule and apply one side of a fill in memory."""
    prep = subaccounts_keeper.prepare(store, sid, view)
    subaccounts_keeper.validate_isolated_update(store, prep.before, [perpetual_id], view)
    size_delta = fill if is_buy else -fill
    quote_delta = -quote if is_buy else quote
    subaccounts_keeper.apply_position_delta(prep.after, perpetual_id, funding_index, size_delta, quote_delta)
    prep.after.quote_balance_quote_quantums += quote_delta - fee
    if abs(prep.after.size_of(perpetual_id)) > INT64_MAX or abs(prep.after.quote_balance_quote_quantums) > INT64_MAX:
        raise AppError(ERR_POSITION_OVERFLOW, "position or quote balance beyond int64")
    return prep


def _check_side(store: BranchStore, prep, oi_delta: tuple[int, int], view: MarginView) -> str:
    """'' if the side passes the collateral check, else why not."""
    try:
        new = subaccounts_keeper.compute_risk(store, prep.after, oi_delta, view)
        if new.is_initial_collateralized():
            return ""
        old = subaccounts_keeper.compute_risk(store, prep.before, None, view)
        result = check_update(old, new)
    except AppError as err:
        return err.log
    if result is CollateralCheck.SUCCESS:
        return ""
    return (f"{result.value}: net collateral {new.net_collateral_quote_quantums} quote quantums < initial margin "
            f"{new.initial_margin_quote_quantums} quote quantums")


def process_fill(store: BranchStore, block: BlockInfo, pair: exchange_pb2.ClobPair, taker: exchange_pb2.Order,
                 taker_sid: SubaccountId, taker_fee_ppm: int, taker_tier: str, maker: exchange_pb2.Order, fill: int,
                 events: list[Event], view: MarginView, volume: keeper.FillLedger) -> FillResult:
    """One fill of ``fill`` base quantums at the maker's price; writes only if both sides pass their checks."""
    pid = pair.perpetual_id
    oi = perpetuals_keeper.open_interest(store, pid, view)  # as this phase's fills so far left it
    price = maker.subticks
    quote = fill_amount_to_quote_quantums(price, fill, pair.quantum_conversion_exponent)
    maker_fee_ppm, maker_tier = keeper.fee_ppm(store, maker.owner, block.block_time_ns, maker=True, memo=view.fees)
    taker_fee = fee_quote_quantums(quote, taker_fee_ppm)
    maker_fee = fee_quote_quantums(quote, maker_fee_ppm)
    maker_sid = SubaccountId(maker.owner, maker.subaccount_number)
    result = FillResult()
    preps = {}
    for who, sid, is_buy, fee in (("taker", taker_sid, taker.side == BUY, taker_fee),
                                  ("maker", maker_sid, maker.side == BUY, maker_fee)):
        try:
            preps[who] = _side_update(store, sid, pid, view.info(pid).funding_index, is_buy, fill, quote, fee, view)
        except AppError as err:
            setattr(result, f"{who}_error", err.log)
    if result.taker_error or result.maker_error:
        return result
    oi_change = 0
    for prep in preps.values():
        oi_change += max(0, prep.after.size_of(pid)) - max(0, prep.before.size_of(pid))
    if oi + oi_change > UINT64_MAX:  # the taker grows it: the taker stops
        result.taker_error = f"{ERR_POSITION_OVERFLOW.name}: open interest would exceed uint64"
        return result
    result.taker_error = _check_side(store, preps["taker"], (pid, oi_change), view)
    result.maker_error = _check_side(store, preps["maker"], (pid, oi_change), view)
    if result.taker_error or result.maker_error:
        return result
    # Openers before closers: an opening side's collateral reaches the isolated pool before a closing side's
    # collateral leaves it (a stable sort keeps taker-then-maker otherwise; only an isolated market has pools).
    sides = preps.values()
    if view.is_isolated(pid):
        sides = sorted(sides, key=lambda p: subaccounts_keeper.is_closing(store, p, view))
    for prep in sides:
        events.extend(subaccounts_keeper.persist(store, prep, view))
    perpetuals_keeper.apply_open_interest_delta(store, pid, oi_change, view)
    _pay_fee(store, preps["taker"], taker_fee, view, volume)
    _pay_fee(store, preps["maker"], maker_fee, view, volume)
    if view.is_isolated(pid) and oi + oi_change == 0:
        subaccounts_keeper.sweep_isolated_pool(store, pid)
    volume.add_fill(taker.owner, maker.owner, quote)
    events.append(fill_event(pair.id, pid, taker, maker, price, fill, quote, taker_fee, maker_fee, taker_tier,
                             maker_tier))
    return result


def fill_event(clob_pair_id: int, perpetual_id: int, taker: exchange_pb2.Order, maker: exchange_pb2.Order,
               subticks: int, quantums: int, quote: int, taker_fee: int, maker_fee: int, taker_tier: str,
               maker_tier: str) -> Event:
    """The ``fill`` event (docs/exchange.md). Spelled out attribute by attribute rather than through Event.of: one
    is built per fill, and keyword packing plus a generic loop cost ~2x."""
    return Event("fill", (
        ("clob_pair_id", str(clob_pair_id)), ("perpetual_id", str(perpetual_id)),
        ("taker", encode_address(taker.owner)), ("taker_number", str(taker.subaccount_number)),
        ("taker_client_id", str(taker.client_id)),
        ("maker", encode_address(maker.owner)), ("maker_number", str(maker.subaccount_number)),
        ("maker_client_id", str(maker.client_id)), ("maker_order_flags", str(maker.order_flags)),
        ("taker_side", "buy" if taker.side == BUY else "sell"),
        ("subticks", str(subticks)), ("quantums", str(quantums)), ("quote_quantums", str(quote)),
        ("taker_fee_quote_quantums", str(taker_fee)), ("maker_fee_quote_quantums", str(maker_fee)),
        ("taker_fee_tier", taker_tier), ("maker_fee_tier", maker_tier)))


def _pay_fee(store: BranchStore, prep, fee: int, view: MarginView, ledger: keeper.FillLedger) -> None:
    """A positive fee leaves the subaccount's pool for the fee collector; a rebate comes back from it.

    When the fill opened or closed an isolated position, the fee is paid by the isolated pool: an opening fill
    moved the quote balance *before* the fill into it, a closing fill moves the quote balance *after* the fill (net
    of the fee) out of it, so in both cases the fee's USDC is in the isolated pool.
    """
    if fee == 0:
        return
    before = subaccounts_keeper.pool_of(store, prep.before, view)
    pool = before if before != subaccounts_keeper.CROSS_POOL else subaccounts_keeper.pool_of(store, prep.after, view)
    if pool == subaccounts_keeper.CROSS_POOL:
        ledger.cross_pool_fees += fee  # paid once per action (settle_cross_pool_fees), not once per fill
        return
    if fee > 0:
        subaccounts_keeper.pay_from_pool(store, pool, bank_keeper.FEE_COLLECTOR_ADDRESS, fee)
    else:
        bank_keeper.apply_transfer(store, bank_keeper.FEE_COLLECTOR_ADDRESS, pool, -fee)


def settle_cross_pool_fees(store: BranchStore, ledger: keeper.FillLedger) -> None:
    """The net fees of one action's fills in the cross pool, in one bank transfer (each fill's taker fee covers its
    maker rebate, so the net is never below what isolated takers of this action already paid the collector)."""
    net = ledger.cross_pool_fees
    if net > 0:
        bank_keeper.apply_transfer(store, subaccounts_keeper.CROSS_POOL, bank_keeper.FEE_COLLECTOR_ADDRESS, net)
    elif net < 0:
        bank_keeper.apply_transfer(store, bank_keeper.FEE_COLLECTOR_ADDRESS, subaccounts_keeper.CROSS_POOL, -net)
    ledger.cross_pool_fees = 0
