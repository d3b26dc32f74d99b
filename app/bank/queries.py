"""bank queries (JSON answers; not consensus data)."""

from __future__ import annotations

from app.bank import keeper
from app.bank.handlers import parse_address
from app.lib.address import encode_address
from app.store import BranchStore


def query_balance(store: BranchStore, address_text: str) -> dict:
    address = parse_address(address_text, "address")
    return {"address": encode_address(address), "amount_quote_quantums": str(keeper.get_balance(store, address))}


def query_supply(store: BranchStore) -> dict:
    return {"amount_quote_quantums": str(keeper.get_supply(store)), "authority": keeper.get_authority(store)}
