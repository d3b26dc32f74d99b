"""``perpd tx clob`` and ``perpd query clob``: orders in human units, the book, fills.

Sizes are coins (``--size 0.25`` BTC), prices USD per coin (``--price 64250``); both are converted exactly
(node/client/market.py) and checked against the market's step and tick before anything is signed. A tx command
prints height, code and hash, then one line per order action (its status, filled and remaining size, reason) and
one per fill of the tx; ``-o json`` prints all of it with the raw events.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import secrets

import click
from perpchain.v1 import tx_pb2

from app.lib.math import UINT64_MAX
from app.lib.units import format_scaled
from node.cli.common import (
    INT64_MAX,
    CliError,
    TxReport,
    WholeNumber,
    common,
    emit,
    event_attrs,
    humanize_reason,
    keyring,
    load_markets,
    owner_and_number,
    rpc,
    sign_and_broadcast_with,
    subaccount_number_option,
    tx_options,
    usdc_text,
)
from node.client.market import (
    LONG_TERM,
    SHORT_TERM,
    Market,
    base_quantums_to_size,
    batch_cancel_action,
    cancel_order_action,
    find_market,
    format_duration_ns,
    format_rfc3339_ns,
    fraction_to_ppm,
    market_of_pair,
    msg_orders,
    parse_decimal,
    parse_duration_ns,
    parse_rfc3339_ns,
    place_order_action,
    price_to_subticks,
    size_to_base_quantums,
    subticks_to_price,
)
from node.client.rpc import RpcClient, RpcError
from node.client.txbuilder import tx_hash

UINT32_MAX = (1 << 32) - 1
DEFAULT_GOOD_TIL_BLOCKS = 20  # short-term orders live this many blocks past the latest height by default
MAX_BATCH_CLIENT_IDS = 200  # app/clob/actions.py: a batch cancel lists at most 200 client ids


# --- reading tx results ------------------------------------------------------------------------------------------

def _coins(market: Market | None, quantums: str | None) -> str | None:
    if quantums is None:
        return None
    return base_quantums_to_size(market, int(quantums)) if market else f"{quantums} base quantums"


def humanize_action(attrs: dict[str, str], markets: list[Market]) -> dict:
    """An ``order_action`` event's attributes plus market, size, filled, remaining and price in human units."""
    market = market_of_pair(markets, int(attrs["clob_pair_id"])) if attrs.get("clob_pair_id", "").isdigit() else None
    out: dict = dict(attrs)
    out["market"] = market.ticker if market else attrs.get("clob_pair_id")
    for raw, human in (("quantums", "size"), ("filled_quantums", "filled"), ("remaining_quantums", "remaining")):
        if raw in attrs:
            out[human] = _coins(market, attrs[raw])
    if "subticks" in attrs and market is not None:
        out["price"] = subticks_to_price(market, int(attrs["subticks"]))
    return out


def action_line(a: dict, markets: list[Market]) -> str:
    """'  place BTC-USD buy 0.25 BTC client id 7: resting  filled 0 BTC  remaining 0.25 BTC  limit 64250 USD'."""
    market = next((m for m in markets if m.ticker == a.get("market")), None)
    base = market.base_asset if market else ""
    kind = a.get("kind", "?") + (f" ({a['step']})" if a.get("step") else "")
    head = f"  {kind} {a.get('market')}"
    if a.get("side"):
        head += f" {a['side']} {a.get('size')} {base}".rstrip()
    if a.get("client_id") is not None:
        head += f" client id {a['client_id']}"
    parts = [f"{head}: {a.get('status', '?')}"]
    if a.get("status") == "rejected":
        parts[0] += f" (code {a.get('code')}): {humanize_reason(a.get('reason', ''), market)}"
    else:
        if "filled" in a:
            parts.append(f"filled {a['filled']} {base}".rstrip())
        if "remaining" in a:
            if a.get("status") in ("partially_filled", "not_filled") and a["remaining"] != "0":
                # an IOC / market order: what did not fill is dropped, not resting
                parts.append(f"unfilled {a['remaining']}{' ' + base if base else ''} canceled (immediate-or-cancel)")
            else:
                parts.append(f"remaining {a['remaining']} {base}".rstrip())
        if "canceled" in a:
            parts.append(f"{a['canceled']} orders")
        if a.get("not_found"):
            parts.append(f"not resting: client id {a['not_found'].replace(',', ', ')}")
        if "price" in a:
            parts.append(f"limit {a['price']} {market.quote_asset if market else ''}".rstrip())
        if a.get("stopped"):
            parts.append(f"stopped: {a['stopped']}")
        if a.get("reason"):
            parts.append(a["reason"])
    return "  ".join(parts)


