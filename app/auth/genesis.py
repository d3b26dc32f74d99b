"""auth genesis: {"accounts": [{"address", "recent_nonces": ["1", ...]}]} (optional; export round-trips)."""

from __future__ import annotations

from app.auth import keys
from app.auth.keeper import encode_window
from app.auth.keeper import export_genesis as _export
from app.auth.params import NONCE_WINDOW
from app.bank.genesis import parse_uint
from app.errors import ERR_INVALID_GENESIS, AppError
from app.lib.address import decode_address_or_none
from app.store import BranchStore


def init_genesis(store: BranchStore, state: dict) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("accounts", []), list):
        raise AppError(ERR_INVALID_GENESIS, "auth genesis must be an object with an accounts list")
    for i, entry in enumerate(state.get("accounts", [])):
        address = decode_address_or_none(entry.get("address", "")) if isinstance(entry, dict) else None
        if address is None:
            raise AppError(ERR_INVALID_GENESIS, f"auth.accounts[{i}].address is not a valid address")
        raw_nonces = entry.get("recent_nonces", [])
        if not isinstance(raw_nonces, list):
            raise AppError(ERR_INVALID_GENESIS, f"auth.accounts[{i}].recent_nonces must be a list")
        nonces = sorted(parse_uint(n, f"auth.accounts[{i}].recent_nonces") for n in raw_nonces)
        if len(nonces) > NONCE_WINDOW or len(nonces) != len(dict.fromkeys(nonces)):
            raise AppError(ERR_INVALID_GENESIS, f"auth.accounts[{i}].recent_nonces: too many or duplicated")
        store.set(keys.nonce_window_key(address), encode_window(nonces))


def export_genesis(store: BranchStore) -> dict:
    return {"accounts": _export(store)}
