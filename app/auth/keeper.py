"""Sole owner of the auth prefix: nonce windows."""

from __future__ import annotations

import bisect
import struct

from app.auth import keys
from app.auth.params import MAX_NONCE_JUMP, NONCE_WINDOW
from app.errors import ERR_NONCE_TOO_FAR, ERR_NONCE_TOO_OLD, ERR_NONCE_USED, AppError
from app.lib.address import encode_address
from app.store import BranchStore, CommittedReader

_NONCE = struct.Struct(">Q")


def encode_window(nonces: list[int]) -> bytes:
    """Stored form of a window: each nonce as 8 bytes big-endian, ascending (no proto: it is read and
    rewritten by every tx, and packing beats protobuf's varint list by ~5x here)."""
    return struct.pack(f">{len(nonces)}Q", *nonces)


def decode_window(raw: bytes) -> list[int]:
    count, rest = divmod(len(raw), _NONCE.size)
    if rest:
        raise ValueError(f"corrupt nonce window: {len(raw)} bytes is not a multiple of {_NONCE.size}")
    return list(struct.unpack(f">{count}Q", raw))


def get_recent_nonces(store: CommittedReader, address: bytes) -> list[int]:
    raw = store.get(keys.nonce_window_key(address))
    return [] if raw is None else decode_window(raw)


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


def apply_nonce(store: BranchStore, address: bytes, nonce: int) -> None:
    """Validate and record ``nonce`` for ``address``; raises AppError when not usable."""
    recent = get_recent_nonces(store, address)
    validate_nonce(recent, nonce)
    bisect.insort(recent, nonce)
    if len(recent) > NONCE_WINDOW:
        del recent[: len(recent) - NONCE_WINDOW]
    store.set(keys.nonce_window_key(address), encode_window(recent))


def export_genesis(store: BranchStore) -> list[dict]:
    out = []
    for key, raw in store.iterate_prefix(keys.nonce_window_key(b"")):
        out.append({"address": encode_address(key[1:]), "recent_nonces": [str(n) for n in decode_window(raw)]})
    return out
