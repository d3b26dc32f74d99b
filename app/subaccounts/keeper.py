"""Sole owner of the subaccounts prefix: subaccounts (USDC quote balance + perpetual positions), the funding hook,
the collateral check of every update, and the collateral pools.

State: ``0x06 0x00 ‖ owner ‖ number`` -> Subaccount; ``0x06 0x01`` -> the lazily settled funding total.
Invariants (checked per block, O(changes), by :func:`check_block_invariants`):
- USDC: Σ bank balances of the collateral pools = Σ subaccount quote balances + unsettled funding. A deposit moves
  USDC from the owner's bank balance into the subaccount's pool, a withdrawal out of it, fees leave it for the fee
  collector; trades between subaccounts move quote balances only (zero-sum).
- Open interest: per perpetual Σ long sizes = Σ short sizes = the perpetual's open interest.
Units: quote quantums (1e-6 USDC), base quantums, ppm. Formulas: app/perpetuals/logic.py, app/subaccounts/logic.py.

Collateral pools (dYdX §2.5): cross subaccounts' USDC sits in the ``subaccounts`` module account; a subaccount whose
position is in an isolated perpetual ``i`` uses ``subaccounts:i``. USDC moves between pools only when an isolated
position opens (the quote balance before the update, cross -> isolated) or closes (the quote balance after,
isolated -> cross), as dYdX's transferCollateralForIsolatedPerpetual does.
"""

from __future__ import annotations

import dataclasses

from perpchain.v1 import exchange_pb2

from app.bank import keeper as bank_keeper
from app.errors import (
    ERR_INSUFFICIENT_FUNDS,
    ERR_ISOLATED_MARKET_CONSTRAINT,
    ERR_NEWLY_UNDERCOLLATERALIZED,
    ERR_POSITION_OVERFLOW,
    ERR_PRICE_UNAVAILABLE,
    ERR_STILL_UNDERCOLLATERALIZED,
    AppError,
    InvariantViolation,
)
from app.events import Event
from app.lib.address import encode_address, module_address
from app.lib.encoding import encode_proto
from app.lib.math import INT64_MAX, Rounding, div_round
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals import logic as perp_logic
from app.perpetuals.keeper import MarginView
from app.store import BranchStore, CommittedReader, prefix_end
from app.subaccounts import keys
from app.subaccounts.logic import CollateralCheck, Risk, check_withdrawal
from app.subaccounts.state import (
    Position,
    SubaccountId,
    SubaccountState,
    decode_subaccount,
    encode_subaccount,
    unpack_subaccount,
)

CROSS_POOL = module_address("subaccounts")
UNSETTLED_FUNDING_KEY = keys.POOL_FUNDING_PREFIX  # global lazy-funding counter (PoolFunding)
_ISOLATED_POOLS: dict[int, bytes] = {}


def isolated_pool(perpetual_id: int) -> bytes:
    pool = _ISOLATED_POOLS.get(perpetual_id)
    if pool is None:
        pool = _ISOLATED_POOLS[perpetual_id] = module_address(f"subaccounts:{perpetual_id}")
    return pool


# --- storage -----------------------------------------------------------------------------------------------------

def get_subaccount(store: CommittedReader, sid: SubaccountId) -> SubaccountState:
    """The stored subaccount (a fresh object), or an empty one."""
    raw = store.get(keys.subaccount_key(sid.owner, sid.number))
    return SubaccountState() if raw is None else decode_subaccount(raw)


def set_subaccount(store: BranchStore, sid: SubaccountId, sub: SubaccountState) -> bytes | None:
    """Store (or delete, when empty) a subaccount; returns the stored bytes."""
    key = keys.subaccount_key(sid.owner, sid.number)
    if sub.is_empty():
        store.delete(key)  # state stays O(funded subaccounts)
        return None
    raw = encode_subaccount(sub)
    store.set(key, raw)
    return raw


def iter_subaccounts(store: CommittedReader, owner: bytes | None = None):
    """(SubaccountId, SubaccountState) in key order (all, or one owner's)."""
    prefix = keys.SUBACCOUNT_PREFIX if owner is None else keys.owner_prefix(owner)
    n = len(keys.SUBACCOUNT_PREFIX)
    for key, raw in store.iterate(prefix, prefix_end(prefix)):
        yield SubaccountId(key[n:n + 20], key[n + 20]), decode_subaccount(raw)


