"""clob messages: MsgOrders (batched order actions) and the authority's market messages.

MsgOrders is *deferred*: FinalizeBlock queues its actions and runs them in the block's phase order
(app/clob/abci.py). Its stateless check only refuses what makes the whole tx meaningless (owner, action count):
one malformed action gets its own status instead of failing its batch. CheckTx validates each action against
committed state without matching (:func:`check_orders`).
"""

from __future__ import annotations

from perpchain.v1 import exchange_pb2, tx_pb2

from app.auth.admission import Cost
from app.bank import keeper as bank_keeper
from app.bank.handlers import parse_address
from app.clob import keeper, keys
from app.clob.actions import check_equity_tier_floor, validate_action_stateless, validate_cancel, validate_place
from app.context import Ctx
from app.errors import (
    ERR_CLOB_PAIR_STATUS,
    ERR_INVALID_CLOB_PAIR,
    ERR_INVALID_CLOB_PARAMS,
    ERR_INVALID_GOOD_TIL,
    ERR_INVALID_ORDER,
    ERR_ORDER_NOT_FOUND,
    ERR_PERPETUAL_EXISTS,
    ERR_TOO_MANY_ACTIONS,
    ERR_UNAUTHORIZED,
    AppError,
)
from app.events import Event
from app.lib.address import encode_address
from app.perpetuals import keeper as perpetuals_keeper
from app.prices import keeper as prices_keeper
from app.subaccounts import keeper as subaccounts_keeper

MAX_ACTIONS_PER_TX = 200  # per MsgOrders (app/tx/codec.py MAX_ORDER_ACTIONS bounds the whole tx)


def signers_orders(msg: tx_pb2.MsgOrders) -> list[bytes]:
    owner = parse_address(msg.owner, "owner")
    if not msg.actions:
        raise AppError(ERR_INVALID_ORDER, "MsgOrders carries no action")
    if len(msg.actions) > MAX_ACTIONS_PER_TX:
        raise AppError(ERR_TOO_MANY_ACTIONS, f"{len(msg.actions)} order actions, at most {MAX_ACTIONS_PER_TX} per tx")
    return [owner]


def cost_orders(msg: tx_pb2.MsgOrders) -> Cost:
    """Placements use requests, cancels use the (larger) cancel budget; a cancel-replace uses one of each."""
    requests = cancels = 0
    for a in msg.actions:
        kind = a.WhichOneof("action")
        if kind == "place":
            requests += 1
        elif kind == "cancel_replace":
            requests += 1
            cancels += 1
        else:
            cancels += 1
    return Cost(requests=requests, cancels=cancels)


def check_action(ctx: Ctx, owner: bytes, action: tx_pb2.OrderAction) -> None:
    """One action against committed state, without matching (CheckTx)."""
    kind = validate_action_stateless(action)
    if kind == "place":
        placement = validate_place(ctx.store, ctx.block, owner, action.place, ctx.margin_view)
        check_equity_tier_floor(ctx.store, ctx.margin_view, placement)
    elif kind == "cancel":
        validate_cancel(ctx.store, owner, action.cancel.order_id)
    elif kind == "batch_cancel":
        b = action.batch_cancel
        if keeper.get_pair(ctx.store, b.clob_pair_id).status == exchange_pb2.CLOB_PAIR_STATUS_PAUSED:
            raise AppError(ERR_CLOB_PAIR_STATUS, f"clob pair {b.clob_pair_id} is paused: its book is frozen (cancels too)")
        prefix = owner + bytes((b.subaccount_number,)) + b.clob_pair_id.to_bytes(4, "big")
        wanted = dict.fromkeys(b.client_ids)
        if not any(o.order_flags == b.order_flags and (not wanted or o.client_id in wanted)
                   for _, o in keeper.iter_orders(ctx.store, prefix)):
            raise AppError(ERR_ORDER_NOT_FOUND, "the batch cancel matches no resting order")
    else:
        validate_cancel(ctx.store, owner, action.cancel_replace.order_id)


def check_orders(ctx: Ctx, msgs: list[tx_pb2.MsgOrders]) -> None:
    """CheckTx, over every action of every MsgOrders of the tx: refuse the tx when none of its actions would pass
    (a single action: when it would not). A batch with some failing actions is admitted; each action reports its
    outcome in the block."""
    first: AppError | None = None
    for msg in msgs:
        owner = parse_address(msg.owner, "owner")
        for action in msg.actions:
            try:
                check_action(ctx, owner, action)
                return
            except AppError as err:
                first = first or err
    if first is not None:
        raise first


