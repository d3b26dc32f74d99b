"""The reference market maker's quote math and one round against a fake RPC (no node). Numbers worked by hand
with the localnet's markets (localnet/genesis.json):

BTC-USD  atomic -10, QCE -9: subticks = USD x 10^5,  tick 100_000 = $1,      step 1_000_000 = 0.0001 BTC
ETH-USD  atomic  -9, QCE -9: subticks = USD x 10^6,  tick 100_000 = $0.1,    step 1_000_000 = 0.001 ETH
SOL-USD  atomic  -7, QCE -9: subticks = USD x 10^8,  tick 1_000_000 = $0.01, step 1_000_000 = 0.1 SOL
PEPE-USD atomic   1, QCE -9: subticks = USD x 10^16, tick 1_000_000 = $1e-10, step 1_000_000 = 10_000_000 PEPE
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from node.client.keys import Key
from node.mm import quotes as q
from node.mm.runner import MarketMaker, build_actions, summarize_result


def market(ticker="BTC-USD", pair=0, atomic=-10, tick=100_000, step=1_000_000, oracle="64000", stale=False,
           status="active") -> q.Market:
    return q.Market(ticker, pair, atomic, -9, tick, step, status, Fraction(oracle) if oracle else None, stale)


BTC = market()
ETH = market("ETH-USD", 1, -9, 100_000, oracle="3000")
SOL = market("SOL-USD", 2, -7, 1_000_000, oracle="150")
PEPE = market("PEPE-USD", 3, 1, 1_000_000, oracle="0.000012")
S = q.Settings(levels=2, spread_bps=10, step_bps=10, size_usd=Fraction(1000))


@pytest.mark.parametrize("m, usd, subticks", [
    pytest.param(BTC, "64000", 6_400_000_000, id="BTC $64,000 = 6.4e9 subticks (the oracle price units)"),
    pytest.param(ETH, "3000", 3_000_000_000, id="ETH $3,000 = 3e9"),
    pytest.param(SOL, "150", 15_000_000_000, id="SOL $150 = 1.5e10"),
    pytest.param(PEPE, "0.000012", 120_000_000_000, id="PEPE $0.000012 = 1.2e11"),
])
def test_usd_subticks_round_trip(m, usd, subticks):
    assert q.usd_to_subticks(Fraction(usd), m.atomic_resolution, -9) == subticks
    assert q.subticks_to_usd(subticks, m.atomic_resolution, -9) == usd


@pytest.mark.parametrize("m, oracle, offset, bid, ask", [
    pytest.param(BTC, "64000", 10, 6_393_600_000, 6_406_400_000, id="BTC 10 bps: 63936 / 64064 (on the tick)"),
    pytest.param(BTC, "64000.5", 10, 6_393_600_000, 6_406_500_000,
                 id="BTC 64000.5: 63936.4995 floors to 63936, 64064.5005 ceils to 64065"),
    pytest.param(BTC, "64000", 20, 6_387_200_000, 6_412_800_000, id="BTC 20 bps: 63872 / 64128"),
    pytest.param(ETH, "3000", 10, 2_997_000_000, 3_003_000_000, id="ETH 10 bps: 2997.0 / 3003.0"),
    pytest.param(SOL, "150", 10, 14_985_000_000, 15_015_000_000, id="SOL 10 bps: 149.85 / 150.15"),
    pytest.param(PEPE, "0.000012", 10, 119_880_000_000, 120_120_000_000, id="PEPE 10 bps: 0.000011988 / 0.000012012"),
    pytest.param(PEPE, "0.0000120001", 10, 119_880_000_000, 120_122_000_000,
                 id="PEPE 120_001_000_000 subticks: x0.999 = 119_880_999_000 floors, x1.001 = 120_121_001_000 ceils "
                    "to the 1e6 tick"),
])
def test_quote_prices_round_bids_down_and_asks_up_to_the_tick(m, oracle, offset, bid, ask):
    sub = q.usd_to_subticks(Fraction(oracle), m.atomic_resolution, -9)
    assert q.quote_subticks(sub, offset, q.BUY, m.subticks_per_tick) == bid
    assert q.quote_subticks(sub, offset, q.SELL, m.subticks_per_tick) == ask


@pytest.mark.parametrize("m, size_usd, quantums", [
    pytest.param(BTC, "1000", 156_000_000, id="BTC $1000 / 64000 = 0.015625 BTC = 156.25 steps -> 156 (0.0156 BTC)"),
    pytest.param(ETH, "1000", 333_000_000, id="ETH $1000 / 3000 = 333.33 steps -> 333 (0.333 ETH)"),
    pytest.param(SOL, "1000", 67_000_000, id="SOL $1000 / 150 = 66.67 steps -> 67 (6.7 SOL)"),
    pytest.param(PEPE, "1000", 8_000_000, id="PEPE $1000 / 0.000012 = 83.3M PEPE = 8.33 steps -> 8 (80M PEPE)"),
    pytest.param(BTC, "3.2", 1_000_000, id="BTC $3.20 = half a step: rounds half up to one step"),
    pytest.param(BTC, "0.01", 1_000_000, id="BTC one cent: at least one step"),
])
def test_quote_size_to_the_nearest_step(m, size_usd, quantums):
    assert q.quote_quantums(Fraction(size_usd), m.oracle_usd, m.atomic_resolution, m.step_base_quantums) == quantums


def test_exact_inputs_only():
    assert q.to_fraction("0.000012") == Fraction(12, 1_000_000)
    assert q.to_fraction(Decimal("1000")) == 1000
    for bad in (1.5, "abc", "NaN", None):
        with pytest.raises(q.QuoteError):
            q.to_fraction(bad)


def test_client_id_slots():
    assert q.client_id_of(q.BUY, 0) == 0x4D4D0000 and q.client_id_of(q.SELL, 2) == 0x4D4D0102
    assert q.slot_of(0x4D4D0102) == (q.SELL, 2)
    for other in (0, 7, 0x4D4D0000 - 1, 0x4D4D0200, 0x4D4D0064):  # below, above, level >= MAX_LEVELS
        assert q.slot_of(other) is None


def test_ladder_keeps_post_only_quotes_inside_others_best_prices():
    plain = q.desired_quotes(BTC, S, 100)
    assert [(x.side, x.level, x.subticks, x.quantums, x.good_til_block) for x in plain] == [
        ("buy", 0, 6_393_600_000, 156_000_000, 115), ("sell", 0, 6_406_400_000, 156_000_000, 115),
        ("buy", 1, 6_387_200_000, 156_000_000, 115), ("sell", 1, 6_412_800_000, 156_000_000, 115)]
    # Someone rests an ask at $63,900 (below our bids) and a bid at $64,100: our bids go to $63,899, asks to $64,101.
    clamped = q.desired_quotes(BTC, S, 100, best_bid=6_410_000_000, best_ask=6_390_000_000)
    assert [x.subticks for x in clamped] == [6_389_900_000, 6_410_100_000, 6_387_200_000, 6_412_800_000]


def resting(side, level, subticks, remaining=156_000_000, gtb=115, pair=0) -> q.Resting:
    return q.Resting(pair, side, level, q.client_id_of(side, level), subticks, remaining, gtb)


CURRENT = [resting("buy", 0, 6_393_600_000), resting("sell", 0, 6_406_400_000),
           resting("buy", 1, 6_387_200_000), resting("sell", 1, 6_412_800_000)]


def test_best_foreign_prices_skip_levels_that_are_all_ours():
    book = {"bids": [{"subticks": "6393600000", "quantums": "156000000"},
                     {"subticks": "6390000000", "quantums": "7000000"}],
            "asks": [{"subticks": "6406400000", "quantums": "157000000"}]}  # someone else joined our ask
    assert q.best_foreign_prices(book, CURRENT) == (6_390_000_000, 6_406_400_000)
    assert q.best_foreign_prices({}, CURRENT) == (None, None)


def test_plan_places_keeps_replaces_and_cancels():
    empty = q.plan_round([BTC], [], {}, 100, S)
    assert len(empty.places) == 4 and not empty.replaces and not empty.cancels
    assert empty.touch == {"BTC-USD": ("63936", "64064")}
    same = q.plan_round([BTC], CURRENT, {}, 100, S)
    assert same.kept == 4 and same.actions == 0
    # The oracle moved to 64100: every quote is replaced in its own slot.
    moved = q.plan_round([market(oracle="64100")], CURRENT, {}, 100, S)
    assert len(moved.replaces) == 4 and moved.kept == 0
    assert [x.client_id for x in moved.replaces] == [r.client_id for r in CURRENT]
    # Near expiry (gtb - height <= refresh_blocks = 5), partially filled: replaced; the rest stays.
    aged = [resting("buy", 0, 6_393_600_000, gtb=105), resting("sell", 0, 6_406_400_000, remaining=100_000_000),
            *CURRENT[2:]]
    plan = q.plan_round([BTC], aged, {}, 100, S)
    assert [(x.side, x.level) for x in plan.replaces] == [("buy", 0), ("sell", 0)] and plan.kept == 2
    # One level fewer: the level-1 quotes are cancelled.
    fewer = q.plan_round([BTC], CURRENT, {}, 100, q.Settings(1, 10, 10, Fraction(1000)))
    assert fewer.kept == 2 and sorted(r.level for r in fewer.cancels) == [1, 1]


@pytest.mark.parametrize("m, reason", [
    pytest.param(market(stale=True), "oracle stale", id="stale oracle: pull the quotes"),
    pytest.param(market(oracle=None), "no oracle price", id="no oracle price"),
    pytest.param(market(status="cancel-only"), "pair cancel-only", id="cancel-only pair"),
])
def test_markets_not_quoted_get_their_quotes_cancelled(m, reason):
    plan = q.plan_round([m, ETH], CURRENT, {}, 100, S)
    assert plan.skipped == {"BTC-USD": reason}
    assert plan.cancels == CURRENT and len(plan.places) == 4  # ETH is still quoted


def test_paused_pair_is_left_alone_and_unselected_markets_are_not_quoted():
    paused = q.plan_round([market(status="paused")], CURRENT, {}, 100, S)
    assert paused.actions == 0 and paused.skipped == {"BTC-USD": "pair paused"}
    only_eth = q.plan_round([BTC, ETH], CURRENT, {}, 100, q.Settings(2, 10, 10, Fraction(1000),
                                                                      markets=("ETH-USD", "DOGE-USD")))
    assert only_eth.cancels == CURRENT and {x.clob_pair_id for x in only_eth.places} == {1}
    assert only_eth.skipped == {"DOGE-USD": "no such market"}


def test_trim_to_budget_cancels_first_then_replaces_then_places():
    plan = q.Plan(places=[object()] * 3, replaces=[object()] * 3, cancels=[object()] * 2)
    out = q.trim_to_budget(plan, requests_available=4, cancels_available=4)
    assert (len(out.cancels), len(out.replaces), len(out.places), out.trimmed) == (2, 2, 2, 2)
    out = q.trim_to_budget(plan, requests_available=100, cancels_available=100, max_actions=5)
    assert (len(out.cancels), len(out.replaces), len(out.places), out.trimmed) == (2, 3, 0, 3)


def test_settings_are_checked():
    for bad in (q.Settings(0, 10, 10, Fraction(1)), q.Settings(1, 0, 10, Fraction(1)),
                q.Settings(3, 9000, 600, Fraction(1)), q.Settings(1, 10, 10, Fraction(0)),
                q.Settings(1, 10, 10, Fraction(1), subaccount_number=128),
                q.Settings(1, 10, 10, Fraction(1), good_til_blocks=41)):
        with pytest.raises(q.QuoteError):
            bad.validate()


def test_build_actions_are_post_only_short_term_in_their_slots():
    plan = q.plan_round([market(oracle="64100")], CURRENT[:1], {}, 100, q.Settings(1, 10, 10, Fraction(1000)))
    plan.cancels.append(resting("sell", 3, 1, pair=2))
    actions = build_actions(plan, 0)
    assert [a.WhichOneof("action") for a in actions] == ["cancel", "cancel_replace", "place"]
    assert actions[0].cancel.order_id == tx_pb2.OrderId(client_id=0x4D4D0103, clob_pair_id=2, order_flags=0)
    cr = actions[1].cancel_replace
    assert cr.order_id.client_id == cr.place.client_id == 0x4D4D0000
    assert cr.place.side == exchange_pb2.SIDE_BUY and cr.place.subticks == 6_403_500_000  # 64100 x 0.999 = 64035.9
    for p in (cr.place, actions[2].place):
        assert p.time_in_force == exchange_pb2.TIME_IN_FORCE_POST_ONLY and p.good_til_block == 115
    assert actions[2].place.side == exchange_pb2.SIDE_SELL and actions[2].place.subticks == 6_416_500_000


def test_summarize_result():
    ev = lambda t, **kv: {"type": t, "attributes": [{"key": k, "value": str(v)} for k, v in kv.items()]}  # noqa: E731
    res = {"height": "12", "tx_result": {"code": 0, "events": [
        ev("order_action", status="resting"), ev("order_action", status="resting"), ev("fill", quantums=1),
        ev("order_action", status="rejected", reason="post-only buy would cross")]}}
    assert summarize_result(res) == ("prev tx h=12 code=0: 1 rejected, 2 resting, 1 fills "
                                     "(first: post-only buy would cross)")


class FakeRpc:
    """Just enough of RpcClient for MarketMaker.step."""

    def __init__(self, address: str):
        self.height = 10
        self.sent: list[bytes] = []
        self.committed: dict[str, dict] = {}
        self.answers = {
            "/perpetuals/list": {"perpetuals": [{
                "ticker": "BTC-USD", "atomic_resolution": -10, "oracle_price": "64000", "oracle_stale": False,
                "clob_pair": {"id": 0, "status": "active", "step_base_quantums": "1000000",
                              "subticks_per_tick": "100000", "quantum_conversion_exponent": -9}}]},
            f"/clob/orders/{address}/0": {"orders": []},
            "/clob/orderbook/BTC-USD/4": {"bids": [], "asks": []},
            f"/auth/account/{address}": {"recent_nonces": ["5"], "budget": {"requests_available": "1000",
                                                                            "cancels_available": "4000"}},
        }

    catching_up = False

    def status(self):
        return {"node_info": {"network": "perpchain-localnet"},
                "sync_info": {"latest_block_height": str(self.height), "catching_up": self.catching_up}}

    def query_json(self, path):
        return json.loads(json.dumps(self.answers[path]))

    def tx(self, hash_hex):
        return self.committed.get(hash_hex)

    def broadcast_tx_sync(self, tx):
        self.sent.append(tx)
        return {"code": 0}


def test_one_round_one_tx_then_wait_for_it():
    import nacl.signing

    key = Key("mm", nacl.signing.SigningKey(bytes(range(32))))
    rpc = FakeRpc(key.address)
    lines = []
    maker = MarketMaker(rpc, key, q.Settings(1, 10, 10, Fraction(1000)), log=lines.append)
    line = maker.step()
    assert line.startswith("mm h=10 BTC-USD 63936/64064 | place 2 replace 0 cancel 0 keep 0 | tx ")
    assert len(rpc.sent) == 1
    body = tx_pb2.TxBody.FromString(tx_pb2.Tx.FromString(rpc.sent[0]).body)
    assert body.nonce > 5 and body.chain_id == "perpchain-localnet"
    assert len(body.messages[0].orders.actions) == 2 and body.messages[0].orders.owner == key.address
    assert maker.step() is None  # same block
    rpc.height = 11
    assert maker.step() is None and len(rpc.sent) == 1  # new block, but our tx is not in one yet
    from node.client.txbuilder import tx_hash

    rpc.committed[tx_hash(rpc.sent[0])] = {"height": "11", "tx_result": {"code": 0, "events": []}}
    rpc.answers[f"/clob/orders/{key.address}/0"] = {"orders": [
        {"client_id": q.client_id_of(s, 0), "order_flags": 0, "subaccount_number": 0, "side": s, "clob_pair_id": 0,
         "subticks": str(p), "remaining_quantums": "156000000", "good_til_block": "25"}
        for s, p in ((q.BUY, 6_393_600_000), (q.SELL, 6_406_400_000))]}
    line = maker.step()
    assert "place 0 replace 0 cancel 0 keep 2 | no tx | prev tx h=11 code=0: no actions" in line
    assert len(rpc.sent) == 1


def test_no_quotes_while_the_node_is_catching_up():
    """A restarted node reports old heights while it catches up: quotes planned there would be stale and expire
    before they land (probe session 12: ~15 s without quotes). The maker logs it once and waits for the sync."""
    import nacl.signing

    key = Key("mm", nacl.signing.SigningKey(bytes(range(32))))
    rpc = FakeRpc(key.address)
    rpc.catching_up = True
    maker = MarketMaker(rpc, key, q.Settings(1, 10, 10, Fraction(1000)), log=lambda line: None)
    assert maker.step() == "mm h=10 node is catching up: not quoting until it is synced"
    rpc.height = 11
    assert maker.step() is None and rpc.sent == []  # logged once
    rpc.catching_up = False
    assert maker.step().startswith("mm h=11 BTC-USD ") and len(rpc.sent) == 1
