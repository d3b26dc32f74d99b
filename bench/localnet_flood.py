"""Spam protection on a 4-validator localnet: a flood of valid transfers from many funded accounts vs honest users.

Two localnets in one run, same flood, same honest probe:
  admission  -- the default admission params (per-account request budget, 0.01 USDC fee per transfer)
  baseline   -- admission effectively off (budget 1 000 000 requests per account, no fee)
Flood: --flooders accounts (10 000 USDC each), each with --per-flooder pre-signed transfers, pushed with
broadcast_tx_sync from --threads client threads, round-robin over the nodes. Honest probe: 3 accounts send one
transfer every --probe-interval seconds to a node in turn; for each we record the height when it was broadcast and
the height it committed at (blocks to commit) and the seconds it took. Figures only; never a test.

    .venv/bin/python bench/localnet_flood.py [--flooders 30] [--per-flooder 400] [--threads 8]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import http.client
import json
import pathlib
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from localnet_tps import machine_facts, percentile  # noqa: E402

from node import localnet as ln  # noqa: E402
from node.client.keys import Keyring  # noqa: E402
from node.client.rpc import RpcClient  # noqa: E402
from node.client.txbuilder import msg_send, sign_tx  # noqa: E402

HONEST = ["honest0", "honest1", "honest2"]
NO_ADMISSION = {"fee_per_message_quote_quantums": "0", "base_capacity_requests": "1000000",
                "max_capacity_requests": "1000000"}


def template(flooders: int, admission_params: dict | None) -> dict:
    accounts = [{"name": f"flood{i}", "amount_quote_quantums": "10000000000"} for i in range(flooders)]
    accounts += [{"name": n, "amount_quote_quantums": "1000000000000"} for n in HONEST]
    app_state: dict = {"bank": {"balances": []}}
    if admission_params is not None:
        app_state["auth"] = {"params": admission_params}
    return {"chain_id": "perpchain-flood", "authority": "honest0", "accounts": accounts, "app_state": app_state}


def run(d: pathlib.Path, manifest: dict, ns) -> dict:
    nodes = manifest["nodes"]
    keyring = Keyring(d / "keys")
    chain_id = manifest["chain_id"]
    sink = keyring.get(HONEST[0]).address
    flood = []
    for i in range(ns.flooders):
        k = keyring.get(f"flood{i}")
        flood += [sign_tx(k.signing_key, chain_id, n, [msg_send(k.address, sink, 1)]) for n in range(1, ns.per_flooder + 1)]
    # Interleave accounts (flood0 n1, flood1 n1, ...) like many bots at once.
    flood = [flood[a * ns.per_flooder + n] for n in range(ns.per_flooder) for a in range(ns.flooders)]
    bodies = [json.dumps({"jsonrpc": "2.0", "id": i, "method": ns.method,
                          "params": {"tx": base64.b64encode(t).decode()}}).encode() for i, t in enumerate(flood)]
    codes: dict[int, int] = {}
    lock = threading.Lock()
    watcher = RpcClient(ln.rpc_url(nodes[0]))
    start_height = watcher.height()
    probe_hashes: dict[str, int] = {}
    probe_sent: list[tuple[float, int]] = []  # (time, height) at broadcast
    probe_done: dict[int, tuple[float, int]] = {}
    probe_refused: list[str] = []
    flood_hashes = {hashlib.sha256(t).hexdigest() for t in flood}
    flood_committed = [0]
    mempool_max = [0]
    stop = threading.Event()

    def watch() -> None:
        h = start_height + 1
        while not stop.is_set():
            try:
                latest = watcher.height()
                mempool_max[0] = max(mempool_max[0], int(watcher.call("num_unconfirmed_txs")["n_txs"]))
            except Exception:  # noqa: BLE001 -- keep polling through a transient RPC error
                time.sleep(0.05)
                continue
            while h <= latest:
                txs = watcher.block(h)["block"]["data"]["txs"] or []
                now = time.perf_counter()
                for t in txs:
                    digest = hashlib.sha256(base64.b64decode(t)).hexdigest()
                    if digest in probe_hashes and probe_hashes[digest] not in probe_done:
                        probe_done[probe_hashes[digest]] = (now, h)
                    elif digest in flood_hashes:
                        flood_committed[0] += 1
                h += 1
            time.sleep(0.05)

    local = threading.local()

    def send(i: int) -> None:
        if not hasattr(local, "c"):
            local.c = [http.client.HTTPConnection("127.0.0.1", n["rpc_port"], timeout=30) for n in nodes]
        c = local.c[i % len(nodes)]
        c.request("POST", "/", body=bodies[i], headers={"Content-Type": "application/json"})
        doc = json.loads(c.getresponse().read())
        # -1: RPC error (e.g. mempool full); -2: broadcast_tx_async (CheckTx not waited for)
        code = (int(doc["result"]["code"]) if ns.method == "broadcast_tx_sync" else -2) if "result" in doc else -1
        with lock:
            codes[code] = codes.get(code, 0) + 1

    def probe() -> None:
        honest = [keyring.get(n) for n in HONEST]
        clients = [RpcClient(ln.rpc_url(n)) for n in nodes]
        i = 0
        while not stop.is_set():
            k = honest[i % len(honest)]
            tx = sign_tx(k.signing_key, chain_id, 1_000 + i, [msg_send(k.address, sink, 1)])
            c = clients[i % len(clients)]
            try:
                h = c.height()
                res = c.broadcast_tx_sync(tx)
                if int(res["code"]) != 0:
                    probe_refused.append(res.get("log", ""))
                else:
                    probe_hashes[hashlib.sha256(tx).hexdigest()] = len(probe_sent)
                    probe_sent.append((time.perf_counter(), h))
            except Exception as e:  # noqa: BLE001 -- a refused probe is a figure, not a crash
                probe_refused.append(str(e)[:100])
            i += 1
            stop.wait(ns.probe_interval)
        for c in clients:
            c.close()

    wt = threading.Thread(target=watch, daemon=True)
    pt = threading.Thread(target=probe, daemon=True)
    wt.start()
    pt.start()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(ns.threads) as pool:
        list(pool.map(send, range(len(flood))))
    t_sent = time.perf_counter()
    time.sleep(ns.tail)  # keep probing while the mempools drain
    stop.set()
    pt.join(timeout=10)
    deadline = time.perf_counter() + 60
    while len(probe_done) < len(probe_sent) and time.perf_counter() < deadline:
        time.sleep(0.2)
    wt.join(timeout=5)
    blocks = sorted(probe_done[i][1] - probe_sent[i][1] for i in probe_done)
    secs = sorted(probe_done[i][0] - probe_sent[i][0] for i in probe_done)
    watcher.close()
    return {"offered": len(flood), "codes": codes, "send_s": t_sent - t0, "flood_committed": flood_committed[0],
            "probes": len(probe_sent), "probes_committed": len(probe_done), "probe_refused": probe_refused,
            "blocks_p50": percentile(blocks, 0.5), "blocks_max": blocks[-1] if blocks else None,
            "s_p50": percentile(secs, 0.5), "s_p99": percentile(secs, 0.99), "mempool_max": mempool_max[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flooders", type=int, default=30)
    ap.add_argument("--per-flooder", type=int, default=400)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--probe-interval", type=float, default=0.5)
    ap.add_argument("--tail", type=float, default=10.0, help="seconds to keep probing after the flood was sent")
    ap.add_argument("--base-port", type=int, default=29500)
    ap.add_argument("--rows", default="admission,baseline")
    ap.add_argument("--method", choices=("broadcast_tx_sync", "broadcast_tx_async"), default="broadcast_tx_async")
    ns = ap.parse_args()
    print(machine_facts())
    work = pathlib.Path(tempfile.mkdtemp(prefix="perpd-flood-"))
    results = {}
    try:
        for i, row in enumerate(ns.rows.split(",")):
            d = work / row
            path = work / f"{row}.json"
            path.write_text(json.dumps(template(ns.flooders, None if row == "admission" else NO_ADMISSION)))
            manifest = ln.up(d, 4, ns.base_port + 100 * i, "perpd", wait_height=3, template_path=path)
            try:
                results[row] = run(d, manifest, ns)
            finally:
                ln.down(d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"flood: {ns.flooders} accounts x {ns.per_flooder} transfers (10 000 USDC each), {ns.threads} threads, "
          f"{ns.method} round-robin over 4 nodes; probe: 1 honest transfer every {ns.probe_interval}s")
    for row, r in results.items():
        codes = ", ".join(f"{k}:{v}" for k, v in sorted(r["codes"].items()))
        print(f"{row:10s} flood sent in {r['send_s']:.1f}s, CheckTx codes {{{codes}}} (0 ok, 17 rate_limited, "
              f"-1 RPC error), flood committed {r['flood_committed']}, max mempool (node0) {r['mempool_max']}; "
              f"honest: {r['probes_committed']}/{r['probes']} committed, {len(r['probe_refused'])} refused, "
              f"blocks to commit p50 {r['blocks_p50']} max {r['blocks_max']}, seconds p50 {r['s_p50']:.2f} "
              f"p99 {r['s_p99']:.2f}" + (f"; first refusal: {r['probe_refused'][0]}" if r["probe_refused"] else ""))


if __name__ == "__main__":
    main()
