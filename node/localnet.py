"""A multi-validator localnet on 127.0.0.1: ``perpd localnet up|status|down|logs``.

Configuration: ``localnet/localnet.toml`` of the repo (another file with ``$PERPD_LOCALNET_CONFIG``):
layout, genesis template, feed scenario, market maker (docs/localnet.md). Arguments win over it.

Layout of ``<dir>`` (runtime files only):
- ``localnet.json``: manifest (chain id, ports, node ids, proxy app, feed simulator)
- ``keys/``: the funded accounts of the genesis template (``localnet/genesis.json``)
- ``node<i>/``: a full node home (CometBFT files, ``config/app.toml``,
  ``data/perpd.db``, ``perpd.log``, ``cometbft.log``, ``perpd.pid``, ``cometbft.pid``)
- ``feeds.log``, ``feeds.pid``: the venue feed simulator; ``mm.log``, ``mm.pid``: the market maker

Ports: node i uses p2p ``base_port + 10 i`` and RPC ``base_port + 10 i + 1``;
the app listens on a unix socket inside its home. ``up`` creates the network
if the folder has none, then starts every node that is not running (so it
also restarts a killed node, and ``down`` + ``up`` continues the chain).
``down`` stops exactly the PIDs recorded in the pid files, after checking each
one's command line names that node's home (the market maker first, so it can pull its quotes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable

from node.client.keys import Keyring
from node.client.rpc import RpcClient, RpcError
from node.config import (REPO_ROOT, AppConfig, edit_cometbft_config, find_cometbft, perpd_cometbft_settings,
                         write_app_config)
from node.genesis import GenesisError, build_app_state, patch_genesis, validate_app_state
from node.procutil import argv, read_pid_file, write_pid_file

CONFIG_DIR = REPO_ROOT / "localnet"
DEFAULT_CONFIG = CONFIG_DIR / "localnet.toml"
DEFAULT_TEMPLATE = CONFIG_DIR / "genesis.json"
DEFAULT_TIMEOUT_COMMIT = "200ms"
# Loopback latency: CometBFT's defaults (100 ms each) are sized for the internet. p2p.flush_throttle_timeout holds
# outgoing consensus messages up to that long before a flush; consensus.peer_gossip_sleep_duration is how long a
# gossip routine sleeps when it has nothing to send. On 127.0.0.1 each added ~100 ms per vote step (measured: the
# proposal-to-commit time of a block fell from ~220 ms to ~50 ms with both at 10 ms).
DEFAULT_FLUSH_THROTTLE = "10ms"
DEFAULT_GOSSIP_SLEEP = "10ms"
PROXY_APPS = ("perpd", "kvstore")
CONFIG_ENV = "PERPD_LOCALNET_CONFIG"  # path of the config file
MM_ENV = "PERPD_LOCALNET_MM"  # 0/off/false/no or 1/on/true/yes: overrides [market_maker] enabled
ORDERBOOK_HINT = "perpd query clob orderbook BTC-USD"


class LocalnetError(Exception):
    pass


# --- configuration (localnet/localnet.toml) ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FeedsConfig:
    """The venue feed simulator's scenario (``perpd feeds serve`` options)."""

    seed: int = 1
    noise_ppm: int = 100
    tick_ms: int = 100
    csv: str = ""  # absolute path of a price path to replay, "" = the seeded random walk


@dataclasses.dataclass(frozen=True)
class MarketMakerConfig:
    """The reference market maker (node/mm) the localnet runs: ``perpd mm run`` with these options."""

    enabled: bool = True
    key: str = "mm"
    node: int = 0  # index of the validator whose RPC it uses
    subaccount_number: int = 0
    markets: tuple[str, ...] = ()  # () = every market
    levels: int = 3
    spread_bps: int = 10
    step_bps: int = 10
    size_usd: str = "1000"
    interval_s: float = 0.5


@dataclasses.dataclass(frozen=True)
class LocalnetConfig:
    validators: int = 4
    base_port: int = 26656
    timeout_commit: str = DEFAULT_TIMEOUT_COMMIT
    flush_throttle_timeout: str = DEFAULT_FLUSH_THROTTLE
    peer_gossip_sleep_duration: str = DEFAULT_GOSSIP_SLEEP
    genesis: pathlib.Path = DEFAULT_TEMPLATE
    feeds: FeedsConfig = FeedsConfig()
    market_maker: MarketMakerConfig = MarketMakerConfig()