def _short_term(action: tx_pb2.OrderAction) -> bool:
    kind = action.WhichOneof("action")
    if kind == "place":
        return action.place.good_til_block_time_ns == 0
    if kind == "cancel":
        return action.cancel.order_id.order_flags == keys.SHORT_TERM
    if kind == "batch_cancel":
        return action.batch_cancel.order_flags == keys.SHORT_TERM
    if kind == "cancel_replace":
        return (action.cancel_replace.order_id.order_flags == keys.SHORT_TERM
                and action.cancel_replace.place.good_til_block_time_ns == 0)
    return False  # an empty action (a tx with another, valid action passes CheckTx): the full check refuses it


def recheck_orders(ctx: Ctx, msgs: list[tx_pb2.MsgOrders]) -> bool:
    """A recheck (CometBFT re-runs CheckTx on the txs still in its mempool after each block) of a tx whose actions are
    all short-term: only their window is checked, not the book or the collateral again (dYdX ClobDecorator: "No need
    to process short term orders on ReCheckTx"; stateful orders are re-checked). The tx stays unless every action is
    a placement whose good_til_block has passed (the ante, run before, still rebuilds the pending view). Returns
    False, having checked nothing, when an action is long-term: the caller runs :func:`check_orders`."""
    actions = [action for msg in msgs for action in msg.actions]
    if not all(_short_term(a) for a in actions):  # (never empty: signers_orders refuses an empty MsgOrders)
        return False
    for a in actions:
        kind = a.WhichOneof("action")
        place = a.place if kind == "place" else a.cancel_replace.place if kind == "cancel_replace" else None
        if place is None or place.good_til_block >= ctx.block.height:
            return True
    raise AppError(ERR_INVALID_GOOD_TIL, f"every placement of this tx expired (good_til_block below height "
                                         f"{ctx.block.height})")


# --- authority ---------------------------------------------------------------------------------------------------

def _authority(ctx: Ctx, authority: str) -> None:
    expected = bank_keeper.get_authority(ctx.store)
    if authority != expected:
        raise AppError(ERR_UNAUTHORIZED, f"only the chain authority {expected} may change markets")


def signers_authority(msg) -> list[bytes]:
    return [parse_address(msg.authority, "authority")]


def handle_set_clob_pair_status(ctx: Ctx, msg: tx_pb2.MsgSetClobPairStatus) -> None:
    _authority(ctx, msg.authority)
    allowed = (exchange_pb2.CLOB_PAIR_STATUS_ACTIVE, exchange_pb2.CLOB_PAIR_STATUS_POST_ONLY,
               exchange_pb2.CLOB_PAIR_STATUS_CANCEL_ONLY, exchange_pb2.CLOB_PAIR_STATUS_PAUSED)
    if msg.status not in allowed:
        raise AppError(ERR_INVALID_CLOB_PAIR, "status must be active, post-only, cancel-only or paused "
                                              "(final settlement comes with the risk engine)")
    pair = exchange_pb2.ClobPair()
    pair.CopyFrom(keeper.get_pair(ctx.store, msg.clob_pair_id))
    old = pair.status
    pair.status = msg.status
    keeper.set_pair(ctx.store, pair)
    ctx.emit(Event.of("clob_pair_status", clob_pair_id=pair.id, old_status=old, status=pair.status))


def validate_pair(ctx_store, pair: exchange_pb2.ClobPair) -> None:
    if pair.step_base_quantums == 0 or pair.subticks_per_tick == 0:
        raise AppError(ERR_INVALID_CLOB_PAIR, "step_base_quantums and subticks_per_tick must be positive")
    if not -30 <= pair.quantum_conversion_exponent <= 30:
        raise AppError(ERR_INVALID_CLOB_PAIR, "quantum_conversion_exponent must be in -30..30")
    if pair.status not in (1, 2, 3, 4):
        raise AppError(ERR_INVALID_CLOB_PAIR, "status must be active, post-only, cancel-only or paused")
    perpetuals_keeper.get_perpetual(ctx_store, pair.perpetual_id)


def handle_create_perpetual(ctx: Ctx, msg: tx_pb2.MsgCreatePerpetual) -> None:
    _authority(ctx, msg.authority)
    create_perpetual(ctx.store, msg.perpetual, msg.clob_pair)
    ctx.emit(Event.of("perpetual_created", perpetual_id=msg.perpetual.id, ticker=msg.perpetual.ticker,
                      clob_pair_id=msg.clob_pair.id))
    if msg.perpetual.market_type == exchange_pb2.MARKET_TYPE_ISOLATED:
        _clear_stray_pool_balance(ctx, msg.perpetual.id)


