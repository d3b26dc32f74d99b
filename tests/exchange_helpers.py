"""Exchange test fixtures: markets as perpetuals with dYdX mainnet-like clob parameters, funded subaccounts,
order-action builders. Numbers in comments are worked by hand."""

from __future__ import annotations

import json

from perpchain.v1 import exchange_pb2, tx_pb2

from node.client.txbuilder import sign_tx
from tests.helpers import ADDRS, CHAIN_ID, KEYS, ONE_USDC, Replica, genesis_app_state

BTC, ETH, SOL = 0, 1, 2  # perpetual = clob pair = market ids
BUY, SELL = exchange_pb2.SIDE_BUY, exchange_pb2.SIDE_SELL
IOC, POST_ONLY, FOK = (exchange_pb2.TIME_IN_FORCE_IOC, exchange_pb2.TIME_IN_FORCE_POST_ONLY,
                       exchange_pb2.TIME_IN_FORCE_FILL_OR_KILL)
# BTC-USD: price exponent -5 (oracle 6_400_000_000 = $64,000), atomic resolution -10, QCE -9: 1 subtick = $0.00001
# per BTC = one oracle price unit; tick 100_000 subticks = $1; step 1_000_000 base quantums = 0.0001 BTC.
BTC_PRICE = 6_400_000_000
ONE_DOLLAR_BTC = 100_000  # subticks
BTC_STEP = 1_000_000  # base quantums (0.0001 BTC)
ONE_BTC = 10_000_000_000  # base quantums
DEPOSIT = 100_000 * ONE_USDC

MARKETS = [
    {"id": BTC, "pair": "BTC-USD", "exponent": -5, "min_price_change_ppm": 1000, "price": str(BTC_PRICE)},
    {"id": ETH, "pair": "ETH-USD", "exponent": -6, "min_price_change_ppm": 1000, "price": "3000000000"},
    {"id": SOL, "pair": "SOL-USD", "exponent": -8, "min_price_change_ppm": 1000, "price": "15000000000"},
]
TIERS = [
    # dYdX mainnet Large-Cap: IM 5 %, MM = 60 % of IM = 3 %; OI scaling off.
    {"id": 0, "name": "Large-Cap", "initial_margin_ppm": 50_000, "maintenance_fraction_ppm": 600_000,
     "impact_notional_quote_quantums": "10000000000"},
    # Isolated (dYdX local genesis tier 4): IM 5 %, MF 60 %, OI caps 0.5M / 1M USDC.
    {"id": 4, "name": "Isolated", "initial_margin_ppm": 50_000, "maintenance_fraction_ppm": 600_000,
     "impact_notional_quote_quantums": "2500000000", "open_interest_lower_cap_quote_quantums": "500000000000",
     "open_interest_upper_cap_quote_quantums": "1000000000000"},
]
PERPETUALS = [
    {"id": BTC, "ticker": "BTC-USD", "market_id": BTC, "atomic_resolution": -10, "liquidity_tier": 0,
     "market_type": "MARKET_TYPE_CROSS"},
    {"id": ETH, "ticker": "ETH-USD", "market_id": ETH, "atomic_resolution": -9, "liquidity_tier": 0,
     "market_type": "MARKET_TYPE_CROSS"},
    {"id": SOL, "ticker": "SOL-USD", "market_id": SOL, "atomic_resolution": -7, "liquidity_tier": 4,
     "market_type": "MARKET_TYPE_ISOLATED"},
]
PAIRS = [
    {"id": BTC, "perpetual_id": BTC, "step_base_quantums": "1000000", "subticks_per_tick": "100000",
     "quantum_conversion_exponent": -9, "status": "CLOB_PAIR_STATUS_ACTIVE"},
    {"id": ETH, "perpetual_id": ETH, "step_base_quantums": "1000000", "subticks_per_tick": "100000",
     "quantum_conversion_exponent": -9, "status": "CLOB_PAIR_STATUS_ACTIVE"},
    {"id": SOL, "perpetual_id": SOL, "step_base_quantums": "1000000", "subticks_per_tick": "1000000",
     "quantum_conversion_exponent": -9, "status": "CLOB_PAIR_STATUS_ACTIVE"},
]


