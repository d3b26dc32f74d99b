"""In-process FinalizeBlock on a realistic book: order operations per second, per-operation latency, the cost of one
collateral check, and memory per resting order. Figures only; never a test.

Setup: --markets perpetual markets (each its own oracle market, $1,000, 5 % IM), --traders accounts with 1M USDC in
subaccount 0, --resting resting orders spread over every market (bids below and asks above the oracle). Then a
mixed flow, block after block: --place-pct resting placements, --cancel-pct cancels of live orders, the rest IOC
takers crossing the spread; once with --batch actions per tx ("batched") and once with one action per tx
("single"). Each mode runs twice: signatures checked inside FinalizeBlock (cold node), and signatures excluded (the
stateless check memoized by an earlier ProcessProposal, as on a node whose CheckTx already saw the txs).

    .venv/bin/python bench/clob_block.py [--markets 100] [--resting 10000] [--blocks 20] [--ops-per-block 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import random
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import nacl.signing  # noqa: E402
from calibrate import speed_line  # noqa: E402
from perpchain.v1 import exchange_pb2, tx_pb2  # noqa: E402

from app.application import Application  # noqa: E402
from app.clob import abci as clob_abci  # noqa: E402
from app.clob import matching  # noqa: E402
from app.clob.book import Books  # noqa: E402
from app.lib.address import address_from_pubkey, encode_address  # noqa: E402
from node import gctune  # noqa: E402
from node.client.txbuilder import sign_tx  # noqa: E402
from node.storage.leveldb import LevelDBStore  # noqa: E402

CHAIN = "perpchain-bench"
T0 = 1_700_000_000_000_000_000
PRICE = 100_000_000  # exponent -5: $1,000
TICK = 100_000  # $1
STEP = 1_000_000  # 0.0001 coin at atomic resolution -10


def machine_facts() -> str:
    cpu = "unknown"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 30)
    import platform

    return f"machine: {os.cpu_count()} cores ({cpu}), {mem} GiB RAM, Python {platform.python_version()}"


def rss_mib() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def genesis(n_markets: int, keys: list, equity_tiers: bool = True) -> dict:
    """The bench chain; ``equity_tiers`` False turns the equity-tier caps off (empty lists) for a baseline without the
    check (each trader's 1 M USDC is the top tier either way: 1 000 short-term orders)."""
    from app.clob.genesis import DEFAULT_PARAMS

    params = dict(DEFAULT_PARAMS) if equity_tiers else {**DEFAULT_PARAMS, "short_term_order_equity_tiers": [],
                                                          "stateful_order_equity_tiers": []}
    addrs = [encode_address(address_from_pubkey(bytes(k.verify_key))) for k in keys]
    return {
        "bank": {"authority": addrs[0], "balances": [{"address": a, "amount_quote_quantums": str(2 * 10**12)}
                                                      for a in addrs]},
        "auth": {"params": {"base_capacity_requests": "1000000", "max_capacity_requests": "1000000"}},
        "prices": {"params": {"stale_after_ns": str(10**18)},
                   "markets": [{"id": i, "pair": f"M{i}-USD", "exponent": -5, "min_price_change_ppm": 1000,
                                "price": str(PRICE)} for i in range(n_markets)]},
        "perpetuals": {"liquidity_tiers": [{"id": 0, "name": "t", "initial_margin_ppm": 50_000,
                                            "maintenance_fraction_ppm": 600_000,
                                            "impact_notional_quote_quantums": "10000000000"}],
                       "perpetuals": [{"id": i, "ticker": f"M{i}-USD", "market_id": i, "atomic_resolution": -10,
                                       "liquidity_tier": 0, "market_type": "MARKET_TYPE_CROSS"}
                                      for i in range(n_markets)]},
        "clob": {"params": params, "clob_pairs": [{"id": i, "perpetual_id": i, "step_base_quantums": str(STEP),
                                 "subticks_per_tick": str(TICK), "quantum_conversion_exponent": -9,
                                 "status": "CLOB_PAIR_STATUS_ACTIVE"} for i in range(n_markets)]},
        "subaccounts": {"deposits": [{"owner": a, "number": 0, "amount_quote_quantums": str(10**12)}
                                     for a in addrs]},
    }


class Flow:
    """Generates signed txs of order actions and keeps track of live resting orders."""

    def __init__(self, keys: list, n_markets: int, seed: int) -> None:
        self.keys = keys
        self.addrs = [encode_address(address_from_pubkey(bytes(k.verify_key))) for k in keys]
        self.n_markets = n_markets
        self.rng = random.Random(seed)
        self.nonce = [0] * len(keys)
        self.cid = [0] * len(keys)
        self.live: list[tuple[int, int, int]] = []  # (trader, pair, client id)

    def place_resting(self, trader: int, height: int) -> tx_pb2.OrderAction:
        self.cid[trader] += 1
        pair = self.rng.randrange(self.n_markets)
        side = self.rng.choice([1, 2])
        offset = self.rng.randrange(1, 50) * TICK
        subticks = PRICE - offset if side == 1 else PRICE + offset
        self.live.append((trader, pair, self.cid[trader]))
        return tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(
            client_id=self.cid[trader], clob_pair_id=pair, side=side, quantums=self.rng.randrange(1, 20) * STEP,
            subticks=subticks, good_til_block=height + 40, time_in_force=exchange_pb2.TIME_IN_FORCE_POST_ONLY))

    def cancel(self, trader: int) -> tx_pb2.OrderAction | None:
        mine = [i for i, o in enumerate(self.live[-2000:]) if o[0] == trader]
        if not mine:
            return None
        i = len(self.live) - min(2000, len(self.live)) + self.rng.choice(mine)
        _, pair, cid = self.live.pop(i)
        return tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(client_id=cid, clob_pair_id=pair)))

    def take(self, trader: int, height: int) -> tx_pb2.OrderAction:
        self.cid[trader] += 1
        side = self.rng.choice([1, 2])
        return tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(
            client_id=self.cid[trader], clob_pair_id=self.rng.randrange(self.n_markets), side=side,
            quantums=self.rng.randrange(1, 30) * STEP, subticks=PRICE + 60 * TICK if side == 1 else PRICE - 60 * TICK,
            good_til_block=height + 5, time_in_force=exchange_pb2.TIME_IN_FORCE_IOC))

    def tx(self, trader: int, actions: list) -> bytes:
        self.nonce[trader] += 1
        msg = tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=self.addrs[trader], actions=actions))
        return sign_tx(self.keys[trader], CHAIN, self.nonce[trader], [msg])

    def block(self, height: int, n_ops: int, batch: int, place_pct: int, cancel_pct: int) -> tuple[list[bytes], int]:
        txs, ops = [], 0
        while ops < n_ops:
            trader = self.rng.randrange(len(self.keys))
            actions = []
            for _ in range(batch):
                r = self.rng.randrange(100)
                a = (self.place_resting(trader, height) if r < place_pct else
                     self.cancel(trader) if r < place_pct + cancel_pct else self.take(trader, height))
                if a is not None:
                    actions.append(a)
            if actions:
                txs.append(self.tx(trader, actions))
                ops += len(actions)
        return txs, ops


