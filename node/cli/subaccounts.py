"""``perpd tx subaccounts`` and ``perpd query subaccounts``: USDC in and out of subaccounts, margin details.

Amounts are USDC in human units (``12.5``), converted exactly to quote quantums; ``--number`` picks the signer's
subaccount (0..127, default 0); ``OWNER[/NUMBER]`` names any subaccount by key name or address.
"""

from __future__ import annotations

import click
from perpchain.v1 import tx_pb2

from node.cli.common import (
    common,
    emit,
    event_attrs,
    humanize_reason,
    keyring,
    owner_and_number,
    price_text,
    query_json,
    resolve_address,
    rpc,
    sign_and_broadcast_with,
    subaccount_number_option,
    tx_options,
    usdc_text,
)
from node.client.units import usdc_to_quote_quantums


def _movement_report(client, event_type: str, owner: str, number: int, who: str):
    """What a deposit, withdrawal or transfer prints after height/code/hash: the amount moved, between whom, and
    the collateral of the subaccount it left or entered (KEY's own, ``owner/number``) after the block."""
    def report(tx_result: dict) -> tuple[dict, list[str]]:
        moved = [event_attrs(e) for e in tx_result.get("events") or [] if e.get("type") == event_type]
        after = client.query_json(f"/subaccounts/show/{owner}/{number}")["quote_balance"]
        lines = []
        for m in moved:
            amount = usdc_text(m["amount_quote_quantums"])
            if event_type == "deposit":
                where = f"from the bank into {m['owner']}/{m['number']}"
            elif event_type == "withdrawal":
                where = f"from {m['owner']}/{m['number']} to the bank balance of {m['recipient']}"
            else:
                where = f"from {m['owner']}/{m['number']} to {m['recipient_owner']}/{m['recipient_number']}"
            lines.append(f"  {who} {amount} USDC {where}")
        lines.append(f"  {owner}/{number} collateral now {after} USDC")
        return {"moved": moved, "collateral_after_usdc": after}, lines
    return report


@click.group("subaccounts")
def tx_subaccounts() -> None:
    """Deposit, withdraw and transfer USDC collateral."""


@tx_subaccounts.command("deposit", context_settings={"ignore_unknown_options": True})
@click.argument("key_name", metavar="KEY")
@click.argument("amount_usdc")
@subaccount_number_option
@tx_options
def tx_deposit(key_name, amount_usdc, subaccount_number, chain_id, nonce, memo, no_wait) -> None:
    """Move AMOUNT_USDC (e.g. 2500) from KEY's bank balance into its subaccount --number."""
    obj = click.get_current_context().obj
    amount = usdc_to_quote_quantums(amount_usdc)
    key = keyring(obj).get(key_name)
    msg = tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(owner=key.address, subaccount_number=subaccount_number,
                                               amount_quote_quantums=amount))
    with rpc(obj) as client:
        sign_and_broadcast_with(obj, client, key, [msg], chain_id, nonce, memo, no_wait,
                                report=_movement_report(client, "deposit", key.address, subaccount_number,
                                                        "deposited"),
                                humanize=lambda log: humanize_reason(log, None))


@tx_subaccounts.command("withdraw", context_settings={"ignore_unknown_options": True})
@click.argument("key_name", metavar="KEY")
@click.argument("amount_usdc")
@subaccount_number_option
@click.option("--to", "to", help="bank address or key name to receive it [default: KEY's own address]")
@tx_options
def tx_withdraw(key_name, amount_usdc, subaccount_number, to, chain_id, nonce, memo, no_wait) -> None:
    """Move AMOUNT_USDC from KEY's subaccount --number to a bank balance; the subaccount must keep initial margin."""
    obj = click.get_current_context().obj
    amount = usdc_to_quote_quantums(amount_usdc)
    key = keyring(obj).get(key_name)
    recipient = resolve_address(obj, to) if to else ""
    msg = tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(owner=key.address, subaccount_number=subaccount_number,
                                                 amount_quote_quantums=amount, recipient=recipient))
    with rpc(obj) as client:
        sign_and_broadcast_with(obj, client, key, [msg], chain_id, nonce, memo, no_wait,
                                report=_movement_report(client, "withdrawal", key.address, subaccount_number,
                                                        "withdrew"),
                                humanize=lambda log: humanize_reason(log, None))