def _clear_stray_pool_balance(ctx: Ctx, perpetual_id: int) -> None:
    """A pool that opens for a market without positions must be empty (Σ pools = Σ claims; a flat isolated market
    has an empty pool). Its address is known before it is a module account, so USDC sent there earlier (MsgSend or a
    withdrawal to it) belongs to nobody: it goes to the fee collector, like any other unowned USDC, with an event.
    So does the quote balance of any subaccount of that address (a subaccount transfer to it before it became a
    module account), which nobody could move either: the subaccount is closed.
    Only the authority's create / switch to isolated gets here; genesis keeps a pool's balance (its positions own it)."""
    pool = subaccounts_keeper.isolated_pool(perpetual_id)
    collector = encode_address(bank_keeper.FEE_COLLECTOR_ADDRESS)
    stray = bank_keeper.get_balance(ctx.store, pool)
    if stray:
        bank_keeper.apply_transfer(ctx.store, pool, bank_keeper.FEE_COLLECTOR_ADDRESS, stray)
        ctx.emit(Event.of("isolated_pool_cleared", perpetual_id=perpetual_id, amount_quote_quantums=stray,
                          recipient=collector))
    for number, amount in subaccounts_keeper.clear_unowned_subaccounts(ctx.store, pool,
                                                                       bank_keeper.FEE_COLLECTOR_ADDRESS):
        ctx.emit(Event.of("isolated_pool_cleared", perpetual_id=perpetual_id, subaccount_number=number,
                          amount_quote_quantums=amount, recipient=collector))


def create_perpetual(store, perp: exchange_pb2.Perpetual, pair: exchange_pb2.ClobPair) -> None:
    """A new perpetual and its clob pair (genesis and MsgCreatePerpetual): new ids, existing market and tier."""
    from app.errors import ERR_INVALID_PERPETUAL

    if perpetuals_keeper.get_perpetual_or_none(store, perp.id) is not None:
        raise AppError(ERR_PERPETUAL_EXISTS, f"perpetual {perp.id} exists")
    if keeper.get_pair_or_none(store, pair.id) is not None:
        raise AppError(ERR_INVALID_CLOB_PAIR, f"clob pair {pair.id} exists")
    if prices_keeper.get_market_param_or_none(store, perp.market_id) is None:
        raise AppError(ERR_INVALID_PERPETUAL, f"oracle market {perp.market_id} does not exist")
    for existing in keeper.iter_pairs(store):
        # The book of an oracle market's lowest clob pair id drives the market's mark (app/clob/basis.py): a pair
        # listed later on the same oracle market must come after it, so a new listing cannot steer an existing mark.
        if existing.id > pair.id and perpetuals_keeper.get_perpetual(
                store, existing.perpetual_id).market_id == perp.market_id:
            raise AppError(ERR_INVALID_CLOB_PAIR, f"oracle market {perp.market_id} is already traded on clob pair "
                                                  f"{existing.id}: a later pair on it needs a higher id than "
                                                  f"{existing.id} (the lowest drives the market's mark price)")
    perpetuals_keeper.get_tier(store, perp.liquidity_tier)
    if perp.market_type not in (exchange_pb2.MARKET_TYPE_CROSS, exchange_pb2.MARKET_TYPE_ISOLATED):
        raise AppError(ERR_INVALID_PERPETUAL, "market_type must be cross or isolated")
    if not -30 <= perp.atomic_resolution <= 30 or not perp.ticker:
        raise AppError(ERR_INVALID_PERPETUAL, "atomic_resolution must be in -30..30 and the ticker set")
    if perp.open_interest_base_quantums or perp.funding_index:
        raise AppError(ERR_INVALID_PERPETUAL, "a new perpetual starts with open interest 0 and funding index 0")
    if pair.perpetual_id != perp.id:
        raise AppError(ERR_INVALID_CLOB_PAIR, f"clob pair {pair.id} must name perpetual {perp.id}")
    perpetuals_keeper.set_perpetual(store, perp)
    validate_pair(store, pair)
    keeper.set_pair(store, pair)
    if perp.market_type == exchange_pb2.MARKET_TYPE_ISOLATED:
        bank_keeper.register_module_account(store, subaccounts_keeper.isolated_pool(perp.id))


