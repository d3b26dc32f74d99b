"""The prices block step: apply the agreed medians, update mark prices and staleness."""

from __future__ import annotations

from perpchain.v1 import prices_pb2

from app.context import BlockInfo
from app.events import Event
from app.prices import keeper
from app.prices.expected import BasisSource
from app.prices.logic import compute_mark, is_price_change_big_enough, is_stale
from app.store import BranchStore


def process_oracle_prices(
    store: BranchStore, block: BlockInfo, updates: list[prices_pb2.PriceUpdate], basis: BasisSource
) -> list[Event]:
    """For every market, in id order: apply its agreed median (if any), then mark and staleness.

    An agreed median refreshes the market (last update height/time) even when it moved less than
    min_price_change_ppm; the stored price is only rewritten when it moved at least that much (dYdX rule).
    """
    params = keeper.get_params(store)
    by_id = {u.market_id: u for u in updates}
    events: list[Event] = []
    for market in keeper.iter_markets(store):
        price = keeper.get_market_price(store, market.id)
        update = by_id.get(market.id)
        if update is not None:
            applied = is_price_change_big_enough(price.oracle_price, update.price, market.min_price_change_ppm)
            if applied:
                price.oracle_price = update.price
            price.last_update_height = block.height
            price.last_update_time_ns = block.block_time_ns
            price.reporters = update.reporters
            price.reported_power = update.reported_power
            events.append(Event.of("oracle_price", market=market.pair, median=update.price,
                                   price=price.oracle_price, applied=str(applied).lower(),
                                   reporters=update.reporters, reported_power=update.reported_power))
        if price.oracle_price:
            price.mark_price, price.basis_ema = compute_mark(
                price.oracle_price, price.basis_ema, basis(store, market.id, price.oracle_price),
                params.mark_basis_smoothing_ppm, params.mark_basis_clamp_ppm,
            )
        stale = is_stale(block.block_time_ns, price.last_update_time_ns, price.oracle_price,
                         market.stale_after_ns or params.stale_after_ns)
        if stale != price.stale:
            events.append(Event.of("market_stale" if stale else "market_fresh", market=market.pair,
                                   last_update_height=price.last_update_height,
                                   last_update_time_ns=price.last_update_time_ns))
        price.stale = stale
        keeper.apply_market_price(store, price)
    return events
