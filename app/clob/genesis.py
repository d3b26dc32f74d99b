"""clob genesis: {"params": ClobParams, "clob_pairs": [ClobPair], "orders": [Order], "next_sequence", "stats"}
(protobuf JSON). Each perpetual of the perpetuals genesis is created together with its clob pair (same rules as
MsgCreatePerpetual); a perpetual's open interest and funding index are restored after its subaccounts."""

from __future__ import annotations

from perpchain.v1 import exchange_pb2

from app.clob import keeper, keys
from app.clob.handlers import create_perpetual
from app.bank.genesis import parse_uint
from app.errors import ERR_INVALID_GENESIS, AppError
from app.lib.address import decode_address_or_none, encode_address
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals.genesis import parse, to_dict
from app.store import BranchStore, prefix_end

DEFAULT_PARAMS = {
    "short_block_window": 40,  # dYdX ShortBlockWindow
    "max_stateful_window_ns": str(95 * 86_400 * 10**9),  # dYdX StatefulOrderTimeWindow
    "max_open_orders_per_subaccount": 200,
    "default_market_slippage_ppm": 50_000,
    "max_market_slippage_ppm": 500_000,
    # Order-action units per block (docs/exchange.md "Block capacity"): about one second of order phase at the mixed
    # rate bench/clob_block.py measures on the reference 2-core VM (~3 000 order ops/s).
    "max_order_actions_per_block": 3_000,
    # dYdX mainnet EquityTierLimitConfiguration (protocol/testing/mainnet/genesis.json): open orders per subaccount
    # by total net collateral in quote quantums (20 000 000 = 20 USDC)
    "short_term_order_equity_tiers": [
        {"usd_tnc_required_quote_quantums": "0", "limit": 0},
        {"usd_tnc_required_quote_quantums": "20000000", "limit": 1},
        {"usd_tnc_required_quote_quantums": "100000000", "limit": 5},
        {"usd_tnc_required_quote_quantums": "1000000000", "limit": 10},
        {"usd_tnc_required_quote_quantums": "10000000000", "limit": 100},
        {"usd_tnc_required_quote_quantums": "100000000000", "limit": 1000},
    ],
    "stateful_order_equity_tiers": [
        {"usd_tnc_required_quote_quantums": "0", "limit": 0},
        {"usd_tnc_required_quote_quantums": "20000000", "limit": 1},
        {"usd_tnc_required_quote_quantums": "100000000", "limit": 5},
        {"usd_tnc_required_quote_quantums": "1000000000", "limit": 10},
        {"usd_tnc_required_quote_quantums": "10000000000", "limit": 100},
        {"usd_tnc_required_quote_quantums": "100000000000", "limit": 200},
    ],
    # dYdX standard fee tiers (x/feetiers StandardParams), quote quantums over 30 days
    "fee_tiers": [
        {"name": "1", "maker_fee_ppm": 100, "taker_fee_ppm": 500},
        {"name": "2", "absolute_volume_requirement_quote_quantums": "1000000000000", "maker_fee_ppm": 100,
         "taker_fee_ppm": 450},
        {"name": "3", "absolute_volume_requirement_quote_quantums": "5000000000000", "maker_fee_ppm": 50,
         "taker_fee_ppm": 400},
        {"name": "4", "absolute_volume_requirement_quote_quantums": "25000000000000", "taker_fee_ppm": 350},
        {"name": "5", "absolute_volume_requirement_quote_quantums": "125000000000000", "taker_fee_ppm": 300},
        {"name": "6", "absolute_volume_requirement_quote_quantums": "125000000000000",
         "total_volume_share_requirement_ppm": 5000, "maker_fee_ppm": -50, "taker_fee_ppm": 250},
        {"name": "7", "absolute_volume_requirement_quote_quantums": "125000000000000",
         "total_volume_share_requirement_ppm": 5000, "maker_volume_share_requirement_ppm": 10000,
         "maker_fee_ppm": -90, "taker_fee_ppm": 250},
        {"name": "8", "absolute_volume_requirement_quote_quantums": "125000000000000",
         "total_volume_share_requirement_ppm": 5000, "maker_volume_share_requirement_ppm": 20000,
         "maker_fee_ppm": -110, "taker_fee_ppm": 250},
        {"name": "9", "absolute_volume_requirement_quote_quantums": "125000000000000",
         "total_volume_share_requirement_ppm": 5000, "maker_volume_share_requirement_ppm": 40000,
         "maker_fee_ppm": -110, "taker_fee_ppm": 250},
    ],
}


