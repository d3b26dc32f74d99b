"""The exchange's command line: exact human-unit conversion (hand-worked tables), one-line errors naming the nearest
valid values, and the commands end to end in process -- the tx bytes a command signs go through CheckTx and a block
of a real Application (tests.helpers.Replica), and the queries read that chain."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
from decimal import Decimal

import pytest

from app.lib.math import UINT64_MAX
from node.cli import common as cli_common
from node.client.keys import Keyring
from node.client.market import (
    Market,
    MarketError,
    base_quantums_to_size,
    find_market,
    format_duration_ns,
    format_rfc3339_ns,
    fraction_to_ppm,
    markets_from_query,
    notional_usdc,
    parse_duration_ns,
    parse_rfc3339_ns,
    price_to_subticks,
    size_to_base_quantums,
    subticks_to_price,
)
from node.client.rpc import RpcError
from node.client.txbuilder import tx_hash
from tests.exchange_helpers import exchange_app_state
from tests.helpers import ADDRS, BLOCK_INTERVAL_NS, CHAIN_ID, GENESIS_TIME_NS, KEYS, Replica

ROOT = pathlib.Path(__file__).resolve().parent.parent

# BTC-USD as in tests/exchange_helpers.py: 1 base quantum = 1e-10 BTC, step 1e6 = 0.0001 BTC;
# subticks = USD x 10^(6 - 10 + 9) = USD x 1e5, tick 1e5 subticks = 1 USD.
BTC = Market("BTC-USD", perpetual_id=0, clob_pair_id=0, atomic_resolution=-10, quantum_conversion_exponent=-9,
             step_base_quantums=1_000_000, subticks_per_tick=100_000)
# ETH-USD: 1 base quantum = 1e-9 ETH, step 1e6 = 0.001 ETH; subticks = USD x 10^(6 - 9 + 9) = USD x 1e6,
# tick 1e5 subticks = 0.1 USD.
ETH = Market("ETH-USD", perpetual_id=1, clob_pair_id=1, atomic_resolution=-9, quantum_conversion_exponent=-9,
             step_base_quantums=1_000_000, subticks_per_tick=100_000)
# A PEPE-like market: 1 base quantum = 10 PEPE, step 1e5 = 1,000,000 PEPE; subticks = USD x 10^(6 + 1 + 15)
# = USD x 1e22, tick 1e6 subticks = 1e-16 USD; uint64 subticks end at 0.0018446744073709551615 USD.
PEPE = Market("PEPE-USD", perpetual_id=7, clob_pair_id=7, atomic_resolution=1, quantum_conversion_exponent=-15,
              step_base_quantums=100_000, subticks_per_tick=1_000_000)


# --- conversions -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "market, size, base_quantums",
    [
        pytest.param(BTC, "0.25", 2_500_000_000, id="BTC quarter coin = 0.25 x 1e10"),
        pytest.param(BTC, "0.0001", 1_000_000, id="BTC one step"),
        pytest.param(BTC, "1", 10_000_000_000, id="BTC one coin"),
        pytest.param(BTC, ".5", 5_000_000_000, id="BTC leading dot"),
        pytest.param(BTC, "0.250000000", 2_500_000_000, id="BTC trailing zeros beyond a quantum are fine"),
        pytest.param(BTC, "123456.7891", 1_234_567_891_000_000, id="BTC many digits stay exact"),
        pytest.param(ETH, "1.5", 1_500_000_000, id="ETH 1.5 coins = 1.5 x 1e9"),
        pytest.param(ETH, "0.001", 1_000_000, id="ETH one step"),
        pytest.param(PEPE, "1000000", 100_000, id="PEPE one step = 1e6 coins / 10 per quantum"),
        pytest.param(PEPE, "25000000", 2_500_000, id="PEPE 25 steps"),
    ],
)
def test_size_to_base_quantums_is_exact(market, size, base_quantums):
    assert size_to_base_quantums(market, size) == base_quantums
    assert size_to_base_quantums(market, Decimal(size)) == base_quantums
    assert size_to_base_quantums(market, base_quantums_to_size(market, base_quantums)) == base_quantums


@pytest.mark.parametrize(
    "market, price, subticks",
    [
        pytest.param(BTC, "64250", 6_425_000_000, id="BTC 64250 USD = 64250 x 1e5"),
        pytest.param(BTC, "64250.00", 6_425_000_000, id="BTC trailing zeros"),
        pytest.param(BTC, "1", 100_000, id="BTC one tick"),
        pytest.param(ETH, "3000.1", 3_000_100_000, id="ETH 3000.1 USD = 3000.1 x 1e6"),
        pytest.param(ETH, "0.1", 100_000, id="ETH one tick"),
        pytest.param(PEPE, "0.0000123", 123 * 10**15, id="PEPE 1.23e-5 USD = 1.23e-5 x 1e22"),
        pytest.param(PEPE, "0.0000000000000001", 1_000_000, id="PEPE one tick = 1e-16 USD"),
        pytest.param(PEPE, "0.0018446744073709", 18_446_744_073_709_000_000, id="PEPE largest tick multiple in uint64"),
    ],
)
def test_price_to_subticks_is_exact(market, price, subticks):
    assert price_to_subticks(market, price) == subticks
    assert price_to_subticks(market, subticks_to_price(market, subticks)) == subticks


def test_human_text_of_chain_integers():
    assert base_quantums_to_size(BTC, 2_500_000_000) == "0.25"
    assert base_quantums_to_size(BTC, -1_000_000) == "-0.0001"
    assert base_quantums_to_size(PEPE, 100_000) == "1000000"
    assert subticks_to_price(BTC, 6_425_000_000) == "64250"
    assert subticks_to_price(PEPE, 123 * 10**15) == "0.0000123"
    # 0.25 BTC at 64250 USD = 16062.5 USDC: quote quantums = 2.5e9 x 6.425e9 x 1e-9 = 16_062_500_000
    assert notional_usdc(BTC, 2_500_000_000, 6_425_000_000) == "16062.5"


@pytest.mark.parametrize(
    "convert, market, text, message",
    [
        pytest.param(size_to_base_quantums, BTC, "0.00015",
                     "size 0.00015 BTC is not a multiple of the step 0.0001 BTC; nearest valid: 0.0001 or 0.0002",
                     id="BTC size between two steps"),
        pytest.param(size_to_base_quantums, BTC, "0.00005",
                     "size 0.00005 BTC is not a multiple of the step 0.0001 BTC; nearest valid: 0.0001",
                     id="BTC size below one step names only the step"),
        pytest.param(size_to_base_quantums, BTC, "0.00000000001",
                     "size 0.00000000001 BTC is not a multiple of the step 0.0001 BTC; nearest valid: 0.0001",
                     id="BTC size finer than one base quantum"),
        pytest.param(size_to_base_quantums, ETH, "0.0015",
                     "size 0.0015 ETH is not a multiple of the step 0.001 ETH; nearest valid: 0.001 or 0.002",
                     id="ETH size between two steps"),
        pytest.param(size_to_base_quantums, PEPE, "15",
                     "size 15 PEPE is not a multiple of the step 1000000 PEPE; nearest valid: 1000000",
                     id="PEPE size of 1.5 base quantums"),
        pytest.param(size_to_base_quantums, PEPE, "1500000",
                     "size 1500000 PEPE is not a multiple of the step 1000000 PEPE; nearest valid: 1000000 or 2000000",
                     id="PEPE size between two steps"),
        pytest.param(size_to_base_quantums, BTC, "0", "size must be positive, got 0 BTC (the step is 0.0001 BTC)",
                     id="zero size"),
        pytest.param(size_to_base_quantums, BTC, "500000000",
                     "size 500000000 BTC is above the largest order size 461168601.8427 BTC",
                     id="BTC size beyond 2^62 base quantums"),
        pytest.param(price_to_subticks, BTC, "64250.5",
                     "price 64250.5 USD is not a multiple of the tick 1 USD; nearest valid: 64250 or 64251",
                     id="BTC price between two ticks"),
        pytest.param(price_to_subticks, BTC, "0.5",
                     "price 0.5 USD is not a multiple of the tick 1 USD; nearest valid: 1",
                     id="BTC price below a tick"),
        pytest.param(price_to_subticks, ETH, "3000.05",
                     "price 3000.05 USD is not a multiple of the tick 0.1 USD; nearest valid: 3000 or 3000.1",
                     id="ETH price between two ticks"),
        pytest.param(price_to_subticks, PEPE, "0.00001230000000000005",
                     "price 0.00001230000000000005 USD is not a multiple of the tick 0.0000000000000001 USD; "
                     "nearest valid: 0.0000123 or 0.0000123000000001", id="PEPE price between two ticks"),
        pytest.param(price_to_subticks, PEPE, "0.01",
                     "price 0.01 USD is above the largest price this market can express (0.0018446744073709 USD)",
                     id="PEPE price beyond uint64 subticks"),
        pytest.param(price_to_subticks, BTC, "0", "price must be positive, got 0 USD (the tick is 1 USD)",
                     id="zero price"),
    ],
)
def test_off_step_and_off_tick_values_name_the_nearest_valid_ones(convert, market, text, message):
    with pytest.raises(MarketError) as err:
        convert(market, text)
    assert str(err.value) == message


@pytest.mark.parametrize("text", ["-1", "1e3", "abc", "NaN", "Infinity", "", "1.2.3", "\u0661\u0662", "\uff15", "0x10",
                                  " ", "+1"])
def test_only_plain_decimals_are_numbers(text):
    for convert in (size_to_base_quantums, price_to_subticks):
        with pytest.raises(MarketError):
            convert(BTC, text)


def test_a_market_is_found_by_ticker_or_id_and_a_typo_lists_the_markets():
    markets = [BTC, ETH, PEPE]
    assert find_market(markets, "btc-usd") is BTC
    assert find_market(markets, "1") is ETH
    with pytest.raises(MarketError) as err:
        find_market(markets, "BTC-USDT")
    assert str(err.value) == "no market 'BTC-USDT'; markets: BTC-USD, ETH-USD, PEPE-USD"


@pytest.mark.parametrize(
    "text, ns",
    [
        pytest.param("90s", 90 * 10**9, id="seconds"),
        pytest.param("10m", 600 * 10**9, id="minutes"),
        pytest.param("2h", 7_200 * 10**9, id="hours"),
        pytest.param("1d", 86_400 * 10**9, id="days"),
        pytest.param("1h30m", 5_400 * 10**9, id="combined"),
        pytest.param("95D", 95 * 86_400 * 10**9, id="upper case unit"),
        pytest.param("1d2h3m4s", (86_400 + 7_200 + 180 + 4) * 10**9, id="every unit once, largest first"),
        pytest.param("1.5s", 1_500_000_000, id="fraction of a second"),
        pytest.param("0.000000001s", 1, id="one nanosecond"),
        pytest.param("1.5h", 5_400 * 10**9, id="fraction of an hour"),
        pytest.param("0.25d", 21_600 * 10**9, id="fraction of a day"),
        pytest.param("1m0.5s", 60_500_000_000, id="fraction in the last part"),
        pytest.param("1.123456789s", 1_123_456_789, id="nine digits"),
    ],
)
def test_durations(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("ns", [1, 999_999_999, 1_500_000_000, 60 * 10**9, 90 * 10**9 + 1, 95 * 86_400 * 10**9,
                                9_223_372_036_854_775_807])
def test_printed_durations_read_back(ns):
    """What ``query clob params`` prints (format_duration_ns, e.g. '1.5s') is what set-clob-limits accepts."""
    assert parse_duration_ns(format_duration_ns(ns)) == ns


@pytest.mark.parametrize("text", ["", "10", "10x", "-5m", "0s", "0.0s", "m", "10 m", "1d1d", "30m1h", "1h1h30m",
                                  ".5s", "1.s", "1.5.0s", "1,5s", "1.0000000001s", "0.0000000001s"])
def test_bad_durations(text):
    with pytest.raises(MarketError):
        parse_duration_ns(text)


def test_a_negative_duration_says_it_must_be_positive():
    with pytest.raises(MarketError, match=r"^duration '-5m' must be positive: it counts forward from the latest block "
                                          r"time$"):
        parse_duration_ns("-5m")


@pytest.mark.parametrize(
    "text, ns",
    [
        pytest.param("2023-11-14T22:13:20Z", 1_700_000_000 * 10**9, id="whole seconds"),
        pytest.param("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789, id="nanoseconds, as CometBFT"),
        pytest.param("2023-11-14T22:13:20.5Z", 1_700_000_000_500_000_000, id="short fraction"),
        pytest.param("2023-11-14T23:13:20.000000001+01:00", 1_700_000_000_000_000_001, id="offset"),
    ],
)
def test_block_times_are_read_exactly(text, ns):
    assert parse_rfc3339_ns(text) == ns
    assert parse_rfc3339_ns(format_rfc3339_ns(ns)) == ns


@pytest.mark.parametrize(
    "text, ppm",
    [pytest.param("0.05", 50_000, id="5 %"), pytest.param("0.000001", 1, id="one ppm"),
     pytest.param("0.999999", 999_999, id="just below 1")],
)
def test_slippage_fraction_to_ppm(text, ppm):
    assert fraction_to_ppm(text, "slippage") == ppm


@pytest.mark.parametrize("text", ["0", "1", "1.5", "0.0000001", "5%", "-0.1"])
def test_bad_slippage(text):
    with pytest.raises(MarketError):
        fraction_to_ppm(text, "slippage")


# --- the commands in process, against a real Application -----------------------------------------------------------

def rfc3339(ns: int) -> str:
    import datetime

    seconds, frac = divmod(ns, 10**9)
    whole = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{frac:09d}Z"  # CometBFT's RFC 3339 with nanoseconds


def cometbft_events(events) -> list[dict]:
    return [{"type": e.type, "attributes": [{"key": k, "value": v, "index": True} for k, v in e.attributes]}
            for e in events]


class FakeNode:
    """CometBFT's JSON-RPC as node.client.rpc.RpcClient exposes it, answered by an in-process Replica: a broadcast
    runs CheckTx, waiting for a tx puts every pending tx into the next block (FinalizeBlock + Commit)."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.pending: list[bytes] = []
        self.broadcasts: list[bytes] = []
        self.results: dict[str, dict] = {}
        self.blocks: dict[int, tuple[list[bytes], object]] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def close(self) -> None:
        pass

    def height(self) -> int:
        return self.replica.app.info()[0]

    def status(self) -> dict:
        h = self.height()
        return {"node_info": {"network": CHAIN_ID, "moniker": "fake"},
                "sync_info": {"latest_block_height": str(h), "latest_block_time": rfc3339(self.block_time_ns(h)),
                              "latest_app_hash": "", "catching_up": False}}

    @staticmethod
    def block_time_ns(height: int) -> int:
        return GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS  # Replica.block's clock

    def chain_id(self) -> str:
        return CHAIN_ID

    def query_json(self, path: str) -> dict:
        res = self.replica.app.query(path, b"")
        if res.code != 0:
            raise RpcError(f"query {path}: {res.log}")
        return json.loads(res.value)

    def query_json_at(self, path: str) -> tuple[int, dict]:
        return self.height(), self.query_json(path)

    def broadcast_tx_sync(self, tx: bytes) -> dict:
        self.broadcasts.append(tx)
        res = self.replica.app.check_tx(tx)
        if res.code == 0:
            self.pending.append(tx)
        return {"code": res.code, "codespace": res.codespace, "log": res.log, "hash": tx_hash(tx)}

    def commit_block(self) -> int:
        txs, self.pending = self.pending, []
        result = self.replica.block(txs)
        height = self.height()
        self.blocks[height] = (txs, result)
        for tx, r in zip(txs, result.tx_results):
            self.results[tx_hash(tx)] = {"hash": tx_hash(tx), "height": str(height), "tx_result": {
                "code": r.code, "codespace": r.codespace, "log": r.log, "events": cometbft_events(r.events)}}
        return height

    def tx(self, hash_hex: str) -> dict | None:
        return self.results.get(hash_hex)

    def wait_tx(self, hash_hex: str) -> dict:
        if hash_hex not in self.results and self.pending:
            self.commit_block()
        if hash_hex not in self.results:
            raise RpcError(f"tx {hash_hex} not committed within 30s")
        return self.results[hash_hex]

    def block(self, height: int | None = None) -> dict:
        height = self.height() if height is None else height
        txs, _ = self.blocks.get(height, ([], None))
        return {"block": {"header": {"height": str(height), "time": rfc3339(self.block_time_ns(height))},
                          "data": {"txs": [base64.b64encode(t).decode() for t in txs]}}}

    def call(self, method: str, **params) -> dict:
        if method == "block_results":
            txs, result = self.blocks[int(params["height"])]
            return {"height": params["height"],
                    "txs_results": [{"code": r.code, "log": r.log, "events": cometbft_events(r.events)}
                                    for r in result.tx_results],
                    "finalize_block_events": cometbft_events(result.events)}
        raise AssertionError(f"unexpected RPC {method}")


