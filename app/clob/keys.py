"""The only place the clob module's raw keys are spelled.

Order key (30 bytes): owner(20) ‖ subaccount number(u8) ‖ clob pair id(u32 BE) ‖ client id(u32 BE) ‖ flags(u8).
Owner first, so one subaccount's orders on one pair are one prefix (batch cancel, queries).
"""

from __future__ import annotations

import struct

from app.store import PREFIX_CLOB

PAIR_PREFIX = PREFIX_CLOB + b"\x00"  # ‖ clob pair id (u32) -> ClobPair
PARAMS_KEY = PREFIX_CLOB + b"\x01"  # ClobParams
ORDER_PREFIX = PREFIX_CLOB + b"\x02"  # ‖ order key -> Order
EXPIRY_BLOCK_PREFIX = PREFIX_CLOB + b"\x03"  # ‖ good_til_block (u64) ‖ order key -> b""
EXPIRY_TIME_PREFIX = PREFIX_CLOB + b"\x04"  # ‖ good_til_block_time_ns (u64) ‖ order key -> b""
SEQUENCE_KEY = PREFIX_CLOB + b"\x05"  # next placement sequence (u64)
STATS_PREFIX = PREFIX_CLOB + b"\x06"  # ‖ owner -> packed 30-day volume buckets
GLOBAL_STATS_KEY = PREFIX_CLOB + b"\x07"  # packed 30-day volume buckets of the whole exchange

ORDER_KEY_LEN = 30
SHORT_TERM = 0  # order_flags (dYdX): good_til_block
LONG_TERM = 64  # good_til_block_time

_U32 = struct.Struct(">I").pack  # big-endian: keys sort by the number
_U64 = struct.Struct(">Q").pack


def pair_key(clob_pair_id: int) -> bytes:
    return PAIR_PREFIX + _U32(clob_pair_id)


def order_key(owner: bytes, number: int, clob_pair_id: int, client_id: int, order_flags: int) -> bytes:
    return owner + bytes((number,)) + _U32(clob_pair_id) + _U32(client_id) + bytes((order_flags,))


def subaccount_pair_prefix(owner: bytes, number: int, clob_pair_id: int) -> bytes:
    return ORDER_PREFIX + owner + bytes((number,)) + _U32(clob_pair_id)


def expiry_block_key(good_til_block: int, okey: bytes) -> bytes:
    return EXPIRY_BLOCK_PREFIX + _U64(good_til_block) + okey


def expiry_time_key(good_til_block_time_ns: int, okey: bytes) -> bytes:
    return EXPIRY_TIME_PREFIX + _U64(good_til_block_time_ns) + okey


def stats_key(owner: bytes) -> bytes:
    return STATS_PREFIX + owner
