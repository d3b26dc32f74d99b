"""The localnet's configuration (localnet/localnet.toml) and genesis template (localnet/genesis.json), without
starting anything: the shipped files are valid and consistent with the chain's and the simulator's defaults, and a
bad config is refused with one line naming the key."""

from __future__ import annotations

import json
import pathlib
import tomllib

import pytest

from app.clob.genesis import DEFAULT_PARAMS
from node import localnet as ln
from node.client.keys import Keyring
from node.feeds.simulator import DEFAULT_MARKETS
from node.genesis import validate_app_state


def test_shipped_config_is_the_built_in_default(monkeypatch):
    monkeypatch.delenv(ln.CONFIG_ENV, raising=False)
    assert ln.load_config(ln.DEFAULT_CONFIG) == ln.LocalnetConfig() == ln.load_config()
    assert ln.load_config().genesis == ln.DEFAULT_TEMPLATE
    cfg = ln.load_config()
    assert (cfg.timeout_commit, cfg.flush_throttle_timeout, cfg.peer_gossip_sleep_duration) == ("200ms", "10ms", "10ms")


def test_created_nodes_get_the_latency_settings(tmp_path):
    """Every node's config.toml carries the consensus and p2p latency settings (cometbft testnet writes 100 ms)."""
    manifest = ln.create(tmp_path / "ln", 2, 27_000, "kvstore", timeout_commit="150ms",
                         flush_throttle_timeout="7ms", peer_gossip_sleep_duration="9ms")
    for node in manifest["nodes"]:
        doc = tomllib.loads((pathlib.Path(node["home"]) / "config" / "config.toml").read_text())
        assert doc["consensus"]["timeout_commit"] == "150ms"
        assert doc["p2p"]["flush_throttle_timeout"] == "7ms"
        assert doc["consensus"]["peer_gossip_sleep_duration"] == "9ms"


def test_shipped_genesis_is_valid_and_funds_every_localnet_key(tmp_path):
    template = json.loads(ln.DEFAULT_TEMPLATE.read_text())
    keyring = Keyring(tmp_path / "keys")
    state = ln.localnet_app_state(template, keyring)
    validate_app_state(template["chain_id"], state)  # the app's own InitChain
    addr = {k.name: k.address for k in keyring.list()}
    assert set(addr) == {"authority", "faucet", "alice", "bob", "carol", "dave", "mm"}
    deposits = {(d["owner"], d["number"]): int(d["amount_quote_quantums"]) for d in state["subaccounts"]["deposits"]}
    assert deposits == {**{(addr[n], 0): 250_000 * 10**6 for n in ("alice", "bob", "carol", "dave")},
                        (addr["mm"], 0): 1_000_000 * 10**6}
    assert state["clob"]["params"] == DEFAULT_PARAMS
    pairs = {p["id"]: (p["step_base_quantums"], p["subticks_per_tick"], p["quantum_conversion_exponent"])
             for p in state["clob"]["clob_pairs"]}
    assert pairs == {0: ("1000000", "100000", -9), 1: ("1000000", "100000", -9), 2: ("1000000", "1000000", -9),
                     3: ("1000000", "1000000", -9)}
    # The simulator starts every market at its genesis price.
    assert ln.feeds_markets(state) == ",".join(f"{k}={v}" for k, v in DEFAULT_MARKETS.items())


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "localnet.toml"
    path.write_text(text)
    return path


def test_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "walk.csv").write_text("t_seconds,BTC-USD\n0,64000\n")
    cfg = ln.load_config(write(tmp_path, '[chain]\ngenesis = "g.json"\nvalidators = 2\n[feeds]\ncsv = "walk.csv"\n'
                                         '[market_maker]\nmarkets = ["btc-usd"]\ninterval_s = 2\nnode = 1\n'))
    assert cfg.genesis == tmp_path / "g.json" and cfg.feeds.csv == str(tmp_path / "walk.csv")
    assert cfg.validators == 2 and cfg.market_maker.markets == ("BTC-USD",) and cfg.market_maker.interval_s == 2.0


@pytest.mark.parametrize("text, message", [
    pytest.param("[chain]\nvalidator = 4\n", "unknown key chain.validator", id="a misspelt key"),
    pytest.param("[mm]\nenabled = true\n", "unknown table [mm]", id="an unknown table"),
    pytest.param("[chain]\nbase_port = true\n", "chain.base_port = True has the wrong type", id="bool for an int"),
    pytest.param("[market_maker]\nsize_usd = 1000\n", "market_maker.size_usd = 1000 has the wrong type",
                 id="size as a number, not an exact decimal string"),
    pytest.param("[market_maker]\nsize_usd = \"-5\"\n", "must be a positive decimal", id="negative size"),
    pytest.param("[market_maker]\nnode = 4\n", "market_maker.node must be a validator index 0..3", id="no such node"),
    pytest.param("[market_maker]\nmarkets = [1]\n", "list of tickers", id="markets not strings"),
    pytest.param("[feeds]\ncsv = \"nope.csv\"\n", "feeds.csv: no file", id="missing csv"),
    pytest.param("[chain\n", "is not TOML", id="not TOML"),
])
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(ln.LocalnetError, match=message.replace("[", r"\[").replace("(", r"\(")):
        ln.load_config(write(tmp_path, text))


@pytest.mark.parametrize("value, expected", [("", None), ("0", False), ("off", False), ("1", True), ("YES", True)])
def test_market_maker_switch_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(ln.MM_ENV, value)
    assert ln.mm_enabled_from_env() is expected


def test_market_maker_switch_rejects_anything_else(monkeypatch):
    monkeypatch.setenv(ln.MM_ENV, "maybe")
    with pytest.raises(ln.LocalnetError, match="PERPD_LOCALNET_MM"):
        ln.mm_enabled_from_env()


def test_market_maker_command_line(tmp_path):
    manifest = {"nodes": [{"rpc_port": 26657}, {"rpc_port": 26667}]}
    mm = ln.MarketMakerConfig(node=1, markets=("BTC-USD", "ETH-USD"), levels=2)
    args = ln.mm_command(tmp_path, manifest, mm)
    assert args[1:5] == ["-m", "node.cli.main", "mm", "run"]
    assert args[5:] == ["--node", "http://127.0.0.1:26667", "--home", str(tmp_path), "--key", "mm", "--levels", "2",
                        "--spread-bps", "10", "--step-bps", "10", "--size-usd", "1000", "--interval", "0.5",
                        "--number", "0", "--markets", "BTC-USD,ETH-USD"]
    with pytest.raises(ln.LocalnetError, match="has 2 validators"):
        ln.mm_command(tmp_path, manifest, ln.MarketMakerConfig(node=2))
