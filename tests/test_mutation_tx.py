"""tx: behaviours no other test pinned, found by mutation testing (docs/mutation.md, issue #8).

Unit tests of the codec (each refusal's code and wording, the exact size limit, the stateless cache's bound), the
ante (the cancel bucket, pending promises, the wording of rate_limited and insufficient_fee) and the mempool view.
No replica, no LevelDB: an in-memory store. Numbers are worked by hand in the comments.
"""

from __future__ import annotations

import hashlib

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
from app.tx import codec, router
from app.tx.ante import Pending, apply_ante
from app.tx.mempool import MempoolView
from node.client.txbuilder import msg_send, sign_tx
from tests.helpers import ADDRS, CHAIN_ID, KEYS
from tests.mutation_helpers import Empty, refused

A1 = decode_address_or_none(ADDRS[1])
A2 = decode_address_or_none(ADDRS[2])


# --- codec ---------------------------------------------------------------------------------------------------------

def send(n: int = 5) -> tx_pb2.Msg:
    return msg_send(ADDRS[1], ADDRS[2], n)


def body(**fields) -> tx_pb2.TxBody:
    base = {"chain_id": CHAIN_ID, "signer_pub_key": bytes(KEYS[1].verify_key), "nonce": 1, "messages": [send()]}
    return tx_pb2.TxBody(**{**base, **fields})


def signed(b: tx_pb2.TxBody, signature: bytes | None = None) -> bytes:
    raw = encode_proto(b)
    sig = KEYS[1].sign(codec.sign_bytes(raw)).signature if signature is None else signature
    return encode_proto(tx_pb2.Tx(body=raw, signature=sig))


def orders(n: int) -> tx_pb2.Msg:
    cancel = tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(client_id=1)))
    return tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[1], actions=[cancel] * n))


def unknown_message() -> bytes:
    """A body whose message holds only field 99, which no Msg type has (not canonical, but parseable)."""
    raw = encode_proto(body(messages=[tx_pb2.Msg()]))
    assert raw.endswith(b"\x2a\x00")  # messages (field 5): one empty Msg
    raw = raw[:-2] + b"\x2a\x03\x98\x06\x01"  # ... holding varint field 99 = 1
    return encode_proto(tx_pb2.Tx(body=raw, signature=KEYS[1].sign(codec.sign_bytes(raw)).signature))


def exactly(size: int) -> bytes:
    """A valid tx of exactly ``size`` bytes, padded through its chain id (signed for that chain id)."""
    pad = 0
    for _ in range(5):
        tx = sign_tx(KEYS[1], "c" + "x" * pad, 1, [send()])
        pad += size - len(tx)
    tx = sign_tx(KEYS[1], "c" + "x" * pad, 1, [send()])
    assert len(tx) == size
    return tx


BAD_TXS = [
    pytest.param(lambda: b"\xff\x00junk", errors.ERR_TX_DECODE,
                 "tx bytes are not a canonical perpchain.v1.Tx with a body", id="not a Tx"),
    pytest.param(lambda: encode_proto(tx_pb2.Tx(signature=b"s" * 64)), errors.ERR_TX_DECODE,
                 "tx bytes are not a canonical perpchain.v1.Tx with a body", id="a Tx without a body"),
    pytest.param(lambda: encode_proto(tx_pb2.Tx(body=b"\xff\xff", signature=b"s" * 64)), errors.ERR_TX_DECODE,
                 "tx body is not a canonical perpchain.v1.TxBody", id="a body that is not protobuf at all"),
    pytest.param(lambda: signed(body(chain_id="other-chain")), errors.ERR_WRONG_CHAIN_ID,
                 "tx is for chain 'other-chain', this chain is 'perpchain-test'", id="signed for another chain"),
    pytest.param(lambda: signed(body(signer_pub_key=bytes(KEYS[1].verify_key)[:31])), errors.ERR_INVALID_PUBKEY,
                 "signer_pub_key must be a 32-byte ed25519 key", id="a 31-byte public key"),
    pytest.param(lambda: signed(body(signer_pub_key=bytes(KEYS[1].verify_key) + b"\x00")), errors.ERR_INVALID_PUBKEY,
                 "signer_pub_key must be a 32-byte ed25519 key", id="a 33-byte public key"),
    pytest.param(lambda: signed(body(), signature=b"\x01" * 63), errors.ERR_INVALID_SIGNATURE,
                 "signature must be 64 bytes", id="a 63-byte signature"),
    pytest.param(lambda: signed(body(), signature=b"\x01" * 65), errors.ERR_INVALID_SIGNATURE,
                 "signature must be 64 bytes", id="a 65-byte signature"),
    pytest.param(lambda: signed(body(), signature=b"\x01" * 64), errors.ERR_INVALID_SIGNATURE,
                 "signature does not verify against signer_pub_key", id="a 64-byte signature that does not verify"),
    pytest.param(lambda: signed(body(memo="é" * 129)), errors.ERR_MEMO_TOO_LONG, "memo longer than 256 bytes",
                 id="a memo of 258 UTF-8 bytes"),
    pytest.param(lambda: signed(body(messages=[])), errors.ERR_NO_MESSAGES, "tx carries no messages",
                 id="no message"),
    pytest.param(lambda: signed(body(messages=[send()] * 33)), errors.ERR_TOO_MANY_MESSAGES,
                 "tx carries 33 messages, limit 32", id="33 messages"),
    pytest.param(lambda: signed(body(messages=[send(), tx_pb2.Msg()])), errors.ERR_UNKNOWN_MESSAGE,
                 "message 1 has an unknown or empty type", id="an empty message wrapper"),
    pytest.param(lambda: signed(body(messages=[msg_send(ADDRS[2], ADDRS[1], 5)])), errors.ERR_UNAUTHORIZED,
                 f"message 0 must be signed by {ADDRS[2]}, tx signer is {ADDRS[1]}", id="another account's message"),
    pytest.param(lambda: unknown_message(), errors.ERR_UNKNOWN_MESSAGE,
                 "tx carries a message type this chain does not know", id="a message type this chain does not know"),
    pytest.param(lambda: signed(body(messages=[orders(1), send()])), errors.ERR_MIXED_MESSAGES,
                 "a tx with order actions (MsgOrders) carries no other message type",
                 id="order actions and a transfer"),
    pytest.param(lambda: signed(body(messages=[orders(101), orders(101)])), errors.ERR_TOO_MANY_ACTIONS,
                 "202 order actions, at most 200 per tx", id="two MsgOrders of 101 actions"),
    pytest.param(lambda: exactly(codec.MAX_TX_BYTES + 1), errors.ERR_TX_TOO_LARGE, "tx is 32769 bytes, limit 32768",
                 id="one byte over 32 KiB"),
]


