"""The FinalizeBlock response the ABCI handler sends (node/abci/handler.AbciHandler.finalize_block) is filled in place
for speed; it must be the very message the plain constructor form builds from the same app result: same bytes on
the wire, events and attributes in order, every attribute indexed, tx results with code/codespace/log, the app hash
and the validator updates."""

from __future__ import annotations

import json

from perpchain.v1 import tx_pb2
from tendermint.abci import types_pb2 as abci
from tendermint.crypto import keys_pb2 as crypto_keys

from app.application import Application
from node.abci.handler import AbciHandler, timestamp_ns, to_last_commit
from node.storage.leveldb import LevelDBStore
from tests.exchange_helpers import BTC_PRICE, BUY, ONE_BTC, SELL, exchange_app_state, msg_tx, orders_tx, place
from tests.helpers import ADDRS, CHAIN_ID, VALIDATOR_KEYS

# The attributes CometBFT's indexer should index: the accounts an event names (docs/transactions.md "Events").
INDEXED = {"owner", "sender", "recipient", "recipient_owner", "signer", "taker", "maker"}

NEW_VALIDATOR = bytes(range(32))


def _handler(path) -> AbciHandler:
    h = AbciHandler(Application(LevelDBStore(path)))
    init = abci.RequestInitChain(chain_id=CHAIN_ID, initial_height=1,
                                 app_state_bytes=json.dumps(exchange_app_state()).encode())
    init.time.seconds = 1_700_000_000
    for k in VALIDATOR_KEYS:
        v = init.validators.add(power=10)
        v.pub_key.ed25519 = bytes(k.verify_key)
    h.handle(abci.Request(init_chain=init))
    return h


def _request(txs: list[bytes]) -> abci.RequestFinalizeBlock:
    req = abci.RequestFinalizeBlock(height=1, txs=txs)
    req.time.seconds = 1_700_000_001
    return req


def _reference(app: Application, req: abci.RequestFinalizeBlock) -> abci.Response:
    """The constructor form (what the handler built before it filled the message in place)."""
    res = app.finalize_block(req.height, timestamp_ns(req.time), list(req.txs), to_last_commit(req.decided_last_commit))

    def events(evs):
        return [abci.Event(type=e.type, attributes=[abci.EventAttribute(key=k, value=v, index=k in INDEXED)
                                                    for k, v in e.attributes]) for e in evs]

    return abci.Response(finalize_block=abci.ResponseFinalizeBlock(
        events=events(res.events),
        tx_results=[abci.ExecTxResult(code=r.code, codespace=r.codespace, log=r.log, events=events(r.events))
                    for r in res.tx_results],
        app_hash=res.app_hash,
        validator_updates=[abci.ValidatorUpdate(pub_key=crypto_keys.PublicKey(ed25519=pk), power=power)
                           for pk, power in res.validator_updates]))


def test_the_in_place_response_is_the_constructor_response(tmp_path):
    txs = [
        orders_tx(1, 1, [place(1, SELL, ONE_BTC // 10, BTC_PRICE, tif=0, gtb=5)]),  # rests
        orders_tx(2, 1, [place(7, BUY, ONE_BTC // 20, BTC_PRICE, gtb=5, tif=1),  # IOC: fills half of it
                         place(8, BUY, 3, BTC_PRICE, gtb=5)]),  # off-step: rejected, the tx still succeeds
        b"\x00not a tx",  # a tx-level failure: a code, a codespace, a log
        msg_tx(0, 1, [tx_pb2.Msg(set_validator_power=tx_pb2.MsgSetValidatorPower(
            authority=ADDRS[0], pub_key_ed25519=NEW_VALIDATOR, power=7))]),  # a validator update from the authority
    ]
    got = _handler(tmp_path / "a").handle(abci.Request(finalize_block=_request(txs)))
    want = _reference(_handler(tmp_path / "b").app, _request(txs))
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    fb = got.finalize_block
    # Not vacuous: the block has what the test means to compare.
    assert [r.code == 0 for r in fb.tx_results] == [True, True, False, True], [r.log for r in fb.tx_results]
    assert fb.tx_results[2].codespace and fb.tx_results[2].log
    types = [e.type for e in fb.tx_results[1].events]
    assert "fill" in types and types.count("order_action") == 2, types
    fill = next(e for e in fb.tx_results[1].events if e.type == "fill")
    assert [(a.key, a.value) for a in fill.attributes][:2] == [("clob_pair_id", "0"), ("perpetual_id", "0")]
    indexed = {(e.type, a.key) for e in fb.tx_results[1].events for a in e.attributes if a.index}
    assert indexed == {("tx", "signer"), ("order_action", "owner"), ("fill", "taker"), ("fill", "maker")}, indexed
    assert [(u.pub_key.ed25519, u.power) for u in fb.validator_updates] == [(NEW_VALIDATOR, 7)]
    assert len(fb.app_hash) == 32


def test_an_empty_block_still_sets_the_finalize_block_field(tmp_path):
    got = _handler(tmp_path / "a").handle(abci.Request(finalize_block=_request([])))
    assert got.WhichOneof("value") == "finalize_block"
    assert got.SerializeToString(deterministic=True) == _reference(
        _handler(tmp_path / "b").app, _request([])).SerializeToString(deterministic=True)
