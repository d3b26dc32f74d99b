"""Markets in human units <-> chain integers, exact (client side: the CLI, the market maker, tests).

Units (dYdX v4, docs/exchange.md):
  coins          = base quantums × 10^atomic_resolution
  USD per coin   = subticks × 10^(QCE − atomic_resolution − 6)     (QCE = quantum_conversion_exponent)
so base quantums = size × 10^(−atomic_resolution) and subticks = price × 10^(6 + atomic_resolution − QCE).
An order's size must be a positive multiple of the pair's ``step_base_quantums`` and its price a positive multiple
of ``subticks_per_tick``. Text is parsed with :class:`decimal.Decimal` (exact) and converted with integer
arithmetic on its digits, never with floats or a rounding Decimal context; a value that does not convert exactly
is refused with the nearest valid values in human units, before anything is signed.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
import time
from decimal import Decimal

from perpchain.v1 import exchange_pb2, tx_pb2

from app.clob.actions import MAX_ORDER_QUANTUMS
from app.clob.keys import LONG_TERM, SHORT_TERM
from app.lib.math import UINT64_MAX
from app.lib.units import format_scaled
from node.client.units import DECIMAL_RE, UnitError, clip_text

QUOTE_ATOMIC_RESOLUTION = -6  # 1 quote quantum = 10^-6 USDC
ONE_MILLION = 1_000_000
_MAX_DIGITS = 40  # significant digits of a decimal's integer part, and of its fraction (parse_decimal)
# each unit at most once, largest first: '1h30m', never '1d1d' or '30m1h'
# Each unit at most once, largest first; any part may carry a decimal fraction of at most 9 digits (a nanosecond
# of a second, so every such duration is a whole number of nanoseconds): 1.5s, 0.25h, 1h0.5m.
_DURATION_PART = r"[0-9]+(?:\.[0-9]{1,9})?"
_DURATION_RE = re.compile("^(?=.)" + "".join(f"(?:{_DURATION_PART}{unit})?" for unit in "dhms") + "$", re.ASCII)
_DURATION_PART_RE = re.compile(r"([0-9]+)(?:\.([0-9]{1,9}))?([dhms])", re.ASCII)
_DURATION_NS = {"d": 86_400 * 10**9, "h": 3_600 * 10**9, "m": 60 * 10**9, "s": 10**9}
_RFC3339_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$",
                         re.ASCII)


class MarketError(UnitError):
    """A value that does not fit the market (off step or tick, unknown market, out of range): one clear line."""


@dataclasses.dataclass(frozen=True)
class Market:
    """One tradable perpetual and its clob pair, as the ``/perpetuals/list`` query answers it."""

    ticker: str
    perpetual_id: int
    clob_pair_id: int
    atomic_resolution: int
    quantum_conversion_exponent: int
    step_base_quantums: int
    subticks_per_tick: int
    status: str = "active"

    @property
    def base_asset(self) -> str:
        """'BTC' of 'BTC-USD' (the unit of sizes)."""
        return self.ticker.split("-")[0]

    @property
    def quote_asset(self) -> str:
        """'USD' of 'BTC-USD' (the unit of prices)."""
        parts = self.ticker.split("-")
        return parts[1] if len(parts) > 1 else "USD"

    @property
    def subticks_exponent(self) -> int:
        """subticks = USD per coin × 10^this."""
        return -QUOTE_ATOMIC_RESOLUTION + self.atomic_resolution - self.quantum_conversion_exponent

    @staticmethod
    def from_query(entry: dict) -> "Market":
        """From one item of the ``/perpetuals/list`` answer (it must have a ``clob_pair``)."""
        pair = entry["clob_pair"]
        return Market(ticker=entry["ticker"], perpetual_id=int(entry["id"]), clob_pair_id=int(pair["id"]),
                      atomic_resolution=int(entry["atomic_resolution"]),
                      quantum_conversion_exponent=int(pair["quantum_conversion_exponent"]),
                      step_base_quantums=int(pair["step_base_quantums"]),
                      subticks_per_tick=int(pair["subticks_per_tick"]), status=pair.get("status", "active"))


def markets_from_query(answer: dict) -> list[Market]:
    """Every perpetual of a ``/perpetuals/list`` answer that has a clob pair, in the answer's (id) order."""
    return [Market.from_query(p) for p in answer["perpetuals"] if p.get("clob_pair") is not None]


