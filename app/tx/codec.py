"""Stateless decoding and verification of a tx's bytes.

``decode_and_verify`` is a pure function of (tx bytes, chain id), used by
CheckTx, PrepareProposal, ProcessProposal and FinalizeBlock alike, so an
honest proposer's block always passes ProcessProposal.
"""

from __future__ import annotations

import dataclasses
import hashlib

import nacl.exceptions
import nacl.signing
from google.protobuf.message import DecodeError
from perpchain.v1 import tx_pb2

from app.errors import (
    ERR_INVALID_PUBKEY,
    ERR_INVALID_SIGNATURE,
    ERR_MEMO_TOO_LONG,
    ERR_MIXED_MESSAGES,
    ERR_NO_MESSAGES,
    ERR_TOO_MANY_ACTIONS,
    ERR_TOO_MANY_MESSAGES,
    ERR_TX_DECODE,
    ERR_TX_TOO_LARGE,
    ERR_UNAUTHORIZED,
    ERR_UNKNOWN_MESSAGE,
    ERR_WRONG_CHAIN_ID,
    AppError,
)
from app.lib.address import address_from_pubkey, encode_address
from app.lib.encoding import decode_canonical
from app.tx.router import ROUTES

SIGN_DOMAIN = b"perpchain/tx/v1\x00"
MAX_TX_BYTES = 32 * 1024  # bytes; CometBFT's mempool limit is larger, ours is the one enforced
MAX_MESSAGES = 32  # per tx
MAX_MEMO_BYTES = 256  # UTF-8 bytes
MAX_ORDER_ACTIONS = 200  # order actions per tx, over all its MsgOrders
# The stateless-check memo's bound in tx bytes, beside its count: signed txs cost an attacker nothing (a fresh key,
# any valid signature; the ante refuses them after they are memoized), and a decoded tx takes 2-10x its bytes of
# memory (measured RSS: 1.8 KB for a 181-byte single order, 29 KB for a 5.2 KB tx of 200 placements, 70 KB for a
# 32 KiB tx of batch cancels), so the count alone let 50 000 entries of 32 KiB txs hold ~3.5 GB. 16 MiB of txs holds
# a full CometBFT mempool (5 000 txs) of 3 KiB txs and keeps the memo near 100 MB at worst. The count: a tx is needed
# from its CheckTx to its block (a mempool's life), so 4x CometBFT's default mempool of 5 000 txs; it was 50 000,
# which a localnet soak showed filling at ~1.5 MiB of RSS per minute for hours (docs/benchmarks.md).
MAX_CACHED_TX_BYTES = 16 * 1024 * 1024
MAX_CACHED_TXS = 20_000


@dataclasses.dataclass(frozen=True)
class DecodedTx:
    signer: bytes  # 20-byte address
    nonce: int
    digest: bytes  # sha256 of the tx bytes (CometBFT's tx hash)
    memo: str
    msgs: tuple[tuple[str, object], ...]  # (route name, message)


def sign_bytes(body: bytes) -> bytes:
    return SIGN_DOMAIN + body


class StatelessCheckCache:
    """Memoizes successful :func:`decode_and_verify` by (sha256 of the tx, chain id); bounded, oldest evicted first.

    The result is a pure function of its key, so the cache can never change
    an outcome -- it only removes the repeated signature check and decode
    when one tx goes through CheckTx, rechecks, ProcessProposal and
    FinalizeBlock on the same node. A restarted node simply starts cold.
    Only verified txs are kept, keyed by digest, and nothing is cached for a
    tx over MAX_TX_BYTES: junk (oversized or unsigned bytes, which anyone can
    send for free) must not be able to fill a node's memory.
    """

    def __init__(self, max_entries: int = MAX_CACHED_TXS, max_bytes: int = MAX_CACHED_TX_BYTES) -> None:
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0  # Σ size of the cached txs' bytes
        self._entries: dict[tuple[bytes, str], DecodedTx] = {}
        self._sizes: dict[tuple[bytes, str], int] = {}

    def decode_and_verify(self, tx_bytes: bytes, chain_id: str) -> DecodedTx:
        if len(tx_bytes) > MAX_TX_BYTES:
            return decode_and_verify(tx_bytes, chain_id)  # raises tx_too_large before looking at the bytes
        digest = hashlib.sha256(tx_bytes).digest()
        key = (digest, chain_id)
        hit = self._entries.get(key)
        if hit is None:
            hit = decode_and_verify(tx_bytes, chain_id, digest)  # an AppError propagates and nothing is stored
            size = len(tx_bytes)
            while self._entries and (len(self._entries) >= self._max or self._bytes + size > self._max_bytes):
                oldest = next(iter(self._entries))  # dicts keep insertion order: oldest first
                del self._entries[oldest]
                self._bytes -= self._sizes.pop(oldest)
            self._entries[key] = hit
            self._sizes[key] = size
            self._bytes += size
        return hit