def has_subaccount(store: CommittedReader, owner: bytes) -> bool:
    """Whether the owner has any (non-empty) subaccount: empty ones are not stored."""
    prefix = keys.owner_prefix(owner)
    return next(iter(store.iterate(prefix, prefix_end(prefix))), None) is not None


def get_unsettled_funding(store: CommittedReader) -> int:
    raw = store.get(UNSETTLED_FUNDING_KEY)
    return 0 if raw is None else exchange_pb2.PoolFunding.FromString(raw).unsettled_quote_quantums


def _add_unsettled_funding(store: BranchStore, delta: int) -> None:
    if delta:
        total = get_unsettled_funding(store) + delta
        store.set(UNSETTLED_FUNDING_KEY, encode_proto(exchange_pb2.PoolFunding(unsettled_quote_quantums=total)))


# --- pools and the isolated-market rule --------------------------------------------------------------------------

def _view(store: CommittedReader, view: MarginView | None) -> MarginView:
    return view if view is not None else MarginView(store)


def isolated_perpetual_of(view: MarginView, sub: SubaccountState) -> int | None:
    """The isolated perpetual the subaccount holds a position in, if any (such a subaccount holds only it)."""
    if len(sub.positions) != 1:
        return None
    (pid,) = sub.positions
    return pid if view.is_isolated(pid) else None


def pool_of(store: CommittedReader, sub: SubaccountState, view: MarginView | None = None) -> bytes:
    pid = isolated_perpetual_of(_view(store, view), sub)
    return CROSS_POOL if pid is None else isolated_pool(pid)


def validate_isolated_update(store: CommittedReader, sub: SubaccountState, perpetual_ids: list[int],
                             view: MarginView | None = None) -> None:
    """A subaccount with an isolated position trades only that perpetual; one with cross positions never opens an
    isolated one; one update never mixes an isolated perpetual with another. Mirrors dYdX
    isValidIsolatedPerpetualUpdates (x/subaccounts/keeper/isolated_subaccount.go)."""
    if not perpetual_ids:
        return
    view = _view(store, view)
    isolated_updates = [p for p in perpetual_ids if view.is_isolated(p)]
    held = isolated_perpetual_of(view, sub)
    if held is not None and not isolated_updates:
        raise AppError(ERR_ISOLATED_MARKET_CONSTRAINT, f"the subaccount holds isolated perpetual {held}; it can trade "
                                                       "nothing else")
    if held is None and sub.positions and isolated_updates:
        raise AppError(ERR_ISOLATED_MARKET_CONSTRAINT, f"isolated perpetual {isolated_updates[0]} needs a subaccount "
                                                       "without cross positions (use another subaccount number)")
    if isolated_updates and len(perpetual_ids) > 1:
        raise AppError(ERR_ISOLATED_MARKET_CONSTRAINT, "one update cannot touch an isolated perpetual and another")
    if held is not None and isolated_updates[0] != held:
        raise AppError(ERR_ISOLATED_MARKET_CONSTRAINT, f"the subaccount holds isolated perpetual {held}, not "
                                                       f"{isolated_updates[0]}")


# --- funding hook, risk, collateral check ------------------------------------------------------------------------

def settle_funding(store: CommittedReader, sid: SubaccountId, sub: SubaccountState,
                   view: MarginView | None = None) -> tuple[int, list[Event]]:
    """Settle every position against its perpetual's funding index, in memory (``sub`` changes).

    Returns (USDC delta, events). Sum first, round once toward -inf (against the account); each position's index
    becomes the perpetual's. Mirrors dYdX GetSettledSubaccountWithPerpetuals (x/subaccounts/keeper/subaccount.go).
    Every position change settles funding first (the funding hook); the index accrual comes with the risk issue.
    """
    view = _view(store, view)
    for pid, p in sub.positions.items():  # fast path: nothing to settle
        if view.info(pid).funding_index != p.funding_index:
            break
    else:
        return 0, []
    positions = [p for _, p in sorted(sub.positions.items())]
    items = [(view.info(p.perpetual_id).funding_index, p.funding_index, p.size_base_quantums) for p in positions]
    delta, payments = perp_logic.settle_funding(items)
    sub.quote_balance_quote_quantums += delta
    events = []
    for p, (perp_index, pos_index, _), payment in zip(positions, items, payments):
        if perp_index != pos_index:
            events.append(Event.of("funding_settlement", owner=encode_address(sid.owner), number=sid.number,
                                   perpetual_id=p.perpetual_id, size_base_quantums=p.size_base_quantums,
                                   index_delta=perp_index - pos_index, payment_quote_quantums=payment))
            p.funding_index = perp_index  # in place: ``sub`` was just decoded; listed so encoding rewrites it
            sub.changed.append(p.perpetual_id)
    return delta, events


