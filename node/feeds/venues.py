"""Venue ticker endpoints: one definition of each venue's URL and JSON shape, shared by the simulator and the daemon.

Each venue quotes a market at its own path, with its own query parameters and its own response body. The feed
simulator (``node.feeds.simulator``) renders bodies with :meth:`VenueShape.render` and routes requests with
:meth:`VenueShape.request`; the price daemon (``node.daemons.pricefeed``) builds the same requests and reads the
answers with :meth:`VenueShape.parse`. Keeping both sides here means a shape cannot drift between them.

Units: prices are decimal strings on the wire and :class:`decimal.Decimal` in :class:`VenuePrint`; the time of a
print is unix milliseconds (``time_ms``). Every shape spells its timestamp differently (integer ms, ms string,
seconds string, ISO 8601) on purpose, so the parsers are exercised.

Known venue names (``binance``, ``okx``, ``bybit``, ``kraken``, ``coinbase``) have their own shape; any other valid
name gets the generic shape, so tests can add venues (``evil1``) freely. Every path starts with ``/<venue>/``.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import urlencode

DEFAULT_VENUES: tuple[str, ...] = ("binance", "okx", "bybit", "kraken", "coinbase")

_VENUE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PAIR = re.compile(r"^([A-Z0-9]{1,16})-([A-Z0-9]{1,16})$")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_ONE_MS = datetime.timedelta(milliseconds=1)

MAX_NUMBER_CHARS = 64  # longest price or timestamp text a venue may send
MAX_PRICE_EXPONENT = 30  # accepted prices lie in [1e-30, 1e30]

# Query parameters as sorted (name, value) pairs: hashable, so the simulator can route on them.
Params = tuple[tuple[str, str], ...]


class VenueParseError(ValueError):
    """A venue answered something that is not a well-formed ticker for the requested market."""


@dataclasses.dataclass(frozen=True)
class VenuePrint:
    """One venue's last trade for one market: ``price`` (quote units per base unit) at ``time_ms`` (unix ms)."""

    price: Decimal
    time_ms: int


def validate_venue_name(venue: str) -> str:
    """Return ``venue`` if it is usable as a URL segment (lowercase letters, digits, ``-``, ``_``); else raise."""
    if not _VENUE_NAME.match(venue):
        raise ValueError(f"invalid venue name {venue!r}: use 1-32 of a-z, 0-9, '-', '_' (starting with a letter/digit)")
    return venue


def split_pair(pair: str) -> tuple[str, str]:
    """``"BTC-USD"`` -> ``("BTC", "USD")``; raises ValueError on anything else."""
    m = _PAIR.match(pair)
    if not m:
        raise ValueError(f"invalid market pair {pair!r}: expected BASE-QUOTE, e.g. BTC-USD")
    return m.group(1), m.group(2)


