"""What every ``perpd`` command group shares: --home/--node/-o, output and error printing, the RPC client and
keyring of the current command, address resolution, signing and broadcasting.

Every failure prints one ``Error: ...`` line (node.cli.main turns exceptions into it); a command raises
:class:`CliError` for a failure it can explain.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import sys
from typing import Callable

import click

from app.lib.address import decode_address_or_none
from app.lib.math import UINT64_MAX
from app.lib.units import format_scaled
from app.subaccounts.state import MAX_SUBACCOUNT_NUMBER
from node.client.keys import Keyring, KeyError_
from node.client.market import Market, base_quantums_to_size, markets_from_query, subticks_to_price
from node.client.rpc import RpcClient, RpcError
from node.client.txbuilder import NoNonceLeft, default_nonce, sign_tx, tx_hash

DEFAULT_HOME = os.environ.get("PERPD_HOME", str(pathlib.Path.home() / ".perpd"))
DEFAULT_NODE = os.environ.get("PERPD_NODE", "http://127.0.0.1:26657")
DEFAULT_LOCALNET = os.environ.get("PERPD_LOCALNET_DIR", ".localnet")
INT64_MAX = (1 << 63) - 1  # CometBFT heights are int64

# A committed tx's result (CometBFT's ``tx_result``) -> extra JSON fields and extra text lines for the output.
TxReport = Callable[[dict], tuple[dict, list[str]]]


class WholeNumber(click.IntRange):
    """click.IntRange named for users: "'abc' is not a valid whole number." instead of Click's "... is not a valid
    integer range."; out-of-range values keep Click's "-1 is not in the range 0<=x<=4294967295."."""

    name = "whole number"


class CliError(click.ClickException):
    """One clear line, exit code 1."""


def emit(ctx_obj: dict, data, text: str | None = None) -> None:
    if ctx_obj.get("output") == "json" or text is None:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text)


def fail(ctx_obj: dict, data, text: str) -> None:
    """A failed tx: JSON on stdout with -o json, else one ``Error:`` line on stderr; exit 1 either way."""
    if ctx_obj.get("output") == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(f"Error: {text}", err=True)
    sys.exit(1)


OUTPUT = {"mode": "text"}  # the running command's -o, for node/cli/main.py's error lines


def error_json(message: str, stage: str) -> None:
    """Under ``-o json``, an error caught before or outside a tx result (``stage`` client: a refused argument, an
    unknown key or market; rpc: the node's answer) is a JSON object on stdout too, so a JSON consumer always gets
    one; the ``Error:`` line still goes to stderr."""
    if OUTPUT["mode"] == "json":
        click.echo(json.dumps({"error": message, "stage": stage}, indent=2, sort_keys=True))


def common(f):
    """--home / --node / -o on every command."""
    @click.option("--home", default=DEFAULT_HOME, show_default=True, help="node / keyring home folder")
    @click.option("--node", "node_url", default=DEFAULT_NODE, show_default=True, help="CometBFT RPC address")
    @click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
    @click.pass_context
    @functools.wraps(f)
    def wrapper(ctx, home, node_url, output, *args, **kwargs):
        ctx.ensure_object(dict)
        ctx.obj.update(home=pathlib.Path(home), node=node_url, output=output)
        OUTPUT["mode"] = output
        return ctx.invoke(f, *args, **kwargs)
    return wrapper


def rpc(ctx_obj: dict) -> RpcClient:
    return RpcClient(ctx_obj["node"])


def keyring(ctx_obj: dict) -> Keyring:
    return Keyring(ctx_obj["home"] / "keys")


def current_obj() -> dict:
    """The CLI context object (home, node, output) of the running command."""
    return click.get_current_context().obj


def query_json(path: str) -> tuple[dict, dict]:
    """(CLI context object, JSON answer of the app query ``path``) for the current command."""
    obj = current_obj()
    with rpc(obj) as client:
        return obj, client.query_json(path)


def resolve_address(obj: dict, who: str) -> str:
    if who.isupper() and decode_address_or_none(who.lower()) is not None:
        return who.lower()  # bech32 allows all-uppercase; the chain's canonical form is lowercase
    if decode_address_or_none(who) is not None:
        return who
    try:
        return keyring(obj).get(who).address
    except KeyError_:
        raise CliError(f"{who!r} is neither a perp1... address nor a key in {obj['home'] / 'keys'}") from None


