"""app/lib pinned by hand-worked vectors (issue #8: the survivors of `make mutation MODULE=app/lib`).

Every expected value here is worked out by hand (or with hashlib / struct on the spot), never read back from the
code under test.
"""

from __future__ import annotations

import hashlib
import struct

import nacl.signing
import pytest
from google.protobuf import struct_pb2

from app.lib import crypto
from app.lib.address import address_from_pubkey, decode_address_or_none, encode_address, module_address
from app.lib.crypto import SignatureMemo, verify_ed25519
from app.lib.encoding import encode_proto, uvarint
from app.lib.math import UINT64_MAX, Rounding, checked_add_u64, div_round
from app.lib.units import format_scaled

T, F, C = Rounding.TRUNC, Rounding.FLOOR, Rounding.CEIL
KEY = nacl.signing.SigningKey(hashlib.sha256(b"lib-mutation-key").digest())
PUB = bytes(KEY.verify_key)
MSG = b"perpchain lib test message"
SIG = KEY.sign(MSG).signature


# --- addresses --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("fee_collector", id="the fee collector is sha256('perpchain/module/fee_collector')[:20]"),
        pytest.param("x", id="a one-letter module name is hashed after the fixed 'perpchain/module/' prefix"),
    ],
)
def test_module_address_is_the_documented_hash(name):
    expected = hashlib.sha256(b"perpchain/module/" + name.encode()).digest()[:20]
    assert module_address(name) == expected
    assert len(expected) == 20


def test_address_from_pubkey_is_the_first_20_bytes_of_its_sha256():
    assert address_from_pubkey(PUB) == hashlib.sha256(PUB).digest()[:20]


RAW = bytes(range(20))
TEXT = encode_address(RAW)


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(TEXT, RAW, id="the lowercase canonical form decodes"),
        pytest.param(TEXT.upper(), RAW, id="the all-uppercase form decodes too (BIP-173)"),
        pytest.param(TEXT[:10] + TEXT[10:].upper(), None, id="mixed case is refused"),
        pytest.param(TEXT[:-1], None, id="one character short is refused"),
        pytest.param(TEXT + "q", None, id="one character long is refused"),
        pytest.param(5, None, id="an int is not an address (no exception)"),
        pytest.param(None, None, id="None is not an address (no exception)"),
        pytest.param(TEXT.encode(), None, id="bytes of the right length are not an address"),
    ],
)
def test_decode_address_or_none(text, expected):
    assert decode_address_or_none(text) == expected


# --- ed25519 and the signature memo ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pub, msg, sig, expected",
    [
        pytest.param(PUB, MSG, SIG, True, id="a valid signature verifies"),
        pytest.param(PUB, MSG + b"!", SIG, False, id="another message does not"),
        pytest.param(PUB, MSG, bytes([SIG[0] ^ 1]) + SIG[1:], False, id="a flipped signature bit does not"),
        pytest.param(PUB[:31], MSG, SIG, False, id="a 31-byte key is refused"),
        pytest.param(PUB + b"\x00", MSG, SIG, False, id="a 33-byte key is refused"),
        pytest.param(PUB, MSG, SIG[:63], False, id="a 63-byte signature is refused"),
        pytest.param(PUB, MSG, SIG + b"\x00", False, id="a 65-byte signature is refused"),
        pytest.param(PUB, MSG, b"", False, id="an empty signature is refused"),
    ],
)
def test_verify_ed25519(pub, msg, sig, expected):
    assert verify_ed25519(pub, msg, sig) is expected


@pytest.fixture
def counted(monkeypatch):
    """Counts the real verifications the memo asks for."""
    calls = []
    real = crypto.verify_ed25519

    def counting(pub_key, message, signature):
        calls.append((pub_key, message, signature))
        return real(pub_key, message, signature)

    monkeypatch.setattr(crypto, "verify_ed25519", counting)
    return calls


def test_the_memo_verifies_each_triple_once_and_keeps_true_and_false_apart(counted):
    memo = SignatureMemo()
    bad = bytes([SIG[0] ^ 1]) + SIG[1:]
    assert memo.verify(PUB, MSG, SIG) is True
    assert memo.verify(PUB, MSG, bad) is False
    assert memo.verify(PUB, MSG, SIG) is True
    assert memo.verify(PUB, MSG, bad) is False
    assert counted == [(PUB, MSG, SIG), (PUB, MSG, bad)]


def test_a_full_memo_evicts_its_oldest_entry_first(counted):
    memo = SignatureMemo(max_entries=2)
    a, b, c = [(PUB[:31], MSG + bytes([i]), SIG) for i in range(3)]  # wrong-length keys: cheap False results
    for t in (a, b):
        assert memo.verify(*t) is False
    assert len(counted) == 2
    memo.verify(*b)
    assert len(counted) == 2  # b is still remembered
    memo.verify(*c)  # the memo holds 2: a (the oldest) makes room for c
    assert len(counted) == 3
    memo.verify(*b)
    memo.verify(*c)
    assert len(counted) == 3  # b and c are remembered
    memo.verify(*a)
    assert len(counted) == 4  # a was evicted, so it is verified again


def test_the_default_memo_holds_exactly_20000_entries(counted):
    memo = SignatureMemo()
    triples = [(PUB[:31], i.to_bytes(4, "big"), SIG) for i in range(20_001)]
    for t in triples[:20_000]:
        memo.verify(*t)
    memo.verify(*triples[0])
    assert len(counted) == 20_000  # 20 000 entries fit: the first is still remembered
    memo.verify(*triples[20_000])  # the 20 001st evicts the oldest, triples[0]
    memo.verify(*triples[0])
    assert len(counted) == 20_002


