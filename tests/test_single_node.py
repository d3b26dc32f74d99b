"""`perpd init` + `perpd start` on one real validator: supervision of the cometbft child."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from node.client.rpc import RpcClient
from node.config import edit_cometbft_config
from tests.test_localnet import free_base_port, perpd, wait_until

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.localnet


def alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(home: pathlib.Path) -> subprocess.Popen:
    log = open(home / "perpd.log", "ab")  # noqa: SIM115 -- closed when the test ends
    return subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(home)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


def test_init_start_send_stop_and_supervision(tmp_path):
    home = tmp_path / "node"
    port = free_base_port()
    out = json.loads(perpd("init", "--home", str(home), "--chain-id", "solo-1", "-o", "json"))
    assert out["chain_id"] == "solo-1"
    genesis = json.loads((home / "config" / "genesis.json").read_text())
    assert genesis["consensus_params"]["abci"]["vote_extensions_enable_height"] == "1"
    edit_cometbft_config(home, {"rpc": {"laddr": f"tcp://127.0.0.1:{port + 1}"},
                                "p2p": {"laddr": f"tcp://127.0.0.1:{port}"},
                                "consensus": {"timeout_commit": "300ms"}})
    node = f"http://127.0.0.1:{port + 1}"
    proc = start(home)
    cmt_pid = None
    try:
        c = RpcClient(node, timeout_s=3)
        wait_until(lambda: _height(c) >= 2, 60, "single node height 2")
        cmt_pid = int((home / "cometbft.pid").read_text().split()[0])
        perpd("keys", "add", "bob", "--home", str(home))
        res = json.loads(perpd("tx", "bank", "send", "validator", "bob", "3.25", "--home", str(home),
                               "--node", node, "-o", "json"))
        assert res["code"] == 0
        bal = json.loads(perpd("query", "bank", "balance", "bob", "--home", str(home), "--node", node, "-o", "json"))
        assert bal["amount_quote_quantums"] == "3250000"
        st = json.loads(perpd("status", "--node", node, "-o", "json"))
        assert st["chain_id"] == "solo-1" and st["app"]["chain_id"] == "solo-1"

        # SIGTERM stops perpd and its cometbft child, cleanly.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_until(lambda: not alive(cmt_pid), 10, "cometbft child to exit")
        h_before = _height_from_store(home)

        # Restart continues the chain; kill -9 of perpd takes its child down too (PR_SET_PDEATHSIG).
        proc = start(home)
        wait_until(lambda: _height(c) > h_before, 60, "height to continue after restart")
        cmt_pid = int((home / "cometbft.pid").read_text().split()[0])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: not alive(cmt_pid), 10, "orphaned cometbft to die with its parent")

        # Killing cometbft makes perpd exit non-zero (the operator's supervisor restarts the pair).
        proc = start(home)
        wait_until(lambda: _height(c) > h_before + 1, 60, "height after second restart")
        cmt_pid = int((home / "cometbft.pid").read_text().split()[0])
        os.kill(cmt_pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if cmt_pid is not None and alive(cmt_pid):
            os.kill(cmt_pid, signal.SIGKILL)


def _height(c: RpcClient) -> int:
    try:
        return c.height()
    except Exception:  # noqa: BLE001 -- not up yet
        return -1


def _height_from_store(home: pathlib.Path) -> int:
    from node.storage.leveldb import LevelDBStore

    for _ in range(50):
        try:
            s = LevelDBStore(home / "data" / "perpd.db")
        except Exception:  # noqa: BLE001 -- LevelDB lock still held for a moment
            time.sleep(0.1)
            continue
        h = s.last_height()
        s.close()
        return h
    raise AssertionError("store stayed locked")