def format_decimal(value: Decimal) -> str:
    """Plain decimal notation without exponent or trailing zeros: ``Decimal("4.2E+4")`` -> ``"42000"``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def parse_price(text: Any) -> Decimal:
    """A positive, finite decimal price from a JSON string; raises VenueParseError otherwise.

    Numbers are refused on purpose: a JSON float has already lost the exact decimal value.
    """
    if not isinstance(text, str):
        raise VenueParseError(f"price must be a decimal string, got {type(text).__name__}")
    if len(text) > MAX_NUMBER_CHARS:
        raise VenueParseError(f"price has {len(text)} characters, limit {MAX_NUMBER_CHARS}")
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise VenueParseError(f"price {text!r} is not a decimal") from None
    if not price.is_finite() or price <= 0:
        raise VenueParseError(f"price {text!r} is not a positive finite number")
    if not -MAX_PRICE_EXPONENT <= price.adjusted() <= MAX_PRICE_EXPONENT:
        # "1E+999999999" would overflow or stall the index arithmetic for seconds: a hostile print is just bad data.
        raise VenueParseError(f"price {text!r} is outside 1e-{MAX_PRICE_EXPONENT} .. 1e{MAX_PRICE_EXPONENT}")
    return price


def _int_ms(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or len(str(value)) > MAX_NUMBER_CHARS:
        raise VenueParseError(f"{what} must be an integer of milliseconds")
    try:
        ms = int(value)
    except ValueError:
        raise VenueParseError(f"{what} {value!r} is not an integer") from None
    if not 0 <= ms < 10**15:
        raise VenueParseError(f"{what} {ms} is not a time in unix milliseconds")
    return ms


def _get(obj: Any, *path: str | int) -> Any:
    """obj[path[0]][path[1]]... raising VenueParseError (not KeyError/TypeError) when the shape differs."""
    for key in path:
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            raise VenueParseError(f"missing field {key!r}") from None
    return obj


def iso8601_from_ms(time_ms: int) -> str:
    """Unix ms -> ``2024-04-05T12:34:56.789Z``."""
    dt = _EPOCH + datetime.timedelta(milliseconds=time_ms)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_from_iso8601(text: Any) -> int:
    """ISO 8601 with a zone (``Z`` or ``+hh:mm``) -> unix ms, truncating sub-millisecond digits."""
    if not isinstance(text, str):
        raise VenueParseError("time must be an ISO 8601 string")
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise VenueParseError(f"time {text!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise VenueParseError(f"time {text!r} has no time zone")
    return (dt - _EPOCH) // _ONE_MS


class VenueShape:
    """How one kind of venue spells a ticker request and its answer. Subclasses set ``kind``."""

    kind = "abstract"

    def request(self, venue: str, pair: str) -> tuple[str, Params]:
        """The path (starting ``/<venue>/``) and sorted query parameters that ask ``venue`` for ``pair``."""
        raise NotImplementedError

    def render(self, pair: str, price: str, time_ms: int) -> dict[str, Any]:
        """The JSON body of a ticker answer: ``price`` is a decimal string, ``time_ms`` unix ms."""
        raise NotImplementedError

    def parse(self, pair: str, body: Any) -> VenuePrint:
        """Read a ticker answer for ``pair``; raises VenueParseError on any other shape or market."""
        raise NotImplementedError

    # --- batch: one request for many markets (None / False where the venue has no such endpoint) ----------
    batch = False
    batch_all = False  # the batch endpoint answers every market whatever is asked: one request covers all pairs

    def batch_request(self, venue: str, pairs: list[str]) -> tuple[str, Params]:
        """Path and query parameters asking ``venue`` for all of ``pairs`` at once."""
        raise NotImplementedError

    def batch_pairs(self, venue: str, path: str, params: Params, known: list[str]) -> list[str] | None:
        """Simulator routing: the pairs a request asks for, if it is this venue's batch request (else None)."""
        return None

    def render_batch(self, rows: list[tuple[str, str, int]]) -> Any:
        """Body answering a batch request: ``rows`` of (pair, price, time_ms)."""
        raise NotImplementedError

    def parse_batch(self, pairs: list[str], body: Any) -> dict[str, VenuePrint]:
        """The prints of ``pairs`` found in a batch answer (missing pairs are absent); VenueParseError on a bad shape."""
        raise NotImplementedError


def _rows(body: Any, *path: str | int) -> list:
    rows = _get(body, *path) if path else body
    if not isinstance(rows, list):
        raise VenueParseError("expected a list of tickers")
    return rows


def _collect(pairs: list[str], symbol_of, rows: list, read) -> dict[str, VenuePrint]:
    """Match rows to requested pairs by venue symbol; ``read(row)`` -> (symbol, VenuePrint). Bad rows are skipped."""
    wanted = {symbol_of(p): p for p in pairs}
    out: dict[str, VenuePrint] = {}
    for row in rows:
        try:
            symbol, venue_print = read(row)
        except (VenueParseError, ArithmeticError):
            continue
        if not isinstance(symbol, str):
            continue
        pair = wanted.get(symbol)
        if pair is not None:
            out[pair] = venue_print
    return out


