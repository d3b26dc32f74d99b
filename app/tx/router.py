"""Message routing: oneof name -> (stateless signer check, admission cost, handler)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from app.auth.admission import Cost
from app.bank import handlers as bank_handlers
from app.consensus import handlers as consensus_handlers
from app.context import Ctx

# A non-trading message: one request from the budget and the per-message fee.
NON_TRADING = Cost(requests=1, fee_messages=1)


@dataclasses.dataclass(frozen=True)
class Route:
    # Stateless checks; returns the addresses that must have signed. Raises AppError.
    signers: Callable[[object], list[bytes]]
    handle: Callable[[Ctx, object], None]
    # What the message uses of the signer's budget and fees (app/tx/ante.py); a function of the message alone.
    cost: Callable[[object], Cost] = lambda _msg: NON_TRADING


# Keyed by the field name in the ``Msg.sum`` oneof (proto/perpchain/v1/tx.proto).
ROUTES: dict[str, Route] = {
    "send": Route(bank_handlers.signers_send, bank_handlers.handle_send),
    "set_validator_power": Route(consensus_handlers.signers_set_validator_power,
                                 consensus_handlers.handle_set_validator_power),
}


def tx_cost(msgs) -> Cost:
    """Sum of the messages' costs."""
    total = Cost()
    for name, msg in msgs:
        total = total + ROUTES[name].cost(msg)
    return total
