"""app/application.py: survivors of the "after" mutation run (.mutation/app.application/report.txt).

A chain whose initial height is above 1 checks txs for its initial height while genesis is pending; a block on a
node that never ran InitChain commits like any other; a restarted node answers the order book query from its
committed resting orders before any block rebuilt its in-memory book. Expected values are worked out by hand.
"""

from __future__ import annotations

import json

from app.application import Application
from node.storage.leveldb import LevelDBStore
from tests.exchange_helpers import BTC_STEP, BUY, SELL, exchange_app_state, exchange_chain, orders_tx, place
from tests.helpers import BLOCK_INTERVAL_NS, CHAIN_ID, GENESIS_TIME_NS, VALIDATOR_KEYS

VALIDATORS = [(bytes(k.verify_key), 10) for k in VALIDATOR_KEYS]
HOUR_NS = 3600 * 10**9


def time_of(height: int) -> int:
    return GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS


def test_check_tx_while_genesis_is_pending_validates_for_the_initial_height(tmp_path):
    """_last_height: before the first block of a chain starting at 100, CheckTx validates for height 100 (the
    block it can land in), so a short-term order's good_til_block must be in 100..140 (dYdX ShortBlockWindow 40)."""
    store = LevelDBStore(tmp_path / "db")
    app = Application(store)
    app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(exchange_app_state()).encode(), VALIDATORS, 100, 1)

    def order(nonce: int, gtb: int) -> bytes:
        return orders_tx(1, nonce, [place(nonce, BUY, BTC_STEP, 6_000_000_000, gtb=gtb)])

    res = app.check_tx(order(1, 99))
    assert (res.code, res.codespace, res.log) == (
        704, "clob", "invalid_good_til: good_til_block 99 must be within 100..140 (height .. height + 40)")
    assert app.check_tx(order(2, 100)).code == 0
    assert app.check_tx(order(3, 140)).code == 0
    res = app.check_tx(order(4, 141))
    assert (res.code, res.log) == (
        704, "invalid_good_til: good_til_block 141 must be within 100..140 (height .. height + 40)")
    store.close()


def test_a_block_on_a_node_that_never_ran_init_chain_commits(tmp_path):
    """commit: with no genesis pending, Commit persists the block's own writes (a fresh node expects height 1)."""
    store = LevelDBStore(tmp_path / "db")
    app = Application(store)
    res = app.finalize_block(1, time_of(1), [])
    assert app.commit() == 0
    assert app.info() == (1, res.app_hash)
    res2 = app.finalize_block(2, time_of(2), [])
    assert app.commit() == 0
    assert app.info() == (2, res2.app_hash)
    store.close()


def test_a_restarted_node_answers_the_order_book_from_its_committed_orders(tmp_path):
    """committed_books: after a restart and before any block, /clob/orderbook shows the resting orders."""
    r = exchange_chain(tmp_path / "db")  # height 1
    gtbt = GENESIS_TIME_NS + HOUR_NS  # long-term orders: they rest until then
    res = r.block([
        # Bids of 0.0001 BTC at $60 000 (two orders) and 0.0002 BTC at $59 000; an ask of 0.0003 BTC at $70 000:
        # far from the $64 000 oracle and from each other, so nothing fills.
        orders_tx(1, 1, [place(1, BUY, BTC_STEP, 6_000_000_000, gtbt_ns=gtbt),
                         place(2, BUY, 2 * BTC_STEP, 5_900_000_000, gtbt_ns=gtbt)]),
        orders_tx(2, 1, [place(1, BUY, BTC_STEP, 6_000_000_000, gtbt_ns=gtbt),
                         place(2, SELL, 3 * BTC_STEP, 7_000_000_000, gtbt_ns=gtbt)]),
    ])
    assert [t.code for t in res.tx_results] == [0, 0], [t.log for t in res.tx_results]
    r.restart()
    res = r.app.query("/clob/orderbook/BTC-USD", b"")
    assert res.code == 0, res.log
    answer = json.loads(res.value)
    assert answer["bids"] == [
        {"subticks": "6000000000", "price": "60000", "quantums": "2000000", "size": "0.0002", "orders": 2},
        {"subticks": "5900000000", "price": "59000", "quantums": "2000000", "size": "0.0002", "orders": 1},
    ]
    assert answer["asks"] == [
        {"subticks": "7000000000", "price": "70000", "quantums": "3000000", "size": "0.0003", "orders": 1},
    ]
    # The book it rebuilt is the committed one, offered to every later query until a block starts.
    assert r.app.committed_books() is not None
    r.close()
