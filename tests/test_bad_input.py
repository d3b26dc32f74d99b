"""Bad input gets a clear error code and changes nothing; the node never crashes."""

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from app.lib.encoding import encode_proto
from app.lib.math import UINT64_MAX
from app.tx.codec import MAX_TX_BYTES
from node.client.txbuilder import msg_send, sign_tx
from app.bank.keeper import FEE_COLLECTOR_ADDRESS as FEE_COLLECTOR
from tests.helpers import ADDRS, FEE, KEYS, ONE_USDC, send_tx


def _tamper_signature(tx: bytes) -> bytes:
    t = tx_pb2.Tx.FromString(tx)
    sig = bytearray(t.signature)
    sig[0] ^= 1
    return encode_proto(tx_pb2.Tx(body=t.body, signature=bytes(sig)))


def _unknown_message() -> bytes:
    # A Msg whose oneof field number (99) this chain does not know.
    body = tx_pb2.TxBody(chain_id="perpchain-test", signer_pub_key=bytes(KEYS[1].verify_key), nonce=1,
                         messages=[tx_pb2.Msg()])
    raw = bytearray(encode_proto(body))
    # messages field 5 holds an empty Msg: append field 99 (varint) into it.
    empty_msg = b"\x2a\x00"
    assert raw.endswith(empty_msg)
    raw = raw[: -len(empty_msg)] + b"\x2a\x03\x98\x06\x01"
    body_bytes = bytes(raw)
    sig = KEYS[1].sign(b"perpchain/tx/v1\x00" + body_bytes).signature
    return encode_proto(tx_pb2.Tx(body=body_bytes, signature=sig))


def _non_canonical() -> bytes:
    good = send_tx(1, 2, ONE_USDC, nonce=1)
    return good + b"\x18\x00"  # unknown field 3 appended: same meaning, different bytes


def _empty_messages() -> bytes:
    return sign_tx(KEYS[1], "perpchain-test", 1, [])


def _other_users_account() -> bytes:
    # Key 1 signs a send out of account 2.
    return sign_tx(KEYS[1], "perpchain-test", 1, [msg_send(ADDRS[2], ADDRS[1], ONE_USDC)])


def _bad_address() -> bytes:
    return sign_tx(KEYS[1], "perpchain-test", 1, [msg_send(ADDRS[1], "perp1notanaddress", ONE_USDC)])


def _oversized() -> bytes:
    return sign_tx(KEYS[1], "perpchain-test", 1, [msg_send(ADDRS[1], ADDRS[2], 1)] * 4, memo="x" * 200) + b"\x00" * (
        MAX_TX_BYTES
    )


CASES = [
    pytest.param(b"\xff\x00garbage", errors.ERR_TX_DECODE, id="malformed bytes"),
    pytest.param(send_tx(1, 2, ONE_USDC, nonce=1)[:-7], errors.ERR_TX_DECODE, id="truncated tx"),
    pytest.param(b"", errors.ERR_TX_DECODE, id="empty tx"),
    pytest.param(_tamper_signature(send_tx(1, 2, ONE_USDC, nonce=1)), errors.ERR_INVALID_SIGNATURE, id="bad signature"),
    pytest.param(send_tx(1, 2, ONE_USDC, nonce=1, chain_id="other-chain"), errors.ERR_WRONG_CHAIN_ID, id="wrong chain id"),
    pytest.param(_unknown_message(), errors.ERR_UNKNOWN_MESSAGE, id="unknown message type"),
    pytest.param(_non_canonical(), errors.ERR_TX_DECODE, id="non-canonical encoding (malleability)"),
    pytest.param(_empty_messages(), errors.ERR_NO_MESSAGES, id="no messages"),
    pytest.param(_other_users_account(), errors.ERR_UNAUTHORIZED, id="another user's account"),
    pytest.param(_bad_address(), errors.ERR_INVALID_ADDRESS, id="invalid recipient address"),
    pytest.param(_oversized(), errors.ERR_TX_TOO_LARGE, id="oversized tx"),
    pytest.param(send_tx(1, 2, 2_000_000 * ONE_USDC, nonce=1), errors.ERR_INSUFFICIENT_FUNDS, id="insufficient balance"),
    pytest.param(send_tx(6, 1, 1, nonce=1), errors.ERR_INSUFFICIENT_FEE, id="empty account cannot pay the fee"),
    pytest.param(send_tx(1, 2, 0, nonce=1), errors.ERR_INVALID_AMOUNT, id="zero amount"),
]


@pytest.mark.parametrize("tx, expected", CASES)
def test_check_tx_rejects_with_clear_code(replica, tx, expected):
    res = replica.app.check_tx(tx)
    assert res.code == expected.code
    assert res.codespace == expected.codespace
    assert res.log.startswith(expected.name + ":")


@pytest.mark.parametrize("tx, expected", CASES)
def test_bad_tx_in_block_gets_code_and_changes_no_balance(replica, tx, expected):
    """Nothing moves, except that a tx which passed the ante (a message failed) pays its fee."""
    before = [replica.balance(i) for i in range(8)]
    collector_before = replica.balance_of(FEE_COLLECTOR)
    res = replica.block([tx])
    assert len(res.tx_results) == 1
    assert res.tx_results[0].code == expected.code
    fee = FEE if expected is errors.ERR_INSUFFICIENT_FUNDS else 0  # the only case where a message (not the ante) fails
    assert [replica.balance(i) for i in range(8)] == [b - fee if i == 1 else b for i, b in enumerate(before)]
    assert replica.balance_of(FEE_COLLECTOR) == collector_before + fee


