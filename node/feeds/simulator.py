"""Venue feed simulator: an HTTP server on 127.0.0.1 imitating several exchanges' ticker endpoints.

Off-consensus test and localnet tooling (floats are fine here; prices still leave as decimal strings).

Price model. Every market has one *true* price per tick of ``tick_ms`` (default 100 ms) of elapsed wall time since
the server started. The true price comes from, in order of precedence:

1. a pin (``POST /control/price``): constant until released, quoted *exactly* by every venue (no venue noise), so
   tests can assert the chain follows a known value;
2. a CSV path (``--csv``): linear interpolation between rows of ``t_seconds,PAIR,...``, holding the first price
   before the first row and the last price after the last row;
3. a seeded geometric random walk with jumps (:class:`RandomWalkProcess`), deterministic for a given seed and tick.
   Releasing a pin continues the walk from the pinned price, so the path stays continuous.

Each venue quotes the true price times ``1 + noise`` with a venue-specific noise drawn uniformly from
``[-noise_ppm, +noise_ppm]`` (deterministic in seed, venue, market and tick), rounded to 10 significant digits.
The print's timestamp is the wall time of its tick.

Faults, per venue, at run time (``POST /control/venue/<name>``): ``ok``; ``stale`` (keeps serving the last quote it
served for each market, with its old timestamp); ``manipulated`` (price x (1 + offset_ppm / 1e6)); ``down`` (HTTP
503); ``slow`` (sleeps ``delay_ms`` before answering). See docs/feeds.md for every endpoint and shape.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import http.server
import json
import logging
import math
import pathlib
import random
import threading
import time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from node.feeds.venues import (
    DEFAULT_VENUES,
    Params,
    format_decimal,
    shape_for,
    split_pair,
    ticker_request,
    validate_venue_name,
)

log = logging.getLogger("perpd.feeds")

DEFAULT_MARKETS: Mapping[str, str] = {
    "BTC-USD": "64000",
    "ETH-USD": "3000",
    "SOL-USD": "150",
    "PEPE-USD": "0.000012",  # thin long-tail market: higher volatility, bigger jumps
}
DEFAULT_PORT = 26600
DEFAULT_TICK_MS = 100
DEFAULT_NOISE_PPM = 100
SIGNIFICANT_DIGITS = 10

MODES = ("ok", "stale", "manipulated", "down", "slow")
MAX_DELAY_MS = 120_000
MAX_BODY_BYTES = 65_536
# Prices the simulator will quote (pins, CSV cells, start prices): wide enough for PEPE and BTC alike, narrow enough
# that every quote stays a short plain decimal a venue could really send.
MIN_PRICE = Decimal("1e-12")
MAX_PRICE = Decimal("1e12")


@dataclasses.dataclass(frozen=True)
class WalkParams:
    """Random-walk parameters of one market: diffusion per sqrt(second), jump rate per second, jump size (log)."""

    volatility_per_sqrt_s: float
    jump_rate_per_s: float
    jump_stdev_log: float


MAJOR_WALK = WalkParams(volatility_per_sqrt_s=0.0005, jump_rate_per_s=0.005, jump_stdev_log=0.02)
LONG_TAIL_WALK = WalkParams(volatility_per_sqrt_s=0.0015, jump_rate_per_s=0.01, jump_stdev_log=0.06)
LONG_TAIL_PAIRS = frozenset({"PEPE-USD"})


def walk_params_for(pair: str) -> WalkParams:
    return LONG_TAIL_WALK if pair in LONG_TAIL_PAIRS else MAJOR_WALK


def round_significant(value: Decimal, digits: int = SIGNIFICANT_DIGITS) -> Decimal:
    """``value`` rounded half-even to ``digits`` significant digits."""
    if value == 0:
        return value
    return value.quantize(Decimal(1).scaleb(value.adjusted() - digits + 1), rounding=ROUND_HALF_EVEN)


def parse_positive_decimal(text: Any, what: str) -> Decimal:
    """A positive finite decimal from a string (ValueError otherwise); floats are refused to keep prices exact."""
    if isinstance(text, Decimal):
        value = text
    elif isinstance(text, str):
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise ValueError(f"{what} {text!r} is not a decimal number") from None
    else:
        raise ValueError(f"{what} must be a decimal string, got {type(text).__name__}")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{what} {text!r} must be a positive number")
    if not MIN_PRICE <= value <= MAX_PRICE:
        raise ValueError(f"{what} {text!r} is outside {MIN_PRICE}..{MAX_PRICE}")
    return value


class RandomWalkProcess:
    """Seeded geometric random walk with jumps, one independent stream per market, on a grid of ``tick_ms``.

    ``log_price(tick) = log(start) + sum of per-tick log returns``; each return is
    ``volatility * sqrt(dt) * N(0,1)`` plus, with probability ``jump_rate * dt``, a jump ``N(0, jump_stdev)``.
    The stream of a market depends only on (seed, pair), so the same seed gives the same path on any machine.
    """

    def __init__(self, seed: int, start_prices: Mapping[str, Decimal], tick_ms: int = DEFAULT_TICK_MS) -> None:
        self.seed = seed
        self.tick_ms = tick_ms
        self._start = dict(start_prices)
        # pair -> (tick reached, cumulative log return, rng positioned after that tick)
        self._cursor: dict[str, tuple[int, float, random.Random]] = {}

    def _fresh_cursor(self, pair: str) -> tuple[int, float, random.Random]:
        # A str seed is hashed with SHA-512 by random.Random: independent of PYTHONHASHSEED.
        return 0, 0.0, random.Random(f"perpchain-feeds/{self.seed}/{pair}")

    def cumulative_log_return(self, pair: str, tick: int) -> float:
        """Sum of the log returns of ticks 1..tick (0 at tick 0). Sequential access is O(1) amortized."""
        if tick < 0:
            raise ValueError("tick must be >= 0")
        cursor = self._cursor.get(pair)
        if cursor is None or cursor[0] > tick:
            cursor = self._fresh_cursor(pair)
        reached, total, rng = cursor
        p = walk_params_for(pair)
        dt_s = self.tick_ms / 1000
        diffusion = p.volatility_per_sqrt_s * math.sqrt(dt_s)
        jump_probability = p.jump_rate_per_s * dt_s
        while reached < tick:
            step = diffusion * rng.gauss(0.0, 1.0)
            # Draw both numbers every tick so the jump stream never shifts the diffusion stream.
            jump_draw, jump_size = rng.random(), rng.gauss(0.0, p.jump_stdev_log)
            if jump_draw < jump_probability:
                step += jump_size
            total += step
            reached += 1
        self._cursor[pair] = (reached, total, rng)
        return total

    def price_at_tick(self, pair: str, tick: int) -> Decimal:
        """The true price of ``pair`` at ``tick`` with the walk started at its start price (10 digits)."""
        return self.price_from_anchor(pair, tick, self._start[pair], 0.0)

    def price_from_anchor(self, pair: str, tick: int, anchor_price: Decimal, anchor_log_return: float) -> Decimal:
        """The walk's price at ``tick`` given it was ``anchor_price`` where the cumulative log return was
        ``anchor_log_return`` (rounded to 10 significant digits)."""
        drift = self.cumulative_log_return(pair, tick) - anchor_log_return
        return round_significant(Decimal(repr(float(anchor_price) * math.exp(drift))))


class CsvPricePath:
    """A replayed price path: rows of (elapsed seconds, price per pair), linearly interpolated.

    Before the first row the first price holds; after the last row the last price holds. Two rows at nearly the
    same time make a step (a crash within one tick).
    """

    def __init__(self, times_s: list[Decimal], prices: Mapping[str, list[Decimal]]) -> None:
        if not times_s:
            raise ValueError("CSV price path has no rows")
        self.times_s = times_s
        self.prices = dict(prices)

    @property
    def pairs(self) -> list[str]:
        return list(self.prices)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "CsvPricePath":
        """Read ``t_seconds,PAIR,...`` (header row, then non-decreasing times >= 0, positive decimal prices)."""
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
        if not rows:
            raise ValueError(f"{path}: empty CSV")
        header = [cell.strip() for cell in rows[0]]
        if header[0] != "t_seconds" or len(header) < 2:
            raise ValueError(f"{path}: header must be t_seconds,PAIR[,PAIR...], got {','.join(header)}")
        pairs = header[1:]
        for pair in pairs:
            split_pair(pair)
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"{path}: a pair appears twice in the header")
        times: list[Decimal] = []
        prices: dict[str, list[Decimal]] = {pair: [] for pair in pairs}
        for line_no, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}:{line_no}: expected {len(header)} columns, got {len(row)}")
            try:
                t = Decimal(row[0].strip())
            except InvalidOperation:
                raise ValueError(f"{path}:{line_no}: t_seconds {row[0]!r} is not a number") from None
            if not t.is_finite() or t < 0 or (times and t < times[-1]):
                raise ValueError(f"{path}:{line_no}: t_seconds must be >= 0 and non-decreasing")
            times.append(t)
            for pair, cell in zip(pairs, row[1:]):
                prices[pair].append(parse_positive_decimal(cell, f"{path}:{line_no}: {pair}"))
        return cls(times, prices)

    def price_at(self, pair: str, elapsed_ms: int) -> Decimal:
        """True price of ``pair`` at ``elapsed_ms`` since start (linear between rows, held outside them)."""
        t = Decimal(elapsed_ms).scaleb(-3)
        series = self.prices[pair]
        i = bisect.bisect_right(self.times_s, t)
        if i == 0:
            return series[0]
        if i == len(self.times_s):
            return series[-1]
        t0, t1 = self.times_s[i - 1], self.times_s[i]
        p0, p1 = series[i - 1], series[i]
        if t1 == t0:
            return p1
        return round_significant(p0 + (p1 - p0) * (t - t0) / (t1 - t0))


@dataclasses.dataclass
class VenueState:
    shape: str
    mode: str = "ok"
    offset_ppm: int = 0
    delay_ms: int = 0
    # (price string, time_ms) per pair, frozen when the venue went stale.
    frozen: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"shape": self.shape, "mode": self.mode, "offset_ppm": self.offset_ppm, "delay_ms": self.delay_ms}


@dataclasses.dataclass(frozen=True)
class Quote:
    """What a venue answers: ``price`` (decimal string), ``time_ms`` (unix ms), and how long to wait first."""

    price: str
    time_ms: int
    delay_ms: int = 0


class VenueDown(Exception):
    """The venue is in mode ``down``."""


class FeedSimulator:
    """The simulator's state, independent of HTTP: true prices, venue modes, pins. Thread-safe.

    ``monotonic_ns`` and ``time_ns`` are injectable so the model can be driven by a fake clock.
    """

    def __init__(
        self,
        venues: Iterable[str] = DEFAULT_VENUES,
        markets: Mapping[str, Decimal | str] = DEFAULT_MARKETS,
        seed: int = 1,
        csv_path: str | pathlib.Path | None = None,
        *,
        noise_ppm: int = DEFAULT_NOISE_PPM,
        tick_ms: int = DEFAULT_TICK_MS,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if tick_ms <= 0:
            raise ValueError("tick_ms must be positive")
        if not 0 <= noise_ppm < 1_000_000:
            raise ValueError("noise_ppm must be in [0, 1_000_000)")
        venue_list = [validate_venue_name(v) for v in venues]
        if not venue_list or len(set(venue_list)) != len(venue_list):
            raise ValueError("venues must be a non-empty list of distinct names")
        start_prices = {pair: parse_positive_decimal(p, f"start price of {pair}") for pair, p in markets.items()}
        for pair in start_prices:
            split_pair(pair)
        self.csv_path = str(csv_path) if csv_path is not None else None
        self.csv = CsvPricePath.load(csv_path) if csv_path is not None else None
        if self.csv is not None:
            for pair in self.csv.pairs:
                start_prices.setdefault(pair, self.csv.price_at(pair, 0))
        if not start_prices:
            raise ValueError("no markets")
        self.seed = seed
        self.noise_ppm = noise_ppm
        self.tick_ms = tick_ms
        self.markets = sorted(start_prices)
        self.walk = RandomWalkProcess(seed, start_prices, tick_ms)
        self.venues: dict[str, VenueState] = {v: VenueState(shape=shape_for(v).kind) for v in venue_list}
        self._monotonic_ns = monotonic_ns
        self._time_ns = time_ns
        self._start_mono_ns = monotonic_ns()
        self._start_wall_ms = time_ns() // 1_000_000
        self._pins: dict[str, Decimal] = {}
        # pair -> (price, cumulative log return of the walk at that moment): where the walk continues from.
        self._anchors: dict[str, tuple[Decimal, float]] = {pair: (p, 0.0) for pair, p in start_prices.items()}
        self._last_served: dict[tuple[str, str], tuple[str, int]] = {}
        self._lock = threading.Lock()
        self.routes: dict[tuple[str, Params], tuple[str, str]] = {
            ticker_request(v, pair): (v, pair) for v in venue_list for pair in self.markets
        }

    # --- clock -------------------------------------------------------------------
    def elapsed_ms(self) -> int:
        return (self._monotonic_ns() - self._start_mono_ns) // 1_000_000

    def current_tick(self) -> int:
        return self.elapsed_ms() // self.tick_ms

    def tick_time_ms(self, tick: int) -> int:
        """Unix ms of a tick: the timestamp venues put on prints of that tick."""
        return self._start_wall_ms + tick * self.tick_ms

    # --- prices ------------------------------------------------------------------
    def _true_price_locked(self, pair: str, tick: int) -> tuple[Decimal, str]:
        if pair in self._pins:
            return self._pins[pair], "pinned"
        if self.csv is not None and pair in self.csv.prices:
            return self.csv.price_at(pair, tick * self.tick_ms), "csv"
        anchor_price, anchor_log_return = self._anchors[pair]
        return self.walk.price_from_anchor(pair, tick, anchor_price, anchor_log_return), "random"

    def _noise_ppm(self, venue: str, pair: str, tick: int) -> int:
        if self.noise_ppm == 0:
            return 0
        digest = hashlib.blake2b(f"{self.seed}|{venue}|{pair}|{tick}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % (2 * self.noise_ppm + 1) - self.noise_ppm

    def _honest_quote_locked(self, venue: str, pair: str, tick: int) -> tuple[Decimal, bool]:
        true_price, source = self._true_price_locked(pair, tick)
        if source == "pinned":
            return true_price, True
        return round_significant(true_price * (1 + Decimal(self._noise_ppm(venue, pair, tick)).scaleb(-6))), False

    def quote(self, venue: str, pair: str) -> Quote:
        """What ``venue`` answers for ``pair`` now; raises VenueDown in mode down, KeyError for unknown names."""
        with self._lock:
            state = self.venues[venue]
            if pair not in self._anchors:
                raise KeyError(pair)
            if state.mode == "down":
                raise VenueDown(venue)
            if state.mode == "stale":
                price, time_ms = state.frozen[pair]
                return Quote(price, time_ms)
            tick = self.current_tick()
            price, exact = self._honest_quote_locked(venue, pair, tick)
            if state.mode == "manipulated":
                price = price * (1 + Decimal(state.offset_ppm).scaleb(-6))
                if not exact:
                    price = round_significant(price)
            text = format_decimal(price)
            time_ms = self.tick_time_ms(tick)
            self._last_served[(venue, pair)] = (text, time_ms)
            return Quote(text, time_ms, state.delay_ms if state.mode == "slow" else 0)

    # --- control -----------------------------------------------------------------
    def set_venue_mode(self, venue: str, mode: str, offset_ppm: int = 0, delay_ms: int = 0) -> dict[str, Any]:
        """Switch a venue's fault mode; returns its new state. KeyError: unknown venue; ValueError: bad values."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        for name, value in (("offset_ppm", offset_ppm), ("delay_ms", delay_ms)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
        if not -1_000_000 < offset_ppm <= 100_000_000:
            raise ValueError("offset_ppm must be in (-1_000_000, 100_000_000]")
        if not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms must be in [0, {MAX_DELAY_MS}]")
        with self._lock:
            state = self.venues[venue]
            if mode == "stale" and state.mode != "stale":
                tick = self.current_tick()
                frozen = {}
                for pair in self.markets:
                    last = self._last_served.get((venue, pair))
                    if last is None:
                        price, _ = self._honest_quote_locked(venue, pair, tick)
                        last = (format_decimal(price), self.tick_time_ms(tick))
                    frozen[pair] = last
                state.frozen = frozen
            elif mode != "stale":
                state.frozen = {}
            state.mode = mode
            state.offset_ppm = offset_ppm if mode == "manipulated" else 0
            state.delay_ms = delay_ms if mode == "slow" else 0
            return state.to_json()

    def pin_price(self, pair: str, price: Decimal | None) -> dict[str, Any]:
        """Pin ``pair``'s true price (None releases it; the walk continues from the pinned price)."""
        with self._lock:
            if pair not in self._anchors:
                raise KeyError(pair)
            if price is None:
                released = self._pins.pop(pair, None)
                if released is not None:
                    self._anchors[pair] = (released, self.walk.cumulative_log_return(pair, self.current_tick()))
            else:
                self._pins[pair] = price
            true_price, source = self._true_price_locked(pair, self.current_tick())
            return {"pair": pair, "true_price": format_decimal(true_price), "source": source}

    def state(self) -> dict[str, Any]:
        """True prices, venue modes, clock: the body of ``GET /control/state``."""
        with self._lock:
            tick = self.current_tick()
            markets = {}
            for pair in self.markets:
                price, source = self._true_price_locked(pair, tick)
                markets[pair] = {"true_price": format_decimal(price), "source": source}
            return {
                "now_ms": self._time_ns() // 1_000_000,
                "uptime_ms": self.elapsed_ms(),
                "tick": tick,
                "tick_ms": self.tick_ms,
                "tick_time_ms": self.tick_time_ms(tick),
                "seed": self.seed,
                "csv": self.csv_path,
                "noise_ppm": self.noise_ppm,
                "markets": markets,
                "venues": {name: v.to_json() for name, v in self.venues.items()},
            }

    def endpoints(self) -> dict[str, dict[str, str]]:
        """venue -> pair -> path?query of its ticker: the body of ``GET /``."""
        out: dict[str, dict[str, str]] = {v: {} for v in self.venues}
        for (path, params), (venue, pair) in sorted(self.routes.items()):
            query = "&".join(f"{k}={val}" for k, val in params)
            out[venue][pair] = path + (f"?{query}" if query else "")
        return out