def humanize_fill(attrs: dict[str, str], markets: list[Market]) -> dict:
    """A ``fill`` event's attributes plus market, size, price, notional and fees in human units."""
    market = market_of_pair(markets, int(attrs["clob_pair_id"])) if attrs.get("clob_pair_id", "").isdigit() else None
    out: dict = dict(attrs)
    out["market"] = market.ticker if market else attrs.get("clob_pair_id")
    out["size"] = _coins(market, attrs.get("quantums"))
    if market is not None and "subticks" in attrs:
        out["price"] = subticks_to_price(market, int(attrs["subticks"]))
    for raw, human in (("quote_quantums", "notional_usdc"), ("taker_fee_quote_quantums", "taker_fee_usdc"),
                       ("maker_fee_quote_quantums", "maker_fee_usdc")):
        if raw in attrs:
            out[human] = usdc_text(attrs[raw])
    return out


def fill_line(f: dict, markets: list[Market]) -> str:
    market = next((m for m in markets if m.ticker == f.get("market")), None)
    base, quote = (market.base_asset, market.quote_asset) if market else ("", "")
    return (f"  fill {f.get('market')} {f.get('size')} {base} at {f.get('price', f.get('subticks'))} {quote}  "
            f"notional {f.get('notional_usdc')} USDC  taker {f.get('taker')}/{f.get('taker_number')} "
            f"{f.get('taker_side')} (client id {f.get('taker_client_id')})  maker {f.get('maker')}/"
            f"{f.get('maker_number')} (client id {f.get('maker_client_id')})  fees taker {f.get('taker_fee_usdc')} "
            f"maker {f.get('maker_fee_usdc')} USDC")


def humanize_removed(attrs: dict[str, str], markets: list[Market]) -> dict:
    """An ``order_removed`` event's attributes plus market and the size left, in human units."""
    market = market_of_pair(markets, int(attrs["clob_pair_id"])) if attrs.get("clob_pair_id", "").isdigit() else None
    out: dict = dict(attrs)
    out["market"] = market.ticker if market else attrs.get("clob_pair_id")
    out["remaining"] = _coins(market, attrs.get("remaining_quantums"))
    return out


def removed_line(r: dict, markets: list[Market]) -> str:
    """'  removed BTC-USD order perp1.../0 client id 701 long-term, 0.5 BTC left: self_trade'."""
    market = next((m for m in markets if m.ticker == r.get("market")), None)
    kind = "long-term" if r.get("order_flags") == str(LONG_TERM) else "short-term"
    return (f"  removed {r.get('market')} order {r.get('owner')}/{r.get('number')} client id {r.get('client_id')} "
            f"{kind}, {r.get('remaining')} {market.base_asset if market else ''} left: {r.get('reason')}")


def order_report(markets: list[Market], resting_hint: str = "") -> TxReport:
    """What a one-action order command prints after height/code/hash: its actions' statuses, its fills, the resting
    orders its matching removed (self-trade prevention, a maker failing its collateral check, a reduce-only maker
    with nothing to reduce: ``order_removed`` events other than its own cancels), and ``resting_hint`` when an order
    of it now rests on the book. ``failed_actions`` counts actions ``rejected`` or ``skipped``: the command then
    exits 1 after printing (common.broadcast_and_wait), so a script sees a refused order as a failure whether
    CheckTx or the block refused it."""
    def report(tx_result: dict) -> tuple[dict, list[str]]:
        events = tx_result.get("events") or []
        actions = [humanize_action(event_attrs(e), markets) for e in events if e.get("type") == "order_action"]
        fills = [humanize_fill(event_attrs(e), markets) for e in events if e.get("type") == "fill"]
        removed = [humanize_removed(attrs, markets) for attrs in
                   (event_attrs(e) for e in events if e.get("type") == "order_removed")
                   if attrs.get("reason") != "canceled"]
        lines = ([action_line(a, markets) for a in actions] + [fill_line(f, markets) for f in fills]
                 + [removed_line(r, markets) for r in removed])
        if resting_hint and any(a.get("status", "").endswith("resting") for a in actions):
            lines.append(resting_hint)
        failed = sum(1 for a in actions if a.get("status") in ("rejected", "skipped"))
        return {"events": events, "order_actions": actions, "fills": fills, "removed_orders": removed,
                "failed_actions": failed}, lines
    return report


