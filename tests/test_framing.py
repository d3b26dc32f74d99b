"""Golden bytes for ABCI framing (unsigned varint length prefix, CometBFT v0.37+)."""

import pytest
from tendermint.abci import types_pb2 as abci

from node.abci.framing import FramingError, decode_frames, encode_uvarint, frame


@pytest.mark.parametrize(
    "n, golden",
    [
        pytest.param(0, b"\x00", id="zero is one byte 00"),
        pytest.param(1, b"\x01", id="one"),
        pytest.param(127, b"\x7f", id="largest one-byte value"),
        pytest.param(128, b"\x80\x01", id="first two-byte value"),
        pytest.param(300, b"\xac\x02", id="300 as in the protobuf docs"),
        pytest.param(2**31 - 1, b"\xff\xff\xff\xff\x07", id="MaxInt32 frame bound"),
    ],
)
def test_uvarint_golden(n, golden):
    assert encode_uvarint(n) == golden


def test_not_zigzag():
    # v0.34 (and py-abci) shifted the length left by one; 1 would be 0x02 there.
    assert frame(b"x") == b"\x01x"


@pytest.mark.parametrize(
    "message, golden",
    [
        pytest.param(abci.Request(echo=abci.RequestEcho(message="hi")), b"\x06\x0a\x04\x0a\x02hi", id="request echo"),
        pytest.param(abci.Request(flush=abci.RequestFlush()), b"\x02\x12\x00", id="request flush"),
        pytest.param(abci.Response(flush=abci.ResponseFlush()), b"\x02\x1a\x00", id="response flush"),
        pytest.param(
            abci.Request(info=abci.RequestInfo(version="0.38.25", block_version=11, p2p_version=8, abci_version="2.0.0")),
            b"\x16\x1a\x14\x0a\x070.38.25\x10\x0b\x18\x08\x22\x052.0.0",
            id="request info as cometbft v0.38.25 sends it",
        ),
        pytest.param(
            abci.Response(commit=abci.ResponseCommit(retain_height=0)), b"\x02\x62\x00", id="response commit field 12"
        ),
    ],
)
def test_message_frames_golden(message, golden):
    assert frame(message.SerializeToString()) == golden
    frames, used = decode_frames(golden)
    assert used == len(golden) and frames == [message.SerializeToString()]


def test_decode_keeps_partial_frames_for_next_read():
    data = frame(b"a" * 200) + frame(b"bc")
    for cut in range(len(data) + 1):
        first, used = decode_frames(data[:cut])
        rest, used2 = decode_frames(data[used:])
        assert first + rest == [b"a" * 200, b"bc"]
        assert used + used2 == len(data)


def test_varint_split_across_reads():
    data = frame(b"z" * 300)  # two-byte varint
    assert decode_frames(data[:1]) == ([], 0)
    assert decode_frames(data[:2]) == ([], 0)
    assert decode_frames(data) == ([b"z" * 300], len(data))


def test_overlong_varint_is_rejected():
    with pytest.raises(FramingError):
        decode_frames(b"\xff" * 11)