@tx_subaccounts.command("transfer", context_settings={"ignore_unknown_options": True})
@click.argument("key_name", metavar="KEY")
@click.argument("amount_usdc")
@click.option("--to", "to", required=True, metavar="OWNER[/NUMBER]",
              help="recipient subaccount: key name or address, optionally /number (default 0)")
@subaccount_number_option
@tx_options
def tx_transfer(key_name, amount_usdc, to, subaccount_number, chain_id, nonce, memo, no_wait) -> None:
    """Move AMOUNT_USDC from KEY's subaccount --number to another subaccount (own or anyone's)."""
    obj = click.get_current_context().obj
    amount = usdc_to_quote_quantums(amount_usdc)
    key = keyring(obj).get(key_name)
    recipient, recipient_number = owner_and_number(obj, to)
    msg = tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=key.address, subaccount_number=subaccount_number,
                                                 recipient_owner=recipient,
                                                 recipient_subaccount_number=recipient_number,
                                                 amount_quote_quantums=amount))
    with rpc(obj) as client:
        sign_and_broadcast_with(obj, client, key, [msg], chain_id, nonce, memo, no_wait,
                                report=_movement_report(client, "subaccount_transfer", key.address,
                                                        subaccount_number, "transferred"),
                                humanize=lambda log: humanize_reason(log, None))


@click.group("subaccounts")
def query_subaccounts() -> None:
    """Collateral, positions and margin of subaccounts."""


def subaccount_text(res: dict) -> str:
    """Collateral, each position, then TNC, IMR, MMR, free collateral, leverage and open orders against the equity
    tier, in human units."""
    lines = [f"{res['owner']}/{res['number']}  collateral {res['quote_balance']} USDC"
             + (f"  (unsettled funding {res['unsettled_funding_quote_quantums']} quote quantums)"
                if int(res.get("unsettled_funding_quote_quantums", "0")) else "")]
    if not res["positions"]:
        lines.append("  no positions")
    for p in res["positions"]:
        base, _, quote = p["market"].partition("-")  # tickers are BASE-QUOTE (BTC-USD)
        lines.append(f"  {p['market']:10s} {p['side']:5s} size {p['size']} {base}  entry {p['entry_price']} {quote}  "
                     f"oracle {price_text(p['oracle_price'], quote)}  mark {price_text(p['mark_price'], quote)}  "
                     f"notional {p['notional']} USDC  unrealized PnL {p['unrealized_pnl']} USDC")
    if "error" in res:
        lines.append(f"  margin: {res['error']}")
        return "\n".join(lines)
    lines += [
        f"  total net collateral           {res['total_net_collateral']} USDC",
        f"  initial margin requirement     {res['initial_margin_requirement']} USDC",
        f"  maintenance margin requirement {res['maintenance_margin_requirement']} USDC",
        f"  free collateral                {res['free_collateral']} USDC",
        f"  leverage                       {res['leverage'] + 'x' if res['leverage'] is not None else '-'}"
        + ("  LIQUIDATABLE" if res.get("liquidatable") else ""),
    ]
    if "open_orders" in res:
        lines.append("  open orders (equity tier)      " + ", ".join(
            f"{kind} {o['open']} of {o['allowed'] if o['allowed'] is not None else 'no cap'}"
            for kind, o in (("short-term", res["open_orders"]["short_term"]),
                            ("long-term", res["open_orders"]["long_term"]))))
    return "\n".join(lines)


@query_subaccounts.command("show")
@click.argument("who", metavar="OWNER[/NUMBER]")
@common
def query_subaccount_show(who: str) -> None:
    """One subaccount (number 0 unless OWNER/NUMBER): collateral, positions with entry, oracle and mark price and
    unrealized PnL, then total net collateral, initial and maintenance requirement, free collateral, leverage."""
    owner, number = owner_and_number(click.get_current_context().obj, who)
    obj, res = query_json(f"/subaccounts/show/{owner}/{number}")
    emit(obj, res, subaccount_text(res))


@query_subaccounts.command("list")
@click.argument("who", metavar="OWNER")
@common
def query_subaccounts_list(who: str) -> None:
    """Every subaccount of OWNER (key name or address), each as `show` prints it."""
    owner = resolve_address(click.get_current_context().obj, who)
    obj, res = query_json(f"/subaccounts/of/{owner}")
    emit(obj, res, "\n".join(subaccount_text(s) for s in res["subaccounts"]) or f"{owner} has no subaccounts")