# --- tx clob -----------------------------------------------------------------------------------------------------

@click.group("clob")
def tx_clob() -> None:
    """Place and cancel orders (sizes in coins, prices in USD; checked against step and tick before signing)."""


def order_options(f):
    """--market, --number and --from/--key, shared by every order command."""
    f = click.option("--from", "--key", "from_key", required=True, metavar="KEY",
                     help="key that signs and owns the order")(f)
    f = subaccount_number_option(f)
    return click.option("--market", "market_name", required=True, help="ticker (BTC-USD) or clob pair id")(f)


def _chain_view(client: RpcClient) -> tuple[int, int, dict]:
    """(latest height, its block time in ns, /clob/params) of the node."""
    status = client.status()["sync_info"]
    return (int(status["latest_block_height"]), parse_rfc3339_ns(status["latest_block_time"]),
            client.query_json("/clob/params"))


def _cancel_hint(market: Market, client_id: int, order: dict, number: int, from_key: str) -> str:
    """The line printed when the order rests: its expiry (short-term orders live only ~20 blocks by default) and the
    command that cancels it."""
    long_term = order["order_flags"] == LONG_TERM
    expiry = (f"until {format_rfc3339_ns(int(order['good_til_block_time_ns']))}" if long_term
              else f"until block {order['good_til_block']}")
    return (f"client id {client_id}, good {expiry} (cancel with: perpd tx clob cancel-order --market {market.ticker} "
            f"--client-id {client_id}{' --long-term' if long_term else ''}{f' --number {number}' if number else ''} "
            f"--from {from_key})")


def _good_til_block(height: int, window: int, requested: int | None) -> int:
    """The short-term expiry: requested (checked) or height + min(20, window)."""
    if requested is None:
        return height + min(DEFAULT_GOOD_TIL_BLOCKS, window)
    if not height < requested <= height + window:
        raise CliError(f"--good-til-block {requested} must be within {height + 1}..{height + window} (latest height "
                       f"{height} + short_block_window {window})")
    return requested


def limit_order_options(f):
    """--side, --size, --price, --tif, --reduce-only, --good-til-block, --good-til-time: a limit order's terms, shared
    by place-order and replace-order."""
    for option in reversed([
        click.option("--side", type=click.Choice(["buy", "sell"], case_sensitive=False), required=True),
        click.option("--size", required=True, help="coins, e.g. 0.25 (a multiple of the market's step)"),
        click.option("--price", required=True, help="limit price in USD per coin, e.g. 64250 (a multiple of the tick)"),
        click.option("--tif", type=click.Choice(["gtc", "ioc", "fok", "post-only"], case_sensitive=False),
                     default="gtc", show_default=True, help="time in force: gtc rests the remainder on the book"),
        click.option("--reduce-only", is_flag=True, help="may only shrink the position"),
        click.option("--good-til-block", type=WholeNumber(1, UINT64_MAX),
                     help="short-term expiry height [default: latest height + 20, at most + short_block_window]"),
        click.option("--good-til-time", metavar="DURATION",
                     help="long-term order living this long past the latest block time: 90s, 10m, 2h, 1d, 1.5s, 1h30m"),
    ]):
        f = option(f)
    return f