_TABLES = {"chain": {"validators": int, "base_port": int, "timeout_commit": str, "flush_throttle_timeout": str,
                     "peer_gossip_sleep_duration": str, "genesis": str},
           "feeds": {"seed": int, "noise_ppm": int, "tick_ms": int, "csv": str},
           "market_maker": {"enabled": bool, "key": str, "node": int, "subaccount_number": int, "markets": list,
                            "levels": int, "spread_bps": int, "step_bps": int, "size_usd": str,
                            "interval_s": (int, float)}}


def load_config(path: pathlib.Path | None = None) -> LocalnetConfig:
    """The localnet config: ``path``, else ``$PERPD_LOCALNET_CONFIG``, else localnet/localnet.toml (built-in
    defaults if that file is missing). Unknown tables or keys and wrong types are refused (LocalnetError naming
    the key); relative paths in it are relative to the file."""
    if path is None:
        path = pathlib.Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else DEFAULT_CONFIG
        if path == DEFAULT_CONFIG and not path.exists():
            return LocalnetConfig()
    path = pathlib.Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise LocalnetError(f"cannot read the localnet config {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise LocalnetError(f"localnet config {path} is not TOML: {e}") from None
    for table, values in doc.items():
        if table not in _TABLES or not isinstance(values, dict):
            raise LocalnetError(f"{path}: unknown table [{table}] (tables: {', '.join(_TABLES)})")
        for key, value in values.items():
            want = _TABLES[table].get(key)
            if want is None:
                raise LocalnetError(f"{path}: unknown key {table}.{key} (keys: {', '.join(_TABLES[table])})")
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise LocalnetError(f"{path}: {table}.{key} = {value!r} has the wrong type")
    chain, feeds, mm = doc.get("chain", {}), doc.get("feeds", {}), doc.get("market_maker", {})
    base = path.resolve().parent
    markets = mm.get("markets", [])
    if not all(isinstance(m, str) for m in markets):
        raise LocalnetError(f"{path}: market_maker.markets must be a list of tickers")
    cfg = LocalnetConfig(
        validators=chain.get("validators", LocalnetConfig.validators),
        base_port=chain.get("base_port", LocalnetConfig.base_port),
        timeout_commit=chain.get("timeout_commit", DEFAULT_TIMEOUT_COMMIT),
        flush_throttle_timeout=chain.get("flush_throttle_timeout", DEFAULT_FLUSH_THROTTLE),
        peer_gossip_sleep_duration=chain.get("peer_gossip_sleep_duration", DEFAULT_GOSSIP_SLEEP),
        genesis=(base / chain["genesis"]) if "genesis" in chain else DEFAULT_TEMPLATE,
        feeds=FeedsConfig(**{**{k: v for k, v in feeds.items() if k != "csv"},
                             "csv": str(base / feeds["csv"]) if feeds.get("csv") else ""}),
        market_maker=MarketMakerConfig(**{**{k: v for k, v in mm.items() if k not in ("markets", "interval_s")},
                                          "markets": tuple(m.upper() for m in markets),
                                          "interval_s": float(mm.get("interval_s", MarketMakerConfig.interval_s))}),
    )
    check_config(cfg, path)
    return cfg


def check_config(cfg: LocalnetConfig, where: pathlib.Path | str = "localnet config") -> None:
    f, mm = cfg.feeds, cfg.market_maker
    problems = []
    if not 0 <= f.noise_ppm <= 999_999 or not 1 <= f.tick_ms <= 60_000:
        problems.append("feeds: noise_ppm must be in 0..999999 and tick_ms in 1..60000")
    if f.csv and not pathlib.Path(f.csv).is_file():
        problems.append(f"feeds.csv: no file {f.csv}")
    if not 0 <= mm.node < cfg.validators:
        problems.append(f"market_maker.node must be a validator index 0..{cfg.validators - 1}")
    if not 1 <= mm.levels <= 100 or mm.spread_bps < 1 or mm.step_bps < 0 or mm.interval_s <= 0:
        problems.append("market_maker: need 1 <= levels <= 100, spread_bps >= 1, step_bps >= 0, interval_s > 0")
    if not 0 <= mm.subaccount_number <= 127:
        problems.append("market_maker.subaccount_number must be in 0..127")
    try:
        if not float(mm.size_usd) > 0:
            raise ValueError
    except ValueError:
        problems.append(f"market_maker.size_usd = {mm.size_usd!r} must be a positive decimal")
    if problems:
        raise LocalnetError(f"{where}: " + "; ".join(problems))


def mm_enabled_from_env() -> bool | None:
    """``$PERPD_LOCALNET_MM``: None when unset."""
    value = os.environ.get(MM_ENV, "").strip().lower()
    if not value:
        return None
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise LocalnetError(f"{MM_ENV}={value!r}: use 1/on/true/yes or 0/off/false/no")


def localnet_app_state(template: dict, keyring: Keyring) -> dict:
    """The template's app_state with its accounts created and funded (node/genesis.py build_app_state), plus each
    account's ``deposits`` ([{"number", "amount_quote_quantums"}]) as subaccount deposits from its bank balance."""
    app_state = build_app_state(template, keyring)
    deposits = []
    for acct in template.get("accounts", []):
        for dep in acct.get("deposits", []):
            deposits.append({"owner": keyring.get(acct["name"]).address, "number": int(dep.get("number", 0)),
                             "amount_quote_quantums": str(dep["amount_quote_quantums"])})
    if deposits:
        sub = app_state.setdefault("subaccounts", {})
        sub["deposits"] = [*sub.get("deposits", []), *deposits]
    return app_state


def feeds_markets(app_state: dict) -> str:
    """The simulator's ``--markets``: every genesis oracle market at its genesis price (``BTC-USD=64000,...``)."""
    from app.lib.units import format_scaled

    return ",".join(f"{m['pair']}={format_scaled(int(m['price']), int(m['exponent']))}"
                    for m in app_state.get("prices", {}).get("markets", []) if int(m.get("price", 0)) > 0)


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
    timeout_commit: str = DEFAULT_TIMEOUT_COMMIT,
    flush_throttle_timeout: str = DEFAULT_FLUSH_THROTTLE,
    peer_gossip_sleep_duration: str = DEFAULT_GOSSIP_SLEEP,
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
    app_state = localnet_app_state(template, keyring) if proxy_app == "perpd" else {}
    if proxy_app == "perpd":
        try:  # the chain's own InitChain on a scratch store: a bad template fails here, not in four node logs
            validate_app_state(chain_id, app_state)
        except GenesisError as e:
            raise LocalnetError(f"genesis template {template_path}: {e}") from None
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
                    "addr_book_strict": False, "allow_duplicate_ip": True, "pex": False,
                    "flush_throttle_timeout": flush_throttle_timeout},
            "consensus": {"timeout_propose": "1s", "timeout_commit": timeout_commit,
                          "peer_gossip_sleep_duration": peer_gossip_sleep_duration},
            "instrumentation": {"prometheus": False},
        })
        write_app_config(home, cfg)
        patch_genesis(home / "config" / "genesis.json", chain_id, app_state)
    manifest = {"chain_id": chain_id, "validators": validators, "proxy_app": proxy_app, "nodes": nodes,
                "feeds": {"port": feeds_port, "venues": feeds_venues, "markets": feeds_markets(app_state)}
                if oracle else None}
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


