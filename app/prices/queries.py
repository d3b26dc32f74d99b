"""prices queries (JSON; not consensus data)."""

from __future__ import annotations

from app.errors import ERR_UNKNOWN_MARKET, AppError
from app.prices import keeper
from app.store import CommittedReader


def format_scaled(value: int, exponent: int) -> str:
    """value × 10^exponent as an exact decimal string (display only)."""
    if exponent >= 0:
        return str(value * 10**exponent)
    digits = str(value).rjust(-exponent + 1, "0")
    whole, frac = digits[:exponent], digits[exponent:]
    return f"{whole}.{frac}"


def market_view(store: CommittedReader, market, total_power: int) -> dict:
    price = keeper.get_market_price(store, market.id)
    params = keeper.get_params(store)
    return {
        "id": market.id,
        "pair": market.pair,
        "exponent": market.exponent,
        "min_price_change_ppm": market.min_price_change_ppm,
        "stale_after_ns": str(market.stale_after_ns or params.stale_after_ns),
        "oracle_price": str(price.oracle_price),
        "oracle_price_usd": format_scaled(price.oracle_price, market.exponent),
        "mark_price": str(price.mark_price),
        "mark_price_usd": format_scaled(price.mark_price, market.exponent),
        "basis_ema": str(price.basis_ema),
        "last_update_height": str(price.last_update_height),
        "last_update_time_ns": str(price.last_update_time_ns),
        "stale": price.stale,
        "reporters": price.reporters,
        "reported_power": str(price.reported_power),
        "total_power": str(total_power),
    }


def query_markets(store: CommittedReader, total_power: int) -> dict:
    return {"markets": [market_view(store, m, total_power) for m in keeper.iter_markets(store)]}


def query_market(store: CommittedReader, pair: str, total_power: int) -> dict:
    for m in keeper.iter_markets(store):
        if m.pair == pair:
            return market_view(store, m, total_power)
    raise AppError(ERR_UNKNOWN_MARKET, f"no market {pair!r}")
