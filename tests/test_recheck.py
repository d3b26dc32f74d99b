"""CometBFT's rechecks of order txs (app/clob/handlers.recheck_orders): short-term actions are checked for their window
only, as dYdX does on ReCheckTx; long-term ones get the full check again; the ante runs either way."""

from __future__ import annotations

from perpchain.v1 import tx_pb2

from app import errors
from tests.exchange_helpers import BTC_PRICE, BUY, ONE_BTC, cancel, msg_tx, orders_tx, place
from tests.helpers import ADDRS, ONE_USDC
from tests.mutation_helpers import mem_exchange

GTBT = 1_700_000_000_000_000_000 + 3600 * 10**9  # a good-til-time an hour after the test chain's genesis


def _withdraw(account: int, nonce: int, amount: int) -> bytes:
    return msg_tx(account, nonce, [tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(
        owner=ADDRS[account], subaccount_number=0, amount_quote_quantums=amount, recipient=ADDRS[account]))])


def _next(r) -> int:
    return r.app._last_height() + 1


def test_a_short_term_order_is_rechecked_for_its_window_only():
    """Account 1 (100,000 USDC) sends a short-term buy of 1 BTC at $64,000 (IM 3,200 USDC): admitted. A block then
    commits its withdrawal of 99,000 USDC. A recheck keeps the order tx (its collateral is not checked again, dYdX's
    ReCheckTx rule); the same bytes as a new tx are refused (1,000 USDC < 3,200 IM)."""
    r = mem_exchange()
    h = _next(r)
    order = orders_tx(1, 2, [place(1, BUY, ONE_BTC, BTC_PRICE, gtb=h + 10)])
    assert r.app.check_tx(order).code == 0
    res = r.block([_withdraw(1, 1, 99_000 * ONE_USDC)])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert r.app.check_tx(order, recheck=True).code == 0
    r.block([])  # Commit clears the pending view: the next check of the same bytes is a new one
    refused = r.app.check_tx(order)
    assert refused.code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code, refused.log


def test_a_long_term_order_gets_the_full_check_on_recheck():
    r = mem_exchange()
    order = orders_tx(1, 2, [place(1, BUY, ONE_BTC, BTC_PRICE, gtbt_ns=GTBT)])
    assert r.app.check_tx(order).code == 0, r.app.check_tx(order).log
    assert r.block([_withdraw(1, 1, 99_000 * ONE_USDC)]).tx_results[0].code == 0
    assert r.app.check_tx(order, recheck=True).code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code
    mixed = orders_tx(1, 3, [place(2, BUY, ONE_BTC, BTC_PRICE, gtb=_next(r) + 5), cancel(9, flags=64)])
    assert r.app.check_tx(mixed, recheck=True).code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code  # one is long-term


def test_a_recheck_drops_a_tx_whose_placements_all_expired_and_keeps_one_with_a_cancel():
    """good_til_block h: valid in block h. Rechecked before block h it stays; after block h (next height h + 1) a tx of
    expired placements is dropped (the window's code and message), one that also cancels stays (the cancel may still
    apply), and the ante still refuses a used nonce."""
    r = mem_exchange()
    h = _next(r)
    expiring = orders_tx(2, 5, [place(1, BUY, ONE_BTC // 100, BTC_PRICE - 10**6, gtb=h),
                                place(2, BUY, ONE_BTC // 100, BTC_PRICE - 2 * 10**6, gtb=h)])
    with_cancel = orders_tx(2, 6, [place(3, BUY, ONE_BTC // 100, BTC_PRICE - 10**6, gtb=h), cancel(77)])
    from tests.attack_helpers import cancel_replace

    replace = orders_tx(2, 7, [cancel_replace(77, place(4, BUY, ONE_BTC // 100, BTC_PRICE - 10**6, gtb=h))])
    assert r.app.check_tx(replace, recheck=True).code == 0
    assert r.app.check_tx(expiring, recheck=True).code == 0
    r.block([])
    dropped = r.app.check_tx(expiring, recheck=True)
    assert (dropped.code, dropped.log) == (errors.ERR_INVALID_GOOD_TIL.code, "invalid_good_til: "
                                           f"every placement of this tx expired (good_til_block below height {h + 1})")
    assert r.app.check_tx(with_cancel, recheck=True).code == 0
    assert r.app.check_tx(replace, recheck=True).code == errors.ERR_INVALID_GOOD_TIL.code  # its placement expired
    used = orders_tx(2, 1, [cancel(1)])
    assert r.block([used]).tx_results[0].code == 0
    assert r.app.check_tx(used, recheck=True).code == errors.ERR_NONCE_USED.code


def test_any_long_term_part_makes_the_recheck_a_full_check():
    """Each tx below would pass the window-only recheck, and fails the full check (the short-term buy is beyond the
    remaining collateral, the cancels name no order, BTC-USD is paused for the batch cancel): a long-term batch cancel,
    a cancel-replace of a long-term order, and a cancel-replace placing a long-term order each force the full check.
    The same txs made of short-term parts stay."""
    from tests.attack_helpers import cancel_replace

    r = mem_exchange()
    assert r.block([_withdraw(1, 1, 99_000 * ONE_USDC)]).tx_results[0].code == 0
    h = _next(r)
    big = place(1, BUY, ONE_BTC, BTC_PRICE, gtb=h + 5)
    cases = [
        ([big, cancel(9, flags=64)], [big, cancel(9)]),
        ([cancel_replace(9, big, flags=64)], [cancel_replace(9, big)]),
        ([cancel_replace(9, place(2, BUY, ONE_BTC, BTC_PRICE, gtbt_ns=GTBT))], [cancel_replace(9, big)]),
    ]
    for nonce, (long_part, short_part) in enumerate(cases, start=10):
        assert r.app.check_tx(orders_tx(1, nonce, long_part), recheck=True).code != 0, long_part
        assert r.app.check_tx(orders_tx(1, nonce + 100, short_part), recheck=True).code == 0, short_part
    pause = msg_tx(0, 1, [tx_pb2.Msg(set_clob_pair_status=tx_pb2.MsgSetClobPairStatus(
        authority=ADDRS[0], clob_pair_id=0, status=4))])
    assert r.block([pause]).tx_results[0].code == 0
    batch = [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=0, order_flags=64))]
    assert r.app.check_tx(orders_tx(2, 20, batch), recheck=True).code == errors.ERR_CLOB_PAIR_STATUS.code
    batch[0].batch_cancel.order_flags = 0
    assert r.app.check_tx(orders_tx(2, 21, batch), recheck=True).code == 0


def test_the_abci_handler_passes_cometbfts_recheck_type():
    """node/abci: RequestCheckTx.type RECHECK reaches the app as a recheck, NEW (and the /check_tx RPC's) as new."""
    from tendermint.abci import types_pb2 as abci

    from node.abci.handler import AbciHandler

    r = mem_exchange()
    order = orders_tx(1, 2, [place(1, BUY, ONE_BTC, BTC_PRICE, gtb=_next(r) + 10)])
    assert r.block([_withdraw(1, 1, 99_000 * ONE_USDC)]).tx_results[0].code == 0
    handler = AbciHandler(r.app)
    new = handler.check_tx(abci.RequestCheckTx(tx=order, type=abci.NEW))
    assert new.check_tx.code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code
    assert handler.check_tx(abci.RequestCheckTx(tx=order, type=abci.RECHECK)).check_tx.code == 0