def compute_risk(store: CommittedReader, sub: SubaccountState, oi_delta: tuple[int, int] | None = None,
                 view: MarginView | None = None) -> Risk:
    """Net collateral and margin requirements of a (settled) subaccount at the oracle prices, quote quantums.

    ``oi_delta`` = (perpetual id, base quantums): open interest as if a match moved it (IMF scaling sees
    post-trade OI, as dYdX's temporary ModifyOpenInterest). Raises price_unavailable for a position whose market
    has no oracle price yet. Mirrors dYdX GetNetCollateralAndMarginRequirements.
    """
    view = _view(store, view)
    sums = _uncapped_sums(view, sub)
    nc, imr, mmr = sub.quote_balance_quote_quantums + sums[0], sums[1], sums[2]
    for pid in sums[3]:  # positions in OI-scaled tiers: open interest moves with every fill, so never memoized
        p = sub.positions.get(pid)
        if p is None:
            continue
        oi = perpetuals_keeper.open_interest(store, pid, view)  # as the fills so far left it
        if oi_delta is not None and oi_delta[0] == pid:
            oi += oi_delta[1]
        n, i, m = _position_risk(view, pid, p.size_base_quantums, oi)
        nc += n
        imr += i
        mmr += m
    return Risk(nc, imr, mmr)


def _position_risk(view: MarginView, pid: int, size: int, oi: int) -> tuple[int, int, int]:
    """(net collateral, IMR, MMR) of one position, memoized by (perpetual, size, OI) in the view."""
    key = (pid, size, oi)
    contribution = view.position_risk.get(key)
    if contribution is None:
        info = view.info(pid)
        if info.price == 0:
            raise AppError(ERR_PRICE_UNAVAILABLE, f"perpetual {pid} (market {info.market_id}) has no oracle price yet")
        contribution = view.position_risk[key] = perp_logic.position_risk(
            size, info.atomic_resolution, info.price, info.price_exponent, info.initial_margin_ppm,
            info.maintenance_fraction_ppm, info.oi_lower_cap_quote_quantums, info.oi_upper_cap_quote_quantums, oi)
    return contribution


def _uncapped_sums(view: MarginView, sub: SubaccountState) -> tuple:
    """(Σ net collateral, Σ IMR, Σ MMR) over the positions in tiers without OI scaling, and the perpetuals of the
    others. Memoized in the view by the subaccount's stored bytes, and derived incrementally for a copy from the
    state it was copied from (only the positions changed since are recomputed): a fill costs O(1), not
    O(positions)."""
    if sub.risk_sums is not None:
        return sub.risk_sums
    cached = view.subaccount_risk.get(sub.raw) if sub.raw is not None else None
    parent = sub.parent
    if cached is None and parent is not None:
        # From the parent's sums (computed once and kept on it: later copies of the same state start from them too).
        nc, imr, mmr, capped = _uncapped_sums(view, parent)
        capped = list(capped)
        for pid in dict.fromkeys(sub.since_parent):
            old = parent.positions.get(pid)
            new = sub.positions.get(pid)
            if view.info(pid).oi_upper_cap_quote_quantums:
                if new is not None and pid not in capped:
                    capped.append(pid)
                continue
            if old is not None:
                n, i, m = _position_risk(view, pid, old.size_base_quantums, 0)
                nc, imr, mmr = nc - n, imr - i, mmr - m
            if new is not None:
                n, i, m = _position_risk(view, pid, new.size_base_quantums, 0)
                nc, imr, mmr = nc + n, imr + i, mmr + m
        cached = (nc, imr, mmr, tuple(capped))
    if cached is None:
        nc = imr = mmr = 0
        capped = []
        for pid, p in sub.positions.items():
            if view.info(pid).oi_upper_cap_quote_quantums:
                capped.append(pid)
                continue
            n, i, m = _position_risk(view, pid, p.size_base_quantums, 0)
            nc, imr, mmr = nc + n, imr + i, mmr + m
        cached = (nc, imr, mmr, tuple(capped))
        if sub.raw is not None:
            view.subaccount_risk[sub.raw] = cached
    sub.risk_sums = cached
    sub.parent = None  # the sums are known: the ancestors can be freed
    return cached


