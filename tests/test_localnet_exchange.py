"""A live market on a real 4-validator CometBFT localnet: the localnet's market maker quotes every market, traders
trade against it, every node agrees, and a restarted validator rebuilds the same book.

Started like tests/test_localnet.py (free ports on 127.0.0.1, `perpd localnet up`) with the repo's
localnet/localnet.toml and genesis, market maker forced on. Bounded: every wait has a count and a deadline; the
fixture stops exactly the PIDs the localnet recorded (nodes, feed simulator, market maker).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from node import localnet as ln
from node.client.keys import Keyring
from node.client.rpc import RpcClient, RpcError
from node.client.txbuilder import default_nonce, sign_tx, tx_hash
from node.mm.quotes import ceil_to_multiple, floor_to_multiple, subticks_to_usd, usd_to_subticks
from tests.test_localnet import ROOT, free_base_port, perpd, safe_height, wait_until

pytestmark = pytest.mark.localnet
MARKETS = ["BTC-USD", "ETH-USD", "SOL-USD", "PEPE-USD"]
BTC, ETH, SOL, PEPE = 0, 1, 2, 3  # clob pair ids of localnet/genesis.json
LEVELS = ln.load_config(ln.DEFAULT_CONFIG).market_maker.levels
DEPOSIT = 250_000 * 10**6  # each trader's subaccount 0 in the genesis template
TAKER_FEE_PPM = 500  # fee tier 1 (no volume yet)


def perpd_up(d, *args):
    env = {**os.environ, ln.CONFIG_ENV: str(ln.DEFAULT_CONFIG), ln.MM_ENV: "1"}
    res = subprocess.run([sys.executable, "-m", "node.cli.main", "localnet", "up", "--dir", str(d), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, f"localnet up failed:\n{res.stdout}\n{res.stderr}"
    return res.stderr


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("exchangenet")
    try:
        progress = perpd_up(d, "--validators", "4", "--base-port", str(free_base_port()))
        assert "started the market maker" in progress and ln.ORDERBOOK_HINT in progress, progress
        yield d, ln.load_manifest(d)
    finally:
        if ln.manifest_path(d).exists():
            ln.down(d)
        for log in [d / "mm.log", *sorted(d.glob("node*/perpd.log"))]:  # surface the logs when something failed
            if log.exists():
                print(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-8:]))


def query(c: RpcClient, path: str) -> tuple[int, dict]:
    """(height the node answered at, JSON answer)."""
    res = c.abci_query(path)
    assert int(res.get("code", 0)) == 0, res
    return int(res["height"]), json.loads(base64.b64decode(res["value"]))


def same_height(cs: list[RpcClient], path: str, tries: int = 60) -> tuple[int, list[dict]]:
    """Every node's answer to ``path`` at one committed height (asks again until all nodes answer at the same)."""
    for _ in range(tries):
        answers = [query(c, path) for c in cs]
        if len({h for h, _ in answers}) == 1:
            return answers[0][0], [a for _, a in answers]
        time.sleep(0.05)
    raise AssertionError(f"{path}: never got every node's answer at one height")