def tx_options(f):
    """--chain-id, --nonce, --memo, --no-wait and the common flags, for every tx command."""
    f = common(f)
    f = click.option("--no-wait", is_flag=True, help="return once CheckTx accepted the tx")(f)
    f = click.option("--memo", default="")(f)
    f = click.option("--nonce", type=WholeNumber(0, UINT64_MAX),
                     help="defaults to max(now in ms, highest used nonce + 1); highest + 1 for a small-counter account")(f)
    return click.option("--chain-id", help="defaults to the node's chain id")(f)


def broadcast_and_wait(obj: dict, client: RpcClient, tx_bytes: bytes, wait: bool, report: TxReport | None = None,
                       extra: dict | None = None, mempool_lines: list[str] | None = None,
                       humanize: Callable[[str], str] | None = None) -> None:
    """Broadcast, wait for the block, print height/code/hash and what ``report`` makes of the tx result.

    ``extra`` joins the JSON output either way; ``mempool_lines`` follow "in mempool: HASH" when not waiting. A
    CheckTx rejection or a failed tx in the block is one ``Error:`` line (JSON with its ``stage`` under -o json)
    and exit code 1; ``humanize`` rewrites the chain's log for that line (amounts in human units), JSON keeps it.
    """
    show = humanize or (lambda log: log)
    extra, mempool_lines = extra or {}, mempool_lines or []
    res = client.broadcast_tx_sync(tx_bytes)
    h = tx_hash(tx_bytes)
    if int(res["code"]) != 0:
        fail(obj, {"hash": h, "code": int(res["code"]), "codespace": res.get("codespace", ""), "log": res["log"],
                   "stage": "check_tx"},
             f"rejected by CheckTx: code {res['code']} ({res.get('codespace', '')}): {show(res['log'])}")
    if not wait:
        emit(obj, {"hash": h, "code": 0, "stage": "mempool", **extra}, "\n".join([f"in mempool: {h}", *mempool_lines]))
        return
    try:
        result = client.wait_tx(h)
    except RpcError as e:
        if "not committed" not in str(e):
            raise
        raise CliError(f"{e}: CheckTx accepted it, so it was probably dropped from the mempool (for example another "
                       f"tx spent the funds first); check later with `perpd query tx {h}`") from None
    r = result["tx_result"]
    code = int(r.get("code", 0))
    out = {"hash": h, "height": int(result["height"]), "code": code, "codespace": r.get("codespace", ""),
           "log": r.get("log", "")}
    if code != 0:
        fail(obj, {**out, "stage": "finalize_block"}, f"included at height {result['height']} but failed: code {code} "
             f"({out['codespace']}): {show(out['log'])}  hash {h}")
    events = r.get("events") or []
    fee = next((event_attrs(e).get("fee_quote_quantums") for e in events if e.get("type") == "tx"), None)
    if fee is not None:  # the non-trading fee the ante took from the signer's bank balance
        out["fee_quote_quantums"] = fee
    lines = [f"height {result['height']}  code {code}  hash {h}" + (f"  log {r.get('log')}" if r.get("log") else "")
             + (f"  fee {usdc_text(int(fee))} USDC" if fee is not None and fee.isdigit() and int(fee) else "")]
    failed = 0
    if report is not None:
        fields, more = report(r)
        out.update(fields)
        lines += more
        failed = fields.get("failed_actions", 0)
    else:  # what the tx did, one line per event, amounts in USDC
        lines += [event_line(e) for e in events if e.get("type") != "tx"]
    emit(obj, {**out, **extra}, "\n".join(lines))
    if failed:  # the tx landed, but an order action of it was refused in the block (its line says why)
        sys.exit(1)


def sign_and_broadcast(obj: dict, key, msgs: list, chain_id: str | None, nonce: int | None, memo: str,
                       no_wait: bool, report: TxReport | None = None, extra: dict | None = None,
                       mempool_lines: list[str] | None = None) -> None:
    """Fill in chain id and nonce from the node, sign with ``key``, broadcast and (unless no_wait) wait."""
    with rpc(obj) as client:
        sign_and_broadcast_with(obj, client, key, msgs, chain_id, nonce, memo, no_wait, report, extra, mempool_lines)