def _concat_symbol(pair: str, quote_alias: str = "USDT") -> str:
    base, quote = split_pair(pair)
    # The USD-tether venues quote USD markets in USDT; the simulator treats both as USD.
    return base + (quote_alias if quote == "USD" else quote)


class BinanceShape(VenueShape):
    """``GET /binance/api/v3/ticker/price?symbol=BTCUSDT`` -> ``{"symbol", "price", "time": <int ms>}``."""

    kind = "binance"

    def request(self, venue: str, pair: str) -> tuple[str, Params]:
        return f"/{venue}/api/v3/ticker/price", (("symbol", _concat_symbol(pair)),)

    def render(self, pair: str, price: str, time_ms: int) -> dict[str, Any]:
        return {"symbol": _concat_symbol(pair), "price": price, "time": time_ms}

    def parse(self, pair: str, body: Any) -> VenuePrint:
        if _get(body, "symbol") != _concat_symbol(pair):
            raise VenueParseError(f"answer is for {_get(body, 'symbol')!r}, not {pair}")
        return VenuePrint(parse_price(_get(body, "price")), _int_ms(_get(body, "time"), "time"))

    # ``GET /binance/api/v3/ticker/price?symbols=["BTCUSDT","ETHUSDT"]`` -> ``[{"symbol", "price", "time"}, ...]``
    batch = True

    def batch_request(self, venue: str, pairs: list[str]) -> tuple[str, Params]:
        symbols = "[" + ",".join(f'"{_concat_symbol(p)}"' for p in pairs) + "]"
        return f"/{venue}/api/v3/ticker/price", (("symbols", symbols),)

    def batch_pairs(self, venue: str, path: str, params: Params, known: list[str]) -> list[str] | None:
        d = dict(params)
        if path != f"/{venue}/api/v3/ticker/price" or set(d) != {"symbols"}:
            return None
        by_symbol = {_concat_symbol(p): p for p in known}
        try:
            symbols = [x.strip().strip('"') for x in d["symbols"].strip().removeprefix("[").removesuffix("]").split(",")]
        except AttributeError:
            return None
        return [by_symbol[x] for x in symbols if x in by_symbol]

    def render_batch(self, rows: list[tuple[str, str, int]]) -> Any:
        return [self.render(pair, price, t) for pair, price, t in rows]

    def parse_batch(self, pairs: list[str], body: Any) -> dict[str, VenuePrint]:
        return _collect(pairs, _concat_symbol, _rows(body), lambda r: (
            _get(r, "symbol"), VenuePrint(parse_price(_get(r, "price")), _int_ms(_get(r, "time"), "time"))))


class OkxShape(VenueShape):
    """``GET /okx/api/v5/market/ticker?instId=BTC-USDT`` -> ``{"code": "0", "data": [{"instId", "last", "ts": "<ms>"}]}``."""

    kind = "okx"

    @staticmethod
    def _inst_id(pair: str) -> str:
        base, quote = split_pair(pair)
        return f"{base}-{'USDT' if quote == 'USD' else quote}"

    def request(self, venue: str, pair: str) -> tuple[str, Params]:
        return f"/{venue}/api/v5/market/ticker", (("instId", self._inst_id(pair)),)

    def render(self, pair: str, price: str, time_ms: int) -> dict[str, Any]:
        return {"code": "0", "msg": "", "data": [{"instId": self._inst_id(pair), "last": price, "ts": str(time_ms)}]}

    def parse(self, pair: str, body: Any) -> VenuePrint:
        if _get(body, "code") != "0":
            raise VenueParseError(f"error code {_get(body, 'code')!r}: {body.get('msg', '')}")
        row = _get(body, "data", 0)
        if _get(row, "instId") != self._inst_id(pair):
            raise VenueParseError(f"answer is for {_get(row, 'instId')!r}, not {pair}")
        return VenuePrint(parse_price(_get(row, "last")), _int_ms(_get(row, "ts"), "ts"))

    # ``GET /okx/api/v5/market/tickers?instType=SPOT`` -> every spot market: ``{"code": "0", "data": [...]}``
    batch = True
    batch_all = True

    def batch_request(self, venue: str, pairs: list[str]) -> tuple[str, Params]:
        return f"/{venue}/api/v5/market/tickers", (("instType", "SPOT"),)

    def batch_pairs(self, venue: str, path: str, params: Params, known: list[str]) -> list[str] | None:
        return list(known) if (path, params) == self.batch_request(venue, []) else None

    def render_batch(self, rows: list[tuple[str, str, int]]) -> Any:
        return {"code": "0", "msg": "", "data": [{"instId": self._inst_id(pair), "last": price, "ts": str(t)}
                                                for pair, price, t in rows]}

    def parse_batch(self, pairs: list[str], body: Any) -> dict[str, VenuePrint]:
        if _get(body, "code") != "0":
            raise VenueParseError(f"error code {_get(body, 'code')!r}: {body.get('msg', '')}")
        return _collect(pairs, self._inst_id, _rows(body, "data"), lambda r: (
            _get(r, "instId"), VenuePrint(parse_price(_get(r, "last")), _int_ms(_get(r, "ts"), "ts"))))