class BookWatcher(threading.Thread):
    """Polls one node's books (all four markets) until stopped: records every observed (height, market, best bid,
    best ask) and every crossed book."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.rpc = RpcClient(url, timeout_s=5)
        self.stop = threading.Event()
        self.seen: dict[tuple[int, str], tuple[int | None, int | None]] = {}
        self.crossed: list[tuple[int, str, int, int]] = []
        self.errors = 0

    def run(self) -> None:
        deadline = time.monotonic() + 170
        while not self.stop.is_set() and time.monotonic() < deadline:
            for m in MARKETS:
                try:
                    h, book = query(self.rpc, f"/clob/orderbook/{m}/1")
                except (RpcError, AssertionError):
                    self.errors += 1
                    continue
                bid = int(book["bids"][0]["subticks"]) if book["bids"] else None
                ask = int(book["asks"][0]["subticks"]) if book["asks"] else None
                self.seen[(h, m)] = (bid, ask)
                if bid is not None and ask is not None and bid >= ask:
                    self.crossed.append((h, m, bid, ask))
            self.stop.wait(0.2)
        self.rpc.close()


class Trader:
    def __init__(self, key, rpc: RpcClient, chain_id: str) -> None:
        self.key, self.rpc, self.chain_id = key, rpc, chain_id
        _, acct = query(rpc, f"/auth/account/{key.address}")
        self.nonces = [int(n) for n in acct["recent_nonces"]]

    def send(self, *actions: tx_pb2.OrderAction) -> dict:
        """One MsgOrders; waits for its block; returns the committed tx result."""
        nonce = default_nonce(self.nonces)
        self.nonces.append(nonce)
        tx = sign_tx(self.key.signing_key, self.chain_id, nonce,
                     [tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=self.key.address, actions=list(actions)))])
        res = self.rpc.broadcast_tx_sync(tx)
        assert int(res["code"]) == 0, res
        out = self.rpc.wait_tx(tx_hash(tx), timeout_s=60)
        assert int(out["tx_result"].get("code", 0)) == 0, out
        return out


def events(result: dict, kind: str) -> list[dict]:
    return [{a["key"]: a["value"] for a in e["attributes"]} for e in result["tx_result"].get("events", [])
            if e["type"] == kind]


def order(client_id: int, pair: int, side: int, quantums: int, gtb: int, subticks: int = 0, slippage_ppm: int = 0,
          tif: int = 0) -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(
        client_id=client_id, clob_pair_id=pair, side=side, quantums=quantums, subticks=subticks, good_til_block=gtb,
        market_slippage_ppm=slippage_ppm, time_in_force=tif))


def best(c: RpcClient, market: str) -> tuple[int, int, int]:
    """(height, best bid, best ask) in subticks."""
    h, book = query(c, f"/clob/orderbook/{market}/1")
    return h, int(book["bids"][0]["subticks"]), int(book["asks"][0]["subticks"])


def test_market_maker_quotes_traders_trade_nodes_agree_and_a_restart_rebuilds_the_book(net):
    d, manifest = net
    cs = [RpcClient(ln.rpc_url(n), timeout_s=5) for n in manifest["nodes"]]
    keys = Keyring(d / "keys")
    mm = keys.get("mm").address
    assert ln.mm_pid(d) is not None
    watcher = BookWatcher(ln.rpc_url(manifest["nodes"][1]))
    watcher.start()
    try:
        _run(d, manifest, cs, keys, mm, watcher)
    finally:
        watcher.stop.set()
        watcher.join(10)
        for c in cs:
            c.close()


def _run(d, manifest, cs, keys, mm, watcher):
    # 1. Within 30 blocks the maker has >= LEVELS levels on each side of every market, the books never crossed.
    start = cs[0].height()

    def quoted():
        books = [query(cs[0], f"/clob/orderbook/{m}/10")[1] for m in MARKETS]
        return all(len(b["bids"]) >= LEVELS and len(b["asks"]) >= LEVELS for b in books) and books

    books = wait_until(quoted, 60, f"{LEVELS} levels per side on every market")
    assert cs[0].height() <= start + 30
    _, perps = query(cs[0], "/perpetuals/list")
    oracle = {p["ticker"]: Fraction(p["oracle_price"]) for p in perps["perpetuals"]}
    for m, b in zip(MARKETS, books):
        bid, ask = Fraction(b["bids"][0]["price"]), Fraction(b["asks"][0]["price"])
        mid = (bid + ask) / 2
        # The maker's touch: 2 x 10 bps apart (plus tick rounding) around its view of the oracle, which may lag the
        # chain's by a block or two (the feed simulator's walk has jumps): loosely around the oracle.
        assert Fraction(18, 10_000) < (ask - bid) / mid < Fraction(22, 10_000), (m, b)
        assert abs(mid / oracle[m] - 1) < Fraction(5, 100), (m, mid, oracle[m])
        assert all(level["orders"] == 1 for level in b["bids"] + b["asks"])  # one maker quote per level

    # 2. Traders take the maker's quotes, through the CLI (`perpd tx clob ...`) and one tx built here, on all nodes.
    chain_id = cs[0].chain_id()
    addr = {n: keys.get(n).address for n in ("alice", "bob", "carol")}
    fills: list[dict] = []

    def tx(node: int, *args: str) -> dict:
        """`perpd tx clob ARGS` against node ``node``; the committed tx's JSON answer (code 0)."""
        out = json.loads(perpd(*args, "--home", str(d), "--node", ln.rpc_url(manifest["nodes"][node]), "-o", "json"))
        assert out["code"] == 0, out
        return {"tx_result": {"events": out["events"]}}

    def filled(result: dict, taker: str, quantums: int) -> None:
        f = events(result, "fill")
        assert f and all(x["maker"] == mm and x["taker"] == addr[taker] for x in f), f
        assert sum(int(x["quantums"]) for x in f) == quantums, f
        assert [a["status"] for a in events(result, "order_action")] == ["filled"], events(result, "order_action")
        fills.extend(f)

    # alice: market buy 0.001 BTC (IOC, bounded by the chain's default slippage off the oracle).
    filled(tx(0, "tx", "clob", "market-order", "--market", "BTC-USD", "--from", "alice", "--side", "buy",
              "--size", "0.001"), "alice", 10_000_000)
    # bob: limit sell 0.002 BTC priced 5 % under the best bid (crosses: fills at the maker's prices).
    _, bid, _ = best(cs[1], "BTC-USD")
    limit = floor_to_multiple(Fraction(bid) * Fraction(95, 100), 100_000)
    result = tx(1, "tx", "clob", "place-order", "--market", "BTC-USD", "--from", "bob", "--side", "sell",
                "--size", "0.002", "--price", str(limit // 100_000))
    filled(result, "bob", 20_000_000)
    assert all(int(x["subticks"]) >= limit for x in events(result, "fill"))
    # carol: a resting post-only bid 10 % under the ETH oracle, seen on the book, then cancelled.
    resting = floor_to_multiple(usd_to_subticks(oracle["ETH-USD"], -9, -9) * Fraction(90, 100), 100_000)
    result = tx(2, "tx", "clob", "place-order", "--market", "ETH-USD", "--from", "carol", "--side", "buy",
                "--size", "0.001", "--price", subticks_to_usd(resting, -9, -9), "--tif", "post-only", "--client-id", "7")
    assert [a["status"] for a in events(result, "order_action")] == ["resting"]
    _, mine = query(cs[2], f"/clob/orders/{addr['carol']}/0")
    assert [(o["client_id"], o["subticks"]) for o in mine["orders"]] == [(7, str(resting))]
    result = tx(3, "tx", "clob", "cancel-order", "--market", "ETH-USD", "--from", "carol", "--client-id", "7")
    assert [a["status"] for a in events(result, "order_action")] == ["canceled"]
    assert query(cs[2], f"/clob/orders/{addr['carol']}/0")[1]["orders"] == []
    # carol: market sell 1 SOL.
    filled(tx(2, "tx", "clob", "market-order", "--market", "SOL-USD", "--from", "carol", "--side", "sell",
              "--size", "1"), "carol", 10_000_000)
    # alice: an IOC limit buy of one PEPE step (10M PEPE) 5 % over the best ask, signed here and sent over RPC.
    alice = Trader(keys.get("alice"), cs[3], chain_id)
    _, _, ask = best(cs[3], "PEPE-USD")
    limit = ceil_to_multiple(Fraction(ask) * Fraction(105, 100), 1_000_000)
    filled(alice.send(order(2, PEPE, exchange_pb2.SIDE_BUY, 1_000_000, cs[3].height() + 10, subticks=limit,
                            tif=exchange_pb2.TIME_IN_FORCE_IOC)), "alice", 1_000_000)

    # 3. Every node holds the same positions and balances (at one height, and the same app hash).
    top = cs[0].height()
    wait_until(lambda: all(safe_height(c) >= top + 2 for c in cs), 60, "every node past the trades")
    common = min(c.height() for c in cs) - 1
    hashes = {c.app_hash_at(common) for c in cs}
    assert len(hashes) == 1, hashes
    want_size = {(addr["alice"], "BTC-USD"): 10_000_000, (addr["bob"], "BTC-USD"): -20_000_000,
                 (addr["carol"], "SOL-USD"): -10_000_000, (addr["alice"], "PEPE-USD"): 1_000_000,
                 (mm, "BTC-USD"): 10_000_000, (mm, "SOL-USD"): 10_000_000, (mm, "PEPE-USD"): -1_000_000}
    for owner in (*addr.values(), mm):
        _, answers = same_height(cs, f"/subaccounts/show/{owner}/0")
        assert all(a == answers[0] for a in answers), answers
        sizes = {(owner, p["market"]): int(p["size_base_quantums"]) for p in answers[0]["positions"]}
        assert sizes == {k: v for k, v in want_size.items() if k[0] == owner}, sizes
        _, balances = same_height(cs, f"/bank/balance/{owner}")
        assert all(b == balances[0] for b in balances)
        if owner != mm:  # a taker paid exactly its fills plus the tier-1 taker fee (rounded up)
            paid = sum((1 if x["taker_side"] == "buy" else -1) * int(x["quote_quantums"])
                       + int(x["taker_fee_quote_quantums"]) for x in fills if x["taker"] == owner)
            assert all(int(x["taker_fee_quote_quantums"]) == -(-int(x["quote_quantums"]) * TAKER_FEE_PPM // 10**6)
                       for x in fills if x["taker"] == owner)
            assert int(answers[0]["quote_balance_quote_quantums"]) == DEPOSIT - paid
    # CometBFT's indexer finds an account's txs (accounts are indexed: node/abci/handler.py INDEXED_KEYS); amounts and
    # sides are not. carol sent three order txs (place, cancel, market sell); bob's sell filled as taker.
    def found(q: str) -> int:
        return int(cs[1].call("tx_search", query=q, per_page="100")["total_count"])

    wait_until(lambda: found(f"order_action.owner='{addr['carol']}'") == 3, 30, "carol's three order txs indexed")
    assert found(f"fill.taker='{addr['bob']}'") == 1
    assert found(f"fill.maker='{mm}'") >= 4
    assert found("fill.taker_side='sell'") == 0  # two taker sells happened; the side is not indexed
    _, perps = same_height(cs, "/perpetuals/list")
    assert all(p == perps[0] for p in perps)
    oi = {p["ticker"]: int(p["open_interest_base_quantums"]) for p in perps[0]["perpetuals"]}
    assert oi == {"BTC-USD": 20_000_000, "ETH-USD": 0, "SOL-USD": 10_000_000, "PEPE-USD": 1_000_000}

    # 4. Restart node3 (SIGTERM by PID, `perpd localnet up` again): it rebuilds the same book and app hash.
    victim = manifest["nodes"][3]
    pids = ln.node_pids(victim)
    os.kill(pids["perpd"], signal.SIGTERM)  # perpd stops its cometbft child
    wait_until(lambda: not ln.node_pids(victim), 30, "node3 processes gone")
    assert ln.mm_pid(d) is not None  # the maker (on node0) did not notice
    perpd_up(d)
    target = max(safe_height(c) for c in cs[:3])
    wait_until(lambda: safe_height(cs[3]) >= target + 2, 90, "node3 to catch up")
    for m in MARKETS:
        h, answers = same_height(cs, f"/clob/orderbook/{m}/50")
        assert all(a == answers[0] for a in answers), (m, h, answers)
        assert len(answers[0]["bids"]) >= LEVELS and len(answers[0]["asks"]) >= LEVELS, answers[0]
    common = min(c.height() for c in cs) - 1
    assert len({c.app_hash_at(common) for c in cs}) == 1

    # 5. The books were never crossed in any observed block (and the watcher saw many blocks).
    watcher.stop.set()
    watcher.join(10)
    assert not watcher.crossed, watcher.crossed[:5]
    heights = {h for h, _ in watcher.seen}
    assert len(heights) >= 10, sorted(heights)
    rounds = [line for line in (d / "mm.log").read_text().splitlines() if " mm h=" in line]
    assert len(rounds) >= 10 and any("| tx " in line for line in rounds[1:]), rounds[-5:]  # it refreshed quotes