@dataclasses.dataclass
class LimitOrder:
    """A limit order's terms as given on the command line (checked offline by :meth:`check`)."""

    side: str
    size: str
    price: str
    tif: str
    reduce_only: bool
    good_til_block: int | None
    good_til_time: str | None

    def check(self) -> int | None:
        """The offline checks (before any RPC); returns the long-term duration in ns, if any."""
        self.side, self.tif = self.side.lower(), self.tif.lower()
        parse_decimal(self.size, "size")
        parse_decimal(self.price, "price")
        if self.good_til_block is not None and self.good_til_time is not None:
            raise CliError("give --good-til-block (short-term) or --good-til-time (long-term), not both")
        duration_ns = parse_duration_ns(self.good_til_time) if self.good_til_time is not None else None
        if duration_ns is not None and self.tif in ("ioc", "fok"):
            raise CliError(f"a long-term (--good-til-time) order cannot be {self.tif}: it would never rest")
        return duration_ns

    def build(self, client: RpcClient, market: Market, duration_ns: int | None, client_id: int,
              subaccount_number: int, keep_until_ns: int = 0) -> tuple[tx_pb2.OrderAction, dict]:
        """The PlaceOrder action in chain units (step, tick and expiry window checked against the chain) and the
        order as printed. ``keep_until_ns``: without an expiry option, a long-term order good until this block time
        (a replacement keeps the replaced order's)."""
        quantums = size_to_base_quantums(market, self.size)
        subticks = price_to_subticks(market, self.price)
        height, block_time_ns, params = _chain_view(client)
        if keep_until_ns and duration_ns is None and self.good_til_block is None:
            gtb, gtbt = 0, keep_until_ns
        elif duration_ns is None:
            gtb, gtbt = _good_til_block(height, int(params["short_block_window"]), self.good_til_block), 0
        else:
            window_ns = int(params["max_stateful_window_ns"])
            if duration_ns > window_ns:
                raise CliError(f"--good-til-time {self.good_til_time} is beyond the longest window "
                               f"{format_duration_ns(window_ns)}")
            gtb, gtbt = 0, block_time_ns + duration_ns
        action = place_order_action(market, side=self.side, base_quantums=quantums, subticks=subticks,
                                    client_id=client_id, subaccount_number=subaccount_number, good_til_block=gtb,
                                    good_til_block_time_ns=gtbt, time_in_force=self.tif, reduce_only=self.reduce_only)
        order = {"market": market.ticker, "side": self.side, "size": base_quantums_to_size(market, quantums),
                 "quantums": str(quantums), "price": subticks_to_price(market, subticks), "subticks": str(subticks),
                 "time_in_force": self.tif, "reduce_only": self.reduce_only, "subaccount_number": subaccount_number,
                 "client_id": client_id, "order_flags": LONG_TERM if gtbt else SHORT_TERM, "good_til_block": str(gtb),
                 "good_til_block_time_ns": str(gtbt)}
        return action, order


@tx_clob.command("place-order")
@order_options
@limit_order_options
@click.option("--client-id", type=WholeNumber(0, UINT32_MAX), help="order id of your choice [default: random]")
@tx_options
def tx_place_order(market_name, subaccount_number, from_key, side, size, price, tif, reduce_only, good_til_block,
                   good_til_time, client_id, chain_id, nonce, memo, no_wait) -> None:
    """Place a limit order: --size coins at --price USD per coin."""
    obj = click.get_current_context().obj
    terms = LimitOrder(side, size, price, tif, reduce_only, good_til_block, good_til_time)
    duration_ns = terms.check()
    key = keyring(obj).get(from_key)
    client_id = secrets.randbits(32) if client_id is None else client_id
    with rpc(obj) as client:
        markets = load_markets(client)
        market = find_market(markets, market_name)
        action, order = terms.build(client, market, duration_ns, client_id, subaccount_number)
        hint = _cancel_hint(market, client_id, order, subaccount_number, from_key)
        sign_and_broadcast_with(obj, client, key, [msg_orders(key.address, [action])], chain_id, nonce, memo,
                                no_wait, report=order_report(markets, hint), extra={"client_id": client_id,
                                                                                    "order": order},
                                mempool_lines=[hint], humanize=lambda log: humanize_reason(log, market))


@tx_clob.command("replace-order")
@order_options
@click.option("--client-id", type=WholeNumber(0, UINT32_MAX), required=True, help="the resting order to replace")
@click.option("--long-term", is_flag=True, help="the resting order was placed with --good-til-time")
@limit_order_options
@click.option("--new-client-id", type=WholeNumber(0, UINT32_MAX),
              help="client id of the new order [default: --client-id]")