def find_market(markets: list[Market], name: str) -> Market:
    """A market by ticker (any case) or clob pair id; else MarketError listing the markets."""
    for m in markets:
        if m.ticker.upper() == name.upper() or (name.isascii() and name.isdigit() and int(name) == m.clob_pair_id):
            return m
    listed = ", ".join(m.ticker for m in markets) or "(none)"
    raise MarketError(f"no market {name!r}; markets: {listed}")


def market_of_pair(markets: list[Market], clob_pair_id: int) -> Market | None:
    return next((m for m in markets if m.clob_pair_id == clob_pair_id), None)


# --- decimals ----------------------------------------------------------------------------------------------------

def parse_decimal(text: str, what: str) -> Decimal:
    """A plain non-negative decimal ('0.25', '64250', '.5'); refuses signs, exponents, NaN, other scripts' digits."""
    t = text.strip()
    if t.startswith("-"):
        raise MarketError(f"{what} must be positive, got {clip_text(text)}")
    if not DECIMAL_RE.match(t):
        raise MarketError(f"{what} {clip_text(text)} is not a decimal number")
    whole, _, frac = t.partition(".")
    # Bounded before any int() of the digits (Python refuses to parse over 4300): no valid size, price or fraction
    # comes near either limit (uint64 has 20 digits; no market's step or tick is below 1e-40).
    if len(whole.lstrip("0")) > _MAX_DIGITS:
        raise MarketError(f"{what} {clip_text(t)} is far beyond any valid value")
    if len(frac.rstrip("0")) > _MAX_DIGITS:
        raise MarketError(f"{what} {clip_text(t)} has far more decimals than any valid {what}")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    return Decimal(whole + "." + frac if frac else whole)  # exact: construction from a string never rounds