@pytest.fixture
def chain(tmp_path, monkeypatch):
    """A one-replica exchange chain behind FakeNode; keys alice (account 1) and bob (account 2) in the keyring."""
    replica = Replica(tmp_path / "db")
    replica.init_chain(exchange_app_state())
    node = FakeNode(replica)
    node.commit_block()  # height 1: genesis state is committed (queries read committed state)
    monkeypatch.setattr(cli_common, "RpcClient", lambda url, *a, **k: node)
    home = tmp_path / "home"
    ring = Keyring(home / "keys")
    ring.import_hex("alice", bytes(KEYS[1]).hex())
    ring.import_hex("bob", bytes(KEYS[2]).hex())
    ring.import_hex("nobody", bytes(KEYS[7]).hex())  # no funds, no subaccount
    yield node, home
    replica.close()


def run_cli(capsys, home, *args) -> tuple[int, str, str]:
    """``perpd ARGS --home HOME`` in process through node.cli.main.main (its error handling included)."""
    from node.cli.main import main

    argv = sys.argv
    sys.argv = ["perpd", *args, "--home", str(home)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


def ok(capsys, home, *args) -> str:
    code, out, err = run_cli(capsys, home, *args)
    assert code == 0, err
    return out


def ok_json(capsys, home, *args) -> dict:
    return json.loads(ok(capsys, home, *args, "-o", "json"))


def one_error_line(capsys, home, *args) -> str:
    code, out, err = run_cli(capsys, home, *args)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), (code, out, err)
    assert "Traceback" not in err
    return lines[0]