def test_failed_auth_writes_nothing(replica):
    """Txs that fail before authentication leave the block's write-set empty."""
    empty = replica.block([], commit=False).app_hash
    replica.app.discard_pending()
    bad = [c.values[0] for c in CASES if c.values[1].codespace == "tx"]
    assert replica.block(bad, commit=False).app_hash == empty


def test_authenticated_but_failing_tx_burns_its_nonce(replica):
    """In a block, a signed tx whose message fails keeps its nonce used and pays its fee: it can never succeed
    later, even once the account could afford it."""
    too_much = send_tx(1, 3, 1_500_000 * ONE_USDC, nonce=7)  # account 1 holds 1 000 000 USDC
    assert replica.block([too_much]).tx_results[0].code == errors.ERR_INSUFFICIENT_FUNDS.code
    replica.block([send_tx(2, 1, 900_000 * ONE_USDC, nonce=1)])  # now it could
    res = replica.block([too_much])
    assert res.tx_results[0].code == errors.ERR_NONCE_USED.code
    assert replica.balance(1) == 1_900_000 * ONE_USDC - FEE
    assert replica.balance(3) == 1_000_000 * ONE_USDC


def test_amount_beyond_uint64_on_the_wire_is_rejected(replica):
    """A 10-byte varint larger than 2**64 parses (truncated) but is not canonical: rejected, nothing moves."""
    msg = tx_pb2.MsgSend(from_address=ADDRS[1], to_address=ADDRS[2], amount_quote_quantums=1)
    raw = bytearray(encode_proto(tx_pb2.Msg(send=msg)))
    assert raw.endswith(b"\x18\x01")
    huge = b"\x18" + b"\xff" * 9 + b"\x7f"  # 2**70 - 1
    inner = bytes(raw[2:-2]) + huge
    msg_bytes = b"\x0a" + bytes([len(inner)]) + inner
    body = tx_pb2.TxBody(chain_id="perpchain-test", signer_pub_key=bytes(KEYS[1].verify_key), nonce=1)
    body_bytes = encode_proto(body) + b"\x2a" + bytes([len(msg_bytes)]) + msg_bytes
    sig = KEYS[1].sign(b"perpchain/tx/v1\x00" + body_bytes).signature
    tx = encode_proto(tx_pb2.Tx(body=body_bytes, signature=sig))
    assert replica.app.check_tx(tx).code == errors.ERR_TX_DECODE.code
    before = replica.balance(1)
    assert replica.block([tx]).tx_results[0].code == errors.ERR_TX_DECODE.code
    assert replica.balance(1) == before


def test_supply_beyond_uint64_is_rejected_at_genesis(tmp_path):
    """Total supply fits in uint64, so no single balance can ever overflow on a transfer."""
    from tests.helpers import Replica, genesis_app_state

    r = Replica(tmp_path / "db")
    with pytest.raises(errors.AppError) as exc:
        r.init_chain(genesis_app_state(balance_quote_quantums=UINT64_MAX // 2 + 1, n_funded=2))
    assert exc.value.error is errors.ERR_INVALID_GENESIS
    r.close()


def test_replay_rejected_in_check_tx_and_block(replica):
    tx = send_tx(1, 2, ONE_USDC, nonce=42)
    assert replica.app.check_tx(tx).code == 0
    assert replica.app.check_tx(tx).code == 0  # the same tx again answers the same (CometBFT dedups it)
    # Another tx with the pending nonce is refused: only one of them could ever commit.
    assert replica.app.check_tx(send_tx(1, 3, ONE_USDC, nonce=42)).code == errors.ERR_NONCE_USED.code
    res = replica.block([tx, tx])
    assert [r.code for r in res.tx_results] == [0, errors.ERR_NONCE_USED.code]
    assert replica.block([tx]).tx_results[0].code == errors.ERR_NONCE_USED.code
    assert replica.balance(2) == 1_000_000 * ONE_USDC + ONE_USDC


def test_process_proposal_rejects_blocks_with_invalid_txs(replica):
    good = send_tx(1, 2, ONE_USDC, nonce=1)
    assert replica.app.process_proposal([good], height=2)
    for case in CASES:
        tx, expected = case.values
        if expected.codespace == "tx" and expected not in (errors.ERR_NONCE_USED, errors.ERR_INSUFFICIENT_FEE):
            assert not replica.app.process_proposal([good, tx], height=2), case.id


def test_prepare_proposal_drops_invalid_and_respects_max_bytes(replica):
    txs = [send_tx(1, 2, ONE_USDC, nonce=n) for n in range(1, 11)]
    size = 1 + 1 + len(txs[0]) if len(txs[0]) < 128 else 1 + 2 + len(txs[0])
    out = replica.app.prepare_proposal([b"junk", *txs], max_tx_bytes=size * 3, height=2)
    assert out == txs[:3]


def test_junk_cannot_grow_the_stateless_memo_or_the_address_cache(replica):
    """Anyone can send oversized or unsigned bytes and long query paths for free: none of it may be kept."""
    from app.lib.address import _decode_address

    memo = replica.app._stateless
    before = len(memo._entries)
    junk = [b"\x0a" + bytes([i]) * (MAX_TX_BYTES + 10) for i in range(20)] + [bytes([i]) * 500 for i in range(20)]
    for tx in junk:
        assert replica.app.check_tx(tx).code != 0
    assert len(memo._entries) == before
    assert replica.app.check_tx(send_tx(1, 2, ONE_USDC, 1)).code == 0
    assert len(memo._entries) == before + 1  # a verified tx is still memoized
    cached = _decode_address.cache_info().currsize
    for i in range(20):
        res = replica.app.query(f"/bank/balance/perp1{'q' * (100_000 + i)}", b"")
        assert res.code != 0
    assert _decode_address.cache_info().currsize == cached
