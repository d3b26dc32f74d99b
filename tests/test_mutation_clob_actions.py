"""clob actions: the exact reason of every rejection of app/clob/actions.py, the subaccount-number bound, the int64
guard of the collateral pre-check of a placement — behaviours pinned for the survivors of the full mutation run of
app/clob/actions.py (docs/mutation.md). A rejection's reason is what a trader or bot reads to fix its order, so its
text is part of the interface. In-memory chains (tests/mutation_helpers.mem_exchange); numbers worked by hand in the
comments.

Markets as in tests/exchange_helpers.py: BTC-USD oracle $64,000 (exponent -5: 6 400 000 000), atomic resolution -10,
QCE -9, tick $1 = 100 000 subticks, step 1 000 000 base quantums; accounts 1-4 hold 100 000 USDC in subaccount 0; fee
tier of a new account: maker 100 ppm, taker 500 ppm.
"""

from __future__ import annotations

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from tests.attack_helpers import Nonces
from tests.attack_helpers import app_state as exchange_app_state
from tests.exchange_helpers import (
    BTC,
    BUY,
    IOC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    actions_of,
    cancel,
    height_of,
    msg_tx,
    orders_tx,
    place,
)
from tests.helpers import ADDRS
from tests.mutation_helpers import mem_exchange

INT64_MAX = 2**63 - 1
P64K = 64_000 * ONE_DOLLAR_BTC
FOK = 3  # TIME_IN_FORCE_FILL_OR_KILL


def _order(**fields) -> tx_pb2.OrderAction:
    base = {"client_id": 1, "clob_pair_id": BTC, "side": BUY, "quantums": 1_000_000, "subticks": P64K,
            "good_til_block": 10}
    base.update(fields)
    return tx_pb2.OrderAction(place=tx_pb2.PlaceOrder(**base))


def _batch(**fields) -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(**{"clob_pair_id": BTC, **fields}))


STATELESS = [
    (_order(side=0), errors.ERR_INVALID_ORDER, "side must be buy or sell"),
    (_order(good_til_block_time_ns=5), errors.ERR_INVALID_GOOD_TIL,
     "set exactly one of good_til_block (short-term) and good_til_block_time_ns (long-term)"),
    (_order(good_til_block=0, good_til_block_time_ns=-1), errors.ERR_INVALID_GOOD_TIL,
     "good_til_block_time_ns must be positive"),
    (_order(good_til_block=0, good_til_block_time_ns=5, time_in_force=IOC), errors.ERR_INVALID_ORDER,
     "long-term (good-til-time) orders cannot be IOC or FOK (dYdX)"),
    (_order(market_slippage_ppm=1_000), errors.ERR_INVALID_ORDER,
     "a market order has no limit price (subticks 0); its bound comes from market_slippage_ppm and the oracle price"),
    (_order(subticks=0, market_slippage_ppm=1_000, time_in_force=POST_ONLY), errors.ERR_INVALID_ORDER,
     "a market order is IOC; time_in_force must be unset or ioc"),
    (_order(subticks=0, market_slippage_ppm=1_000, good_til_block=0, good_til_block_time_ns=5),
     errors.ERR_INVALID_ORDER, "a market order is short-term (good_til_block)"),
    (_order(subticks=0, market_slippage_ppm=1_000_000), errors.ERR_INVALID_ORDER,
     "market_slippage_ppm must be below 1000000"),
    (_order(subticks=0), errors.ERR_INVALID_SUBTICKS, "a limit order needs subticks > 0"),
    (_batch(order_flags=1), errors.ERR_INVALID_ORDER, "order_flags must be 0 or 64"),
    (_batch(client_ids=list(range(201))), errors.ERR_INVALID_ORDER, "a batch cancel lists at most 200 client ids"),
    (tx_pb2.OrderAction(), errors.ERR_INVALID_ORDER, "empty order action"),
]