def _has_unknown_message(body_bytes: bytes) -> bool:
    """True if the body parses leniently and some message has no known type (for a precise error)."""
    body = tx_pb2.TxBody()
    try:
        body.ParseFromString(body_bytes)
    except (DecodeError, ValueError, RecursionError):
        return False
    return any(m.WhichOneof("sum") is None for m in body.messages)


def decode_and_verify(tx_bytes: bytes, chain_id: str, digest: bytes | None = None) -> DecodedTx:
    """Decode, check canonical encoding, chain id, signature and every message's signer.

    Raises AppError with a specific code for each failure.
    """
    if len(tx_bytes) > MAX_TX_BYTES:
        raise AppError(ERR_TX_TOO_LARGE, f"tx is {len(tx_bytes)} bytes, limit {MAX_TX_BYTES}")
    tx = decode_canonical(tx_pb2.Tx, tx_bytes)
    if tx is None or not tx.body:
        raise AppError(ERR_TX_DECODE, "tx bytes are not a canonical perpchain.v1.Tx with a body")
    body = decode_canonical(tx_pb2.TxBody, tx.body)
    if body is None:
        if _has_unknown_message(tx.body):
            raise AppError(ERR_UNKNOWN_MESSAGE, "tx carries a message type this chain does not know")
        raise AppError(ERR_TX_DECODE, "tx body is not a canonical perpchain.v1.TxBody")
    if body.chain_id != chain_id:
        raise AppError(ERR_WRONG_CHAIN_ID, f"tx is for chain {body.chain_id!r}, this chain is {chain_id!r}")
    if len(body.signer_pub_key) != 32:
        raise AppError(ERR_INVALID_PUBKEY, "signer_pub_key must be a 32-byte ed25519 key")
    if len(tx.signature) != 64:
        raise AppError(ERR_INVALID_SIGNATURE, "signature must be 64 bytes")
    try:
        nacl.signing.VerifyKey(body.signer_pub_key).verify(sign_bytes(tx.body), tx.signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        raise AppError(ERR_INVALID_SIGNATURE, "signature does not verify against signer_pub_key") from None
    if len(body.memo.encode()) > MAX_MEMO_BYTES:
        raise AppError(ERR_MEMO_TOO_LONG, f"memo longer than {MAX_MEMO_BYTES} bytes")
    if not body.messages:
        raise AppError(ERR_NO_MESSAGES, "tx carries no messages")
    if len(body.messages) > MAX_MESSAGES:
        raise AppError(ERR_TOO_MANY_MESSAGES, f"tx carries {len(body.messages)} messages, limit {MAX_MESSAGES}")
    signer = address_from_pubkey(body.signer_pub_key)
    msgs = []
    for i, wrapper in enumerate(body.messages):
        name = wrapper.WhichOneof("sum")
        route = ROUTES.get(name) if name is not None else None
        if route is None:
            raise AppError(ERR_UNKNOWN_MESSAGE, f"message {i} has an unknown or empty type")
        msg = getattr(wrapper, name)
        for required in route.signers(msg):
            if required != signer:
                raise AppError(
                    ERR_UNAUTHORIZED,
                    f"message {i} must be signed by {encode_address(required)}, tx signer is {encode_address(signer)}",
                )
        msgs.append((name, msg))
    deferred = [ROUTES[name].deferred for name, _ in msgs]
    if any(deferred) and not all(deferred):
        raise AppError(ERR_MIXED_MESSAGES, "a tx with order actions (MsgOrders) carries no other message type")
    actions = sum(len(m.actions) for name, m in msgs if name == "orders")
    if actions > MAX_ORDER_ACTIONS:
        raise AppError(ERR_TOO_MANY_ACTIONS, f"{actions} order actions, at most {MAX_ORDER_ACTIONS} per tx")
    return DecodedTx(signer=signer, nonce=body.nonce, digest=digest or hashlib.sha256(tx_bytes).digest(),
                     memo=body.memo, msgs=tuple(msgs))
