"""Account addresses: 20 bytes = sha256(ed25519 public key)[:20], shown as bech32 "perp1..."."""

from __future__ import annotations

import functools
import hashlib

import bech32

HRP = "perp"
ADDRESS_LEN = 20
ADDRESS_TEXT_LEN = len(HRP) + 1 + 32 + 6  # "perp" "1" 32 data chars (20 bytes) 6 checksum chars = 43


def address_from_pubkey(pub_key: bytes) -> bytes:
    return hashlib.sha256(pub_key).digest()[:ADDRESS_LEN]


@functools.lru_cache(maxsize=1 << 16)  # pure function; bech32 in Python is slow
def encode_address(addr: bytes) -> str:
    data = bech32.convertbits(addr, 8, 5, True)
    return bech32.bech32_encode(HRP, data)


def module_address(name: str) -> bytes:
    """Address of a module account (no key can sign for it): sha256("perpchain/module/" ‖ name)[:20]."""
    return hashlib.sha256(b"perpchain/module/" + name.encode()).digest()[:ADDRESS_LEN]


def decode_address_or_none(text: str) -> bytes | None:
    """Raw 20 bytes of a bech32 address with our prefix, or None if it is not one.

    All-lowercase and all-uppercase are both valid (BIP-173); mixed case is refused, everywhere (CLI, queries,
    tx messages), because this one function is the only decoder.
    """
    # Checked before the cache: a megabyte of query path or tx field must not become a cache key.
    if not isinstance(text, str) or len(text) != ADDRESS_TEXT_LEN:
        return None
    lower = text.lower()
    if text != lower and text != text.upper():
        return None
    return _decode_address(lower)


@functools.lru_cache(maxsize=1 << 16)  # pure function; bech32 in Python is slow
def _decode_address(text: str) -> bytes | None:
    hrp, data = bech32.bech32_decode(text)
    if hrp != HRP or data is None:
        return None
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != ADDRESS_LEN:
        return None
    return bytes(raw)
