"""Message routing: oneof name -> (stateless signer check, admission cost, handler)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from app.auth.admission import Cost
from app.bank import handlers as bank_handlers
from app.clob import handlers as clob_handlers
from app.consensus import handlers as consensus_handlers
from app.context import Ctx
from app.perpetuals import handlers as perpetuals_handlers
from app.subaccounts import handlers as subaccounts_handlers

# A non-trading message: one request from the budget and the per-message fee.
NON_TRADING = Cost(requests=1, fee_messages=1)


@dataclasses.dataclass(frozen=True)
class Route:
    # Stateless checks; returns the addresses that must have signed. Raises AppError.
    signers: Callable[[object], list[bytes]]
    # Runs the message in a tx's state branch (None for deferred messages).
    handle: Callable[[Ctx, object], None] | None
    # What the message uses of the signer's budget and fees (app/tx/ante.py); a function of the message alone.
    cost: Callable[[object], Cost] = lambda _msg: NON_TRADING
    # Deferred messages (order actions) are queued by FinalizeBlock and run in the block's phase order
    # (app/clob/abci.py); CheckTx runs ``check`` once, on all of the tx's messages. A tx carries either only
    # deferred messages or none.
    deferred: bool = False
    check: Callable[[Ctx, list], None] | None = None
    # A lighter check for CometBFT's rechecks of deferred messages: True when it decided (raising AppError to drop
    # the tx), False to run ``check``.
    recheck: Callable[[Ctx, list], bool] | None = None


# Keyed by the field name in the ``Msg.sum`` oneof (proto/perpchain/v1/tx.proto).
ROUTES: dict[str, Route] = {
    "send": Route(bank_handlers.signers_send, bank_handlers.handle_send),
    "set_validator_power": Route(consensus_handlers.signers_set_validator_power,
                                 consensus_handlers.handle_set_validator_power),
    "deposit": Route(subaccounts_handlers.signers_deposit, subaccounts_handlers.handle_deposit),
    "withdraw": Route(subaccounts_handlers.signers_withdraw, subaccounts_handlers.handle_withdraw),
    "transfer": Route(subaccounts_handlers.signers_transfer, subaccounts_handlers.handle_transfer),
    "orders": Route(clob_handlers.signers_orders, None, cost=clob_handlers.cost_orders, deferred=True,
                    check=clob_handlers.check_orders, recheck=clob_handlers.recheck_orders),
    "set_clob_pair_status": Route(clob_handlers.signers_authority, clob_handlers.handle_set_clob_pair_status),
    "upsert_liquidity_tier": Route(clob_handlers.signers_authority,
                                   perpetuals_handlers.handle_upsert_liquidity_tier),
    "create_perpetual": Route(clob_handlers.signers_authority, clob_handlers.handle_create_perpetual),
    "set_fee_tiers": Route(clob_handlers.signers_authority, clob_handlers.handle_set_fee_tiers),
    "set_equity_tiers": Route(clob_handlers.signers_authority, clob_handlers.handle_set_equity_tiers),
    "set_clob_limits": Route(clob_handlers.signers_authority, clob_handlers.handle_set_clob_limits),
    "update_perpetual": Route(clob_handlers.signers_authority, clob_handlers.handle_update_perpetual),
}


def tx_cost(msgs) -> Cost:
    """Sum of the messages' costs."""
    total = Cost()
    for name, msg in msgs:
        total = total + ROUTES[name].cost(msg)
    return total


def is_deferred(msgs) -> bool:
    return bool(msgs) and ROUTES[msgs[0][0]].deferred
