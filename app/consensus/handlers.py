"""consensus message handlers: the authority's validator-set changes."""

from __future__ import annotations

from perpchain.v1 import tx_pb2

from app.bank import keeper as bank_keeper
from app.bank.handlers import parse_address
from app.consensus import keeper
from app.context import Ctx
from app.errors import ERR_INVALID_PUBKEY, ERR_INVALID_VALIDATOR_UPDATE, ERR_UNAUTHORIZED, AppError
from app.events import Event
from app.lib.address import address_from_pubkey

MAX_VALIDATOR_POWER = 10**12
# CometBFT's MaxTotalVotingPower (types/validator_set.go): MaxInt64 / 8.
MAX_TOTAL_POWER = (2**63 - 1) >> 3


def signers_set_validator_power(msg: tx_pb2.MsgSetValidatorPower) -> list[bytes]:
    """Stateless checks; the authority named in the message must sign."""
    authority = parse_address(msg.authority, "authority")
    if len(msg.pub_key_ed25519) != 32:
        raise AppError(ERR_INVALID_PUBKEY, "pub_key_ed25519 must be a 32-byte ed25519 key")
    if msg.power > MAX_VALIDATOR_POWER:
        raise AppError(ERR_INVALID_VALIDATOR_UPDATE, f"power {msg.power} exceeds the maximum {MAX_VALIDATOR_POWER}")
    return [authority]


def handle_set_validator_power(ctx: Ctx, msg: tx_pb2.MsgSetValidatorPower) -> None:
    """Stage the change for the end of this block; refuse one that would empty the set or overflow CometBFT."""
    authority = bank_keeper.get_authority(ctx.store)
    if msg.authority != authority:
        raise AppError(ERR_UNAUTHORIZED, f"only the chain authority {authority} may change validators")
    pub_key = msg.pub_key_ed25519
    _, latest = keeper.latest_validators(ctx.store)
    others = [(pk, p) for pk, p in keeper.staged_validator_updates(ctx.store) if pk != pub_key]
    before = keeper.apply_updates(keeper.as_rows(latest), others)
    if msg.power == 0 and all(pk != pub_key for _, pk, _ in before):
        raise AppError(ERR_INVALID_VALIDATOR_UPDATE, f"{pub_key.hex()} is not a validator; nothing to remove")
    after = keeper.apply_updates(before, [(pub_key, msg.power)])
    if not after:
        raise AppError(ERR_INVALID_VALIDATOR_UPDATE, "the change would leave no validators")
    total = sum(p for _, _, p in after)
    if total > MAX_TOTAL_POWER:
        raise AppError(ERR_INVALID_VALIDATOR_UPDATE, f"total voting power {total} would exceed {MAX_TOTAL_POWER}")
    keeper.stage_validator_update(ctx.store, pub_key, msg.power)
    ctx.emit(Event.of("validator_power", pub_key=pub_key.hex(), address=address_from_pubkey(pub_key).hex().upper(),
                      power=msg.power, effective_height=ctx.block.height + keeper.VALIDATOR_UPDATE_DELAY))
