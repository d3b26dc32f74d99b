"""The perpd CLI offline: keyring files, exact unit conversion, one-line errors without tracebacks."""

import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from node.client.units import UnitError, quote_quantums_to_usdc, usdc_to_quote_quantums

ROOT = pathlib.Path(__file__).resolve().parent.parent


def perpd(*args, check=True):
    res = subprocess.run([sys.executable, "-m", "node.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PERPD_DEBUG": ""})
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_keys_lifecycle(tmp_path):
    home = str(tmp_path)
    added = json.loads(perpd("keys", "add", "alice", "--home", home, "-o", "json").stdout)
    assert added["address"].startswith("perp1")
    path = tmp_path / "keys" / "alice.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    shown = json.loads(perpd("keys", "show", "alice", "--home", home, "-o", "json").stdout)
    assert shown == added
    secret = perpd("keys", "export", "alice", "--home", home).stdout.strip()
    assert len(secret) == 64
    imported = json.loads(perpd("keys", "import", "alice2", secret, "--home", home, "-o", "json").stdout)
    assert imported["address"] == added["address"]
    listed = json.loads(perpd("keys", "list", "--home", home, "-o", "json").stdout)
    assert [k["name"] for k in listed] == ["alice", "alice2"]
    assert perpd("keys", "show", "alice", "--address", "--home", home).stdout.strip() == added["address"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        pytest.param(["keys", "show", "nobody"], "no key named 'nobody'", id="unknown key"),
        pytest.param(["keys", "add", "../evil"], "invalid key name", id="path traversal in key name"),
        pytest.param(["keys", "import", "k", "zz"], "64 hex characters", id="bad private key"),
        pytest.param(["tx", "bank", "send", "alice", "alice", "1", "--node", "http://127.0.0.1:9"], "cannot reach node",
                     id="node unreachable"),
        pytest.param(["tx", "bank", "send", "alice", "perp1xyz", "-5"], "must be positive", id="negative amount"),
        pytest.param(["tx", "bank", "send", "alice", "perp1xyz", "0.0000001"], "more than 6 decimals",
                     id="below one quote quantum"),
        pytest.param(["query", "bank", "balance", "nobody", "--node", "http://127.0.0.1:9"], "neither a perp1",
                     id="unknown recipient"),
        pytest.param(["localnet", "status", "--dir", "/nonexistent/ln"], "no localnet", id="no localnet"),
        pytest.param(["frobnicate"], "No such command", id="unknown command"),
        pytest.param(["init", "--chain-id", "x", "--home", "/proc/perpd-cannot-exist"], "cannot create",
                     id="init into an uncreatable home"),
        pytest.param(["init", "--chain-id", "x", "--app-state", "/etc/hostname", "--home", "{tmp}/h"], "is not JSON",
                     id="init with a non-JSON app state"),
        pytest.param(["init", "--chain-id", "", "--home", "{tmp}/h"], "--chain-id must be", id="init empty chain id"),
        pytest.param(["init", "--chain-id", "c" * 51, "--home", "{tmp}/h"], "--chain-id must be",
                     id="init chain id too long"),
        pytest.param(["query", "tx", "XYZ", "--node", "http://127.0.0.1:9"], "64 hex characters", id="bad tx hash"),
        pytest.param(["tx", "bank", "send", "alice", "alice", "1", "--nonce", "99999999999999999999"], "nonce",
                     id="nonce above uint64"),
        pytest.param(["tx", "consensus", "set-validator-power", "alice", "00" * 32, "99999999999999999999"], "POWER",
                     id="power above uint64"),
        pytest.param(["query", "oracle", "votes", "0", "--node", "http://127.0.0.1:9"], "HEIGHT", id="height 0"),
        pytest.param(["localnet", "logs", "--dir", "/nonexistent/ln", "-n", "0"], "lines", id="zero log lines"),
        pytest.param(["localnet", "up", "--dir", "{tmp}/ln", "--base-port", "70000"], "65535",
                     id="ports beyond 65535"),
        pytest.param(["localnet", "up", "--dir", "{tmp}/ln", "--validators", "0"], "at least one validator",
                     id="zero validators"),
        pytest.param(["tx", "bank", "send", "alice", "alice", "1", "--chain-id", "", "--node", "http://127.0.0.1:9"],
                     "--chain-id is empty", id="empty chain id"),
        pytest.param(["query", "bank", "balance", "PERP1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPFML97V", "--node",
                      "http://127.0.0.1:9"], "cannot reach node", id="all-uppercase bech32 is an address"),
        # Python's int() refuses over 4300 digits with its own ValueError, which the CLI printed raw (session-10 probe)
        pytest.param(["tx", "bank", "send", "alice", "alice", "1" + "0" * 4400, "--node", "http://127.0.0.1:9"],
                     "amount '100000000000000000000000…' (4401 characters) overflows uint64 quote quantums",
                     id="an amount of 4401 digits"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, args, fragment):
    perpd("keys", "add", "alice", "--home", str(tmp_path))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] in ("keys", "tx", "query"):
        args = [*args, "--home", str(tmp_path)]
    res = perpd(*args, check=False)
    assert not (tmp_path / "h").exists() and not (tmp_path / "ln").exists()  # nothing half-created
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert fragment in lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "text, quantums",
    [
        pytest.param("1", 1_000_000, id="whole"),
        pytest.param("12.5", 12_500_000, id="decimal"),
        pytest.param("0.000001", 1, id="one quantum"),
        pytest.param("18446744073709.551615", 2**64 - 1, id="uint64 max"),
        pytest.param(".5", 500_000, id="no whole digits, as sizes and prices accept"),
        pytest.param("5.", 5_000_000, id="a trailing point"),
        pytest.param("0" * 5000 + "7", 7_000_000, id="5000 leading zeros are not digits of the value"),
        pytest.param("2.5" + "0" * 5000, 2_500_000, id="nor are 5000 trailing zeros (as for sizes and prices)"),
        pytest.param("0.0000010", 1, id="a trailing zero after the 6th decimal"),
    ],
)
def test_usdc_conversion_is_exact(text, quantums):
    assert usdc_to_quote_quantums(text) == quantums
    assert usdc_to_quote_quantums(quote_quantums_to_usdc(quantums)) == quantums


