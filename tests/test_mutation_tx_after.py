"""tx: survivors of the AFTER mutation run of app/tx (docs/mutation.md), pinned by exact log text.

The log of a refused tx is what CheckTx and FinalizeBlock hand back to the client (``TxResult.log``, which is
``"<error name>: <message>"``, app/errors.py). It is not consensus (LastResultsHash has no log), but it is what a
user reads, so it must say exactly what happened -- no stray text, and the account it names must be the signer.
tests/test_mutation_tx.py checks the wording with ``in``; here the whole log is compared. No LevelDB: an in-memory
store (tests/mutation_helpers.py). Expected texts are written out by hand from the documented rules; error names are
the ones of the table in docs/transactions.md (and docs/exchange.md for mixed_messages).
"""

from __future__ import annotations

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from app.auth import keeper as auth_keeper
from app.auth.admission import Cost
from app.auth.params import AdmissionParams
from app.bank import keeper as bank_keeper
from app.lib.address import decode_address_or_none
from app.lib.encoding import encode_proto
from app.store import BranchStore
from app.tx import codec
from app.tx.ante import Pending, apply_ante
from node.client.txbuilder import msg_send
from tests.helpers import ADDRS, CHAIN_ID, KEYS
from tests.mutation_helpers import MemReplica, MemStore

A1 = decode_address_or_none(ADDRS[1])


def body(**fields) -> tx_pb2.TxBody:
    base = {"chain_id": CHAIN_ID, "signer_pub_key": bytes(KEYS[1].verify_key), "nonce": 1,
            "messages": [msg_send(ADDRS[1], ADDRS[2], 5)]}
    return tx_pb2.TxBody(**{**base, **fields})


def signed(b: tx_pb2.TxBody, signature: bytes | None = None) -> bytes:
    raw = encode_proto(b)
    sig = KEYS[1].sign(codec.sign_bytes(raw)).signature if signature is None else signature
    return encode_proto(tx_pb2.Tx(body=raw, signature=sig))


def unknown_message() -> bytes:
    """A signed body whose one message holds only field 99, which no Msg type has (parseable, not canonical)."""
    raw = encode_proto(body(messages=[tx_pb2.Msg()]))
    assert raw.endswith(b"\x2a\x00")  # messages (field 5, wire type 2): one empty Msg
    raw = raw[:-2] + b"\x2a\x03\x98\x06\x01"  # ... now 3 bytes: key of varint field 99 (0x98 0x06), value 1
    return encode_proto(tx_pb2.Tx(body=raw, signature=KEYS[1].sign(codec.sign_bytes(raw)).signature))


def order_cancel() -> tx_pb2.Msg:
    cancel = tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(client_id=1)))
    return tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[cancel]))


# One row per message whose XX-wrapped mutant survived (codec.py lines 106, 110, 111, 115, 117, 121, 125, 145).
EXACT_LOGS = [
    pytest.param(lambda: b"\xff\x00junk",
                 "tx_decode: tx bytes are not a canonical perpchain.v1.Tx with a body", id="not a Tx"),
    pytest.param(unknown_message,
                 "unknown_message: tx carries a message type this chain does not know", id="unknown message type"),
    pytest.param(lambda: encode_proto(tx_pb2.Tx(body=b"\xff\xff", signature=b"s" * 64)),
                 "tx_decode: tx body is not a canonical perpchain.v1.TxBody", id="body is not protobuf"),
    pytest.param(lambda: signed(body(signer_pub_key=bytes(KEYS[1].verify_key)[:31])),
                 "invalid_pub_key: signer_pub_key must be a 32-byte ed25519 key", id="31-byte key"),
    pytest.param(lambda: signed(body(), signature=b"\x01" * 63),
                 "invalid_signature: signature must be 64 bytes", id="63-byte signature"),
    pytest.param(lambda: signed(body(), signature=b"\x01" * 64),
                 "invalid_signature: signature does not verify against signer_pub_key", id="signature does not verify"),
    pytest.param(lambda: signed(body(messages=[])),
                 "no_messages: tx carries no messages", id="no message"),
    pytest.param(lambda: signed(body(messages=[order_cancel(), msg_send(ADDRS[1], ADDRS[2], 5)])),
                 "mixed_messages: a tx with order actions (MsgOrders) carries no other message type",
                 id="order actions and a transfer"),
]


@pytest.mark.parametrize("make, log", EXACT_LOGS)
def test_a_stateless_refusal_logs_exactly_its_name_and_reason(make, log):
    with pytest.raises(errors.AppError) as info:
        codec.StatelessCheckCache().decode_and_verify(make(), CHAIN_ID)
    assert info.value.log == log


@pytest.fixture(scope="module")
def replica():
    rep = MemReplica()
    rep.init_chain()
    yield rep
    rep.close()


@pytest.mark.parametrize("make, log", EXACT_LOGS)
def test_check_tx_hands_the_client_exactly_that_log(replica, make, log):
    res = replica.app.check_tx(make())
    assert res.code != 0 and res.log == log


# --- ante: rate_limited names the signer (ante.py:58) -----------------------------------------------------------

# Balance 1 USDC (below one 100 USDC step): request capacity min(2, 2 + 0) = 2, refill max(1, floor(2 x 10 %)) = 1.
SMALL = AdmissionParams(fee_per_message_quote_quantums=10_000, base_capacity_requests=2, max_capacity_requests=2,
                        cancel_multiplier=3)


def test_rate_limited_on_requests_names_the_signer_and_the_numbers():
    s = BranchStore(MemStore())
    bank_keeper.init_balances(s, [(A1, 1_000_000)], ADDRS[0])
    auth_keeper.set_params(s, SMALL)
    # A never-used account starts full: 2 requests; the tx needs 3.
    with pytest.raises(errors.AppError) as info:
        apply_ante(s, 4, A1, 1, Cost(requests=3), Pending())
    assert info.value.log == (f"rate_limited: {ADDRS[1]} has 2 request(s) left this block, the tx needs 3 "
                              "(capacity 2, refill 1 per block; more collateral raises both)")
    assert auth_keeper.get_account(s, A1).nonces == []  # refused before the nonce is used
