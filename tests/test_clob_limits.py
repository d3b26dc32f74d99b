"""MsgSetClobLimits: the authority changes the clob's scalar params (docs/exchange.md "Parameters").

Each field is optional (an unset field keeps its value, a field set to 0 is set to 0); the result must pass the
genesis rules or nothing changes (721); only the authority (key 0 in tests/helpers.py's genesis) may send it. The
changes bind every order action executed in that block's order phase or later (windows, slippage bound, open-order
cap) and the next block's proposal (block cap).
"""

from __future__ import annotations

import json

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from app.clob.genesis import DEFAULT_PARAMS
from tests.exchange_helpers import BTC_STEP, BUY, ONE_DOLLAR_BTC, POST_ONLY, actions_of, exchange_app_state, msg_tx, \
    orders_tx, place
from tests.helpers import ADDRS
from tests.mutation_helpers import MemReplica

P64K = 64_000 * ONE_DOLLAR_BTC
LIMITS = ("short_block_window", "max_stateful_window_ns", "max_open_orders_per_subaccount",
          "default_market_slippage_ppm", "max_market_slippage_ppm", "max_order_actions_per_block")


@pytest.fixture
def r() -> MemReplica:
    state = exchange_app_state()
    state["clob"]["params"] = dict(DEFAULT_PARAMS)
    replica = MemReplica()
    replica.init_chain(state)
    replica.block([])
    return replica


def limits_tx(nonce: int, account: int = 0, **fields) -> bytes:
    return msg_tx(account, nonce, [tx_pb2.Msg(set_clob_limits=tx_pb2.MsgSetClobLimits(authority=ADDRS[account],
                                                                                      **fields))])


def params(r: MemReplica) -> dict:
    return json.loads(r.app.query("/clob/params", b"").value)


def limits(r: MemReplica) -> tuple:
    p = params(r)
    return tuple(int(p[k]) for k in LIMITS)


DEFAULTS = (40, 95 * 86_400 * 10**9, 200, 50_000, 500_000, 3_000)  # genesis.py DEFAULT_PARAMS, written out


