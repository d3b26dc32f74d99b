"""Sole owner of the auth prefix: per-account nonce windows and request budgets, and the admission params."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import struct

from perpchain.v1 import state_pb2

from app.auth import keys
from app.auth.params import MAX_NONCE_JUMP, NONCE_WINDOW, AdmissionParams
from app.errors import ERR_NONCE_TOO_FAR, ERR_NONCE_TOO_OLD, ERR_NONCE_USED, AppError
from app.lib.address import encode_address
from app.lib.encoding import encode_proto
from app.store import BranchStore, CommittedReader

_HEADER = struct.Struct(">QQQ")  # requests left, cancels left, height of the last use (0 = never)
_NONCE = struct.Struct(">Q")


@dataclasses.dataclass
class AccountState:
    """An account's replay window and budget levels (as left by its last tx)."""

    nonces: list[int]  # ascending, at most NONCE_WINDOW
    requests: int = 0  # whole requests left after the last use
    cancels: int = 0
    last_use_height: int = 0  # 0 = never used: both buckets full


def encode_account(acct: AccountState) -> bytes:
    """Packed, not protobuf: read and rewritten by every tx (packing beats a varint list ~5x here).
    Layout: requests, cancels, last_use_height, then each nonce; all uint64 big-endian."""
    return _HEADER.pack(acct.requests, acct.cancels, acct.last_use_height) + struct.pack(
        f">{len(acct.nonces)}Q", *acct.nonces)


def decode_account(raw: bytes) -> AccountState:
    count, rest = divmod(len(raw) - _HEADER.size, _NONCE.size)
    if rest or count < 0:
        raise ValueError(f"corrupt auth account: {len(raw)} bytes")
    requests, cancels, height = _HEADER.unpack_from(raw)
    return AccountState(list(struct.unpack_from(f">{count}Q", raw, _HEADER.size)), requests, cancels, height)


def get_account(store: CommittedReader, address: bytes) -> AccountState:
    raw = store.get(keys.account_key(address))
    return AccountState([]) if raw is None else decode_account(raw)


def set_account(store: BranchStore, address: bytes, acct: AccountState) -> None:
    store.set(keys.account_key(address), encode_account(acct))


def get_params(store: CommittedReader) -> AdmissionParams:
    raw = store.get(keys.PARAMS_KEY)
    return AdmissionParams() if raw is None else _decode_params(raw)


@functools.lru_cache(maxsize=16)
def _decode_params(raw: bytes) -> AdmissionParams:
    """Read by every tx's ante: decoded once per distinct value (AdmissionParams is frozen)."""
    msg = state_pb2.AdmissionParams.FromString(raw)
    return AdmissionParams(**{f.name: getattr(msg, f.name) for f in dataclasses.fields(AdmissionParams)})


def set_params(store: BranchStore, params: AdmissionParams) -> None:
    params.validate()
    store.set(keys.PARAMS_KEY, encode_proto(state_pb2.AdmissionParams(**dataclasses.asdict(params))))


def validate_nonce(recent: list[int], nonce: int) -> None:
    """Raise unless ``nonce`` may be used given the ascending ``recent`` window."""
    if recent:
        i = bisect.bisect_left(recent, nonce)
        if i < len(recent) and recent[i] == nonce:
            raise AppError(ERR_NONCE_USED, f"nonce {nonce} was already used")
        if len(recent) >= NONCE_WINDOW and nonce < recent[0]:
            raise AppError(
                ERR_NONCE_TOO_OLD,
                f"nonce {nonce} is below the account's window (smallest kept nonce {recent[0]})",
            )
        if nonce > recent[-1] + MAX_NONCE_JUMP:
            raise AppError(
                ERR_NONCE_TOO_FAR,
                f"nonce {nonce} is more than {MAX_NONCE_JUMP} above the highest used nonce {recent[-1]}",
            )


def record_nonce(acct: AccountState, nonce: int) -> None:
    """Insert a validated nonce, keeping the NONCE_WINDOW highest."""
    bisect.insort(acct.nonces, nonce)
    if len(acct.nonces) > NONCE_WINDOW:
        del acct.nonces[: len(acct.nonces) - NONCE_WINDOW]


def iter_accounts(store: BranchStore):
    """(address, AccountState) in address order."""
    n = len(keys.ACCOUNT_PREFIX)
    for key, raw in store.iterate_prefix(keys.ACCOUNT_PREFIX):
        yield key[n:], decode_account(raw)


def export_genesis(store: BranchStore) -> list[dict]:
    return [{"address": encode_address(a), "recent_nonces": [str(n) for n in acct.nonces],
             "requests": str(acct.requests), "cancels": str(acct.cancels),
             "last_use_height": str(acct.last_use_height)}
            for a, acct in iter_accounts(store)]