def test_markets_are_read_from_the_perpetuals_query(chain):
    node, _ = chain
    markets = markets_from_query(node.query_json("/perpetuals/list"))
    assert [m.ticker for m in markets] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert markets[0] == Market("BTC-USD", 0, 0, -10, -9, 1_000_000, 100_000, "active")


def test_limit_order_rests_shows_on_the_book_and_is_canceled_by_its_printed_client_id(chain, capsys):
    node, home = chain
    placed = ok_json(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size",
                     "0.25", "--price", "64250", "--from", "alice")
    assert placed["code"] == 0 and placed["height"] == 2
    cid = placed["client_id"]
    assert 0 <= cid < 2**32
    [action] = placed["order_actions"]
    assert (action["status"], action["kind"], action["market"], action["size"], action["remaining"], action["price"]) \
        == ("resting", "place", "BTC-USD", "0.25", "0.25", "64250")
    assert placed["order"]["good_til_block"] == "21"  # latest height 1 + 20
    # What was signed: exactly 0.25 BTC at 64250 USD in chain units.
    from perpchain.v1 import tx_pb2

    body = tx_pb2.TxBody.FromString(tx_pb2.Tx.FromString(node.broadcasts[-1]).body)
    place = body.messages[0].orders.actions[0].place
    assert (place.quantums, place.subticks, place.client_id, place.good_til_block) == (2_500_000_000, 6_425_000_000,
                                                                                         cid, 21)

    book = ok(capsys, home, "query", "clob", "orderbook", "BTC-USD")
    assert "ask" in book and "64250" in book and "0.25" in book and "no bids" in book
    orders = ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"]
    assert [(o["client_id"], o["size"], o["price"]) for o in orders] == [(cid, "0.25", "64250")]
    assert ok(capsys, home, "query", "clob", "orders", f"{ADDRS[1]}/0").startswith(
        f"resting orders at height 2:\nBTC-USD    sell 0.25 BTC @ 64250 USD  remaining 0.25 BTC  client id {cid}  "
        "subaccount 0")
    assert ok_json(capsys, home, "query", "clob", "orders", "alice")["height"] == 2
    assert ok(capsys, home, "query", "clob", "orderbook", "BTC-USD").startswith(
        "BTC-USD (clob pair 0, active) at height 2")
    assert ok_json(capsys, home, "query", "clob", "orderbook", "BTC-USD")["height"] == 2

    text = ok(capsys, home, "tx", "clob", "cancel-order", "--market", "btc-usd", "--client-id", str(cid), "--from",
              "alice")
    assert "canceled" in text and "remaining 0.25 BTC" in text
    assert ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"] == []


def test_text_output_of_a_placement_names_status_and_how_to_cancel(chain, capsys):
    _, home = chain
    text = ok(capsys, home, "tx", "clob", "place-order", "--market", "ETH-USD", "--side", "buy", "--size", "1.5",
              "--price", "2999.9", "--client-id", "42", "--tif", "post-only", "--key", "bob")
    lines = text.splitlines()
    assert lines[0].startswith("height 2  code 0  hash ")
    assert "place ETH-USD buy 1.5 ETH client id 42: resting" in lines[1]
    assert "limit 2999.9 USD" in lines[1]
    assert "cancel-order --market ETH-USD --client-id 42 --from bob" in lines[-1]


def test_an_order_refused_in_the_block_prints_its_reason_and_exits_1(chain, capsys):
    """A one-order command whose order the block refused (a fill-or-kill on an empty book) exits 1, as a CheckTx
    refusal does, after printing the tx and the reason (probe session 12: scripts read $? as success before)."""
    node, home = chain
    code, text, err = run_cli(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy",
                              "--size", "0.1", "--price", "64250", "--tif", "fok", "--client-id", "5", "--from", "bob")
    lines = text.splitlines()
    assert code == 1 and err == ""
    assert len(lines) == 2 and lines[0].startswith("height 2  code 0  hash ")
    assert lines[1] == ("  place BTC-USD buy 0.1 BTC client id 5: rejected (code 712): fill_or_kill_not_filled: "
                        "fill-or-kill: only 0 BTC of 0.1 BTC could fill")
    assert "cancel with" not in text
    code, text, _ = run_cli(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy",
                            "--size", "0.1", "--price", "64250", "--tif", "fok", "--client-id", "6", "--from", "bob",
                            "-o", "json")
    out = json.loads(text)
    assert code == 1 and out["code"] == 0 and out["failed_actions"] == 1
    assert out["order_actions"][0]["status"] == "rejected" and out["order_actions"][0]["code"] == "712"


def test_an_order_that_fills_exits_0_and_its_resting_line_names_the_expiry(chain, capsys):
    node, home = chain
    text = ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.1",
              "--price", "64250", "--client-id", "8", "--good-til-block", "30", "--from", "alice")
    assert "client id 8, good until block 30 (cancel with: perpd tx clob cancel-order --market BTC-USD " \
           "--client-id 8 --from alice)" in text
    text = ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.1",
              "--price", "64250", "--tif", "ioc", "--client-id", "9", "--from", "bob")
    assert "client id 9: filled" in text and "removed" not in text


