"""A multi-validator localnet on 127.0.0.1: ``perpd localnet up|status|down|logs``.

Layout of ``<dir>``:
- ``localnet.json``: manifest (chain id, ports, node ids, proxy app)
- ``keys/``: the funded accounts from ``genesis/localnet.json``
- ``node<i>/``: a full node home (CometBFT files, ``config/app.toml``,
  ``data/perpd.db``, ``perpd.log``, ``cometbft.log``, ``perpd.pid``, ``cometbft.pid``)

Ports: node i uses p2p ``base_port + 10 i`` and RPC ``base_port + 10 i + 1``;
the app listens on a unix socket inside its home. ``up`` creates the network
if the folder has none, then starts every node that is not running (so it
also restarts a killed node, and ``down`` + ``up`` continues the chain).
``down`` stops exactly the PIDs recorded in the pid files, after checking each
one's command line names that node's home.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from node.client.keys import Keyring
from node.client.rpc import RpcClient, RpcError
from node.config import (REPO_ROOT, AppConfig, edit_cometbft_config, find_cometbft, perpd_cometbft_settings,
                         write_app_config)
from node.genesis import build_app_state, patch_genesis
from node.procutil import argv, read_pid_file, write_pid_file

DEFAULT_TEMPLATE = REPO_ROOT / "genesis" / "localnet.json"
PROXY_APPS = ("perpd", "kvstore")


class LocalnetError(Exception):
    pass


def manifest_path(d: pathlib.Path) -> pathlib.Path:
    return d / "localnet.json"


def load_manifest(d: pathlib.Path) -> dict:
    p = manifest_path(d)
    if not p.exists():
        raise LocalnetError(f"no localnet in {d} (run `perpd localnet up --dir {d}`)")
    return json.loads(p.read_text())


def rpc_url(node: dict) -> str:
    return f"http://127.0.0.1:{node['rpc_port']}"


def create(
    d: pathlib.Path,
    validators: int,
    base_port: int,
    proxy_app: str = "perpd",
    template_path: pathlib.Path = DEFAULT_TEMPLATE,
    timeout_commit: str = "500ms",
) -> dict:
    check_layout(validators, base_port, proxy_app)
    d.mkdir(parents=True, exist_ok=True)
    d = d.resolve()
    cmt = find_cometbft()
    subprocess.run(
        [cmt, "testnet", "--v", str(validators), "--o", str(d), "--populate-persistent-peers=false",
         "--starting-ip-address", "127.0.0.1"],
        check=True, capture_output=True,
    )
    template = json.loads(template_path.read_text())
    chain_id = template.get("chain_id", "perpchain-localnet")
    oracle = dict(template.get("oracle", {}))
    feeds_venues = [*oracle.get("venues", []), *oracle.pop("extra_simulated_venues", [])]
    feeds_port = base_port + 10 * validators + 2
    if proxy_app == "perpd" and feeds_venues:
        oracle["feeds_url"] = f"http://127.0.0.1:{feeds_port}"
    else:
        oracle = {}
    keyring = Keyring(d / "keys")
    app_state = build_app_state(template, keyring) if proxy_app == "perpd" else {}
    nodes = []
    for i in range(validators):
        home = d / f"node{i}"
        node_id = subprocess.run(
            [cmt, "show-node-id", "--home", str(home)], check=True, capture_output=True, text=True
        ).stdout.strip()
        nodes.append({
            "index": i, "home": str(home), "node_id": node_id,
            "p2p_port": base_port + 10 * i, "rpc_port": base_port + 10 * i + 1,
        })
    for node in nodes:
        home = pathlib.Path(node["home"])
        peers = ",".join(f"{n['node_id']}@127.0.0.1:{n['p2p_port']}" for n in nodes if n is not node)
        cfg = AppConfig.default(home)
        cfg.oracle = dict(oracle)
        edit_cometbft_config(home, {
            **perpd_cometbft_settings(),
            "": {"proxy_app": cfg.abci_address if proxy_app == "perpd" else "kvstore",
                 "moniker": f"node{node['index']}", "log_level": "info"},
            "rpc": {"laddr": f"tcp://127.0.0.1:{node['rpc_port']}"},
            "p2p": {"laddr": f"tcp://127.0.0.1:{node['p2p_port']}", "persistent_peers": peers,
                    "addr_book_strict": False, "allow_duplicate_ip": True, "pex": False},
            "consensus": {"timeout_propose": "1s", "timeout_commit": timeout_commit},
            "instrumentation": {"prometheus": False},
        })
        write_app_config(home, cfg)
        patch_genesis(home / "config" / "genesis.json", chain_id, app_state)
    manifest = {"chain_id": chain_id, "validators": validators, "proxy_app": proxy_app, "nodes": nodes,
                "feeds": {"port": feeds_port, "venues": feeds_venues} if oracle else None}
    manifest_path(d).write_text(json.dumps(manifest, indent=2))
    return manifest


def _is_node_process(pid: int, home: str) -> bool:
    """``perpd start --home HOME`` or ``cometbft start --home HOME`` exactly (not any process naming the path)."""
    args = argv(pid)
    return "start" in args and any(a == "--home" and b == home for a, b in zip(args, args[1:]))


def node_pids(node: dict) -> dict[str, int]:
    """The recorded processes of a node that are alive and really ours (same PID, start time and command)."""
    home = pathlib.Path(node["home"])
    out = {}
    for name in ("perpd", "cometbft"):
        pid = read_pid_file(home / f"{name}.pid")
        if pid is not None and _is_node_process(pid, node["home"]):
            out[name] = pid
    return out


def is_running(manifest: dict, node: dict) -> bool:
    key = "perpd" if manifest["proxy_app"] == "perpd" else "cometbft"
    return key in node_pids(node)


def start_node(manifest: dict, node: dict) -> int:
    home = pathlib.Path(node["home"])
    env = dict(os.environ)
    # Every node gets a different hash seed: set-order bugs would split the app hash at once.
    env["PYTHONHASHSEED"] = str(node["index"] + 1)
    if manifest["proxy_app"] == "perpd":
        with open(home / "perpd.log", "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli.main", "start", "--home", str(home)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=str(REPO_ROOT),
            )
        write_pid_file(home / "perpd.pid", proc.pid)
    else:
        with open(home / "cometbft.log", "ab") as logf:
            proc = subprocess.Popen(
                [find_cometbft(), "start", "--home", str(home)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        write_pid_file(home / "cometbft.pid", proc.pid)
    return proc.pid


def feeds_pid(d: pathlib.Path, manifest: dict) -> int | None:
    """PID of the localnet's venue feed simulator, if it is running."""
    feeds = manifest.get("feeds")
    pid = read_pid_file(d / "feeds.pid")
    if not feeds or pid is None:
        return None
    args = argv(pid)
    ours = "feeds" in args and "serve" in args and any(a == "--port" and b == str(feeds["port"])
                                                       for a, b in zip(args, args[1:]))
    return pid if ours else None


