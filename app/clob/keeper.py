"""Sole owner of the clob prefix: clob pairs, clob params (fee tiers, windows), resting orders with their expiry
indexes and placement sequence, and the 30-day trading volume behind fee tiers.

Invariants: every stored order rests on the book (the in-memory index mirrors exactly the stored orders),
has 0 < remaining <= quantums, sits in exactly one expiry index, and names an existing pair. The book is never
crossed (the best bid is below the best ask) after any action.
"""

from __future__ import annotations

import dataclasses
import functools
import struct

from perpchain.v1 import exchange_pb2

from app.clob import keys
from app.clob.logic import FeeTier, select_fee_tier
from app.errors import (
    ERR_INVALID_EQUITY_TIERS,
    ERR_INVALID_FEE_TIERS,
    ERR_ORDER_NOT_FOUND,
    ERR_UNKNOWN_CLOB_PAIR,
    AppError,
    ErrorCode,
)
from app.lib.encoding import encode_proto
from app.lib.math import ONE_MILLION
from app.store import BranchStore, CommittedReader, prefix_end

NS_PER_DAY = 86_400 * 10**9
STATS_WINDOW_DAYS = 30  # dYdX x/stats WindowDuration
_BUCKET = struct.Struct(">QQQ")  # day index, total (maker + taker) notional, maker notional; quote quantums


# --- pairs and params --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _decode_pair(raw: bytes) -> exchange_pb2.ClobPair:
    return exchange_pb2.ClobPair.FromString(raw)


@functools.lru_cache(maxsize=64)
def _decode_params(raw: bytes) -> exchange_pb2.ClobParams:
    return exchange_pb2.ClobParams.FromString(raw)


def get_pair_or_none(store: CommittedReader, clob_pair_id: int) -> exchange_pb2.ClobPair | None:
    """The stored pair (shared and cached: copy before changing it)."""
    raw = store.get(keys.pair_key(clob_pair_id))
    return None if raw is None else _decode_pair(raw)


def get_pair(store: CommittedReader, clob_pair_id: int) -> exchange_pb2.ClobPair:
    pair = get_pair_or_none(store, clob_pair_id)
    if pair is None:
        raise AppError(ERR_UNKNOWN_CLOB_PAIR, f"clob pair {clob_pair_id} does not exist")
    return pair


def set_pair(store: BranchStore, pair: exchange_pb2.ClobPair) -> None:
    store.set(keys.pair_key(pair.id), encode_proto(pair))


def iter_pairs(store: CommittedReader):
    for _, raw in store.iterate(keys.PAIR_PREFIX, prefix_end(keys.PAIR_PREFIX)):
        yield _decode_pair(raw)


def get_params(store: CommittedReader) -> exchange_pb2.ClobParams:
    raw = store.get(keys.PARAMS_KEY)
    return exchange_pb2.ClobParams() if raw is None else _decode_params(raw)


def set_params(store: BranchStore, params: exchange_pb2.ClobParams) -> None:
    validate_fee_tiers(list(params.fee_tiers))
    validate_equity_tiers(params.short_term_order_equity_tiers, "short_term_order_equity_tiers")
    validate_equity_tiers(params.stateful_order_equity_tiers, "stateful_order_equity_tiers")
    store.set(keys.PARAMS_KEY, encode_proto(params))


# The smallest non-zero ClobParams.max_order_actions_per_block: the units of the largest valid tx, 200 actions
# (app/tx/codec.py MAX_ORDER_ACTIONS) that are all cancel-replaces (2 units each), so every valid tx fits in a block.
MIN_BLOCK_ACTION_CAP = 400


def validate_params(params: exchange_pb2.ClobParams, code: ErrorCode, where: str) -> None:
    """The windows, slippage bounds and block cap a chain cannot run without (fee and equity tiers: set_params).
    Genesis (code invalid_genesis) and MsgSetClobLimits (invalid_clob_params) apply the same rules; a genesis field
    left out of a ``params`` object (0) is refused here, not at the first order."""
    def bad(why: str) -> AppError:
        return AppError(code, f"{where}: {why}")

    if params.short_block_window < 1:
        raise bad("short_block_window must be at least 1 block (short-term orders need a window)")
    if params.max_stateful_window_ns < 1:
        raise bad("max_stateful_window_ns must be at least 1 ns (long-term orders need a window)")
    if params.max_market_slippage_ppm >= ONE_MILLION:
        raise bad("max_market_slippage_ppm must be below 1000000 (0 = no bound)")
    if not 0 < params.default_market_slippage_ppm < ONE_MILLION:
        raise bad("default_market_slippage_ppm must be in 1..999999")
    if params.max_market_slippage_ppm and params.default_market_slippage_ppm > params.max_market_slippage_ppm:
        raise bad(f"default_market_slippage_ppm {params.default_market_slippage_ppm} is above "
                  f"max_market_slippage_ppm {params.max_market_slippage_ppm}")
    if 0 < params.max_order_actions_per_block < MIN_BLOCK_ACTION_CAP:
        raise bad(f"max_order_actions_per_block {params.max_order_actions_per_block} is below "
                  f"{MIN_BLOCK_ACTION_CAP}: one valid tx (200 cancel-replaces) could never fit in a block "
                  "(0 = no cap)")


