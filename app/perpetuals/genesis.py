"""perpetuals genesis: {"liquidity_tiers": [LiquidityTier], "perpetuals": [Perpetual]} in protobuf JSON
(field names as in proto/perpchain/v1/exchange.proto, 64-bit integers as strings, enums by name)."""

from __future__ import annotations

from google.protobuf import json_format
from perpchain.v1 import exchange_pb2

from app.errors import ERR_INVALID_GENESIS, AppError
from app.perpetuals import keeper
from app.perpetuals.handlers import validate_tier
from app.store import BranchStore


def parse(cls, raw: object, where: str):
    if not isinstance(raw, dict):
        raise AppError(ERR_INVALID_GENESIS, f"{where} must be an object")
    try:
        return json_format.ParseDict(raw, cls())
    except json_format.ParseError as e:
        raise AppError(ERR_INVALID_GENESIS, f"{where}: {e}") from None


def to_dict(msg) -> dict:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def init_genesis(store: BranchStore, state: dict) -> list[exchange_pb2.Perpetual]:
    """Tiers are stored here; perpetuals are returned for the clob genesis (created with their clob pairs)."""
    if not isinstance(state, dict):
        raise AppError(ERR_INVALID_GENESIS, "perpetuals genesis must be an object")
    for i, raw in enumerate(state.get("liquidity_tiers", [])):
        tier = parse(exchange_pb2.LiquidityTier, raw, f"perpetuals.liquidity_tiers[{i}]")
        if keeper.get_tier_or_none(store, tier.id) is not None:
            raise AppError(ERR_INVALID_GENESIS, f"perpetuals.liquidity_tiers[{i}]: duplicate id {tier.id}")
        try:
            validate_tier(tier)
        except AppError as err:
            raise AppError(ERR_INVALID_GENESIS, f"perpetuals.liquidity_tiers[{i}]: {err.log}") from None
        keeper.set_tier(store, tier)
    return [parse(exchange_pb2.Perpetual, raw, f"perpetuals.perpetuals[{i}]")
            for i, raw in enumerate(state.get("perpetuals", []))]


def export_genesis(store: BranchStore) -> dict:
    return {"liquidity_tiers": [to_dict(t) for t in keeper.iter_tiers(store)],
            "perpetuals": [to_dict(p) for p in keeper.iter_perpetuals(store)]}