@tx_options
def tx_replace_order(market_name, subaccount_number, from_key, client_id, long_term, side, size, price, tif,
                     reduce_only, good_til_block, good_til_time, new_client_id, chain_id, nonce, memo,
                     no_wait) -> None:
    """Cancel a resting order and place a new one in one action (cancel-replace): the new order is placed only if
    the old one was still resting, so a quote is never doubled, nor replaced after it filled. Without
    --good-til-block or --good-til-time the new order keeps the old one's kind and, for a long-term order, its
    good-til time."""
    obj = click.get_current_context().obj
    terms = LimitOrder(side, size, price, tif, reduce_only, good_til_block, good_til_time)
    duration_ns = terms.check()
    key = keyring(obj).get(from_key)
    new_client_id = client_id if new_client_id is None else new_client_id
    with rpc(obj) as client:
        markets = load_markets(client)
        market = find_market(markets, market_name)
        keep_until_ns = 0
        if long_term and good_til_block is None and good_til_time is None:
            keep_until_ns = _resting_good_til_time(client, key.address, subaccount_number, market, client_id)
        place, order = terms.build(client, market, duration_ns, new_client_id, subaccount_number, keep_until_ns)
        old = cancel_order_action(market, client_id, subaccount_number, long_term).cancel.order_id
        action = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(order_id=old, place=place.place))
        hint = _cancel_hint(market, new_client_id, order, subaccount_number, from_key)
        sign_and_broadcast_with(obj, client, key, [msg_orders(key.address, [action])], chain_id, nonce, memo,
                                no_wait, report=order_report(markets, hint),
                                extra={"client_id": new_client_id, "replaced_client_id": client_id, "order": order},
                                mempool_lines=[hint], humanize=lambda log: humanize_reason(log, market))


@tx_clob.command("market-order")
@order_options
@click.option("--side", type=click.Choice(["buy", "sell"], case_sensitive=False), required=True)
@click.option("--size", required=True, help="coins, e.g. 0.1 (a multiple of the market's step)")
@click.option("--slippage", help="worst accepted price as a fraction off the oracle price, e.g. 0.05 "
                                 "[default: the chain's default_market_slippage_ppm]")
@click.option("--reduce-only", is_flag=True, help="may only shrink the position")
@click.option("--client-id", type=WholeNumber(0, UINT32_MAX), help="order id of your choice [default: random]")
@tx_options
def tx_market_order(market_name, subaccount_number, from_key, side, size, slippage, reduce_only, client_id,
                    chain_id, nonce, memo, no_wait) -> None:
    """Market order: immediate-or-cancel, bounded by the oracle price moved by --slippage against you."""
    obj = click.get_current_context().obj
    side = side.lower()
    parse_decimal(size, "size")
    ppm = fraction_to_ppm(slippage, "slippage") if slippage is not None else None
    key = keyring(obj).get(from_key)
    client_id = secrets.randbits(32) if client_id is None else client_id
    with rpc(obj) as client:
        markets = load_markets(client)
        market = find_market(markets, market_name)
        quantums = size_to_base_quantums(market, size)
        height, _, params = _chain_view(client)
        ppm = int(params["default_market_slippage_ppm"]) if ppm is None else ppm
        max_ppm = int(params["max_market_slippage_ppm"])
        if max_ppm and ppm > max_ppm:  # 0: the chain sets no bound (app/clob/actions.validate_place)
            raise CliError(f"slippage {slippage if slippage is not None else format_scaled(ppm, -6)} is above the "
                           f"chain's maximum {format_scaled(max_ppm, -6)} ({max_ppm} ppm)")
        gtb = _good_til_block(height, int(params["short_block_window"]), None)
        action = place_order_action(market, side=side, base_quantums=quantums, subticks=0, client_id=client_id,
                                    subaccount_number=subaccount_number, good_til_block=gtb, time_in_force="ioc",
                                    reduce_only=reduce_only, market_slippage_ppm=ppm)
        order = {"market": market.ticker, "side": side, "size": base_quantums_to_size(market, quantums),
                 "quantums": str(quantums), "market_slippage_ppm": ppm, "reduce_only": reduce_only,
                 "subaccount_number": subaccount_number, "client_id": client_id, "good_til_block": str(gtb)}
        sign_and_broadcast_with(obj, client, key, [msg_orders(key.address, [action])], chain_id, nonce, memo,
                                no_wait, report=order_report(markets), extra={"client_id": client_id, "order": order},
                                mempool_lines=[f"client id {client_id}"],
                                humanize=lambda log: humanize_reason(log, market))


