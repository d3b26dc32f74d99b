"""Attacks on the exchange core, session 4: the splice encoding of subaccounts with 8+ positions, the per-view
memos (decoded subaccounts, fee rates), conservation of USDC through fees / rebates / isolated pools, and extreme
sizes. Each test pins a behaviour. Two of them exposed bugs, fixed since: funding events named the wrong subaccount
when two subaccounts stored identical bytes (the settled-state memo was keyed by the bytes alone), and a deposit or
transfer past int64 crashed FinalizeBlock instead of failing with position_overflow.

Markets as in tests/exchange_helpers.py: BTC-USD (perpetual 0, cross) oracle $64,000 (price 6_400_000_000, exponent
-5, atomic resolution -10: 1 BTC = 1e10 base quantums, k = -5 - 10 + 6 = -9: value = size × price ÷ 1e9), tick $1,
step 0.0001 BTC; IM 5 %, MF 60 % (MM 3 %). SOL-USD (perpetual 2, isolated, tier 4 with OI caps 0.5M / 1M USDC)
$150, 1 SOL = 1e7 base quantums. Accounts 1..4 have 100,000 USDC in subaccount 0 unless a test's genesis says
otherwise. Default fee tier: maker 100 ppm, taker 500 ppm. Numbers in comments are worked by hand.
"""

from __future__ import annotations

import pytest

from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.errors import ERR_POSITION_OVERFLOW
from app.lib.address import decode_address_or_none, encode_address
from app.lib.math import INT64_MAX
from app.store import BranchStore
from app.subaccounts import keeper as sk
from app.subaccounts.state import (
    Position,
    SubaccountState,
    _encode_full,
    decode_subaccount,
    encode_subaccount,
)
from tests.attack_helpers import (
    ONE_SOL,
    SOL_PRICE,
    app_state,
    check_global_money,
    deposit_msg,
    pool_breakdown,
    statuses,
    transfer_msg,
)
from tests.exchange_helpers import (
    BTC,
    BTC_STEP,
    BUY,
    FOK,
    IOC,
    ONE_BTC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    SOL,
    actions_of,
    fills_of,
    msg_tx,
    orders_tx,
    place,
    subaccount,
)
from tests.helpers import ADDRS, ONE_USDC
from tests.mutation_helpers import mem_exchange

USD = ONE_USDC
A = [decode_address_or_none(a) for a in ADDRS]
P64K = 64_000 * ONE_DOLLAR_BTC




def nxt(r) -> int:
    return r.app.info()[0] + 1


def events_of(result, kind: str) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == kind]


def stored(r, account: int, number: int = 0) -> bytes | None:
    from app.subaccounts import keys

    return r.store.get(keys.subaccount_key(A[account], number))


# =====================================================================================================================
# The decoded-subaccount memo of a MarginView is keyed by the stored bytes only
# =====================================================================================================================

def _twin_shorts_genesis() -> dict:
    """Accounts 2 and 3 hold byte-identical subaccounts: quote 70,000 USDC, short 1 BTC (1e10 base quantums) at
    funding index 1, entry 64,000 USDC. BTC's index is 3, so each short is owed -(3 - 1) × (-1e10) = 2e10 ppm =
    20,000 quote quantums at its next update. Account 1 is long 2 BTC at index 3 (nothing due), quote -60,000
    USDC. Account 4 deposits 100,000 USDC. Cross pool = 70,000 + 70,000 - 60,000 + 100,000 USDC + 40,000 quote
    quantums of unsettled funding (owed to the two shorts)."""
    state = app_state(depositors=(4,))
    short = {"quote_balance_quote_quantums": str(70_000 * USD),
             "positions": [{"perpetual_id": BTC, "size_base_quantums": str(-ONE_BTC), "funding_index": "1",
                            "entry_notional_quote_quantums": str(64_000 * USD)}]}
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[1], "number": 0, "quote_balance_quote_quantums": str(-60_000 * USD),
         "positions": [{"perpetual_id": BTC, "size_base_quantums": str(2 * ONE_BTC), "funding_index": "3",
                        "entry_notional_quote_quantums": str(128_000 * USD)}]},
        {"owner": ADDRS[2], "number": 0, **short},
        {"owner": ADDRS[3], "number": 0, **short},
    ]
    state["subaccounts"]["unsettled_funding_quote_quantums"] = "40000"
    state["bank"]["balances"].append({"address": encode_address(sk.CROSS_POOL),
                                      "amount_quote_quantums": str(80_000 * USD + 40_000)})
    for p in state["perpetuals"]["perpetuals"]:
        if p["id"] == BTC:
            p["open_interest_base_quantums"] = str(2 * ONE_BTC)
            p["funding_index"] = "3"
    return state