def test_one_field_changes_the_rest_keep_their_values_and_the_event_names_old_and_new(r):
    assert limits(r) == DEFAULTS
    fee_tiers = params(r)["fee_tiers"]
    res = r.block([limits_tx(1, max_order_actions_per_block=1_000)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert limits(r) == (40, 95 * 86_400 * 10**9, 200, 50_000, 500_000, 1_000)
    assert params(r)["fee_tiers"] == fee_tiers
    events = [dict(e.attributes) for e in res.tx_results[0].events if e.type == "clob_limits"]
    assert events == [{"old_max_order_actions_per_block": "3000", "max_order_actions_per_block": "1000"}]


def test_every_field_at_once_in_the_event_in_field_order(r):
    res = r.block([limits_tx(1, short_block_window=10, max_stateful_window_ns=86_400 * 10**9,
                             max_open_orders_per_subaccount=5, default_market_slippage_ppm=10_000,
                             max_market_slippage_ppm=20_000, max_order_actions_per_block=400)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert limits(r) == (10, 86_400 * 10**9, 5, 10_000, 20_000, 400)
    (event,) = [e for e in res.tx_results[0].events if e.type == "clob_limits"]
    assert [k for k, _ in event.attributes] == [x for k in LIMITS for x in (f"old_{k}", k)]


def test_a_field_set_to_zero_is_set_not_ignored(r):
    """0 is a valid value for three limits (no cap / no bound): presence, not truthiness, decides."""
    res = r.block([limits_tx(1, max_order_actions_per_block=0, max_open_orders_per_subaccount=0,
                             max_market_slippage_ppm=0)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert limits(r) == (40, 95 * 86_400 * 10**9, 0, 50_000, 0, 0)


@pytest.mark.parametrize("fields, why", [
    ({}, "nothing to change: set at least one of short_block_window, max_stateful_window_ns, "
         "max_open_orders_per_subaccount, default_market_slippage_ppm, max_market_slippage_ppm, "
         "max_order_actions_per_block"),
    ({"short_block_window": 0}, "clob limits: short_block_window must be at least 1 block"),
    ({"max_stateful_window_ns": 0}, "clob limits: max_stateful_window_ns must be at least 1 ns"),
    ({"max_stateful_window_ns": -1}, "clob limits: max_stateful_window_ns must be at least 1 ns"),
    ({"max_market_slippage_ppm": 1_000_000}, "clob limits: max_market_slippage_ppm must be below 1000000"),
    ({"default_market_slippage_ppm": 0}, "clob limits: default_market_slippage_ppm must be in 1..999999"),
    # the default (50 000) above a new, lower chain bound
    ({"max_market_slippage_ppm": 49_999}, "clob limits: default_market_slippage_ppm 50000 is above "
                                          "max_market_slippage_ppm 49999"),
    ({"max_order_actions_per_block": 399}, "clob limits: max_order_actions_per_block 399 is below 400"),
    ({"max_order_actions_per_block": 1}, "clob limits: max_order_actions_per_block 1 is below 400"),
])
def test_a_result_that_breaks_a_genesis_rule_is_refused_and_changes_nothing(r, fields, why):
    res = r.block([limits_tx(1, **fields)])
    assert res.tx_results[0].code == errors.ERR_INVALID_CLOB_PARAMS.code
    assert res.tx_results[0].codespace == "clob"
    assert why in res.tx_results[0].log
    assert limits(r) == DEFAULTS
    assert not [e for e in res.tx_results[0].events if e.type == "clob_limits"]


def test_on_the_bounds_is_accepted(r):
    res = r.block([limits_tx(1, short_block_window=1, max_stateful_window_ns=1, default_market_slippage_ppm=1,
                             max_market_slippage_ppm=999_999, max_order_actions_per_block=400)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    res = r.block([limits_tx(2, default_market_slippage_ppm=999_999)])  # equal to the bound
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert limits(r) == (1, 1, 200, 999_999, 999_999, 400)


def test_only_the_authority(r):
    res = r.block([limits_tx(1, account=1, max_order_actions_per_block=1_000)])
    assert res.tx_results[0].code == errors.ERR_UNAUTHORIZED.code
    assert limits(r) == DEFAULTS


def test_a_shorter_window_binds_the_next_placement(r):
    h = r.app.info()[0] + 1
    assert r.block([limits_tx(1, short_block_window=5)]).tx_results[0].code == 0
    h += 1
    res = r.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, gtb=h + 6, tif=POST_ONLY),
                                    place(2, BUY, BTC_STEP, P64K, gtb=h + 5, tif=POST_ONLY)])])
    first, second = actions_of(res.tx_results[0])
    assert first["status"] == "rejected" and first["code"] == str(errors.ERR_INVALID_GOOD_TIL.code)
    assert second["status"] != "rejected", second


def test_a_lower_open_order_cap_binds_the_next_placement_and_keeps_resting_orders(r):
    h = r.app.info()[0] + 1
    res = r.block([orders_tx(1, 1, [place(i, BUY, BTC_STEP, P64K - i * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)
                                    for i in (1, 2, 3)])])
    assert [a["status"] for a in actions_of(res.tx_results[0])] == ["resting"] * 3
    assert r.block([limits_tx(1, max_open_orders_per_subaccount=2)]).tx_results[0].code == 0
    h = r.app.info()[0] + 1
    res = r.block([orders_tx(1, 2, [place(4, BUY, BTC_STEP, P64K - 4 * ONE_DOLLAR_BTC, tif=POST_ONLY,
                                          height_hint=h)])])
    (action,) = actions_of(res.tx_results[0])
    assert action["code"] == str(errors.ERR_TOO_MANY_OPEN_ORDERS.code)
    orders = json.loads(r.app.query(f"/clob/orders/{ADDRS[1]}/0", b"").value)
    assert len(orders["orders"]) == 3  # the three resting orders stay


def test_the_block_cap_binds_from_the_next_proposal(r):
    """Proposals are built and checked on committed state: the block after the change carries at most 400 units."""
    assert r.block([limits_tx(1, max_order_actions_per_block=400)]).tx_results[0].code == 0
    h = r.app.info()[0] + 1
    a = orders_tx(1, 1, [place(i, BUY, BTC_STEP, P64K - i * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)
                         for i in range(1, 201)])  # 200 units
    b = orders_tx(2, 1, [place(i, BUY, BTC_STEP, P64K - i * ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)
                         for i in range(1, 201)])  # 400
    c = orders_tx(3, 1, [place(1, BUY, BTC_STEP, P64K - ONE_DOLLAR_BTC, tif=POST_ONLY, height_hint=h)])  # 401
    assert r.app.prepare_proposal([a, b, c], 1 << 22, h) == [a, b]
    assert not r.app.process_proposal([a, b, c], h)
    assert r.app.process_proposal([a, b], h)


def test_an_order_tx_before_the_change_in_the_same_block_is_judged_by_the_new_window(r):
    """Order actions run in the order phase, after every tx of the block (docs/exchange.md "Parameters")."""
    h = r.app.info()[0] + 1
    res = r.block([orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, gtb=h + 30, tif=POST_ONLY)]),
                   limits_tx(1, short_block_window=5)])
    assert [t.code for t in res.tx_results] == [0, 0]
    (action,) = actions_of(res.tx_results[0])
    assert action["code"] == str(errors.ERR_INVALID_GOOD_TIL.code), action
    assert f"within {h}..{h + 5}" in action["reason"], action


def test_a_pending_short_term_order_beyond_a_shortened_window_is_kept_by_recheck_and_refused_in_the_block(r):
    """Short-term rechecks look at expiry only (as dYdX skips them); the block judges the window."""
    h = r.app.info()[0] + 1
    pending = orders_tx(1, 1, [place(1, BUY, BTC_STEP, P64K, gtb=h + 31, tif=POST_ONLY)])
    assert r.app.check_tx(pending).code == 0
    assert r.block([limits_tx(1, short_block_window=5)]).tx_results[0].code == 0
    assert r.app.check_tx(pending, recheck=True).code == 0
    res = r.block([pending])
    (action,) = actions_of(res.tx_results[0])
    assert action["code"] == str(errors.ERR_INVALID_GOOD_TIL.code), action