def sign_and_broadcast_with(obj: dict, client: RpcClient, key, msgs: list, chain_id: str | None, nonce: int | None,
                            memo: str, no_wait: bool, report: TxReport | None = None, extra: dict | None = None,
                            mempool_lines: list[str] | None = None,
                            humanize: Callable[[str], str] | None = None) -> None:
    """:func:`sign_and_broadcast` over an open client (commands that queried the node first reuse it)."""
    if chain_id == "":
        raise CliError("--chain-id is empty (omit it to use the node's chain id)")
    chain_id = chain_id or client.chain_id()
    if nonce is None:
        recent = client.query_json(f"/auth/account/{key.address}")["recent_nonces"]
        try:
            nonce = default_nonce([int(n) for n in recent])
        except NoNonceLeft as e:
            raise CliError(str(e)) from None
    if nonce < 0:
        raise CliError("nonce must be non-negative")
    try:
        memo.encode("utf-8")
    except UnicodeEncodeError:  # bytes the shell could not decode arrive as lone surrogates
        raise CliError("--memo is not valid UTF-8 text") from None
    tx_bytes = sign_tx(key.signing_key, chain_id, nonce, msgs, memo)
    broadcast_and_wait(obj, client, tx_bytes, wait=not no_wait, report=report, extra=extra,
                       mempool_lines=mempool_lines, humanize=humanize)


# --- exchange helpers (human units) ------------------------------------------------------------------------------

def load_markets(client: RpcClient) -> list[Market]:
    """Every tradable market (perpetual with a clob pair) from ``/perpetuals/list``."""
    return markets_from_query(client.query_json("/perpetuals/list"))


def owner_and_number(obj: dict, text: str, default_number: int | None = 0) -> tuple[str, int | None]:
    """'bob', 'bob/3', 'perp1.../3' -> (address, subaccount number); the number defaults to ``default_number``."""
    who, sep, number = text.partition("/")
    if not sep:
        return resolve_address(obj, who), default_number
    if not number.isascii() or not number.isdigit() or not 0 <= int(number) <= MAX_SUBACCOUNT_NUMBER:
        raise CliError(f"subaccount number {number!r} in {text!r} is not in 0..{MAX_SUBACCOUNT_NUMBER}")
    return resolve_address(obj, who), int(number)


def subaccount_number_option(f):
    """--number N: the subaccount (0..127) a command acts on."""
    return click.option("--number", "subaccount_number", type=WholeNumber(0, MAX_SUBACCOUNT_NUMBER), default=0,
                        show_default=True, help="subaccount number of the signer")(f)


_CHAIN_AMOUNT = re.compile(r"(-?\d+) (quote quantums|base quantums|subticks)\b")


def humanize_reason(text: str, market: Market | None) -> str:
    """A chain message with each amount in human units, exactly: 'N quote quantums' -> USDC, and with the order's
    market 'N base quantums' -> coins and 'N subticks' -> its quote asset ('8000000000 subticks' -> '80000 USD' on
    BTC-USD). The chain writes the unit after every amount it names; JSON keeps the chain's text as it is."""
    def one(m: re.Match) -> str:
        n, unit = int(m.group(1)), m.group(2)
        if unit == "quote quantums":
            return f"{usdc_text(n)} USDC"
        if market is None:
            return m.group(0)
        if unit == "base quantums":
            return f"{base_quantums_to_size(market, n)} {market.base_asset}"
        return f"{subticks_to_price(market, n)} {market.quote_asset}"
    return _CHAIN_AMOUNT.sub(one, text)


def event_attrs(event: dict) -> dict[str, str]:
    """CometBFT JSON event attributes ([{key, value, index}]) as a dict."""
    return {a.get("key"): a.get("value") for a in event.get("attributes", [])}


def event_line(event: dict) -> str:
    """'transfer: sender perp1.. recipient perp1.. amount 12.5 USDC': an event in one line, each ``*_quote_quantums``
    attribute in USDC, exactly."""
    parts = []
    for k, v in event_attrs(event).items():
        if k and k.endswith("_quote_quantums") and v and v.lstrip("-").isdigit():
            parts.append(f"{k.removesuffix('_quote_quantums')} {usdc_text(int(v))} USDC")
        else:
            parts.append(f"{k} {v}")
    return f"{event.get('type')}: " + "  ".join(parts)


def price_text(price: str | None, quote: str) -> str:
    """'64250 USD', or '-' for a market without a price yet."""
    return f"{price} {quote}" if price else "-"


def usdc_text(quote_quantums: int | str) -> str:
    """Quote quantums -> USDC without trailing zeros ('12500000' -> '12.5')."""
    return format_scaled(int(quote_quantums), -6)
