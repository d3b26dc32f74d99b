"""auth genesis (optional; export round-trips):
{"params": {AdmissionParams fields as decimal strings},
 "accounts": [{"address", "recent_nonces": ["1", ...], "requests", "cancels", "last_use_height"}]}."""

from __future__ import annotations

import dataclasses

from app.auth import keeper
from app.auth.params import NONCE_WINDOW, AdmissionParams
from app.bank.genesis import parse_uint
from app.errors import ERR_INVALID_GENESIS, AppError
from app.lib.address import decode_address_or_none
from app.store import BranchStore


def parse_params(raw: object) -> AdmissionParams:
    if not isinstance(raw, dict):
        raise AppError(ERR_INVALID_GENESIS, "auth.params must be an object")
    names = [f.name for f in dataclasses.fields(AdmissionParams)]
    unknown = sorted(k for k in raw if k not in names)
    if unknown:
        raise AppError(ERR_INVALID_GENESIS, f"auth.params has unknown fields {unknown}")
    params = AdmissionParams(**{k: parse_uint(raw[k], f"auth.params.{k}") for k in names if k in raw})
    params.validate()
    return params


def init_genesis(store: BranchStore, state: dict) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("accounts", []), list):
        raise AppError(ERR_INVALID_GENESIS, "auth genesis must be an object with an accounts list")
    keeper.set_params(store, parse_params(state.get("params", {})))
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
        counters = {k: parse_uint(entry.get(k, "0"), f"auth.accounts[{i}].{k}")
                    for k in ("requests", "cancels", "last_use_height")}
        keeper.set_account(store, address, keeper.AccountState(nonces, **counters))


def export_genesis(store: BranchStore) -> dict:
    params = keeper.get_params(store)
    return {"params": {k: str(v) for k, v in dataclasses.asdict(params).items()},
            "accounts": keeper.export_genesis(store)}
