"""The ante step of every tx: nonce, request budget, fee -- one rule for CheckTx and FinalizeBlock.

Order: nonce (replay) → budget (requests, cancels) → fee. Any failure refuses the whole tx and changes nothing
(the nonce stays usable). Once the ante passed, a tx in a block keeps its nonce, budget use and fee even if a
message fails: the signed bytes are public and must never succeed later, and spam must cost something.

CheckTx passes ``pending``: what this node's mempool view already promised the signer's other pending txs
(their nonces, requests, cancels and fees). Only txs signed by the same account add to it, so nobody can use
another account's budget; see app/tx/mempool.py.
"""

from __future__ import annotations

from app.auth import admission
from app.auth import keeper as auth_keeper
from app.auth.admission import Cost
from app.bank import keeper as bank_keeper
from app.errors import ERR_INSUFFICIENT_FEE, ERR_NO_COLLATERAL, ERR_NONCE_USED, ERR_RATE_LIMITED, AppError
from app.lib.address import encode_address
from app.store import BranchStore
from app.subaccounts import keeper as subaccounts_keeper


class Pending:
    """The signer's not-yet-committed promises in this node's mempool view (CheckTx only)."""

    __slots__ = ("nonces", "requests", "cancels", "fee_quote_quantums")

    def __init__(self) -> None:
        self.nonces: dict[int, bytes] = {}  # nonce -> tx digest
        self.requests = 0
        self.cancels = 0
        self.fee_quote_quantums = 0


NO_PENDING = Pending()


def apply_ante(store: BranchStore, height: int, signer: bytes, nonce: int, cost: Cost,
               pending: Pending = NO_PENDING) -> int:
    """Use the nonce, the budget and pay the fee in ``store``; returns the fee paid (quote quantums).

    Raises AppError (nonce_*, rate_limited, insufficient_fee) and then the caller discards ``store``.
    """
    acct = auth_keeper.get_account(store, signer)
    auth_keeper.validate_nonce(acct.nonces, nonce)
    if nonce in pending.nonces:
        raise AppError(ERR_NONCE_USED, f"nonce {nonce} is already used by another pending tx of this account "
                                       "(in this node's mempool)")
    params = auth_keeper.get_params(store)
    balance = bank_keeper.get_balance(store, signer)
    if cost.fee_messages == 0 and balance == 0 and not subaccounts_keeper.has_subaccount(store, signer):
        # Order actions pay no non-trading fee; a key with nothing at stake gets no free block space.
        raise AppError(ERR_NO_COLLATERAL, f"{encode_address(signer)} has no USDC and no funded subaccount: order "
                                          "actions need collateral")
    budget = admission.compute_budget(params, balance, acct.requests, acct.cancels, acct.last_use_height, height)
    if cost.requests > budget.requests - pending.requests:
        raise AppError(ERR_RATE_LIMITED, _limited("request", encode_address(signer), cost.requests,
                                                  budget.requests - pending.requests, budget.request_capacity,
                                                  budget.request_refill_per_block))
    if cost.cancels > budget.cancels - pending.cancels:
        raise AppError(ERR_RATE_LIMITED, _limited("cancel", encode_address(signer), cost.cancels,
                                                  budget.cancels - pending.cancels, budget.cancel_capacity,
                                                  budget.cancel_refill_per_block))
    fee = cost.fee_messages * params.fee_per_message_quote_quantums
    if fee > balance - pending.fee_quote_quantums:
        raise AppError(ERR_INSUFFICIENT_FEE, f"{encode_address(signer)} has {balance} quote quantums"
                       + (f" ({pending.fee_quote_quantums} quote quantums promised to pending txs' fees)"
                          if pending.fee_quote_quantums else "")
                       + f", the tx's fee is {fee} quote quantums ({cost.fee_messages} non-trading message(s) x "
                         f"{params.fee_per_message_quote_quantums} quote quantums)")
    auth_keeper.record_nonce(acct, nonce)
    acct.requests = budget.requests - cost.requests
    acct.cancels = budget.cancels - cost.cancels
    acct.last_use_height = height
    auth_keeper.set_account(store, signer, acct)
    if fee:
        bank_keeper.apply_transfer(store, signer, bank_keeper.FEE_COLLECTOR_ADDRESS, fee)
    return fee


def _limited(bucket: str, who: str, need: int, left: int, capacity: int, refill: int) -> str:
    return (f"{who} has {max(0, left)} {bucket}(s) left this block, the tx needs {need} (capacity {capacity}, "
            f"refill {refill} per block; more collateral raises both)")