def init_genesis(store: BranchStore, state: dict, perpetuals: list[exchange_pb2.Perpetual]) -> list:
    """Params, perpetuals with their pairs, restored orders. Returns (perpetual, restored OI, funding index) to
    apply after the subaccounts genesis."""
    if not isinstance(state, dict):
        raise AppError(ERR_INVALID_GENESIS, "clob genesis must be an object")
    params = parse(exchange_pb2.ClobParams, state.get("params", DEFAULT_PARAMS), "clob.params")
    keeper.validate_params(params, ERR_INVALID_GENESIS, "clob.params")
    try:
        keeper.set_params(store, params)
    except AppError as err:
        raise AppError(ERR_INVALID_GENESIS, f"clob.params: {err.log}") from None
    pairs = [parse(exchange_pb2.ClobPair, raw, f"clob.clob_pairs[{i}]")
             for i, raw in enumerate(state.get("clob_pairs", []))]
    by_perp = {p.perpetual_id: p for p in pairs}
    if len(by_perp) != len(pairs) or len(pairs) != len(perpetuals):
        raise AppError(ERR_INVALID_GENESIS, "every perpetual needs exactly one clob pair")
    restore = []
    for perp in perpetuals:
        pair = by_perp.get(perp.id)
        if pair is None:
            raise AppError(ERR_INVALID_GENESIS, f"perpetual {perp.id} has no clob pair")
        fresh = exchange_pb2.Perpetual()
        fresh.CopyFrom(perp)
        fresh.open_interest_base_quantums = 0
        fresh.funding_index = 0
        try:
            create_perpetual(store, fresh, pair)
        except AppError as err:
            raise AppError(ERR_INVALID_GENESIS, f"perpetual {perp.id} / clob pair {pair.id}: {err.log}") from None
        restore.append((perp.id, perp.open_interest_base_quantums, perp.funding_index))
    sequences: dict[int, None] = {}  # placement sequences seen
    bests: dict[int, list] = {}
    for i, raw in enumerate(state.get("orders", [])):
        order = parse(exchange_pb2.Order, raw, f"clob.orders[{i}]")
        pair = keeper.get_pair_or_none(store, order.clob_pair_id)
        if (pair is None or len(order.owner) != 20 or not 0 <= order.subaccount_number <= 127
                or order.order_flags not in (keys.SHORT_TERM, keys.LONG_TERM) or order.side not in (1, 2)
                or not 0 < order.remaining_quantums <= order.quantums or order.subticks == 0
                or order.quantums % pair.step_base_quantums or order.subticks % pair.subticks_per_tick
                or (order.good_til_block == 0) == (order.good_til_block_time_ns == 0)
                or (order.order_flags == keys.LONG_TERM) != (order.good_til_block_time_ns != 0)
                or order.good_til_block_time_ns < 0):
            raise AppError(ERR_INVALID_GENESIS, f"clob.orders[{i}] is not a valid resting order")
        if keeper.get_order_or_none(store, keeper.key_of(order)) is not None:
            raise AppError(ERR_INVALID_GENESIS, f"clob.orders[{i}] repeats an order id")
        if order.sequence in sequences:
            raise AppError(ERR_INVALID_GENESIS, f"clob.orders[{i}] repeats placement sequence {order.sequence} "
                                                "(time priority must be total)")
        sequences[order.sequence] = None
        best = bests.setdefault(order.clob_pair_id, [0, None])  # [best bid, best ask] subticks
        if order.side == exchange_pb2.SIDE_BUY:
            best[0] = max(best[0], order.subticks)
        else:
            best[1] = order.subticks if best[1] is None else min(best[1], order.subticks)
        if best[1] is not None and best[0] >= best[1]:
            raise AppError(ERR_INVALID_GENESIS, f"clob.orders[{i}] crosses the book of clob pair {order.clob_pair_id}: "
                                                f"best bid {best[0]} >= best ask {best[1]} subticks")
        keeper.insert_order(store, order)
    seq = parse_uint(state["next_sequence"], "clob.next_sequence") if "next_sequence" in state else 1
    if sequences and seq <= max(sequences):
        raise AppError(ERR_INVALID_GENESIS, f"clob.next_sequence {seq} must be above every stored order's sequence "
                                            f"(largest {max(sequences)})")
    if "next_sequence" in state:
        store.set(keys.SEQUENCE_KEY, seq.to_bytes(8, "big"))
    for i, entry in enumerate(state.get("stats", [])):
        owner = entry.get("owner") if isinstance(entry, dict) else None
        raw_owner = decode_address_or_none(owner) if owner else None
        if owner != "" and raw_owner is None:
            raise AppError(ERR_INVALID_GENESIS, f"clob.stats[{i}].owner {owner!r} is not an address")
        try:
            buckets = bytes.fromhex(entry.get("buckets", ""))
        except (ValueError, TypeError):
            raise AppError(ERR_INVALID_GENESIS, f"clob.stats[{i}].buckets is not hex") from None
        if len(buckets) % 24:
            raise AppError(ERR_INVALID_GENESIS, f"clob.stats[{i}].buckets: not whole 24-byte buckets")
        store.set(keys.GLOBAL_STATS_KEY if raw_owner is None else keys.stats_key(raw_owner), buckets)
    return restore


def restore_perpetual_state(store: BranchStore, restore: list) -> None:
    for perp_id, oi, funding_index in restore:
        perp = exchange_pb2.Perpetual()
        perp.CopyFrom(perpetuals_keeper.get_perpetual(store, perp_id))
        perp.open_interest_base_quantums = oi
        perp.funding_index = funding_index
        perpetuals_keeper.set_perpetual(store, perp)


def export_genesis(store: BranchStore) -> dict:
    raw_seq = store.get(keys.SEQUENCE_KEY)
    stats = [{"owner": "", "buckets": (store.get(keys.GLOBAL_STATS_KEY) or b"").hex()}] if store.get(
        keys.GLOBAL_STATS_KEY) else []
    n = len(keys.STATS_PREFIX)
    for key, raw in store.iterate(keys.STATS_PREFIX, prefix_end(keys.STATS_PREFIX)):
        stats.append({"owner": encode_address(key[n:]), "buckets": raw.hex()})
    return {
        "params": to_dict(keeper.get_params(store)),
        "clob_pairs": [to_dict(p) for p in keeper.iter_pairs(store)],
        "orders": [to_dict(o) for _, o in keeper.iter_orders(store)],
        "next_sequence": str(int.from_bytes(raw_seq, "big")) if raw_seq else "1",
        "stats": stats,
    }
