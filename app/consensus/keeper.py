"""Sole owner of the consensus prefix."""

from __future__ import annotations

from perpchain.v1 import state_pb2

from app.lib.address import address_from_pubkey
from app.lib.encoding import encode_proto
from app.store import PREFIX_CONSENSUS, BranchStore, CommittedReader, prefix_end

CHAIN_INFO_KEY = PREFIX_CONSENSUS + b"\x00"
# Bumped whenever the stored layout changes incompatibly; a node refuses data written in another format instead
# of misreading it (2: nonce windows as packed uint64s, validator sets per height; 3: auth accounts carry request
# budgets, admission params; 4: the exchange: perpetuals, packed subaccounts, clob orders).
STATE_FORMAT = 4


def set_chain_info(
    store: BranchStore, chain_id: str, initial_height: int, genesis_time_ns: int, vote_extensions_enable_height: int
) -> None:
    info = state_pb2.ChainInfo(chain_id=chain_id, initial_height=initial_height, genesis_time_ns=genesis_time_ns,
                               vote_extensions_enable_height=vote_extensions_enable_height,
                               state_format=STATE_FORMAT)
    store.set(CHAIN_INFO_KEY, encode_proto(info))


def get_chain_info_or_none(store: CommittedReader) -> state_pb2.ChainInfo | None:
    raw = store.get(CHAIN_INFO_KEY)
    if raw is None:
        return None
    info = state_pb2.ChainInfo()
    info.ParseFromString(raw)
    return info


# Header time of the last executed block (int64 ns, BE): CheckTx validates good-til-time orders against it.
LAST_BLOCK_TIME_KEY = PREFIX_CONSENSUS + b"\x04"


def set_last_block_time(store: BranchStore, block_time_ns: int) -> None:
    store.set(LAST_BLOCK_TIME_KEY, max(0, block_time_ns).to_bytes(8, "big"))


def get_last_block_time_ns(store: CommittedReader) -> int:
    """The last block's header time, or the genesis time before the first block."""
    raw = store.get(LAST_BLOCK_TIME_KEY)
    if raw is not None:
        return int.from_bytes(raw, "big")
    info = get_chain_info_or_none(store)
    return info.genesis_time_ns if info is not None else 0


# validators(h), the set that signs block h, is the entry with the greatest height <= h.
VALIDATOR_SETS_PREFIX = PREFIX_CONSENSUS + b"\x02"  # ‖ height (u64 BE) -> ValidatorSet
# This block's staged validator updates (cleared when the block ends): ‖ pub_key (32) -> power (u64 BE).
PENDING_UPDATES_PREFIX = PREFIX_CONSENSUS + b"\x03"
# CometBFT's validator-update delay: updates returned by FinalizeBlock at H apply to the set signing H+2.
VALIDATOR_UPDATE_DELAY = 2

Row = tuple[bytes, bytes, int]  # (address, pub_key, power)


def _set_key(height: int) -> bytes:
    return VALIDATOR_SETS_PREFIX + height.to_bytes(8, "big")


def _decode_set(raw: bytes) -> list[state_pb2.Validator]:
    vs = state_pb2.ValidatorSet()
    vs.ParseFromString(raw)
    return list(vs.validators)


def set_validators_from(store: BranchStore, height: int, validators: list[Row]) -> None:
    """validators(h) for h >= height (until a later entry): (address, pub_key, power), zero power dropped."""
    vs = state_pb2.ValidatorSet(
        validators=[
            state_pb2.Validator(address=a, pub_key_ed25519=pk, power=p) for a, pk, p in sorted(validators) if p > 0
        ]
    )
    store.set(_set_key(height), encode_proto(vs))


def _entries(store: CommittedReader) -> list[tuple[int, bytes]]:
    return [(int.from_bytes(k[len(VALIDATOR_SETS_PREFIX):], "big"), v)
            for k, v in store.iterate(VALIDATOR_SETS_PREFIX, prefix_end(VALIDATOR_SETS_PREFIX))]


def validators_at(store: CommittedReader, height: int) -> list[state_pb2.Validator]:
    """The validator set that signs block ``height`` (sorted by address); [] before genesis."""
    chosen = None
    for h, raw in _entries(store):
        if h > height:
            break
        chosen = raw
    return _decode_set(chosen) if chosen is not None else []


def latest_validators(store: CommittedReader) -> tuple[int, list[state_pb2.Validator]]:
    """(effective height, set) of the newest entry, scheduled or current; (0, []) before genesis."""
    entries = _entries(store)
    if not entries:
        return 0, []
    return entries[-1][0], _decode_set(entries[-1][1])


def scheduled_validator_sets(store: CommittedReader, height: int) -> list[tuple[int, list[state_pb2.Validator]]]:
    """Sets already decided for heights after ``height``: (effective height, set), ascending."""
    return [(h, _decode_set(raw)) for h, raw in _entries(store) if h > height]


def prune_validator_sets(store: BranchStore, oldest_needed: int) -> None:
    """Drop entries superseded before ``oldest_needed`` (CometBFT keeps the full history for audits)."""
    entries = _entries(store)
    keep_from = 0
    for i, (h, _) in enumerate(entries):
        if h <= oldest_needed:
            keep_from = i
    for h, _ in entries[:keep_from]:
        store.delete(_set_key(h))


def stage_validator_update(store: BranchStore, pub_key: bytes, power: int) -> None:
    store.set(PENDING_UPDATES_PREFIX + pub_key, power.to_bytes(8, "big"))


def staged_validator_updates(store: CommittedReader) -> list[tuple[bytes, int]]:
    """This block's staged (pub_key, power), by pub key."""
    return [(k[len(PENDING_UPDATES_PREFIX):], int.from_bytes(v, "big"))
            for k, v in store.iterate(PENDING_UPDATES_PREFIX, prefix_end(PENDING_UPDATES_PREFIX))]


def as_rows(validators: list[state_pb2.Validator]) -> list[Row]:
    return [(v.address, v.pub_key_ed25519, v.power) for v in validators]


def apply_updates(rows: list[Row], updates: list[tuple[bytes, int]]) -> list[Row]:
    """The set after ``updates`` ((pub_key, power), in order; power 0 removes), sorted by address."""
    by_key = {pk: (a, pk, p) for a, pk, p in rows}
    for pub_key, power in updates:
        if power == 0:
            by_key.pop(pub_key, None)
        else:
            by_key[pub_key] = (address_from_pubkey(pub_key), pub_key, power)
    return sorted(by_key.values())


def end_block_validator_updates(store: BranchStore, height: int) -> list[tuple[bytes, int]]:
    """Turn this block's staged updates into the set for height+2; returns them for CometBFT.

    Also prunes sets no longer needed: block height+1 verifies votes of ``height`` at the oldest.
    """
    updates = staged_validator_updates(store)
    for pub_key, _ in updates:
        store.delete(PENDING_UPDATES_PREFIX + pub_key)
    if updates:
        _, latest = latest_validators(store)
        set_validators_from(store, height + VALIDATOR_UPDATE_DELAY, apply_updates(as_rows(latest), updates))
    prune_validator_sets(store, height)
    return updates
