"""Deterministic byte encodings used in keys, hashes and protobuf checks."""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message


_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))  # the varints of 0..127: one byte each


def uvarint(n: int) -> bytes:
    """Protobuf base-128 unsigned varint of a non-negative int."""
    if n < 0:
        raise ValueError("uvarint of a negative number")
    if n < 0x80:  # most state keys and many values: the common case, without a loop
        return _ONE_BYTE[n]
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_proto(msg: Message) -> bytes:
    """The one way state values are serialized: deterministic protobuf."""
    return msg.SerializeToString(deterministic=True)


def decode_canonical(cls: type[Message], data: bytes) -> Message | None:
    """Parse ``data`` as ``cls``; None unless the bytes are exactly the canonical encoding.

    Rejecting non-canonical encodings (unknown fields, reordered fields,
    non-minimal varints, default values written out) removes signature
    malleability: one body has exactly one byte string.
    """
    msg = cls()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RecursionError):
        return None
    msg.DiscardUnknownFields()  # unknown fields would otherwise be re-emitted verbatim
    if encode_proto(msg) != data:
        return None
    return msg