def scaled_fraction(value: Decimal, shift: int) -> tuple[int, int]:
    """value × 10^shift as (numerator, denominator), exactly; the denominator is a power of ten."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise MarketError(f"{value} is not a finite number")
    mantissa = int("".join(map(str, digits)) or "0")
    if sign:
        mantissa = -mantissa
    e = exponent + shift
    return (mantissa * 10**e, 1) if e >= 0 else (mantissa, 10**-e)


def _nearest(lo: int, step: int, show) -> str:
    """'A or B' (the two multiples of step around a value), or just 'B' when A would be 0."""
    return f"{show(lo)} or {show(lo + step)}" if lo > 0 else show(step)


# --- sizes -------------------------------------------------------------------------------------------------------

def base_quantums_to_size(market: Market, base_quantums: int) -> str:
    """Base quantums -> coins, exact decimal text ('2500000000' -> '0.25' on BTC)."""
    return format_scaled(base_quantums, market.atomic_resolution)


def size_to_base_quantums(market: Market, size: str | Decimal) -> int:
    """Coins -> base quantums: size × 10^(−atomic_resolution), which must be a positive multiple of the step.

    Raises MarketError naming the step and the nearest valid sizes (in coins) otherwise.
    """
    value = parse_decimal(size, "size") if isinstance(size, str) else size
    shown = size.strip() if isinstance(size, str) else str(size)
    base, step = market.base_asset, market.step_base_quantums
    num, den = scaled_fraction(value, -market.atomic_resolution)
    step_text = base_quantums_to_size(market, step)
    if num <= 0:
        raise MarketError(f"size must be positive, got {shown} {base} (the step is {step_text} {base})")
    if num % (den * step):
        lo = num // (den * step) * step
        raise MarketError(f"size {shown} {base} is not a multiple of the step {step_text} {base}; nearest valid: "
                          + _nearest(lo, step, lambda q: base_quantums_to_size(market, q)))
    quantums = num // den
    if quantums > MAX_ORDER_QUANTUMS:
        largest = MAX_ORDER_QUANTUMS - MAX_ORDER_QUANTUMS % step
        raise MarketError(f"size {shown} {base} is above the largest order size "
                          f"{base_quantums_to_size(market, largest)} {base}")
    return quantums


# --- prices ------------------------------------------------------------------------------------------------------

def subticks_to_price(market: Market, subticks: int) -> str:
    """Subticks -> USD per coin, exact decimal text ('6425000000' -> '64250' on BTC)."""
    return format_scaled(subticks, -market.subticks_exponent)


def price_to_subticks(market: Market, price: str | Decimal) -> int:
    """USD per coin -> subticks: price × 10^(6 + atomic_resolution − QCE), a positive multiple of the tick that fits
    uint64. Raises MarketError naming the tick and the nearest valid prices (in USD) otherwise."""
    value = parse_decimal(price, "price") if isinstance(price, str) else price
    shown = price.strip() if isinstance(price, str) else str(price)
    quote, tick = market.quote_asset, market.subticks_per_tick
    num, den = scaled_fraction(value, market.subticks_exponent)
    tick_text = subticks_to_price(market, tick)
    if num <= 0:
        raise MarketError(f"price must be positive, got {shown} {quote} (the tick is {tick_text} {quote})")
    if num % (den * tick):
        lo = num // (den * tick) * tick
        raise MarketError(f"price {shown} {quote} is not a multiple of the tick {tick_text} {quote}; nearest valid: "
                          + _nearest(lo, tick, lambda s: subticks_to_price(market, s)))
    subticks = num // den
    if subticks > UINT64_MAX:
        largest = UINT64_MAX - UINT64_MAX % tick
        raise MarketError(f"price {shown} {quote} is above the largest price this market can express "
                          f"({subticks_to_price(market, largest)} {quote})")
    return subticks


def notional_usdc(market: Market, base_quantums: int, subticks: int) -> str:
    """USDC value of base_quantums at subticks (exact): quote quantums = base quantums × subticks × 10^QCE."""
    return format_scaled(base_quantums * subticks, market.quantum_conversion_exponent + QUOTE_ATOMIC_RESOLUTION)


# --- fractions, durations, times ---------------------------------------------------------------------------------

def fraction_to_ppm(text: str, what: str) -> int:
    """'0.05' -> 50_000 parts per million; must be in (0, 1) with at most 6 decimals."""
    num, den = scaled_fraction(parse_decimal(text, what), 6)
    if num % den:
        raise MarketError(f"{what} {text.strip()} has more than 6 decimals (1 ppm = 0.000001)")
    ppm = num // den
    if not 0 < ppm < ONE_MILLION:
        raise MarketError(f"{what} must be a fraction above 0 and below 1 (0.05 = 5 %), got {text.strip()}")
    return ppm


def parse_duration_ns(text: str) -> int:
    """'90s', '10m', '2h', '1d', '1.5s' or combinations like '1h30m' -> nanoseconds (> 0), exactly.

    A part may have a decimal fraction of up to 9 digits (what :func:`format_duration_ns` prints, e.g. '1.5s', reads
    back to the same nanoseconds); the smallest unit is a second, so the result is always whole nanoseconds.
    """
    t = text.strip().lower()
    if t.startswith("-") and _DURATION_RE.match(t[1:]):
        raise MarketError(f"duration {clip_text(text)} must be positive: it counts forward from the latest block time")
    if not _DURATION_RE.match(t):
        raise MarketError(f"duration {clip_text(text)} is not like 90s, 10m, 2h, 1d, 1.5s or 1h30m (units d, h, m, s, "
                          "each at most once, largest first; a fraction has at most 9 digits)")
    if len(t) > 64:  # bounded before int(): Python refuses to parse over 4300 digits; no window is near 64 digits
        raise MarketError(f"duration {clip_text(text)} is far beyond any window")
    ns = 0
    for whole, frac, unit in _DURATION_PART_RE.findall(t):
        # unit ns x fraction: every unit is a multiple of 10^9 ns, so the product of a <= 9-digit fraction is exact
        ns += int(whole) * _DURATION_NS[unit] + int(frac or "0") * _DURATION_NS[unit] // 10 ** len(frac)
    if ns == 0:
        raise MarketError(f"duration {text!r} must be positive")
    return ns


def parse_rfc3339_ns(text: str) -> int:
    """CometBFT's block time ('2024-05-01T12:00:00.123456789Z') -> Unix nanoseconds, exactly."""
    m = _RFC3339_RE.match(text.strip())
    if not m:
        raise MarketError(f"time {text!r} is not RFC 3339")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    return seconds * 10**9 + int((m.group(7) or "").ljust(9, "0"))


