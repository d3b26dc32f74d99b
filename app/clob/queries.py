"""clob, perpetuals and subaccounts queries (JSON answers): order book, orders, markets, subaccount details.

Human units beside every integer: prices in USD, sizes in coins, amounts in USDC (exact decimal strings).
USD per coin of a price in subticks = subticks × 10^(QCE − atomic_resolution − 6); coins = base quantums ×
10^atomic_resolution; USDC = quote quantums × 10^-6.
"""

from __future__ import annotations

from app.bank.handlers import parse_address
from app.clob import keeper, keys
from app.clob.book import BUY, SELL, Books
from app.errors import ERR_BAD_QUERY_PATH, ERR_INVALID_SUBACCOUNT, ERR_UNKNOWN_CLOB_PAIR, AppError
from app.lib.address import encode_address
from app.lib.math import Rounding, div_round
from app.lib.units import format_scaled
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals import logic as perp_logic
from app.store import BranchStore, prefix_end
from app.subaccounts import keeper as subaccounts_keeper
from app.subaccounts.state import MAX_SUBACCOUNT_NUMBER, SubaccountId

SIDES = {BUY: "buy", SELL: "sell"}
STATUS = {1: "active", 2: "post-only", 3: "cancel-only", 4: "paused", 5: "final-settlement"}
TIF = {0: "gtc", 1: "ioc", 2: "post-only", 3: "fok"}


def is_ascii_number(text: str) -> bool:
    """Only 0-9 (str.isdigit also accepts "²" and other digits int() refuses), at most 20 of them."""
    return text.isascii() and text.isdecimal() and len(text) <= 20


def usd_of_subticks(subticks: int, pair, perp) -> str:
    return format_scaled(subticks, pair.quantum_conversion_exponent - perp.atomic_resolution - 6)


def coins_of(base_quantums: int, perp) -> str:
    return format_scaled(base_quantums, perp.atomic_resolution)


def usdc(quote_quantums: int) -> str:
    return format_scaled(quote_quantums, -6)


def find_pair(store: BranchStore, name: str):
    """A clob pair by ticker ("BTC-USD", any case) or id; unknown -> the list of markets in the error."""
    perps = list(perpetuals_keeper.iter_perpetuals(store))
    for perp in perps:
        if perp.ticker.upper() == name.upper() or (is_ascii_number(name) and int(name) == perp.id):
            for pair in keeper.iter_pairs(store):
                if pair.perpetual_id == perp.id:
                    return pair, perp
    raise AppError(ERR_UNKNOWN_CLOB_PAIR, f"no market {name!r}; markets: {', '.join(p.ticker for p in perps)}")


def query_perpetuals(store: BranchStore) -> dict:
    out = []
    pairs = {p.perpetual_id: p for p in keeper.iter_pairs(store)}
    for perp in perpetuals_keeper.iter_perpetuals(store):
        info = perpetuals_keeper.get_margin_info(store, perp.id)
        pair = pairs.get(perp.id)
        tier = perpetuals_keeper.get_tier(store, perp.liquidity_tier)
        entry = {
            "id": perp.id, "ticker": perp.ticker, "market_id": perp.market_id,
            "atomic_resolution": perp.atomic_resolution,
            "market_type": "isolated" if perp.market_type == perpetuals_keeper.ISOLATED else "cross",
            "liquidity_tier": {"id": tier.id, "name": tier.name, "initial_margin_ppm": tier.initial_margin_ppm,
                               "maintenance_fraction_ppm": tier.maintenance_fraction_ppm,
                               "open_interest_lower_cap_quote_quantums": str(tier.open_interest_lower_cap_quote_quantums),
                               "open_interest_upper_cap_quote_quantums": str(tier.open_interest_upper_cap_quote_quantums)},
            "open_interest_base_quantums": str(perp.open_interest_base_quantums),
            "open_interest": coins_of(perp.open_interest_base_quantums, perp),
            "funding_index": str(perp.funding_index),
            "oracle_price": format_scaled(info.price, info.price_exponent) if info.price else None,
            "mark_price": format_scaled(info.mark_price, info.price_exponent) if info.mark_price else None,
            "oracle_stale": info.stale,
        }
        if pair is not None:
            entry["clob_pair"] = {
                "id": pair.id, "status": STATUS.get(pair.status, str(pair.status)),
                "step_base_quantums": str(pair.step_base_quantums), "step": coins_of(pair.step_base_quantums, perp),
                "subticks_per_tick": str(pair.subticks_per_tick),
                "tick_usd": usd_of_subticks(pair.subticks_per_tick, pair, perp),
                "quantum_conversion_exponent": pair.quantum_conversion_exponent,
            }
        out.append(entry)
    return {"perpetuals": out}


