"""Cost of the price daemon inside a validator process: CPU per polling round and event-loop lag.

What matters for consensus is how late the validator's asyncio loop (the one answering ABCI) runs: a periodic
10 ms timer's lag is the proxy. Rows: the daemon inside that loop (``inproc``, the first design) and the daemon in
its own worker process (``process``, what ``perpd start`` runs); CPU is the loop process's plus the worker's.
The venue simulator runs in a separate process (`perpd feeds serve`) and is not counted. Baseline in the same
run: the same loop and timer with no daemon.

    .venv/bin/python bench/pricefeed_cost.py [--markets 4,100] [--seconds 10] [--poll-ms 250]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import platform
import socket
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from node.daemons.pricefeed import BATCH_PAIRS, OracleConfig, PriceDaemon  # noqa: E402
from node.daemons.process import PriceDaemonProcess  # noqa: E402
from node.feeds.venues import DEFAULT_VENUES, shape_for  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def market_names(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [f"C{letters[i // 26 % 26]}{letters[i % 26]}-USD" for i in range(n)]


def start_simulator(n_markets: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    markets = ",".join(f"{p}=100" for p in market_names(n_markets))
    proc = subprocess.Popen([sys.executable, "-m", "node.cli.main", "feeds", "serve", "--port", str(port),
                             "--markets", markets], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/control/state", timeout=1, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("feed simulator did not start")
        time.sleep(0.1)


def pid_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str | None, n_markets: int, seconds: float, poll_ms: int, mode: str = "inproc") -> dict:
    """Run the loop for ``seconds`` with a 10 ms ticker (and the daemon if ``url``); lag and CPU figures."""
    loop = asyncio.get_running_loop()
    markets = [(i, pair, -6) for i, pair in enumerate(market_names(n_markets))]
    daemon = None
    if url is not None:
        cfg = OracleConfig.from_dict({"feeds_url": url, "poll_interval_ms": poll_ms, "request_timeout_ms": 400,
                                      "twap_window_ms": 1000})
        daemon = PriceDaemon(cfg, lambda: markets) if mode == "inproc" else PriceDaemonProcess(cfg, lambda: markets)
        daemon.start()
        if mode == "process":  # let the worker start and report once, so its startup is not measured
            while not daemon.vote_prices() and daemon.health().get("process", {}).get("last_report_ms_ago") is None:
                await asyncio.sleep(0.05)
    lags = []
    cpu0 = time.process_time()
    worker = getattr(daemon, "pid", None)
    worker_cpu0 = pid_cpu_s(worker)
    end = loop.time() + seconds
    while loop.time() < end:
        t = loop.time()
        await asyncio.sleep(0.01)
        lags.append(loop.time() - t - 0.01)
    cpu = time.process_time() - cpu0
    out = {"cpu_s": cpu, "worker_cpu_s": pid_cpu_s(worker) - worker_cpu0,
           "lag_p50_ms": 1000 * sorted(lags)[len(lags) // 2],
           "lag_p99_ms": 1000 * sorted(lags)[int(len(lags) * 0.99)], "lag_max_ms": 1000 * max(lags)}
    if daemon is not None:
        out["rounds"] = daemon.health().get("rounds", 0)
        out["voted"] = len(daemon.vote_prices())
        await daemon.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--markets", default="4,100")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=int, default=250)
    ns = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; {len(DEFAULT_VENUES)} venues, "
          f"poll every {ns.poll_ms} ms, {ns.seconds:.0f} s per row; simulator in its own process")
    base = asyncio.run(measure(None, 0, ns.seconds, ns.poll_ms))
    print(f"baseline (no daemon): loop CPU {base['cpu_s']:.2f} s, 10 ms timer lag p50 {base['lag_p50_ms']:.2f} ms "
          f"p99 {base['lag_p99_ms']:.2f} ms max {base['lag_max_ms']:.2f} ms")
    for n in (int(x) for x in ns.markets.split(",")):
        for mode in ("inproc", "process"):
            proc, url = start_simulator(n)
            try:
                r = asyncio.run(measure(url, n, ns.seconds, ns.poll_ms, mode))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            daemon_cpu = r["cpu_s"] - base["cpu_s"] + r["worker_cpu_s"]
            per_round_ms = 1000 * daemon_cpu / max(1, r["rounds"])
            requests = sum(-(-n // BATCH_PAIRS) if shape_for(v).batch else n for v in DEFAULT_VENUES)
            print(f"{n:4d} markets {mode:7s} ({requests} requests/round): {r['rounds']} rounds, voted "
                  f"{r['voted']}/{n}; daemon CPU {per_round_ms:.1f} ms/round = {100 * daemon_cpu / ns.seconds:.0f}% "
                  f"of a core (node loop {r['cpu_s'] - base['cpu_s']:.2f} s, worker {r['worker_cpu_s']:.2f} s); "
                  f"node loop 10 ms timer lag p50 {r['lag_p50_ms']:.2f} ms p99 {r['lag_p99_ms']:.2f} ms "
                  f"max {r['lag_max_ms']:.2f} ms")


if __name__ == "__main__":
    main()