def start_feeds(d: pathlib.Path, manifest: dict, scenario: FeedsConfig = FeedsConfig()) -> int:
    """Start the simulator on the manifest's port and venues, with the markets at their genesis prices and the
    config's scenario (seed, noise, tick, optional CSV price path)."""
    feeds = manifest["feeds"]
    args = ["--seed", str(scenario.seed), "--noise-ppm", str(scenario.noise_ppm), "--tick-ms", str(scenario.tick_ms)]
    if feeds.get("markets"):
        args += ["--markets", feeds["markets"]]
    if scenario.csv:
        args += ["--csv", scenario.csv]
    with open(d / "feeds.log", "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli.main", "feeds", "serve", "--host", "127.0.0.1",
             "--port", str(feeds["port"]), "--venues", ",".join(feeds["venues"]), *args],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=str(REPO_ROOT),
        )
    write_pid_file(d / "feeds.pid", proc.pid)
    return proc.pid


def mm_pid(d: pathlib.Path) -> int | None:
    """PID of the localnet's market maker, if it is running (``perpd mm run ... --home <dir>``, same start time)."""
    pid = read_pid_file(d / "mm.pid")
    if pid is None:
        return None
    args = argv(pid)
    ours = "mm" in args and "run" in args and any(a == "--home" and b == str(d) for a, b in zip(args, args[1:]))
    return pid if ours else None


def mm_command(d: pathlib.Path, manifest: dict, mm: MarketMakerConfig) -> list[str]:
    """``perpd mm run`` against validator ``mm.node``'s RPC, with the keyring of the localnet."""
    if not 0 <= mm.node < len(manifest["nodes"]):
        raise LocalnetError(f"market_maker.node = {mm.node}, but this localnet has {len(manifest['nodes'])} validators")
    args = [sys.executable, "-m", "node.cli.main", "mm", "run", "--node", rpc_url(manifest["nodes"][mm.node]),
            "--home", str(d), "--key", mm.key, "--levels", str(mm.levels), "--spread-bps", str(mm.spread_bps),
            "--step-bps", str(mm.step_bps), "--size-usd", mm.size_usd, "--interval", str(mm.interval_s),
            "--number", str(mm.subaccount_number)]
    if mm.markets:
        args += ["--markets", ",".join(mm.markets)]
    return args


