"""A long run of the 4-validator localnet as `make localnet` starts it (its genesis and config, the reference market
maker quoting every market), with traders sending market orders and short-lived resting orders the whole time and
one validator restarted halfway: memory, CPU and disk over time, and every node's app hash at common heights.
Figures only; never a test.

What a validator operator wants to know before running a node for weeks: does memory grow (a cache without a bound,
a book index that leaks removed orders), how fast does the disk grow per block, does a restarted node come back to
the same state, does anything log a traceback.

    .venv/bin/python bench/localnet_soak.py [--minutes 15] [--traders alice,bob,carol,dave] [--interval 1.0]
                                            [--sample 30] [--restart-at 0.5] [--base-port 29500]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from localnet_tps import cpu_seconds, machine_facts  # noqa: E402

from node import localnet as ln  # noqa: E402
from node.client import market as mk  # noqa: E402
from node.client.keys import Keyring  # noqa: E402
from node.client.rpc import RpcClient, RpcError  # noqa: E402
from node.client.txbuilder import default_nonce, sign_tx  # noqa: E402
from node.procutil import children  # noqa: E402

SLIPPAGE_PPM = 50_000  # market orders: 5 % protective bound
RESTING_OFFSET_PPM = 20_000  # resting orders 2 % away from the oracle price: they rest, then expire
RESTING_LIFETIME = 15  # blocks


def rss_mib(pid: int) -> float:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def dir_mib(path: pathlib.Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total / (1 << 20)


class Trader(threading.Thread):
    """One key: every ``interval`` s one tx, broadcast without waiting for its block (a bot's steady flow): mostly a
    small market order of random side on a random market, every fourth a short-term post-only order away from the
    price (it rests, then expires), every tenth a batch cancel of its resting orders on a market."""

    def __init__(self, key, url: str, chain_id: str, markets: list[mk.Market], interval: float,
                 deadline: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.key, self.chain_id, self.markets = key, chain_id, markets
        self.rpc = RpcClient(url, timeout_s=10)
        self.interval, self.deadline = interval, deadline
        self.rng = random.Random(seed)
        self.sent = self.accepted = self.errors = 0
        self.refusals: dict[str, int] = {}
        self.nonces: list[int] = []

    def _oracle_subticks(self, m: mk.Market) -> int:
        book = self.rpc.query_json(f"/clob/orderbook/{m.clob_pair_id}/1")
        bids, asks = book.get("bids") or [], book.get("asks") or []
        if bids and asks:
            return (int(bids[0]["subticks"]) + int(asks[0]["subticks"])) // 2
        return 0

    def run(self) -> None:
        acct = self.rpc.query_json(f"/auth/account/{self.key.address}")
        self.nonces = [int(n) for n in acct.get("recent_nonces", [])]
        i = 0
        while time.monotonic() < self.deadline:
            i += 1
            m = self.rng.choice(self.markets)
            side = self.rng.choice(("buy", "sell"))
            try:
                height = self.rpc.height()
                if i % 10 == 0:
                    action = mk.batch_cancel_action(m, [])
                elif i % 4 == 0:
                    mid = self._oracle_subticks(m)
                    if not mid:
                        continue
                    off = mid * RESTING_OFFSET_PPM // 1_000_000
                    px = mid - off if side == "buy" else mid + off
                    px -= px % m.subticks_per_tick
                    action = mk.place_order_action(m, side=side, base_quantums=m.step_base_quantums, subticks=px,
                                                   client_id=self.rng.randrange(1, 2**32),
                                                   good_til_block=height + RESTING_LIFETIME, time_in_force="post-only")
                else:
                    action = mk.place_order_action(m, side=side, base_quantums=m.step_base_quantums *
                                                   self.rng.randint(1, 5), subticks=0,
                                                   client_id=self.rng.randrange(1, 2**32), good_til_block=height + 5,
                                                   time_in_force="ioc", market_slippage_ppm=SLIPPAGE_PPM)
                nonce = default_nonce(self.nonces)
                self.nonces = (self.nonces + [nonce])[-100:]
                tx = sign_tx(self.key.signing_key, self.chain_id, nonce, [mk.msg_orders(self.key.address, [action])])
                self.sent += 1
                res = self.rpc.broadcast_tx_sync(tx)
                if int(res["code"]) == 0:
                    self.accepted += 1
                else:
                    why = (res.get("log") or "").split(":")[0]
                    self.refusals[why] = self.refusals.get(why, 0) + 1
            except (RpcError, OSError, KeyError, ValueError):
                self.errors += 1  # a node restarting, a full mempool: counted, the flow goes on
                time.sleep(1)
            time.sleep(self.interval)
        self.rpc.close()


def sample(manifest: dict, rpcs: list[RpcClient]) -> dict:
    row: dict = {"t": time.monotonic(), "nodes": []}
    for node, rpc in zip(manifest["nodes"], rpcs):
        pids = ln.node_pids(node)
        perpd = pids.get("perpd")
        extra = [c for c in children(perpd) if c not in pids.values()] if perpd else []  # the price daemon worker
        try:
            height = rpc.height()
        except (RpcError, OSError):
            height = None
        row["nodes"].append({
            "height": height,
            "perpd_rss": rss_mib(perpd) if perpd else 0.0,
            "daemon_rss": sum(rss_mib(c) for c in extra),
            "cometbft_rss": rss_mib(pids["cometbft"]) if "cometbft" in pids else 0.0,
            "perpd_cpu": (cpu_seconds(perpd) + sum(cpu_seconds(c) for c in extra)) if perpd else 0.0,
            "cometbft_cpu": cpu_seconds(pids["cometbft"]) if "cometbft" in pids else 0.0,
            "app_data": dir_mib(pathlib.Path(node["home"]) / "data" / "perpd.db"),  # the app's LevelDB
            "data": dir_mib(pathlib.Path(node["home"]) / "data"),
        })
    return row


def agreement(rpcs: list[RpcClient]) -> tuple[int, bool]:
    """(height, whether every node has the same app hash after it), at the lowest height all nodes have passed."""
    heights = [r.height() for r in rpcs]
    h = min(heights) - 1
    hashes = {r.app_hash_at(h) for r in rpcs}
    return h, len(hashes) == 1


def restart_node(manifest: dict, node: dict, rpcs: list[RpcClient], timeout_s: float = 120) -> float:
    """SIGTERM the node's perpd (it stops its cometbft child), start it again, wait until it is back at the others'
    height; returns the seconds from the restart to caught up."""
    for pid in ln.node_pids(node).values():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while ln.node_pids(node) and time.monotonic() < deadline:
        time.sleep(0.2)
    t0 = time.monotonic()
    ln.start_node(manifest, node)
    me = rpcs[node["index"]]
    others = [r for r in rpcs if r is not me]
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        try:
            if me.height() >= min(r.height() for r in others):
                return time.monotonic() - t0
        except (RpcError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"node {node['index']} did not catch up within {timeout_s:.0f} s")


def tracebacks(d: pathlib.Path) -> dict[str, int]:
    out = {}
    for log in [d / "mm.log", *sorted(d.glob("node*/perpd.log"))]:
        if log.exists():
            n = log.read_text(errors="replace").count("Traceback")
            if n:
                out[str(log.relative_to(d))] = n
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--traders", default="alice,bob,carol,dave", help="keys of the localnet genesis")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between one trader's txs")
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--restart-at", type=float, default=0.5, help="restart node 3 at this fraction of the run (0: no)")
    ap.add_argument("--base-port", type=int, default=29500)
    ap.add_argument("--keep", action="store_true", help="keep the localnet folder afterwards")
    ns = ap.parse_args()
    print(machine_facts())
    d = pathlib.Path(tempfile.mkdtemp(prefix="perpd-soak-"))
    samples, checks = [], []
    restart_s = None
    try:
        manifest = ln.up(d / "ln", 4, ns.base_port, "perpd", wait_height=3, mm=True)
        d = d / "ln"
        rpcs = [RpcClient(ln.rpc_url(n), timeout_s=10) for n in manifest["nodes"]]
        markets = mk.markets_from_query(rpcs[0].query_json("/perpetuals/list"))
        keyring = Keyring(d / "keys")
        start = time.monotonic()
        end = start + 60 * ns.minutes
        traders = [Trader(keyring.get(name), ln.rpc_url(manifest["nodes"][i % 3]), manifest["chain_id"],
                          markets, ns.interval, end, seed=i) for i, name in enumerate(ns.traders.split(","))]
        for t in traders:
            t.start()
        restart_at = start + ns.restart_at * 60 * ns.minutes if ns.restart_at > 0 else None
        next_sample = start
        while time.monotonic() < end:
            now = time.monotonic()
            if restart_at is not None and now >= restart_at:
                restart_at = None
                restart_s = restart_node(manifest, manifest["nodes"][3], rpcs)
                print(f"restarted node 3: caught up in {restart_s:.1f} s", flush=True)
            if now >= next_sample:
                row = sample(manifest, rpcs)
                samples.append(row)
                try:
                    checks.append(agreement(rpcs))
                except (RpcError, OSError):
                    pass
                n0 = row["nodes"][0]
                print(f"t={row['t'] - start:6.0f}s height {n0['height']}  perpd RSS "
                      + " ".join(f"{n['perpd_rss']:.0f}" for n in row["nodes"]) + " MiB  cometbft RSS "
                      + " ".join(f"{n['cometbft_rss']:.0f}" for n in row["nodes"]) + " MiB  data "
                      + " ".join(f"{n['data']:.1f}" for n in row["nodes"]) + " MiB", flush=True)
                next_sample = now + ns.sample
            time.sleep(0.5)
        for t in traders:
            t.join(timeout=30)
        samples.append(sample(manifest, rpcs))
        checks.append(agreement(rpcs))
        for r in rpcs:
            r.close()
        report(ns, samples, checks, traders, restart_s, tracebacks(d))
    finally:
        if ln.manifest_path(d).exists():
            ln.down(d)
        if not ns.keep:
            shutil.rmtree(d.parent if d.name == "ln" else d, ignore_errors=True)


def report(ns, samples: list[dict], checks: list[tuple[int, bool]], traders: list[Trader], restart_s: float | None,
           logs: dict[str, int]) -> None:
    first = next((s for s in samples if s["t"] - samples[0]["t"] >= 60), samples[0])  # after a minute of warm-up
    last = samples[-1]
    hours = (last["t"] - first["t"]) / 3600
    blocks = (last["nodes"][0]["height"] or 0) - (first["nodes"][0]["height"] or 0)
    print(f"\nsoak: {ns.minutes:g} min, 4 validators, market maker on, {len(traders)} traders every {ns.interval:g} s; "
          f"{blocks} blocks between the first sample after warm-up and the last")
    sent = sum(t.sent for t in traders)
    accepted = sum(t.accepted for t in traders)
    refusals: dict[str, int] = {}
    for t in traders:
        for k, v in t.refusals.items():
            refusals[k] = refusals.get(k, 0) + v
    print(f"traders: {sent} txs sent, {accepted} accepted by CheckTx, refused {refusals or 0}, "
          f"{sum(t.errors for t in traders)} RPC errors")
    for i in range(len(last["nodes"])):
        a, b = first["nodes"][i], last["nodes"][i]
        note = " (restarted: RSS since the restart)" if i == 3 and restart_s is not None else ""
        print(f"node{i}: perpd RSS {a['perpd_rss']:.0f} -> {b['perpd_rss']:.0f} MiB, price daemon "
              f"{a['daemon_rss']:.0f} -> {b['daemon_rss']:.0f} MiB, cometbft {a['cometbft_rss']:.0f} -> "
              f"{b['cometbft_rss']:.0f} MiB{note}; data {a['data']:.1f} -> {b['data']:.1f} MiB (app "
              f"{a['app_data']:.1f} -> {b['app_data']:.1f}); CPU s perpd {b['perpd_cpu']:.0f}, cometbft "
              f"{b['cometbft_cpu']:.0f}")
    if hours > 0 and blocks > 0:
        n0a, n0b = first["nodes"][0], last["nodes"][0]
        print(f"node0 rates: perpd RSS {(n0b['perpd_rss'] - n0a['perpd_rss']) / hours:+.1f} MiB/h, data "
              f"{1000 * (n0b['data'] - n0a['data']) / blocks:.2f} MiB per 1000 blocks (app "
              f"{1000 * (n0b['app_data'] - n0a['app_data']) / blocks:.2f})")
    bad = [h for h, ok in checks if not ok]
    print(f"app hashes: {len(checks)} checks at common heights, {len(bad)} disagreements"
          + (f" (heights {bad})" if bad else ""))
    if restart_s is not None:
        print(f"node 3 restarted at {ns.restart_at:.0%} of the run: caught up in {restart_s:.1f} s")
    print(f"tracebacks in logs: {json.dumps(logs) if logs else 'none'}")


if __name__ == "__main__":
    main()