class BybitShape(VenueShape):
    """``GET /bybit/v5/market/tickers?category=spot&symbol=BTCUSDT`` ->
    ``{"retCode": 0, "result": {"list": [{"symbol", "lastPrice"}]}, "time": <int ms>}``."""

    kind = "bybit"

    def request(self, venue: str, pair: str) -> tuple[str, Params]:
        return f"/{venue}/v5/market/tickers", (("category", "spot"), ("symbol", _concat_symbol(pair)))

    def render(self, pair: str, price: str, time_ms: int) -> dict[str, Any]:
        return {
            "retCode": 0,
            "retMsg": "OK",
            "result": {"category": "spot", "list": [{"symbol": _concat_symbol(pair), "lastPrice": price}]},
            "time": time_ms,
        }

    def parse(self, pair: str, body: Any) -> VenuePrint:
        if _get(body, "retCode") != 0:
            raise VenueParseError(f"retCode {_get(body, 'retCode')!r}: {body.get('retMsg', '')}")
        row = _get(body, "result", "list", 0)
        if _get(row, "symbol") != _concat_symbol(pair):
            raise VenueParseError(f"answer is for {_get(row, 'symbol')!r}, not {pair}")
        return VenuePrint(parse_price(_get(row, "lastPrice")), _int_ms(_get(body, "time"), "time"))

    # ``GET /bybit/v5/market/tickers?category=spot`` -> every spot market in ``result.list``
    batch = True
    batch_all = True

    def batch_request(self, venue: str, pairs: list[str]) -> tuple[str, Params]:
        return f"/{venue}/v5/market/tickers", (("category", "spot"),)

    def batch_pairs(self, venue: str, path: str, params: Params, known: list[str]) -> list[str] | None:
        return list(known) if (path, params) == self.batch_request(venue, []) else None

    def render_batch(self, rows: list[tuple[str, str, int]]) -> Any:
        return {"retCode": 0, "retMsg": "OK", "time": max((t for _, _, t in rows), default=0),
                "result": {"category": "spot",
                           "list": [{"symbol": _concat_symbol(pair), "lastPrice": price} for pair, price, _ in rows]}}

    def parse_batch(self, pairs: list[str], body: Any) -> dict[str, VenuePrint]:
        if _get(body, "retCode") != 0:
            raise VenueParseError(f"retCode {_get(body, 'retCode')!r}: {body.get('retMsg', '')}")
        t = _int_ms(_get(body, "time"), "time")
        return _collect(pairs, _concat_symbol, _rows(body, "result", "list"), lambda r: (
            _get(r, "symbol"), VenuePrint(parse_price(_get(r, "lastPrice")), t)))


