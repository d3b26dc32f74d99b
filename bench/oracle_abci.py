"""Oracle-plane cost per block in ExtendVote, VerifyVoteExtension, PrepareProposal and ProcessProposal.

In-process, through AbciHandler with real protobuf requests and LevelDB, with
N simulated validators (each signs its own vote extension with its ed25519
key, as CometBFT would) and M markets. One node's time per block:
- ExtendVote once (its own vote),
- VerifyVoteExtension for each of the other N-1 validators' extensions,
- PrepareProposal when it proposes (once per N blocks on average; shown separately),
- ProcessProposal once (N signature checks + medians),
- FinalizeBlock (re-verification hits the signature memo; shown for completeness).
Goal: under 20 ms per block at 100 validators × 100 markets.

    .venv/bin/python bench/oracle_abci.py [--blocks 20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import platform
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import nacl.signing  # noqa: E402
from tendermint.abci import types_pb2 as abci  # noqa: E402

from app.application import Application  # noqa: E402
from app.prices.logic import vote_extension_sign_bytes  # noqa: E402
from node.abci.handler import AbciHandler  # noqa: E402
from node.storage.leveldb import LevelDBStore  # noqa: E402
from tests.helpers import CHAIN_ID, genesis_app_state  # noqa: E402

COMMIT = 2


def setup(n_validators: int, n_markets: int):
    keys = [nacl.signing.SigningKey(hashlib.sha256(b"bench-val-%d" % i).digest()) for i in range(n_validators)]
    addrs = [hashlib.sha256(bytes(k.verify_key)).digest()[:20] for k in keys]
    state = genesis_app_state()
    state["prices"] = {"markets": [
        {"id": i, "pair": f"M{i}-USD", "exponent": -6, "min_price_change_ppm": 100, "price": str(10**9)}
        for i in range(n_markets)]}
    store = LevelDBStore(tempfile.mkdtemp(prefix="perpd-oracle-bench-"))
    rng = random.Random(1)
    prices = {i: 10**9 + rng.randrange(-10**6, 10**6) for i in range(n_markets)}
    handler = AbciHandler(Application(store), vote_prices=lambda: dict(prices))
    init = abci.RequestInitChain(chain_id=CHAIN_ID, initial_height=1, app_state_bytes=json.dumps(state).encode())
    init.consensus_params.abci.vote_extensions_enable_height = 1
    for k in keys:
        v = init.validators.add(power=10)
        v.pub_key.ed25519 = bytes(k.verify_key)
    handler.handle(abci.Request(init_chain=init))
    return handler, store, keys, addrs, rng


def run(n_validators: int, n_markets: int, blocks: int) -> dict[str, float]:
    handler, store, keys, addrs, rng = setup(n_validators, n_markets)
    app = handler.app
    times: dict[str, list[float]] = {k: [] for k in ("extend_vote", "verify_vote_extension", "prepare_proposal",
                                                     "process_proposal", "finalize_block")}
    last_commit = abci.CommitInfo()
    ext_commit = abci.ExtendedCommitInfo()
    for height in range(1, blocks + 2):
        txs: list[bytes] = []
        if height >= 2:
            t0 = time.perf_counter()
            r = handler.handle(abci.Request(prepare_proposal=abci.RequestPrepareProposal(
                max_tx_bytes=1 << 22, height=height, local_last_commit=ext_commit)))
            t1 = time.perf_counter()
            txs = list(r.prepare_proposal.txs)
            r = handler.handle(abci.Request(process_proposal=abci.RequestProcessProposal(
                txs=txs, height=height, proposed_last_commit=last_commit)))
            t2 = time.perf_counter()
            assert r.process_proposal.status == abci.ResponseProcessProposal.ACCEPT
            times["prepare_proposal"].append(t1 - t0)
            times["process_proposal"].append(t2 - t1)
            # A non-proposer has a cold signature memo: measure ProcessProposal on a fresh app too.
        fb = abci.RequestFinalizeBlock(txs=txs, height=height, decided_last_commit=last_commit)
        fb.time.seconds = 1_700_000_000 + height
        t0 = time.perf_counter()
        handler.handle(abci.Request(finalize_block=fb))
        times["finalize_block"].append(time.perf_counter() - t0)
        handler.handle(abci.Request(commit=abci.RequestCommit()))
        # Votes for this height: ours through ExtendVote, the others' signed by their keys.
        t0 = time.perf_counter()
        own = handler.handle(abci.Request(extend_vote=abci.RequestExtendVote(height=height))).extend_vote.vote_extension
        times["extend_vote"].append(time.perf_counter() - t0)
        exts = []
        for i in range(n_validators):
            noisy = {m: p + rng.randrange(-1000, 1000) for m, p in enumerate([10**9] * n_markets)}
            exts.append(own if i == 0 else app.build_vote_extension(noisy))
        t0 = time.perf_counter()
        for ext in exts[1:]:
            r = handler.handle(abci.Request(verify_vote_extension=abci.RequestVerifyVoteExtension(
                height=height, vote_extension=ext)))
            assert r.verify_vote_extension.status == abci.ResponseVerifyVoteExtension.ACCEPT
        times["verify_vote_extension"].append(time.perf_counter() - t0)
        ext_commit = abci.ExtendedCommitInfo(round=0)
        last_commit = abci.CommitInfo(round=0)
        for i, (k, a, ext) in enumerate(zip(keys, addrs, exts)):
            sig = k.sign(vote_extension_sign_bytes(ext, height, 0, CHAIN_ID)).signature
            ev = ext_commit.votes.add(vote_extension=ext, extension_signature=sig, block_id_flag=COMMIT)
            ev.validator.address, ev.validator.power = a, 10
            cv = last_commit.votes.add(block_id_flag=COMMIT)
            cv.validator.address, cv.validator.power = a, 10
    # Cold ProcessProposal (a validator that did not build the proposal).
    cold_handler, cold_store, *_ = setup(n_validators, n_markets)
    txs = list(handler.handle(abci.Request(prepare_proposal=abci.RequestPrepareProposal(
        max_tx_bytes=1 << 22, height=blocks + 2, local_last_commit=ext_commit))).prepare_proposal.txs)
    cold = []
    for _ in range(3):
        cold_handler.app._signatures = type(cold_handler.app._signatures)()  # forget earlier checks
        fake_next = abci.RequestProcessProposal(txs=txs, height=blocks + 2, proposed_last_commit=last_commit)
        # The cold app is at height 0 with the same validators/markets; oracle validity does not depend on height
        # beyond the sign bytes, which use height-1 = blocks+1 exactly as above.
        t0 = time.perf_counter()
        cold_handler.app._view = None
        cold_handler.app.process_proposal(list(fake_next.txs), fake_next.height,
                                          __import__("node.abci.handler", fromlist=["x"]).to_last_commit(last_commit))
        cold.append(time.perf_counter() - t0)
    store.close()
    cold_store.close()
    out = {k: 1000 * statistics.median(v) for k, v in times.items() if v}
    out["process_proposal_cold"] = 1000 * statistics.median(cold)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=20)
    ns = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; median ms per block over "
          f"{ns.blocks} blocks, in-process through AbciHandler")
    for n_val, n_mkt in ((4, 100), (100, 100)):
        r = run(n_val, n_mkt, ns.blocks)
        non_proposer = r["extend_vote"] + r["verify_vote_extension"] + r["process_proposal_cold"]
        proposer = r["extend_vote"] + r["verify_vote_extension"] + r["prepare_proposal"] + r["process_proposal"]
        print(f"{n_val:3d} validators x {n_mkt} markets: ExtendVote {r['extend_vote']:.2f}  "
              f"VerifyVoteExtension x{n_val - 1} {r['verify_vote_extension']:.2f}  "
              f"PrepareProposal {r['prepare_proposal']:.2f}  ProcessProposal {r['process_proposal']:.2f} "
              f"(cold {r['process_proposal_cold']:.2f})  FinalizeBlock {r['finalize_block']:.2f}")
        print(f"    per block: non-proposer {non_proposer:.1f} ms, proposer {proposer:.1f} ms  (goal < 20 ms)")


if __name__ == "__main__":
    main()