def run_mode(work: pathlib.Path, ns, keys: list, batch: int, warm_signatures: bool, equity_tiers: bool = True) -> dict:
    store = LevelDBStore(work / f"db-{batch}-{warm_signatures}-{equity_tiers}")
    app = Application(store)
    app.init_chain(CHAIN, T0, json.dumps(genesis(ns.markets, keys, equity_tiers)).encode(), [], 1, 0)
    height = 1
    app.finalize_block(height, T0 + height * 10**9, [])
    app.commit()
    flow = Flow(keys, ns.markets, seed=7)
    rss0 = rss_mib()
    while len(flow.live) < ns.resting:  # populate the book, 50 resting orders per tx
        height += 1
        txs, _ = flow.block(height, min(5_000, ns.resting - len(flow.live)), 50, 100, 0)
        app.finalize_block(height, T0 + height * 10**9, txs)
        app.commit()
    if ns.gc == "node":
        gctune.tune()  # what node/runner.py does once the state is loaded
    resting = sum(len(b.bids.levels) + len(b.asks.levels) for b in app._books.pairs.values())
    rss_book = rss_mib() - rss0
    action_times: list[float] = []
    check_times: list[float] = []
    by_kind: dict[str, list[float]] = {}  # the flow's three kinds of action: where the mixed figure's time goes
    run_orig, check_orig, phase_orig = clob_abci._run, matching._check_side, clob_abci.process_order_actions
    phase = [0.0]  # CPU time in the order phase (app/clob/abci.py process_order_actions) of the measured blocks

    def timed_phase(*a, **k):  # one timer per block: always on, its cost is nothing next to a block's
        t = time.thread_time()
        try:
            return phase_orig(*a, **k)
        finally:
            phase[0] += time.thread_time() - t

    def timed_run(store, books, block, q, *a, **k):
        t = time.thread_time_ns()
        try:
            return run_orig(store, books, block, q, *a, **k)
        finally:
            dt = (time.thread_time_ns() - t) / 1e9
            action_times.append(dt)
            kind = q.action.WhichOneof("action")
            if kind == "place":
                ioc = q.action.place.time_in_force == exchange_pb2.TIME_IN_FORCE_IOC
                kind = "IOC taker" if ioc else "resting place"
            by_kind.setdefault(kind, []).append(dt)

    def timed_check(*a, **k):
        t = time.thread_time_ns()
        try:
            return check_orig(*a, **k)
        finally:
            check_times.append((time.thread_time_ns() - t) / 1e9)

    if ns.op_timing == "on":
        clob_abci._run, matching._check_side = timed_run, timed_check
    total_ops, busy, fills = 0, 0.0, 0
    try:
        clob_abci.process_order_actions = timed_phase
        for _ in range(ns.blocks):
            height += 1
            txs, ops = flow.block(height, ns.ops_per_block, batch, ns.place_pct, ns.cancel_pct)
            if warm_signatures:
                assert app.process_proposal(txs, height)  # memoizes decode + ed25519, like CheckTx/ProcessProposal
            t = time.thread_time()  # CPU time of this thread: robust to other processes on the machine
            res = app.finalize_block(height, T0 + height * 10**9, txs)
            app.commit()
            busy += time.thread_time() - t
            total_ops += ops
            fills += sum(1 for r in res.tx_results for e in r.events if e.type == "fill")
    finally:
        clob_abci._run, matching._check_side = run_orig, check_orig
        clob_abci.process_order_actions = phase_orig
    store.close()
    action_times.sort()
    check_times.sort()
    return {"ops": total_ops, "busy_s": busy, "ops_per_s": total_ops / busy, "fills": fills, "phase_s": phase[0],
            "op_p50_us": 1e6 * action_times[len(action_times) // 2] if action_times else float("nan"),
            "op_p99_us": 1e6 * action_times[int(len(action_times) * 0.99)] if action_times else float("nan"),
            "check_p50_us": 1e6 * check_times[len(check_times) // 2] if check_times else float("nan"),
            "check_p99_us": 1e6 * check_times[int(len(check_times) * 0.99)] if check_times else float("nan"),
            "resting_levels": resting, "rss_populate_mib": rss_book, "by_kind": by_kind}


def index_bytes_per_order(n: int) -> float:
    """Python memory of the in-memory book index (app/clob/book.py) per resting order, by tracemalloc."""
    tracemalloc.start()
    books = Books()
    rng = random.Random(1)
    for i in range(n):
        key = hashlib.sha256(i.to_bytes(8, "big")).digest()[:30]
        side = 1 + i % 2
        books._add(key, i % 100, side, PRICE + (rng.randrange(1, 200) * TICK) * (1 if side == 2 else -1), i)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--markets", type=int, default=100)
    ap.add_argument("--traders", type=int, default=200)
    ap.add_argument("--resting", type=int, default=10_000)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--ops-per-block", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--place-pct", type=int, default=40)
    ap.add_argument("--cancel-pct", type=int, default=30)
    ap.add_argument("--modes", default="batched-warm,batched-cold,single-warm,single-cold",
                    help="comma-separated; a '+no-tiers' suffix (e.g. batched-warm+no-tiers) runs the mode with the "
                         "equity-tier caps off: the cost of the check, measured in the same run")
    ap.add_argument("--gc", choices=("node", "default"), default="node",
                    help="node: the collector settings of a perpd node (node/gctune.py); default: CPython's")
    ap.add_argument("--op-timing", choices=("on", "off"), default="on",
                    help="on: time every action and collateral check (p50/p99; the wrappers cost CPU themselves, "
                         "see docs/benchmarks.md); off: throughput only")
    ns = ap.parse_args()
    print(machine_facts())
    print(speed_line())
    keys = [nacl.signing.SigningKey(hashlib.sha256(b"bench-trader-%d" % i).digest()) for i in range(ns.traders)]
    work = pathlib.Path(tempfile.mkdtemp(prefix="perpd-clob-bench-"))
    rows = {}
    try:
        for mode in ns.modes.split(","):
            name, _, suffix = mode.partition("+")
            kind, sig = name.split("-")
            rows[mode] = run_mode(work, ns, keys, ns.batch if kind == "batched" else 1, sig == "warm",
                                  equity_tiers=suffix != "no-tiers")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"config: {ns.markets} markets, {ns.resting} resting orders, {ns.traders} traders, {ns.blocks} blocks x "
          f"{ns.ops_per_block} ops ({ns.place_pct} % resting places, {ns.cancel_pct} % cancels, rest IOC takers), "
          f"batched = {ns.batch} actions per tx; one core (in-process, single thread); all times are CPU time of the "
          f"executing thread" + (" (per-op timing on: its wrappers cost CPU too; --op-timing off for throughput alone)"
                               if ns.op_timing == "on" else " (per-op timing off)"))
    for mode, r in rows.items():
        print(f"{mode:13s} {r['ops_per_s']:8.0f} order ops/s  ({r['ops']} ops in {r['busy_s']:.2f} s of FinalizeBlock"
              f"+Commit, {r['fills']} fills)" + (
                  f"; per op p50 {r['op_p50_us']:.0f} us p99 {r['op_p99_us']:.0f} us; collateral check p50 "
                  f"{r['check_p50_us']:.0f} us p99 {r['check_p99_us']:.0f} us" if ns.op_timing == "on" else ""))
        outside = r["busy_s"] - r["phase_s"]
        print(f"  order phase {100 * r['phase_s'] / r['busy_s']:.0f} % of it; the rest (tx decode, ante: nonce, budget, "
              f"fee; events; invariants; app hash; commit) {1e6 * outside / r['ops']:.0f} us per op, so even a free "
              f"order phase would stop at {r['ops'] / outside:.0f} order ops/s")
        total = sum(sum(v) for v in r["by_kind"].values())
        for kind, times in sorted(r["by_kind"].items()):
            times.sort()
            print(f"  {kind:14s} {len(times):6d} actions, mean {1e6 * sum(times) / len(times):5.0f} us, p50 "
                  f"{1e6 * times[len(times) // 2]:5.0f} us, p99 {1e6 * times[int(len(times) * 0.99)]:5.0f} us; "
                  f"{100 * sum(times) / total:4.1f} % of the actions' time")
    per_order = index_bytes_per_order(100_000)
    first = next(iter(rows.values()))
    print(f"memory: in-memory book index {per_order:.0f} B per resting order = {per_order * 1e5 / 2**20:.1f} MiB per "
          f"100,000 resting orders (tracemalloc); process RSS grew {first['rss_populate_mib']:.1f} MiB while "
          f"{ns.resting} orders were placed (state, caches and index: "
          f"{first['rss_populate_mib'] * 1e5 / max(1, ns.resting):.0f} MiB per 100,000)")
    for mode, r in rows.items():
        if mode.endswith("+no-tiers") and mode.partition("+")[0] in rows:
            print(f"ratio {mode.partition('+')[0]}/{mode} (the equity-tier check's cost): "
                  f"{rows[mode.partition('+')[0]]['ops_per_s'] / r['ops_per_s']:.2f}")
    base = rows.get("single-cold")
    if base:
        for mode, r in rows.items():
            print(f"ratio {mode}/single-cold: {r['ops_per_s'] / base['ops_per_s']:.2f}")
    print(f"after the run: {speed_line()}")
    print("bars (issue #9): first 10,000 order ops/s; goal 100,000")


if __name__ == "__main__":
    main()