@pytest.mark.parametrize("make, code, words", BAD_TXS)
def test_each_stateless_refusal_has_its_code_and_says_why(make, code, words):
    err = refused(codec.decode_and_verify, make(), CHAIN_ID)
    assert err.code == code.code and words in err.log, err.log


def test_a_tx_of_exactly_32_kib_is_not_too_large():
    tx = exactly(codec.MAX_TX_BYTES)
    chain_id = tx_pb2.TxBody.FromString(tx_pb2.Tx.FromString(tx).body).chain_id
    assert codec.decode_and_verify(tx, chain_id).nonce == 1
    # ... and through the cache too (a tx of exactly the limit is cached like any other).
    cache = codec.StatelessCheckCache()
    assert cache.decode_and_verify(tx, chain_id).nonce == 1
    assert list(cache._entries) == [(hashlib.sha256(tx).digest(), chain_id)] and cache._bytes == codec.MAX_TX_BYTES


def test_decoded_tx_carries_signer_nonce_digest_memo_and_messages():
    tx = sign_tx(KEYS[1], CHAIN_ID, 77, [send(3), send(4)], memo="hello")
    d = codec.decode_and_verify(tx, CHAIN_ID)
    assert (d.signer, d.nonce, d.digest, d.memo) == (A1, 77, hashlib.sha256(tx).digest(), "hello")
    assert [(name, m.amount_quote_quantums) for name, m in d.msgs] == [("send", 3), ("send", 4)]


def test_the_stateless_cache_keeps_at_most_max_entries_and_evicts_the_oldest():
    cache = codec.StatelessCheckCache(max_entries=2)
    txs = [sign_tx(KEYS[1], CHAIN_ID, n, [send()]) for n in (1, 2, 3)]
    for tx in txs:
        assert cache.decode_and_verify(tx, CHAIN_ID).nonce == txs.index(tx) + 1
    keys = list(cache._entries)
    assert keys == [(hashlib.sha256(txs[1]).digest(), CHAIN_ID), (hashlib.sha256(txs[2]).digest(), CHAIN_ID)]
    # The evicted tx is verified again (same answer), and a failure is never cached.
    assert cache.decode_and_verify(txs[0], CHAIN_ID).nonce == 1
    assert refused(cache.decode_and_verify, txs[0], "other-chain").code == errors.ERR_WRONG_CHAIN_ID.code
    assert len(cache._entries) == 2