def _chain_with_params(tmp_path, monkeypatch, **params):
    """Like the ``chain`` fixture, with clob params changed at genesis."""
    from app.clob.genesis import DEFAULT_PARAMS

    state = exchange_app_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, **params}
    replica = Replica(tmp_path / "db")
    replica.init_chain(state)
    node = FakeNode(replica)
    node.commit_block()
    monkeypatch.setattr(cli_common, "RpcClient", lambda url, *a, **k: node)
    home = tmp_path / "home"
    Keyring(home / "keys").import_hex("bob", bytes(KEYS[2]).hex())
    return replica, node, home


def test_a_chain_without_a_slippage_bound_takes_any_slippage_from_the_cli(tmp_path, monkeypatch, capsys):
    """max_market_slippage_ppm 0 means no bound on chain (validate_place); the CLI refused every slippage then."""
    replica, node, home = _chain_with_params(tmp_path, monkeypatch, max_market_slippage_ppm=0)
    try:
        sent = ok_json(capsys, home, "tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy", "--size",
                       "0.1", "--slippage", "0.9", "--from", "bob")
        assert sent["order"]["market_slippage_ppm"] == 900_000 and len(node.broadcasts) == 1
    finally:
        replica.close()


def test_a_default_slippage_above_the_bound_is_named_by_its_value(tmp_path, monkeypatch, capsys):
    """The chain refuses such params at genesis; a node that answers them anyway gets a readable CLI error (it
    printed "slippage None")."""
    replica, node, home = _chain_with_params(tmp_path, monkeypatch)
    try:
        import node.cli.clob as cli_clob

        real = cli_clob._chain_view
        monkeypatch.setattr(cli_clob, "_chain_view", lambda client: (lambda h, t, p: (h, t, {
            **p, "default_market_slippage_ppm": 600_000}))(*real(client)))
        line = one_error_line(capsys, home, "tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy",
                              "--size", "0.1", "--from", "bob")
        assert line == "Error: slippage 0.6 is above the chain's maximum 0.5 (500000 ppm)"
        assert node.broadcasts == []
    finally:
        replica.close()


def test_market_order_fills_against_the_book_and_the_fill_is_queryable_by_height(chain, capsys):
    _, home = chain
    ok(capsys, home, "tx", "subaccounts", "deposit", "bob", "2500", "--number", "1")
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "7", "--from", "alice")
    taken = ok_json(capsys, home, "tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.1",
                    "--from", "bob")
    [action] = taken["order_actions"]
    assert (action["status"], action["filled"], action["remaining"]) == ("filled", "0.1", "0")
    assert taken["order"]["market_slippage_ppm"] == 50_000  # the chain's default_market_slippage_ppm
    [fill] = taken["fills"]
    # 0.1 BTC at 64250 USD = 6425 USDC; taker fee 500 ppm = 3.2125, maker 100 ppm = 0.6425 (tier 1)
    assert (fill["size"], fill["price"], fill["notional_usdc"], fill["taker_fee_usdc"], fill["maker_fee_usdc"]) == \
        ("0.1", "64250", "6425", "3.2125", "0.6425")

    fills = ok_json(capsys, home, "query", "clob", "fills", "--height", str(taken["height"]))
    assert fills["height"] == taken["height"]
    assert [(f["market"], f["size"], f["price"], f["taker"], f["maker"], f["tx_hash"]) for f in fills["fills"]] == \
        [("BTC-USD", "0.1", "64250", ADDRS[2], ADDRS[1], taken["hash"])]
    text = ok(capsys, home, "query", "clob", "fills", "--height", str(taken["height"]))
    assert text.startswith(f"block {taken['height']}: 1 fill") and "fill BTC-USD 0.1 BTC at 64250 USD" in text
    assert ok(capsys, home, "query", "clob", "fills", "--height", "1").startswith("block 1: 0 fills")

    shown = ok(capsys, home, "query", "subaccounts", "show", "bob")
    # every amount says its unit: size in the base asset, prices in the quote asset (the oracle is $64,000)
    assert "BTC-USD    long  size 0.1 BTC  entry 64250 USD  oracle 64000 USD  mark 64000 USD  notional 6400 USDC" \
        in shown
    for label in ("total net collateral", "initial margin requirement", "maintenance margin requirement",
                  "free collateral", "leverage"):
        assert label in shown
    assert ok(capsys, home, "query", "subaccounts", "show", "bob/1").startswith(f"{ADDRS[2]}/1  collateral 2500 USDC")
    listed = ok_json(capsys, home, "query", "subaccounts", "list", "bob")["subaccounts"]
    assert [s["number"] for s in listed] == [0, 1]


def test_deposit_withdraw_and_transfer_move_exact_usdc(chain, capsys):
    node, home = chain

    def quote(owner, number=0):
        return int(node.query_json(f"/subaccounts/show/{owner}/{number}")["quote_balance_quote_quantums"])

    before = quote(ADDRS[1])
    ok(capsys, home, "tx", "subaccounts", "deposit", "alice", "12.5")
    assert quote(ADDRS[1]) == before + 12_500_000
    ok(capsys, home, "tx", "subaccounts", "transfer", "alice", "0.000001", "--to", "bob/3")
    assert quote(ADDRS[2], 3) == 1 and quote(ADDRS[1]) == before + 12_499_999
    bank_before = node.replica.balance(7)
    ok(capsys, home, "tx", "subaccounts", "withdraw", "alice", "2.5", "--to", "nobody")
    assert node.replica.balance(7) == bank_before + 2_500_000
    out = ok_json(capsys, home, "tx", "subaccounts", "withdraw", "bob", "0.000001", "--number", "3")
    assert out["code"] == 0 and quote(ADDRS[2], 3) == 0


def test_replace_order_cancels_and_places_in_one_action(chain, capsys):
    """replace-order signs one cancel-replace: 0.25 BTC at 64,250 USD (client id 9) becomes 0.1 BTC at 64,300 USD
    under the same client id: 0.1 BTC = 1e9 base quantums, 64,300 USD = 6,430,000,000 subticks (USD x 1e5)."""
    node, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "9", "--from", "alice")
    out = ok_json(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "9", "--side",
                  "sell", "--size", "0.1", "--price", "64300", "--from", "alice")
    from perpchain.v1 import tx_pb2

    body = tx_pb2.TxBody.FromString(tx_pb2.Tx.FromString(node.broadcasts[-1]).body)
    [action] = body.messages[0].orders.actions
    cr = action.cancel_replace
    assert (cr.order_id.client_id, cr.order_id.order_flags, cr.order_id.clob_pair_id) == (9, 0, 0)
    assert (cr.place.client_id, cr.place.quantums, cr.place.subticks, cr.place.side) == (9, 1_000_000_000,
                                                                                        6_430_000_000, 2)
    cancel, place = out["order_actions"]
    assert (cancel["step"], cancel["status"], cancel["remaining"]) == ("cancel", "canceled", "0.25")
    assert (place["step"], place["status"], place["size"], place["price"]) == ("place", "resting", "0.1", "64300")
    assert (out["client_id"], out["replaced_client_id"]) == (9, 9)
    orders = ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"]
    assert [(o["client_id"], o["size"], o["price"]) for o in orders] == [(9, "0.1", "64300")]
    text = ok(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "9", "--side",
              "sell", "--size", "0.2", "--price", "64400", "--new-client-id", "10", "--from", "alice")
    assert "cancel_replace (cancel) BTC-USD client id 9: canceled" in text
    assert "cancel_replace (place) BTC-USD sell 0.2 BTC client id 10: resting" in text and "limit 64400 USD" in text
    assert "cancel-order --market BTC-USD --client-id 10 --from alice" in text
    orders = ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"]
    assert [(o["client_id"], o["size"], o["price"]) for o in orders] == [(10, "0.2", "64400")]


