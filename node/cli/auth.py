"""``perpd query auth``: accounts' nonces and request budgets, admission parameters."""

from __future__ import annotations

import click

from node.cli.common import common, emit, query_json, resolve_address, usdc_text
from node.client.units import quote_quantums_to_usdc


@click.group("auth")
def query_auth() -> None:
    """Accounts' nonces and request budgets, admission parameters."""


def _show_account(who: str) -> None:
    obj, res = query_json(f"/auth/account/{resolve_address(click.get_current_context().obj, who)}")
    b = res["budget"]
    fee = quote_quantums_to_usdc(int(b["fee_per_message_quote_quantums"]))
    emit(obj, res, "\n".join([
        f"{res['address']}",
        f"  recent nonces: {', '.join(res['recent_nonces']) or '(none)'}",
        f"  budget at height {b['at_height']}: {b['requests_available']}/{b['request_capacity']} requests "
        f"(+{b['request_refill_per_block']}/block), {b['cancels_available']}/{b['cancel_capacity']} cancels "
        f"(+{b['cancel_refill_per_block']}/block); fee {fee} USDC per non-trading message",
    ]))


@query_auth.command("account")
@click.argument("who")
@common
def query_auth_account(who: str) -> None:
    """Recent nonces and remaining request/cancel budget of an address or key name."""
    _show_account(who)


@query_auth.command("params")
@common
def query_auth_params() -> None:
    """Admission parameters: fee per non-trading message, budget capacity and refill, fee collector."""
    obj, res = query_json("/auth/params")

    def line(k: str, v) -> str:  # quote quantums also in USDC, exactly
        if k.endswith("_quote_quantums") and str(v).isdigit():
            return f"{k}: {v} ({usdc_text(v)} USDC)"
        return f"{k}: {v}"

    emit(obj, res, "\n".join(line(k, v) for k, v in sorted(res.items())))


@click.command("account", hidden=True)
@click.argument("who")
@common
def query_account(who: str) -> None:
    """Alias of `query auth account`."""
    _show_account(who)
