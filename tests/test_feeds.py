"""The venue feed simulator over real HTTP on 127.0.0.1: venue shapes, price processes, faults, control API, CLI."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any, Callable, Iterator

import httpx
import pytest
from click.testing import CliRunner

from node.cli.feeds import feeds
from node.feeds.simulator import CsvPricePath, FeedServer, RandomWalkProcess, serve
from node.feeds.venues import (
    DEFAULT_VENUES,
    VenueParseError,
    batch_url,
    ms_from_iso8601,
    parse_batch,
    parse_price,
    parse_ticker,
    ticker_url,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENUES_WITH_GENERIC = [*DEFAULT_VENUES, "evil1"]
DEADLINE_S = 8.0


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with serve(port=0, venues=VENUES_WITH_GENERIC, seed=1) as s:
        yield s


def http_get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5.0, trust_env=False)


def control(s: FeedServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(s.url + path, json=body, timeout=5.0, trust_env=False)


def ticker(s: FeedServer, venue: str, pair: str = "BTC-USD") -> httpx.Response:
    return http_get(ticker_url(s.url, venue, pair))


def state(s: FeedServer) -> dict[str, Any]:
    response = http_get(s.url + "/control/state")
    assert response.status_code == 200
    return response.json()


def poll_until(fetch: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
        time.sleep(0.05)


# --- venue shapes ---------------------------------------------------------------------------------------------------
SHAPES = [
    pytest.param("binance", "/binance/api/v3/ticker/price?symbol=BTCUSDT",
                 lambda b: (b["price"], b["time"]), {"symbol", "price", "time"}, id="binance quotes symbol/price/time"),
    pytest.param("okx", "/okx/api/v5/market/ticker?instId=BTC-USDT",
                 lambda b: (b["data"][0]["last"], int(b["data"][0]["ts"])), {"code", "msg", "data"},
                 id="okx wraps a data list with last and a millisecond string ts"),
    pytest.param("bybit", "/bybit/v5/market/tickers?category=spot&symbol=BTCUSDT",
                 lambda b: (b["result"]["list"][0]["lastPrice"], b["time"]), {"retCode", "retMsg", "result", "time"},
                 id="bybit nests lastPrice under result.list"),
    pytest.param("kraken", "/kraken/0/public/Ticker?pair=XBTUSD",
                 lambda b: (b["result"]["XBTUSD"]["c"][0], int(Decimal(b["ts"]) * 1000)), {"error", "result", "ts"},
                 id="kraken keys the result by XBTUSD with a seconds ts"),
    pytest.param("coinbase", "/coinbase/products/BTC-USD/ticker",
                 lambda b: (b["price"], ms_from_iso8601(b["time"])), {"trade_id", "price", "size", "time"},
                 id="coinbase answers an ISO 8601 time"),
    pytest.param("evil1", "/evil1/ticker/BTC-USD",
                 lambda b: (b["price"], b["timestamp_ms"]), {"pair", "price", "timestamp_ms"},
                 id="an unknown venue name gets the generic shape"),
]


@pytest.mark.parametrize("venue, path, extract, keys", SHAPES)
def test_each_venue_answers_its_own_shape(server, venue, path, extract, keys):
    assert control(server, "/control/price", {"pair": "BTC-USD", "price": "64250.5"}).status_code == 200
    assert ticker_url(server.url, venue, "BTC-USD") == server.url + path
    before_ms = time.time_ns() // 1_000_000
    response = http_get(server.url + path)
    after_ms = time.time_ns() // 1_000_000
    assert response.status_code == 200
    body = response.json()
    assert set(body) == keys
    price, time_ms = extract(body)
    assert price == "64250.5"
    tick_ms = state(server)["tick_ms"]
    assert before_ms - 2 * tick_ms <= time_ms <= after_ms
    assert parse_ticker(venue, "BTC-USD", body).price == Decimal("64250.5")


def test_shapes_are_distinct_and_parsers_reject_each_others_bodies(server):
    urls = {venue: ticker_url(server.url, venue, "ETH-USD") for venue in VENUES_WITH_GENERIC}
    assert len(set(urls.values())) == len(urls)
    bodies = {venue: http_get(url).json() for venue, url in urls.items()}
    for reader in VENUES_WITH_GENERIC:
        for writer, body in bodies.items():
            if reader == writer or {reader, writer} <= {"evil1"}:
                assert parse_ticker(reader, "ETH-USD", body).price > 0
            else:
                with pytest.raises(VenueParseError):
                    parse_ticker(reader, "ETH-USD", body)


def test_a_venue_quotes_the_true_price_within_its_noise(server):
    true_price = Decimal(state(server)["markets"]["SOL-USD"]["true_price"])
    quoted = parse_ticker("okx", "SOL-USD", ticker(server, "okx", "SOL-USD").json()).price
    # noise is 100 ppm; the walk may move a little between the two requests.
    assert abs(quoted - true_price) / true_price < Decimal("0.002")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/binance/api/v3/ticker/price?symbol=DOGEUSDT", id="a market the simulator does not list"),
        pytest.param("/nobody/ticker/BTC-USD", id="a venue the simulator does not run"),
        pytest.param("/binance/api/v3/ticker/price", id="a known path without its query"),
    ],
)
def test_unknown_tickers_are_404(server, path):
    assert http_get(server.url + path).status_code == 404


# --- price processes ---------------------------------------------------------------------------------------------------
START = {"BTC-USD": Decimal("64000"), "PEPE-USD": Decimal("0.000012")}


def test_seeded_walk_is_reproducible_and_seed_dependent():
    ticks = range(0, 3000, 7)
    first = [RandomWalkProcess(7, START).price_at_tick("BTC-USD", t) for t in ticks]
    again_walk = RandomWalkProcess(7, START)
    again = [again_walk.price_at_tick("BTC-USD", t) for t in ticks]
    other = [RandomWalkProcess(8, START).price_at_tick("BTC-USD", t) for t in ticks]
    assert first == again
    assert first != other
    assert first[0] == Decimal("64000")


def test_seeded_walk_has_jumps():
    walk = RandomWalkProcess(3, START)
    # Ascending ticks keep the walk's cursor moving forward (O(1) per step).
    cumulative = [walk.cumulative_log_return("PEPE-USD", t) for t in range(100_001)]
    steps = [b - a for a, b in zip(cumulative, cumulative[1:])]
    diffusion_sd = 0.0015 * (0.1 ** 0.5)
    # Pure diffusion essentially never moves 10 standard deviations in one tick; jumps do (~100 expected).
    assert sum(1 for s in steps if abs(s) > 10 * diffusion_sd) >= 20


def test_served_true_price_is_the_seeded_path():
    with serve(port=0, seed=42) as s:
        time.sleep(0.25)
        st = state(s)
    walk = RandomWalkProcess(42, {"BTC-USD": Decimal("64000"), "ETH-USD": Decimal("3000"),
                                  "SOL-USD": Decimal("150"), "PEPE-USD": Decimal("0.000012")})
    assert st["tick"] >= 2
    for pair, market in st["markets"].items():
        assert market["source"] == "random"
        assert Decimal(market["true_price"]) == walk.price_at_tick(pair, st["tick"])


CSV_CRASH = "t_seconds,BTC-USD,ETH-USD\n0,60000,3000\n0.3,60000,3000\n0.4,42000,2000\n"


@pytest.mark.parametrize(
    "elapsed_ms, btc",
    [
        pytest.param(0, "60000", id="the first row at start"),
        pytest.param(300, "60000", id="flat until the crash begins"),
        pytest.param(350, "51000", id="linear halfway through the crash"),
        pytest.param(400, "42000", id="the 30 percent crash row"),
        pytest.param(3_600_000, "42000", id="the last row is held"),
    ],
)
def test_csv_path_interpolates_and_holds(tmp_path, elapsed_ms, btc):
    path = tmp_path / "crash.csv"
    path.write_text(CSV_CRASH)
    assert CsvPricePath.load(path).price_at("BTC-USD", elapsed_ms) == Decimal(btc)


@pytest.mark.parametrize(
    "text, fragment",
    [
        pytest.param("time,BTC-USD\n0,1\n", "header must be", id="wrong first column"),
        pytest.param("t_seconds,BTC-USD\n1,5\n0,6\n", "non-decreasing", id="time goes backwards"),
        pytest.param("t_seconds,BTC-USD\n0,-5\n", "positive", id="negative price"),
        pytest.param("t_seconds,BTC-USD\n0,5,6\n", "columns", id="extra column"),
        pytest.param("t_seconds,BTCUSD\n0,5\n", "BASE-QUOTE", id="malformed pair"),
        pytest.param("t_seconds,BTC-USD\n", "no rows", id="header only"),
    ],
)
def test_bad_csv_is_rejected(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=fragment):
        CsvPricePath.load(path)


def test_csv_crash_is_replayed_over_http(tmp_path):
    path = tmp_path / "crash.csv"
    path.write_text(CSV_CRASH)
    seen: list[Decimal] = []

    def fetch() -> Decimal:
        seen.append(parse_ticker("kraken", "BTC-USD", ticker(s, "kraken").json()).price)
        return seen[-1]

    with serve(port=0, markets={"SOL-USD": "150"}, csv_path=path, noise_ppm=0) as s:
        assert state(s)["markets"]["BTC-USD"]["source"] == "csv"
        assert state(s)["markets"]["SOL-USD"]["source"] == "random"
        poll_until(fetch, lambda p: p == Decimal("42000"), "the crash row")
    assert all(Decimal("42000") <= p <= Decimal("60000") for p in seen)
    assert seen == sorted(seen, reverse=True)


# --- faults ------------------------------------------------------------------------------------------------------------
def test_stale_keeps_serving_the_last_print_and_its_timestamp(server):
    served_before = parse_ticker("bybit", "BTC-USD", ticker(server, "bybit").json())
    assert control(server, "/control/venue/bybit", {"mode": "stale"}).json()["mode"] == "stale"
    control(server, "/control/price", {"pair": "BTC-USD", "price": "1234"})
    tick_ms = state(server)["tick_ms"]
    time.sleep(3 * tick_ms / 1000)
    stale = parse_ticker("bybit", "BTC-USD", ticker(server, "bybit").json())
    assert stale == served_before
    assert parse_ticker("okx", "BTC-USD", ticker(server, "okx").json()).price == Decimal("1234")
    control(server, "/control/venue/bybit", {"mode": "ok"})
    assert parse_ticker("bybit", "BTC-USD", ticker(server, "bybit").json()).price == Decimal("1234")


def test_stale_without_a_previous_request_freezes_the_current_quote(server):
    control(server, "/control/price", {"pair": "ETH-USD", "price": "2000"})
    control(server, "/control/venue/kraken", {"mode": "stale"})
    first = parse_ticker("kraken", "ETH-USD", ticker(server, "kraken", "ETH-USD").json())
    control(server, "/control/price", {"pair": "ETH-USD", "price": "2100"})
    time.sleep(0.25)
    assert first.price == Decimal("2000")
    assert parse_ticker("kraken", "ETH-USD", ticker(server, "kraken", "ETH-USD").json()) == first


@pytest.mark.parametrize(
    "offset_ppm, expected",
    [
        pytest.param(500_000, "75000", id="plus 50 percent"),
        pytest.param(-300_000, "35000", id="minus 30 percent"),
        pytest.param(1, "50000.05", id="one ppm is exact"),
    ],
)
def test_manipulated_venue_offsets_the_price(server, offset_ppm, expected):
    control(server, "/control/price", {"pair": "BTC-USD", "price": "50000"})
    body = {"mode": "manipulated", "offset_ppm": offset_ppm}
    assert control(server, "/control/venue/coinbase", body).json()["offset_ppm"] == offset_ppm
    assert ticker(server, "coinbase").json()["price"] == expected
    assert ticker(server, "binance").json()["price"] == "50000"


def test_down_venue_answers_503_and_others_keep_serving(server):
    assert control(server, "/control/venue/okx", {"mode": "down"}).status_code == 200
    assert ticker(server, "okx").status_code == 503
    assert ticker(server, "binance").status_code == 200
    control(server, "/control/venue/okx", {"mode": "ok"})
    assert ticker(server, "okx").status_code == 200


def test_slow_venue_delays_its_answer(server):
    control(server, "/control/venue/kraken", {"mode": "slow", "delay_ms": 400})
    started = time.monotonic()
    assert ticker(server, "kraken").status_code == 200
    assert time.monotonic() - started >= 0.39
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(ticker_url(server.url, "kraken", "BTC-USD"), timeout=0.1, trust_env=False)


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        pytest.param("/control/venue/nobody", {"mode": "down"}, 404, "unknown venue", id="unknown venue"),
        pytest.param("/control/venue/okx", {"mode": "broken"}, 400, "mode must be", id="unknown mode"),
        pytest.param("/control/venue/okx", {"mode": "slow", "delay_ms": -1}, 400, "delay_ms", id="negative delay"),
        pytest.param("/control/venue/okx", {"mode": "manipulated", "offset_ppm": "5"}, 400, "integer",
                     id="offset given as a string"),
        pytest.param("/control/venue/okx", {"mode": "manipulated", "offset_ppm": -1_000_000}, 400, "offset_ppm",
                     id="offset that would make the price zero"),
        pytest.param("/control/price", {"pair": "DOGE-USD", "price": "1"}, 404, "unknown market", id="unknown pair"),
        pytest.param("/control/price", {"pair": "BTC-USD", "price": 50000.5}, 400, "decimal string",
                     id="price given as a JSON number"),
        pytest.param("/control/price", {"pair": "BTC-USD", "price": "0"}, 400, "positive", id="zero price"),
        pytest.param("/control/price", {"pair": "BTC-USD", "price": "1e999"}, 400, "outside", id="absurdly high price"),
        pytest.param("/control/price", {"pair": "BTC-USD", "price": "1e-30"}, 400, "outside", id="absurdly low price"),
        pytest.param("/control/nothing", {}, 404, "no control endpoint", id="unknown control path"),
    ],
)
def test_bad_control_requests_are_refused(server, path, body, status, fragment):
    response = control(server, path, body)
    assert response.status_code == status
    assert fragment in response.json()["error"]


# --- control state and pin ---------------------------------------------------------------------------------------------
def test_control_state_reports_prices_modes_and_uptime(server):
    control(server, "/control/venue/okx", {"mode": "slow", "delay_ms": 10})
    control(server, "/control/venue/binance", {"mode": "manipulated", "offset_ppm": 1000})
    first = state(server)
    assert set(first["markets"]) == {"BTC-USD", "ETH-USD", "SOL-USD", "PEPE-USD"}
    assert all(Decimal(m["true_price"]) > 0 for m in first["markets"].values())
    assert first["venues"]["okx"] == {"shape": "okx", "mode": "slow", "offset_ppm": 0, "delay_ms": 10}
    assert first["venues"]["binance"]["offset_ppm"] == 1000
    assert first["venues"]["evil1"]["shape"] == "generic"
    assert first["seed"] == 1 and first["csv"] is None
    time.sleep(0.15)
    assert state(server)["uptime_ms"] > first["uptime_ms"]


def test_pin_holds_the_price_exactly_on_every_venue_and_release_continues_from_it(server):
    pinned = control(server, "/control/price", {"pair": "PEPE-USD", "price": "0.000012345678901234"}).json()
    assert pinned == {"pair": "PEPE-USD", "true_price": "0.000012345678901234", "source": "pinned"}
    time.sleep(0.25)
    for venue in VENUES_WITH_GENERIC:
        assert parse_ticker(venue, "PEPE-USD", ticker(server, venue, "PEPE-USD").json()).price == \
            Decimal("0.000012345678901234")
    released = control(server, "/control/price", {"pair": "PEPE-USD", "price": None}).json()
    assert released["source"] == "random"
    # The walk continues from the pinned price instead of jumping back to its own path.
    assert abs(Decimal(released["true_price"]) / Decimal("0.000012345678901234") - 1) < Decimal("0.01")


# --- CLI ---------------------------------------------------------------------------------------------------------------
def test_cli_fault_pin_and_state_drive_a_running_simulator(server):
    runner = CliRunner()
    res = runner.invoke(feeds, ["fault", "okx", "manipulated", "--offset-ppm", "250000", "--url", server.url])
    assert res.exit_code == 0, res.output
    assert "okx: manipulated offset 250000 ppm" in res.output
    res = runner.invoke(feeds, ["pin", "BTC-USD", "40000", "--url", server.url])
    assert res.exit_code == 0 and "BTC-USD: 40000 (pinned)" in res.output
    res = runner.invoke(feeds, ["state", "--url", server.url, "-o", "json"])
    data = json.loads(res.output)
    assert data["venues"]["okx"]["mode"] == "manipulated"
    assert data["markets"]["BTC-USD"] == {"true_price": "40000", "source": "pinned"}
    assert ticker(server, "okx").json()["data"][0]["last"] == "50000"
    res = runner.invoke(feeds, ["pin", "BTC-USD", "none", "--url", server.url])
    assert res.exit_code == 0 and "(random)" in res.output
    res = runner.invoke(feeds, ["fault", "nobody", "down", "--url", server.url])
    assert res.exit_code == 1 and "unknown venue 'nobody'" in res.output


def test_cli_serve_prints_its_url_and_stops_on_sigterm():
    code = "from node.cli.feeds import feeds; feeds()"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", "0", "--venues", "binance,okx,evil2",
                             "--markets", "BTC-USD=64000,PEPE-USD=0.00001", "--tick-ms", "250"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        first_line = proc.stdout.readline()
        assert first_line.startswith("feeds: serving on http://127.0.0.1:"), first_line + proc.stderr.read()
        url = first_line.split()[-1]
        st = http_get(url + "/control/state").json()
        assert set(st["venues"]) == {"binance", "okx", "evil2"}
        assert set(st["markets"]) == {"BTC-USD", "PEPE-USD"}
        assert st["tick_ms"] == 250
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_url_defaults_to_env_then_the_localnet_simulator(tmp_path, monkeypatch):
    from node.cli.feeds import default_feeds_url

    monkeypatch.delenv("PERPD_FEEDS_URL", raising=False)
    monkeypatch.setenv("PERPD_LOCALNET_DIR", str(tmp_path))
    assert default_feeds_url() == "http://127.0.0.1:26600"
    (tmp_path / "localnet.json").write_text(json.dumps({"nodes": [], "feeds": {"port": 26698, "venues": ["okx"]}}))
    assert default_feeds_url() == "http://127.0.0.1:26698"
    monkeypatch.setenv("PERPD_FEEDS_URL", "http://127.0.0.1:1234")
    assert default_feeds_url() == "http://127.0.0.1:1234"


# --- batch endpoints (one request for many markets) ---------------------------------------------------------------
BATCH_VENUES = [v for v in VENUES_WITH_GENERIC if v != "coinbase"]
PAIRS = ["BTC-USD", "ETH-USD", "PEPE-USD"]


@pytest.mark.parametrize("venue", BATCH_VENUES)
def test_batch_answers_equal_the_single_tickers(server, venue):
    for pair, price in zip(PAIRS, ["70000", "3500", "0.00002"]):
        control(server, "/control/price", {"pair": pair, "price": price})
    got = parse_batch(venue, PAIRS, http_get(batch_url(server.url, venue, PAIRS)).json())
    assert {p: str(v.price) for p, v in got.items()} == {"BTC-USD": "70000", "ETH-USD": "3500", "PEPE-USD": "0.00002"}
    single = parse_ticker(venue, "ETH-USD", ticker(server, venue, "ETH-USD").json())
    assert abs(got["ETH-USD"].time_ms - single.time_ms) < 1000


def test_coinbase_has_no_batch_endpoint():
    assert batch_url("http://x", "coinbase", PAIRS) is None


@pytest.mark.parametrize("venue", BATCH_VENUES)
def test_batch_follows_faults(server, venue):
    control(server, "/control/price", {"pair": "BTC-USD", "price": "50000"})
    control(server, f"/control/venue/{venue}", {"mode": "manipulated", "offset_ppm": 500_000})
    got = parse_batch(venue, ["BTC-USD"], http_get(batch_url(server.url, venue, ["BTC-USD", "ETH-USD"])).json())
    assert str(got["BTC-USD"].price) == "75000"
    control(server, f"/control/venue/{venue}", {"mode": "down"})
    assert http_get(batch_url(server.url, venue, ["BTC-USD", "ETH-USD"])).status_code == 503


@pytest.mark.parametrize("venue", BATCH_VENUES)
def test_batch_parsers_reject_other_shapes(venue):
    for body in ({"unexpected": True}, "text", None):
        with pytest.raises(VenueParseError):
            parse_batch(venue, PAIRS, body)


@pytest.mark.parametrize("text", ["1E+999999999", "1E+999990", "1e31", "1e-31", "9" * 65, "NaN", "-1", "0"])
def test_hostile_prices_are_rejected_at_once(text):
    with pytest.raises(VenueParseError):  # before any Decimal arithmetic that could overflow or stall
        parse_price(text)


@pytest.mark.parametrize("ts", ["1E+999990", "1e13", "-1", "x"])
def test_hostile_kraken_timestamps_are_rejected(ts):
    body = {"error": [], "result": {"XBTUSD": {"c": ["1", "1"]}}, "ts": ts}
    with pytest.raises(VenueParseError):
        parse_ticker("kraken", "BTC-USD", body)
