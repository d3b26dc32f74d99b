"""``perpd tx markets``: the chain authority's market administration (status, liquidity tiers, new perpetuals, fee
and equity tiers, the clob's limits). Every command is signed by the key named with ``--from``; the chain refuses
anyone but the authority."""

from __future__ import annotations

import json
import pathlib

import click
from google.protobuf import json_format
from perpchain.v1 import exchange_pb2, tx_pb2

from node.cli.common import (
    INT64_MAX,
    CliError,
    WholeNumber,
    keyring,
    load_markets,
    rpc,
    sign_and_broadcast_with,
    tx_options,
)
from node.client.market import find_market, fraction_to_ppm, parse_decimal, parse_duration_ns
from node.client.units import usdc_to_quote_quantums

STATUSES = {"active": 1, "post-only": 2, "cancel-only": 3, "paused": 4}
TYPES = {"cross": exchange_pb2.MARKET_TYPE_CROSS, "isolated": exchange_pb2.MARKET_TYPE_ISOLATED}


@click.group("markets")
def tx_markets() -> None:
    """Market administration by the chain authority (status, liquidity tiers, new perpetuals, fee tiers)."""


def _send(from_key: str, build, chain_id, nonce, memo, no_wait) -> None:
    obj = click.get_current_context().obj
    key = keyring(obj).get(from_key)
    with rpc(obj) as client:
        msg = build(client, key.address)
        sign_and_broadcast_with(obj, client, key, [msg], chain_id, nonce, memo, no_wait)


def _load_json(path: str, what: str) -> object:
    try:
        return json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as e:
        raise CliError(f"{what} {path}: not JSON ({e})") from None


@tx_markets.command("set-status")
@click.option("--market", "market_name", required=True, help="ticker (BTC-USD) or clob pair id")
@click.option("--status", type=click.Choice(sorted(STATUSES)), required=True)
@click.option("--from", "from_key", required=True, help="the chain authority's key")
@tx_options
def set_status(market_name, status, from_key, chain_id, nonce, memo, no_wait) -> None:
    """Change a market's status: active, post-only, cancel-only or paused (reopen in stages: cancel-only ->
    post-only -> active)."""
    def build(client, authority):
        market = find_market(load_markets(client), market_name)
        return tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(
            authority=authority, clob_pair_id=market.clob_pair_id, status=STATUSES[status]))
    _send(from_key, build, chain_id, nonce, memo, no_wait)


@tx_markets.command("update-perpetual")
@click.option("--market", "market_name", required=True, help="ticker (BTC-USD) or clob pair id")
@click.option("--tier", type=WholeNumber(0, (1 << 32) - 1), help="move it to this liquidity tier id")
@click.option("--type", "market_type", type=click.Choice(sorted(TYPES)),
              help="cross or isolated (only while it has no open interest)")
@click.option("--from", "from_key", required=True, help="the chain authority's key")
@tx_options
def update_perpetual(market_name, tier, market_type, from_key, chain_id, nonce, memo, no_wait) -> None:
    """Move a perpetual to another liquidity tier and/or market type."""
    if tier is None and market_type is None:
        raise CliError("nothing to change: give --tier and/or --type")

    def build(client, authority):
        market = find_market(load_markets(client), market_name)
        return tx_pb2.Msg(update_perpetual=tx_pb2.MsgUpdatePerpetual(
            authority=authority, perpetual_id=market.perpetual_id, liquidity_tier=tier or 0,
            set_liquidity_tier=tier is not None, market_type=TYPES[market_type] if market_type else 0))
    _send(from_key, build, chain_id, nonce, memo, no_wait)