def test_funding_events_of_byte_identical_subaccounts_name_their_own_owner():
    """Accounts 2 and 3 (identical bytes) each rest a 0.1 BTC ask at $64,000 (post-only); account 4 buys 0.2 BTC
    (IOC) in the same block: both makers settle funding before their position changes, each receiving 20,000 quote
    quantums (payment -20000). Each funding_settlement event must name its own owner (found by an attack: the memo
    of settled subaccounts was keyed by the stored bytes alone, so both events named account 2)."""
    r = mem_exchange(_twin_shorts_genesis())
    assert stored(r, 2) == stored(r, 3)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(3, 1, [place(1, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(4, 1, [place(1, BUY, 2 * ONE_BTC // 10, P64K, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[2]) == ["filled"]
    # money is right: each short got its 20,000 (and sold 0.1 BTC for 6,400 USDC minus the 0.64 USDC maker fee)
    for account in (2, 3):
        assert int(subaccount(r, account)["quote_balance_quote_quantums"]) == \
            70_000 * USD + 20_000 + 6_400 * USD - 640_000
    check_global_money(r)
    settled = [(e["owner"], e["number"], e["payment_quote_quantums"])
               for e in events_of(res.tx_results[2], "funding_settlement")]
    assert sorted(settled) == sorted([(ADDRS[2], "0", "-20000"), (ADDRS[3], "0", "-20000")]), settled


# =====================================================================================================================
# Splice encoding (>= 8 positions) through the whole chain
# =====================================================================================================================

MANY = list(range(10, 21))  # extra cross perpetuals 10..20 on the BTC oracle, BTC's clob parameters
HELD = [11, 12, 13, 14, 16, 17, 18, 19]  # account 1's 8 positions (15 and 20 are free: one in between, one after)
CENT = ONE_BTC // 100  # 0.01 BTC = 1e8 base quantums; at $64,000: 6.4e9 × 1e8 ÷ 1e9 = 640 USDC
Q640 = 640 * USD


def _many_positions_genesis() -> dict:
    """Perpetuals 10..20 (cross, tier 0, BTC oracle); perpetuals 12 and 18 have funding index 5. Account 1 is long
    0.01 BTC (entry 640 USDC, index 0) in each perpetual of HELD, account 2 short the same (index 0); both hold
    100,000 USDC. Accounts 3 and 4 deposit 100,000 USDC."""
    state = app_state(depositors=(3, 4))
    for pid in MANY:
        state["perpetuals"]["perpetuals"].append({
            "id": pid, "ticker": f"X{pid}-USD", "market_id": BTC, "atomic_resolution": -10, "liquidity_tier": 0,
            "market_type": "MARKET_TYPE_CROSS", "open_interest_base_quantums": str(CENT if pid in HELD else 0),
            "funding_index": "5" if pid in (12, 18) else "0"})
        state["clob"]["clob_pairs"].append({"id": pid, "perpetual_id": pid, "step_base_quantums": "1000000",
                                            "subticks_per_tick": "100000", "quantum_conversion_exponent": -9,
                                            "status": "CLOB_PAIR_STATUS_ACTIVE"})
    state["subaccounts"]["subaccounts"] = [
        {"owner": ADDRS[account], "number": 0, "quote_balance_quote_quantums": str(100_000 * USD),
         "positions": [{"perpetual_id": pid, "size_base_quantums": str(sign * CENT), "funding_index": "0",
                        "entry_notional_quote_quantums": str(Q640)} for pid in HELD]}
        for account, sign in ((1, 1), (2, -1))]
    state["bank"]["balances"].append({"address": encode_address(sk.CROSS_POOL),
                                      "amount_quote_quantums": str(200_000 * USD)})
    return state


def test_spliced_subaccount_of_nine_positions_through_a_block_of_five_actions():
    """Account 1 (8 positions, funding due on 12 and 18) runs 5 actions in one tx, each against account 3's
    post-only quotes of the same block, all at $64,000:
      1. buy 0.01 on 15 (IOC): opens a position *between* 14 and 16 (9 positions, funding settled on 12 and 18);
      2. FOK buy 2 steps on 13 against a 1-step ask: one step fills, then the FOK fails and the action rolls back;
      3. sell 0.01 on 11 (IOC): closes the *first* position (8 left);
      4. buy 0.01 on 20 (IOC): opens *after the last* (9);
      5. sell 0.005 on 19 (IOC): reduces one (entry ⌊640e6 × 5e7 ÷ 1e8⌋ = 320 USDC).
    Every write is a splice (>= 8 positions, <= 8 changes, a copy of the bytes the action loaded); the stored bytes
    must be exactly the full encoding of the state worked out here.
    Quote: funding ⌊-(5 - 0) × 1e8 × 2 ÷ 1e6⌋ = -1,000; fills -640 + 640 - 640 + 320 USDC; taker fees (500 ppm)
    0.32 × 3 + 0.16 USDC = 1,120,000: 100,000 USDC - 320 USDC - 1,000 - 1,120,000."""
    r = mem_exchange(_many_positions_genesis())
    h = nxt(r)
    maker = orders_tx(3, 1, [place(1, SELL, CENT, P64K, pair=15, tif=POST_ONLY, height_hint=h),
                             place(2, SELL, BTC_STEP, P64K, pair=13, tif=POST_ONLY, height_hint=h),
                             place(3, BUY, CENT, P64K, pair=11, tif=POST_ONLY, height_hint=h),
                             place(4, SELL, CENT, P64K, pair=20, tif=POST_ONLY, height_hint=h),
                             place(5, BUY, CENT // 2, P64K, pair=19, tif=POST_ONLY, height_hint=h)])
    taker = orders_tx(1, 1, [place(1, BUY, CENT, P64K, pair=15, tif=IOC, height_hint=h),
                             place(2, BUY, 2 * BTC_STEP, P64K, pair=13, tif=FOK, height_hint=h),
                             place(3, SELL, CENT, P64K, pair=11, tif=IOC, height_hint=h),
                             place(4, BUY, CENT, P64K, pair=20, tif=IOC, height_hint=h),
                             place(5, SELL, CENT // 2, P64K, pair=19, tif=IOC, height_hint=h)])
    res = r.block([maker, taker])
    assert statuses(res.tx_results[0]) == ["resting"] * 5
    assert statuses(res.tx_results[1]) == ["filled", "rejected", "filled", "filled", "filled"]
    want = SubaccountState(100_000 * USD - 320 * USD - 1_000 - 1_120_000, {
        12: Position(12, CENT, 5, Q640), 13: Position(13, CENT, 0, Q640), 14: Position(14, CENT, 0, Q640),
        15: Position(15, CENT, 0, Q640), 16: Position(16, CENT, 0, Q640), 17: Position(17, CENT, 0, Q640),
        18: Position(18, CENT, 5, Q640), 19: Position(19, CENT // 2, 0, 320 * USD), 20: Position(20, CENT, 0, Q640)})
    assert stored(r, 1) == _encode_full(want)
    # the FOK left account 3's 1-step ask on 13 untouched, and account 2 (not traded) is still unsettled
    assert decode_subaccount(stored(r, 2)).positions[12].funding_index == 0
    check_global_money(r)


# --- the splice itself, case by case (9 positions at perpetuals 10, 20, ..., 90) -------------------------------------

def _base9() -> SubaccountState:
    return decode_subaccount(_encode_full(SubaccountState(
        1_000, {pid: Position(pid, pid * 7 - 300, pid, pid * 11) for pid in range(10, 100, 10)})))


def _expected(edits: dict, quote: int = 1_000) -> bytes:
    """The full encoding of the 9-position base with ``edits`` (pid -> Position, or None to drop it)."""
    positions = {pid: Position(pid, pid * 7 - 300, pid, pid * 11) for pid in range(10, 100, 10)}
    for pid, p in edits.items():
        if p is None:
            positions.pop(pid)
        else:
            positions[pid] = p
    return _encode_full(SubaccountState(quote, positions))


def _delta(sub, pid, size_delta, quote_delta, index=77):
    sk.apply_position_delta(sub, pid, index, size_delta, quote_delta)


# Position sizes of the base: pid × 7 - 300 (10 -> -230, 50 -> 50, 90 -> 330); entry pid × 11; index pid.
SPLICE_CASES = [
    pytest.param(lambda s: _delta(s, 5, 4, -8), {5: Position(5, 4, 77, 8)}, id="insert before the first"),
    pytest.param(lambda s: _delta(s, 95, -4, 8), {95: Position(95, -4, 77, 8)}, id="insert after the last"),
    pytest.param(lambda s: _delta(s, 45, 4, -8), {45: Position(45, 4, 77, 8)}, id="insert between"),
    pytest.param(lambda s: _delta(s, 10, 230, -1), {10: None}, id="remove the first"),
    pytest.param(lambda s: _delta(s, 90, -330, 1), {90: None}, id="remove the last"),
    pytest.param(lambda s: _delta(s, 50, -50, 1), {50: None}, id="remove one in the middle"),
    # close 50 (size 50) then reopen it short 3 for 9: a new position at index 77, entry 9
    pytest.param(lambda s: (_delta(s, 50, -50, 1), _delta(s, 50, -3, 9)), {50: Position(50, -3, 77, 9)},
                 id="close then reopen in one copy"),
    pytest.param(lambda s: (_delta(s, 45, 4, -8), _delta(s, 45, -4, 8)), {}, id="open then close in one copy"),
    # 90 (330, entry 990) grows by 10 for 100: entry 1090, index stays 90; then reduces by 340 -> 0: dropped
    pytest.param(lambda s: (_delta(s, 90, 10, -100), _delta(s, 90, -340, 5)), {90: None}, id="grow then close"),
    # 70 (190, entry 770) flips by -200 for 400: -10, entry ⌊400 × 10 ÷ 200⌋ = 20, index kept (70)
    pytest.param(lambda s: _delta(s, 70, -200, 400), {70: Position(70, -10, 70, 20)}, id="flip keeps the index"),
    # 30 (-90, entry 330) reduces by 60 for 1: -30, entry ⌊330 × 30 ÷ 90⌋ = 110
    pytest.param(lambda s: _delta(s, 30, 60, -1), {30: Position(30, -30, 30, 110)}, id="reduce floors the entry"),
    pytest.param(lambda s: [_delta(s, pid, 1, -1) for pid in (5, 15, 25, 35, 45, 55, 65, 75)],
                 {pid: Position(pid, 1, 77, 1) for pid in (5, 15, 25, 35, 45, 55, 65, 75)},
                 id="exactly 8 changes (the last spliced count)"),
    pytest.param(lambda s: [_delta(s, pid, 1, -1) for pid in (5, 15, 25, 35, 45, 55, 65, 75, 85)],
                 {pid: Position(pid, 1, 77, 1) for pid in (5, 15, 25, 35, 45, 55, 65, 75, 85)},
                 id="9 changes (full encoding)"),
    pytest.param(lambda s: [_delta(s, pid, -(pid * 7 - 300), 0) for pid in (10, 20)], {10: None, 20: None},
                 id="down to 7 positions (full encoding)"),
]


@pytest.mark.parametrize("change, edits", SPLICE_CASES)
def test_splice_cases_equal_the_hand_built_full_encoding(change, edits):
    base = _base9()
    base_bytes = base.raw
    after = base.copy()
    change(after)
    after.quote_balance_quote_quantums = -5
    assert encode_subaccount(after) == _expected(edits, quote=-5)
    # the copy shares Position objects with the base: the base and its bytes are untouched
    assert encode_subaccount(base) == base_bytes and base.raw == base_bytes


def test_splice_of_a_copy_of_a_copy_and_of_funding_settled_in_place():
    """A freshly decoded state settles funding in place (3 positions listed in ``changed``), is copied, changed,
    copied again and changed again: each encoding equals the hand-built full one."""
    base = _base9()
    for pid in (20, 50, 80):  # what settle_funding does: in place on the decoded state, listed
        base.positions[pid].funding_index = 1_000
        base.changed.append(pid)
    first = base.copy()
    _delta(first, 60, -120, 7)  # 60: size 120 -> 0
    second = first.copy()
    _delta(second, 55, 2, -3)
    second.quote_balance_quote_quantums = 42
    settled = {pid: Position(pid, pid * 7 - 300, 1_000, pid * 11) for pid in (20, 50, 80)}
    assert encode_subaccount(first) == _expected({**settled, 60: None})
    assert encode_subaccount(second) == _expected({**settled, 60: None, 55: Position(55, 2, 77, 3)}, quote=42)


# =====================================================================================================================
# Fee memo (MarginView.fees): lives for one order phase / one CheckTx view, never across a change of its inputs
# =====================================================================================================================

def _set_fee_tiers(nonce: int, tiers: list) -> bytes:
    from perpchain.v1 import exchange_pb2, tx_pb2

    return msg_tx(0, nonce, [tx_pb2.Msg(set_fee_tiers=tx_pb2.MsgSetFeeTiers(
        authority=ADDRS[0], fee_tiers=[exchange_pb2.FeeTier(**t) for t in tiers]))])


def test_fee_tiers_set_later_in_the_same_block_apply_to_all_its_fills():
    """The authority's MsgSetFeeTiers is the *last* tx of the block, after both order txs; order actions run after
    every tx (phase rule), so the fill already pays the new tier: 0.1 BTC at $64,000 = 6,400 USDC; taker
    ⌈6,400e6 × 300 ÷ 1e6⌉ = 1,920,000; maker ⌈6,400e6 × -20 ÷ 1e6⌉ = -128,000 (rebate)."""
    r = mem_exchange(app_state())
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, ONE_BTC // 10, P64K, tif=IOC, height_hint=h)]),
                   _set_fee_tiers(1, [{"name": "new", "maker_fee_ppm": -20, "taker_fee_ppm": 300}])])
    assert res.tx_results[2].code == 0, res.tx_results[2].log
    assert [(f["taker_fee_quote_quantums"], f["maker_fee_quote_quantums"]) for f in fills_of(res.tx_results[1])] \
        == [("1920000", "-128000")]
    assert int(subaccount(r, 1)["quote_balance_quote_quantums"]) == 100_000 * USD - 6_400 * USD - 1_920_000
    assert int(subaccount(r, 2)["quote_balance_quote_quantums"]) == 100_000 * USD + 6_400 * USD + 128_000
    check_global_money(r)


def test_check_tx_fee_memo_does_not_outlive_a_commit():
    """Account 5 holds 320.64 USDC. Its GTC buy of 0.1 BTC at $64,000 (the oracle) passes the placement check with
    the maker fee 100 ppm: NC = 320.64 - ⌈6,400 × 100e-6⌉ = 320.00 USDC >= IMR ⌈6,400 × 5 %⌉ = 320.00. CheckTx
    admits it (and memoizes account 5's fee rates in its view). A block (without that tx) raises the maker fee to
    200 ppm: NC would be 320.64 - 1.28 = 319.36 < 320: the same tx checked again after the commit is refused."""
    from app import errors

    state = app_state()
    state["subaccounts"]["deposits"].append({"owner": ADDRS[5], "number": 0, "amount_quote_quantums": "320640000"})
    r = mem_exchange(state)
    tx = orders_tx(5, 1, [place(1, BUY, ONE_BTC // 10, P64K, height_hint=nxt(r))])
    assert r.app.check_tx(tx).code == 0
    res = r.block([_set_fee_tiers(1, [{"name": "dear", "maker_fee_ppm": 200, "taker_fee_ppm": 500}])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    checked = r.app.check_tx(tx)
    assert checked.code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code, checked.log


# =====================================================================================================================
# Conservation: maker rebates through an isolated market (open, flip, close), every pool exact after every block
# =====================================================================================================================

TEN_SOL = 10 * ONE_SOL
Q1500 = 1_500 * USD  # 10 SOL at $150: 1.5e10 subticks × 1e8 × 1e-9


def _trade(r, maker: int, maker_side: int, taker: int, size: int, nonces: dict, reduce_only=(False, False)):
    h = nxt(r)
    nonces[maker] = nonces.get(maker, 0) + 1
    nonces[taker] = nonces.get(taker, 0) + 1
    res = r.block([orders_tx(maker, nonces[maker], [place(nonces[maker], maker_side, size, SOL_PRICE, pair=SOL,
                                                          tif=POST_ONLY, reduce_only=reduce_only[0], height_hint=h)]),
                   orders_tx(taker, nonces[taker], [place(nonces[taker], SELL if maker_side == BUY else BUY, size,
                                                          SOL_PRICE, pair=SOL, tif=IOC, reduce_only=reduce_only[1],
                                                          height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting"] and statuses(res.tx_results[1]) == ["filled"]
    tx_fees = sum(int(e["fee_quote_quantums"]) for t in res.tx_results for e in events_of(t, "tx"))
    for pool, (held, owed) in pool_breakdown(r).items():
        assert held == owed, f"pool {encode_address(pool)} holds {held}, its subaccounts own {owed}"
    check_global_money(r)
    return tx_fees


def test_rebates_through_an_isolated_open_flip_and_close_keep_every_pool_exact():
    """Fee tier: maker -100 ppm (rebate), taker 500 ppm. On SOL (isolated), at $150 throughout:
      A. 2 asks 10, 1 buys 10 (both open: 100,000 USDC each move to subaccounts:2); quote 1,500: taker 0.75, rebate
         0.15;
      B. 3 bids 20, 1 sells 20 (1 flips long 10 -> short 10 inside the pool; 3 opens); quote 3,000: 1.5 / 0.3;
      C. 3 asks 10 (reduce-only), 2 buys 10 (reduce-only: 2 closes, its quote goes back to cross); 0.75 / 0.15;
      D. 3 asks 10 (reduce-only), 1 buys 10 (reduce-only): both close, open interest 0, the pool is empty.
    Quotes: 1: 100,000 - 1,500 - 0.75 + 3,000 - 1.5 - 1,500 - 0.75 = 99,997.00; 2: 100,000 + 1,500 + 0.15 - 1,500
    - 0.75 = 99,999.40; 3: 100,000 - 3,000 + 0.3 + 1,500 + 0.15 + 1,500 + 0.15 = 100,000.60. The fee collector
    gains 3.75 - 0.75 = 3.00 USDC besides the tx fees."""
    state = app_state(fee_tiers=[{"name": "1", "maker_fee_ppm": -100, "taker_fee_ppm": 500}])
    r = mem_exchange(state)
    collector = r.balance_of(FEE_COLLECTOR_ADDRESS)
    nonces: dict = {}
    tx_fees = _trade(r, 2, SELL, 1, TEN_SOL, nonces)
    assert [int(subaccount(r, a)["quote_balance_quote_quantums"]) for a in (1, 2)] == [
        100_000 * USD - Q1500 - 750_000, 100_000 * USD + Q1500 + 150_000]
    tx_fees += _trade(r, 3, BUY, 1, 2 * TEN_SOL, nonces)
    assert subaccount(r, 1)["positions"][0]["size_base_quantums"] == str(-TEN_SOL)
    assert subaccount(r, 1)["collateral_pool"] == encode_address(sk.isolated_pool(SOL))
    tx_fees += _trade(r, 3, SELL, 2, TEN_SOL, nonces, reduce_only=(True, True))
    assert subaccount(r, 2)["collateral_pool"] == encode_address(sk.CROSS_POOL)
    tx_fees += _trade(r, 3, SELL, 1, TEN_SOL, nonces, reduce_only=(True, True))
    quotes = [int(subaccount(r, a)["quote_balance_quote_quantums"]) for a in (1, 2, 3, 4)]
    assert quotes == [99_997_000_000, 99_999_400_000, 100_000_600_000, 100_000 * USD]
    assert r.balance_of(sk.isolated_pool(SOL)) == 0
    assert r.balance_of(sk.CROSS_POOL) == sum(quotes)
    assert r.balance_of(FEE_COLLECTOR_ADDRESS) - collector - tx_fees == 3_000_000


# =====================================================================================================================
# int64 edges of the stored quote balance
# =====================================================================================================================

def _rich_genesis() -> dict:
    """Account 1 holds 2^63 + 10^6 quote quantums in the bank (the extra 10^6 pays tx fees), account 2 holds 2^62
    (total supply < 2^64: the bank genesis accepts it); nobody has a subaccount yet."""
    state = app_state(depositors=())
    for b in state["bank"]["balances"]:
        if b["address"] == ADDRS[1]:
            b["amount_quote_quantums"] = str(2**63 + 10**6)
        elif b["address"] == ADDRS[2]:
            b["amount_quote_quantums"] = str(2**62)
    return state


@pytest.mark.parametrize("how", ["deposit", "transfer"])
def test_a_quote_balance_beyond_int64_is_refused_not_a_crash(how):
    """The bank holds uint64 balances, a subaccount's quote balance is stored as int64 (state.py ``>q``); fills
    refuse to go beyond int64 (ERR_POSITION_OVERFLOW) but deposits and transfers do not check. deposit: account 1
    deposits 2^63 (> INT64_MAX = 2^63 - 1). transfer: account 1 deposits 2^63 - 2^61 - 1 and account 2 deposits
    2^61 into their subaccounts 0, then account 2 transfers 2^61 to account 1: 2^63 - 1 + 1 = 2^63. Either must be
    refused with position_overflow and change nothing (found by an attack: FinalizeBlock raised struct.error on every
    validator)."""
    r = mem_exchange(_rich_genesis())
    if how == "deposit":
        txs = [msg_tx(1, 1, [deposit_msg(1, 2**63)])]
    else:
        res = r.block([msg_tx(1, 1, [deposit_msg(1, 2**63 - 2**61)]), msg_tx(2, 1, [deposit_msg(2, 2**61)])])
        assert [t.code for t in res.tx_results] == [0, 0], [t.log for t in res.tx_results]
        txs = [msg_tx(2, 2, [transfer_msg(2, 1, 2**61)])]
    before = {a: subaccount(r, a)["quote_balance_quote_quantums"] for a in (1, 2)}
    assert r.app.check_tx(txs[0]).code == ERR_POSITION_OVERFLOW.code  # CheckTx refuses it too (no crash)
    res = r.block(txs)
    assert (res.tx_results[0].code, res.tx_results[0].codespace) == (ERR_POSITION_OVERFLOW.code, "subaccounts")
    assert "would leave int64" in res.tx_results[0].log
    assert {a: subaccount(r, a)["quote_balance_quote_quantums"] for a in (1, 2)} == before
    check_global_money(r)


def test_a_deposit_may_bring_a_quote_balance_to_exactly_int64_max():
    """The boundary of the test above: a deposit of INT64_MAX = 2^63 - 1 into an empty subaccount is accepted and
    stored exactly."""
    r = mem_exchange(_rich_genesis())
    res = r.block([msg_tx(1, 1, [deposit_msg(1, INT64_MAX)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert int(subaccount(r, 1)["quote_balance_quote_quantums"]) == INT64_MAX
    check_global_money(r)


def test_a_maker_filled_several_times_in_one_action_settles_funding_once():
    """Twin genesis, but only account 2 quotes: two asks of 0.1 BTC at $64,000 (post-only); account 4 buys 0.2 BTC
    in one IOC: two fills against account 2 in one action. Funding is settled once (+20,000, one event, the
    unsettled counter falls from 40,000 to 20,000: account 3's share is still pending), then the two fills:
    +2 × (6,400 USDC - 0.64 maker fee)."""
    r = mem_exchange(_twin_shorts_genesis())
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h),
                                    place(2, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(4, 1, [place(1, BUY, 2 * ONE_BTC // 10, P64K, tif=IOC, height_hint=h)])])
    assert len(fills_of(res.tx_results[1])) == 2
    assert [(e["owner"], e["payment_quote_quantums"]) for e in events_of(res.tx_results[1], "funding_settlement")] \
        == [(ADDRS[2], "-20000")]
    assert int(subaccount(r, 2)["quote_balance_quote_quantums"]) == 70_000 * USD + 20_000 + 2 * (6_400 * USD - 640_000)
    assert sk.get_unsettled_funding(BranchStore(r.store)) == 20_000
    check_global_money(r)


# =====================================================================================================================
# A fill that ends a quote balance exactly on INT64_MAX, and one quantum beyond
# =====================================================================================================================



def _near_int64_max(start: int):
    state = app_state(depositors=(1, 3, 4))
    state["subaccounts"]["subaccounts"] = [{"owner": ADDRS[2], "number": 0, "quote_balance_quote_quantums": str(start)}]
    state["bank"]["balances"].append({"address": encode_address(sk.CROSS_POOL), "amount_quote_quantums": str(start)})
    return mem_exchange(state)


@pytest.mark.parametrize("extra, filled", [(0, True), (1, False)], ids=["exactly INT64_MAX", "one beyond"])
def test_a_fill_may_end_a_quote_balance_on_int64_max_but_not_beyond(extra, filled):
    """Account 2 starts (genesis) with quote INT64_MAX - 6,399.36 USDC + ``extra`` and sells 0.1 BTC at $64,000 as a
    maker: +6,400 USDC - ⌈6,400 × 100e-6⌉ = +6,399.36 USDC. Ending exactly on INT64_MAX is a fill; one quantum more
    is refused when the order is placed (its full fill at its price, with the maker fee, is the collateral
    pre-check's update: 2^63 = 9,223,372,036,854,775,808 quote quantums is beyond int64), so the taker finds no
    maker."""
    start = INT64_MAX - 6_399_360_000 + extra
    r = _near_int64_max(start)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, ONE_BTC // 10, P64K, tif=IOC, height_hint=h)])])
    if filled:
        assert statuses(res.tx_results[0]) == ["resting"] and statuses(res.tx_results[1]) == ["filled"]
        assert int(subaccount(r, 2)["quote_balance_quote_quantums"]) == INT64_MAX
    else:
        (maker,) = actions_of(res.tx_results[0])
        assert (maker["status"], maker["code"]) == ("rejected", str(ERR_POSITION_OVERFLOW.code))
        assert "would take the quote balance to 9223372036854775808 quote quantums, beyond int64" in maker["reason"]
        assert statuses(res.tx_results[1]) == ["not_filled"] and not fills_of(res.tx_results[1])
        assert int(subaccount(r, 2)["quote_balance_quote_quantums"]) == start
    check_global_money(r)


def test_a_fill_that_would_take_a_quote_balance_beyond_int64_removes_its_maker():
    """The fill's own check, for a maker whose pre-check passed: account 2 starts at INT64_MAX - 2 × 6,399.36 USDC + 1
    quote quantum and rests two asks of 0.1 BTC at $64,000; each alone passes its pre-check (start + 6,399.36 USDC =
    INT64_MAX - 6,399.36 USDC + 1). A buy of 0.2 BTC fills the first (balance INT64_MAX - 6,399,360,000 + 1); the
    second would end on INT64_MAX + 1, so that maker is removed ("beyond int64") and the taker stops at 0.1 BTC."""
    start = INT64_MAX - 2 * 6_399_360_000 + 1
    r = _near_int64_max(start)
    h = nxt(r)
    res = r.block([orders_tx(2, 1, [place(1, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h),
                                    place(2, SELL, ONE_BTC // 10, P64K, tif=POST_ONLY, height_hint=h)]),
                   orders_tx(1, 1, [place(1, BUY, 2 * ONE_BTC // 10, P64K, tif=IOC, height_hint=h)])])
    assert statuses(res.tx_results[0]) == ["resting", "resting"]
    assert statuses(res.tx_results[1]) == ["partially_filled"] and len(fills_of(res.tx_results[1])) == 1
    removed = events_of(res.tx_results[1], "order_removed")
    assert len(removed) == 1 and (removed[0]["owner"], removed[0]["client_id"]) == (ADDRS[2], "2")
    assert "beyond int64" in removed[0]["reason"]
    assert int(subaccount(r, 2)["quote_balance_quote_quantums"]) == INT64_MAX - 6_399_360_000 + 1
    check_global_money(r)