def exchange_app_state(deposit: int = DEPOSIT, depositors=(1, 2, 3, 4), fee_tiers: list | None = None) -> dict:
    state = genesis_app_state()
    state["prices"] = {"params": {"stale_after_ns": str(10**18)}, "markets": MARKETS}
    state["perpetuals"] = {"liquidity_tiers": TIERS, "perpetuals": PERPETUALS}
    state["clob"] = {"clob_pairs": PAIRS}
    if fee_tiers is not None:
        from app.clob.genesis import DEFAULT_PARAMS

        state["clob"]["params"] = {**DEFAULT_PARAMS, "fee_tiers": fee_tiers}
    state["subaccounts"] = {"deposits": [{"owner": ADDRS[i], "number": 0, "amount_quote_quantums": str(deposit)}
                                         for i in depositors]}
    return state


def place(client_id: int, side: int, quantums: int, subticks: int, *, pair: int = BTC, number: int = 0,
          gtb: int = 0, gtbt_ns: int = 0, tif: int = 0, reduce_only: bool = False, slippage_ppm: int = 0,
          height_hint: int = 1) -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(
        subaccount_number=number, client_id=client_id, clob_pair_id=pair, side=side, quantums=quantums,
        subticks=subticks, good_til_block=gtb or (0 if gtbt_ns else height_hint + 20), good_til_block_time_ns=gtbt_ns,
        time_in_force=tif, reduce_only=reduce_only, market_slippage_ppm=slippage_ppm))


def cancel(client_id: int, *, pair: int = BTC, number: int = 0, flags: int = 0) -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=tx_pb2.OrderId(
        subaccount_number=number, client_id=client_id, clob_pair_id=pair, order_flags=flags)))


def orders_tx(account: int, nonce: int, actions: list[tx_pb2.OrderAction]) -> bytes:
    return sign_tx(KEYS[account], CHAIN_ID, nonce, [tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=ADDRS[account],
                                                                                      actions=actions))])


def msg_tx(account: int, nonce: int, msgs: list[tx_pb2.Msg]) -> bytes:
    return sign_tx(KEYS[account], CHAIN_ID, nonce, msgs)


def subaccount(replica: Replica, account: int, number: int = 0) -> dict:
    res = replica.app.query(f"/subaccounts/show/{ADDRS[account]}/{number}", b"")
    assert res.code == 0, res.log
    return json.loads(res.value)


def book(replica: Replica, market: str = "BTC-USD") -> dict:
    res = replica.app.query(f"/clob/orderbook/{market}", b"")
    assert res.code == 0, res.log
    return json.loads(res.value)


def actions_of(result) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == "order_action"]


def fills_of(result) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == "fill"]


def exchange_chain(path, **kwargs) -> Replica:
    """A replica with vote extensions from height 1 (so tests can move oracle prices), at height 1."""
    r = Replica(path)
    r.init_chain(exchange_app_state(**kwargs), vote_extensions_enable_height=1)
    r.block([])
    return r


def price_block(r: Replica, txs=(), prices: dict[int, int] | None = None):
    """The next block with an oracle tx in which all 4 validators report ``prices`` (None: report nothing)."""
    from tests.oracle_helpers import extended_commit

    height = r.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [dict(prices or {})] * 4)
    proposal = r.app.prepare_proposal(list(txs), 1 << 22, height, ext)
    assert r.app.process_proposal(proposal, height, last)
    res = r.block(proposal, last_commit=last)
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    return res, res.tx_results[1:]


def height_of(r: Replica) -> int:
    return r.app.info()[0]