MAX_EQUITY_TIER_ORDERS = 10_000_000  # dYdX MaxShortTermOrdersForEquityTier = MaxStatefulOrdersForEquityTier


def validate_equity_tiers(tiers, field: str) -> None:
    """dYdX EquityTierLimitConfiguration.Validate: every limit at most 10 000 000 orders and the requirements
    strictly ascending. dYdX sorts the list before storing it; an unsorted list is refused here instead, so the
    stored list is the one the authority signed."""
    previous = None
    for i, tier in enumerate(tiers):
        if tier.limit > MAX_EQUITY_TIER_ORDERS:
            raise AppError(ERR_INVALID_EQUITY_TIERS, f"{field}[{i}]: limit {tier.limit} is above "
                                                     f"{MAX_EQUITY_TIER_ORDERS} orders")
        required = tier.usd_tnc_required_quote_quantums
        if previous is not None and required <= previous:
            raise AppError(ERR_INVALID_EQUITY_TIERS, f"{field}[{i}]: usd_tnc_required_quote_quantums {required} "
                                                     f"must be above the previous tier's {previous} (strictly "
                                                     "ascending)")
        previous = required


def equity_tier_limit(tiers, net_collateral: int) -> int | None:
    """Open orders of the kind a subaccount with this total net collateral (quote quantums) may hold: the limit of
    the last tier whose requirement it meets (tiers ascending), 0 when it meets none (a negative TNC meets none),
    None when the list is empty (no cap). Mirrors the tier choice of dYdX
    ValidateSubaccountEquityTierLimitForNewOrder (x/clob/keeper/equity_tier_limit.go)."""
    if not tiers:
        return None
    limit = 0
    for tier in tiers:
        if net_collateral < tier.usd_tnc_required_quote_quantums:
            break
        limit = tier.limit
    return limit


@functools.lru_cache(maxsize=64)
def _fee_tiers(raw_params: bytes) -> list[FeeTier]:
    params = exchange_pb2.ClobParams.FromString(raw_params)
    return [FeeTier(t.name, t.absolute_volume_requirement_quote_quantums, t.total_volume_share_requirement_ppm,
                    t.maker_volume_share_requirement_ppm, t.maker_fee_ppm, t.taker_fee_ppm) for t in params.fee_tiers]


def validate_fee_tiers(tiers: list[exchange_pb2.FeeTier]) -> None:
    """At least one tier; each named, no two alike (a fill names its tiers by name); the first has no requirements;
    fees within ±1 %; and the lowest taker fee covers the largest maker rebate, so every fill's fees net to >= 0 and
    rebates never draw on the fee collector's other funds (dYdX x/feetiers PerpetualFeeParams.Validate: "maker rebate
    must not exceed the lowest taker fee")."""
    if not tiers:
        raise AppError(ERR_INVALID_FEE_TIERS, "at least one fee tier is needed")
    names: dict[str, None] = {}
    for t in tiers:
        if not t.name or t.name in names:
            raise AppError(ERR_INVALID_FEE_TIERS, f"tier {t.name!r}: every fee tier needs a name of its own (fills "
                                                  "name the tiers they used)")
        names[t.name] = None
    first = tiers[0]
    if (first.absolute_volume_requirement_quote_quantums or first.total_volume_share_requirement_ppm
            or first.maker_volume_share_requirement_ppm):
        raise AppError(ERR_INVALID_FEE_TIERS, "the first fee tier must have no requirements")
    for t in tiers:
        if not (-10_000 <= t.maker_fee_ppm <= 10_000 and 0 <= t.taker_fee_ppm <= 10_000):
            raise AppError(ERR_INVALID_FEE_TIERS, f"tier {t.name!r}: maker fee must be in -10000..10000 ppm and "
                                                  "taker fee in 0..10000 ppm")
        if t.total_volume_share_requirement_ppm > ONE_MILLION or t.maker_volume_share_requirement_ppm > ONE_MILLION:
            raise AppError(ERR_INVALID_FEE_TIERS, f"tier {t.name!r}: a volume share above 100 %")
    lowest_taker = min(t.taker_fee_ppm for t in tiers)
    lowest_maker = min(t.maker_fee_ppm for t in tiers)
    if lowest_taker + lowest_maker < 0:
        raise AppError(ERR_INVALID_FEE_TIERS, f"the largest maker rebate ({-lowest_maker} ppm) exceeds the lowest "
                                              f"taker fee ({lowest_taker} ppm)")