def format_rfc3339_ns(ns: int) -> str:
    """Unix nanoseconds -> RFC 3339 UTC with the fraction it needs ('2023-11-14T22:13:20.5Z')."""
    seconds, frac = divmod(ns, 10**9)
    year, month, day, hour, minute, second = time.gmtime(seconds)[:6]
    fraction = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}Z"


def format_duration_ns(ns: int) -> str:
    """Nanoseconds -> the largest whole unit text ('95d', '10m', '1500ms' as '1.5s')."""
    for unit in ("d", "h", "m", "s"):
        if ns % _DURATION_NS[unit] == 0:
            return f"{ns // _DURATION_NS[unit]}{unit}"
    return f"{format_scaled(ns, -9)}s"


# --- order actions -----------------------------------------------------------------------------------------------

SIDES = {"buy": exchange_pb2.SIDE_BUY, "sell": exchange_pb2.SIDE_SELL}
TIME_IN_FORCE = {"gtc": exchange_pb2.TIME_IN_FORCE_UNSPECIFIED, "ioc": exchange_pb2.TIME_IN_FORCE_IOC,
                 "fok": exchange_pb2.TIME_IN_FORCE_FILL_OR_KILL, "post-only": exchange_pb2.TIME_IN_FORCE_POST_ONLY}


def place_order_action(market: Market, *, side: str, base_quantums: int, subticks: int, client_id: int,
                       subaccount_number: int = 0, good_til_block: int = 0, good_til_block_time_ns: int = 0,
                       time_in_force: str = "gtc", reduce_only: bool = False,
                       market_slippage_ppm: int = 0) -> tx_pb2.OrderAction:
    """A PlaceOrder action (short-term with good_til_block, long-term with good_til_block_time_ns; a market order
    has subticks 0 and market_slippage_ppm > 0). Integers in chain units: use the converters above first."""
    return tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(
        subaccount_number=subaccount_number, client_id=client_id, clob_pair_id=market.clob_pair_id,
        side=SIDES[side], quantums=base_quantums, subticks=subticks, good_til_block=good_til_block,
        good_til_block_time_ns=good_til_block_time_ns, time_in_force=TIME_IN_FORCE[time_in_force],
        reduce_only=reduce_only, market_slippage_ppm=market_slippage_ppm))


def cancel_order_action(market: Market, client_id: int, subaccount_number: int = 0,
                        long_term: bool = False) -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(
        subaccount_number=subaccount_number, client_id=client_id, clob_pair_id=market.clob_pair_id,
        order_flags=LONG_TERM if long_term else SHORT_TERM)))


def batch_cancel_action(market: Market, client_ids: list[int], subaccount_number: int = 0,
                        long_term: bool = False) -> tx_pb2.OrderAction:
    """Cancels the listed client ids on the market, or every resting order of that kind when the list is empty."""
    return tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(
        subaccount_number=subaccount_number, clob_pair_id=market.clob_pair_id, client_ids=client_ids,
        order_flags=LONG_TERM if long_term else SHORT_TERM))


def msg_orders(owner: str, actions: list[tx_pb2.OrderAction]) -> tx_pb2.Msg:
    return tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=owner, actions=actions))
