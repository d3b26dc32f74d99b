"""Price daemon: polls venue tickers off the consensus path and keeps a gated, smoothed index per market.

Runs as an asyncio task in the validator's own event loop, which also serves ABCI synchronously: nothing here
blocks (``httpx.AsyncClient``, every request under a deadline) and nothing escapes the task (a failed venue or a
dead simulator only degrades health). ExtendVote reads :meth:`PriceDaemon.vote_prices`, which is O(markets x
TWAP samples), never raises and never does I/O. This is node-local and non-deterministic by design; the chain
only ever sees the integers a validator put in its vote extension.

Each round (every ``poll_interval_ms``), every venue is asked for every market concurrently -- with one request
per venue where it has a many-markets endpoint (``VenueShape.batch``), else one per market -- then per market:

1. **stale gate** — a print whose venue timestamp is more than ``max_print_age_ms`` behind the local wall clock
   (or that far ahead of it) is ignored;
2. **outlier gate** — with ``m`` the plain median of the remaining prints, a print ``p`` with
   ``|p - m| * 1e6 > outlier_band_ppm * m`` is ignored. The reference median is unweighted so that a heavily
   weighted venue cannot pull the reference towards its own print;
3. **min venues** — fewer than ``min_venues`` survivors: no raw index this round;
4. **weighted median** of the survivors (:func:`compute_weighted_median`) = the raw index of this round;
5. **TWAP** over the last ``twap_window_ms`` of raw indexes (:func:`compute_twap`) = the reported index.

Mirrors the shape of dYdX v4's pricefeed daemon (per-exchange queries, median across exchanges, a price only if
enough exchanges answered); deviations: venue weights, an explicit outlier band and the TWAP.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import time
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Callable, Mapping

import httpx

from node.feeds.venues import (
    DEFAULT_VENUES,
    VenuePrint,
    batch_url,
    format_decimal,
    parse_batch,
    parse_ticker,
    shape_for,
    ticker_url,
    validate_venue_name,
)

log = logging.getLogger("perpd.pricefeed")

MarketsFn = Callable[[], list[tuple[int, str, int]]]

# Decimal digits for index arithmetic: prices have <= ~20 significant digits and sums of price x nanoseconds
# add ~15 more; 60 keeps every intermediate exact so a constant price averages back to itself exactly.
_PRECISION = 60
_PPM = 1_000_000
BATCH_PAIRS = 100  # markets per batch request (keeps URLs short)


@dataclasses.dataclass
class OracleConfig:
    """The ``[oracle]`` table of app.toml. Units are in the names: ``_ms`` milliseconds, ``_ppm`` parts per million.

    - ``feeds_url``: base URL of the venue feeds (the simulator), e.g. ``http://127.0.0.1:26600``; empty = disabled.
    - ``venues``: venue names to poll (each has its URL and JSON shape in ``node.feeds.venues``).
    - ``venue_weights``: venue -> positive integer weight in the weighted median; a missing venue weighs 1.
    - ``poll_interval_ms``: time between the starts of two polling rounds.
    - ``request_timeout_ms``: deadline of one venue request (connect + answer).
    - ``max_print_age_ms``: a print whose venue timestamp is older than this (vs the local wall clock) is ignored,
      and an index not refreshed for this long is not voted.
    - ``outlier_band_ppm``: a print farther than this from the cross-venue median is ignored (20_000 = 2 %).
    - ``min_venues``: fewer usable venues than this gives no index for the market.
    - ``twap_window_ms``: length of the time-weighted average of raw indexes (0 = no smoothing).
    """

    feeds_url: str
    venues: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_VENUES))
    venue_weights: dict[str, int] = dataclasses.field(default_factory=dict)
    poll_interval_ms: int = 500
    request_timeout_ms: int = 400
    max_print_age_ms: int = 3000
    outlier_band_ppm: int = 20_000
    min_venues: int = 2
    twap_window_ms: int = 2000

    def __post_init__(self) -> None:
        if not isinstance(self.feeds_url, str):
            raise ValueError("oracle.feeds_url must be a string")
        if self.feeds_url and not self.feeds_url.startswith(("http://", "https://")):
            raise ValueError(f"oracle.feeds_url {self.feeds_url!r} must start with http:// or https://")
        if not self.venues or len(set(self.venues)) != len(self.venues):
            raise ValueError("oracle.venues must be a non-empty list of distinct names")
        for venue in self.venues:
            validate_venue_name(venue)
        for venue, weight in self.venue_weights.items():
            if venue not in self.venues:
                raise ValueError(f"oracle.venue_weights names {venue!r}, which is not in oracle.venues")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
                raise ValueError(f"oracle.venue_weights[{venue!r}] must be a positive integer")
        bounds = {
            "poll_interval_ms": 1, "request_timeout_ms": 1, "max_print_age_ms": 1,
            "outlier_band_ppm": 0, "min_venues": 1, "twap_window_ms": 0,
        }
        for name, minimum in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"oracle.{name} must be an integer >= {minimum}, got {value!r}")
        if self.min_venues > len(self.venues):
            raise ValueError(f"oracle.min_venues {self.min_venues} exceeds the {len(self.venues)} venue(s) in "
                             "oracle.venues: no market could ever get an index")

    @property
    def enabled(self) -> bool:
        """False when ``feeds_url`` is empty: the node runs no daemon and votes no prices."""
        return bool(self.feeds_url)

    def weight_of(self, venue: str) -> int:
        return self.venue_weights.get(venue, 1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "OracleConfig":
        """Build from the ``[oracle]`` table (every key optional; no/empty ``feeds_url`` = disabled).

        Raises ValueError on an unknown key (a typo would otherwise silently fall back to a default) or a bad value.
        """
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown [oracle] key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {"feeds_url": str(d.get("feeds_url") or "")}
        if "venues" in d:
            venues = d["venues"]
            if isinstance(venues, str) or not isinstance(venues, (list, tuple)):
                raise ValueError("oracle.venues must be a list of names")
            kwargs["venues"] = [str(v) for v in venues]
        if "venue_weights" in d:
            weights = d["venue_weights"]
            if not isinstance(weights, Mapping):
                raise ValueError("oracle.venue_weights must be a table of venue = weight")
            kwargs["venue_weights"] = {str(k): _unwrap_int(v) for k, v in weights.items()}
        for name in known - {"feeds_url", "venues", "venue_weights"}:
            if name in d:
                kwargs[name] = _unwrap_int(d[name])
        return cls(**kwargs)


def _unwrap_int(value: Any) -> Any:
    # tomlkit hands out int subclasses; keep bools and non-ints as they are so validation rejects them.
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def compute_median(prices: list[Decimal]) -> Decimal:
    """Plain median; for an even count the mean of the two middle prices. Raises ValueError when empty."""
    return compute_weighted_median([(p, 1) for p in prices])


def compute_weighted_median(prices_weights: list[tuple[Decimal, int]]) -> Decimal:
    """Weighted median of (price, positive integer weight) pairs. Raises ValueError when empty.

    Sort by price, W = total weight; the answer is the first price whose cumulative weight exceeds W/2. When the
    cumulative weight of the first k prices equals W/2 exactly, it is the mean of the k-th and (k+1)-th prices,
    so equal weights give the ordinary median (the mean of the two middle prices for an even count).
    """
    if not prices_weights:
        raise ValueError("weighted median of nothing")
    items = sorted(prices_weights)
    total = sum(w for _, w in items)
    cumulative = 0
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        for i, (price, weight) in enumerate(items):
            cumulative += weight
            if 2 * cumulative > total:
                return price
            if 2 * cumulative == total:
                return (price + items[i + 1][0]) / 2
    raise AssertionError("unreachable: weights are positive")


def compute_twap(samples: list[tuple[int, Decimal]], now_ns: int, window_ns: int) -> Decimal:
    """Time-weighted average over ``[now - window, now]`` of the step function through ``samples``.

    ``samples`` are (monotonic ns, raw index), oldest first; each value holds from its time until the next
    sample's (the last one until ``now``). A sample older than the window start counts from the window start.
    If that leaves no time at all (window 0, or one sample taken at ``now``), the latest value is returned.
    """
    if not samples:
        raise ValueError("TWAP of nothing")
    start = now_ns - window_ns
    weighted = Decimal(0)
    total_ns = 0
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        for i, (t_ns, value) in enumerate(samples):
            end = samples[i + 1][0] if i + 1 < len(samples) else now_ns
            held_ns = min(end, now_ns) - max(t_ns, start)
            if held_ns > 0:
                weighted += value * held_ns
                total_ns += held_ns
        if total_ns == 0:
            return samples[-1][1]
        return weighted / total_ns


def _round_for_display(value: Decimal) -> Decimal:
    # The TWAP carries up to 60 digits; 18 significant ones are more than any exponent can use.
    with localcontext() as ctx:
        ctx.prec = 18
        return +value


def decimal_price_to_exponent_units(price: Decimal, exponent: int) -> int:
    """``price`` as an integer ``n`` with ``n * 10**exponent`` ~= price, rounded half up (exact decimal scaling)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return int(price.scaleb(-exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclasses.dataclass
class VenueHealth:
    last_ok_ms: int | None = None  # unix ms of the last successful answer
    last_error: str | None = None
    last_error_ms: int | None = None
    consecutive_failures: int = 0  # rounds in a row with at least one failed request to this venue
    last_round_any_ok: bool = False  # some market answered in the last round

    def status(self) -> str:
        """ok: every market answered last round; degraded: some did; down: none did (or never answered)."""
        if self.consecutive_failures == 0 and self.last_ok_ms is not None:
            return "ok"
        return "degraded" if self.last_round_any_ok else "down"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.status() == "ok",
            "status": self.status(),
            "last_ok_ms": self.last_ok_ms,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "consecutive_failures": self.consecutive_failures,
        }


@dataclasses.dataclass
class PairIndex:
    """Index state of one pair: raw index samples for the TWAP and what the last round saw."""

    samples: collections.deque[tuple[int, Decimal]] = dataclasses.field(default_factory=collections.deque)
    venues_used: list[str] = dataclasses.field(default_factory=list)
    venues_excluded: dict[str, str] = dataclasses.field(default_factory=dict)
    reason: str | None = "no round yet"  # why the last round gave no raw index


MAX_RESPONSE_BYTES = 4 << 20  # a venue's all-markets answer is well under this; more is junk or an attack


async def get_json(client: httpx.AsyncClient, url: str) -> tuple[int, Any]:
    """(HTTP status, parsed JSON body or None). The body is read in chunks and refused past MAX_RESPONSE_BYTES,
    so a broken or hostile venue cannot balloon the worker's memory within one request deadline."""
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            return response.status_code, None
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
            raise ValueError(f"answer of {declared} bytes exceeds {MAX_RESPONSE_BYTES}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise ValueError(f"answer exceeds {MAX_RESPONSE_BYTES} bytes")
    return 200, json.loads(body)


class PriceDaemon:
    """Polls venues for the chain's markets and answers ``vote_prices()`` for ExtendVote.

    ``markets()`` returns the chain's markets as (market_id, pair, exponent), exponent negative dYdX style
    (USD price = integer x 10^exponent). It is called once per round from the event loop; if it raises, the
    previous list is kept.
    """

    def __init__(self, config: OracleConfig, markets: MarketsFn, on_round: Callable[[], None] | None = None) -> None:
        self.config = config
        self._markets_fn = markets
        self._on_round = on_round  # called after every round (the worker process publishes a snapshot)
        self._markets: list[tuple[int, str, int]] = []
        self._venues: dict[str, VenueHealth] = {v: VenueHealth() for v in config.venues}
        self._pairs: dict[str, PairIndex] = {}
        self._stop = asyncio.Event()
        self._running = False
        self._rounds = 0
        self._last_round_ms: int | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Schedule :meth:`run` on the running loop and return its task (must be called from the loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="pricefeed")
        return self._task

    async def run(self) -> None:
        """Poll until :meth:`stop`. Never raises (except cancellation): a failing round is logged and skipped."""
        if self._running:
            raise RuntimeError("PriceDaemon.run is already running")
        self._running = True
        interval_s = self.config.poll_interval_ms / 1000
        loop = asyncio.get_running_loop()
        try:
            async with httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                         timeout=self.config.request_timeout_ms / 1000) as client:
                while not self._stop.is_set():
                    started = loop.time()
                    round_task = asyncio.ensure_future(self._poll_round(client))
                    stop_task = asyncio.ensure_future(self._stop.wait())
                    try:
                        await asyncio.wait({round_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stop_task.cancel()
                    if not round_task.done():
                        round_task.cancel()
                        await asyncio.gather(round_task, return_exceptions=True)
                        break
                    if round_task.exception() is not None:
                        # A bug in a round must not take the validator down; the index simply ages out.
                        log.error("pricefeed round failed", exc_info=round_task.exception())
                    remaining = interval_s - (loop.time() - started)
                    if remaining > 0:
                        try:
                            await asyncio.wait_for(self._stop.wait(), remaining)
                        except TimeoutError:
                            pass
        finally:
            self._running = False
            # Cleared on the way out, not on the way in: a stop() issued before run() started is still honoured.
            self._stop.clear()

    async def stop(self) -> None:
        """Ask :meth:`run` to return and wait for it (in-flight requests are cancelled)."""
        self._stop.set()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            await asyncio.gather(task, return_exceptions=True)

    # --- polling --------------------------------------------------------------------
    def _refresh_markets(self) -> list[tuple[int, str, int]]:
        try:
            self._markets = [(int(mid), str(pair), int(exp)) for mid, pair, exp in self._markets_fn()]
        except Exception:  # the callable is the node's; its failure must not stop polling
            log.exception("pricefeed: markets() failed; keeping the previous market list")
        return self._markets

    async def _fetch(self, client: httpx.AsyncClient, venue: str, pair: str) -> VenuePrint | str:
        """One venue's print for one pair, or a one-line error. Never raises (except cancellation)."""
        try:
            url = ticker_url(self.config.feeds_url, venue, pair)
            status, doc = await asyncio.wait_for(get_json(client, url), self.config.request_timeout_ms / 1000)
            if status != 200:
                return f"HTTP {status}"
            return parse_ticker(venue, pair, doc)
        except TimeoutError:
            return f"timeout after {self.config.request_timeout_ms} ms"
        except Exception as e:  # a venue can fail in any way (refused, reset, garbage): it is data, not a crash
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

    async def _fetch_batch(self, client: httpx.AsyncClient, venue: str, pairs: list[str]) -> list[VenuePrint | str]:
        """One request for many pairs (the venue's batch endpoint); per pair a print or a one-line error."""
        try:
            url = batch_url(self.config.feeds_url, venue, pairs)
            assert url is not None
            status, doc = await asyncio.wait_for(get_json(client, url), self.config.request_timeout_ms / 1000)
            if status != 200:
                return [f"HTTP {status}"] * len(pairs)
            found = parse_batch(venue, pairs, doc)
        except TimeoutError:
            return [f"timeout after {self.config.request_timeout_ms} ms"] * len(pairs)
        except Exception as e:  # a venue can fail in any way: it is data, not a crash
            return [f"{type(e).__name__}: {e}" if str(e) else type(e).__name__] * len(pairs)
        return [found.get(pair, "missing from the batch answer") for pair in pairs]

    async def _fetch_venue(self, client: httpx.AsyncClient, venue: str, pairs: list[str]) -> list[VenuePrint | str]:
        """Every pair from one venue: batch requests of at most BATCH_PAIRS where the venue has them."""
        shape = shape_for(venue)
        if shape.batch:
            size = len(pairs) if shape.batch_all else BATCH_PAIRS
            chunks = [pairs[i:i + size] for i in range(0, len(pairs), max(1, size))]
            parts = await asyncio.gather(*(self._fetch_batch(client, venue, chunk) for chunk in chunks))
            return [r for part in parts for r in part]
        return list(await asyncio.gather(*(self._fetch(client, venue, pair) for pair in pairs)))

    async def _poll_round(self, client: httpx.AsyncClient) -> None:
        markets = self._refresh_markets()
        pairs = sorted({pair for _, pair, _ in markets})
        per_venue = await asyncio.gather(*(self._fetch_venue(client, venue, pairs) for venue in self.config.venues))
        now_wall_ms = time.time_ns() // 1_000_000
        now_ns = time.monotonic_ns()

        failed: dict[str, str] = {}
        succeeded: set[str] = set()
        by_pair: dict[str, dict[str, VenuePrint | str]] = {pair: {} for pair in pairs}
        jobs = [(venue, pair) for venue in self.config.venues for pair in pairs]
        results = [r for venue_results in per_venue for r in venue_results]
        for (venue, pair), result in zip(jobs, results):
            by_pair[pair][venue] = result
            if isinstance(result, str):
                failed[venue] = f"{pair}: {result}"
            else:
                succeeded.add(venue)
        for venue, health in self._venues.items():
            self._update_venue_health(venue, health, failed.get(venue), venue in succeeded, now_wall_ms)

        for pair in pairs:
            try:
                self._update_pair(pair, by_pair[pair], now_wall_ms, now_ns)
            except Exception:  # one market's bad data must not cost the other markets their round
                log.exception("pricefeed: updating %s failed; its index ages out", pair)
        for pair in set(self._pairs) - set(pairs):
            del self._pairs[pair]
        self._rounds += 1
        self._last_round_ms = now_wall_ms
        if self._on_round is not None:
            self._on_round()

    def _update_venue_health(self, venue: str, health: VenueHealth, error: str | None, any_ok: bool,
                             now_wall_ms: int) -> None:
        health.last_round_any_ok = any_ok
        if any_ok:
            health.last_ok_ms = now_wall_ms
        if error is None:
            if health.consecutive_failures:
                log.info("pricefeed: venue %s is back", venue)
            health.consecutive_failures = 0
            return
        if health.consecutive_failures == 0:
            log.warning("pricefeed: venue %s failing: %s", venue, error)
        health.consecutive_failures += 1
        health.last_error = error
        health.last_error_ms = now_wall_ms

    def _update_pair(self, pair: str, results: Mapping[str, VenuePrint | str], now_wall_ms: int, now_ns: int) -> None:
        cfg = self.config
        state = self._pairs.setdefault(pair, PairIndex())
        excluded: dict[str, str] = {}
        fresh: dict[str, Decimal] = {}
        for venue, result in results.items():
            if isinstance(result, str):
                excluded[venue] = f"error: {result}"
            elif now_wall_ms - result.time_ms > cfg.max_print_age_ms:
                excluded[venue] = f"stale: print is {now_wall_ms - result.time_ms} ms old"
            elif result.time_ms - now_wall_ms > cfg.max_print_age_ms:
                excluded[venue] = f"future: print is {result.time_ms - now_wall_ms} ms ahead"
            else:
                fresh[venue] = result.price
        used: dict[str, Decimal] = {}
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            if fresh:
                reference = compute_median(list(fresh.values()))
                for venue, price in fresh.items():
                    if abs(price - reference) * _PPM > cfg.outlier_band_ppm * reference:
                        deviation_ppm = int(abs(price - reference) * _PPM / reference)
                        excluded[venue] = f"outlier: {deviation_ppm} ppm from median {format_decimal(reference)}"
                    else:
                        used[venue] = price
        state.venues_used = sorted(used)
        state.venues_excluded = dict(sorted(excluded.items()))
        if len(used) < cfg.min_venues:
            state.reason = f"too few venues: {len(used)} usable < min_venues {cfg.min_venues}"
            return
        raw_index = compute_weighted_median([(price, cfg.weight_of(venue)) for venue, price in used.items()])
        samples = state.samples
        if samples and now_ns - samples[-1][0] > cfg.max_print_age_ms * 1_000_000:
            # The index was stale: averaging across the gap would mix in a price from before the outage.
            samples.clear()
        samples.append((now_ns, raw_index))
        window_start = now_ns - cfg.twap_window_ms * 1_000_000
        # Keep one sample at or before the window start: it is the value at the start of the window.
        while len(samples) >= 2 and samples[1][0] <= window_start:
            samples.popleft()
        state.reason = None

    # --- reading (from ExtendVote / RPC): no I/O, never raises ------------------------
    def _index_or_none(self, pair: str, now_ns: int) -> tuple[Decimal, int] | None:
        """(TWAP index, age ms) if the pair has a raw index younger than max_print_age_ms."""
        state = self._pairs.get(pair)
        if state is None or not state.samples:
            return None
        age_ms = (now_ns - state.samples[-1][0]) // 1_000_000
        if age_ms > self.config.max_print_age_ms:
            return None
        return compute_twap(list(state.samples), now_ns, self.config.twap_window_ms * 1_000_000), age_ms

    def vote_prices(self) -> dict[int, int]:
        """market_id -> index price in that market's exponent units (round half up), for fresh healthy indexes.

        Markets without a fresh index, or whose price rounds to zero in their exponent, are left out.
        Never raises: on an unexpected error it logs and returns what it has (possibly ``{}``).
        """
        out: dict[int, int] = {}
        try:
            now_ns = time.monotonic_ns()
            cache: dict[str, tuple[Decimal, int] | None] = {}
            for market_id, pair, exponent in self._markets:
                if pair not in cache:
                    cache[pair] = self._index_or_none(pair, now_ns)
                index = cache[pair]
                if index is None:
                    continue
                price_units = decimal_price_to_exponent_units(index[0], exponent)
                if price_units > 0:
                    out[market_id] = price_units
        except Exception:  # ExtendVote must always get an answer; an empty vote is safe
            log.exception("pricefeed: vote_prices failed")
        return out

    def snapshot(self) -> dict[str, Any]:
        """What another process needs to answer ExtendVote and health without this object (JSON-able).

        ``votes``: [market_id, price in exponent units, valid_until] where valid_until (CLOCK_MONOTONIC ns, shared
        by every process on the host) is when that index stops being fresh (newest raw sample + max_print_age_ms).
        """
        votes = []
        try:
            now_ns = time.monotonic_ns()
            max_age_ns = self.config.max_print_age_ms * 1_000_000
            for market_id, pair, exponent in self._markets:
                index = self._index_or_none(pair, now_ns)
                if index is None:
                    continue
                units = decimal_price_to_exponent_units(index[0], exponent)
                if units > 0:
                    votes.append([market_id, units, self._pairs[pair].samples[-1][0] + max_age_ns])
        except Exception:  # a snapshot must always be produced; an empty vote is safe
            log.exception("pricefeed: snapshot failed")
        return {"votes": votes, "health": self.health()}

    def health(self) -> dict[str, Any]:
        """JSON-able status: per venue, per market (keyed by pair), overall ``status`` ok | degraded | down."""
        try:
            now_ns = time.monotonic_ns()
            venues = {name: h.to_json() for name, h in self._venues.items()}
            market_ids: dict[str, list[int]] = {}
            for market_id, pair, _ in self._markets:
                market_ids.setdefault(pair, []).append(market_id)
            markets: dict[str, Any] = {}
            for pair in sorted(market_ids):
                state = self._pairs.get(pair, PairIndex())
                index = self._index_or_none(pair, now_ns)
                last_raw = state.samples[-1] if state.samples else None
                reason = state.reason
                if index is None and reason is None:
                    reason = f"index older than max_print_age_ms {self.config.max_print_age_ms}"
                markets[pair] = {
                    "market_ids": sorted(market_ids[pair]),
                    "healthy": index is not None,
                    "index": format_decimal(_round_for_display(index[0])) if index else None,
                    "raw_index": format_decimal(last_raw[1]) if last_raw else None,
                    "age_ms": (now_ns - last_raw[0]) // 1_000_000 if last_raw else None,
                    "venues_used": list(state.venues_used),
                    "venues_excluded": dict(state.venues_excluded),
                    "reason": None if index is not None else reason,
                }
            healthy = sum(1 for m in markets.values() if m["healthy"])
            if markets and healthy == 0:
                status = "down"
            elif healthy < len(markets) or not all(v["ok"] for v in venues.values()):
                status = "degraded"
            else:
                status = "ok"
            if self._rounds == 0:
                status = "down"
            return {
                "status": status,
                "running": self._running,
                "rounds": self._rounds,
                "last_round_ms": self._last_round_ms,
                "feeds_url": self.config.feeds_url,
                "venues": venues,
                "markets": markets,
            }
        except Exception as e:  # a status endpoint must answer even when something is wrong
            log.exception("pricefeed: health failed")
            return {"status": "down", "error": f"{type(e).__name__}: {e}"}