# --- orders ------------------------------------------------------------------------------------------------------

def get_order_or_none(store: CommittedReader, okey: bytes) -> exchange_pb2.Order | None:
    raw = store.get(keys.ORDER_PREFIX + okey)
    return None if raw is None else exchange_pb2.Order.FromString(raw)


def get_order(store: CommittedReader, okey: bytes) -> exchange_pb2.Order:
    order = get_order_or_none(store, okey)
    if order is None:
        raise AppError(ERR_ORDER_NOT_FOUND, f"order {describe_key(okey)} is not on the book (it filled, expired or "
                                            "was canceled, or never rested)")
    return order


def describe_key(okey: bytes) -> str:
    from app.lib.address import encode_address

    kind = "short-term" if okey[29] == keys.SHORT_TERM else "long-term"  # flags are 0 or 64 (actions.py checks)
    return (f"{encode_address(okey[:20])}/{okey[20]} pair {int.from_bytes(okey[21:25], 'big')} client id "
            f"{int.from_bytes(okey[25:29], 'big')} {kind} (flags {okey[29]})")


def key_of(order: exchange_pb2.Order) -> bytes:
    return keys.order_key(order.owner, order.subaccount_number, order.clob_pair_id, order.client_id,
                          order.order_flags)


def _expiry_key(order: exchange_pb2.Order, okey: bytes) -> bytes:
    if order.order_flags == keys.LONG_TERM:
        return keys.expiry_time_key(order.good_til_block_time_ns, okey)
    return keys.expiry_block_key(order.good_til_block, okey)


def insert_order(store: BranchStore, order: exchange_pb2.Order) -> bytes:
    """Store a new resting order and its expiry entry; returns its key (the caller adds it to the book)."""
    okey = key_of(order)
    store.set(keys.ORDER_PREFIX + okey, encode_proto(order))
    store.set(_expiry_key(order, okey), b"")
    return okey


def update_remaining(store: BranchStore, okey: bytes, order: exchange_pb2.Order, remaining: int) -> None:
    order.remaining_quantums = remaining
    store.set(keys.ORDER_PREFIX + okey, encode_proto(order))


def delete_order(store: BranchStore, okey: bytes, order: exchange_pb2.Order) -> None:
    store.delete(keys.ORDER_PREFIX + okey)
    store.delete(_expiry_key(order, okey))


def iter_orders(store: CommittedReader, prefix: bytes = b""):
    """(order key, Order) in key order, optionally under a key prefix (owner, owner+number, owner+number+pair)."""
    start = keys.ORDER_PREFIX + prefix
    n = len(keys.ORDER_PREFIX)
    for key, raw in store.iterate(start, prefix_end(start)):
        yield key[n:], exchange_pb2.Order.FromString(raw)


def iter_expired(store: CommittedReader, height: int, block_time_ns: int):
    """Keys of orders that expire in this block: good_til_block < height, or good_til_block_time <= block time."""
    n = len(keys.EXPIRY_BLOCK_PREFIX) + 8
    for key, _ in store.iterate(keys.EXPIRY_BLOCK_PREFIX, keys.EXPIRY_BLOCK_PREFIX + max(0, height).to_bytes(8, "big")):
        yield key[n:]
    end = keys.EXPIRY_TIME_PREFIX + (max(0, block_time_ns) + 1).to_bytes(8, "big")
    for key, _ in store.iterate(keys.EXPIRY_TIME_PREFIX, end):
        yield key[n:]


def next_sequence(store: BranchStore) -> int:
    raw = store.get(keys.SEQUENCE_KEY)
    seq = 1 if raw is None else int.from_bytes(raw, "big")
    store.set(keys.SEQUENCE_KEY, (seq + 1).to_bytes(8, "big"))
    return seq


# --- 30-day volume (fee tiers) -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Volume:
    total_notional_quote_quantums: int
    maker_notional_quote_quantums: int