@tx_markets.command("upsert-tier")
@click.option("--id", "tier_id", type=WholeNumber(0, (1 << 32) - 1), required=True)
@click.option("--name", required=True)
@click.option("--initial-margin", required=True, help="fraction, e.g. 0.05 (5 %)")
@click.option("--maintenance-fraction", required=True, help="fraction of the initial margin, e.g. 0.6")
@click.option("--impact-notional", required=True, help="USDC")
@click.option("--oi-lower-cap", default="0", show_default=True, help="USDC of open interest where IM scaling starts")
@click.option("--oi-upper-cap", default="0", show_default=True, help="USDC where IM reaches 100 %; 0 = no scaling")
@click.option("--from", "from_key", required=True, help="the chain authority's key")
@tx_options
def upsert_tier(tier_id, name, initial_margin, maintenance_fraction, impact_notional, oi_lower_cap, oi_upper_cap,
                from_key, chain_id, nonce, memo, no_wait) -> None:
    """Create or change a liquidity tier (margins of every position in it change from this tx on)."""
    def usdc_or_zero(text: str) -> int:
        return 0 if text.strip() in ("0", "0.0") else usdc_to_quote_quantums(text)

    tier = exchange_pb2.LiquidityTier(
        id=tier_id, name=name, initial_margin_ppm=_fraction_ppm(initial_margin, "--initial-margin"),
        maintenance_fraction_ppm=_fraction_ppm(maintenance_fraction, "--maintenance-fraction"),
        impact_notional_quote_quantums=usdc_to_quote_quantums(impact_notional),
        open_interest_lower_cap_quote_quantums=usdc_or_zero(oi_lower_cap),
        open_interest_upper_cap_quote_quantums=usdc_or_zero(oi_upper_cap))
    _send(from_key, lambda client, authority: tx_pb2.Msg(upsert_liquidity_tier=tx_pb2.MsgUpsertLiquidityTier(
        authority=authority, tier=tier)), chain_id, nonce, memo, no_wait)


def _fraction_ppm(text: str, what: str) -> int:
    """'1' (however written: '1.0', '1.00') -> 1_000_000, else fraction_to_ppm ('0.05' -> 50_000)."""
    stripped = text.strip()
    whole, _, frac = stripped.partition(".")
    return 1_000_000 if whole == "1" and set(frac) <= {"0"} else fraction_to_ppm(text, what)


@tx_markets.command("create-perpetual")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--from", "from_key", required=True, help="the chain authority's key")
@tx_options
def create_perpetual(spec, from_key, chain_id, nonce, memo, no_wait) -> None:
    """A new perpetual and its clob pair on an existing oracle market, from a JSON file
    {"perpetual": {...}, "clob_pair": {...}} in the genesis format (docs/exchange.md)."""
    doc = _load_json(spec, "spec")
    try:
        perp = json_format.ParseDict(doc["perpetual"], exchange_pb2.Perpetual())
        pair = json_format.ParseDict(doc["clob_pair"], exchange_pb2.ClobPair())
    except (KeyError, TypeError, json_format.ParseError) as e:
        raise CliError(f"spec {spec}: needs 'perpetual' and 'clob_pair' objects ({e})") from None
    _send(from_key, lambda client, authority: tx_pb2.Msg(create_perpetual=tx_pb2.MsgCreatePerpetual(
        authority=authority, perpetual=perp, clob_pair=pair)), chain_id, nonce, memo, no_wait)


@tx_markets.command("set-fee-tiers")
@click.argument("tiers", type=click.Path(exists=True, dir_okay=False))
@click.option("--from", "from_key", required=True, help="the chain authority's key")
@tx_options
def set_fee_tiers(tiers, from_key, chain_id, nonce, memo, no_wait) -> None:
    """Replace the fee tiers with a JSON list of FeeTier objects (genesis format, ppm)."""
    doc = _load_json(tiers, "tiers")
    try:
        parsed = [json_format.ParseDict(t, exchange_pb2.FeeTier()) for t in doc]
    except (TypeError, json_format.ParseError) as e:
        raise CliError(f"tiers {tiers}: a JSON list of fee tiers is needed ({e})") from None
    _send(from_key, lambda client, authority: tx_pb2.Msg(set_fee_tiers=tx_pb2.MsgSetFeeTiers(
        authority=authority, fee_tiers=parsed)), chain_id, nonce, memo, no_wait)