def raise_for(result: CollateralCheck, who: str, old: Risk, new: Risk, hint: str = "") -> None:
    if result is CollateralCheck.SUCCESS:
        return
    err = ERR_NEWLY_UNDERCOLLATERALIZED if result is CollateralCheck.NEWLY_UNDERCOLLATERALIZED \
        else ERR_STILL_UNDERCOLLATERALIZED
    # every number names its unit, so the CLI can show each in USDC (node/cli/clob.py humanize_reason)
    raise AppError(err, f"{who}: net collateral {new.net_collateral_quote_quantums} quote quantums would be below "
                        f"initial margin {new.initial_margin_quote_quantums} quote quantums (maintenance "
                        f"{new.maintenance_margin_quote_quantums} quote quantums; before: net collateral "
                        f"{old.net_collateral_quote_quantums} quote quantums, initial "
                        f"{old.initial_margin_quote_quantums} quote quantums, maintenance "
                        f"{old.maintenance_margin_quote_quantums} quote quantums){hint}")


def apply_position_delta(sub: SubaccountState, perpetual_id: int, funding_index: int, size_delta: int,
                         quote_delta: int) -> None:
    """Change a position by ``size_delta`` base quantums for ``quote_delta`` (what the account paid: negative for a
    buy). Keeps the informational cost basis: increases add |quote|, reductions release it pro rata (floor), a
    flip restarts it at the flipped part's share."""
    sub.changed.append(perpetual_id)
    sub.since_parent.append(perpetual_id)
    sub.risk_sums = None
    pos = sub.positions.get(perpetual_id)
    old = 0 if pos is None else pos.size_base_quantums
    new = old + size_delta
    cost = abs(quote_delta)
    if new == 0:
        sub.positions.pop(perpetual_id, None)
        return
    if pos is None:
        sub.positions[perpetual_id] = Position(perpetual_id, new, funding_index, cost)
        return
    if (old > 0) == (size_delta > 0):  # grows
        entry = pos.entry_notional_quote_quantums + cost
    elif abs(size_delta) <= abs(old):  # reduces
        entry = div_round(pos.entry_notional_quote_quantums * abs(new), abs(old), Rounding.FLOOR)
    else:  # flips: the new side's cost is the fill's share beyond the old size
        entry = div_round(cost * abs(new), abs(size_delta), Rounding.FLOOR)
    # A new object, never an in-place change: SubaccountState.copy shares Position objects.
    sub.positions[perpetual_id] = Position(perpetual_id, new, pos.funding_index, entry)


@dataclasses.dataclass
class Prepared:
    """A subaccount loaded and settled for an update (nothing written yet)."""

    sid: SubaccountId
    before: SubaccountState  # settled
    after: SubaccountState  # settled + the update, filled in by the caller
    funding_delta: int
    funding_events: list[Event]


def prepare(store: CommittedReader, sid: SubaccountId, view: MarginView | None = None) -> Prepared:
    """Load and settle a subaccount for an update. In the order phase, a subaccount a fill changed comes from the
    working set. Otherwise, with a view, the settled state of given stored bytes is memoized (funding indexes cannot
    change during the view's life): a market maker's many placements in one phase decode and settle its subaccount
    once, not once per collateral pre-check. The ``before`` state is shared and must not be changed."""
    live = _live(view, sid)
    if live is not None:  # already loaded and settled in this order phase
        return Prepared(sid, live, live.copy(), 0, [])
    raw = store.get(keys.subaccount_key(sid.owner, sid.number))
    if raw is None:
        sub = SubaccountState()
        return Prepared(sid, sub, sub.copy(), 0, [])
    memo = view.decoded_subaccounts if view is not None else None
    # Keyed by the subaccount too, not by the bytes alone: two subaccounts can store identical bytes, and the
    # funding events name their subaccount.
    key = (sid.owner, sid.number, raw)
    hit = memo.get(key) if memo is not None else None
    if hit is None:
        sub = decode_subaccount(raw)
        delta, events = settle_funding(store, sid, sub, view)
        hit = (sub, delta, events)
        if memo is not None:
            memo[key] = hit
    sub, delta, events = hit
    return Prepared(sid, sub, sub.copy(), delta, list(events))


