"""Build and sign perpchain transactions (client side)."""

from __future__ import annotations

import hashlib
import time

import nacl.signing
from perpchain.v1 import tx_pb2

from app.auth.params import MAX_NONCE_JUMP, NONCE_WINDOW
from app.lib.math import UINT64_MAX
from app.lib.encoding import encode_proto
from app.tx.codec import sign_bytes


def sign_tx(
    signing_key: nacl.signing.SigningKey,
    chain_id: str,
    nonce: int,
    messages: list[tx_pb2.Msg],
    memo: str = "",
) -> bytes:
    body = tx_pb2.TxBody(
        chain_id=chain_id,
        signer_pub_key=bytes(signing_key.verify_key),
        nonce=nonce,
        memo=memo,
        messages=messages,
    )
    body_bytes = encode_proto(body)
    signature = signing_key.sign(sign_bytes(body_bytes)).signature
    return encode_proto(tx_pb2.Tx(body=body_bytes, signature=signature))


def msg_send(from_address: str, to_address: str, amount_quote_quantums: int) -> tx_pb2.Msg:
    return tx_pb2.Msg(
        send=tx_pb2.MsgSend(
            from_address=from_address, to_address=to_address, amount_quote_quantums=amount_quote_quantums
        )
    )


def msg_set_validator_power(authority: str, pub_key_ed25519: bytes, power: int) -> tx_pb2.Msg:
    return tx_pb2.Msg(
        set_validator_power=tx_pb2.MsgSetValidatorPower(authority=authority, pub_key_ed25519=pub_key_ed25519,
                                                        power=power)
    )


def tx_hash(tx_bytes: bytes) -> str:
    """CometBFT's tx hash: uppercase hex sha256 of the raw bytes."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


class NoNonceLeft(ValueError):
    """Every nonce the chain would still accept for this account is used (it reached 2**64 - 1)."""


def default_nonce(recent_nonces: list[int], now_ms: int | None = None) -> int:
    """Milliseconds since the epoch, bumped above the highest used nonce (client side only).

    An account that used small counters (1, 2, 3 ... as bots often do) cannot jump to a timestamp: the chain
    refuses nonces more than MAX_NONCE_JUMP above the highest used one. Such an account continues its counter.
    Past the top of uint64 it takes the largest unused nonce the window still accepts (above the window's
    smallest nonce once the window is full), and raises NoNonceLeft when there is none.
    """
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not recent_nonces:
        return now_ms
    recent = sorted(recent_nonces)
    highest = recent[-1]
    candidate = highest + 1 if now_ms > highest + MAX_NONCE_JUMP else max(now_ms, highest + 1)
    if candidate <= UINT64_MAX:
        return candidate
    lowest_allowed = recent[0] + 1 if len(recent) >= NONCE_WINDOW else 0
    used = dict.fromkeys(recent)
    for nonce in range(UINT64_MAX, lowest_allowed - 1, -1):
        if nonce not in used:
            return nonce
    raise NoNonceLeft(f"this account used nonce {UINT64_MAX} (2^64-1) and its window of {NONCE_WINDOW} nonces is "
                      f"the top of uint64: no nonce is left for it; move its funds with a new key")