def test_every_stateless_rejection_names_its_reason():
    """Kills validate_place_stateless _14 _38 _40 _41 _48 _56 _65 _67 _68 _74 _81 _88 _96 and
    validate_action_stateless _30 _38 _49 (each reason's text changed). All in one tx: each action gets its own
    status, code and reason; the tx itself succeeds."""
    r = mem_exchange()
    res = r.block([orders_tx(1, 1, [a for a, _, _ in STATELESS])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    acts = sorted(actions_of(res.tx_results[0]), key=lambda a: int(a["action_index"]))  # cancels run first
    got = [(a["status"], a["code"], a["reason"]) for a in acts]
    assert got == [("rejected", str(err.code), f"{err.name}: {reason}") for _, err, reason in STATELESS]


def test_subaccount_127_is_a_valid_subaccount_for_places_and_cancels():
    """Kills validate_place_stateless _4 and validate_order_id_stateless _4 (number < 127 instead of <= 127).

    Account 1 moves 1 000 USDC to its subaccount 127 and rests a bid of 0.0001 BTC at $64,000 from it (needs
    $6.40 x 5 % initial margin), then cancels it; 128 is refused."""
    r = mem_exchange()
    nonce = Nonces()
    transfer = tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(
        owner=ADDRS[1], subaccount_number=0, recipient_owner=ADDRS[1], recipient_subaccount_number=127,
        amount_quote_quantums=1_000_000_000))
    res = r.block([msg_tx(1, nonce(1), [transfer])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    h = height_of(r) + 1
    res = r.block([orders_tx(1, nonce(1), [place(7, BUY, 1_000_000, P64K, number=127, height_hint=h),
                                           place(8, BUY, 1_000_000, P64K, number=128, height_hint=h)])])
    acts = actions_of(res.tx_results[0])
    assert acts[0]["status"] == "resting", acts
    assert (acts[1]["status"], acts[1]["reason"]) == ("rejected", "invalid_order: subaccount_number 128 outside 0..127")
    res = r.block([orders_tx(1, nonce(1), [cancel(7, number=127), cancel(7, number=128)])])
    acts = actions_of(res.tx_results[0])
    assert acts[0]["status"] == "canceled", acts
    assert (acts[1]["status"], acts[1]["reason"]) == ("rejected", "invalid_order: subaccount_number 128 outside 0..127")


@pytest.mark.parametrize("quantums, subticks, err, reason", [
    # Below one step / one tick: the only valid neighbour is one step / one tick (no "or").
    (500_000, P64K, errors.ERR_INVALID_QUANTUMS,
     "size 500000 base quantums is not a multiple of the step 1000000; nearest valid: 1000000"),
    (1_500_000, P64K, errors.ERR_INVALID_QUANTUMS,
     "size 1500000 base quantums is not a multiple of the step 1000000; nearest valid: 1000000 or 2000000"),
    (1_000_000, 50_000, errors.ERR_INVALID_SUBTICKS,
     "price 50000 subticks is not a multiple of the tick 100000; nearest valid: 100000"),
    (1_000_000, P64K + 50_000, errors.ERR_INVALID_SUBTICKS,
     "price 6400050000 subticks is not a multiple of the tick 100000; nearest valid: 6400000000 or 6400100000"),
])
def test_off_step_and_off_tick_rejections_name_the_nearest_valid_values(quantums, subticks, err, reason):
    """Kills validate_place _63 _92 ("XXXX" appended when below one step / tick) and _90 (" or" always added)."""
    r = mem_exchange()
    res = r.block([orders_tx(1, 1, [place(1, BUY, quantums, subticks, height_hint=height_of(r) + 1)])])
    (a,) = actions_of(res.tx_results[0])
    assert (a["status"], a["code"], a["reason"]) == ("rejected", str(err.code), f"{err.name}: {reason}")


def test_rejections_while_placing_name_their_reason():
    """Kills validate_place _133 _137 _138 (duplicate id), execute_place _34.._40 (post-only side) and _87 _90 _91
    (fill-or-kill), _collateral_precheck _90 (who failed the check).

    Account 2 rests an ask of 0.0001 BTC at $64,000 (client 1) and a bid at $63,000 (client 2). Then account 2 sends
    client 1 again (duplicate); account 1 sends a post-only buy at $64,000 (crosses the ask) and a post-only sell at
    $63,000 (crosses the bid), a FOK buy of 0.0002 BTC at $64,000 (only 0.0001 is there: nothing fills) and a
    resting buy of 40 BTC at $64,000 that fails the pre-check as if fully filled at its price: quote = 6 400 000 000 x
    400 000 000 000 x 10^-9 = 2 560 000 000 000 (2.56M USDC), maker fee ceil(2.56e12 x 100 / 1e6) = 256 000 000;
    the position is worth its quote at the oracle, so net collateral = 100 000 000 000 - 256 000 000 = 99 744 000 000
    < initial margin 5 % x 2.56e12 = 128 000 000 000 (maintenance 60 % of it, 76 800 000 000); before: 100 000 000
    000 / 0 / 0 (flat): newly undercollateralized. Placements run before takers within a block, so the FOK's event
    comes last; the check below orders by client id."""
    r = mem_exchange()
    nonce = Nonces()
    h = height_of(r) + 1
    p63k = 63_000 * ONE_DOLLAR_BTC
    res = r.block([orders_tx(2, nonce(2), [place(1, SELL, 1_000_000, P64K, tif=POST_ONLY, height_hint=h),
                                           place(2, BUY, 1_000_000, p63k, tif=POST_ONLY, height_hint=h)])])
    assert [a["status"] for a in actions_of(res.tx_results[0])] == ["resting", "resting"]
    h += 1
    res = r.block([orders_tx(2, nonce(2), [place(1, SELL, 1_000_000, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, nonce(1), [place(1, BUY, 1_000_000, P64K, tif=POST_ONLY, height_hint=h),
                                           place(2, SELL, 1_000_000, p63k, tif=POST_ONLY, height_hint=h),
                                           place(3, BUY, 2_000_000, P64K, tif=FOK, height_hint=h),
                                           place(4, BUY, 400_000_000_000, P64K, height_hint=h)])])
    (dup,) = actions_of(res.tx_results[0])
    assert (dup["status"], dup["code"], dup["reason"]) == (
        "rejected", str(errors.ERR_ORDER_EXISTS.code),
        f"order_exists: order {ADDRS[2]}/0 pair 0 client id 1 short-term (flags 0) is already on the book (cancel it or use another client id)")
    got = sorted((a["client_id"], a["status"], a["code"], a["reason"]) for a in actions_of(res.tx_results[1]))
    assert got == [
        ("1", "rejected", str(errors.ERR_POST_ONLY_WOULD_CROSS.code),
         "post_only_would_cross: post-only buy at 6400000000 subticks would cross the best opposite price 6400000000 "
         "subticks"),
        ("2", "rejected", str(errors.ERR_POST_ONLY_WOULD_CROSS.code),
         "post_only_would_cross: post-only sell at 6300000000 subticks would cross the best opposite price 6300000000 "
         "subticks"),
        ("3", "rejected", str(errors.ERR_FILL_OR_KILL_NOT_FILLED.code),
         "fill_or_kill_not_filled: fill-or-kill: only 1000000 base quantums of 2000000 base quantums could fill"),
        ("4", "rejected", str(errors.ERR_NEWLY_UNDERCOLLATERALIZED.code),
         "newly_undercollateralized: order (as if fully filled at its price): net collateral 99744000000 quote "
         "quantums would be below initial margin 128000000000 quote quantums (maintenance 76800000000 quote quantums; "
         "before: net collateral 100000000000 quote quantums, initial 0 quote quantums, maintenance 0 quote "
         "quantums)"),
    ]


def test_the_pre_check_allows_a_position_of_exactly_int64_max_and_refuses_beyond():
    """Kills _collateral_precheck _52 (size of perpetual None: never checked), _53 (>= INT64_MAX) and _54.._59 (the
    error's code and text).

    Step 1 for BTC. Genesis: account 3 long INT64_MAX - 3 base quantums (account 4 short as much). A bid of 3 from
    account 3 would take it to exactly INT64_MAX: allowed (it rests); a bid of 4 to INT64_MAX + 1: refused."""
    state = exchange_app_state()
    (pair,) = [p for p in state["clob"]["clob_pairs"] if p["id"] == BTC]
    pair["step_base_quantums"] = "1"
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[3], "number": 0, "positions": [{"perpetual_id": BTC, "size_base_quantums": str(INT64_MAX - 3)}]},
        {"owner": ADDRS[4], "number": 0, "positions": [{"perpetual_id": BTC,
                                                        "size_base_quantums": str(-(INT64_MAX - 3))}]}]
    (perp,) = [p for p in state["perpetuals"]["perpetuals"] if p["id"] == BTC]
    perp["open_interest_base_quantums"] = str(INT64_MAX - 3)
    r = mem_exchange(state)
    h = height_of(r) + 1
    res = r.block([orders_tx(3, 1, [place(1, BUY, 3, P64K, tif=POST_ONLY, height_hint=h),
                                    place(2, BUY, 4, P64K, tif=POST_ONLY, height_hint=h)])])
    got = [(a["status"], a.get("code"), a.get("reason")) for a in actions_of(res.tx_results[0])]
    assert got == [("resting", None, None),
                   ("rejected", str(errors.ERR_INVALID_QUANTUMS.code),
                    "invalid_quantums: the order would take the position beyond int64 base quantums")]


def test_the_pre_check_charges_the_placing_account_its_own_maker_fee():
    """Kills _collateral_precheck _10 (the maker fee looked up for owner None, i.e. the chain-wide volume).

    Fee tiers: "1" maker and taker 10 000 ppm (1 %); "2" from 1 USDC of 30-day volume, maker and taker 0. Accounts 2
    and 3 trade 0.0001 BTC at $64,000 (6.40 USDC of volume each): the chain has volume, account 1 has none, so
    account 1 is in tier "1". Its resting bid of 30 BTC at $64,000 (the oracle), as if filled: quote 1 920 000 USDC,
    maker fee 1 % = 19 200 USDC, net collateral 100 000 - 19 200 = 80 800 USDC < initial margin 5 % = 96 000 USDC:
    refused. Priced at tier "2" (the chain's volume) the fee would be 0 and 100 000 >= 96 000 would pass."""
    tiers = [{"name": "1", "maker_fee_ppm": 10_000, "taker_fee_ppm": 10_000},
             {"name": "2", "absolute_volume_requirement_quote_quantums": "1000000", "maker_fee_ppm": 0,
              "taker_fee_ppm": 0}]
    from tests.exchange_helpers import exchange_app_state as plain_state

    r = mem_exchange(plain_state(fee_tiers=tiers))
    nonce = Nonces()
    h = height_of(r) + 1
    res = r.block([orders_tx(2, nonce(2), [place(1, SELL, 1_000_000, P64K, tif=POST_ONLY, height_hint=h)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "resting", actions_of(res.tx_results[0])
    res = r.block([orders_tx(3, nonce(3), [place(1, BUY, 1_000_000, P64K, tif=IOC, height_hint=h + 1)])])
    assert actions_of(res.tx_results[0])[0]["status"] == "filled", actions_of(res.tx_results[0])
    res = r.block([orders_tx(1, nonce(1), [place(1, BUY, 300_000_000_000, P64K, height_hint=h + 2)])])
    (a,) = actions_of(res.tx_results[0])
    assert (a["status"], a["code"]) == ("rejected", str(errors.ERR_NEWLY_UNDERCOLLATERALIZED.code)), a
    assert "net collateral 80800000000 quote quantums would be below initial margin 96000000000" in a["reason"], a