class KrakenShape(VenueShape):
    """``GET /kraken/0/public/Ticker?pair=XBTUSD`` ->
    ``{"error": [], "result": {"XBTUSD": {"c": ["<price>", "<lot volume>"]}}, "ts": "<unix seconds.mmm>"}``."""

    kind = "kraken"
    _ALIASES = {"BTC": "XBT"}

    def _symbol(self, pair: str) -> str:
        base, quote = split_pair(pair)
        return self._ALIASES.get(base, base) + quote

    def request(self, venue: str, pair: str) -> tuple[str, Params]:
        return f"/{venue}/0/public/Ticker", (("pair", self._symbol(pair)),)

    def render(self, pair: str, price: str, time_ms: int) -> dict[str, Any]:
        seconds = format(Decimal(time_ms).scaleb(-3), "f")
        return {"error": [], "result": {self._symbol(pair): {"c": [price, "0.01000000"]}}, "ts": seconds}

    def parse(self, pair: str, body: Any) -> VenuePrint:
        errors = _get(body, "error")
        if errors:
            raise VenueParseError(f"venue error {errors!r}")
        price = parse_price(_get(body, "result", self._symbol(pair), "c", 0))
        return VenuePrint(price, self._ts_ms(body))

    @staticmethod
    def _ts_ms(body: Any) -> int:
        ts = _get(body, "ts")
        if not isinstance(ts, str) or len(ts) > MAX_NUMBER_CHARS:
            raise VenueParseError("ts must be a decimal string of unix seconds")
        try:
            seconds = Decimal(ts)
        except InvalidOperation:
            raise VenueParseError(f"ts {ts!r} is not a decimal") from None
        if not seconds.is_finite() or seconds < 0 or seconds.adjusted() > 12:
            raise VenueParseError(f"ts {ts!r} is not a time")
        return int(seconds.scaleb(3))

    # ``GET /kraken/0/public/Ticker?pair=XBTUSD,ETHUSD`` -> ``result`` keyed by every requested symbol
    batch = True

    def batch_request(self, venue: str, pairs: list[str]) -> tuple[str, Params]:
        return f"/{venue}/0/public/Ticker", (("pair", ",".join(self._symbol(p) for p in pairs)),)

    def batch_pairs(self, venue: str, path: str, params: Params, known: list[str]) -> list[str] | None:
        d = dict(params)
        if path != f"/{venue}/0/public/Ticker" or set(d) != {"pair"} or "," not in d["pair"]:
            return None
        by_symbol = {self._symbol(p): p for p in known}
        return [by_symbol[x] for x in d["pair"].split(",") if x in by_symbol]

    def render_batch(self, rows: list[tuple[str, str, int]]) -> Any:
        t = max((t for _, _, t in rows), default=0)
        return {"error": [], "result": {self._symbol(pair): {"c": [price, "0.01000000"]} for pair, price, _ in rows},
                "ts": format(Decimal(t).scaleb(-3), "f")}

    def parse_batch(self, pairs: list[str], body: Any) -> dict[str, VenuePrint]:
        errors = _get(body, "error")
        if errors:
            raise VenueParseError(f"venue error {errors!r}")
        result, t = _get(body, "result"), self._ts_ms(body)
        if not isinstance(result, dict):
            raise VenueParseError("result must be an object")
        return _collect(pairs, self._symbol, list(result.items()), lambda kv: (
            kv[0], VenuePrint(parse_price(_get(kv[1], "c", 0)), t)))


class CoinbaseShape(VenueShape):
    """``GET /coinbase/products/BTC-USD/ticker`` -> ``{"trade_id", "price", "size", "time": "<ISO 8601>"}``."""

    kind = "coinbase"

    def request(self, venue: str, pair: str) -> tuple[str, Params]:
        split_pair(pair)
        return f"/{venue}/products/{pair}/ticker", ()

    def render(self, pair: str, price: str, time_ms: int) -> dict[str, Any]:
        return {"trade_id": time_ms, "price": price, "size": "0.01000000", "time": iso8601_from_ms(time_ms)}

    def parse(self, pair: str, body: Any) -> VenuePrint:
        return VenuePrint(parse_price(_get(body, "price")), ms_from_iso8601(_get(body, "time")))


