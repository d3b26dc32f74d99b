"""bank message handlers and their stateless checks."""

from __future__ import annotations

from perpchain.v1 import tx_pb2

from app.bank import keeper
from app.context import Ctx
from app.errors import ERR_INVALID_ADDRESS, ERR_INVALID_AMOUNT, AppError
from app.events import Event
from app.lib.address import decode_address_or_none, encode_address


def parse_address(text: str, field: str) -> bytes:
    raw = decode_address_or_none(text)
    if raw is None:
        raise AppError(ERR_INVALID_ADDRESS, f"{field} {text!r} is not a valid perp1... address")
    return raw


def signers_send(msg: tx_pb2.MsgSend) -> list[bytes]:
    """Stateless checks for MsgSend; returns the addresses that must have signed."""
    sender = parse_address(msg.from_address, "from_address")
    parse_address(msg.to_address, "to_address")
    if msg.amount_quote_quantums <= 0:
        raise AppError(ERR_INVALID_AMOUNT, "amount_quote_quantums must be positive")
    return [sender]


def handle_send(ctx: Ctx, msg: tx_pb2.MsgSend) -> None:
    sender = parse_address(msg.from_address, "from_address")
    recipient = parse_address(msg.to_address, "to_address")
    keeper.validate_user_recipient(ctx.store, recipient)
    keeper.apply_transfer(ctx.store, sender, recipient, msg.amount_quote_quantums)
    # Canonical (lowercase) addresses in events, whichever valid case the message used.
    ctx.emit(Event.of("transfer", sender=encode_address(sender), recipient=encode_address(recipient),
                      amount_quote_quantums=msg.amount_quote_quantums))
