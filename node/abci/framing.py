"""ABCI socket framing (CometBFT v0.37+): uvarint(len(payload)) || payload.

v0.34 used a zigzag (signed) varint; v0.38 uses the plain unsigned one.
"""

from __future__ import annotations

MAX_FRAME_BYTES = (1 << 31) - 1  # CometBFT's own bound (math.MaxInt32)
MAX_VARINT_BYTES = 10


class FramingError(Exception):
    pass


def encode_uvarint(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative length")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    return encode_uvarint(len(payload)) + payload


def decode_frames(buf: bytes | bytearray) -> tuple[list[bytes], int]:
    """Complete frames at the start of ``buf`` and how many bytes they used.

    A partial varint or payload at the end is left for the next read.
    """
    frames = []
    pos = 0
    n = len(buf)
    while pos < n:
        length = 0
        shift = 0
        i = pos
        while True:
            if i >= n:
                return frames, pos  # varint split across reads
            b = buf[i]
            i += 1
            length |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if i - pos >= MAX_VARINT_BYTES:
                raise FramingError("length varint longer than 10 bytes")
        if length > MAX_FRAME_BYTES:
            raise FramingError(f"frame of {length} bytes exceeds limit")
        if i + length > n:
            return frames, pos
        frames.append(bytes(buf[i : i + length]))
        pos = i + length
    return frames, pos