def test_replacing_a_long_term_order_keeps_its_kind_and_good_til_time(chain, capsys):
    """Without an expiry option, the replacement of a long-term order is long-term until the same block time (the
    session-15 probe saw it silently become a 20-block short-term order); an expiry option still wins; with no such
    order resting, nothing is signed."""
    node, home = chain
    placed = ok_json(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size",
                     "0.25", "--price", "64250", "--client-id", "9", "--good-til-time", "1h", "--from", "alice")
    until = placed["order"]["good_til_block_time_ns"]
    out = ok_json(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "9",
                  "--long-term", "--side", "sell", "--size", "0.1", "--price", "64300", "--from", "alice")
    assert (out["order"]["order_flags"], out["order"]["good_til_block_time_ns"]) == (64, until)
    [o] = ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"]
    assert (o["client_id"], o["order_flags"], o["size"], o["good_til_block_time_ns"]) == (9, 64, "0.1", until)
    out = ok_json(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "9",
                  "--long-term", "--side", "sell", "--size", "0.1", "--price", "64300", "--good-til-time", "2h",
                  "--from", "alice")
    assert int(out["order"]["good_til_block_time_ns"]) > int(until)
    sent = len(node.broadcasts)
    line = one_error_line(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "8",
                          "--long-term", "--side", "sell", "--size", "0.1", "--price", "64300", "--from", "alice")
    assert line == ("Error: no long-term order with client id 8 rests on BTC-USD (subaccount 0): nothing to replace; "
                    "`perpd query clob orders` lists the resting ones")
    assert len(node.broadcasts) == sent


def test_replace_order_of_no_resting_order_is_refused_and_places_nothing(chain, capsys):
    _, home = chain
    line = one_error_line(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "77",
                          "--side", "buy", "--size", "0.1", "--price", "60000", "--from", "alice")
    assert "code 706" in line and "is not on the book" in line
    assert ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"] == []


def test_replace_order_checks_the_new_terms_before_signing(chain, capsys):
    node, home = chain
    sent = len(node.broadcasts)
    line = one_error_line(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "1",
                          "--side", "buy", "--size", "0.00015", "--price", "60000", "--from", "alice")
    assert line == "Error: size 0.00015 BTC is not a multiple of the step 0.0001 BTC; nearest valid: 0.0001 or 0.0002"
    line = one_error_line(capsys, home, "tx", "clob", "replace-order", "--market", "BTC-USD", "--client-id", "1",
                          "--side", "buy", "--size", "0.1", "--price", "60000", "--tif", "ioc", "--good-til-time",
                          "10m", "--from", "alice")
    assert "a long-term (--good-til-time) order cannot be ioc" in line
    assert len(node.broadcasts) == sent


def test_batch_cancel_removes_the_listed_orders_or_all(chain, capsys):
    _, home = chain
    for cid, price in ((1, "64300"), (2, "64301"), (3, "64302")):
        ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.01",
           "--price", price, "--client-id", str(cid), "--from", "alice")
    out = ok_json(capsys, home, "tx", "clob", "batch-cancel", "--market", "BTC-USD", "--client-ids", "1,3",
                  "--from", "alice")
    assert out["order_actions"][0]["canceled"] == "2"
    assert [o["client_id"] for o in ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"]] == [2]
    assert "canceled  1 orders" in ok(capsys, home, "tx", "clob", "batch-cancel", "--market", "BTC-USD", "--from",
                                      "alice")
    assert ok_json(capsys, home, "query", "clob", "orders", "alice")["orders"] == []


def test_orderbook_text_puts_asks_above_bids(chain, capsys):
    _, home = chain
    for side, price, who in (("sell", "64252", "alice"), ("sell", "64251", "alice"), ("buy", "64249", "bob"),
                             ("buy", "64248", "bob")):
        ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", side, "--size", "0.5",
           "--price", price, "--from", who)
    text = ok(capsys, home, "query", "clob", "orderbook", "BTC-USD", "--depth", "5")
    rows = [line.split() for line in text.splitlines()[2:]]
    assert [r[:2] for r in rows if r[0] in ("ask", "bid")] == [["ask", "64252"], ["ask", "64251"], ["bid", "64249"],
                                                               ["bid", "64248"]]
    assert "--- spread 2 USD ---" in text
    answer = ok_json(capsys, home, "query", "clob", "orderbook", "BTC-USD", "--depth", "1")
    assert [a["price"] for a in answer["asks"]] == ["64251"] and [b["price"] for b in answer["bids"]] == ["64249"]


def test_queries_of_markets_and_params(chain, capsys):
    _, home = chain
    perps = ok(capsys, home, "query", "perpetuals", "list")
    assert "BTC-USD" in perps and "step 0.0001 BTC" in perps and "tick 1 USD" in perps and "oracle 64000 USD" in perps
    assert "mark 64000 USD" in perps
    assert ok_json(capsys, home, "query", "perpetuals", "list")["perpetuals"][1]["ticker"] == "ETH-USD"
    params = ok(capsys, home, "query", "clob", "params")
    assert "short_block_window: 40 blocks" in params and "max_stateful_window: 95d" in params
    assert "default_market_slippage: 5%" in params
    assert "max_order_actions_per_block: 3000 units (place, cancel, batch cancel 1; cancel-replace 2)" in params
    assert ok_json(capsys, home, "query", "clob", "params")["short_block_window"] == 40


def test_a_block_cap_of_zero_reads_no_cap(tmp_path, monkeypatch, capsys):
    replica, _, home = _chain_with_params(tmp_path, monkeypatch, max_order_actions_per_block=0)
    try:
        assert "max_order_actions_per_block: no cap" in ok(capsys, home, "query", "clob", "params")
    finally:
        replica.close()


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["--market", "BTC-USDT"], "Error: no market 'BTC-USDT'; markets: BTC-USD, ETH-USD, SOL-USD",
                     id="market typo lists the markets"),
        pytest.param(["--size", "0.00015"], "Error: size 0.00015 BTC is not a multiple of the step 0.0001 BTC; "
                                            "nearest valid: 0.0001 or 0.0002", id="off-step size"),
        pytest.param(["--price", "64250.5"], "Error: price 64250.5 USD is not a multiple of the tick 1 USD; nearest "
                                             "valid: 64250 or 64251", id="off-tick price"),
        pytest.param(["--size", "1e-4"], "Error: size '1e-4' is not a decimal number", id="exponent notation"),
        pytest.param(["--good-til-block", "42"], "Error: --good-til-block 42 must be within 2..41 (latest height 1 + "
                                                 "short_block_window 40)", id="good-til-block beyond the window"),
        pytest.param(["--good-til-time", "10x"], "Error: duration '10x' is not like 90s, 10m, 2h, 1d, 1.5s or 1h30m "
                     "(units d, h, m, s, each at most once, largest first; a fraction has at most 9 digits)",
                     id="bad duration"),
        pytest.param(["--good-til-time", "96d"], "Error: --good-til-time 96d is beyond the longest window 95d",
                     id="good-til-time beyond the stateful window"),
        pytest.param(["--good-til-time", "1h", "--tif", "ioc"],
                     "Error: a long-term (--good-til-time) order cannot be ioc: it would never rest",
                     id="long-term ioc"),
        pytest.param(["--good-til-time", "1h", "--good-til-block", "5"],
                     "Error: give --good-til-block (short-term) or --good-til-time (long-term), not both",
                     id="both expiries"),
        pytest.param(["--from", "carol"], "no key named 'carol'", id="unknown key"),
        pytest.param(["--client-id", str(2**32)], "Error: Invalid value for '--client-id': 4294967296 is not in the "
                                                  "range 0<=x<=4294967295.", id="client id beyond uint32"),
        pytest.param(["--client-id", "abc"], "Error: Invalid value for '--client-id': 'abc' is not a valid whole "
                                             "number.", id="client id not a number"),
    ],
)
def test_place_order_errors_are_one_line_and_nothing_is_signed(chain, capsys, args, message):
    node, home = chain
    base = {"--market": "BTC-USD", "--side": "buy", "--size": "0.25", "--price": "64250", "--from": "alice"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    line = one_error_line(capsys, home, "tx", "clob", "place-order", *[x for kv in base.items() for x in kv])
    assert line == message if message.startswith("Error: ") else message in line
    assert node.broadcasts == []


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.1",
                      "--slippage", "0.6", "--from", "bob"],
                     "Error: slippage 0.6 is above the chain's maximum 0.5 (500000 ppm)", id="slippage above max"),
        pytest.param(["tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.1",
                      "--slippage", "5%", "--from", "bob"], "Error: slippage '5%' is not a decimal number",
                     id="slippage as percent"),
        pytest.param(["tx", "clob", "batch-cancel", "--market", "BTC-USD", "--client-ids", "1,x", "--from", "bob"],
                     "Error: --client-ids: 'x' is not a client id (0..4294967295)", id="bad client ids"),
        pytest.param(["tx", "subaccounts", "transfer", "alice", "1", "--to", "bob/128"],
                     "Error: subaccount number '128' in 'bob/128' is not in 0..127", id="recipient number too big"),
        pytest.param(["tx", "subaccounts", "deposit", "alice", "1.0000001"],
                     "Error: amount '1.0000001' has more than 6 decimals (1 quote quantum = 0.000001 USDC)",
                     id="deposit below a quote quantum"),
        pytest.param(["query", "subaccounts", "show", "carol"], "is neither a perp1... address nor a key",
                     id="unknown owner"),
        pytest.param(["query", "clob", "orderbook", "DOGE-USD"], "Error: no market 'DOGE-USD'; markets: BTC-USD, "
                                                                 "ETH-USD, SOL-USD", id="orderbook of no market"),
    ],
)
def test_other_errors_are_one_line_and_nothing_is_signed(chain, capsys, args, message):
    node, home = chain
    line = one_error_line(capsys, home, *args)
    assert line == message if message.startswith("Error: ") else message in line
    assert node.broadcasts == []