@pytest.mark.parametrize("text", ["-1", "0", "0.0000000", "1e6", "abc", "1.0000001", "18446744073709.551616", "",
                                  "\u0661\u0662", "\uff15", ".", "1" + "0" * 20, "1" + "0" * 4400,
                                  "0." + "0" * 4400 + "1"])
def test_usdc_conversion_rejects(text):
    with pytest.raises(UnitError):
        usdc_to_quote_quantums(text)


@pytest.mark.parametrize("text, words", [
    pytest.param("1" + "0" * 4400, "size '100000000000000000000000…' (4401 characters) is far beyond any valid value",
                 id="4401 integer digits"),
    pytest.param("0." + "0" * 4400 + "1", "(4403 characters) has far more decimals than any valid size",
                 id="4401 decimals"),
    pytest.param("1" * 41, "is far beyond any valid value", id="41 integer digits"),
    pytest.param("0." + "0" * 40 + "1", "has far more decimals than any valid size", id="41 decimals"),
])
def test_decimals_beyond_any_value_are_refused_before_int_conversion(text, words):
    from node.client.market import MarketError, parse_decimal

    with pytest.raises(MarketError) as err:
        parse_decimal(text, "size")
    assert words in str(err.value)


@pytest.mark.parametrize("text, value", [
    pytest.param("1" * 40, "1" * 40, id="40 integer digits still parse"),
    pytest.param("1." + "0" * 5000, "1", id="5000 trailing zeros are not digits of the value"),
    pytest.param("0" * 5000 + "2.5", "2.5", id="5000 leading zeros either"),
    pytest.param(".5", "0.5", id="no whole digits"),
])
def test_decimals_parse_exactly_whatever_their_zeros(text, value):
    from decimal import Decimal

    from node.client.market import parse_decimal

    assert parse_decimal(text, "size") == Decimal(value)


def test_a_duration_of_5000_digits_is_one_clear_error():
    from node.client.market import MarketError, parse_duration_ns

    with pytest.raises(MarketError, match=r"\(5001 characters\) is far beyond any window"):
        parse_duration_ns("1" * 5000 + "d")


def test_daemon_summary_names_what_is_not_ok():
    from node.cli.main import daemon_summary

    assert daemon_summary({"status": "ok", "venues": {"okx": {"status": "ok"}}}) == "ok"
    assert daemon_summary({"status": "disabled"}) == "disabled"
    health = {"status": "degraded",
              "venues": {"okx": {"status": "down"}, "binance": {"status": "ok"}, "kraken": {"status": "degraded"}},
              "markets": {"BTC-USD": {"healthy": True}, "PEPE-USD": {"healthy": False}}}
    assert daemon_summary(health) == "degraded: venues kraken degraded, okx down; no index for PEPE-USD"