def start_feeds(d: pathlib.Path, manifest: dict) -> int:
    feeds = manifest["feeds"]
    with open(d / "feeds.log", "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli.main", "feeds", "serve", "--host", "127.0.0.1",
             "--port", str(feeds["port"]), "--venues", ",".join(feeds["venues"]), "--seed", "1"],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=str(REPO_ROOT),
        )
    write_pid_file(d / "feeds.pid", proc.pid)
    return proc.pid


def feeds_url(manifest: dict) -> str | None:
    feeds = manifest.get("feeds")
    return f"http://127.0.0.1:{feeds['port']}" if feeds else None


def node_heights(manifest: dict) -> list[int | None]:
    out: list[int | None] = []
    for node in manifest["nodes"]:
        try:
            with RpcClient(rpc_url(node), timeout_s=2) as c:
                out.append(c.height())
        except (RpcError, KeyError, ValueError):
            out.append(None)
    return out


def wait_for_height(
    manifest: dict, height: int, timeout_s: float = 180, progress: Callable[[str], None] | None = None,
    nodes: list[int] | None = None,
) -> list[int | None]:
    deadline = time.monotonic() + timeout_s
    want = nodes if nodes is not None else list(range(len(manifest["nodes"])))
    last = ""
    while True:
        hs = node_heights(manifest)
        line = "  ".join(f"node{i}: {'-' if h is None else h}" for i, h in enumerate(hs))
        if progress and line != last:
            progress(f"waiting for height >= {height}:  {line}")
            last = line
        if all(hs[i] is not None and hs[i] >= height for i in want):
            return hs
        if time.monotonic() > deadline:
            raise LocalnetError(f"localnet did not reach height {height} within {timeout_s:.0f}s ({line}); "
                                f"see the node logs (perpd localnet logs)")
        for i in want:
            node = manifest["nodes"][i]
            if not is_running(manifest, node) and time.monotonic() > deadline - timeout_s + 5:
                raise LocalnetError(f"node{i} is not running; see {node['home']}/perpd.log and cometbft.log")
        time.sleep(0.5)


DEFAULT_VALIDATORS = 4
DEFAULT_BASE_PORT = 26656


