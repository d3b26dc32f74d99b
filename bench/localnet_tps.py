"""Committed transfers per second on a 4-validator localnet: perpd vs CometBFT's built-in kvstore.

Same validator count, same CometBFT config (timeout_commit), same tx count,
similar tx size, same client, measured in one run. Prints both rates, their
ratio, and median/p99 latency from broadcast to the block being observed
committed. Not a test: figures only. Extra rows separate the transport's cost
from the app's: kvstore-socket and kvstore-grpc run the same Go kvstore as a
separate process behind CometBFT's two out-of-process ABCI clients.

    .venv/bin/python bench/localnet_tps.py [--txs 2000] [--senders 40] [--threads 8] [--apps perpd,kvstore,...]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import pathlib
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import nacl.signing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from calibrate import speed_line  # noqa: E402
from node import localnet as ln  # noqa: E402
from node.client.keys import Keyring  # noqa: E402
from node.client.rpc import RpcClient  # noqa: E402
from node.client.txbuilder import msg_send, sign_tx  # noqa: E402
from node.config import find_cometbft  # noqa: E402
from node.procutil import children, stat_fields, write_pid_file  # noqa: E402


def machine_facts() -> str:
    cpu = "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 30)
    cmt = subprocess.run([find_cometbft(), "version"], capture_output=True, text=True).stdout.strip()
    return (f"machine: {os.cpu_count()} cores ({cpu}), {mem_gib} GiB RAM, Python {platform.python_version()}, "
            f"CometBFT {cmt}, {platform.system()} {platform.release()}")


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(p * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), from /proc."""
    fields = stat_fields(pid)
    return 0.0 if fields is None else sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def process_cpu(manifest: dict, d: pathlib.Path) -> dict[str, float]:
    """CPU seconds so far: apps, cometbft, oracle (price-daemon workers + the venue simulator), client."""
    out = {"perpd": 0.0, "cometbft": 0.0, "oracle": 0.0}
    for node in manifest["nodes"]:
        pids = ln.node_pids(node)
        for name, pid in pids.items():
            out[name] += cpu_seconds(pid)
            if name == "perpd":  # its other children: the price-daemon worker
                out["oracle"] += sum(cpu_seconds(c) for c in children(pid) if c not in pids.values())
    feeds = ln.feeds_pid(d, manifest)
    if feeds is not None:
        out["oracle"] += cpu_seconds(feeds)
    for pid in manifest.get("app_pids", ()):  # Go kvstore processes
        out["perpd"] += cpu_seconds(pid)
    out["client"] = cpu_seconds(os.getpid())
    return out