class GenericShape(VenueShape):
    """Any other venue: ``GET /<venue>/ticker/BTC-USD`` -> ``{"pair", "price", "timestamp_ms": <int ms>}``."""

    kind = "generic"

    def request(self, venue: str, pair: str) -> tuple[str, Params]:
        split_pair(pair)
        return f"/{venue}/ticker/{pair}", ()

    def render(self, pair: str, price: str, time_ms: int) -> dict[str, Any]:
        return {"pair": pair, "price": price, "timestamp_ms": time_ms}

    def parse(self, pair: str, body: Any) -> VenuePrint:
        if _get(body, "pair") != pair:
            raise VenueParseError(f"answer is for {_get(body, 'pair')!r}, not {pair}")
        return VenuePrint(parse_price(_get(body, "price")), _int_ms(_get(body, "timestamp_ms"), "timestamp_ms"))

    # ``GET /<venue>/tickers?pairs=BTC-USD,ETH-USD`` -> ``{"tickers": [{"pair", "price", "timestamp_ms"}, ...]}``
    batch = True

    def batch_request(self, venue: str, pairs: list[str]) -> tuple[str, Params]:
        return f"/{venue}/tickers", (("pairs", ",".join(pairs)),)

    def batch_pairs(self, venue: str, path: str, params: Params, known: list[str]) -> list[str] | None:
        d = dict(params)
        if path != f"/{venue}/tickers" or set(d) != {"pairs"}:
            return None
        return [p for p in d["pairs"].split(",") if p in known]

    def render_batch(self, rows: list[tuple[str, str, int]]) -> Any:
        return {"tickers": [self.render(pair, price, t) for pair, price, t in rows]}

    def parse_batch(self, pairs: list[str], body: Any) -> dict[str, VenuePrint]:
        return _collect(pairs, lambda p: p, _rows(body, "tickers"), lambda r: (
            _get(r, "pair"), VenuePrint(parse_price(_get(r, "price")), _int_ms(_get(r, "timestamp_ms"), "timestamp_ms"))))


SHAPES: Mapping[str, VenueShape] = {
    s.kind: s for s in (BinanceShape(), OkxShape(), BybitShape(), KrakenShape(), CoinbaseShape())
}
GENERIC_SHAPE: VenueShape = GenericShape()


def shape_for(venue: str) -> VenueShape:
    """The shape of a venue: its own for a known name, the generic one for any other valid name."""
    return SHAPES.get(validate_venue_name(venue), GENERIC_SHAPE)


def ticker_request(venue: str, pair: str) -> tuple[str, Params]:
    """Path and sorted query parameters asking ``venue`` for its last print of ``pair``."""
    path, params = shape_for(venue).request(venue, pair)
    return path, tuple(sorted(params))


def ticker_url(base_url: str, venue: str, pair: str) -> str:
    """Absolute URL of ``venue``'s ticker for ``pair`` under the simulator at ``base_url``."""
    path, params = ticker_request(venue, pair)
    return base_url.rstrip("/") + path + (f"?{urlencode(params)}" if params else "")


def batch_url(base_url: str, venue: str, pairs: list[str]) -> str | None:
    """Absolute URL asking ``venue`` for all of ``pairs`` at once, or None if the venue has no batch endpoint."""
    shape = shape_for(venue)
    if not shape.batch:
        return None
    path, params = shape.batch_request(venue, pairs)
    return base_url.rstrip("/") + path + (f"?{urlencode(sorted(params))}" if params else "")


def parse_batch(venue: str, pairs: list[str], body: Any) -> dict[str, VenuePrint]:
    """The prints of ``pairs`` in ``venue``'s batch answer; raises VenueParseError on a bad shape."""
    return shape_for(venue).parse_batch(pairs, body)


def parse_ticker(venue: str, pair: str, body: Any) -> VenuePrint:
    """Read ``venue``'s JSON answer for ``pair``; raises VenueParseError when it is not a valid ticker."""
    return shape_for(venue).parse(pair, body)
