"""perpetuals messages: the authority's liquidity-tier changes."""

from __future__ import annotations

from perpchain.v1 import tx_pb2

from app.bank import keeper as bank_keeper
from app.context import Ctx
from app.errors import ERR_UNAUTHORIZED, AppError
from app.events import Event
from app.perpetuals import keeper
from app.perpetuals.logic import validate_liquidity_tier


def validate_tier(tier) -> None:
    validate_liquidity_tier(tier.initial_margin_ppm, tier.maintenance_fraction_ppm,
                            tier.impact_notional_quote_quantums, tier.open_interest_lower_cap_quote_quantums,
                            tier.open_interest_upper_cap_quote_quantums)


def handle_upsert_liquidity_tier(ctx: Ctx, msg: tx_pb2.MsgUpsertLiquidityTier) -> None:
    """Create or change a tier; the new margin fractions apply to every position from this tx on."""
    authority = bank_keeper.get_authority(ctx.store)
    if msg.authority != authority:
        raise AppError(ERR_UNAUTHORIZED, f"only the chain authority {authority} may change liquidity tiers")
    validate_tier(msg.tier)
    keeper.set_tier(ctx.store, msg.tier)
    ctx.emit(Event.of("liquidity_tier", id=msg.tier.id, name=msg.tier.name,
                      initial_margin_ppm=msg.tier.initial_margin_ppm,
                      maintenance_fraction_ppm=msg.tier.maintenance_fraction_ppm))