def test_a_check_tx_rejection_is_one_line_with_its_code(chain, capsys):
    node, home = chain
    line = one_error_line(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size",
                          "0.1", "--price", "64000", "--reduce-only", "--from", "alice")
    assert line.startswith("Error: rejected by CheckTx: code ") and "reduce-only" in line
    code, out, _ = run_cli(capsys, home, "tx", "subaccounts", "withdraw", "nobody", "1", "-o", "json")
    assert code == 1 and json.loads(out)["stage"] == "check_tx"
    assert len(node.broadcasts) == 2 and node.pending == []


def test_no_wait_prints_the_client_id(chain, capsys):
    node, home = chain
    out = ok_json(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.1",
                  "--price", "64000", "--client-id", "9", "--no-wait", "--from", "alice")
    assert (out["stage"], out["client_id"]) == ("mempool", 9) and len(node.pending) == 1
    text = ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.1",
              "--price", "63999", "--client-id", "10", "--no-wait", "--from", "alice")
    first, second = text.splitlines()
    assert first.startswith("in mempool: ") and second.startswith("client id 10, good until block 21 (cancel with: ")
    node.commit_block()
    assert sorted(o["client_id"] for o in node.query_json(f"/clob/orders/{ADDRS[1]}")["orders"]) == [9, 10]


def test_long_term_order_rests_until_its_time_and_cancels_with_long_term(chain, capsys):
    node, home = chain
    placed = ok_json(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size",
                     "0.1", "--price", "60000", "--good-til-time", "10m", "--client-id", "11", "--from", "alice")
    # latest block time (height 1) + 10 minutes, in ns
    assert placed["order"]["good_til_block_time_ns"] == str(GENESIS_TIME_NS + BLOCK_INTERVAL_NS + 600 * 10**9)
    assert placed["order_actions"][0]["status"] == "resting"
    text = ok(capsys, home, "tx", "clob", "cancel-order", "--market", "BTC-USD", "--client-id", "11", "--long-term",
              "--from", "alice")
    assert ": canceled" in text


def test_mm_run_calls_the_runner_with_typed_arguments(chain, capsys, monkeypatch):
    import types

    _, home = chain
    seen = {}
    fake = types.ModuleType("node.mm.runner")
    fake.run = lambda *args: seen.setdefault("args", args)
    monkeypatch.setitem(sys.modules, "node.mm.runner", fake)
    ok(capsys, home, "mm", "run", "--key", "alice", "--markets", "BTC-USD, ETH-USD", "--size-usd", "2500.5",
       "--levels", "2", "--interval", "0.5", "--number", "3", "--node", "http://x:1")
    assert seen["args"] == ("http://x:1", str(home), "alice", ["BTC-USD", "ETH-USD"], 2, 10, 5, Decimal("2500.5"), 0.5,
                            3)
    assert isinstance(seen["args"][7], Decimal)
    assert one_error_line(capsys, home, "mm", "run", "--key", "alice", "--size-usd", "1e3") == \
        "Error: --size-usd '1e3' is not a decimal number"


def test_the_real_entry_point_prints_one_line_without_a_traceback(tmp_path):
    """The subprocess path (python -m node.cli.main): errors found before any RPC, no node needed."""
    for args, fragment in (
        (["tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size", "abc", "--price", "1",
          "--from", "alice"], "size 'abc' is not a decimal number"),
        (["tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy", "--size", "1", "--slippage", "1",
          "--from", "alice"], "slippage must be a fraction above 0 and below 1"),
    ):
        res = subprocess.run([sys.executable, "-m", "node.cli.main", *args, "--home", str(tmp_path), "--node",
                              "http://127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PERPD_DEBUG": ""})
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], \
            res.stderr


def test_uint64_bound_of_prices_is_the_chain_one():
    assert price_to_subticks(BTC, subticks_to_price(BTC, UINT64_MAX - UINT64_MAX % 100_000)) == \
        UINT64_MAX - UINT64_MAX % 100_000


def test_self_trade_prevention_names_the_removed_resting_order(chain, capsys):
    """The IOC crosses alice's own resting ask: the ask is removed (self_trade) and the command says so (probe
    session 12: it printed only `not_filled`)."""
    _, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "701", "--from", "alice")
    out = ok_json(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.25",
                  "--price", "64250", "--tif", "ioc", "--client-id", "702", "--from", "alice")
    assert out["order_actions"][0]["status"] == "not_filled" and out["failed_actions"] == 0
    [removed] = out["removed_orders"]
    assert (removed["client_id"], removed["reason"], removed["remaining"], removed["owner"]) == \
        ("701", "self_trade", "0.25", ADDRS[1])
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "703", "--from", "alice")
    text = ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.25",
              "--price", "64250", "--tif", "ioc", "--client-id", "704", "--from", "alice")
    assert f"  removed BTC-USD order {ADDRS[1]}/0 client id 703 short-term, 0.25 BTC left: self_trade" in text


def test_a_cancels_own_removal_is_not_listed_as_removed(chain, capsys):
    _, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "98", "--from", "alice")
    out = ok_json(capsys, home, "tx", "clob", "cancel-order", "--market", "BTC-USD", "--client-id", "98", "--from",
                  "alice")
    assert out["order_actions"][0]["status"] == "canceled" and out["removed_orders"] == []


def test_batch_cancel_refuses_an_empty_client_id_list(chain, capsys):
    """`--client-ids ""` (an empty shell variable) is refused, never read as 'cancel every order'."""
    node, home = chain
    line = one_error_line(capsys, home, "tx", "clob", "batch-cancel", "--market", "BTC-USD", "--client-ids", "",
                          "--from", "alice")
    assert line == "Error: --client-ids: '' is not a client id (0..4294967295)"
    assert node.broadcasts == []


class _AheadNode(FakeNode):
    """Reports a latest height one past the last executed block, whose results are not saved yet (as CometBFT does
    between storing a block and executing it)."""

    def height(self) -> int:
        return super().height() + 1

    def call(self, method: str, **params) -> dict:
        if method == "block_results" and int(params["height"]) not in self.blocks:
            raise RpcError(f"block_results: Internal error could not find results for height #{params['height']}")
        return super().call(method, **params)