def handle_set_fee_tiers(ctx: Ctx, msg: tx_pb2.MsgSetFeeTiers) -> None:
    _authority(ctx, msg.authority)
    params = exchange_pb2.ClobParams()
    params.CopyFrom(keeper.get_params(ctx.store))
    del params.fee_tiers[:]
    params.fee_tiers.extend(msg.fee_tiers)
    keeper.set_params(ctx.store, params)
    ctx.emit(Event.of("fee_tiers", tiers=len(msg.fee_tiers)))


def handle_set_equity_tiers(ctx: Ctx, msg: tx_pb2.MsgSetEquityTiers) -> None:
    """The authority replaces both equity-tier lists (dYdX MsgUpdateEquityTierLimitConfiguration). Resting orders
    stay; the caps apply from the next placement."""
    _authority(ctx, msg.authority)
    params = exchange_pb2.ClobParams()
    params.CopyFrom(keeper.get_params(ctx.store))
    del params.short_term_order_equity_tiers[:]
    params.short_term_order_equity_tiers.extend(msg.short_term_order_equity_tiers)
    del params.stateful_order_equity_tiers[:]
    params.stateful_order_equity_tiers.extend(msg.stateful_order_equity_tiers)
    keeper.set_params(ctx.store, params)
    ctx.emit(Event.of("equity_tiers", short_term_tiers=len(msg.short_term_order_equity_tiers),
                      stateful_tiers=len(msg.stateful_order_equity_tiers)))


# MsgSetClobLimits fields, each the ClobParams field of the same name (proto/perpchain/v1/tx.proto).
CLOB_LIMIT_FIELDS = ("short_block_window", "max_stateful_window_ns", "max_open_orders_per_subaccount",
                     "default_market_slippage_ppm", "max_market_slippage_ppm", "max_order_actions_per_block")


def handle_set_clob_limits(ctx: Ctx, msg: tx_pb2.MsgSetClobLimits) -> None:
    """The authority changes the clob's scalar limits (the Cosmos SDK MsgUpdateParams pattern, one field at a time:
    an unset field keeps its value). The result passes the genesis rules (keeper.validate_params) or nothing
    changes. The event lists each field with its old and new value."""
    _authority(ctx, msg.authority)
    params = exchange_pb2.ClobParams()
    params.CopyFrom(keeper.get_params(ctx.store))
    changes = {}
    for field in CLOB_LIMIT_FIELDS:
        if msg.HasField(field):
            changes[f"old_{field}"] = getattr(params, field)
            setattr(params, field, getattr(msg, field))
            changes[field] = getattr(msg, field)
    if not changes:
        raise AppError(ERR_INVALID_CLOB_PARAMS,
                       "nothing to change: set at least one of " + ", ".join(CLOB_LIMIT_FIELDS))
    keeper.validate_params(params, ERR_INVALID_CLOB_PARAMS, "clob limits")
    keeper.set_params(ctx.store, params)
    ctx.emit(Event.of("clob_limits", **changes))


def handle_update_perpetual(ctx: Ctx, msg: tx_pb2.MsgUpdatePerpetual) -> None:
    """The authority moves a perpetual to another liquidity tier and/or market type (type only with no open
    interest: positions cannot switch collateral pools)."""
    from app.errors import ERR_INVALID_PERPETUAL

    _authority(ctx, msg.authority)
    perp = exchange_pb2.Perpetual()
    perp.CopyFrom(perpetuals_keeper.get_perpetual(ctx.store, msg.perpetual_id))
    if msg.set_liquidity_tier:
        perpetuals_keeper.get_tier(ctx.store, msg.liquidity_tier)
        perp.liquidity_tier = msg.liquidity_tier
    if msg.market_type and msg.market_type != perp.market_type:
        if msg.market_type not in (exchange_pb2.MARKET_TYPE_CROSS, exchange_pb2.MARKET_TYPE_ISOLATED):
            raise AppError(ERR_INVALID_PERPETUAL, "market_type must be cross or isolated")
        if perp.open_interest_base_quantums:
            raise AppError(ERR_INVALID_PERPETUAL, f"perpetual {perp.id} has open interest: its market type can only "
                                                  "change when no position is open")
        perp.market_type = msg.market_type
        if perp.market_type == exchange_pb2.MARKET_TYPE_ISOLATED:
            bank_keeper.register_module_account(ctx.store, subaccounts_keeper.isolated_pool(perp.id))
            _clear_stray_pool_balance(ctx, perp.id)
    perpetuals_keeper.set_perpetual(ctx.store, perp)
    ctx.emit(Event.of("perpetual_updated", perpetual_id=perp.id, liquidity_tier=perp.liquidity_tier,
                      market_type=perp.market_type))
