"""Sole owner of the prices prefix."""

from __future__ import annotations

import functools
from collections.abc import Iterator

from perpchain.v1 import prices_pb2

from app.lib.encoding import encode_proto
from app.prices import keys
from app.prices.params import DEFAULT_MARK_BASIS_CLAMP_PPM, DEFAULT_MARK_BASIS_SMOOTHING_PPM, DEFAULT_STALE_AFTER_NS
from app.store import BranchStore, CommittedReader, prefix_end


def get_params(store: CommittedReader) -> prices_pb2.PricesParams:
    raw = store.get(keys.PARAMS_KEY)
    params = prices_pb2.PricesParams()
    if raw is not None:
        params.ParseFromString(raw)
    return params


def default_params() -> prices_pb2.PricesParams:
    return prices_pb2.PricesParams(
        stale_after_ns=DEFAULT_STALE_AFTER_NS,
        mark_basis_smoothing_ppm=DEFAULT_MARK_BASIS_SMOOTHING_PPM,
        mark_basis_clamp_ppm=DEFAULT_MARK_BASIS_CLAMP_PPM,
    )


def set_params(store: BranchStore, params: prices_pb2.PricesParams) -> None:
    store.set(keys.PARAMS_KEY, encode_proto(params))


def iter_markets(store: CommittedReader) -> Iterator[prices_pb2.MarketParam]:
    """Markets in id order."""
    for _, raw in store.iterate(keys.PARAM_PREFIX, prefix_end(keys.PARAM_PREFIX)):
        param = prices_pb2.MarketParam()
        param.ParseFromString(raw)
        yield param


def get_markets_by_id(store: CommittedReader) -> dict[int, prices_pb2.MarketParam]:
    return {m.id: m for m in iter_markets(store)}


def set_market(store: BranchStore, param: prices_pb2.MarketParam, price: prices_pb2.MarketPrice) -> None:
    store.set(keys.market_param_key(param.id), encode_proto(param))
    store.set(keys.market_price_key(param.id), encode_proto(price))


def get_market_price(store: CommittedReader, market_id: int) -> prices_pb2.MarketPrice:
    raw = store.get(keys.market_price_key(market_id))
    price = prices_pb2.MarketPrice(id=market_id)
    if raw is not None:
        price.ParseFromString(raw)
    return price


def apply_market_price(store: BranchStore, price: prices_pb2.MarketPrice) -> None:
    """Write only when something changed: an idle market adds nothing to the block's write-set."""
    key = keys.market_price_key(price.id)
    encoded = encode_proto(price)
    if store.get(key) != encoded:
        store.set(key, encoded)


@functools.lru_cache(maxsize=4096)
def _decode_param(raw: bytes) -> prices_pb2.MarketParam:
    return prices_pb2.MarketParam.FromString(raw)


@functools.lru_cache(maxsize=4096)
def _decode_price(raw: bytes) -> prices_pb2.MarketPrice:
    return prices_pb2.MarketPrice.FromString(raw)


def get_market_param_or_none(store: CommittedReader, market_id: int) -> prices_pb2.MarketParam | None:
    """A market's parameters (a shared, cached object: never mutate it)."""
    raw = store.get(keys.market_param_key(market_id))
    return None if raw is None else _decode_param(raw)


def get_market_price_or_none(store: CommittedReader, market_id: int) -> prices_pb2.MarketPrice | None:
    """A market's live price (a shared, cached object: never mutate it; use get_market_price to change one)."""
    raw = store.get(keys.market_price_key(market_id))
    return None if raw is None else _decode_price(raw)