def current_subaccount(store: CommittedReader, sid: SubaccountId, view: MarginView | None) -> SubaccountState:
    """The subaccount as the order phase sees it (its working set first, else the store); not settled."""
    live = _live(view, sid)
    return live if live is not None else get_subaccount(store, sid)


def _live(view: MarginView | None, sid: SubaccountId) -> SubaccountState | None:
    """The subaccount's state in the order phase's working set, if the phase has already loaded it."""
    return view.live.get(sid) if view is not None and view.live is not None else None


# --- the order phase's working set (app/perpetuals/keeper.start_order_phase) --------------------------------------
# Every fill updates two subaccounts. They are kept in ``view.live`` (decoded, settled, with their risk sums) and
# written once per phase instead of once per fill: an encoding, a store write and a decoding-memo entry saved per
# side of a fill. persist records what it replaced in ``view.undo`` (rolled back with a refused action).

def start_working_set(view: MarginView) -> None:
    view.live = {}


def flush_working_set(store: BranchStore, view: MarginView) -> None:
    """Write every subaccount the phase changed (in key order; an empty one is deleted) and close the working set."""
    live = view.live
    view.live = None
    for sid in sorted(live):
        set_subaccount(store, sid, live[sid])


def is_closing(store: CommittedReader, prep: Prepared, view: MarginView | None = None) -> bool:
    """The update closes an isolated position (its collateral moves back to the cross pool)."""
    view = _view(store, view)
    return pool_of(store, prep.before, view) != CROSS_POOL and pool_of(store, prep.after, view) == CROSS_POOL


def pay_from_pool(store: BranchStore, pool: bytes, recipient: bytes, amount: int) -> None:
    """Pay ``amount`` on behalf of a subaccount of ``pool``: from that pool as far as it holds USDC, the rest from the
    cross pool. An isolated pool can hold less than one member's claim while others hold leveraged longs (negative
    quote balances); the surplus is then in the cross pool (Σ pools = Σ claims always holds), and it goes back to
    the isolated pool's side when the market's open interest returns to 0 (:func:`sweep_isolated_pool`)."""
    if amount <= 0:
        return
    own = min(amount, bank_keeper.get_balance(store, pool)) if pool != CROSS_POOL else 0
    if own:
        bank_keeper.apply_transfer(store, pool, recipient, own)
    if amount - own and recipient != CROSS_POOL:
        bank_keeper.apply_transfer(store, CROSS_POOL, recipient, amount - own)


def clear_unowned_subaccounts(store: BranchStore, owner: bytes, recipient: bytes) -> list[tuple[int, int]]:
    """Close every subaccount of ``owner``, an address that has just become a module account (nobody holds its key,
    so nothing could ever move that USDC again), paying each quote balance to ``recipient``; returns (number, amount)
    per subaccount. Such a subaccount can only have been funded by transfers (no key signs its orders), so it holds a
    quote balance and no position, in the cross pool."""
    cleared = []
    for sid, sub in list(iter_subaccounts(store, owner)):
        if sub.positions or sub.quote_balance_quote_quantums <= 0:
            raise InvariantViolation(f"subaccount {encode_address(owner)}/{sid.number} of a new module account holds "
                                     "positions or owes USDC")
        set_subaccount(store, sid, SubaccountState())
        bank_keeper.apply_transfer(store, CROSS_POOL, recipient, sub.quote_balance_quote_quantums)
        cleared.append((sid.number, sub.quote_balance_quote_quantums))
    return cleared


