"""auth queries (JSON answers): an account's nonces and remaining budget, the admission parameters."""

from __future__ import annotations

import dataclasses

from app.auth import admission, keeper
from app.bank import keeper as bank_keeper
from app.bank.handlers import parse_address
from app.lib.address import encode_address
from app.store import BranchStore


def query_account(store: BranchStore, address_text: str, next_height: int) -> dict:
    """Nonce window and the budget the account has in the next block (committed state; pending txs not counted)."""
    address = parse_address(address_text, "address")
    acct = keeper.get_account(store, address)
    params = keeper.get_params(store)
    budget = admission.compute_budget(params, bank_keeper.get_balance(store, address), acct.requests,
                                      acct.cancels, acct.last_use_height, next_height)
    return {
        "address": encode_address(address),
        "recent_nonces": [str(n) for n in acct.nonces],
        "budget": {
            "at_height": str(next_height),
            "requests_available": str(budget.requests),
            "request_capacity": str(budget.request_capacity),
            "request_refill_per_block": str(budget.request_refill_per_block),
            "cancels_available": str(budget.cancels),
            "cancel_capacity": str(budget.cancel_capacity),
            "cancel_refill_per_block": str(budget.cancel_refill_per_block),
            "fee_per_message_quote_quantums": str(params.fee_per_message_quote_quantums),
        },
    }


def query_params(store: BranchStore) -> dict:
    params = keeper.get_params(store)
    out = {k: str(v) for k, v in dataclasses.asdict(params).items()}
    out["fee_collector"] = encode_address(bank_keeper.FEE_COLLECTOR_ADDRESS)
    return out