@tx_clob.command("cancel-order")
@order_options
@click.option("--client-id", type=WholeNumber(0, UINT32_MAX), required=True)
@click.option("--long-term", is_flag=True, help="the order was placed with --good-til-time")
@tx_options
def tx_cancel_order(market_name, subaccount_number, from_key, client_id, long_term, chain_id, nonce, memo,
                    no_wait) -> None:
    """Cancel one resting order by its client id."""
    obj = click.get_current_context().obj
    key = keyring(obj).get(from_key)
    with rpc(obj) as client:
        markets = load_markets(client)
        market = find_market(markets, market_name)
        _check_cancel_kind(client, key.address, subaccount_number, market, client_id, long_term)
        action = cancel_order_action(market, client_id, subaccount_number, long_term)
        sign_and_broadcast_with(obj, client, key, [msg_orders(key.address, [action])], chain_id, nonce, memo,
                                no_wait, report=order_report(markets),
                                humanize=lambda log: humanize_reason(log, market))


def _resting_good_til_time(client: RpcClient, owner: str, number: int, market: Market, client_id: int) -> int:
    """The good-til block time (ns) of the resting long-term order a replacement keeps; refuses when none rests (the
    chain would skip the placement: nothing to replace)."""
    for o in client.query_json(f"/clob/orders/{owner}/{number}")["orders"]:
        if o["market"] == market.ticker and o["client_id"] == client_id and o["order_flags"] == LONG_TERM:
            return int(o["good_til_block_time_ns"])
    raise CliError(f"no long-term order with client id {client_id} rests on {market.ticker} (subaccount {number}): "
                   "nothing to replace; `perpd query clob orders` lists the resting ones")


def _check_cancel_kind(client: RpcClient, owner: str, number: int, market: Market, client_id: int,
                       long_term: bool) -> None:
    """A cancel names the order's kind (the chain keys orders by client id and kind): when no order of the named
    kind rests but one of the other kind does, say so instead of sending a cancel the chain would refuse as
    order_not_found. Otherwise the chain decides (the order may still be on its way in)."""
    resting = {o["order_flags"] for o in client.query_json(f"/clob/orders/{owner}/{number}")["orders"]
               if o["market"] == market.ticker and o["client_id"] == client_id}
    wanted = LONG_TERM if long_term else SHORT_TERM
    if wanted not in resting and resting:
        named, other = ("long-term", "short-term") if long_term else ("short-term", "long-term")
        raise CliError(f"no {named} order with client id {client_id} rests on {market.ticker}; a {other} one does: "
                       + ("add --long-term" if not long_term else "leave out --long-term"))


def parse_client_ids(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3] (uint32 each, at most 200, no duplicates)."""
    ids = []
    for part in (p.strip() for p in text.split(",")):
        if not part.isascii() or not part.isdigit() or int(part) > UINT32_MAX:
            raise CliError(f"--client-ids: {part!r} is not a client id (0..{UINT32_MAX})")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) > MAX_BATCH_CLIENT_IDS:
        raise CliError(f"--client-ids lists {len(ids)} ids; a batch cancel takes at most {MAX_BATCH_CLIENT_IDS}")
    return ids


@tx_clob.command("batch-cancel")
@order_options
@click.option("--client-ids", help="comma-separated client ids [default: every resting order of the kind]")
@click.option("--long-term", is_flag=True, help="cancel long-term (--good-til-time) orders instead of short-term")
@tx_options
def tx_batch_cancel(market_name, subaccount_number, from_key, client_ids, long_term, chain_id, nonce, memo,
                    no_wait) -> None:
    """Cancel the listed client ids on one market, or all your resting short-term (or --long-term) orders there."""
    obj = click.get_current_context().obj
    # an empty --client-ids "" is refused like an empty element, never read as "every order" (a bot passing an
    # empty variable must not pull all its quotes)
    ids = parse_client_ids(client_ids) if client_ids is not None else []
    key = keyring(obj).get(from_key)
    with rpc(obj) as client:
        markets = load_markets(client)
        market = find_market(markets, market_name)
        action = batch_cancel_action(market, ids, subaccount_number, long_term)
        sign_and_broadcast_with(obj, client, key, [msg_orders(key.address, [action])], chain_id, nonce, memo,
                                no_wait, report=order_report(markets),
                                humanize=lambda log: humanize_reason(log, market))


# --- query clob --------------------------------------------------------------------------------------------------

@click.group("clob")
def query_clob() -> None:
    """Order book, open orders, fills and parameters."""


def _table(rows: list[list[str]], align: str) -> list[str]:
    """Rows as columns padded to the widest cell ('<' left, '>' right per column)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(align))]
    return ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip() for r in rows]