def _make_handler(sim: FeedSimulator) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a stopped server leaves no kept-alive connection answering.
        protocol_version = "HTTP/1.0"
        server_version = "perpchain-feeds/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body, sort_keys=True).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _read_json(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY_BYTES:
                raise ValueError("expected a JSON body")
            return json.loads(self.rfile.read(length))

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            url = urlsplit(self.path)
            if url.path == "/control/state":
                return self._send(200, sim.state())
            if url.path == "/":
                return self._send(200, {"venues": sim.endpoints(), "markets": sim.markets})
            params = tuple(sorted(parse_qsl(url.query, keep_blank_values=True)))
            route = sim.routes.get((url.path, params))
            if route is None:
                return self._batch(url.path, params)
            venue, pair = route
            try:
                quote = sim.quote(venue, pair)
            except VenueDown:
                return self._send(503, {"error": f"{venue} is down"})
            if quote.delay_ms:
                time.sleep(quote.delay_ms / 1000)  # each request has its own thread
            self._send(200, shape_for(venue).render(pair, quote.price, quote.time_ms))

        def _batch(self, path: str, params: Params) -> None:
            """A venue's many-markets endpoint (venues.VenueShape.batch_request); 404 if nothing matches."""
            venue = path.split("/")[1] if path.count("/") >= 2 else ""
            shape = shape_for(venue) if venue in sim.venues else None
            pairs = shape.batch_pairs(venue, path, params, list(sim.markets)) if shape and shape.batch else None
            if not pairs:
                return self._send(404, {"error": f"no ticker at {self.path}"})
            try:
                quotes = [(pair, sim.quote(venue, pair)) for pair in pairs]
            except VenueDown:
                return self._send(503, {"error": f"{venue} is down"})
            if quotes[0][1].delay_ms:
                time.sleep(quotes[0][1].delay_ms / 1000)
            self._send(200, shape.render_batch([(pair, q.price, q.time_ms) for pair, q in quotes]))

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            path = urlsplit(self.path).path
            try:
                body = self._read_json()
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                if path.startswith("/control/venue/"):
                    venue = path.removeprefix("/control/venue/")
                    if venue not in sim.venues:
                        return self._send(404, {"error": f"unknown venue {venue!r}"})
                    result = sim.set_venue_mode(venue, body.get("mode"), body.get("offset_ppm", 0),
                                                body.get("delay_ms", 0))
                    return self._send(200, {"venue": venue, **result})
                if path == "/control/price":
                    pair = body.get("pair")
                    if pair not in sim.markets:
                        return self._send(404, {"error": f"unknown market {pair!r}"})
                    raw = body.get("price")
                    price = None if raw is None else parse_positive_decimal(raw, "price")
                    return self._send(200, sim.pin_price(pair, price))
                return self._send(404, {"error": f"no control endpoint {path}"})
            except (ValueError, json.JSONDecodeError) as e:
                return self._send(400, {"error": str(e)})

    return Handler