def start_mm(d: pathlib.Path, manifest: dict, mm: MarketMakerConfig) -> int:
    with open(d / "mm.log", "ab") as logf:
        proc = subprocess.Popen(mm_command(d, manifest, mm), stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(REPO_ROOT))
    write_pid_file(d / "mm.pid", proc.pid)
    return proc.pid


def stop_mm(d: pathlib.Path, timeout_s: float = 5.0) -> int | None:
    """SIGTERM the market maker and wait (it pulls its quotes on the way out), SIGKILL after ``timeout_s``."""
    pid = mm_pid(d)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while mm_pid(d) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if mm_pid(d) is not None:
            _signal(pid, signal.SIGKILL)
    (d / "mm.pid").unlink(missing_ok=True)
    return pid


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
    timeout_commit: str | None = None, template_path: pathlib.Path | None = None,
    config_path: pathlib.Path | None = None, mm: bool | None = None,
) -> dict:
    """Create the localnet in ``d`` if it does not exist, start whatever is not running, wait for ``wait_height``,
    then start the market maker (if enabled and the genesis funds its key; ``mm=False`` stops a running one).

    Settings left as None come from the config (:func:`load_config`; the market maker's on/off also from
    ``$PERPD_LOCALNET_MM``). For an existing localnet, layout arguments left as None mean "as created"; one that
    differs is an error (changing the layout of a chain with data would need a reset).
    """
    d = d.resolve()
    cfg = load_config(config_path)
    say = progress or (lambda _line: None)
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
        validators = cfg.validators if validators is None else validators
        base_port = cfg.base_port if base_port is None else base_port
        proxy_app = proxy_app or "perpd"
        check_layout(validators, base_port, proxy_app)
        say(f"creating a {validators}-validator localnet in {d}")
        manifest = create(d, validators, base_port, proxy_app, template_path or cfg.genesis,
                          timeout_commit or cfg.timeout_commit, cfg.flush_throttle_timeout,
                          cfg.peer_gossip_sleep_duration)
    if manifest.get("feeds") and feeds_pid(d, manifest) is None:
        start_feeds(d, manifest, cfg.feeds)
        say(f"started the venue feed simulator on {feeds_url(manifest)}")
    started = []
    for node in manifest["nodes"]:
        if not is_running(manifest, node):
            start_node(manifest, node)
            started.append(node["index"])
    say(f"started nodes {started}" if started else "all nodes already running")
    wait_for_height(manifest, wait_height, timeout_s, progress)
    _supervise_mm(d, manifest, cfg.market_maker, mm, say)
    return manifest


def _supervise_mm(d: pathlib.Path, manifest: dict, cfg: MarketMakerConfig, enabled: bool | None,
                  say: Callable[[str], None]) -> None:
    """Start the market maker if it should run and does not; stop it if it is switched off."""
    if enabled is None:
        enabled = mm_enabled_from_env()
    if enabled is None:
        enabled = cfg.enabled
    if manifest["proxy_app"] != "perpd":
        return
    if not enabled:
        pid = stop_mm(d)
        if pid is not None:
            say(f"stopped the market maker (pid {pid})")
        return
    if not (d / "keys" / f"{cfg.key}.json").exists():
        say(f"market maker not started: no key {cfg.key!r} in {d / 'keys'} (the genesis template does not fund it)")
        return
    if mm_pid(d) is None:
        start_mm(d, manifest, cfg)
        say(f"started the market maker (key {cfg.key}, {cfg.levels} levels per side on "
            f"{', '.join(cfg.markets) or 'every market'}; log {d / 'mm.log'})")
    url = rpc_url(manifest["nodes"][0])
    say(f"order book: {ORDERBOOK_HINT}" + ("" if url == "http://127.0.0.1:26657" else f" --node {url}"))


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
    mpid = stop_mm(d)  # first, while the nodes still take its cancels
    if mpid is not None:
        signalled.append(mpid)
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
    # Each node answered at its own latest height: compare them at one height, the lowest any node reached (the
    # header of block H carries the app hash after block H - 1, the same on every node that has block H).
    heights = [r["height"] for r in rows if r["height"]]
    common = min(heights) if heights else None
    for node, row in zip(manifest["nodes"], rows):
        row.update(common_height=common, app_hash_at_common=None)
        if common is None or row["height"] is None or common < 2:
            continue
        try:
            with RpcClient(rpc_url(node), timeout_s=2) as c:
                row["app_hash_at_common"] = c.block(common)["block"]["header"]["app_hash"]
        except (RpcError, KeyError, ValueError, TypeError):
            pass
    return rows