def test_a_corrupt_key_file_is_named(tmp_path):
    perpd("keys", "add", "alice", "--home", str(tmp_path))
    (tmp_path / "keys" / "broken.json").write_text("{}")
    res = perpd("keys", "list", "--home", str(tmp_path), check=False)
    assert res.returncode == 1 and "broken.json is not a perpd key" in res.stderr and "Traceback" not in res.stderr


def test_a_group_without_subcommand_prints_its_help_not_an_error():
    res = perpd("query", check=False)
    assert res.returncode == 2 and "Usage:" in res.stderr and "Error" not in res.stderr


def test_a_start_that_fails_exits_at_once_and_leaves_nothing_behind(tmp_path):
    """cometbft cannot be started while the price daemon is configured: exit 1 quickly, no pid file, no lock."""
    from node.config import load_app_config, write_app_config

    home = tmp_path / "h"
    perpd("init", "--home", str(home), "--chain-id", "t")
    cfg = load_app_config(home)
    cfg.oracle = {**cfg.oracle, "feeds_url": "http://127.0.0.1:9"}
    write_app_config(home, cfg)
    for _ in range(2):  # the second run proves the LevelDB lock and pid files were released
        res = subprocess.run([sys.executable, "-m", "node.cli.main", "start", "--home", str(home)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PERPD_COMETBFT": str(tmp_path / "no-such-cometbft")})
        assert res.returncode == 1, res.stdout + res.stderr
        assert "no-such-cometbft" in res.stderr and "Traceback" not in res.stderr
        assert not (home / "perpd.pid").exists() and not (home / "cometbft.pid").exists()


def test_localnet_pid_files_name_exactly_one_process(tmp_path):
    """A stale pid file must never make `localnet down` signal someone else's process."""
    from node import localnet as ln
    from node.procutil import start_ticks, write_pid_file

    home = tmp_path / "node1"
    home.mkdir()
    (home / "perpd.log").write_text("")
    node = {"home": str(home)}
    procs = {
        # mentions the path, but is not a node of it
        "tail": subprocess.Popen(["tail", "-f", str(home / "perpd.log")]),
        # a node of another home whose path merely starts with this one ("node1" vs "node10")
        "other": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "start", "--home",
                                   str(home) + "0"]),
        # the right command line
        "right": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "start", "--home", str(home)]),
    }
    try:
        for name in ("tail", "other"):
            write_pid_file(home / "perpd.pid", procs[name].pid)
            assert ln.node_pids(node) == {}, name
        write_pid_file(home / "perpd.pid", procs["right"].pid)
        assert ln.node_pids(node) == {"perpd": procs["right"].pid}
        # The same PID with another start time is another process (PID reuse): not ours.
        (home / "perpd.pid").write_text(f"{procs['right'].pid} {start_ticks(procs['right'].pid) + 1}\n")
        assert ln.node_pids(node) == {}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def test_a_second_signal_during_shutdown_stops_at_once(tmp_path):
    """cometbft ignoring SIGTERM gets 15 s; a second Ctrl-C / SIGTERM means now (it used to hang for good)."""
    import signal
    import time

    from node.procutil import read_pid_file

    home = tmp_path / "h"
    perpd("init", "--home", str(home), "--chain-id", "t")
    stubborn = tmp_path / "stubborn-cometbft"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM INT\nwhile true; do sleep 1; done\n")
    stubborn.chmod(0o755)
    node = subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(home)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PERPD_COMETBFT": str(stubborn)})
    child = None
    try:
        deadline = time.monotonic() + 30
        while child is None and time.monotonic() < deadline:
            child = read_pid_file(home / "cometbft.pid")
            time.sleep(0.1)
        assert child is not None
        node.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert node.poll() is None  # still giving cometbft its grace period
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=10) == 1
        deadline = time.monotonic() + 10
        while read_pid_file(home / "cometbft.pid") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert read_pid_file(home / "cometbft.pid") is None  # killed with perpd (gone or a zombie)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        if child is not None and read_pid_file(home / "cometbft.pid") == child:
            os.kill(child, signal.SIGKILL)