def test_fills_without_height_fall_back_to_the_last_block_with_results(chain, capsys, monkeypatch):
    node, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "7", "--from", "alice")
    taken = ok_json(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size",
                    "0.1", "--price", "64250", "--tif", "ioc", "--from", "bob")
    ahead = _AheadNode(node.replica)
    ahead.blocks = node.blocks
    monkeypatch.setattr(cli_common, "RpcClient", lambda url, *a, **k: ahead)
    fills = ok_json(capsys, home, "query", "clob", "fills")
    assert fills["height"] == taken["height"] and [f["size"] for f in fills["fills"]] == ["0.1"]
    # an explicit height is answered as asked, never another block
    err = run_cli(capsys, home, "query", "clob", "fills", "--height", str(taken["height"] + 1))[2]
    assert "could not find results" in err


def test_bank_balance_prints_usdc_like_the_subaccounts(chain, capsys):
    """No trailing zeros (probe session 12: '900001.490000 USDC' beside '25 USDC'); JSON keeps its fixed 6 decimals."""
    _, home = chain
    ok(capsys, home, "tx", "bank", "send", "alice", "bob", "0.49")
    amount = int(ok_json(capsys, home, "query", "bank", "balance", "alice")["amount_quote_quantums"])
    assert amount % 10_000 == 0 and amount % 1_000_000 != 0  # some whole cents: x.yz0000 in the fixed form
    text = ok(capsys, home, "query", "bank", "balance", "alice").strip()
    assert text == f"{amount // 1_000_000}.{amount % 1_000_000:06d}".rstrip("0") + " USDC"


def test_json_output_gets_a_json_object_for_errors_before_the_broadcast_too(chain, capsys, monkeypatch):
    """-o json: an unknown market (refused before signing) and an RPC error each print one JSON object on stdout, and
    the Error: line on stderr (probe session 12: stdout was empty)."""
    node, home = chain
    code, out, err = run_cli(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USDT", "--side", "buy",
                             "--size", "0.1", "--price", "64000", "--from", "alice", "-o", "json")
    assert code == 1 and json.loads(out) == {
        "error": "no market 'BTC-USDT'; markets: BTC-USD, ETH-USD, SOL-USD", "stage": "client"}
    assert err.strip() == "Error: no market 'BTC-USDT'; markets: BTC-USD, ETH-USD, SOL-USD"
    assert node.broadcasts == []
    ahead = _AheadNode(node.replica)
    monkeypatch.setattr(cli_common, "RpcClient", lambda url, *a, **k: ahead)
    code, out, err = run_cli(capsys, home, "query", "clob", "fills", "--height", "999", "-o", "json")
    assert code == 1 and json.loads(out) == {
        "error": "block_results: Internal error could not find results for height #999", "stage": "rpc"}
    assert err.strip() == "Error: block_results: Internal error could not find results for height #999"
    # without -o json the next error is text only (the mode does not leak from one command to the next)
    code, out, _ = run_cli(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USDT", "--side", "buy",
                           "--size", "0.1", "--price", "64000", "--from", "alice")
    assert code == 1 and out == ""


@pytest.mark.parametrize("args, message", [
    pytest.param(["query", "clob", "orderbook", "BTC-USD", "--depth", "0", "-o", "json"],
                 "Invalid value for '--depth': 0 is not in the range 1<=x<=1000.", id="out of range, -o last"),
    pytest.param(["-o", "json", "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sideways", "--size",
                  "0.1", "--price", "64000", "--from", "alice"],
                 "Invalid value for '--side': 'sideways' is not one of 'buy', 'sell'.", id="bad choice, -o first"),
    pytest.param(["--output=json", "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size",
                  "0.1", "--price", "64000"], "Missing option '--from' / '--key'.", id="missing option, --output="),
])
def test_json_output_gets_a_json_object_for_usage_errors_too(chain, capsys, args, message):
    """Errors Click raises while it parses the line (before any command runs) are a JSON object on stdout too under
    -o json, wherever -o stands (the session-15 probe saw an empty stdout)."""
    node, home = chain
    code, out, err = run_cli(capsys, home, *args)
    assert code == 2 and json.loads(out) == {"error": message, "stage": "client"}
    assert err.strip() == f"Error: {message}"
    assert node.broadcasts == []


def test_global_options_may_come_before_the_command(chain, capsys):
    """Cosmos-style: `perpd -o json --home H query ...` works as `perpd query ... -o json --home H`."""
    from node.cli.main import hoist_global_options

    assert hoist_global_options(["-o", "json", "--home=/h", "query", "bank", "supply"]) == [
        "query", "bank", "supply", "-o", "json", "--home", "/h"]
    assert hoist_global_options(["-ojson", "keys", "list", "--", "x"]) == ["keys", "list", "-o", "json", "--", "x"]
    assert hoist_global_options(["query", "bank", "supply", "-o", "json"]) == ["query", "bank", "supply", "-o", "json"]
    assert hoist_global_options(["--home"]) == ["--home"]  # no value: left for Click to refuse
    _, home = chain
    code, out, _ = run_cli(capsys, home, "-o", "json", "query", "perpetuals", "list")
    assert code == 0 and [p["ticker"] for p in json.loads(out)["perpetuals"]][:1] == ["BTC-USD"]


def test_a_cancel_of_the_wrong_kind_says_which_kind_rests(chain, capsys):
    """The chain keys orders by client id and kind: cancelling a long-term order without --long-term named flags 0
    and got order_not_found with no hint (probe session 12). Now the CLI says which kind rests, and signs nothing."""
    node, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "11", "--good-til-time", "1h", "--from", "alice")
    sent = len(node.broadcasts)
    line = one_error_line(capsys, home, "tx", "clob", "cancel-order", "--market", "BTC-USD", "--client-id", "11",
                          "--from", "alice")
    assert line == ("Error: no short-term order with client id 11 rests on BTC-USD; a long-term one does: add "
                    "--long-term")
    assert len(node.broadcasts) == sent
    out = ok_json(capsys, home, "tx", "clob", "cancel-order", "--market", "BTC-USD", "--client-id", "11",
                  "--long-term", "--from", "alice")
    assert out["order_actions"][0]["status"] == "canceled"
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "12", "--from", "alice")
    line = one_error_line(capsys, home, "tx", "clob", "cancel-order", "--market", "BTC-USD", "--client-id", "12",
                          "--long-term", "--from", "alice")
    assert line == ("Error: no long-term order with client id 12 rests on BTC-USD; a short-term one does: leave out "
                    "--long-term")


def test_chain_amounts_in_a_refusal_are_shown_in_human_units(chain):
    """BTC-USD: atomic resolution -10, quantum conversion -9, $1 = 100 000 subticks (tests/exchange_helpers.py)."""
    from node.cli.clob import humanize_reason

    node, _ = chain
    btc = find_market(markets_from_query(node.query_json("/perpetuals/list")), "BTC-USD")
    assert humanize_reason("post-only buy at 8000000000 subticks would cross the best opposite price 6686200000 "
                           "subticks", btc) == "post-only buy at 80000 USD would cross the best opposite price 66862 USD"
    assert humanize_reason("fill-or-kill: only 441000000 base quantums of 100000000000 base quantums could fill",
                           btc) == "fill-or-kill: only 0.0441 BTC of 10 BTC could fill"
    assert humanize_reason("net collateral -4571817 quote quantums would be below initial margin 17057437 quote "
                           "quantums", btc) == "net collateral -4.571817 USDC would be below initial margin 17.057437 USDC"
    # without a market only USDC amounts can be converted; a count stays a count
    assert humanize_reason("has 1 open short-term orders; its total net collateral 25000000 quote quantums allows 1; "
                           "size 7 base quantums", None) == \
        "has 1 open short-term orders; its total net collateral 25 USDC allows 1; size 7 base quantums"


def test_a_post_only_refused_in_the_block_reads_in_usd(chain, capsys):
    _, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
       "--price", "64250", "--client-id", "1", "--from", "alice")
    code, text, _ = run_cli(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy",
                            "--size", "0.1", "--price", "64300", "--tif", "post-only", "--client-id", "2", "--from",
                            "bob")
    assert code == 1
    assert ("client id 2: rejected (code 707): post_only_would_cross: post-only buy at 64300 USD would cross the best "
            "opposite price 64250 USD") in text