def query_params(store: BranchStore) -> dict:
    p = keeper.get_params(store)
    return {"short_block_window": p.short_block_window, "max_stateful_window_ns": str(p.max_stateful_window_ns),
            "max_open_orders_per_subaccount": p.max_open_orders_per_subaccount,
            "default_market_slippage_ppm": p.default_market_slippage_ppm,
            "max_market_slippage_ppm": p.max_market_slippage_ppm,
            "max_order_actions_per_block": p.max_order_actions_per_block,
            "fee_tiers": [{"name": t.name, "absolute_volume_requirement_quote_quantums":
                           str(t.absolute_volume_requirement_quote_quantums),
                           "total_volume_share_requirement_ppm": t.total_volume_share_requirement_ppm,
                           "maker_volume_share_requirement_ppm": t.maker_volume_share_requirement_ppm,
                           "maker_fee_ppm": t.maker_fee_ppm, "taker_fee_ppm": t.taker_fee_ppm}
                          for t in p.fee_tiers],
            "short_term_order_equity_tiers": _equity_tiers(p.short_term_order_equity_tiers),
            "stateful_order_equity_tiers": _equity_tiers(p.stateful_order_equity_tiers)}


def _equity_tiers(tiers) -> list[dict]:
    return [{"usd_tnc_required_quote_quantums": str(t.usd_tnc_required_quote_quantums), "limit": t.limit}
            for t in tiers]


def query_orderbook(store: BranchStore, books: Books | None, name: str, depth: int) -> dict:
    """L2 levels (best first) of committed state: price, total size, order count per level."""
    pair, perp = find_pair(store, name)
    levels = {BUY: {}, SELL: {}}
    if books is not None:
        for side in (BUY, SELL):
            for price, level in books.pair(pair.id).levels_from_best(side):
                total = 0
                for _, okey in level:
                    total += keeper.get_order(store, okey).remaining_quantums
                levels[side][price] = (total, len(level))
                if len(levels[side]) >= depth:
                    break
    else:  # the in-memory book holds an uncommitted block: read committed state directly
        for _, order in keeper.iter_orders(store):
            if order.clob_pair_id == pair.id:
                t, c = levels[order.side].get(order.subticks, (0, 0))
                levels[order.side][order.subticks] = (t + order.remaining_quantums, c + 1)

    def side_levels(side: int) -> list[dict]:
        prices = sorted(levels[side], reverse=side == BUY)[:depth]
        return [{"subticks": str(p), "price": usd_of_subticks(p, pair, perp),
                 "quantums": str(levels[side][p][0]), "size": coins_of(levels[side][p][0], perp),
                 "orders": levels[side][p][1]} for p in prices]

    bids, asks = side_levels(BUY), side_levels(SELL)
    return {"market": perp.ticker, "clob_pair_id": pair.id, "status": STATUS.get(pair.status, str(pair.status)),
            "bids": bids, "asks": asks}


def order_json(store: BranchStore, order) -> dict:
    pair = keeper.get_pair(store, order.clob_pair_id)
    perp = perpetuals_keeper.get_perpetual(store, pair.perpetual_id)
    return {"owner": encode_address(order.owner), "subaccount_number": order.subaccount_number,
            "client_id": order.client_id, "order_flags": order.order_flags, "clob_pair_id": order.clob_pair_id,
            "market": perp.ticker, "side": SIDES.get(order.side, "?"), "time_in_force": TIF.get(order.time_in_force),
            "reduce_only": order.reduce_only, "subticks": str(order.subticks),
            "price": usd_of_subticks(order.subticks, pair, perp), "quantums": str(order.quantums),
            "size": coins_of(order.quantums, perp), "remaining_quantums": str(order.remaining_quantums),
            "remaining": coins_of(order.remaining_quantums, perp), "good_til_block": str(order.good_til_block),
            "good_til_block_time_ns": str(order.good_til_block_time_ns), "sequence": str(order.sequence),
            "placed_height": str(order.placed_height)}


def parse_sid(owner_text: str, number_text: str | None) -> SubaccountId:
    owner = parse_address(owner_text, "owner")
    if number_text is None:
        return SubaccountId(owner, 0)
    if not is_ascii_number(number_text) or not 0 <= int(number_text) <= MAX_SUBACCOUNT_NUMBER:
        raise AppError(ERR_INVALID_SUBACCOUNT, f"subaccount number {number_text!r} is not in 0..127")
    return SubaccountId(owner, int(number_text))


def query_orders(store: BranchStore, owner_text: str, number_text: str | None) -> dict:
    owner = parse_address(owner_text, "owner")
    prefix = owner if number_text is None else owner + bytes((parse_sid(owner_text, number_text).number,))
    return {"orders": [order_json(store, o) for _, o in keeper.iter_orders(store, prefix)]}


