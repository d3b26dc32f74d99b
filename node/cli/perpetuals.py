"""``perpd query perpetuals``: the tradable markets, their margin tiers, step and tick, prices and open interest."""

from __future__ import annotations

import click

from app.lib.units import format_scaled
from node.cli.common import common, emit, price_text, query_json


def perpetual_text(p: dict) -> str:
    base, _, quote = p["ticker"].partition("-")  # tickers are BASE-QUOTE (BTC-USD)
    tier = p["liquidity_tier"]
    im = int(tier["initial_margin_ppm"])
    mm_percent = format_scaled(im * int(tier["maintenance_fraction_ppm"]), -10)  # IMF x fraction / 1e6 ppm, in %
    pair = p.get("clob_pair")
    trading = (f"clob pair {pair['id']} {pair['status']}  step {pair['step']} {base}  tick {pair['tick_usd']} USD"
               if pair else "no clob pair")
    return (f"{p['ticker']:10s} id {p['id']}  {p['market_type']}  {tier['name']} (initial margin "
            f"{format_scaled(im, -4)}%, maintenance {mm_percent}%)  oracle {price_text(p['oracle_price'], quote)}"
            f"{'  STALE' if p['oracle_stale'] else ''}  mark {price_text(p['mark_price'], quote)}  {trading}  "
            f"open interest {p['open_interest']} {base}")


@click.group("perpetuals")
def query_perpetuals() -> None:
    """Perpetual markets."""


@query_perpetuals.command("list")
@common
def query_perpetuals_list() -> None:
    """Every perpetual: type, liquidity tier, oracle and mark price, step and tick of its clob pair, open interest."""
    obj, res = query_json("/perpetuals/list")
    emit(obj, res, "\n".join(perpetual_text(p) for p in res["perpetuals"]) or "(no perpetuals)")
