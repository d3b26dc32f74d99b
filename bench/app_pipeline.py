"""In-process cost per tx of each ABCI step on one node (no CometBFT, no network).

A tx costs a node: CheckTx (+ rechecks while it waits), ProcessProposal and
FinalizeBlock, all through the ABCI handler with real protobuf requests and
LevelDB. Prints microseconds per tx per step; the localnet benchmark
(`localnet_tps.py`) gives the end-to-end figure.

    .venv/bin/python bench/app_pipeline.py [--txs 5000] [--block 500] [--profile]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tendermint.abci import types_pb2 as abci  # noqa: E402

from app.application import Application  # noqa: E402
from node.abci.handler import AbciHandler  # noqa: E402
from node.storage.leveldb import LevelDBStore  # noqa: E402
from tests.helpers import CHAIN_ID, VALIDATOR_KEYS, genesis_app_state, send_tx  # noqa: E402


def order_genesis() -> dict:
    """tests/exchange_helpers' markets (BTC-USD at $64,000, accounts 1..4 with 100 000 USDC in subaccount 0), no
    open-order cap and budgets large enough that every order is admitted."""
    from app.clob.genesis import DEFAULT_PARAMS
    from tests.exchange_helpers import exchange_app_state

    state = exchange_app_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, "max_open_orders_per_subaccount": 0}
    state["auth"] = {"params": {"base_capacity_requests": "1000000", "max_capacity_requests": "1000000"}}
    return state


def order_txs(n_txs: int) -> list[bytes]:
    """One long-term post-only BTC-USD placement per tx, $16,000-$32,000 below or above the oracle (never crosses)."""
    from tests.exchange_helpers import BTC_STEP, ONE_DOLLAR_BTC, orders_tx, place

    out = []
    for i in range(n_txs):
        side = 1 + i % 2
        dollars = 64_000 + (-1 if side == 1 else 1) * (16_000 + i % 16_000)
        out.append(orders_tx(1 + i % 4, 1 + i // 4, [place(i + 1, side, BTC_STEP, dollars * ONE_DOLLAR_BTC, tif=2,
                                                          gtbt_ns=(1_700_000_000 + 30 * 86_400) * 10**9)]))
    return out


def run(n_txs: int, block_size: int, kind: str = "transfers") -> dict[str, float]:
    store = LevelDBStore(tempfile.mkdtemp(prefix="perpd-pipe-"))
    h = AbciHandler(Application(store))
    state = genesis_app_state() if kind == "transfers" else order_genesis()
    init = abci.RequestInitChain(chain_id=CHAIN_ID, initial_height=1, app_state_bytes=json.dumps(state).encode())
    init.time.seconds = 1_700_000_000  # genesis time: CheckTx before the first block checks times against it
    for k in VALIDATOR_KEYS:
        v = init.validators.add(power=10)
        v.pub_key.ed25519 = bytes(k.verify_key)
    h.handle(abci.Request(init_chain=init))
    txs = ([send_tx(1 + i % 5, 1 + (i + 1) % 5, 1000 + i, 1 + i // 5) for i in range(n_txs)] if kind == "transfers"
           else order_txs(n_txs))
    t = {"check_tx": 0.0, "recheck_tx": 0.0, "process_proposal": 0.0, "finalize_block": 0.0, "commit": 0.0}
    for start in range(0, n_txs, block_size):
        block = txs[start : start + block_size]
        t0 = time.perf_counter()
        for tx in block:
            r = h.handle(abci.Request(check_tx=abci.RequestCheckTx(tx=tx)))
            assert r.check_tx.code == 0, r.check_tx.log
        t1 = time.perf_counter()
        for tx in block[len(block) // 2 :]:  # half the mempool waits one block and is rechecked
            h.handle(abci.Request(check_tx=abci.RequestCheckTx(tx=tx, type=abci.RECHECK)))
        t2 = time.perf_counter()
        height = h.app.info()[0] + 1
        r = h.handle(abci.Request(process_proposal=abci.RequestProcessProposal(txs=block, height=height)))
        assert r.process_proposal.status == abci.ResponseProcessProposal.ACCEPT
        t3 = time.perf_counter()
        fb = abci.RequestFinalizeBlock(txs=block, height=height)
        fb.time.seconds = 1_700_000_000 + height
        r = h.handle(abci.Request(finalize_block=fb))
        assert all(x.code == 0 for x in r.finalize_block.tx_results)
        t4 = time.perf_counter()
        h.handle(abci.Request(commit=abci.RequestCommit()))
        t5 = time.perf_counter()
        t["check_tx"] += t1 - t0
        t["recheck_tx"] += t2 - t1
        t["process_proposal"] += t3 - t2
        t["finalize_block"] += t4 - t3
        t["commit"] += t5 - t4
    store.close()
    return {k: 1e6 * v / n_txs for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txs", type=int, default=5000)
    ap.add_argument("--block", type=int, default=500)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--kind", choices=("transfers", "orders", "both"), default="both",
                    help="transfers (MsgSend) or orders (one post-only placement per tx); both: one after the other")
    ns = ap.parse_args()
    if ns.profile:
        from pyinstrument import Profiler

        p = Profiler()
        p.start()
        run(ns.txs, ns.block, "orders" if ns.kind == "both" else ns.kind)
        p.stop()
        print(p.output_text(unicode=False, color=False, show_all=False))
        return
    for kind in ("transfers", "orders") if ns.kind == "both" else (ns.kind,):
        us = run(ns.txs, ns.block, kind)
        total = sum(us.values())
        print(f"{ns.txs} {kind}, blocks of {ns.block}; microseconds per tx on one node:")
        for k, v in us.items():
            print(f"  {k:17s} {v:8.1f} us")
        print(f"  {'total':17s} {total:8.1f} us  -> one node alone could process {1e6 / total:.0f} tx/s")


if __name__ == "__main__":
    main()