def query_subaccount(store: BranchStore, owner_text: str, number_text: str | None) -> dict:
    """Collateral, positions (size, entry, oracle and mark price, unrealized PnL), TNC, IMR, MMR, free collateral,
    leverage -- with funding settled as of now (what the next update would see)."""
    sid = parse_sid(owner_text, number_text)
    prep = subaccounts_keeper.prepare(store, sid)
    sub = prep.before
    positions = []
    gross = 0
    for pid, p in sorted(sub.positions.items()):
        perp = perpetuals_keeper.get_perpetual(store, pid)
        info = perpetuals_keeper.get_margin_info(store, pid)
        notional = perp_logic.net_collateral(p.size_base_quantums, info.atomic_resolution, info.price,
                                             info.price_exponent) if info.price else 0
        gross += abs(notional)
        signed_entry = p.entry_notional_quote_quantums if p.size_base_quantums > 0 else -p.entry_notional_quote_quantums
        entry_price_x = div_round(p.entry_notional_quote_quantums * 10**12,
                                  abs(p.size_base_quantums), Rounding.FLOOR)  # quote per base, scaled 1e12
        positions.append({
            "perpetual_id": pid, "market": perp.ticker, "side": "long" if p.size_base_quantums > 0 else "short",
            "size_base_quantums": str(p.size_base_quantums), "size": coins_of(p.size_base_quantums, perp),
            "entry_price": format_scaled(entry_price_x, -12 - 6 - perp.atomic_resolution),
            "oracle_price": format_scaled(info.price, info.price_exponent) if info.price else None,
            "mark_price": format_scaled(info.mark_price, info.price_exponent) if info.mark_price else None,
            "notional_quote_quantums": str(notional), "notional": usdc(notional),
            "unrealized_pnl_quote_quantums": str(notional - signed_entry), "unrealized_pnl": usdc(notional - signed_entry),
            "funding_index": str(p.funding_index),
        })
    try:
        risk = subaccounts_keeper.compute_risk(store, sub)
        tnc, imr, mmr = (risk.net_collateral_quote_quantums, risk.initial_margin_quote_quantums,
                         risk.maintenance_margin_quote_quantums)
        leverage = format_scaled(div_round(gross * 100, tnc, Rounding.FLOOR), -2) if tnc > 0 else None
        margin = {"total_net_collateral_quote_quantums": str(tnc), "total_net_collateral": usdc(tnc),
                  "initial_margin_requirement_quote_quantums": str(imr), "initial_margin_requirement": usdc(imr),
                  "maintenance_margin_requirement_quote_quantums": str(mmr),
                  "maintenance_margin_requirement": usdc(mmr),
                  "free_collateral_quote_quantums": str(tnc - imr), "free_collateral": usdc(tnc - imr),
                  "leverage": leverage, "liquidatable": risk.is_liquidatable(),
                  "open_orders": _open_orders(store, sid, tnc)}
    except AppError as err:
        margin = {"error": err.log}
    pool = subaccounts_keeper.pool_of(store, sub)
    return {"owner": encode_address(sid.owner), "number": sid.number,
            "quote_balance_quote_quantums": str(sub.quote_balance_quote_quantums),
            "quote_balance": usdc(sub.quote_balance_quote_quantums),
            "unsettled_funding_quote_quantums": str(prep.funding_delta),
            "collateral_pool": encode_address(pool), "positions": positions, **margin}


def _open_orders(store: BranchStore, sid: SubaccountId, tnc: int) -> dict:
    """The subaccount's resting orders of each kind and how many its equity tier allows at this TNC (None: no cap):
    what its next resting placement is checked against (app/clob/actions._equity_tier_check)."""
    prefix = keys.ORDER_PREFIX + sid.owner + bytes((sid.number,))
    held = {keys.SHORT_TERM: 0, keys.LONG_TERM: 0}
    for key, _ in store.iterate(prefix, prefix_end(prefix)):
        if key[-1] in held:  # the order key ends with its flags byte (stored orders have one of the two)
            held[key[-1]] += 1
    params = keeper.get_params(store)
    return {"short_term": {"open": held[keys.SHORT_TERM],
                           "allowed": keeper.equity_tier_limit(params.short_term_order_equity_tiers, tnc)},
            "long_term": {"open": held[keys.LONG_TERM],
                          "allowed": keeper.equity_tier_limit(params.stateful_order_equity_tiers, tnc)}}


def query_subaccounts_of(store: BranchStore, owner_text: str) -> dict:
    owner = parse_address(owner_text, "owner")
    return {"subaccounts": [query_subaccount(store, owner_text, str(sid.number))
                            for sid, _ in subaccounts_keeper.iter_subaccounts(store, owner)]}


def check_depth(text: str) -> int:
    if not is_ascii_number(text) or not 1 <= int(text) <= 1000:
        raise AppError(ERR_BAD_QUERY_PATH, "depth must be 1..1000")
    return int(text)