def test_a_checktx_refusal_reads_in_usdc_and_json_keeps_the_chains_text(chain, capsys):
    node, home = chain
    args = ("tx", "clob", "place-order", "--market", "BTC-USD", "--side", "buy", "--size", "1000", "--price", "64000",
            "--from", "bob")
    line = one_error_line(capsys, home, *args)
    assert line.startswith("Error: rejected by CheckTx: code 602") and "USDC would be below initial margin" in line
    assert "quote quantums" not in line
    code, out, _ = run_cli(capsys, home, *args, "-o", "json")
    assert code == 1 and "quote quantums would be below initial margin" in json.loads(out)["log"]


def test_deposit_withdraw_and_transfer_print_the_amount_and_the_collateral_after(chain, capsys):
    """Subaccount bob/1 starts empty (genesis funds subaccount 0 only): +2500, -100 to the bank, -400 to alice/0."""
    _, home = chain
    bob = ADDRS[2]
    text = ok(capsys, home, "tx", "subaccounts", "deposit", "bob", "2500", "--number", "1")
    assert f"  deposited 2500 USDC from the bank into {bob}/1\n  {bob}/1 collateral now 2500 USDC" in text
    text = ok(capsys, home, "tx", "subaccounts", "withdraw", "bob", "100", "--number", "1")
    assert f"  withdrew 100 USDC from {bob}/1 to the bank balance of {bob}\n  {bob}/1 collateral now 2400 USDC" in text
    out = ok_json(capsys, home, "tx", "subaccounts", "transfer", "bob", "400.5", "--number", "1", "--to", "alice")
    assert out["collateral_after_usdc"] == "1999.5"
    assert [(m["amount_quote_quantums"], m["recipient_owner"], m["recipient_number"]) for m in out["moved"]] == \
        [("400500000", ADDRS[1], "0")]


def test_a_memo_that_is_not_utf8_is_one_clear_error(chain, capsys):
    """Bytes the shell cannot decode reach Python as lone surrogates ($'\\xff\\xfe'); before, the error line was
    Python's own UnicodeEncodeError text (probe session 12)."""
    node, home = chain
    line = one_error_line(capsys, home, "tx", "bank", "send", "alice", "bob", "1", "--memo", "\udcff\udcfe")
    assert line == "Error: --memo is not valid UTF-8 text" and node.broadcasts == []


def test_batch_cancel_names_the_ids_that_were_not_resting(chain, capsys):
    _, home = chain
    for cid in ("11", "12"):
        ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.25",
           "--price", "64250", "--client-id", cid, "--from", "alice")
    text = ok(capsys, home, "tx", "clob", "batch-cancel", "--market", "BTC-USD", "--client-ids", "11,12,13", "--from",
              "alice")
    assert "batch_cancel BTC-USD: canceled  2 orders  not resting: client id 13" in text


def test_a_partly_filled_market_order_says_the_rest_was_canceled(chain, capsys):
    """IOC semantics in the text: 0.1 BTC rests at 64250, a market buy of 0.25 fills 0.1 and drops 0.15 (probe
    session 12: it printed 'remaining 0.15 BTC', as if it rested)."""
    _, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.1",
       "--price", "64250", "--client-id", "7", "--from", "alice")
    text = ok(capsys, home, "tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.25",
              "--from", "bob")
    assert "partially_filled  filled 0.1 BTC  unfilled 0.15 BTC canceled (immediate-or-cancel)" in text
    assert "remaining" not in text


def test_a_refused_withdrawal_reads_in_usdc(chain, capsys):
    _, home = chain
    ok(capsys, home, "tx", "clob", "place-order", "--market", "BTC-USD", "--side", "sell", "--size", "0.1",
       "--price", "64250", "--client-id", "7", "--from", "alice")
    ok(capsys, home, "tx", "clob", "market-order", "--market", "BTC-USD", "--side", "buy", "--size", "0.1",
       "--from", "bob")
    # bob: quote 100 000 - 6 425 - 3.2125 (taker fee) = 93 571.7875; long 0.1 BTC = 6 400 at the $64,000 oracle,
    # IMR 5 % = 320. Withdrawing 99 700 leaves net collateral 93 571.7875 - 99 700 + 6 400 = 271.7875 < 320.
    line = one_error_line(capsys, home, "tx", "subaccounts", "withdraw", "bob", "99700")
    assert line == ("Error: rejected by CheckTx: code 602 (subaccounts): newly_undercollateralized: withdrawal of 99700 "
                    "USDC: net collateral 271.7875 USDC would be below initial margin 320 USDC (maintenance 192 USDC; "
                    "before: net collateral 99971.7875 USDC, initial 320 USDC, maintenance 192 USDC); at most "
                    "99651.7875 USDC can leave now")  # the free collateral before: 99 971.7875 - 320


def test_query_prices_names_units_and_lists_markets_on_a_typo(chain, capsys):
    """Prices read in USD (the oracle and mark, and the basis EMA from price units at the market's exponent), the last
    update as RFC 3339; a pair in any case is found; a typo lists the markets, as the clob commands do (probe of
    session 15: no unit, a raw ns time, no list)."""
    node, home = chain
    res = node.query_json("/prices/market/BTC-USD")
    text = ok(capsys, home, "query", "prices", "market", "btc-usd")
    usd = res["oracle_price_usd"]
    assert f"oracle {usd:>22s} USD  mark" in text and text.count(" USD") == 3, text
    assert "basis EMA 0.00000 USD" in text and "(last update 20" in text and text.rstrip().endswith("Z)"), text
    line = one_error_line(capsys, home, "query", "prices", "market", "BTC")
    assert line == "Error: no market 'BTC'; markets: BTC-USD, ETH-USD, SOL-USD"


def test_non_trading_txs_print_what_they_did_and_their_fee(chain, capsys):
    """A tx without its own report prints each event in a line, amounts in USDC, and the fee the ante took from the
    bank balance (the session-15 probe saw only height, code and hash for a bank send, and no fee anywhere)."""
    node, home = chain
    fee = int(node.query_json("/auth/params")["fee_per_message_quote_quantums"])
    text = ok(capsys, home, "tx", "bank", "send", "alice", "bob", "12.5")
    first, *rest = text.strip().splitlines()
    assert fee == 10_000 and first.endswith("  fee 0.01 USDC"), first  # 10 000 quote quantums = 0.01 USDC
    assert rest == [f"transfer: sender {ADDRS[1]}  recipient {ADDRS[2]}  amount 12.5 USDC"]
    out = ok_json(capsys, home, "tx", "subaccounts", "deposit", "alice", "0.000001")
    assert out["fee_quote_quantums"] == "10000" and out["code"] == 0


class _ShortNode(FakeNode):
    """Answers a block_results beyond its height as CometBFT v0.38 does (rpc/core/env.go getHeight)."""

    def call(self, method: str, **params) -> dict:
        if method == "block_results" and int(params["height"]) > self.height():
            raise RpcError(f"block_results: Internal error height {params['height']} must be less than or equal to "
                           f"the current blockchain height {self.height()}")
        return super().call(method, **params)


def test_fills_of_a_future_block_say_the_latest_height(chain, capsys, monkeypatch):
    node, home = chain
    short = _ShortNode(node.replica)
    short.blocks = node.blocks
    monkeypatch.setattr(cli_common, "RpcClient", lambda url, *a, **k: short)
    line = one_error_line(capsys, home, "query", "clob", "fills", "--height", "99999999")
    assert line == f"Error: block 99999999 does not exist yet: the latest height is {short.height()}"


def test_auth_params_show_quote_quantums_in_usdc_too(chain, capsys):
    node, home = chain
    res = node.query_json("/auth/params")
    text = ok(capsys, home, "query", "auth", "params")
    assert f"fee_per_message_quote_quantums: {res['fee_per_message_quote_quantums']} (0.01 USDC)" in text, text
    assert res["fee_per_message_quote_quantums"] == "10000"  # 0.01 USDC = 10 000 quote quantums
