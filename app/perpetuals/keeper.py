"""Sole owner of the perpetuals prefix: liquidity tiers, perpetuals, open interest, funding index.

Invariants: every perpetual names an existing oracle market and liquidity tier; open interest is the sum of
long positions (base quantums), kept equal to the sum of shorts by the subaccounts module (checked per block).
"""

from __future__ import annotations

import dataclasses
import functools

from perpchain.v1 import exchange_pb2

from app.errors import ERR_UNKNOWN_LIQUIDITY_TIER, ERR_UNKNOWN_PERPETUAL, AppError
from app.lib.encoding import encode_proto
from app.perpetuals import keys
from app.prices import keeper as prices_keeper
from app.store import BranchStore, CommittedReader, prefix_end

CROSS = exchange_pb2.MARKET_TYPE_CROSS
ISOLATED = exchange_pb2.MARKET_TYPE_ISOLATED


@functools.lru_cache(maxsize=4096)
def _decode_perpetual(raw: bytes) -> exchange_pb2.Perpetual:
    return exchange_pb2.Perpetual.FromString(raw)


@functools.lru_cache(maxsize=1024)
def _decode_tier(raw: bytes) -> exchange_pb2.LiquidityTier:
    return exchange_pb2.LiquidityTier.FromString(raw)


@dataclasses.dataclass(frozen=True)
class MarginInfo:
    """Everything the margin math needs about one perpetual at one moment (read-only snapshot)."""

    perpetual_id: int
    market_id: int
    atomic_resolution: int
    price: int  # oracle price, exponent units; 0 = no price yet
    price_exponent: int
    mark_price: int
    stale: bool
    initial_margin_ppm: int
    maintenance_fraction_ppm: int
    oi_lower_cap_quote_quantums: int
    oi_upper_cap_quote_quantums: int
    open_interest_base_quantums: int
    market_type: int
    funding_index: int


def get_tier_or_none(store: CommittedReader, tier_id: int) -> exchange_pb2.LiquidityTier | None:
    raw = store.get(keys.tier_key(tier_id))
    return None if raw is None else _decode_tier(raw)


def get_tier(store: CommittedReader, tier_id: int) -> exchange_pb2.LiquidityTier:
    tier = get_tier_or_none(store, tier_id)
    if tier is None:
        raise AppError(ERR_UNKNOWN_LIQUIDITY_TIER, f"liquidity tier {tier_id} does not exist")
    return tier


def set_tier(store: BranchStore, tier: exchange_pb2.LiquidityTier) -> None:
    store.set(keys.tier_key(tier.id), encode_proto(tier))


def iter_tiers(store: CommittedReader):
    for _, raw in store.iterate(keys.TIER_PREFIX, prefix_end(keys.TIER_PREFIX)):
        yield _decode_tier(raw)


def get_perpetual_or_none(store: CommittedReader, perpetual_id: int) -> exchange_pb2.Perpetual | None:
    """The stored perpetual (a shared, cached object: copy before changing it)."""
    raw = store.get(keys.perpetual_key(perpetual_id))
    return None if raw is None else _decode_perpetual(raw)


def get_perpetual(store: CommittedReader, perpetual_id: int) -> exchange_pb2.Perpetual:
    perp = get_perpetual_or_none(store, perpetual_id)
    if perp is None:
        raise AppError(ERR_UNKNOWN_PERPETUAL, f"perpetual {perpetual_id} does not exist")
    return perp


def set_perpetual(store: BranchStore, perp: exchange_pb2.Perpetual) -> None:
    store.set(keys.perpetual_key(perp.id), encode_proto(perp))


def written_perpetual_ids(block_store: BranchStore) -> list[int]:
    """The perpetuals this branch wrote (ascending): the block invariants check their open interest even when no
    subaccount moved."""
    n = len(keys.PERPETUAL_PREFIX)
    return [int.from_bytes(key[n:], "big") for key, _ in block_store.write_set()
            if key.startswith(keys.PERPETUAL_PREFIX) and len(key) == n + 4]


def iter_perpetuals(store: CommittedReader):
    for _, raw in store.iterate(keys.PERPETUAL_PREFIX, prefix_end(keys.PERPETUAL_PREFIX)):
        yield _decode_perpetual(raw)


def open_interest(store: CommittedReader, perpetual_id: int, view: MarginView | None = None) -> int:
    """Open interest in base quantums: the order phase's working value (:func:`start_order_phase`), else stored."""
    if view is not None and view.oi is not None:
        oi = view.oi.get(perpetual_id)
        if oi is None:
            oi = view.oi_base.get(perpetual_id)
            if oi is None:
                oi = view.oi_base[perpetual_id] = get_perpetual(store, perpetual_id).open_interest_base_quantums
        return oi
    return get_perpetual(store, perpetual_id).open_interest_base_quantums


def apply_open_interest_delta(store: BranchStore, perpetual_id: int, delta_base_quantums: int,
                              view: MarginView | None = None) -> None:
    if delta_base_quantums == 0:
        return
    if view is not None and view.oi is not None:  # the order phase: written once, at its end
        current = open_interest(store, perpetual_id, view)
        view.undo.append((view.oi, perpetual_id, view.oi.get(perpetual_id)))
        view.oi[perpetual_id] = current + delta_base_quantums
        return
    perp = exchange_pb2.Perpetual()
    perp.CopyFrom(get_perpetual(store, perpetual_id))
    perp.open_interest_base_quantums = perp.open_interest_base_quantums + delta_base_quantums
    set_perpetual(store, perp)