def run_load(manifest: dict, d: pathlib.Path, txs: list[bytes], threads: int, timeout_s: float,
             method: str = "broadcast_tx_sync", rate: float = 0.0) -> dict:
    """Broadcast every tx, watch blocks on node0, return rate, latencies and CPU use.

    broadcast_tx_sync waits for CheckTx (what a bot that wants its error code does);
    broadcast_tx_async returns at once, so more CheckTx requests are in flight per node.
    ``rate`` > 0 paces the broadcasts (tx i is sent at t0 + i / rate): latency at a given load instead of under
    saturation.
    """
    nodes = manifest["nodes"]
    cpu0 = process_cpu(manifest, d)
    hashes = {hashlib.sha256(t).hexdigest(): i for i, t in enumerate(txs)}
    sent_at: list[float | None] = [None] * len(txs)
    committed_at: list[float | None] = [None] * len(txs)
    rejected = []
    watcher = RpcClient(ln.rpc_url(nodes[0]))
    stop = threading.Event()
    start_height = watcher.height()
    most_in_a_block = [0]  # the most of this run's txs one block carried (the block cap's effect on order rows)

    def watch() -> None:
        h = start_height + 1
        while not stop.is_set():
            try:
                latest = watcher.height()
            except Exception:  # noqa: BLE001 -- keep polling through a transient RPC error
                time.sleep(0.05)
                continue
            while h <= latest:
                blk = watcher.block(h)["block"]
                now = time.perf_counter()
                ours = 0
                for t in blk["data"]["txs"] or []:
                    idx = hashes.get(hashlib.sha256(base64.b64decode(t)).hexdigest())
                    if idx is not None and committed_at[idx] is None:
                        committed_at[idx] = now
                        ours += 1
                most_in_a_block[0] = max(most_in_a_block[0], ours)
                h += 1
            time.sleep(0.02)

    wt = threading.Thread(target=watch, daemon=True)
    wt.start()
    local = threading.local()

    # Pre-encoded JSON-RPC bodies over keep-alive stdlib connections: the load generator must cost
    # far less CPU than the nodes it measures (they share this machine's cores).
    bodies = [json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                          "params": {"tx": base64.b64encode(t).decode()}}).encode() for i, t in enumerate(txs)]

    def send(i: int) -> None:
        if not hasattr(local, "c"):
            local.c = [http.client.HTTPConnection("127.0.0.1", n["rpc_port"], timeout=30) for n in nodes]
        c = local.c[i % len(nodes)]
        if rate > 0:
            time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        sent_at[i] = time.perf_counter()
        for attempt in range(3):
            try:
                c.request("POST", "/", body=bodies[i], headers={"Content-Type": "application/json"})
                reply = json.loads(c.getresponse().read())
                break
            except (ConnectionError, http.client.HTTPException):
                # The node closed this keep-alive connection (seen once at saturation): reconnect and send again.
                # A tx that did reach the node the first time comes back as "already exists in cache", below.
                c.close()
                c = local.c[i % len(nodes)] = http.client.HTTPConnection(
                    "127.0.0.1", nodes[i % len(nodes)]["rpc_port"], timeout=30)
                if attempt == 2:
                    raise
        if "error" in reply:
            if "already exists in cache" not in json.dumps(reply["error"]):
                rejected.append((i, reply["error"]))
            return
        res = reply["result"]
        if int(res["code"]) != 0:
            rejected.append((i, res.get("log")))

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, range(len(txs))))
    t_sent = time.perf_counter()
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline and sum(c is not None for c in committed_at) + len(rejected) < len(txs):
        time.sleep(0.05)
    stop.set()
    wt.join(timeout=5)
    done = [i for i in range(len(txs)) if committed_at[i] is not None]
    t_last = max(committed_at[i] for i in done) if done else time.perf_counter()
    lat = sorted(committed_at[i] - sent_at[i] for i in done)
    cpu1 = process_cpu(manifest, d)
    return {
        "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0},
        "committed": len(done), "rejected": len(rejected), "first_rejection": rejected[0] if rejected else None,
        "tps": len(done) / (t_last - t0), "broadcast_s": t_sent - t0, "total_s": t_last - t0,
        "p50_ms": 1000 * percentile(lat, 0.5), "p99_ms": 1000 * percentile(lat, 0.99),
        "blocks": watcher.height() - start_height, "most_in_a_block": most_in_a_block[0],
    }


