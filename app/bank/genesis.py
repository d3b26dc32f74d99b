"""bank genesis: {"authority": "perp1...", "balances": [{"address", "amount_quote_quantums"}]}.

Integers are JSON strings (Cosmos convention: int64/uint64 never as JSON numbers).
"""

from __future__ import annotations

from app.bank import keeper
from app.errors import ERR_INVALID_GENESIS, AppError
from app.lib.address import decode_address_or_none, encode_address
from app.lib.math import UINT64_MAX
from app.store import BranchStore


def parse_uint(value: object, what: str) -> int:
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) > 20:
        raise AppError(ERR_INVALID_GENESIS, f"{what} must be a decimal string, got {value!r}")
    n = int(value)
    if n > UINT64_MAX:
        raise AppError(ERR_INVALID_GENESIS, f"{what} exceeds uint64")
    return n


def init_genesis(store: BranchStore, state: dict) -> None:
    if not isinstance(state, dict):
        raise AppError(ERR_INVALID_GENESIS, "bank genesis must be an object")
    authority = state.get("authority", "")
    if decode_address_or_none(authority) is None:
        raise AppError(ERR_INVALID_GENESIS, f"bank.authority {authority!r} is not a valid address")
    seen: dict[bytes, int] = {}
    total = 0
    if not isinstance(state.get("balances", []), list):
        raise AppError(ERR_INVALID_GENESIS, "bank.balances must be a list")
    for i, entry in enumerate(state.get("balances", [])):
        if not isinstance(entry, dict):
            raise AppError(ERR_INVALID_GENESIS, f"bank.balances[{i}] must be an object")
        address = decode_address_or_none(entry.get("address", ""))
        if address is None:
            raise AppError(ERR_INVALID_GENESIS, f"bank.balances[{i}].address is not a valid address")
        if address in seen:
            raise AppError(ERR_INVALID_GENESIS, f"bank.balances[{i}] duplicates address {entry['address']}")
        amount = parse_uint(entry.get("amount_quote_quantums"), f"bank.balances[{i}].amount_quote_quantums")
        if amount == 0:
            continue
        seen[address] = amount
        total += amount
    if total > UINT64_MAX:
        raise AppError(ERR_INVALID_GENESIS, "total supply exceeds uint64")
    keeper.init_balances(store, sorted(seen.items()), authority)


def export_genesis(store: BranchStore) -> dict:
    keeper.check_supply(store)
    return {
        "authority": keeper.get_authority(store),
        "balances": [
            {"address": encode_address(a), "amount_quote_quantums": str(n)} for a, n in keeper.iter_balances(store)
        ],
    }
