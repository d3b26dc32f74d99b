"""The block's order-action cap (ClobParams.max_order_actions_per_block; docs/exchange.md "Block capacity").

Weights are the admission cost: place 1, cancel 1, batch cancel 1, cancel-replace 2; other txs 0. The proposer skips
a tx that would pass the cap (a later, smaller one may still fit); ProcessProposal rejects a proposal above it. All
the sums below are worked out by hand from those weights.
"""

from __future__ import annotations

import json

from perpchain.v1 import tx_pb2

from app.clob import keeper as clob_keeper
from app.clob.genesis import DEFAULT_PARAMS
from app.tx.codec import MAX_ORDER_ACTIONS
from tests.exchange_helpers import cancel, exchange_app_state, orders_tx, place
from tests.helpers import send_tx
from tests.mutation_helpers import MemReplica

MAX_BYTES = 1 << 22


def chain(cap: int) -> MemReplica:
    state = exchange_app_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, "max_order_actions_per_block": cap}
    r = MemReplica()
    r.init_chain(state)
    r.block([])
    return r


def cancels(n: int, first: int = 1) -> list[tx_pb2.OrderAction]:
    return [cancel(first + i) for i in range(n)]


def cancel_replaces(n: int) -> list[tx_pb2.OrderAction]:
    return [tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(client_id=i + 1), place=place(1000 + i, 1, 1_000_000, 6_400_000_000).place))
        for i in range(n)]


def batch_cancel() -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(client_ids=list(range(1, 51))))


def next_height(r: MemReplica) -> int:
    return r.app.info()[0] + 1


def test_the_smallest_cap_is_one_full_tx_of_cancel_replaces():
    assert clob_keeper.MIN_BLOCK_ACTION_CAP == 2 * MAX_ORDER_ACTIONS == 400


def test_the_proposer_skips_a_tx_that_would_pass_the_cap_and_keeps_later_ones_that_fit():
    r = chain(400)
    a = orders_tx(1, 1, cancels(200))  # 200
    b = orders_tx(2, 1, cancel_replaces(150))  # 300: 200 + 300 = 500 > 400, skipped
    c = orders_tx(3, 1, [place(i + 1, 1, 1_000_000, 6_400_000_000) for i in range(100)])  # 100: 300
    transfer = send_tx(4, 5, 1, 1)  # weighs nothing
    d = orders_tx(4, 2, cancels(99) + [batch_cancel()])  # 99 + 1 = 100: 400, exactly the cap
    e = orders_tx(5, 1, cancels(1))  # 401 > 400, skipped
    assert r.app.prepare_proposal([a, b, c, transfer, d, e], MAX_BYTES, next_height(r)) == [a, c, transfer, d]


def test_process_proposal_accepts_exactly_the_cap_and_rejects_one_unit_more():
    r = chain(400)
    h = next_height(r)
    full = [orders_tx(1, 1, cancel_replaces(150)), orders_tx(2, 1, cancels(99) + [batch_cancel()])]  # 300 + 100
    assert r.app.process_proposal(full, h)
    assert r.app.process_proposal([*full, send_tx(3, 4, 1, 1)], h)  # a transfer weighs nothing
    assert not r.app.process_proposal([*full, orders_tx(3, 1, cancels(1))], h)  # 401
    assert not r.app.process_proposal([orders_tx(1, 1, cancel_replaces(200)), orders_tx(2, 1, cancels(1))], h)


def test_a_cap_of_zero_means_no_cap():
    r = chain(0)
    txs = [orders_tx(i, 1, cancel_replaces(200)) for i in range(1, 5)]  # 4 x 400 = 1 600
    h = next_height(r)
    assert r.app.prepare_proposal(txs, MAX_BYTES, h) == txs
    assert r.app.process_proposal(txs, h)


def test_the_default_cap_is_3000_and_the_params_query_shows_it():
    r = MemReplica()
    state = exchange_app_state()
    state["clob"]["params"] = DEFAULT_PARAMS
    r.init_chain(state)
    r.block([])
    assert json.loads(r.app.query("/clob/params", b"").value)["max_order_actions_per_block"] == 3000
    # 7 txs of 200 cancel-replaces = 2 800; an 8th (3 200) is skipped, 100 cancels more (2 900) fit
    txs = [orders_tx(1 + i % 5, 1 + i // 5, cancel_replaces(200)) for i in range(8)]
    tail = orders_tx(6, 1, cancels(100))
    h = next_height(r)
    assert r.app.prepare_proposal([*txs, tail], MAX_BYTES, h) == [*txs[:7], tail]
    assert not r.app.process_proposal(txs, h)
