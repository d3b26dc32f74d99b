"""The only place perpetuals' raw keys are spelled."""

from app.store import PREFIX_PERPETUALS

TIER_PREFIX = PREFIX_PERPETUALS + b"\x00"  # ‖ tier id (u32 BE) -> LiquidityTier
PERPETUAL_PREFIX = PREFIX_PERPETUALS + b"\x01"  # ‖ perpetual id (u32 BE) -> Perpetual


def tier_key(tier_id: int) -> bytes:
    return TIER_PREFIX + tier_id.to_bytes(4, "big")


def perpetual_key(perpetual_id: int) -> bytes:
    return PERPETUAL_PREFIX + perpetual_id.to_bytes(4, "big")
