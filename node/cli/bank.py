"""``perpd tx bank`` and ``perpd query bank``: USDC transfers, balances and supply."""

from __future__ import annotations

import click

from node.cli.common import (
    common,
    emit,
    keyring,
    query_json,
    resolve_address,
    sign_and_broadcast,
    tx_options,
    usdc_text,
)
from node.client.txbuilder import msg_send
from node.client.units import quote_quantums_to_usdc, usdc_to_quote_quantums


@click.group("bank")
def tx_bank() -> None:
    """USDC transfers."""


@tx_bank.command("send", context_settings={"ignore_unknown_options": True})
@click.argument("from_key")
@click.argument("to")
@click.argument("amount_usdc")
@tx_options
def tx_bank_send(from_key, to, amount_usdc, chain_id, nonce, memo, no_wait) -> None:
    """Send AMOUNT_USDC (e.g. 12.5) from key FROM_KEY to address or key name TO."""
    obj = click.get_current_context().obj
    amount = usdc_to_quote_quantums(amount_usdc)
    key = keyring(obj).get(from_key)
    to_address = resolve_address(obj, to)
    sign_and_broadcast(obj, key, [msg_send(key.address, to_address, amount)], chain_id, nonce, memo, no_wait)


@click.group("bank")
def query_bank() -> None:
    """USDC balances and supply."""


@query_bank.command("balance")
@click.argument("who")
@common
def query_bank_balance(who: str) -> None:
    """Balance of an address or key name."""
    obj, res = query_json(f"/bank/balance/{resolve_address(click.get_current_context().obj, who)}")
    n = int(res["amount_quote_quantums"])
    emit(obj, {**res, "amount_usdc": quote_quantums_to_usdc(n)}, f"{usdc_text(n)} USDC")


@query_bank.command("supply")
@common
def query_bank_supply() -> None:
    obj, res = query_json("/bank/supply")
    emit(obj, res, f"{usdc_text(res['amount_quote_quantums'])} USDC")