def sweep_isolated_pool(store: BranchStore, perpetual_id: int) -> None:
    """With no position left in an isolated perpetual its pool has no member: whatever it still holds belongs to the
    cross side (see :func:`pay_from_pool`) and moves back, so every isolated pool is exact when its market is flat."""
    pool = isolated_pool(perpetual_id)
    left = bank_keeper.get_balance(store, pool)
    if left:
        bank_keeper.apply_transfer(store, pool, CROSS_POOL, left)


def persist(store: BranchStore, prep: Prepared, view: MarginView | None = None) -> list[Event]:
    """Write a checked update: the subaccount, the funding counter, isolated-pool collateral moves.

    dYdX transferCollateralForIsolatedPerpetual: an opening update moves the quote balance *before* it into the
    isolated pool, a closing update moves the quote balance *after* it back (paid as far as the pool holds it,
    :func:`pay_from_pool`). Persist openers before closers when one fill does both.

    Raises position_overflow (nothing written) if the quote balance leaves int64, the stored form's range: a deposit
    or transfer into a balance near 2^63 (possible with a bank supply above int64), or funding settled into one.
    Fills refuse this earlier, per side, for the balance and the position (the only update that changes a size;
    app/clob/matching._side_update).
    """
    quote = prep.after.quote_balance_quote_quantums
    if abs(quote) > INT64_MAX:
        raise AppError(ERR_POSITION_OVERFLOW, f"subaccount {encode_address(prep.sid.owner)}/{prep.sid.number}: quote "
                                              f"balance {quote} quote quantums would leave int64")
    _add_unsettled_funding(store, -prep.funding_delta)
    view = _view(store, view)
    before_pool = pool_of(store, prep.before, view)
    after_pool = pool_of(store, prep.after, view)
    if before_pool != after_pool:
        if after_pool != CROSS_POOL:  # opened: the quote balance before the update moves in
            amount = prep.before.quote_balance_quote_quantums
            if amount > 0:
                bank_keeper.apply_transfer(store, before_pool, after_pool, amount)
        else:  # closed: the quote balance after the update moves back
            pay_from_pool(store, before_pool, after_pool, prep.after.quote_balance_quote_quantums)
    if view.live is not None:  # the order phase: written once, at its end (flush_working_set)
        view.undo.append((view.live, prep.sid, view.live.get(prep.sid)))
        view.live[prep.sid] = prep.after
        return prep.funding_events
    set_subaccount(store, prep.sid, prep.after)
    return prep.funding_events


# --- transfers of USDC -------------------------------------------------------------------------------------------

def apply_deposit(store: BranchStore, owner: bytes, sid: SubaccountId, amount: int) -> None:
    """Bank balance of ``owner`` -> the subaccount (its pool)."""
    prep = prepare(store, sid)
    pool = pool_of(store, prep.before)
    bank_keeper.apply_transfer(store, owner, pool, amount)
    prep.after.quote_balance_quote_quantums += amount
    persist(store, prep)


def apply_withdrawal(store: BranchStore, sid: SubaccountId, recipient: bytes, amount: int, what: str) -> list[Event]:
    """The subaccount -> a bank address; must leave the subaccount initially collateralized (NC >= IMR)."""
    prep = prepare(store, sid)
    prep.after.quote_balance_quote_quantums -= amount
    _check_outflow(store, prep, amount, what)
    pool = pool_of(store, prep.before)
    events = persist(store, prep)
    pay_from_pool(store, pool, recipient, amount)
    return events


def apply_transfer(store: BranchStore, sender: SubaccountId, recipient: SubaccountId, amount: int) -> list[Event]:
    """Subaccount -> subaccount; the sender must stay initially collateralized. USDC moves between pools too."""
    if sender == recipient:
        return []
    src = prepare(store, sender)
    src.after.quote_balance_quote_quantums -= amount
    _check_outflow(store, src, amount, "transfer")
    src_pool = pool_of(store, src.before)
    events = persist(store, src)
    dst = prepare(store, recipient)
    dst.after.quote_balance_quote_quantums += amount
    dst_pool = pool_of(store, dst.before)
    events += persist(store, dst)
    if src_pool != dst_pool:
        pay_from_pool(store, src_pool, dst_pool, amount)
    return events


