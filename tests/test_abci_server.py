"""The asyncio ABCI server over real sockets: ordering, pipelining, partial frames, both transports."""

import asyncio
import json

import pytest
from google.protobuf.message import DecodeError
from perpchain.v1.abci_wire_pb2 import WireRequest, WireRequestQuery
from tendermint.abci import types_pb2 as abci

from app.application import Application
from app.errors import ERR_BAD_QUERY_PATH
from node.abci.framing import decode_frames, frame
from node.abci.handler import AbciHandler
from node.abci.server import AbciServer
from node.storage.leveldb import LevelDBStore
from tests.helpers import CHAIN_ID, VALIDATOR_KEYS, genesis_app_state, send_tx


async def _exchange(reader, writer, requests, chunk=None):
    payload = b"".join(frame(r.SerializeToString()) for r in requests)
    if chunk:  # dribble bytes to exercise partial frames and split varints
        for i in range(0, len(payload), chunk):
            writer.write(payload[i : i + chunk])
            await writer.drain()
            await asyncio.sleep(0)
    else:
        writer.write(payload)
        await writer.drain()
    buf = bytearray()
    out = []
    while len(out) < len(requests):
        data = await asyncio.wait_for(reader.read(65536), timeout=10)
        assert data, "server closed the connection"
        buf += data
        frames, used = decode_frames(buf)
        del buf[:used]
        out += [abci.Response.FromString(f) for f in frames]
    return out


def _init_request():
    validators = [abci.ValidatorUpdate(power=10) for _ in VALIDATOR_KEYS]
    for v, k in zip(validators, VALIDATOR_KEYS):
        v.pub_key.ed25519 = bytes(k.verify_key)
    req = abci.RequestInitChain(chain_id=CHAIN_ID, validators=validators, initial_height=1,
                                app_state_bytes=json.dumps(genesis_app_state()).encode())
    req.time.seconds = 1_700_000_000
    return abci.Request(init_chain=req)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_server_answers_in_order_over_four_connections(tmp_path, transport, unused_tcp_port):
    address = f"unix://{tmp_path}/abci.sock" if transport == "unix" else f"tcp://127.0.0.1:{unused_tcp_port}"

    async def scenario():
        store = LevelDBStore(tmp_path / "db")
        server = AbciServer(AbciHandler(Application(store)), address)
        await server.start()
        conns = []
        for _ in range(4):  # query, snapshot, mempool, consensus
            if transport == "unix":
                conns.append(await asyncio.open_unix_connection(address[len("unix://"):]))
            else:
                conns.append(await asyncio.open_connection("127.0.0.1", unused_tcp_port))
        query, snapshot, mempool, consensus = conns

        r = await _exchange(*query, [abci.Request(echo=abci.RequestEcho(message="ping")),
                                      abci.Request(info=abci.RequestInfo(version="0.38.25")),
                                      abci.Request(flush=abci.RequestFlush())])
        assert [x.WhichOneof("value") for x in r] == ["echo", "info", "flush"]
        assert r[0].echo.message == "ping" and r[1].info.last_block_height == 0

        r = await _exchange(*consensus, [_init_request(), abci.Request(flush=abci.RequestFlush())])
        assert len(r[0].init_chain.app_hash) == 32

        # 50 pipelined CheckTxs dribbled 7 bytes at a time: 50 answers, in order.
        txs = [send_tx(1, 2, 1, n) for n in range(1, 51)]
        reqs = [abci.Request(check_tx=abci.RequestCheckTx(tx=t)) for t in txs]
        reqs[10] = abci.Request(check_tx=abci.RequestCheckTx(tx=b"junk"))
        r = await _exchange(*mempool, reqs + [abci.Request(flush=abci.RequestFlush())], chunk=7)
        codes = [x.check_tx.code for x in r[:-1]]
        assert codes[10] != 0 and codes[:10] + codes[11:] == [0] * 49
        assert r[-1].WhichOneof("value") == "flush"

        pp = await _exchange(*consensus, [abci.Request(process_proposal=abci.RequestProcessProposal(txs=txs, height=1))])
        assert pp[0].process_proposal.status == abci.ResponseProcessProposal.ACCEPT
        ve = await _exchange(*consensus, [abci.Request(extend_vote=abci.RequestExtendVote(height=1)),
                                          abci.Request(verify_vote_extension=abci.RequestVerifyVoteExtension(height=1))])
        assert ve[1].verify_vote_extension.status == abci.ResponseVerifyVoteExtension.ACCEPT
        fb = abci.RequestFinalizeBlock(txs=txs, height=1)
        fb.time.seconds = 1_700_000_001
        r = await _exchange(*consensus, [abci.Request(finalize_block=fb), abci.Request(commit=abci.RequestCommit())])
        assert len(r[0].finalize_block.tx_results) == 50
        assert all(t.code == 0 for t in r[0].finalize_block.tx_results)
        r = await _exchange(*query, [abci.Request(info=abci.RequestInfo()),
                                      abci.Request(query=abci.RequestQuery(path="/bank/supply"))])
        assert r[0].info.last_block_height == 1 and r[0].info.last_block_app_hash
        assert json.loads(r[1].query.value)["amount_quote_quantums"] == str(6 * 10**12)
        r = await _exchange(*snapshot, [abci.Request(list_snapshots=abci.RequestListSnapshots()),
                                         abci.Request(offer_snapshot=abci.RequestOfferSnapshot())])
        assert r[1].offer_snapshot.result == abci.ResponseOfferSnapshot.REJECT

        # A truncated frame then EOF closes only that connection; the server keeps serving.
        _, w = conns[1]
        w.write(b"\x05\x0a")
        await w.drain()
        w.close()
        r = await _exchange(*query, [abci.Request(echo=abci.RequestEcho(message="still here"))])
        assert r[0].echo.message == "still here"

        # `abci_query?path=0xff` from anyone on the RPC: CometBFT forwards non-UTF-8 bytes in a string field. The
        # answer must be a ResponseQuery error (a ResponseException would stop CometBFT), and serving goes on.
        bad = WireRequest(query=WireRequestQuery(path=b"\xff\xfe/bank/supply")).SerializeToString()
        with pytest.raises(DecodeError):
            abci.Request.FromString(bad)
        reader, writer = query
        writer.write(frame(bad) + frame(abci.Request(echo=abci.RequestEcho(message="alive")).SerializeToString()))
        await writer.drain()
        buf = bytearray()
        got: list[bytes] = []
        while len(got) < 2:
            buf += await asyncio.wait_for(reader.read(65536), timeout=10)
            frames, used = decode_frames(buf)
            del buf[:used]
            got += frames
        r = [abci.Response.FromString(f) for f in got]
        assert r[0].WhichOneof("value") == "query" and r[0].query.code == ERR_BAD_QUERY_PATH.code
        assert r[1].echo.message == "alive" and server.fatal is None
        for _, w in conns:
            w.close()
        server.stop()
        store.close()

    asyncio.run(scenario())


@pytest.fixture
def unused_tcp_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