def orderbook_text(res: dict, market: Market | None) -> str:
    """Asks above bids (the best of each next to the spread), price and size columns."""
    base = market.base_asset if market else ""
    head = f"{res['market']} (clob pair {res['clob_pair_id']}, {res['status']}) at height {res['height']}"
    rows = [["", "price", f"size {base}".rstrip(), "orders"]]
    rows += [["ask", a["price"], a["size"], str(a["orders"])] for a in reversed(res["asks"])]
    split = len(rows)
    rows += [["bid", b["price"], b["size"], str(b["orders"])] for b in res["bids"]]
    lines = _table(rows, "<>>>")
    if res["asks"] and res["bids"] and market is not None:
        spread = subticks_to_price(market, int(res["asks"][0]["subticks"]) - int(res["bids"][0]["subticks"]))
        middle = f"--- spread {spread} {market.quote_asset} ---"
    else:
        missing = [name for name, levels in (("no asks", res["asks"]), ("no bids", res["bids"])) if not levels]
        middle = f"--- {' / '.join(missing) or 'spread -'} ---"
    return "\n".join([head, lines[0], *lines[1:split], middle, *lines[split:]])


@query_clob.command("orderbook")
@click.argument("market_name", metavar="MARKET")
@click.option("--depth", type=WholeNumber(1, 1000), default=20, show_default=True, help="price levels per side")
@common
def query_orderbook(market_name: str, depth: int) -> None:
    """The book of MARKET (ticker or clob pair id): price levels with total size and order count."""
    obj = click.get_current_context().obj
    with rpc(obj) as client:
        markets = load_markets(client)
        market = find_market(markets, market_name)
        height, res = client.query_json_at(f"/clob/orderbook/{market.ticker}/{depth}")
    res = {**res, "height": height}
    emit(obj, res, orderbook_text(res, market))


def order_text(o: dict, markets: list[Market]) -> str:
    expiry = (f"until block {o['good_til_block']}" if o["order_flags"] == 0
              else f"until {format_rfc3339_ns(int(o['good_til_block_time_ns']))}")
    market = next((m for m in markets if m.ticker == o["market"]), None)
    base, quote = (f" {market.base_asset}", f" {market.quote_asset}") if market else ("", "")
    return (f"{o['market']:10s} {o['side']:4s} {o['size']}{base} @ {o['price']}{quote}  remaining "
            f"{o['remaining']}{base}  "
            f"client id {o['client_id']}  subaccount {o['subaccount_number']}  {o['time_in_force']}"
            f"{'  reduce-only' if o['reduce_only'] else ''}  {'short' if o['order_flags'] == 0 else 'long'}-term "
            f"{expiry}")


@query_clob.command("orders")
@click.argument("who", metavar="OWNER[/NUMBER]")
@common
def query_orders(who: str) -> None:
    """Resting orders of OWNER (key name or address): all its subaccounts, or only /NUMBER."""
    obj = click.get_current_context().obj
    owner, number = owner_and_number(obj, who, default_number=None)
    with rpc(obj) as client:
        height, res = client.query_json_at(f"/clob/orders/{owner}" + (f"/{number}" if number is not None else ""))
        markets = load_markets(client)
    res = {**res, "height": height}
    emit(obj, res, "\n".join([f"resting orders at height {height}:", *(order_text(o, markets) for o in res["orders"])])
         if res["orders"] else f"(no resting orders at height {height})")


def _percent_of_ppm(ppm: int) -> str:
    return f"{format_scaled(ppm, -4)}%"  # ppm / 10^4 = percent