def _decode_buckets(raw: bytes | None) -> list[tuple[int, int, int]]:
    if not raw:
        return []
    return [_BUCKET.unpack_from(raw, i) for i in range(0, len(raw), _BUCKET.size)]


def _window_sum(buckets: list[tuple[int, int, int]], day: int) -> Volume:
    total = maker = 0
    for d, t, m in buckets:
        if d > day - STATS_WINDOW_DAYS:
            total += t
            maker += m
    return Volume(total, maker)


def get_volume(store: CommittedReader, owner: bytes | None, block_time_ns: int) -> Volume:
    """Notional traded over the last 30 days (by block time; ``owner`` None = the whole exchange)."""
    raw = store.get(keys.GLOBAL_STATS_KEY if owner is None else keys.stats_key(owner))
    return _window_sum(_decode_buckets(raw), max(0, block_time_ns) // NS_PER_DAY)


def _add_volume(store: BranchStore, key: bytes, day: int, notional: int, maker_notional: int) -> None:
    buckets = [b for b in _decode_buckets(store.get(key)) if b[0] > day - STATS_WINDOW_DAYS]
    if buckets and buckets[-1][0] == day:
        d, t, m = buckets[-1]
        buckets[-1] = (d, t + notional, m + maker_notional)
    else:
        buckets.append((day, notional, maker_notional))
    store.set(key, b"".join(_BUCKET.pack(*b) for b in buckets))


class FillLedger:
    """What fills accumulate instead of writing per fill: traded notional (written to the 30-day stats once at the
    end of the order phase: dYdX x/stats records fills during the block and applies them in EndBlocker, so fee tiers
    see volume up to the previous block) and, per action, the cross pool's net fees (paid once per action)."""

    def __init__(self) -> None:
        self.by_owner: dict[bytes, list[int]] = {}  # owner -> [total notional, maker notional]
        self.total = 0  # the exchange counts each fill once
        # Net fees of cross-pool subaccounts in one action's fills (app/clob/matching.settle_cross_pool_fees).
        self.cross_pool_fees = 0

    def add_fill(self, taker: bytes, maker: bytes, notional: int) -> None:
        t = self.by_owner.setdefault(taker, [0, 0])
        t[0] += notional
        m = self.by_owner.setdefault(maker, [0, 0])
        m[0] += notional
        m[1] += notional
        self.total += notional

    def merge(self, other: FillLedger) -> None:
        for owner, (total, maker) in other.by_owner.items():
            mine = self.by_owner.setdefault(owner, [0, 0])
            mine[0] += total
            mine[1] += maker
        self.total += other.total

    def write(self, store: BranchStore, block_time_ns: int) -> None:
        day = max(0, block_time_ns) // NS_PER_DAY
        for owner in sorted(self.by_owner):
            total, maker = self.by_owner[owner]
            _add_volume(store, keys.stats_key(owner), day, total, maker)
        if self.total:
            _add_volume(store, keys.GLOBAL_STATS_KEY, day, self.total, 0)


def fee_ppm(store: CommittedReader, owner: bytes, block_time_ns: int, maker: bool,
            memo: dict | None = None) -> tuple[int, str]:
    """(fee ppm, tier name) of ``owner`` for a maker or taker fill. Mirrors dYdX GetPerpetualFeePpm (no per-market
    discount, no staking discount). The name is the tier's ``name`` in ``clob.params.fee_tiers`` (what ``query clob
    params`` lists; the default tiers are "1".."9"), so a fill names the tier a user can look up.

    ``memo`` (owner -> (maker ppm, taker ppm, tier name)) may be kept for one order phase, one CheckTx or one query:
    fee tiers and the 30-day volume cannot change during it (the order phase writes volume once, at its end)."""
    hit = memo.get(owner) if memo is not None else None
    if hit is None:
        hit = _fee_rates(store, owner, block_time_ns)
        if memo is not None:
            memo[owner] = hit
    return (hit[0] if maker else hit[1]), hit[2]


def _fee_rates(store: CommittedReader, owner: bytes, block_time_ns: int) -> tuple[int, int, str]:
    raw = store.get(keys.PARAMS_KEY)
    tiers = _fee_tiers(raw) if raw is not None else []
    if not tiers:
        return 0, 0, ""
    user = get_volume(store, owner, block_time_ns)
    total = get_volume(store, None, block_time_ns)
    index = select_fee_tier(tiers, user.total_notional_quote_quantums, user.maker_notional_quote_quantums,
                            total.total_notional_quote_quantums)
    tier = tiers[index]
    return tier.maker_fee_ppm, tier.taker_fee_ppm, tier.name