def start_go_kvstore(d: pathlib.Path, base_port: int, template: pathlib.Path,
                     transport: str, timeout_commit: str) -> tuple[dict, list[subprocess.Popen]]:
    """CometBFT's Go kvstore as a separate process (abci-cli kvstore) behind ``transport``.

    "socket" is the unix-socket ABCI perpd uses; "grpc" is CometBFT's other
    out-of-process transport. Separates the cost of the transport from the cost
    of our Python app. "floor" is bench/floor_app.py behind the socket instead: perpd's ABCI server verifying one
    ed25519 signature per CheckTx and nothing else ("floor-noop": not even that). The app processes' CPU is counted as the apps' CPU.
    """
    manifest = ln.create(d, 4, base_port, "perpd", template, timeout_commit)  # same CometBFT config as perpd rows
    abci_cli = str(pathlib.Path(find_cometbft()).with_name("abci-cli"))
    procs: list[subprocess.Popen] = []
    try:
        for node in manifest["nodes"]:
            home = pathlib.Path(node["home"])
            log = open(home / "cometbft.log", "ab")  # noqa: SIM115 -- closed with the process
            if transport != "grpc":
                sock = home / "perpd.sock"
                app_addr = proxy_app = f"unix://{sock}"
            else:
                port = base_port + 90 + node["index"]
                app_addr, proxy_app = f"tcp://127.0.0.1:{port}", f"127.0.0.1:{port}"  # CometBFT's grpc dialer
            floor = [sys.executable, str(pathlib.Path(__file__).with_name("floor_app.py")), "--address", app_addr]
            app_cmd = (floor if transport == "floor" else [*floor, "--no-verify"] if transport == "floor-noop"
                       else [abci_cli, "kvstore", "--abci", transport, "--address", app_addr])
            procs.append(subprocess.Popen(app_cmd, stdout=log, stderr=subprocess.STDOUT))
            manifest.setdefault("app_pids", []).append(procs[-1].pid)
            deadline = time.monotonic() + 10
            while not (sock.exists() if transport != "grpc" else port_open(port)):
                if time.monotonic() > deadline or procs[-1].poll() is not None:  # cometbft exits if no app yet
                    raise RuntimeError(f"abci-cli kvstore did not listen on {app_addr}")
                time.sleep(0.02)
            procs.append(subprocess.Popen([find_cometbft(), "start", "--home", str(home), "--abci",
                                           "grpc" if transport == "grpc" else "socket",
                                           "--proxy_app", proxy_app], stdout=log, stderr=subprocess.STDOUT))
            write_pid_file(home / "cometbft.pid", procs[-1].pid)
        deadline = time.monotonic() + 120
        while not all(h is not None and h >= 3 for h in ln.node_heights(manifest)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"kvstore-{transport} localnet did not reach height 3; see {d}/node*/cometbft.log")
            time.sleep(0.5)
    except BaseException:
        stop_procs(procs)
        raise
    return manifest, procs


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_procs(procs: list[subprocess.Popen]) -> None:
    """SIGTERM exactly these processes, then wait (SIGKILL after 30 s)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def perpd_txs(d: pathlib.Path, chain_id: str, n: int, senders: int) -> list[bytes]:
    keyring = Keyring(d / "keys")
    keys = [keyring.get(f"bench{i}") for i in range(senders)]
    out = []
    for i in range(n):
        k = keys[i % senders]
        to = keys[(i + 1) % senders].address
        out.append(sign_tx(k.signing_key, chain_id, 1 + i // senders, [msg_send(k.address, to, 1000 + i)]))
    return out


def perpd_order_txs(d: pathlib.Path, chain_id: str, n_ops: int, senders: int, batch: int,
                    good_til_block: int = 0) -> tuple[list[bytes], int]:
    """Order-placement txs (``batch`` placements each): post-only orders of 0.0001 BTC / 0.001 ETH / ... (long-term;
    short-term until ``good_til_block`` when it is set)
    far from the oracle (bids at half, asks at twice the localnet start price), spread over the four markets and
    subaccounts 0..7 so no subaccount reaches its equity-tier cap (100 000 USDC each: 200 long-term orders over all
    markets; the default 40 000 batched placements from 40 senders are 125 per subaccount) nor a (subaccount, market)
    the 200 open-order limit; nothing crosses, so every action rests and is one committed order operation. Returns (txs, order operations)."""
    from perpchain.v1 import tx_pb2

    keyring = Keyring(d / "keys")
    keys = [keyring.get(f"bench{i}") for i in range(senders)]
    # (clob pair, low bid subticks, high ask subticks, tick): localnet/genesis.json markets at half / twice the price
    markets = [(0, 32_000 * 100_000, 128_000 * 100_000), (1, 1_500 * 1_000_000, 6_000 * 1_000_000),
               (2, 75 * 10**8, 300 * 10**8)]
    txs, ops = [], 0
    nonce = [0] * senders
    good_til_ns = time.time_ns() + 3600 * 10**9  # long-term orders (the localnet's block time is wall-clock time)
    per_sender = n_ops // senders
    for first in range(0, per_sender, batch):
        for s_i, k in enumerate(keys):
            actions = []
            for i in range(first, min(first + batch, per_sender)):
                pair, bid, ask = markets[i % len(markets)]
                buy = (i // len(markets)) % 2 == 0
                actions.append(tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(
                    subaccount_number=(i // (2 * len(markets))) % 8, client_id=i + 1, clob_pair_id=pair,
                    side=1 if buy else 2, quantums=1_000_000, subticks=bid if buy else ask,
                    good_til_block=good_til_block, good_til_block_time_ns=0 if good_til_block else good_til_ns,
                    time_in_force=2)))
            nonce[s_i] += 1
            msg = tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=k.address, actions=actions))
            txs.append(sign_tx(k.signing_key, chain_id, nonce[s_i], [msg]))
            ops += len(actions)
    return txs, ops


def kvstore_txs(n: int, size: int) -> list[bytes]:
    out = []
    for i in range(n):
        key = f"k{i:08d}".encode()
        out.append(key + b"=" + b"v" * max(1, size - len(key) - 1))
    return out


def sigcheck_txs(n: int, size: int, senders: int) -> list[bytes]:
    """Txs of bench/floor_app.py, ``size`` bytes each (key, signature, a kvstore-style payload)."""
    from floor_app import PUBKEY, SIG, sign

    keys = [nacl.signing.SigningKey(hashlib.sha256(b"sigcheck%d" % i).digest()) for i in range(senders)]
    payload = size - PUBKEY - SIG
    return [sign(keys[i % senders], (b"k%08d=" % i).ljust(payload, b"v")) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txs", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=40)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--timeout-commit", default=ln.DEFAULT_TIMEOUT_COMMIT)
    ap.add_argument("--base-port", type=int, default=29100)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--method", choices=("broadcast_tx_sync", "broadcast_tx_async"), default="broadcast_tx_sync")
    ap.add_argument("--apps", default="perpd,kvstore,kvstore-socket",
                    help="rows to run, in order; also kvstore-grpc (Go kvstore behind CometBFT's gRPC ABCI), "
                         "perpd-orders (one long-term order action per tx), perpd-orders-short (one short-term "
                         "action per tx: rechecks check its window only), perpd-orders-batched (--batch actions per "
                         "tx) and "
                         "perpd-oracle (transfers on the order rows' genesis: what the oracle plane costs), "
                         "python-sigcheck (bench/floor_app.py: perpd's ABCI server verifying one signature per "
                         "CheckTx, nothing else: the floor of any Python app with signed txs), python-noop (the same server "
                         "accepting every tx unchecked)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="txs per second to send at (paced; latency at that load); 0 = as fast as possible")
    ap.add_argument("--batch", type=int, default=20, help="order actions per tx in the perpd-orders-batched row")
    ap.add_argument("--block-cap", type=int, default=None,
                    help="clob.params.max_order_actions_per_block of the order rows' genesis (default: localnet/"
                         "genesis.json's)")
    ns = ap.parse_args()
    print(machine_facts())
    print(speed_line())
    work = pathlib.Path(tempfile.mkdtemp(prefix="perpd-bench-"))
    template = {
        "chain_id": "perpchain-bench", "authority": "bench0",
        "accounts": [{"name": f"bench{i}", "amount_quote_quantums": "1000000000000"} for i in range(ns.senders)],
        "app_state": {"bank": {"balances": []}},
    }
    (work / "template.json").write_text(json.dumps(template))
    # The order rows need the localnet's markets, and collateral in every sender's subaccount 0.
    market_template = json.loads((pathlib.Path(__file__).resolve().parent.parent / "localnet" / "genesis.json")
                                 .read_text())
    market_template.update(chain_id="perpchain-bench", authority="bench0", accounts=[
        {"name": f"bench{i}", "amount_quote_quantums": "1000000000000",
         "deposits": [{"number": n, "amount_quote_quantums": "100000000000"} for n in range(8)]}
        for i in range(ns.senders)])
    if ns.block_cap is not None:
        market_template["app_state"]["clob"]["params"]["max_order_actions_per_block"] = ns.block_cap
    (work / "markets.json").write_text(json.dumps(market_template))
    results = {}
    size = 219  # a perpd transfer; replaced by the measured size when perpd runs first
    try:
        for i, app in enumerate(ns.apps.split(",")):
            d = work / app
            port = ns.base_port + 100 * i
            procs: list[subprocess.Popen] = []
            if app in ("kvstore-socket", "kvstore-grpc", "python-sigcheck", "python-noop"):
                transport = {"python-sigcheck": "floor", "python-noop": "floor-noop"}.get(app, app.split("-")[-1])
                manifest, procs = start_go_kvstore(d, port, work / "template.json", transport, ns.timeout_commit)
            else:
                orders = app.startswith("perpd-orders") or app == "perpd-oracle"
                manifest = ln.up(d, 4, port, "perpd", wait_height=3, timeout_commit=ns.timeout_commit,
                                 template_path=work / ("markets.json" if orders else "template.json"), mm=False)
            try:
                ops = ns.txs
                if app in ("perpd", "perpd-oracle"):
                    txs = perpd_txs(d, manifest["chain_id"], ns.txs, ns.senders)
                    size = sum(map(len, txs)) // len(txs)
                elif app.startswith("perpd-orders"):
                    batch = ns.batch if app.endswith("batched") else 1
                    gtb = 0
                    if app == "perpd-orders-short":  # good for the genesis' whole short-term window from now
                        with RpcClient(ln.rpc_url(manifest["nodes"][0])) as rpc:
                            gtb = rpc.height() + market_template["app_state"]["clob"]["params"]["short_block_window"]
                    txs, ops = perpd_order_txs(d, manifest["chain_id"], ns.txs * batch, ns.senders, batch, gtb)
                elif app in ("python-sigcheck", "python-noop"):
                    txs = sigcheck_txs(ns.txs, size, ns.senders)
                else:
                    txs = kvstore_txs(ns.txs, size)
                results[app] = run_load(manifest, d, txs, ns.threads, ns.timeout, ns.method, ns.rate)
                results[app]["tx_bytes"] = sum(map(len, txs)) // len(txs)
                results[app]["ops_per_tx"] = ops / len(txs)
            finally:
                if procs:
                    stop_procs(procs)
                else:
                    ln.down(d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"after the run: {speed_line()}")
    print("rows: perpd = this chain; kvstore = CometBFT's built-in app (--proxy_app=kvstore, in-process); "
          "kvstore-socket / kvstore-grpc = abci-cli kvstore over a unix socket / gRPC")
    print(f"config: 4 validators, {ns.txs} txs, {ns.threads} client threads, {ns.method} round-robin over "
          f"nodes, timeout_commit {ns.timeout_commit}, "
          + (f"paced at {ns.rate:g} tx/s" if ns.rate > 0 else "as fast as possible"))
    for app, r in results.items():
        ops_rate = f" = {r['tps'] * r['ops_per_tx']:.0f} order ops/s" if app.startswith("perpd-orders") else ""
        print(f"{app:14s} committed {r['committed']}/{len(r.get('txs', [])) or r['committed'] + r['rejected']} "
              f"(rejected {r['rejected']}), tx {r['tx_bytes']} B, {r['tps']:.0f} tx/s{ops_rate} over {r['total_s']:.2f}s (broadcast {r['broadcast_s']:.2f}s) in {r['blocks']} blocks "
              f"(at most {r['most_in_a_block']} in one), "
              f"latency p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms"
              + f"; CPU s: apps {r['cpu']['perpd']:.1f}, cometbft {r['cpu']['cometbft']:.1f}, "
              f"oracle {r['cpu']['oracle']:.1f}, "
              f"client {r['cpu']['client']:.1f}"
              + (f"; first rejection {r['first_rejection']}" if r["first_rejection"] else ""))
    notes = {
        "perpd": "first bar >= 0.5, goal >= 0.9",
        "kvstore-socket": "what CometBFT's socket ABCI client leaves of the in-process rate: the ceiling for any "
                          "socket app on this machine",
        "kvstore-grpc": "the same for CometBFT's gRPC ABCI client",
    }
    base = results.get("kvstore")
    for app, r in results.items():
        if base is not None and app != "kvstore":
            print(f"ratio {app}/kvstore: {r['tps'] / base['tps']:.2f}  ({notes.get(app, '')})")
    sock = results.get("kvstore-socket")
    for app in ("perpd-orders", "perpd-orders-short", "perpd-orders-batched"):
        if app in results and sock is not None:
            r = results[app]
            print(f"ratio {app} order ops/s / kvstore-socket tx/s: {r['tps'] * r['ops_per_tx'] / sock['tps']:.2f}"
                  f"  (goal >= 0.9 unbatched, far above batched); latency p50 {r['p50_ms']:.0f} ms, p99 "
                  f"{r['p99_ms']:.0f} ms (goal <= 500 / 1000 ms)")
    floor = results.get("python-sigcheck")
    if floor is not None and sock is not None:
        print(f"ratio python-sigcheck/kvstore-socket: {floor['tps'] / sock['tps']:.2f}  (the most a Python app that "
              "verifies one ed25519 signature per CheckTx reaches here, whatever else it does)")
        if "python-noop" in results:
            print(f"ratio python-noop/kvstore-socket: {results['python-noop']['tps'] / sock['tps']:.2f}  (perpd's "
                  "ABCI server answering without any work)")
        for app in ("perpd-orders", "perpd"):
            if app in results:
                print(f"ratio {app}/python-sigcheck: {results[app]['tps'] / floor['tps']:.2f}  (what our app's own "
                      "work leaves of that floor)")
    if "perpd" in results and "kvstore-socket" in results:
        print(f"ratio perpd/kvstore-socket: {results['perpd']['tps'] / results['kvstore-socket']['tps']:.2f}"
              f"  (our app against a Go app behind the same transport)")


if __name__ == "__main__":
    main()