# --- the order phase's working set -------------------------------------------------------------------------------
# Fills change two subaccounts and a perpetual's open interest each. During the order phase these live in the view and
# are written to the store once per phase, not once per fill (an encoding and a store write saved per change). Each
# action records what it replaced, so a refused action leaves the working set as it found it, exactly as its
# discarded store branch leaves the store.

def start_order_phase(view: MarginView) -> None:
    view.oi = {}
    view.oi_base = {}
    view.undo = []


def start_action(view: MarginView) -> None:
    view.undo.clear()


def rollback_action(view: MarginView) -> None:
    """Undo the current action's changes to the working set, newest first."""
    for table, key, before in reversed(view.undo):
        if before is None:
            del table[key]
        else:
            table[key] = before
    view.undo.clear()


def flush_open_interest(store: BranchStore, view: MarginView) -> None:
    """Write the open interest of every perpetual the phase's fills changed (in id order) and close the phase."""
    oi = view.oi
    view.oi = None
    for pid in sorted(oi):
        perp = exchange_pb2.Perpetual()
        perp.CopyFrom(get_perpetual(store, pid))
        perp.open_interest_base_quantums = oi[pid]
        set_perpetual(store, perp)


def set_funding_index(store: BranchStore, perpetual_id: int, funding_index: int) -> None:
    """The funding hook's input (accrual comes with the risk issue; tests set it directly)."""
    perp = exchange_pb2.Perpetual()
    perp.CopyFrom(get_perpetual(store, perpetual_id))
    perp.funding_index = funding_index
    set_perpetual(store, perp)


class MarginView:
    """Memoized margin data of the perpetuals for as long as their parameters and prices cannot change: one
    order phase of a block, one CheckTx, one query. Static fields (resolution, price, tier, market type, funding
    index) are read once per perpetual; open interest is not part of the view (callers read it from their own
    branch, since fills move it)."""

    __slots__ = ("store", "_infos", "position_risk", "subaccount_risk", "decoded_subaccounts", "fees", "live", "oi",
                 "oi_base", "undo")

    def __init__(self, store: CommittedReader) -> None:
        self.store = store
        self._infos: dict[int, MarginInfo] = {}
        # (perpetual id, size, open interest) -> (net collateral, IMR, MMR) of one position: a pure function of its
        # key while prices and parameters are fixed, so positions untouched by a fill are not recomputed.
        self.position_risk: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        # stored subaccount bytes -> (Σ NC, Σ IMR, Σ MMR) of its positions in tiers without OI scaling, and the
        # perpetuals of its other positions (app/subaccounts/keeper._uncapped_sums)
        self.subaccount_risk: dict[bytes, tuple] = {}
        # (owner, number, stored bytes) -> (settled state, funding delta, funding events)
        # (app/subaccounts/keeper.prepare)
        self.decoded_subaccounts: dict[tuple[bytes, int, bytes], tuple] = {}
        # owner -> (maker fee ppm, taker fee ppm, fee tier name) (app/clob/keeper.fee_ppm): fee tiers and 30-day
        # volume are fixed for the view's life too (volume is written once, after the order phase)
        self.fees: dict[bytes, tuple[int, int, str]] = {}
        # The order phase's working set (:func:`start_order_phase`), written to the store once, at the end of the
        # phase; None outside it. Subaccounts (app/subaccounts/keeper.start_working_set): SubaccountId -> current
        # state. Open interest: perpetual id -> current OI, for the perpetuals a fill changed (``oi``), and the
        # stored OI of those only read (``oi_base``).
        self.live: dict | None = None
        self.oi: dict[int, int] | None = None
        self.oi_base: dict[int, int] = {}
        # (table, key, value before or None) of every change the current action made to the working set
        self.undo: list = []

    def info(self, perpetual_id: int) -> MarginInfo:
        info = self._infos.get(perpetual_id)
        if info is None:
            info = self._infos[perpetual_id] = get_margin_info(self.store, perpetual_id)
        return info

    def is_isolated(self, perpetual_id: int) -> bool:
        return self.info(perpetual_id).market_type == ISOLATED


def get_margin_info(store: CommittedReader, perpetual_id: int) -> MarginInfo:
    """Snapshot of a perpetual with its tier and oracle price; raises unknown_perpetual."""
    perp = get_perpetual(store, perpetual_id)
    tier = get_tier(store, perp.liquidity_tier)
    price = prices_keeper.get_market_price_or_none(store, perp.market_id)
    markets = prices_keeper.get_market_param_or_none(store, perp.market_id)
    return MarginInfo(
        perpetual_id=perp.id,
        market_id=perp.market_id,
        atomic_resolution=perp.atomic_resolution,
        price=price.oracle_price if price is not None else 0,
        price_exponent=markets.exponent if markets is not None else 0,
        mark_price=price.mark_price if price is not None else 0,
        stale=price.stale if price is not None else True,
        initial_margin_ppm=tier.initial_margin_ppm,
        maintenance_fraction_ppm=tier.maintenance_fraction_ppm,
        oi_lower_cap_quote_quantums=tier.open_interest_lower_cap_quote_quantums,
        oi_upper_cap_quote_quantums=tier.open_interest_upper_cap_quote_quantums,
        open_interest_base_quantums=perp.open_interest_base_quantums,
        market_type=perp.market_type,
        funding_index=perp.funding_index,
    )
