"""prices genesis.

{"params": {"stale_after_ns": "15000000000", "mark_basis_smoothing_ppm": 100000, "mark_basis_clamp_ppm": 5000},
 "markets": [{"id": 0, "pair": "BTC-USD", "exponent": -5, "min_price_change_ppm": 1000,
              "stale_after_ns": "0", "price": "6400000000"}]}

64-bit integers are decimal strings; ids, exponents and ppm are JSON numbers.
"""

from __future__ import annotations

import re

from perpchain.v1 import prices_pb2

from app.bank.genesis import parse_uint
from app.errors import ERR_INVALID_GENESIS, AppError
from app.lib.math import INT64_MAX
from app.prices import keeper
from app.prices.params import MAX_EXPONENT, MAX_MARKETS, MAX_PRICE_CHANGE_PPM, MIN_EXPONENT
from app.store import BranchStore

PAIR_RE = re.compile(r"^[A-Z0-9]{1,20}-[A-Z]{2,10}$")
INT_RE = re.compile(r"^-?[0-9]{1,19}$")


def _small_int(value: object, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise AppError(ERR_INVALID_GENESIS, f"{what} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _ns(value: object, what: str) -> int:
    n = parse_uint(value, what)
    if n > INT64_MAX:
        raise AppError(ERR_INVALID_GENESIS, f"{what} exceeds int64")
    return n


def init_genesis(store: BranchStore, state: dict, genesis_time_ns: int) -> None:
    if not isinstance(state, dict):
        raise AppError(ERR_INVALID_GENESIS, "prices genesis must be an object")
    params = keeper.default_params()
    p = state.get("params", {})
    if "stale_after_ns" in p:
        params.stale_after_ns = _ns(p["stale_after_ns"], "prices.params.stale_after_ns")
    if "mark_basis_smoothing_ppm" in p:
        params.mark_basis_smoothing_ppm = _small_int(p["mark_basis_smoothing_ppm"], "prices.params.mark_basis_smoothing_ppm", 0, 1_000_000)
    if "mark_basis_clamp_ppm" in p:
        params.mark_basis_clamp_ppm = _small_int(p["mark_basis_clamp_ppm"], "prices.params.mark_basis_clamp_ppm", 0, 1_000_000)
    if params.stale_after_ns <= 0:
        raise AppError(ERR_INVALID_GENESIS, "prices.params.stale_after_ns must be positive")
    keeper.set_params(store, params)
    markets = state.get("markets", [])
    if not isinstance(markets, list) or len(markets) > MAX_MARKETS:
        raise AppError(ERR_INVALID_GENESIS, f"prices.markets must be a list of at most {MAX_MARKETS}")
    ids: dict[int, None] = {}
    pairs: dict[str, None] = {}
    for i, m in enumerate(markets):
        where = f"prices.markets[{i}]"
        if not isinstance(m, dict):
            raise AppError(ERR_INVALID_GENESIS, f"{where} must be an object")
        market_id = _small_int(m.get("id"), f"{where}.id", 0, (1 << 32) - 1)
        pair = m.get("pair")
        if not isinstance(pair, str) or not PAIR_RE.match(pair):
            raise AppError(ERR_INVALID_GENESIS, f"{where}.pair {pair!r} must look like BTC-USD")
        if market_id in ids:
            raise AppError(ERR_INVALID_GENESIS, f"{where}.id {market_id} is not unique")
        if pair in pairs:
            raise AppError(ERR_INVALID_GENESIS, f"{where}.pair {pair} is not unique")
        ids[market_id] = None
        pairs[pair] = None
        exponent = _small_int(m.get("exponent"), f"{where}.exponent", MIN_EXPONENT, MAX_EXPONENT)
        ppm = _small_int(m.get("min_price_change_ppm"), f"{where}.min_price_change_ppm", 1, MAX_PRICE_CHANGE_PPM - 1)
        stale_after = _ns(m.get("stale_after_ns", "0"), f"{where}.stale_after_ns")
        price = parse_uint(m.get("price", "0"), f"{where}.price")
        param = prices_pb2.MarketParam(id=market_id, pair=pair, exponent=exponent, min_price_change_ppm=ppm,
                                       stale_after_ns=stale_after)
        market_price = prices_pb2.MarketPrice(
            id=market_id, oracle_price=price, mark_price=price,
            last_update_time_ns=genesis_time_ns if price else 0, stale=price == 0,
        )
        _restore_exported(market_price, m, where)
        keeper.set_market(store, param, market_price)


def _restore_exported(mp: prices_pb2.MarketPrice, m: dict, where: str) -> None:
    """The fields an export carries beyond the price: the mark and its smoothed basis, the last agreed update
    (height, time, reporters, power) and staleness. Without them (a hand-written genesis) a market starts at its
    price: mark = price, basis 0, last updated at genesis time."""
    if "mark_price" not in m:
        return
    mp.mark_price = parse_uint(m["mark_price"], f"{where}.mark_price")
    if (mp.mark_price == 0) != (mp.oracle_price == 0) or mp.mark_price > INT64_MAX:
        raise AppError(ERR_INVALID_GENESIS, f"{where}.mark_price must be positive with a price (0 without), int64")
    mp.basis_ema = _int64(m.get("basis_ema", "0"), f"{where}.basis_ema")
    mp.last_update_height = _ns(m.get("last_update_height", "0"), f"{where}.last_update_height")
    mp.last_update_time_ns = _ns(m.get("last_update_time_ns", "0"), f"{where}.last_update_time_ns")
    mp.reporters = _small_int(m.get("reporters", 0), f"{where}.reporters", 0, (1 << 32) - 1)
    mp.reported_power = _ns(m.get("reported_power", "0"), f"{where}.reported_power")
    stale = m.get("stale", mp.oracle_price == 0)
    if not isinstance(stale, bool):
        raise AppError(ERR_INVALID_GENESIS, f"{where}.stale must be true or false, got {stale!r}")
    mp.stale = stale


def _int64(value: object, what: str) -> int:
    if isinstance(value, str) and INT_RE.match(value) and abs(int(value)) <= INT64_MAX:
        return int(value)
    raise AppError(ERR_INVALID_GENESIS, f"{what} must be a decimal integer string within int64, got {value!r}")


def export_genesis(store: BranchStore) -> dict:
    params = keeper.get_params(store)
    return {
        "params": {
            "stale_after_ns": str(params.stale_after_ns),
            "mark_basis_smoothing_ppm": params.mark_basis_smoothing_ppm,
            "mark_basis_clamp_ppm": params.mark_basis_clamp_ppm,
        },
        "markets": [_export_market(store, m) for m in keeper.iter_markets(store)],
    }


def _export_market(store: BranchStore, m: prices_pb2.MarketParam) -> dict:
    mp = keeper.get_market_price(store, m.id)
    return {"id": m.id, "pair": m.pair, "exponent": m.exponent, "min_price_change_ppm": m.min_price_change_ppm,
            "stale_after_ns": str(m.stale_after_ns), "price": str(mp.oracle_price), "mark_price": str(mp.mark_price),
            "basis_ema": str(mp.basis_ema), "last_update_height": str(mp.last_update_height),
            "last_update_time_ns": str(mp.last_update_time_ns), "reporters": mp.reporters,
            "reported_power": str(mp.reported_power), "stale": mp.stale}