# --- encodings --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, expected",
    [
        pytest.param(0, b"\x00", id="0 is one zero byte"),
        pytest.param(1, b"\x01", id="1"),
        pytest.param(127, b"\x7f", id="127 is the largest one-byte varint"),
        pytest.param(128, b"\x80\x01", id="128 = 0 + 1*128: continuation bit then 1"),
        pytest.param(300, b"\xac\x02", id="300 = 44 + 2*128: 0x2c|0x80 then 2"),
        pytest.param(16_383, b"\xff\x7f", id="16383 = 127 + 127*128"),
        pytest.param(16_384, b"\x80\x80\x01", id="16384 = 128^2 takes three bytes"),
        pytest.param(UINT64_MAX, b"\xff" * 9 + b"\x01", id="2^64-1 = nine 0xff then 0x01"),
    ],
)
def test_uvarint_vectors(n, expected):
    assert uvarint(n) == expected


def test_uvarint_refuses_a_negative_number_with_its_message():
    with pytest.raises(ValueError, match="^uvarint of a negative number$"):
        uvarint(-1)


def test_encode_proto_writes_map_entries_in_key_order():
    """Deterministic serialization: a map's entries come out sorted by key, whatever the insertion order."""
    names = ["k", "b", "j", "a", "i", "c", "h", "d", "g", "e", "f"]
    s = struct_pb2.Struct()
    for n in names:
        s.fields[n].number_value = 1.0
    value = b"\x11" + struct.pack("<d", 1.0)  # Value.number_value: field 1, fixed64
    entry = lambda k: b"\x0a\x01" + k.encode() + b"\x12" + bytes([len(value)]) + value  # noqa: E731
    expected = b"".join(b"\x0a" + bytes([len(entry(k))]) + entry(k) for k in sorted(names))
    assert encode_proto(s) == expected


# --- integer math -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, d, rounding, expected",
    [
        pytest.param(7, 1, F, 7, id="floor 7/1 = 7 (denominator 1 is not zero)"),
        pytest.param(-7, 1, C, -7, id="ceil -7/1 = -7"),
        pytest.param(7, 1, T, 7, id="trunc 7/1 = 7"),
        pytest.param(7, 2, F, 3, id="floor 7/2 = 3"),
        pytest.param(7, 2, C, 4, id="ceil 7/2 = 4"),
        pytest.param(6, 2, C, 3, id="ceil 6/2 exact = 3"),
        pytest.param(1, 3, C, 1, id="ceil 1/3 = 1"),
        pytest.param(7, 2, T, 3, id="trunc 7/2 = 3"),
        pytest.param(-7, 2, T, -3, id="trunc -7/2 = -3"),
        pytest.param(7, -2, T, -3, id="trunc 7/-2 = -3"),
        pytest.param(-7, -2, T, 3, id="trunc -7/-2 = 3"),
        pytest.param(-1, 3, T, 0, id="trunc -1/3 = 0"),
        pytest.param(0, 3, T, 0, id="trunc 0/3 = 0"),
        pytest.param(-6, 3, T, -2, id="trunc -6/3 exact = -2"),
        pytest.param(-5, 3, T, -1, id="trunc -5/3 = -1 (remainder 1 after floor -2)"),
    ],
)
def test_div_round_vectors(n, d, rounding, expected):
    assert div_round(n, d, rounding) == expected


def test_div_round_by_zero_says_so():
    with pytest.raises(ZeroDivisionError, match="^div_round by zero$"):
        div_round(1, 0, Rounding.FLOOR)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        pytest.param(0, 0, 0, id="0 + 0 = 0 fits"),
        pytest.param(1, 2, 3, id="1 + 2 = 3"),
        pytest.param(UINT64_MAX - 1, 1, UINT64_MAX, id="a sum of exactly 2^64-1 fits"),
        pytest.param(UINT64_MAX, 0, UINT64_MAX, id="2^64-1 + 0 fits"),
        pytest.param(UINT64_MAX, 1, None, id="2^64 overflows"),
        pytest.param(1, -2, None, id="a negative sum does not fit"),
    ],
)
def test_checked_add_u64(a, b, expected):
    assert checked_add_u64(a, b) == expected


# --- decimal text -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, exponent, expected",
    [
        pytest.param(123, -2, "1.23", id="123e-2 = 1.23"),
        pytest.param(-123, -2, "-1.23", id="-123e-2 = -1.23"),
        pytest.param(120, -2, "1.2", id="a trailing fractional zero is dropped"),
        pytest.param(100, -2, "1", id="no fraction left: no decimal point"),
        pytest.param(5, -3, "0.005", id="leading zeros are added before the point"),
        pytest.param(-5, -3, "-0.005", id="negative below one"),
        pytest.param(0, -2, "0", id="zero with a negative exponent is 0 (no minus sign)"),
        pytest.param(5, 0, "5", id="exponent 0 is the integer itself"),
        pytest.param(-5, 0, "-5", id="negative with exponent 0"),
        pytest.param(5, 3, "5000", id="a positive exponent appends zeros"),
        pytest.param(-7, 2, "-700", id="negative with a positive exponent"),
        pytest.param(1_050, -3, "1.05", id="an inner zero of the fraction stays"),
        # PEPE-USD (atomic resolution +1): open interest 0 printed "00" (session-10 probe)
        pytest.param(0, 1, "0", id="zero with a positive exponent is 0, not 00"),
        pytest.param(0, 3, "0", id="zero with exponent 3 is 0, not 0000"),
        pytest.param(0, 0, "0", id="zero with exponent 0"),
    ],
)
def test_format_scaled(value, exponent, expected):
    assert format_scaled(value, exponent) == expected
