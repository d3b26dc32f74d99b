"""Localnet integration on real CometBFT v0.38 (4 validators on 127.0.0.1).

Never skipped: it fails if the cometbft binary is missing (`make test` builds it).
Bounded: every wait has a timeout; the fixture stops exactly the PIDs it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from app.tx.codec import MAX_TX_BYTES
from node import localnet as ln
from node.client.keys import Keyring
from node.client.rpc import RpcClient, RpcError
from node.client.txbuilder import msg_send, sign_tx, tx_hash
from tests.helpers import FEE

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.localnet
SENDERS = ["alice", "bob", "carol", "dave"]


def free_base_port() -> int:
    for base in range(27100, 29000, 50):
        ports = [base + 10 * i + j for i in range(4) for j in (0, 1)]
        ok = True
        for p in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def perpd(*args, timeout=240):
    res = subprocess.run([sys.executable, "-m", "node.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"perpd {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@contextlib.contextmanager
def running_localnet(tmp_path_factory, name: str):
    """A fresh 4-validator localnet on free ports: yields (dir, manifest); stops exactly its own PIDs."""
    d = tmp_path_factory.mktemp(name)
    base = free_base_port()
    try:
        perpd("localnet", "up", "--dir", str(d), "--validators", "4", "--base-port", str(base))
        yield d, ln.load_manifest(d)
    finally:
        if ln.manifest_path(d).exists():
            ln.down(d)
        for log in sorted(d.glob("node*/perpd.log")):  # surface the node logs when something failed
            tail = log.read_text(errors="replace").splitlines()[-5:]
            print(f"--- {log}\n" + "\n".join(tail))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with running_localnet(tmp_path_factory, "localnet") as value:
        yield value


def clients(manifest) -> list[RpcClient]:
    return [RpcClient(ln.rpc_url(n), timeout_s=5) for n in manifest["nodes"]]


def wait_until(pred, timeout_s: float, what: str, poll_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def safe_height(c: RpcClient) -> int:
    try:
        return c.height()
    except Exception:  # noqa: BLE001 -- a node that is down just has no height
        return -1


def balances(c: RpcClient, addresses: list[str]) -> list[int]:
    return [int(c.query_json(f"/bank/balance/{a}")["amount_quote_quantums"]) for a in addresses]


def assert_same_app_hash(cs: list[RpcClient], height: int):
    hashes = [c.app_hash_at(height) for c in cs]
    assert len(set(hashes)) == 1, f"app hash at height {height} differs: {hashes}"
    return hashes[0]


def common_height(cs: list[RpcClient]) -> int:
    return min(c.height() for c in cs)


def test_localnet_transfers_crash_recovery_and_restart(net):
    d, manifest = net
    keyring = Keyring(d / "keys")
    keys = {name: keyring.get(name) for name in [*SENDERS, "faucet"]}
    addrs = [keys[n].address for n in [*SENDERS, "faucet"]]
    cs = clients(manifest)
    chain_id = cs[0].chain_id()
    start = balances(cs[0], addrs)

    # 1. 200 transfers over RPC, 50 per sender with shuffled nonces (burst, out of order), spread over all nodes.
    rng = random.Random(7)
    txs = []
    expected = dict(zip(addrs, start))
    for s_i, sender in enumerate(SENDERS):
        nonces = list(range(1, 51))
        rng.shuffle(nonces)
        for n in nonces:
            to = addrs[(s_i + 1 + n % 4) % 5]
            amount = 1_000_000 + n
            txs.append(sign_tx(keys[sender].signing_key, chain_id, n, [msg_send(keys[sender].address, to, amount)]))
            expected[keys[sender].address] -= amount + FEE
            expected[to] += amount
    for i, tx in enumerate(txs):
        res = cs[i % 4].broadcast_tx_sync(tx)
        assert int(res["code"]) == 0, res
    heights = []
    for tx in txs:
        res = cs[0].wait_tx(tx_hash(tx), timeout_s=120)
        assert int(res["tx_result"].get("code", 0)) == 0, res
        heights.append(int(res["height"]))
    # ... and 3 through the CLI, which waits for inclusion and prints height and code.
    for i in range(3):
        out = json.loads(perpd("tx", "bank", "send", "faucet", keys["alice"].address, "2.5", "--home", str(d),
                               "--node", ln.rpc_url(manifest["nodes"][i]), "-o", "json"))
        assert out["code"] == 0 and out["height"] > 0
        expected[keys["faucet"].address] -= 2_500_000 + FEE
        expected[keys["alice"].address] += 2_500_000
        heights.append(out["height"])
    top = max(heights)
    wait_until(lambda: all(safe_height(c) > top for c in cs), 60, "all nodes past the last tx")
    h = common_height(cs) - 1
    assert_same_app_hash(cs, h)
    for c in cs:
        assert balances(c, addrs) == [expected[a] for a in addrs]
    supply = [c.query_json("/bank/supply")["amount_quote_quantums"] for c in cs]
    assert len(set(supply)) == 1

    # 2. kill -9 node3 (its app and its cometbft): the other three keep committing.
    victim = manifest["nodes"][3]
    pids = ln.node_pids(victim)
    assert set(pids) == {"perpd", "cometbft"}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not ln.node_pids(victim), 10, "node3 processes gone")
    h_dead = max(safe_height(c) for c in cs[:3])
    late = sign_tx(keys["bob"].signing_key, chain_id, 1000, [msg_send(keys["bob"].address, addrs[0], 77)])
    assert int(cs[0].broadcast_tx_sync(late)["code"]) == 0
    late_h = int(cs[0].wait_tx(tx_hash(late), timeout_s=60)["height"])
    expected[keys["bob"].address] -= 77 + FEE
    expected[addrs[0]] += 77
    wait_until(lambda: all(safe_height(c) >= h_dead + 3 for c in cs[:3]), 60, "3 nodes commit without node3")

    # Restart it with the same command: it catches up to the same app hash.
    perpd("localnet", "up", "--dir", str(d), "--validators", "4")
    target = max(safe_height(c) for c in cs[:3])
    wait_until(lambda: safe_height(cs[3]) >= target, 120, "node3 to catch up")
    assert late_h <= target
    assert_same_app_hash(cs, common_height(cs) - 1)
    assert balances(cs[3], addrs) == [expected[a] for a in addrs]

    # 3. Stop everything and start again: state intact, heights continue.
    before = max(safe_height(c) for c in cs)
    perpd("localnet", "down", "--dir", str(d))
    assert all(not ln.node_pids(n) for n in manifest["nodes"])
    assert all(safe_height(c) == -1 for c in cs)
    # Offline export: every node's committed state, in genesis format, holds the expected balances.
    # (Nodes stop one after another, so their heights may differ by a block: compare the balances, not the blocks.)
    for n in manifest["nodes"][:2]:
        exported = json.loads(perpd("export", "--home", n["home"]))
        assert int(exported["height"]) >= before - 1
        held = {b["address"]: int(b["amount_quote_quantums"]) for b in exported["app_state"]["bank"]["balances"]}
        assert [held.get(a, 0) for a in addrs] == [expected[a] for a in addrs]
    perpd("localnet", "up", "--dir", str(d))  # no layout flags: restarted as created
    wait_until(lambda: all(safe_height(c) > before for c in cs), 120, "heights to continue after restart")
    assert_same_app_hash(cs, common_height(cs) - 1)
    for c in cs:
        assert balances(c, addrs) == [expected[a] for a in addrs]
    status = json.loads(perpd("localnet", "status", "--dir", str(d), "-o", "json"))
    assert all(r["running"] for r in status)
    # compared at one height (the lowest node's), every node reports the same app hash, and the text says so
    assert len({r["common_height"] for r in status}) == 1 and status[0]["common_height"] >= 2
    assert len({r["app_hash_at_common"] for r in status}) == 1 and status[0]["app_hash_at_common"]
    assert "4 nodes agree, app hash " in perpd("localnet", "status", "--dir", str(d))
    for c in cs:
        c.close()


def perpd_fails(*args) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "node.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PERPD_DEBUG": ""})
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr
    return res


def test_cli_failures_on_a_live_chain_are_one_error_line(net):
    d, manifest = net
    node = ["--home", str(d), "--node", ln.rpc_url(manifest["nodes"][0])]

    def one_error_line(res) -> str:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
        return lines[0]

    # CheckTx rejection: one Error line on stderr in text mode, the structured answer on stdout with -o json.
    res = perpd_fails("tx", "bank", "send", "alice", "faucet", "100000000", *node)
    assert "rejected by CheckTx" in one_error_line(res) and "insufficient" in res.stderr and res.stdout == ""
    res = perpd_fails("tx", "bank", "send", "alice", "faucet", "100000000", *node, "-o", "json")
    assert json.loads(res.stdout)["stage"] == "check_tx"
    # The same signed bytes twice (explicit nonce): the second is named for what it is.
    alice = Keyring(d / "keys").get("alice").address
    with RpcClient(ln.rpc_url(manifest["nodes"][0])) as c:
        used = [int(n) for n in c.query_json(f"/auth/account/{alice}")["recent_nonces"]]
    nonce = str(max(used, default=0) + 1000)
    perpd("tx", "bank", "send", "alice", "faucet", "0.5", "--nonce", nonce, *node)
    res = perpd_fails("tx", "bank", "send", "alice", "faucet", "0.5", "--nonce", nonce, *node)
    assert "already received" in one_error_line(res)
    assert "tx hash" in one_error_line(perpd_fails("query", "tx", "XYZ", *node))
    assert "block 1 carries no oracle tx" in one_error_line(perpd_fails("query", "oracle", "votes", "1", *node))
    assert "still running" in one_error_line(perpd_fails("export", "--home", manifest["nodes"][0]["home"]))
    not_comet = f"http://127.0.0.1:{manifest['feeds']['port']}"  # the venue simulator answers JSON, not JSON-RPC
    assert "CometBFT JSON-RPC" in one_error_line(perpd_fails("status", "--home", str(d), "--node", not_comet))


def test_non_utf8_query_path_from_the_rpc_cannot_stop_a_node(net):
    """`abci_query?path=0xff`: CometBFT hands the app bytes that are not UTF-8 in a proto string field."""
    d, manifest = net
    c = RpcClient(ln.rpc_url(manifest["nodes"][1]), timeout_s=10)
    before = c.height()
    r = c._http.get("/abci_query", params={"path": "0xfffe"}).json()
    assert int(r["result"]["response"]["code"]) == 204, r
    # A tx over the app's limit is refused by CometBFT's mempool itself (config from perpd), before any CheckTx.
    with pytest.raises(RpcError, match="(?i)too large"):
        c.broadcast_tx_sync(b"\x0a" * (MAX_TX_BYTES + 1))
    wait_until(lambda: safe_height(c) >= before + 2, 30, "node1 to keep committing")
    assert all(set(ln.node_pids(n)) == {"perpd", "cometbft"} for n in manifest["nodes"])
    c.close()


def test_check_tx_rpc_cannot_censor_and_old_heights_are_refused(net):
    """Issue #7 on real CometBFT: `/check_tx` (the mempool's own CheckTx, without adding to the mempool) never
    makes a node refuse or delay the same tx later; abci_query at a past height is refused, never mislabelled."""
    import base64

    d, manifest = net
    cs = clients(manifest)
    keyring = Keyring(d / "keys")
    carol = keyring.get("carol")
    faucet = keyring.get("faucet").address
    chain_id = cs[0].chain_id()
    used = [int(n) for n in cs[0].query_json(f"/auth/account/{carol.address}")["recent_nonces"]]
    base = max(used, default=0) + 5000

    def check_tx(c: RpcClient, tx: bytes) -> int:
        return int(c.call("check_tx", tx=base64.b64encode(tx).decode()).get("code", 0))

    # 1a. /check_tx then broadcast on the same node, on every node: accepted (was code 6, never committed).
    txs = [sign_tx(carol.signing_key, chain_id, base + i, [msg_send(carol.address, faucet, 10 + i)]) for i in range(4)]
    for c, tx in zip(cs, txs):
        assert check_tx(c, tx) == 0
        assert int(c.broadcast_tx_sync(tx)["code"]) == 0
    # 1b. /check_tx on nodes 1..3, then the tx reaches node0 and is gossiped to them: accepted everywhere.
    gossiped = sign_tx(carol.signing_key, chain_id, base + 10, [msg_send(carol.address, faucet, 99)])
    for c in cs[1:]:
        assert check_tx(c, gossiped) == 0
    h0 = cs[0].height()
    assert int(cs[0].broadcast_tx_sync(gossiped)["code"]) == 0
    for tx in [*txs, gossiped]:
        assert int(cs[0].wait_tx(tx_hash(tx), timeout_s=60)["tx_result"].get("code", 0)) == 0
    committed_at = int(cs[0].wait_tx(tx_hash(gossiped))["height"])
    print(f"gossiped tx broadcast at height {h0}, committed at {committed_at}")
    # 1c. /check_tx of a tx spending carol's whole balance, never broadcast: an honest small transfer still passes.
    whole = int(cs[1].query_json(f"/bank/balance/{carol.address}")["amount_quote_quantums"]) - FEE
    spend_all = sign_tx(carol.signing_key, chain_id, base + 20, [msg_send(carol.address, faucet, whole)])
    assert check_tx(cs[1], spend_all) == 0
    honest = sign_tx(carol.signing_key, chain_id, base + 21, [msg_send(carol.address, faucet, 1)])
    assert int(cs[1].broadcast_tx_sync(honest)["code"]) == 0
    assert int(cs[1].wait_tx(tx_hash(honest), timeout_s=60)["tx_result"].get("code", 0)) == 0

    # 2. Historical queries: height 0 and the latest are answered, an older one is refused with code 205.
    c = cs[2]
    path = f"/bank/balance/{carol.address}"
    r = c.call("abci_query", path=path, data="", height="1", prove=False)["response"]
    assert int(r.get("code", 0)) == 205 and "not kept" in r["log"] and not r.get("value"), r
    r = c.call("abci_query", path=path, data="", height="0", prove=False)["response"]
    assert int(r.get("code", 0)) == 0 and int(r["height"]) >= committed_at
    for x in cs:
        x.close()