def check_layout(validators: int, base_port: int, proxy_app: str) -> None:
    """Reject a layout before anything is created: counts, app, and every port inside 1024..65535."""
    if proxy_app not in PROXY_APPS:
        raise LocalnetError(f"proxy app must be one of {PROXY_APPS}")
    if validators < 1:
        raise LocalnetError("need at least one validator")
    highest = base_port + 10 * validators + 2  # the venue simulator's port, above every node's
    if base_port < 1024 or highest > 65535:
        raise LocalnetError(f"base port {base_port} with {validators} validators needs ports {base_port}..{highest}; "
                            f"they must lie within 1024..65535")


def up(
    d: pathlib.Path, validators: int | None = None, base_port: int | None = None, proxy_app: str | None = None,
    wait_height: int = 3, timeout_s: float = 180, progress: Callable[[str], None] | None = None,
    timeout_commit: str = "500ms", template_path: pathlib.Path = DEFAULT_TEMPLATE,
) -> dict:
    """Create the localnet in ``d`` if it does not exist, start whatever is not running, wait for ``wait_height``.

    For an existing localnet, arguments left as None mean "as created"; one that differs is an error (changing the
    layout of a chain with data would need a reset).
    """
    d = d.resolve()
    if manifest_path(d).exists():
        manifest = load_manifest(d)
        have = {"validators": manifest["validators"], "base port": manifest["nodes"][0]["p2p_port"],
                "proxy app": manifest["proxy_app"]}
        asked = {"validators": validators, "base port": base_port, "proxy app": proxy_app}
        for what, value in asked.items():
            if value is not None and value != have[what]:
                raise LocalnetError(
                    f"{d} was created with {what} {have[what]}, not {value}; omit the flag to restart it as it is, "
                    f"or `perpd localnet down --dir {d} --reset` (deletes its chain data) to create a new one"
                )
    else:
        validators = DEFAULT_VALIDATORS if validators is None else validators
        base_port = DEFAULT_BASE_PORT if base_port is None else base_port
        proxy_app = proxy_app or "perpd"
        check_layout(validators, base_port, proxy_app)
        if progress:
            progress(f"creating a {validators}-validator localnet in {d}")
        manifest = create(d, validators, base_port, proxy_app, template_path, timeout_commit)
    if manifest.get("feeds") and feeds_pid(d, manifest) is None:
        start_feeds(d, manifest)
        if progress:
            progress(f"started the venue feed simulator on {feeds_url(manifest)}")
    started = []
    for node in manifest["nodes"]:
        if not is_running(manifest, node):
            start_node(manifest, node)
            started.append(node["index"])
    if progress:
        progress(f"started nodes {started}" if started else "all nodes already running")
    wait_for_height(manifest, wait_height, timeout_s, progress)
    return manifest


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone (perpd's SIGTERM handler stops its cometbft child itself)


def down(d: pathlib.Path, reset: bool = False, timeout_s: float = 30) -> list[int]:
    """Stop every recorded process of the localnet; returns the PIDs signalled."""
    d = d.resolve()
    manifest = load_manifest(d)
    signalled = []
    for node in manifest["nodes"]:
        pids = node_pids(node)
        # perpd stops its own cometbft child on SIGTERM; signal both in case either is orphaned.
        for pid in pids.values():
            _signal(pid, signal.SIGTERM)
            signalled.append(pid)
    fpid = feeds_pid(d, manifest)
    if fpid is not None:
        _signal(fpid, signal.SIGTERM)
        signalled.append(fpid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (any(node_pids(n) for n in manifest["nodes"]) or feeds_pid(d, manifest)):
        time.sleep(0.2)
    for node in manifest["nodes"]:
        for pid in node_pids(node).values():
            _signal(pid, signal.SIGKILL)
    fpid = feeds_pid(d, manifest)
    if fpid is not None:
        _signal(fpid, signal.SIGKILL)
    (d / "feeds.pid").unlink(missing_ok=True)
    for node in manifest["nodes"]:
        for name in ("perpd.pid", "cometbft.pid"):
            (pathlib.Path(node["home"]) / name).unlink(missing_ok=True)
    if reset:
        shutil.rmtree(d)
    return signalled


def status(d: pathlib.Path) -> list[dict]:
    manifest = load_manifest(d.resolve())
    rows = []
    for node in manifest["nodes"]:
        row = {"node": node["index"], "rpc": rpc_url(node), "running": is_running(manifest, node),
               "pids": node_pids(node), "height": None, "app_hash": None, "catching_up": None}
        try:
            with RpcClient(rpc_url(node), timeout_s=2) as c:
                st = c.status()["sync_info"]
            row.update(height=int(st["latest_block_height"]), app_hash=st["latest_app_hash"],
                       catching_up=st["catching_up"])
        except (RpcError, KeyError, ValueError):
            pass
        rows.append(row)
    return rows