def test_the_stateless_cache_keeps_at_most_max_bytes_of_txs_and_evicts_the_oldest_until_one_fits():
    """The memo is bounded in tx bytes too: a decoded tx takes 2-10x its size in memory and signed txs are free to
    make. Three txs of n bytes with room for 2n + 1: the third evicts the first; a tx of more than n + 1 bytes (and at
    most 2n + 1) evicts both others."""
    txs = [sign_tx(KEYS[1], CHAIN_ID, nonce, [send()]) for nonce in (1, 2, 3)]
    n = len(txs[0])
    assert {len(t) for t in txs} == {n}
    cache = codec.StatelessCheckCache(max_bytes=2 * n + 1)
    for tx in txs:
        cache.decode_and_verify(tx, CHAIN_ID)
    assert list(cache._entries) == [(hashlib.sha256(t).digest(), CHAIN_ID) for t in txs[1:]]
    assert cache._bytes == 2 * n and sorted(cache._sizes.values()) == [n, n]
    big = sign_tx(KEYS[1], CHAIN_ID, 4, [send()], memo="m" * (n // 2))
    assert n + 1 < len(big) <= 2 * n + 1  # only an empty cache has room for it
    assert cache.decode_and_verify(big, CHAIN_ID).nonce == 4
    assert list(cache._entries) == [(hashlib.sha256(big).digest(), CHAIN_ID)] and cache._bytes == len(big)


def test_a_memo_hit_returns_the_stored_result_and_counts_its_bytes_once():
    """A second check of one tx is a hit: the very object stored, nothing re-inserted, its bytes counted once."""
    tx = sign_tx(KEYS[1], CHAIN_ID, 1, [send()])
    cache = codec.StatelessCheckCache()
    first = cache.decode_and_verify(tx, CHAIN_ID)
    assert cache.decode_and_verify(tx, CHAIN_ID) is first
    assert (len(cache._entries), cache._bytes, list(cache._sizes.values())) == (1, len(tx), [len(tx)])


def test_txs_filling_the_byte_bound_exactly_are_all_kept():
    """Room for exactly 2n bytes holds two txs of n; the third evicts the oldest."""
    txs = [sign_tx(KEYS[1], CHAIN_ID, nonce, [send()]) for nonce in (1, 2, 3)]
    n = len(txs[0])
    cache = codec.StatelessCheckCache(max_bytes=2 * n)
    for tx in txs[:2]:
        cache.decode_and_verify(tx, CHAIN_ID)
    assert len(cache._entries) == 2 and cache._bytes == 2 * n
    cache.decode_and_verify(txs[2], CHAIN_ID)
    assert list(cache._entries) == [(hashlib.sha256(t).digest(), CHAIN_ID) for t in txs[1:]]


def test_the_stateless_cache_byte_bound_holds_a_full_mempool_of_ordinary_txs():
    """16 MiB: 5 000 txs of 3 KiB (CometBFT's default mempool size) fit; the count bound is 4x that mempool."""
    assert codec.MAX_CACHED_TX_BYTES == 16 * 1024 * 1024 >= 5_000 * 3 * 1024
    cache = codec.StatelessCheckCache()
    assert (cache._max, cache._max_bytes) == (20_000, 16 * 1024 * 1024)


# --- ante: cancel bucket, pending promises, wording -----------------------------------------------------------

# Capacity 2 requests (balance below one 100 USDC step), refill max(1, floor(2 x 10 %)) = 1 per block;
# cancel bucket 3x: capacity 6, refill 3 per block. Fee 10 000 per non-trading message.
SMALL = AdmissionParams(fee_per_message_quote_quantums=10_000, base_capacity_requests=2, max_capacity_requests=2,
                        cancel_multiplier=3)


def ante_store(balance: int, params: AdmissionParams = SMALL) -> BranchStore:
    s = BranchStore(Empty())
    bank_keeper.init_balances(s, [(A1, balance)], ADDRS[0])
    auth_keeper.set_params(s, params)
    return s


def test_a_fresh_pending_view_promises_nothing():
    p = Pending()
    assert (p.nonces, p.requests, p.cancels, p.fee_quote_quantums) == ({}, 0, 0, 0)


def test_cancels_use_their_own_bucket_which_refills_per_block():
    s = ante_store(1_000_000)
    assert apply_ante(s, 10, A1, 1, Cost(cancels=6)) == 0  # the whole cancel bucket, no fee
    acct = auth_keeper.get_account(s, A1)
    assert (acct.requests, acct.cancels, acct.last_use_height) == (2, 0, 10)
    err = refused(apply_ante, s, 11, A1, 2, Cost(cancels=4))  # one block later: 0 + 3
    assert err.code == errors.ERR_RATE_LIMITED.code
    assert f"{ADDRS[1]} has 3 cancel(s) left this block, the tx needs 4 (capacity 6, refill 3 per block" in err.log
    apply_ante(s, 11, A1, 2, Cost(requests=1, cancels=3))
    acct = auth_keeper.get_account(s, A1)
    assert (acct.nonces, acct.requests, acct.cancels) == ([1, 2], 1, 0)


def test_pending_cancels_and_requests_are_counted_and_a_deficit_reads_as_zero_left():
    s = ante_store(1_000_000)
    p = Pending()
    p.cancels = 2
    err = refused(apply_ante, s, 5, A1, 1, Cost(cancels=5), p)  # 6 - 2 = 4 left
    assert err.code == errors.ERR_RATE_LIMITED.code and "has 4 cancel(s) left this block, the tx needs 5" in err.log
    apply_ante(s, 5, A1, 1, Cost(cancels=4), p)
    p = Pending()
    p.requests = 5  # more than the capacity (2): 2 - 5 = -3 left, said as 0
    err = refused(apply_ante, s, 9, A1, 2, Cost(requests=1), p)
    assert "has 0 request(s) left this block, the tx needs 1 (capacity 2, refill 1 per block" in err.log


@pytest.mark.parametrize("balance, pending_fee, words", [
    pytest.param(15_000, 10_000, "has 15000 quote quantums (10000 quote quantums promised to pending txs' fees), the "
                 "tx's fee is 20000 quote quantums (2 non-trading message(s) x 10000 quote quantums)",
                 id="pending fees are named"),
    pytest.param(5_000, 0, "has 5000 quote quantums, the tx's fee is 20000 quote quantums (2 non-trading message(s) x "
                 "10000 quote quantums)", id="no pending fees"),
])
def test_insufficient_fee_says_what_is_held_and_what_is_owed(balance, pending_fee, words):
    s = ante_store(balance)
    p = Pending()
    p.fee_quote_quantums = pending_fee
    err = refused(apply_ante, s, 3, A1, 1, Cost(requests=2, fee_messages=2), p)
    assert err.code == errors.ERR_INSUFFICIENT_FEE.code and err.log.endswith(f"{ADDRS[1]} " + words), err.log
    assert auth_keeper.get_account(s, A1).nonces == []  # nothing used


def test_order_actions_need_a_bank_balance_or_a_funded_subaccount():
    from app.subaccounts import keeper as subaccounts_keeper
    from app.subaccounts.state import SubaccountId, SubaccountState

    s = ante_store(0)
    err = refused(apply_ante, s, 3, A1, 1, Cost(requests=1))  # order actions: no non-trading fee
    assert err.code == errors.ERR_NO_COLLATERAL.code
    assert f"{ADDRS[1]} has no USDC and no funded subaccount: order actions need collateral" in err.log
    subaccounts_keeper.set_subaccount(s, SubaccountId(A1, 5), SubaccountState(quote_balance_quote_quantums=1))
    assert apply_ante(s, 3, A1, 1, Cost(requests=1)) == 0  # a funded subaccount is enough
    assert apply_ante(ante_store(1), 3, A1, 1, Cost(requests=1)) == 0  # so is 1 quote quantum in the bank


def test_a_nonce_promised_to_a_pending_tx_is_refused():
    s = ante_store(1_000_000)
    p = Pending()
    p.nonces[7] = b"d" * 32
    err = refused(apply_ante, s, 3, A1, 7, Cost(requests=1), p)
    assert err.code == errors.ERR_NONCE_USED.code
    assert "nonce 7 is already used by another pending tx of this account (in this node's mempool)" in err.log


# --- mempool view and routing ---------------------------------------------------------------------------------

def test_mempool_view_is_full_at_exactly_max_entries_and_sums_promises_per_signer():
    view = MempoolView(max_entries=2)
    view.add(b"d1", A1, 5, Cost(1, 2, 1), 10_000)
    assert not view.is_full() and len(view) == 1 and b"d1" in view and b"d2" not in view
    view.add(b"d2", A1, 6, Cost(3, 4, 0), 0)
    assert view.is_full() and len(view) == 2
    p = view.pending_for(A1)
    assert (p.nonces, p.requests, p.cancels, p.fee_quote_quantums) == ({5: b"d1", 6: b"d2"}, 4, 6, 10_000)
    other = view.pending_for(A2)
    assert (other.nonces, other.requests, other.cancels) == ({}, 0, 0)
    view.clear()
    assert len(view) == 0 and not view.is_full() and view.pending_for(A1).nonces == {}


def test_a_tx_costs_the_sum_of_its_messages():
    place = tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(client_id=1))
    cancel = tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder())
    replace = tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace())
    batch = tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel())
    orders = tx_pb2.MsgOrders(owner=ADDRS[1], actions=[place, cancel, replace, batch])
    # place: 1 request; cancel: 1 cancel; cancel-replace: 1 of each; batch cancel: 1 cancel. No non-trading fee.
    assert router.tx_cost([("orders", orders)]) == Cost(requests=2, cancels=3, fee_messages=0)
    assert router.tx_cost([("send", send()), ("send", send())]) == Cost(requests=2, cancels=0, fee_messages=2)
    assert router.is_deferred([("orders", orders)]) and not router.is_deferred([("send", send())])
    assert not router.is_deferred([])