@tx_markets.command("set-equity-tiers")
@click.argument("tiers", type=click.Path(exists=True, dir_okay=False))
@click.option("--from", "from_key", required=True, help="the chain authority's key")
@tx_options
def set_equity_tiers(tiers, from_key, chain_id, nonce, memo, no_wait) -> None:
    """Replace both equity-tier lists with a JSON object {"short_term_order_equity_tiers": [...],
    "stateful_order_equity_tiers": [...]} of {"usd_tnc_required_quote_quantums", "limit"} tiers (genesis format,
    ascending; an empty or missing list = no cap)."""
    doc = _load_json(tiers, "tiers")
    try:
        msg = json_format.ParseDict(doc, tx_pb2.MsgSetEquityTiers())
    except (TypeError, json_format.ParseError) as e:
        raise CliError(f"tiers {tiers}: an object with short_term_order_equity_tiers and "
                       f"stateful_order_equity_tiers lists is needed ({e})") from None
    if msg.authority:
        raise CliError(f"tiers {tiers}: 'authority' comes from --from, not the file")
    _send(from_key, lambda client, authority: tx_pb2.Msg(set_equity_tiers=tx_pb2.MsgSetEquityTiers(
        authority=authority, short_term_order_equity_tiers=msg.short_term_order_equity_tiers,
        stateful_order_equity_tiers=msg.stateful_order_equity_tiers)), chain_id, nonce, memo, no_wait)


@tx_markets.command("set-clob-limits")
@click.option("--short-block-window", type=WholeNumber(1, (1 << 32) - 1),
              help="blocks a short-term order may live: height <= good-til-block <= height + this")
@click.option("--max-stateful-window",
              help="longest life of a long-term order past the block time: 30d, 95d, 12h, 1.5s")
@click.option("--max-open-orders", type=WholeNumber(0, (1 << 32) - 1),
              help="resting orders per subaccount and market (0 = no cap)")
@click.option("--default-market-slippage", help="market orders' bound when none is given, fraction of the oracle "
                                                 "price: 0.05 = 5 %")
@click.option("--max-market-slippage", help="the chain's bound on a market order's slippage, fraction of the oracle "
                                             "price (0 = no bound)")
@click.option("--max-order-actions-per-block", type=WholeNumber(0, (1 << 32) - 1),
              help="order-action units one block may carry: place, cancel, batch cancel 1, cancel-replace 2 "
                   "(0 = no cap, else at least 400)")
@click.option("--from", "from_key", required=True, help="the chain authority's key")
@tx_options
def set_clob_limits(short_block_window, max_stateful_window, max_open_orders, default_market_slippage,
                    max_market_slippage, max_order_actions_per_block, from_key, chain_id, nonce, memo, no_wait) -> None:
    """Change any of the clob's scalar limits (MsgSetClobLimits); what is not given keeps its value. The chain
    refuses (721) a result that breaks the genesis rules. `perpd query clob params` shows the current values."""
    fields = {"short_block_window": short_block_window, "max_open_orders_per_subaccount": max_open_orders,
              "max_order_actions_per_block": max_order_actions_per_block}
    if max_stateful_window is not None:
        fields["max_stateful_window_ns"] = parse_duration_ns(max_stateful_window)
        if fields["max_stateful_window_ns"] > INT64_MAX:
            raise CliError(f"--max-stateful-window {max_stateful_window.strip()} is beyond the chain's int64 "
                           "nanoseconds (about 106 751 days)")
    if default_market_slippage is not None:
        fields["default_market_slippage_ppm"] = fraction_to_ppm(default_market_slippage, "--default-market-slippage")
    if max_market_slippage is not None:
        no_bound = parse_decimal(max_market_slippage, "--max-market-slippage") == 0  # '0', '0.00', '.0': no bound
        fields["max_market_slippage_ppm"] = 0 if no_bound else fraction_to_ppm(max_market_slippage,
                                                                              "--max-market-slippage")
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields:
        raise CliError("nothing to change: give at least one limit (see --help)")
    _send(from_key, lambda client, authority: tx_pb2.Msg(set_clob_limits=tx_pb2.MsgSetClobLimits(
        authority=authority, **fields)), chain_id, nonce, memo, no_wait)