@query_clob.command("params")
@common
def query_params() -> None:
    """Order-book parameters: expiry windows, open-order limits (per market, and equity tiers per subaccount),
    market-order slippage, fee tiers."""
    obj = click.get_current_context().obj
    with rpc(obj) as client:
        res = client.query_json("/clob/params")
    window_ns = int(res["max_stateful_window_ns"])
    lines = [f"short_block_window: {res['short_block_window']} blocks (short-term good-til-block at most this far "
             f"ahead)",
             f"max_stateful_window: {format_duration_ns(window_ns)} ({window_ns} ns; long-term good-til-time at most "
             f"this far ahead)",
             f"max_open_orders_per_subaccount: {res['max_open_orders_per_subaccount']} per market",
             f"default_market_slippage: {_percent_of_ppm(int(res['default_market_slippage_ppm']))} "
             f"({res['default_market_slippage_ppm']} ppm)",
             f"max_market_slippage: {_percent_of_ppm(int(res['max_market_slippage_ppm']))} "
             f"({res['max_market_slippage_ppm']} ppm)",
             "max_order_actions_per_block: " + (f"{res['max_order_actions_per_block']} units (place, cancel, batch "
                                                "cancel 1; cancel-replace 2)" if res["max_order_actions_per_block"]
                                                else "no cap"),
             "fee tiers:"]
    rows = [["tier", "30d volume >= USDC", "total share", "maker share", "maker fee", "taker fee"]]
    rows += [[t["name"], usdc_text(t["absolute_volume_requirement_quote_quantums"]),
              _percent_of_ppm(int(t["total_volume_share_requirement_ppm"])),
              _percent_of_ppm(int(t["maker_volume_share_requirement_ppm"])),
              _percent_of_ppm(int(t["maker_fee_ppm"])), _percent_of_ppm(int(t["taker_fee_ppm"]))]
             for t in res["fee_tiers"]]
    lines += ["  " + line for line in _table(rows, "<>>>>>")]
    for kind, field in (("short-term", "short_term_order_equity_tiers"), ("long-term", "stateful_order_equity_tiers")):
        tiers = res[field]
        if not tiers:
            lines.append(f"open {kind} orders per subaccount: no equity-tier cap")
            continue
        lines.append(f"open {kind} orders per subaccount (equity tiers, all markets):")
        rows = [["total net collateral >= USDC", "open orders"]]
        rows += [[usdc_text(t["usd_tnc_required_quote_quantums"]), str(t["limit"])] for t in tiers]
        lines += ["  " + line for line in _table(rows, "<>")]
    emit(obj, res, "\n".join(lines))


@query_clob.command("fills")
@click.option("--height", type=WholeNumber(1, INT64_MAX), help="block height [default: the latest]")
@common
def query_fills(height: int | None) -> None:
    """Every fill of block HEIGHT (the ``fill`` events of its tx results, from CometBFT's block_results)."""
    obj = click.get_current_context().obj
    with rpc(obj) as client:
        explicit = height is not None
        height = height if explicit else client.height()
        try:
            results = client.call("block_results", height=str(height))
        except RpcError as e:
            latest = re.search(r"must be less than or equal to the current blockchain height (\d+)", str(e))
            if explicit and latest:
                raise CliError(f"block {height} does not exist yet: the latest height is {latest.group(1)}") from None
            # CometBFT stores the latest block before it has executed it: its results may not be saved yet
            if explicit or "could not find results" not in str(e):
                raise
            height -= 1
            results = client.call("block_results", height=str(height))
        txs = client.block(height)["block"]["data"]["txs"] or []
        markets = load_markets(client)
    hashes = [tx_hash(base64.b64decode(t)) for t in txs]
    fills = []
    for i, r in enumerate(results.get("txs_results") or []):
        for e in r.get("events") or []:
            if e.get("type") == "fill":
                fills.append({"tx_index": i, "tx_hash": hashes[i] if i < len(hashes) else None,
                              **humanize_fill(event_attrs(e), markets)})
    for e in results.get("finalize_block_events") or []:
        if e.get("type") == "fill":
            fills.append({"tx_index": None, "tx_hash": None, **humanize_fill(event_attrs(e), markets)})
    out = {"height": height, "fills": fills}
    lines = [f"block {height}: {len(fills)} fill{'s' if len(fills) != 1 else ''}"]
    for f in fills:
        where = f"tx {f['tx_index']} {f['tx_hash']}" if f["tx_index"] is not None else "block"
        lines.append(f"{where}\n" + fill_line(f, markets))
    emit(obj, out, "\n".join(lines))
