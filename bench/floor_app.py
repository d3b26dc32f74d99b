"""The floor of any Python ABCI app that checks signed txs: a bench fixture, never part of the chain.

Served by perpd's own ABCI server (node/abci/server.py: asyncio, the same framing and socket) and doing the one
thing every chain with signed txs must do on every validator: CheckTx verifies an ed25519 signature (pynacl, as
perpd does). Nothing else: no state, no nonces, no events. FinalizeBlock accepts every tx; the app hash is a
running sha256 of the committed txs, so the four validators still agree on something. A tx is
``public key (32 B) ‖ signature (64 B) ‖ payload``, the signature over the payload. A recheck is answered without
verifying again (perpd memoizes its stateless checks the same way).

bench/localnet_tps.py runs it as the ``python-sigcheck`` row beside the Go kvstore behind the same socket: the
ratio of the two is the highest share of the kvstore-socket ceiling a Python app with signed txs can reach on the
machine, whatever its own logic costs. The ``python-noop`` row (``--no-verify``) separates the server's own cost
from the signature's.

    .venv/bin/python bench/floor_app.py --address unix:///path/to/app.sock
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import nacl.exceptions  # noqa: E402
import nacl.signing  # noqa: E402
from tendermint.abci import types_pb2 as abci  # noqa: E402

from node.abci.server import AbciServer  # noqa: E402

PUBKEY, SIG = 32, 64


def verify(tx: bytes) -> bool:
    if len(tx) <= PUBKEY + SIG:
        return False
    try:
        nacl.signing.VerifyKey(tx[:PUBKEY]).verify(tx[PUBKEY + SIG:], tx[PUBKEY:PUBKEY + SIG])
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def sign(key: nacl.signing.SigningKey, payload: bytes) -> bytes:
    """A floor-app tx: what the bench's client sends."""
    return bytes(key.verify_key) + key.sign(payload).signature + payload


class FloorHandler:
    """The AbciHandler contract (``handle`` and ``on_consensus_lost``) with the least an app can do."""

    def __init__(self, check_signatures: bool = True) -> None:
        self.check_signatures = check_signatures
        self.height = 0
        self.app_hash = b""
        self.pending: bytes | None = None

    def handle(self, req: abci.Request) -> abci.Response:
        kind = req.WhichOneof("value")
        r = getattr(req, kind)
        if kind == "echo":
            return abci.Response(echo=abci.ResponseEcho(message=r.message))
        if kind == "flush":
            return abci.Response(flush=abci.ResponseFlush())
        if kind == "info":
            return abci.Response(info=abci.ResponseInfo(last_block_height=self.height,
                                                        last_block_app_hash=self.app_hash))
        if kind == "init_chain":
            return abci.Response(init_chain=abci.ResponseInitChain())
        if kind == "check_tx":
            ok = r.type == abci.RECHECK or not self.check_signatures or verify(r.tx)
            return abci.Response(check_tx=abci.ResponseCheckTx(code=0 if ok else 1, gas_wanted=1))
        if kind == "prepare_proposal":
            txs, size = [], 0
            for tx in r.txs:
                size += len(tx)
                if size > r.max_tx_bytes:
                    break
                txs.append(tx)
            return abci.Response(prepare_proposal=abci.ResponsePrepareProposal(txs=txs))
        if kind == "process_proposal":
            return abci.Response(process_proposal=abci.ResponseProcessProposal(
                status=abci.ResponseProcessProposal.ACCEPT))
        if kind == "extend_vote":
            return abci.Response(extend_vote=abci.ResponseExtendVote())
        if kind == "verify_vote_extension":
            return abci.Response(verify_vote_extension=abci.ResponseVerifyVoteExtension(
                status=abci.ResponseVerifyVoteExtension.ACCEPT))
        if kind == "finalize_block":
            h = hashlib.sha256(self.app_hash)
            out = abci.Response()
            fb = out.finalize_block
            for tx in r.txs:
                h.update(tx)
                fb.tx_results.add().code = 0
            self.pending = fb.app_hash = h.digest()
            self.height = r.height
            return out
        if kind == "commit":
            self.app_hash = self.pending or self.app_hash
            return abci.Response(commit=abci.ResponseCommit())
        if kind == "query":
            return abci.Response(query=abci.ResponseQuery(code=1, log="no queries"))
        return abci.Response(exception=abci.ResponseException(error=f"unsupported ABCI request {kind!r}"))

    def on_consensus_lost(self) -> None:
        self.pending = None


async def serve(address: str, check_signatures: bool) -> None:
    server = AbciServer(FloorHandler(check_signatures), address)  # type: ignore[arg-type] -- same handle() contract
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    await server.wait_stopped()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True, help="unix:///path or tcp://127.0.0.1:PORT")
    ap.add_argument("--no-verify", action="store_true", help="accept every tx unchecked (the server's own cost)")
    ns = ap.parse_args()
    asyncio.run(serve(ns.address, not ns.no_verify))


if __name__ == "__main__":
    main()
