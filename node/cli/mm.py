"""``perpd mm run``: the reference market maker (node/mm/runner.py), a client over CometBFT RPC."""

from __future__ import annotations

from decimal import Decimal

import click

from node.cli.common import CliError, WholeNumber, common
from node.client.market import parse_decimal


@click.group("mm")
def mm() -> None:
    """Reference market maker (keeps two-sided post-only quotes around the oracle price)."""


@mm.command("run")
@click.option("--key", "key_name", required=True, help="key that signs the quotes")
@click.option("--markets", help="comma-separated tickers [default: every market whose pair is active or post-only]")
@click.option("--levels", type=WholeNumber(1, 100), default=3, show_default=True, help="quotes per side")
@click.option("--spread-bps", type=WholeNumber(1, 9_999), default=10, show_default=True,
              help="distance of the first level from the oracle price, basis points")
@click.option("--step-bps", type=WholeNumber(0, 10_000), default=5, show_default=True,
              help="distance between levels, basis points")
@click.option("--size-usd", default="2000", show_default=True, help="notional of each quote, USD")
@click.option("--interval", "interval_s", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="seconds between polls of the node (at most one round per block)")
@click.option("--number", "subaccount_number", type=WholeNumber(0, 127), default=0, show_default=True,
              help="subaccount that quotes")
@common
def mm_run(key_name, markets, levels, spread_bps, step_bps, size_usd, interval_s, subaccount_number) -> None:
    """Quote until SIGTERM / SIGINT (one log line per round), then cancel the quotes."""
    obj = click.get_current_context().obj
    size: Decimal = parse_decimal(size_usd, "--size-usd")
    if size <= 0:
        raise CliError("--size-usd must be positive")
    wanted = [m.strip() for m in markets.split(",") if m.strip()] if markets else None
    try:
        from node.mm.runner import run  # lazy: the CLI works without the market maker installed
    except ImportError as e:
        raise CliError(f"the market maker is not available in this installation ({e})") from None
    try:
        run(obj["node"], str(obj["home"]), key_name, wanted, levels, spread_bps, step_bps, size, interval_s,
            subaccount_number)
    except ValueError as e:  # bad settings (node.mm.quotes.QuoteError): one line
        raise CliError(str(e)) from None