def _check_outflow(store: CommittedReader, prep: Prepared, amount: int, what: str) -> None:
    """Withdrawals and transfers out leave initial margin: NC_new >= IMR_new (the Hyperliquid ETH-whale lesson:
    unrealized profit cannot be pulled out to leave a position under-margined). No exemption."""
    if prep.after.quote_balance_quote_quantums < 0 and not prep.after.positions:
        raise AppError(ERR_INSUFFICIENT_FUNDS, f"{what} of {amount} quote quantums exceeds the subaccount's "
                                               f"{prep.before.quote_balance_quote_quantums} quote quantums")
    new = compute_risk(store, prep.after)
    if not check_withdrawal(new):
        old = compute_risk(store, prep.before)
        kind = (CollateralCheck.NEWLY_UNDERCOLLATERALIZED if old.is_initial_collateralized()
                else CollateralCheck.STILL_UNDERCOLLATERALIZED)
        # An outflow lowers net collateral one for one and leaves the margin requirements as they are (they depend
        # on the positions and open interest only), so exactly NC - IMR before it can leave (the free collateral).
        room = max(0, old.net_collateral_quote_quantums - old.initial_margin_quote_quantums)
        raise_for(kind, f"{what} of {amount} quote quantums", old, new,
                  f"; at most {room} quote quantums can leave now")


# --- block invariants ----------------------------------------------------------------------------------------------

def _collateral_pools(store: CommittedReader) -> list[bytes]:
    return [CROSS_POOL] + [isolated_pool(p.id) for p in perpetuals_keeper.iter_perpetuals(store)
                           if p.market_type == perpetuals_keeper.ISOLATED]


def check_block_invariants(block_store: BranchStore) -> None:
    """USDC and open interest, over this block's writes only. Raises InvariantViolation (halts the node)."""
    quote_delta = 0
    size_delta: dict[int, int] = {}
    long_delta: dict[int, int] = {}
    n = len(keys.SUBACCOUNT_PREFIX)
    for key, value in block_store.write_set():
        if not key.startswith(keys.SUBACCOUNT_PREFIX) or len(key) != n + 21:
            continue
        old_raw = block_store.parent_value(key)
        for raw, sign in ((old_raw, -1), (value, 1)):
            if raw is None:
                continue
            quote, positions = unpack_subaccount(raw)
            quote_delta += sign * quote
            for pid, size, _, _ in positions:
                size_delta[pid] = size_delta.get(pid, 0) + sign * size
                long_delta[pid] = long_delta.get(pid, 0) + sign * max(0, size)
    # The pools of each side's own perpetuals: a market made isolated in this block opens its pool now, so what its
    # address held before was no pool's balance (the authority's switch moves such stray USDC out first).
    parent = block_store.parent_store()
    bank_delta = (sum(bank_keeper.get_balance(block_store, p) for p in _collateral_pools(block_store))
                  - sum(bank_keeper.get_balance(parent, p) for p in _collateral_pools(parent)))
    unsettled_delta = get_unsettled_funding(block_store) - get_unsettled_funding(block_store.parent_store())
    if bank_delta != quote_delta + unsettled_delta:
        raise InvariantViolation(f"collateral pools changed by {bank_delta} quote quantums but subaccount balances by "
                                 f"{quote_delta} and unsettled funding by {unsettled_delta}")
    for pid in perpetuals_keeper.written_perpetual_ids(block_store):  # open interest written without a position move
        size_delta.setdefault(pid, 0)
        long_delta.setdefault(pid, 0)
    for pid in sorted(size_delta):
        if size_delta[pid] != 0:
            raise InvariantViolation(f"perpetual {pid}: longs and shorts moved apart by {size_delta[pid]}")
        perp_now = perpetuals_keeper.get_perpetual(block_store, pid).open_interest_base_quantums
        before = perpetuals_keeper.get_perpetual_or_none(block_store.parent_store(), pid)
        perp_before = before.open_interest_base_quantums if before is not None else 0
        if perp_now - perp_before != long_delta[pid]:
            raise InvariantViolation(f"perpetual {pid}: open interest moved by {perp_now - perp_before}, "
                                     f"longs by {long_delta[pid]}")
        if perp_now == 0 and perpetuals_keeper.get_perpetual(block_store, pid).market_type == perpetuals_keeper.ISOLATED:
            left = bank_keeper.get_balance(block_store, isolated_pool(pid))
            if left:
                raise InvariantViolation(f"isolated perpetual {pid} has no position but its pool holds {left}")
