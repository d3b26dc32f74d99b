"""Quote math of the reference market maker: exact unit conversions and the round's plan (pure; no I/O).

Units (dYdX v4; the chain's /perpetuals/list answer carries every parameter):
- 1 base quantum = 10^atomic_resolution coins;
- a price of S subticks = S x 10^(QCE - atomic_resolution - 6) USD per coin, QCE being the clob pair's
  quantum_conversion_exponent (so a fill's quote quantums = subticks x base quantums x 10^QCE);
- 1 bps = 1/10000.

Everything is exact (``fractions.Fraction`` from the chain's exact decimal strings, never a float). Rounding:
a bid rounds down to the tick and an ask up (a quote is never better for the taker than asked); a size rounds to
the nearest step, at least one step.

A plan keeps ``levels`` post-only bids and asks per market in fixed slots: slot (side, level) has its own client id,
so a quote is refreshed with a cancel-replace of its own slot (the cancel runs first in the block, the placement
only if the cancel succeeded: never two live quotes for one slot) and quotes that already sit at the wanted price
and size keep their time priority.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from fractions import Fraction

from app.lib.units import format_scaled

BPS = 10_000
BUY, SELL = "buy", "sell"
SIDES = (BUY, SELL)
# Client ids of the maker's quotes: base + (side << 8) + level; orders of the subaccount outside this range are
# someone else's business (a person trading by hand with the same key) and are never touched.
CLIENT_ID_BASE = 0x4D4D0000  # "MM\0\0"
MAX_LEVELS = 100
MAX_ACTIONS_PER_TX = 200  # the chain's limit per MsgOrders (app/clob/handlers.py)
QUOTABLE_STATUSES = ("active", "post-only")  # post-only quotes are accepted in both


class QuoteError(ValueError):
    pass


# --- conversions ---------------------------------------------------------------------------------------------

def to_fraction(value: str | Decimal | int | Fraction) -> Fraction:
    """An exact decimal (string, Decimal or int) as a Fraction; QuoteError on anything else (NaN, '1e', floats)."""
    if isinstance(value, float):
        raise QuoteError("floats are not exact: pass a decimal string")
    try:
        return Fraction(value)
    except (ValueError, TypeError, ArithmeticError):
        raise QuoteError(f"{value!r} is not a decimal number") from None


def usd_to_subticks(price_usd: Fraction, atomic_resolution: int, quantum_conversion_exponent: int) -> Fraction:
    """USD per coin -> subticks, exactly: price x 10^(atomic_resolution + 6 - QCE).

    BTC-USD (atomic -10, QCE -9): $64,000 -> 64000 x 10^5 = 6_400_000_000 subticks."""
    return price_usd * Fraction(10) ** (atomic_resolution + 6 - quantum_conversion_exponent)


def subticks_to_usd(subticks: int, atomic_resolution: int, quantum_conversion_exponent: int) -> str:
    """Subticks -> USD per coin as an exact decimal string (the chain's own formatting)."""
    return format_scaled(subticks, quantum_conversion_exponent - atomic_resolution - 6)


def coins_to_quantums(coins: Fraction, atomic_resolution: int) -> Fraction:
    """Coins -> base quantums, exactly: coins x 10^-atomic_resolution (PEPE, atomic 1: 10 PEPE = 1 quantum)."""
    return coins * Fraction(10) ** -atomic_resolution


def floor_to_multiple(x: Fraction, m: int) -> int:
    return int(x // m) * m


def ceil_to_multiple(x: Fraction, m: int) -> int:
    return -int(-x // m) * m


def quote_subticks(oracle_subticks: Fraction, offset_bps: int, side: str, tick_subticks: int) -> int:
    """A quote's price: oracle x (1 - offset) rounded down to the tick for a bid, x (1 + offset) rounded up for an
    ask. A bid can come out 0 (a price too small for the tick): the caller drops it."""
    if side == BUY:
        return floor_to_multiple(oracle_subticks * (BPS - offset_bps) / BPS, tick_subticks)
    return ceil_to_multiple(oracle_subticks * (BPS + offset_bps) / BPS, tick_subticks)


def quote_quantums(size_usd: Fraction, oracle_usd: Fraction, atomic_resolution: int, step_base_quantums: int) -> int:
    """The quote size: size_usd / oracle in base quantums, to the nearest step (half up), at least one step."""
    steps = coins_to_quantums(size_usd / oracle_usd, atomic_resolution) / step_base_quantums
    return max(1, int(steps + Fraction(1, 2))) * step_base_quantums


# --- the chain's view ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Market:
    """One perpetual and its clob pair, as /perpetuals/list describes it."""

    ticker: str
    clob_pair_id: int
    atomic_resolution: int
    quantum_conversion_exponent: int
    subticks_per_tick: int
    step_base_quantums: int
    status: str
    oracle_usd: Fraction | None  # None: no oracle price yet
    oracle_stale: bool

    @property
    def oracle_subticks(self) -> Fraction:
        assert self.oracle_usd is not None
        return usd_to_subticks(self.oracle_usd, self.atomic_resolution, self.quantum_conversion_exponent)

    def usd(self, subticks: int) -> str:
        return subticks_to_usd(subticks, self.atomic_resolution, self.quantum_conversion_exponent)


def parse_markets(answer: dict) -> list[Market]:
    """The /perpetuals/list answer -> markets (perpetuals without a clob pair are left out)."""
    out = []
    for p in answer.get("perpetuals", []):
        pair = p.get("clob_pair")
        if not pair:
            continue
        price = p.get("oracle_price")
        out.append(Market(
            ticker=p["ticker"], clob_pair_id=int(pair["id"]), atomic_resolution=int(p["atomic_resolution"]),
            quantum_conversion_exponent=int(pair["quantum_conversion_exponent"]),
            subticks_per_tick=int(pair["subticks_per_tick"]), step_base_quantums=int(pair["step_base_quantums"]),
            status=pair.get("status", ""), oracle_usd=to_fraction(price) if price else None,
            oracle_stale=bool(p.get("oracle_stale"))))
    return out


@dataclasses.dataclass(frozen=True)
class Resting:
    """One of the maker's resting quotes (from /clob/orders/<owner>/<number>)."""

    clob_pair_id: int
    side: str
    level: int
    client_id: int
    subticks: int
    remaining_quantums: int
    good_til_block: int


def client_id_of(side: str, level: int) -> int:
    return CLIENT_ID_BASE + (SIDES.index(side) << 8) + level


def slot_of(client_id: int) -> tuple[str, int] | None:
    """(side, level) of one of the maker's client ids, None for any other id."""
    offset = client_id - CLIENT_ID_BASE
    if not 0 <= offset < 2 << 8 or offset & 0xFF >= MAX_LEVELS:
        return None
    return SIDES[offset >> 8], offset & 0xFF


def parse_resting(answer: dict, subaccount_number: int) -> list[Resting]:
    """The maker's own short-term quotes among the subaccount's orders (others are ignored)."""
    out = []
    for o in answer.get("orders", []):
        slot = slot_of(int(o["client_id"]))
        if slot is None or int(o["order_flags"]) != 0 or int(o["subaccount_number"]) != subaccount_number:
            continue
        side, level = slot
        if o.get("side") != side:
            continue  # our client id but not our quote's side: placed by hand; leave it
        out.append(Resting(clob_pair_id=int(o["clob_pair_id"]), side=side, level=level, client_id=int(o["client_id"]),
                           subticks=int(o["subticks"]), remaining_quantums=int(o["remaining_quantums"]),
                           good_til_block=int(o["good_til_block"])))
    return out


def best_foreign_prices(book: dict, own: list[Resting]) -> tuple[int | None, int | None]:
    """Best bid and ask of the book without the maker's own quotes (an L2 level whose size is all ours is not
    someone else's price). The maker's stale quotes are cancelled before its new ones are placed, so only
    others' orders can make a new post-only quote cross."""
    mine: dict[tuple[str, int], int] = {}
    for r in own:
        mine[(r.side, r.subticks)] = mine.get((r.side, r.subticks), 0) + r.remaining_quantums
    best = {}
    for side, key in ((BUY, "bids"), (SELL, "asks")):
        best[side] = None
        for level in book.get(key, []):
            price = int(level["subticks"])
            if int(level["quantums"]) > mine.get((side, price), 0):
                best[side] = price
                break
    return best[BUY], best[SELL]


# --- the plan ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Settings:
    levels: int
    spread_bps: int
    step_bps: int
    size_usd: Fraction
    subaccount_number: int = 0
    markets: tuple[str, ...] = ()  # tickers (upper case); () = every market
    good_til_blocks: int = 15  # a quote's good_til_block = height + this (the chain allows up to 40)
    refresh_blocks: int = 5  # requote a quote this close to expiry

    def validate(self) -> None:
        if not 1 <= self.levels <= MAX_LEVELS:
            raise QuoteError(f"levels must be in 1..{MAX_LEVELS}")
        if self.spread_bps < 1 or self.step_bps < 0 or self.spread_bps + (self.levels - 1) * self.step_bps >= BPS:
            raise QuoteError("need spread_bps >= 1, step_bps >= 0 and the widest level below 10000 bps")
        if self.size_usd <= 0:
            raise QuoteError("size_usd must be positive")
        if not 0 <= self.subaccount_number <= 127:
            raise QuoteError("subaccount_number must be in 0..127")
        if not 0 <= self.refresh_blocks < self.good_til_blocks <= 40:
            raise QuoteError("need 0 <= refresh_blocks < good_til_blocks <= 40")


@dataclasses.dataclass(frozen=True)
class Quote:
    clob_pair_id: int
    side: str
    level: int
    subticks: int
    quantums: int
    good_til_block: int

    @property
    def client_id(self) -> int:
        return client_id_of(self.side, self.level)


@dataclasses.dataclass
class Plan:
    places: list[Quote] = dataclasses.field(default_factory=list)  # empty slots
    replaces: list[Quote] = dataclasses.field(default_factory=list)  # cancel-replace of the same slot
    cancels: list[Resting] = dataclasses.field(default_factory=list)  # quotes no longer wanted
    kept: int = 0
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # ticker -> why it is not quoted
    touch: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # ticker -> (best bid, best ask) USD
    trimmed: int = 0  # actions left out (budget or the per-tx limit)

    @property
    def actions(self) -> int:
        return len(self.places) + len(self.replaces) + len(self.cancels)


def desired_quotes(market: Market, settings: Settings, height: int, best_bid: int | None = None,
                   best_ask: int | None = None) -> list[Quote]:
    """The market's ladder: level i at oracle x (1 -/+ (spread + i x step) bps), bids floored and asks ceiled to
    the tick, kept one tick inside others' best opposite price (a post-only quote must not cross)."""
    oracle = market.oracle_subticks
    tick = market.subticks_per_tick
    quantums = quote_quantums(settings.size_usd, market.oracle_usd, market.atomic_resolution,
                              market.step_base_quantums)
    gtb = height + settings.good_til_blocks
    out = []
    for level in range(settings.levels):
        offset = settings.spread_bps + level * settings.step_bps
        bid = quote_subticks(oracle, offset, BUY, tick)
        ask = quote_subticks(oracle, offset, SELL, tick)
        if best_ask is not None:
            bid = min(bid, best_ask - tick)
        if best_bid is not None:
            ask = max(ask, best_bid + tick)
        if bid > 0:
            out.append(Quote(market.clob_pair_id, BUY, level, bid, quantums, gtb))
        out.append(Quote(market.clob_pair_id, SELL, level, ask, quantums, gtb))
    return out


def is_current(resting: Resting, want: Quote, height: int, settings: Settings) -> bool:
    """A resting quote stays (keeping its time priority) while it has the wanted price and full size and is not
    about to expire."""
    return (resting.subticks == want.subticks and resting.remaining_quantums == want.quantums
            and resting.good_til_block - height > settings.refresh_blocks)


def plan_round(markets: list[Market], own: list[Resting], books: dict[str, dict], height: int,
               settings: Settings) -> Plan:
    """What to send this round, given the chain at ``height``: place empty slots, cancel-replace stale quotes,
    cancel the quotes of markets that are no longer quoted (stale or missing oracle, cancel-only, not selected)."""
    plan = Plan()
    by_pair: dict[int, list[Resting]] = {}
    for r in own:
        by_pair.setdefault(r.clob_pair_id, []).append(r)
    known = {m.ticker.upper() for m in markets}
    for ticker in settings.markets:
        if ticker not in known:
            plan.skipped[ticker] = "no such market"
    for m in markets:
        mine = by_pair.pop(m.clob_pair_id, [])
        reason = None
        if settings.markets and m.ticker.upper() not in settings.markets:
            reason = ""  # not selected: silently not quoted
        elif m.status not in QUOTABLE_STATUSES:
            reason = f"pair {m.status}"
        elif m.oracle_usd is None:
            reason = "no oracle price"
        elif m.oracle_stale:
            reason = "oracle stale"
        if reason is not None:
            if reason:
                plan.skipped[m.ticker] = reason
            if m.status != "paused":  # a paused book is frozen: cancels are refused too
                plan.cancels.extend(mine)
            continue
        best_bid, best_ask = best_foreign_prices(books.get(m.ticker, {}), mine)
        want = {(q.side, q.level): q for q in desired_quotes(m, settings, height, best_bid, best_ask)}
        have = {(r.side, r.level): r for r in mine}
        for slot, q in want.items():
            r = have.pop(slot, None)
            if r is None:
                plan.places.append(q)
            elif is_current(r, q, height, settings):
                plan.kept += 1
            else:
                plan.replaces.append(q)
        plan.cancels.extend(have.values())  # levels no longer wanted
        bids = [q.subticks for q in want.values() if q.side == BUY]
        asks = [q.subticks for q in want.values() if q.side == SELL]
        plan.touch[m.ticker] = (m.usd(max(bids)) if bids else "-", m.usd(min(asks)) if asks else "-")
    for rest in by_pair.values():  # quotes on pairs the chain no longer lists
        plan.cancels.extend(rest)
    return plan


def trim_to_budget(plan: Plan, requests_available: int, cancels_available: int,
                   max_actions: int = MAX_ACTIONS_PER_TX) -> Plan:
    """Keep what the account's admission budget and the per-tx limit allow: cancels first (they use the larger
    cancel bucket and pull risk), then cancel-replaces (one request and one cancel each), then placements."""
    out = Plan(kept=plan.kept, skipped=plan.skipped, touch=plan.touch)
    requests, cancels, room = requests_available, cancels_available, max_actions
    for r in plan.cancels:
        if cancels >= 1 and room >= 1:
            out.cancels.append(r)
            cancels, room = cancels - 1, room - 1
    for q in plan.replaces:
        if requests >= 1 and cancels >= 1 and room >= 1:
            out.replaces.append(q)
            requests, cancels, room = requests - 1, cancels - 1, room - 1
    for q in plan.places:
        if requests >= 1 and room >= 1:
            out.places.append(q)
            requests, room = requests - 1, room - 1
    out.trimmed = plan.trimmed + plan.actions - out.actions
    return out
