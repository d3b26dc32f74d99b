"""Sole owner of the consensus prefix."""

from __future__ import annotations

from perpchain.v1 import state_pb2

from app.lib.encoding import encode_proto
from app.store import PREFIX_CONSENSUS, BranchStore, CommittedReader

CHAIN_INFO_KEY = PREFIX_CONSENSUS + b"\x00"
VALIDATORS_KEY = PREFIX_CONSENSUS + b"\x01"


def set_chain_info(
    store: BranchStore, chain_id: str, initial_height: int, genesis_time_ns: int, vote_extensions_enable_height: int
) -> None:
    info = state_pb2.ChainInfo(chain_id=chain_id, initial_height=initial_height, genesis_time_ns=genesis_time_ns,
                               vote_extensions_enable_height=vote_extensions_enable_height)
    store.set(CHAIN_INFO_KEY, encode_proto(info))


def get_chain_info_or_none(store: CommittedReader) -> state_pb2.ChainInfo | None:
    raw = store.get(CHAIN_INFO_KEY)
    if raw is None:
        return None
    info = state_pb2.ChainInfo()
    info.ParseFromString(raw)
    return info


def set_validators(store: BranchStore, validators: list[tuple[bytes, bytes, int]]) -> None:
    """validators: (address, pub_key, power); stored sorted by address, zero power dropped."""
    vs = state_pb2.ValidatorSet(
        validators=[
            state_pb2.Validator(address=a, pub_key_ed25519=pk, power=p) for a, pk, p in sorted(validators) if p > 0
        ]
    )
    store.set(VALIDATORS_KEY, encode_proto(vs))


def get_validators(store: CommittedReader) -> list[state_pb2.Validator]:
    raw = store.get(VALIDATORS_KEY)
    vs = state_pb2.ValidatorSet()
    if raw is not None:
        vs.ParseFromString(raw)
    return list(vs.validators)
