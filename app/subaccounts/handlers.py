"""subaccounts message handlers: deposit, withdraw, transfer (only the owner's key moves a subaccount's funds)."""

from __future__ import annotations

from perpchain.v1 import tx_pb2

from app.bank import keeper as bank_keeper
from app.bank.handlers import parse_address
from app.context import Ctx
from app.errors import ERR_INVALID_AMOUNT, ERR_INVALID_SUBACCOUNT, ERR_SENDER_IS_RECIPIENT, AppError
from app.events import Event
from app.lib.address import encode_address
from app.subaccounts import keeper
from app.subaccounts.state import MAX_SUBACCOUNT_NUMBER, SubaccountId


def parse_subaccount(owner: bytes, number: int, field: str = "subaccount_number") -> SubaccountId:
    if not 0 <= number <= MAX_SUBACCOUNT_NUMBER:
        raise AppError(ERR_INVALID_SUBACCOUNT, f"{field} {number} is outside 0..{MAX_SUBACCOUNT_NUMBER}")
    return SubaccountId(owner, number)


def _positive(amount: int) -> None:
    if amount <= 0:
        raise AppError(ERR_INVALID_AMOUNT, "amount_quote_quantums must be positive")


def signers_deposit(msg: tx_pb2.MsgDeposit) -> list[bytes]:
    owner = parse_address(msg.owner, "owner")
    parse_subaccount(owner, msg.subaccount_number)
    _positive(msg.amount_quote_quantums)
    return [owner]


def handle_deposit(ctx: Ctx, msg: tx_pb2.MsgDeposit) -> None:
    owner = parse_address(msg.owner, "owner")
    sid = parse_subaccount(owner, msg.subaccount_number)
    keeper.apply_deposit(ctx.store, owner, sid, msg.amount_quote_quantums)
    ctx.emit(Event.of("deposit", owner=encode_address(owner), number=sid.number,
                      amount_quote_quantums=msg.amount_quote_quantums))


def signers_withdraw(msg: tx_pb2.MsgWithdraw) -> list[bytes]:
    owner = parse_address(msg.owner, "owner")
    parse_subaccount(owner, msg.subaccount_number)
    if msg.recipient:
        parse_address(msg.recipient, "recipient")
    _positive(msg.amount_quote_quantums)
    return [owner]


def handle_withdraw(ctx: Ctx, msg: tx_pb2.MsgWithdraw) -> None:
    owner = parse_address(msg.owner, "owner")
    sid = parse_subaccount(owner, msg.subaccount_number)
    recipient = parse_address(msg.recipient, "recipient") if msg.recipient else owner
    bank_keeper.validate_user_recipient(ctx.store, recipient)
    for e in keeper.apply_withdrawal(ctx.store, sid, recipient, msg.amount_quote_quantums, "withdrawal"):
        ctx.emit(e)
    ctx.emit(Event.of("withdrawal", owner=encode_address(owner), number=sid.number,
                      recipient=encode_address(recipient), amount_quote_quantums=msg.amount_quote_quantums))


def signers_transfer(msg: tx_pb2.MsgTransfer) -> list[bytes]:
    owner = parse_address(msg.owner, "owner")
    parse_subaccount(owner, msg.subaccount_number)
    to = parse_address(msg.recipient_owner, "recipient_owner")
    parse_subaccount(to, msg.recipient_subaccount_number, "recipient_subaccount_number")
    _positive(msg.amount_quote_quantums)
    if (owner, msg.subaccount_number) == (to, msg.recipient_subaccount_number):
        # dYdX MsgCreateTransfer.ValidateBasic: ErrSenderSameAsRecipient. It would move nothing, yet its event would
        # report the amount as transferred.
        raise AppError(ERR_SENDER_IS_RECIPIENT, f"subaccount {msg.subaccount_number} cannot transfer to itself; name "
                                                "another subaccount as the recipient")
    return [owner]


def handle_transfer(ctx: Ctx, msg: tx_pb2.MsgTransfer) -> None:
    owner = parse_address(msg.owner, "owner")
    sender = parse_subaccount(owner, msg.subaccount_number)
    to = parse_address(msg.recipient_owner, "recipient_owner")
    recipient = parse_subaccount(to, msg.recipient_subaccount_number, "recipient_subaccount_number")
    # As for a bank send or a withdrawal: nobody holds a module account's key, so its subaccount could never move
    # the USDC again (found by the session-15 probe: 1 quote quantum parked for good at the cross pool's subaccount 0).
    bank_keeper.validate_user_recipient(ctx.store, to)
    for e in keeper.apply_transfer(ctx.store, sender, recipient, msg.amount_quote_quantums):
        ctx.emit(e)
    ctx.emit(Event.of("subaccount_transfer", owner=encode_address(owner), number=sender.number,
                      recipient_owner=encode_address(to), recipient_number=recipient.number,
                      amount_quote_quantums=msg.amount_quote_quantums))
