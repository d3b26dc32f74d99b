"""Message routing: oneof name -> (stateless signer check, handler)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from app.bank import handlers as bank_handlers
from app.consensus import handlers as consensus_handlers
from app.context import Ctx


@dataclasses.dataclass(frozen=True)
class Route:
    # Stateless checks; returns the addresses that must have signed. Raises AppError.
    signers: Callable[[object], list[bytes]]
    handle: Callable[[Ctx, object], None]


# Keyed by the field name in the ``Msg.sum`` oneof (proto/perpchain/v1/tx.proto).
ROUTES: dict[str, Route] = {
    "send": Route(bank_handlers.signers_send, bank_handlers.handle_send),
    "set_validator_power": Route(consensus_handlers.signers_set_validator_power,
                                 consensus_handlers.handle_set_validator_power),
}