class _HTTPServer(http.server.ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops SYNs when a daemon asks every venue for every market at once.
    request_queue_size = 256
    daemon_threads = True


class FeedServer:
    """A running simulator: ``url``, ``port``, ``simulator``; stop it with :meth:`close` (or use ``with``)."""

    def __init__(self, simulator: FeedSimulator, host: str, port: int) -> None:
        self.simulator = simulator
        self._httpd = _HTTPServer((host, port), _make_handler(simulator))
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"feeds-{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, close the listening socket and wait for the serving thread (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> "FeedServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_markets(spec: str) -> dict[str, str]:
    """``"BTC-USD=64000,ETH-USD=3000"`` -> ``{"BTC-USD": "64000", "ETH-USD": "3000"}`` (validated)."""
    markets: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        pair, sep, price = item.partition("=")
        if not sep:
            raise ValueError(f"market {item!r}: expected PAIR=PRICE")
        split_pair(pair.strip())
        parse_positive_decimal(price, f"start price of {pair}")
        markets[pair.strip()] = price.strip()
    if not markets:
        raise ValueError("no markets given")
    return markets


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    venues: Iterable[str] = DEFAULT_VENUES,
    markets: Mapping[str, Decimal | str] = DEFAULT_MARKETS,
    seed: int = 1,
    csv_path: str | pathlib.Path | None = None,
    *,
    noise_ppm: int = DEFAULT_NOISE_PPM,
    tick_ms: int = DEFAULT_TICK_MS,
) -> FeedServer:
    """Start the simulator in a background thread and return it; ``port=0`` picks a free port (see ``.url``).

    ``markets`` maps pair -> start price (decimal string); with ``csv_path`` the CSV's columns follow the CSV and
    are added to the markets if absent. Raises ValueError on bad arguments, OSError if the port is taken.
    """
    sim = FeedSimulator(venues, markets, seed, csv_path, noise_ppm=noise_ppm, tick_ms=tick_ms)
    return FeedServer(sim, host, port)
