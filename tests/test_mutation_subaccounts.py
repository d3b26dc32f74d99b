"""subaccounts: behaviours no other test pinned, found by mutation testing (docs/mutation.md, issue #9).

The packed stored form (golden bytes), key layout, the cost basis kept by position updates, the isolated-market
rule's refusals, paying from a thin isolated pool and sweeping it, the per-block invariants, the message handlers'
refusals and events, and the genesis parser (refusals, restore, export). In-memory stores only
(tests/mutation_helpers.py); numbers are worked by hand in the comments.

Markets as in tests/exchange_helpers.py: BTC-USD (perpetual 0, cross) at $64,000, atomic resolution -10, IM 5 %,
MF 60 %; SOL-USD (perpetual 2, isolated) at $150, atomic resolution -7. Accounts 1..4 start with 100 000 USDC in
subaccount 0 (and 900 000 USDC in the bank).
"""

from __future__ import annotations

import json

import pytest
from perpchain.v1 import exchange_pb2, tx_pb2

from app import errors
from app.bank import keeper as bank_keeper
from app.lib.address import decode_address_or_none, encode_address
from app.perpetuals import keeper as perpetuals_keeper
from app.store import BranchStore
from app.subaccounts import keeper, keys
from app.subaccounts.state import Position, SubaccountId, SubaccountState, decode_subaccount, encode_subaccount
from tests.attack_helpers import app_state as exchange_app_state  # deep copy: the helpers' lists are shared
from tests.exchange_helpers import BTC, ETH, ONE_BTC, SOL, msg_tx, subaccount
from tests.helpers import ADDRS, FEE, ONE_USDC
from tests.mutation_helpers import Empty, MemReplica, mem_exchange, refused

USD = ONE_USDC
A = [decode_address_or_none(a) for a in ADDRS]
ONE_SOL = 10**7


@pytest.fixture
def ex():
    return mem_exchange()


# --- stored form and keys --------------------------------------------------------------------------------------

def test_packed_subaccount_golden_bytes_and_round_trip():
    sub = SubaccountState(-5, {2: Position(2, -7, 3, 11), 1: Position(1, 4, -1, 0)})
    raw = encode_subaccount(sub)
    # quote int64; then by perpetual id: id u32, size i64, funding index i64, entry notional u64 (big-endian)
    assert raw.hex() == ("fffffffffffffffb"
                         + "00000001" + "0000000000000004" + "ffffffffffffffff" + "0000000000000000"
                         + "00000002" + "fffffffffffffff9" + "0000000000000003" + "000000000000000b")
    back = decode_subaccount(raw)
    assert back == sub and back.raw == raw
    with pytest.raises(ValueError, match="corrupt subaccount: 65 bytes"):
        decode_subaccount(raw + b"\x00")


@pytest.mark.parametrize("sub, empty", [
    pytest.param(SubaccountState(), True, id="nothing"),
    pytest.param(SubaccountState(1), False, id="one quote quantum"),
    pytest.param(SubaccountState(-1), False, id="a debt"),
    pytest.param(SubaccountState(0, {0: Position(0, 1, 0, 0)}), False, id="a position and no USDC"),
])
def test_only_a_subaccount_without_usdc_and_positions_is_empty(sub, empty):
    assert sub.is_empty() == empty
    assert sub.size_of(0) == (1 if sub.positions else 0)


def test_key_layout():
    owner = bytes(range(20))
    assert keys.subaccount_key(owner, 5) == b"\x06\x00" + owner + b"\x05"
    assert keys.owner_prefix(owner) == b"\x06\x00" + owner
    assert keys.pool_funding_key(owner) == b"\x06\x01" + owner
    assert keeper.UNSETTLED_FUNDING_KEY == b"\x06\x01"


def test_an_empty_subaccount_is_deleted_not_stored():
    s = BranchStore(Empty())
    sid = SubaccountId(A[1], 3)
    assert keeper.set_subaccount(s, sid, SubaccountState(7)) == bytes.fromhex("0000000000000007")
    assert keeper.has_subaccount(s, A[1]) and not keeper.has_subaccount(s, A[2])
    assert keeper.set_subaccount(s, sid, SubaccountState()) is None
    assert s.get(keys.subaccount_key(A[1], 3)) is None and not keeper.has_subaccount(s, A[1])


# --- position updates keep the cost basis ----------------------------------------------------------------------

def test_position_updates_keep_the_cost_basis():
    sub = SubaccountState()
    keeper.apply_position_delta(sub, 0, 4, 10, -640)  # buy 10 for 640: opens at the given funding index
    assert sub.positions[0] == Position(0, 10, 4, 640)
    keeper.apply_position_delta(sub, 0, 9, 5, -330)  # grows: basis 640 + 330; the position keeps its index
    assert sub.positions[0] == Position(0, 15, 4, 970)
    keeper.apply_position_delta(sub, 0, 9, -6, 400)  # reduces to 9: basis 970 × 9 / 15 = 582
    assert sub.positions[0] == Position(0, 9, 4, 582)
    keeper.apply_position_delta(sub, 0, 9, -2, 100)  # to 7: 582 × 7 / 9 = 452.67 -> 452 (floor)
    assert sub.positions[0].entry_notional_quote_quantums == 452
    keeper.apply_position_delta(sub, 0, 9, -10, 1300)  # flips to -3: the fill's share beyond 7, 1300 × 3 / 10 = 390
    assert sub.positions[0] == Position(0, -3, 4, 390)
    keeper.apply_position_delta(sub, 0, 9, -1, 50)  # a short grows: 390 + 50
    assert sub.positions[0] == Position(0, -4, 4, 440)
    keeper.apply_position_delta(sub, 0, 9, 4, -200)  # closes: gone
    assert sub.positions == {} and sub.size_of(0) == 0


# --- isolated markets ------------------------------------------------------------------------------------------

def test_isolated_market_rule_refusals(ex):
    s = BranchStore(ex.store)
    perpetuals_keeper.set_perpetual(s, exchange_pb2.Perpetual(id=3, ticker="X-USD", market_id=SOL, atomic_resolution=-7,
                                                              liquidity_tier=4, market_type=perpetuals_keeper.ISOLATED))
    holds_sol = SubaccountState(0, {SOL: Position(SOL, ONE_SOL, 0, 0)})
    holds_btc = SubaccountState(0, {BTC: Position(BTC, ONE_BTC, 0, 0)})
    cases = [
        (holds_sol, [BTC], "the subaccount holds isolated perpetual 2; it can trade nothing else"),
        (holds_btc, [SOL], "isolated perpetual 2 needs a subaccount without cross positions"),
        (SubaccountState(), [SOL, BTC], "one update cannot touch an isolated perpetual and another"),
        (holds_sol, [3], "the subaccount holds isolated perpetual 2, not 3"),
    ]
    for sub, pids, words in cases:
        err = refused(keeper.validate_isolated_update, s, sub, pids)
        assert err.code == errors.ERR_ISOLATED_MARKET_CONSTRAINT.code and words in err.log, err.log
    for sub, pids in ((holds_sol, [SOL]), (holds_btc, [BTC, 1]), (SubaccountState(), [SOL]), (holds_sol, [])):
        keeper.validate_isolated_update(s, sub, pids)
    assert keeper.pool_of(s, holds_sol) == keeper.isolated_pool(SOL) != keeper.CROSS_POOL
    assert keeper.pool_of(s, holds_btc) == keeper.pool_of(s, SubaccountState()) == keeper.CROSS_POOL
    two = SubaccountState(0, {SOL: Position(SOL, 1, 0, 0), BTC: Position(BTC, 1, 0, 0)})
    assert keeper.isolated_perpetual_of(perpetuals_keeper.MarginView(s), two) is None


def test_isolated_pool_addresses_are_module_addresses():
    import hashlib

    assert keeper.isolated_pool(2) == hashlib.sha256(b"perpchain/module/subaccounts:2").digest()[:20]
    assert keeper.CROSS_POOL == hashlib.sha256(b"perpchain/module/subaccounts").digest()[:20]


def pools(thin: int) -> BranchStore:
    s = BranchStore(Empty())
    bank_keeper.init_balances(s, [(keeper.CROSS_POOL, 1_000), (keeper.isolated_pool(SOL), thin)], ADDRS[0])
    return s


@pytest.mark.parametrize("pool, recipient, amount, after", [
    pytest.param("sol", 1, 100, (930, 0, 100), id="a thin isolated pool pays 30, the cross pool the other 70"),
    pytest.param("sol", 1, 20, (1_000, 10, 20), id="an isolated pool that holds enough pays alone"),
    pytest.param("sol", 1, 30, (1_000, 0, 30), id="exactly what the isolated pool holds"),
    pytest.param("cross", 1, 100, (900, 30, 100), id="the cross pool pays alone"),
    pytest.param("sol", 0, 100, (1_030, 0, 0), id="to the cross pool: only the isolated part moves"),
    pytest.param("sol", 1, 0, (1_000, 30, 0), id="nothing to pay"),
])
def test_pay_from_a_thin_isolated_pool(pool, recipient, amount, after):
    s = pools(30)
    to = A[1] if recipient else keeper.CROSS_POOL
    keeper.pay_from_pool(s, keeper.isolated_pool(SOL) if pool == "sol" else keeper.CROSS_POOL, to, amount)
    assert (bank_keeper.get_balance(s, keeper.CROSS_POOL), bank_keeper.get_balance(s, keeper.isolated_pool(SOL)),
            bank_keeper.get_balance(s, A[1])) == after


def test_sweeping_an_isolated_pool_moves_what_is_left_to_the_cross_pool():
    s = pools(30)
    keeper.sweep_isolated_pool(s, SOL)
    assert (bank_keeper.get_balance(s, keeper.CROSS_POOL), bank_keeper.get_balance(s, keeper.isolated_pool(SOL))) == (
        1_030, 0)
    before = len(s.write_set())
    keeper.sweep_isolated_pool(s, SOL)  # empty: nothing to move
    assert len(s.write_set()) == before


# --- per-block invariants --------------------------------------------------------------------------------------

def put(s: BranchStore, owner: int, number: int, sub: SubaccountState) -> None:
    keeper.set_subaccount(s, SubaccountId(A[owner], number), sub)


@pytest.mark.parametrize("change, words", [
    pytest.param(lambda s: put(s, 1, 0, SubaccountState(100_000 * USD + 1)),
                 "collateral pools changed by 0 quote quantums but subaccount balances by 1 and unsettled funding by 0",
                 id="a quote balance grows without USDC in the pool"),
    pytest.param(lambda s: put(s, 1, 0, SubaccountState(100_000 * USD, {BTC: Position(BTC, 5, 0, 0)})),
                 "perpetual 0: longs and shorts moved apart by 5", id="a long without a short"),
    pytest.param(lambda s: (put(s, 1, 0, SubaccountState(100_000 * USD, {BTC: Position(BTC, 5, 0, 0)})),
                            put(s, 2, 0, SubaccountState(100_000 * USD, {BTC: Position(BTC, -5, 0, 0)}))),
                 "perpetual 0: open interest moved by 0, longs by 5", id="a long and a short without open interest"),
    # session-15 attack F5: open interest written with no subaccount change was not checked
    pytest.param(lambda s: perpetuals_keeper.apply_open_interest_delta(s, BTC, 12_345),
                 "perpetual 0: open interest moved by 12345, longs by 0", id="open interest alone"),
])
def test_block_invariants_catch_a_broken_change(ex, change, words):
    s = BranchStore(ex.store)
    change(s)
    with pytest.raises(errors.InvariantViolation, match=words.replace("(", r"\(")):
        keeper.check_block_invariants(s)


def test_block_invariants_catch_usdc_left_in_a_flat_isolated_markets_pool():
    r = init(positions_genesis())
    s = BranchStore(r.store)
    put(s, 3, 1, SubaccountState(400 * USD))  # both SOL positions closed at no cost, open interest back to 0 ...
    put(s, 4, 1, SubaccountState(600 * USD))
    perpetuals_keeper.apply_open_interest_delta(s, SOL, -2 * ONE_SOL)
    with pytest.raises(errors.InvariantViolation, match="isolated perpetual 2 has no position but its pool holds "
                                                        "1000000000"):
        keeper.check_block_invariants(s)  # ... but the 1,000 USDC were not swept back to the cross pool
    keeper.sweep_isolated_pool(s, SOL)
    keeper.check_block_invariants(s)


@pytest.mark.parametrize("sub", [
    pytest.param(SubaccountState(5, {BTC: Position(BTC, 1, 0, 0)}), id="a position"),
    pytest.param(SubaccountState(-5), id="a debt"),
])
def test_closing_a_new_module_accounts_subaccount_refuses_what_only_a_bug_could_leave_there(ex, sub):
    """Only transfers reach such a subaccount (no key signs its orders, genesis refuses it): a position or a
    negative balance there is a bug, and halts the node rather than being paid out."""
    s = BranchStore(ex.store)
    owner = keeper.isolated_pool(7)
    keeper.set_subaccount(s, SubaccountId(owner, 2), sub)
    with pytest.raises(errors.InvariantViolation, match=f"subaccount {encode_address(owner)}/2 of a new module "
                                                         "account holds positions or owes USDC"):
        keeper.clear_unowned_subaccounts(s, owner, bank_keeper.FEE_COLLECTOR_ADDRESS)


def test_closing_a_new_module_accounts_subaccounts_pays_each_balance_out(ex):
    """Two subaccounts of the address (3 and 1 quote quantums, in the cross pool) are closed, in number order, and
    the cross pool pays their 4 quote quantums to the recipient."""
    s = BranchStore(ex.store)
    owner = keeper.isolated_pool(7)
    bank_keeper.apply_transfer(s, A[1], keeper.CROSS_POOL, 4)  # the pool holds what the two balances claim
    keeper.set_subaccount(s, SubaccountId(owner, 9), SubaccountState(1))
    keeper.set_subaccount(s, SubaccountId(owner, 0), SubaccountState(3))
    pool0, a2 = bank_keeper.get_balance(s, keeper.CROSS_POOL), bank_keeper.get_balance(s, A[2])
    assert keeper.clear_unowned_subaccounts(s, owner, A[2]) == [(0, 3), (9, 1)]
    assert list(keeper.iter_subaccounts(s, owner)) == []
    assert (bank_keeper.get_balance(s, keeper.CROSS_POOL), bank_keeper.get_balance(s, A[2])) == (pool0 - 4, a2 + 4)
    assert keeper.clear_unowned_subaccounts(s, owner, A[2]) == []


def test_block_invariants_accept_a_perpetual_written_without_a_position_move(ex):
    """A funding-index write (or any perpetual write that leaves open interest as it was) passes."""
    s = BranchStore(ex.store)
    perpetuals_keeper.set_funding_index(s, BTC, 7)
    keeper.check_block_invariants(s)


def test_block_invariants_accept_a_balanced_trade_with_open_interest(ex):
    s = BranchStore(ex.store)
    put(s, 1, 0, SubaccountState(100_000 * USD - 10, {BTC: Position(BTC, 5, 0, 10)}))
    put(s, 2, 0, SubaccountState(100_000 * USD + 10, {BTC: Position(BTC, -5, 0, 10)}))
    perpetuals_keeper.apply_open_interest_delta(s, BTC, 5)
    keeper.check_block_invariants(s)


def test_unsettled_funding_counts_in_the_usdc_invariant(ex):
    s = BranchStore(ex.store)
    put(s, 1, 0, SubaccountState(100_000 * USD - 3))  # funding paid into the lazy counter
    keeper._add_unsettled_funding(s, 3)
    assert keeper.get_unsettled_funding(s) == 3
    keeper.check_block_invariants(s)
    keeper._add_unsettled_funding(s, 0)  # no write for nothing
    assert keeper.get_unsettled_funding(BranchStore(ex.store)) == 0


# --- messages --------------------------------------------------------------------------------------------------

def deposit(account: int, amount: int, number: int = 0) -> tx_pb2.Msg:
    return tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(owner=ADDRS[account], subaccount_number=number,
                                                amount_quote_quantums=amount))


def withdraw(account: int, amount: int, number: int = 0, recipient: str = "") -> tx_pb2.Msg:
    return tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(owner=ADDRS[account], subaccount_number=number,
                                                  amount_quote_quantums=amount, recipient=recipient))


def transfer(account: int, to: int, amount: int, number: int = 0, to_number: int = 0) -> tx_pb2.Msg:
    return tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[account], subaccount_number=number,
                                                  recipient_owner=ADDRS[to], recipient_subaccount_number=to_number,
                                                  amount_quote_quantums=amount))


def events_of(result, kind: str) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == kind]


def quote(r, account: int, number: int = 0) -> int:
    return int(subaccount(r, account, number)["quote_balance_quote_quantums"])


def test_deposit_withdraw_and_transfer_events(ex):
    res = ex.block([msg_tx(1, 1, [deposit(1, 10 * USD, 127)]),
                    msg_tx(1, 2, [withdraw(1, 4 * USD, 127, recipient=ADDRS[5])]),
                    msg_tx(1, 3, [transfer(1, 2, 3 * USD, 127, 9)])])
    assert [t.code for t in res.tx_results] == [0, 0, 0], [t.log for t in res.tx_results]
    assert events_of(res.tx_results[0], "deposit") == [
        {"owner": ADDRS[1], "number": "127", "amount_quote_quantums": str(10 * USD)}]
    assert events_of(res.tx_results[1], "withdrawal") == [
        {"owner": ADDRS[1], "number": "127", "recipient": ADDRS[5], "amount_quote_quantums": str(4 * USD)}]
    assert events_of(res.tx_results[2], "subaccount_transfer") == [
        {"owner": ADDRS[1], "number": "127", "recipient_owner": ADDRS[2], "recipient_number": "9",
         "amount_quote_quantums": str(3 * USD)}]
    # 10 in, 4 out to account 5's bank balance, 3 to account 2's subaccount 9.
    assert (quote(ex, 1, 127), quote(ex, 2, 9)) == (3 * USD, 3 * USD)
    assert ex.balance(5) == 1_000_000 * USD + 4 * USD
    assert ex.balance(1) == 900_000 * USD - 10 * USD - 3 * FEE


def test_withdrawing_the_whole_balance_empties_and_deletes_the_subaccount(ex):
    res = ex.block([msg_tx(3, 1, [withdraw(3, 100_000 * USD)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert ex.balance(3) == 1_000_000 * USD - FEE
    assert json.loads(ex.app.query(f"/subaccounts/of/{ADDRS[3]}", b"").value) == {"subaccounts": []}


def test_a_transfer_to_another_subaccount_of_the_same_owner_is_not_a_self_transfer(ex):
    res = ex.block([msg_tx(1, 1, [transfer(1, 1, 5 * USD, 0, 1)])])
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    assert (quote(ex, 1), quote(ex, 1, 1)) == (99_995 * USD, 5 * USD)


BAD_MESSAGES = [
    pytest.param(deposit(1, 0), errors.ERR_INVALID_AMOUNT, "amount_quote_quantums must be positive",
                 id="deposit of zero"),
    pytest.param(deposit(1, USD, 128), errors.ERR_INVALID_SUBACCOUNT, "subaccount_number 128 is outside 0..127",
                 id="deposit into subaccount 128"),
    pytest.param(withdraw(1, 0), errors.ERR_INVALID_AMOUNT, "amount_quote_quantums must be positive",
                 id="withdrawal of zero"),
    pytest.param(withdraw(1, USD, 128), errors.ERR_INVALID_SUBACCOUNT, "subaccount_number 128 is outside 0..127",
                 id="withdrawal from subaccount 128"),
    pytest.param(withdraw(1, USD, recipient="perp1nothing"), errors.ERR_INVALID_ADDRESS, "recipient",
                 id="withdrawal to a bad address"),
    pytest.param(withdraw(1, USD, recipient=encode_address(keeper.CROSS_POOL)), errors.ERR_MODULE_ACCOUNT,
                 "is a module account", id="withdrawal to the cross pool"),
    pytest.param(withdraw(1, 100_000 * USD + 1), errors.ERR_INSUFFICIENT_FUNDS,
                 f"withdrawal of {100_000 * USD + 1} quote quantums exceeds the subaccount's {100_000 * USD}",
                 id="one quote quantum more than the subaccount holds"),
    pytest.param(transfer(1, 2, 0), errors.ERR_INVALID_AMOUNT, "amount_quote_quantums must be positive",
                 id="transfer of zero"),
    pytest.param(transfer(1, 2, USD, 128), errors.ERR_INVALID_SUBACCOUNT, "subaccount_number 128 is outside 0..127",
                 id="transfer from subaccount 128"),
    pytest.param(transfer(1, 2, USD, 0, 128), errors.ERR_INVALID_SUBACCOUNT,
                 "recipient_subaccount_number 128 is outside 0..127", id="transfer to subaccount 128"),
    pytest.param(tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[1], recipient_owner=encode_address(
        keeper.CROSS_POOL), amount_quote_quantums=1)), errors.ERR_MODULE_ACCOUNT,
        f"module_account: {encode_address(keeper.CROSS_POOL)} is a module account: users cannot send to it",
        id="transfer to a subaccount of the cross pool"),
    pytest.param(tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[1], recipient_owner=encode_address(
        bank_keeper.FEE_COLLECTOR_ADDRESS), recipient_subaccount_number=3, amount_quote_quantums=USD)),
        errors.ERR_MODULE_ACCOUNT, "is a module account: users cannot send to it",
        id="transfer to a subaccount of the fee collector"),
    pytest.param(transfer(1, 2, 100_000 * USD + 1), errors.ERR_INSUFFICIENT_FUNDS,
                 f"transfer of {100_000 * USD + 1} quote quantums exceeds", id="transfer of more than held"),
    pytest.param(tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[1], recipient_owner="perp1x",
                                                        amount_quote_quantums=1)),
                 errors.ERR_INVALID_ADDRESS, "recipient_owner", id="transfer to a bad address"),
    # dYdX MsgCreateTransfer.ValidateBasic refuses it (ErrSenderSameAsRecipient); accepted, it moved nothing but its
    # event reported the amount as transferred (found by the session-10 probe: 18446744073709.551615 USDC "moved").
    pytest.param(transfer(1, 1, 5 * USD), errors.ERR_SENDER_IS_RECIPIENT,
                 "sender_is_recipient: subaccount 0 cannot transfer to itself; name another subaccount as the "
                 "recipient", id="transfer to the same subaccount"),
    pytest.param(transfer(1, 1, 2**64 - 1, 3, 3), errors.ERR_SENDER_IS_RECIPIENT,
                 "subaccount 3 cannot transfer to itself", id="transfer of uint64 max to the same subaccount 3"),
]


@pytest.mark.parametrize("msg, code, words", BAD_MESSAGES)
def test_bad_subaccount_messages_are_refused_with_code_and_reason(ex, msg, code, words):
    tx = msg_tx(1, 1, [msg])
    checked = ex.app.check_tx(tx)
    assert checked.code == code.code and words in checked.log, checked.log
    res = ex.block([tx]).tx_results[0]
    assert res.code == code.code and words in res.log, res.log
    assert quote(ex, 1) == 100_000 * USD


# --- genesis ---------------------------------------------------------------------------------------------------

def state_with(**subaccounts) -> dict:
    state = exchange_app_state(depositors=())
    state["subaccounts"] = subaccounts
    return state


def init(state: dict) -> MemReplica:
    r = MemReplica()
    r.init_chain(state)
    r.block([])
    return r


BAD_GENESIS = [
    pytest.param([], errors.ERR_INVALID_GENESIS, "subaccounts genesis must be an object", id="not an object"),
    pytest.param({"deposits": ["x"]}, errors.ERR_INVALID_GENESIS,
                 "subaccounts.deposits[0]: owner must be an address and number in 0..127",
                 id="a deposit not an object"),
    pytest.param({"deposits": [{"number": 0, "amount_quote_quantums": "1"}]}, errors.ERR_INVALID_GENESIS,
                 "subaccounts.deposits[0]: owner must be an address", id="a deposit without an owner"),
    pytest.param({"deposits": [{"owner": ADDRS[1], "number": 128, "amount_quote_quantums": "1"}]},
                 errors.ERR_INVALID_GENESIS, "number in 0..127", id="subaccount number 128"),
    pytest.param({"deposits": [{"owner": ADDRS[1], "number": -1, "amount_quote_quantums": "1"}]},
                 errors.ERR_INVALID_GENESIS, "number in 0..127", id="subaccount number -1"),
    pytest.param({"deposits": [{"owner": ADDRS[1], "number": "1", "amount_quote_quantums": "1"}]},
                 errors.ERR_INVALID_GENESIS, "number in 0..127", id="a number given as a string"),
    pytest.param({"deposits": [{"owner": ADDRS[1], "amount_quote_quantums": "x"}]}, errors.ERR_INVALID_GENESIS,
                 "subaccounts.deposits[0].amount_quote_quantums must be a decimal string", id="a bad amount"),
    pytest.param({"deposits": [{"owner": ADDRS[6], "amount_quote_quantums": "1"}]}, errors.ERR_INVALID_GENESIS,
                 "subaccounts.deposits[0]: insufficient_funds", id="a deposit beyond the bank balance"),
    pytest.param({"subaccounts": [{"owner": ADDRS[1], "colour": "red"}]}, errors.ERR_INVALID_GENESIS,
                 "subaccounts.subaccounts[0]: ", id="an unknown field"),
    pytest.param({"subaccounts": [{"owner": ADDRS[1], "positions": [{"perpetual_id": 0}]}]},
                 errors.ERR_INVALID_GENESIS, "subaccounts.subaccounts[0]: zero or repeated position in perpetual 0",
                 id="a zero position"),
    pytest.param({"subaccounts": [{"owner": ADDRS[1], "positions": [
        {"perpetual_id": 0, "size_base_quantums": "1"}, {"perpetual_id": 0, "size_base_quantums": "-1"}]}]},
        errors.ERR_INVALID_GENESIS, "zero or repeated position in perpetual 0", id="a repeated position"),
    pytest.param({"subaccounts": [{"owner": ADDRS[1], "positions": [{"perpetual_id": 9, "size_base_quantums": "1"}]}]},
                 errors.ERR_UNKNOWN_PERPETUAL, "perpetual 9 does not exist", id="a position in no perpetual"),
    pytest.param({"subaccounts": [{"owner": ADDRS[1], "quote_balance_quote_quantums": "5"}]},
                 errors.ERR_INVALID_GENESIS,
                 "collateral pools hold 0 quote quantums, subaccounts 5 + unsettled funding 0",
                 id="a balance the pool does not hold"),
    # session-15 attack F2: a module account's subaccount could never move its USDC
    pytest.param({"subaccounts": [{"owner": encode_address(keeper.CROSS_POOL), "number": 3,
                                   "quote_balance_quote_quantums": "5"}]}, errors.ERR_INVALID_GENESIS,
                 f"subaccount {encode_address(keeper.CROSS_POOL)}/3 belongs to a module account: nobody could ever "
                 "move its USDC", id="a subaccount of the cross pool"),
]


@pytest.mark.parametrize("sub_state, code, words", BAD_GENESIS)
def test_bad_subaccounts_genesis_is_refused(sub_state, code, words):
    state = exchange_app_state(depositors=())
    state["subaccounts"] = sub_state
    with pytest.raises(errors.AppError) as info:
        MemReplica().init_chain(state)
    assert info.value.code == code.code and words in info.value.log, info.value.log


def test_genesis_number_defaults_to_zero_and_deposits_move_bank_usdc():
    r = init(state_with(deposits=[{"owner": ADDRS[1], "amount_quote_quantums": "7"}]))
    assert quote(r, 1, 0) == 7 and r.balance(1) == 1_000_000 * USD - 7
    assert r.balance_of(keeper.CROSS_POOL) == 7


def positions_genesis() -> dict:
    """Account 1 long 1 BTC (quote -60,000 USDC), account 2 short 1 BTC (quote 70,000); account 3 long 2 SOL in
    subaccount 1 (quote 400) against account 4's short (quote 600) in SOL's pool; 5 quote quantums of unsettled
    funding. Cross pool: -60,000 + 70,000 + 5 = 10,000.000005 USDC; SOL pool: 1,000 USDC."""
    subs = [
        {"owner": ADDRS[1], "number": 0, "quote_balance_quote_quantums": str(-60_000 * USD),
         "positions": [{"perpetual_id": BTC, "size_base_quantums": str(ONE_BTC), "funding_index": "3",
                        "entry_notional_quote_quantums": str(64_000 * USD)}]},
        {"owner": ADDRS[2], "number": 0, "quote_balance_quote_quantums": str(70_000 * USD),
         "positions": [{"perpetual_id": BTC, "size_base_quantums": str(-ONE_BTC), "funding_index": "3"}]},
        {"owner": ADDRS[3], "number": 1, "quote_balance_quote_quantums": str(400 * USD),
         "positions": [{"perpetual_id": SOL, "size_base_quantums": str(2 * ONE_SOL)}]},
        {"owner": ADDRS[4], "number": 1, "quote_balance_quote_quantums": str(600 * USD),
         "positions": [{"perpetual_id": SOL, "size_base_quantums": str(-2 * ONE_SOL)}]},
    ]
    state = exchange_app_state(depositors=())
    state["bank"]["balances"] += [
        {"address": encode_address(keeper.CROSS_POOL), "amount_quote_quantums": str(10_000 * USD + 5)},
        {"address": encode_address(keeper.isolated_pool(SOL)), "amount_quote_quantums": str(1_000 * USD)}]
    for p in state["perpetuals"]["perpetuals"]:
        p["open_interest_base_quantums"] = {BTC: str(ONE_BTC), SOL: str(2 * ONE_SOL)}.get(p["id"], "0")
        if p["id"] == BTC:
            p["funding_index"] = "3"
    state["subaccounts"] = {"subaccounts": subs, "unsettled_funding_quote_quantums": "5"}
    return state


def test_genesis_restores_positions_funding_and_an_isolated_pool_and_exports_them():
    r = init(positions_genesis())
    from app.subaccounts import genesis as sub_genesis

    out = sub_genesis.export_genesis(BranchStore(r.store))
    assert out["unsettled_funding_quote_quantums"] == "5"
    assert [(e["owner"], e["number"], e["quote_balance_quote_quantums"]) for e in out["subaccounts"]] == sorted(
        [(ADDRS[1], 0, str(-60_000 * USD)), (ADDRS[2], 0, str(70_000 * USD)), (ADDRS[3], 1, str(400 * USD)),
         (ADDRS[4], 1, str(600 * USD))], key=lambda t: (decode_address_or_none(t[0]), t[1]))
    long_btc = next(e for e in out["subaccounts"] if e["owner"] == ADDRS[1])
    # protobuf JSON leaves out zero fields (perpetual id 0 = BTC)
    assert long_btc["positions"] == [{"size_base_quantums": str(ONE_BTC), "funding_index": "3",
                                      "entry_notional_quote_quantums": str(64_000 * USD)}]
    short_sol = next(e for e in out["subaccounts"] if e["owner"] == ADDRS[4])
    assert short_sol["positions"] == [{"perpetual_id": SOL, "size_base_quantums": str(-2 * ONE_SOL)}]
    assert subaccount(r, 3, 1)["collateral_pool"] == encode_address(keeper.isolated_pool(SOL))


@pytest.mark.parametrize("bank_extra, subs, words", [
    pytest.param([{"address": "SOL", "amount_quote_quantums": "5"}], [],
                 "isolated perpetual 2 has no position but a funded pool",
                 id="a funded pool of a flat isolated market"),
])
def test_genesis_refuses_a_funded_pool_without_positions(bank_extra, subs, words):
    state = exchange_app_state(depositors=())
    for b in bank_extra:
        b["address"] = encode_address(keeper.isolated_pool(SOL))
    state["bank"]["balances"] += bank_extra
    with pytest.raises(errors.AppError) as info:
        MemReplica().init_chain(state)
    assert info.value.code == errors.ERR_INVALID_GENESIS.code and words in info.value.log, info.value.log


# --- owners, pools and funding on the message paths (survivors of the exchange mutation run) --------------------

def _bad_owner(kind: str) -> tx_pb2.Msg:
    if kind == "deposit":
        return tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(owner="perp1nothing", amount_quote_quantums=1))
    if kind == "withdraw":
        return tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(owner="perp1nothing", amount_quote_quantums=1))
    return tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner="perp1nothing", recipient_owner=ADDRS[2],
                                                  amount_quote_quantums=1))


@pytest.mark.parametrize("kind", ["deposit", "withdraw", "transfer"])
def test_a_message_with_a_bad_owner_names_the_owner_field(ex, kind):
    tx = msg_tx(1, 1, [_bad_owner(kind)])
    for res in (ex.app.check_tx(tx), ex.block([tx]).tx_results[0]):
        assert res.code == errors.ERR_INVALID_ADDRESS.code, res.log
        assert "owner 'perp1nothing' is not a valid perp1... address" in res.log and "recipient" not in res.log, \
            res.log
    assert quote(ex, 1) == 100_000 * USD


def test_a_transfer_between_pools_moves_the_usdc_between_them():
    """Account 2's cross subaccount sends 100 USDC to account 3's subaccount 1 (isolated SOL): the USDC leaves the
    cross pool for SOL's pool; 10 USDC back to account 2's empty subaccount 5 go the other way."""
    r = init(positions_genesis())
    cross, sol = r.balance_of(keeper.CROSS_POOL), r.balance_of(keeper.isolated_pool(SOL))
    assert (cross, sol) == (10_000 * USD + 5, 1_000 * USD)
    res = r.block([msg_tx(2, 1, [transfer(2, 3, 100 * USD, 0, 1)])]).tx_results[0]
    assert res.code == 0, res.log
    assert (r.balance_of(keeper.CROSS_POOL), r.balance_of(keeper.isolated_pool(SOL))) == (cross - 100 * USD,
                                                                                          sol + 100 * USD)
    assert (quote(r, 2), quote(r, 3, 1)) == (70_000 * USD - 100 * USD, 500 * USD)
    res = r.block([msg_tx(3, 1, [transfer(3, 2, 10 * USD, 1, 5)])]).tx_results[0]
    assert res.code == 0, res.log
    assert (r.balance_of(keeper.CROSS_POOL), r.balance_of(keeper.isolated_pool(SOL))) == (cross - 90 * USD,
                                                                                          sol + 90 * USD)
    assert (quote(r, 3, 1), quote(r, 2, 5)) == (490 * USD, 10 * USD)


def _pending_funding_genesis() -> dict:
    """positions_genesis with account 2's short 1 BTC (1e10 base quantums) still at funding index 1 while BTC's is
    3: its next update settles 1e10 × (3 - 1) ÷ 1e6 = 20,000 quote quantums, received by the short (payment
    -20000)."""
    state = positions_genesis()
    short = next(s for s in state["subaccounts"]["subaccounts"] if s["owner"] == ADDRS[2])
    short["positions"][0]["funding_index"] = "1"
    return state


@pytest.mark.parametrize("msg", [withdraw(2, USD), transfer(2, 1, USD, 0, 7)], ids=["withdrawal", "transfer"])
def test_withdrawals_and_transfers_settle_funding_first_and_say_so(msg):
    r = init(_pending_funding_genesis())
    res = r.block([msg_tx(2, 1, [msg])]).tx_results[0]
    assert res.code == 0, res.log
    assert events_of(res, "funding_settlement") == [
        {"owner": ADDRS[2], "number": "0", "perpetual_id": str(BTC), "size_base_quantums": str(-ONE_BTC),
         "index_delta": "2", "payment_quote_quantums": "-20000"}]
    assert quote(r, 2) == 70_000 * USD + 20_000 - USD


def test_a_zero_amount_is_refused_with_exactly_that_message(ex):
    res = ex.app.check_tx(msg_tx(1, 1, [deposit(1, 0)]))
    assert res.log == f"{errors.ERR_INVALID_AMOUNT.name}: amount_quote_quantums must be positive"


@pytest.mark.parametrize("msg, log", [
    pytest.param(withdraw(1, USD, recipient="perp1nothing"),
                 "invalid_address: recipient 'perp1nothing' is not a valid perp1... address", id="withdrawal"),
    pytest.param(tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[1], recipient_owner="perp1x",
                                                        amount_quote_quantums=1)),
                 "invalid_address: recipient_owner 'perp1x' is not a valid perp1... address", id="transfer"),
])
def test_a_bad_recipient_is_refused_with_exactly_that_message(ex, msg, log):
    assert ex.app.check_tx(msg_tx(1, 1, [msg])).log == log


def test_a_withdrawal_below_initial_margin_says_what_it_was_and_the_collateral_left():
    """Account 2: short 1 BTC at the $64,000 oracle with 70,000 USDC: taking 5,000 out leaves 70,000 - 5,000 -
    64,000 = 1,000 USDC of net collateral, below the 5 % initial margin of 3,200 USDC. What can leave: net collateral
    6,000 - initial margin 3,200 = 2,800 USDC."""
    r = init(positions_genesis())
    res = r.block([msg_tx(2, 1, [withdraw(2, 5_000 * USD)])]).tx_results[0]
    assert res.code == errors.ERR_NEWLY_UNDERCOLLATERALIZED.code, res.log
    assert res.log.startswith(f"{errors.ERR_NEWLY_UNDERCOLLATERALIZED.name}: withdrawal of {5_000 * USD} quote "
                              f"quantums: net collateral {1_000 * USD} quote quantums would be below initial margin "), res.log
    assert res.log.endswith(f"; at most {2_800 * USD} quote quantums can leave now"), res.log


def test_one_update_touching_an_isolated_perpetual_and_another_is_refused_with_exactly_that_message(ex):
    err = refused(keeper.validate_isolated_update, BranchStore(ex.store), SubaccountState(), [SOL, BTC])
    assert err.log == (f"{errors.ERR_ISOLATED_MARKET_CONSTRAINT.name}: one update cannot touch an isolated perpetual "
                       "and another")


def test_only_an_update_that_leaves_an_isolated_market_is_closing(ex):
    """is_closing: isolated before and cross (flat) after; staying in, opening, and cross updates are not closing."""
    s = BranchStore(ex.store)
    sid = SubaccountId(A[0], 0)

    def prep(before: SubaccountState, after: SubaccountState) -> keeper.Prepared:
        return keeper.Prepared(sid, before, after, 0, [])

    sol = SubaccountState(0, {SOL: Position(SOL, ONE_SOL, 0, 0)})
    more_sol = SubaccountState(0, {SOL: Position(SOL, 2 * ONE_SOL, 0, 0)})
    btc = SubaccountState(0, {BTC: Position(BTC, ONE_BTC, 0, 0)})
    flat = SubaccountState(5)
    assert keeper.is_closing(s, prep(sol, flat))
    assert not keeper.is_closing(s, prep(sol, more_sol))  # stays in the isolated market
    assert not keeper.is_closing(s, prep(flat, sol))  # opens it
    assert not keeper.is_closing(s, prep(flat, btc))  # cross
    assert not keeper.is_closing(s, prep(btc, flat))


# --- risk of positions in open-interest-scaled tiers --------------------------------------------------------------

def _capped_store(ex) -> BranchStore:
    """Cross perpetuals 3 and 4 on the SOL market ($150, atomic resolution -7: 1 base quantum = 1e-7 SOL, so a
    position of q base quantums has notional 15 q quote quantums) in tier 4 (IM 5 %, MF 60 %, OI caps 500 000 /
    1 000 000 USDC). Open interest: perpetual 3 5e10 (5 000 SOL = 750 000 USDC), perpetual 4 1e10 (150 000 USDC)."""
    s = BranchStore(ex.store)
    for pid, oi in ((3, 5 * 10**10), (4, 10**10)):
        perpetuals_keeper.set_perpetual(s, exchange_pb2.Perpetual(
            id=pid, ticker=f"X{pid}-USD", market_id=SOL, atomic_resolution=-7, liquidity_tier=4,
            market_type=perpetuals_keeper.CROSS, open_interest_base_quantums=oi))
    return s


def _mixed_subaccount() -> SubaccountState:
    # quote -100 000 USDC; long 1 000 SOL in perpetual 3; short 200 SOL in perpetual 4; long 1 BTC (uncapped tier)
    return decode_subaccount(encode_subaccount(SubaccountState(-100_000 * USD, {
        3: Position(3, 10**10, 0, 0), 4: Position(4, -2 * 10**9, 0, 0), BTC: Position(BTC, ONE_BTC, 0, 0)})))


def test_risk_sums_positions_in_oi_scaled_tiers_with_the_others(ex):
    """Perpetual 3: notional 150 000 USDC, OI 750 000 USDC -> IMF = 5 % + floor(95 % x 250k / 500k) = 52.5 %:
    IMR 78 750 USDC, MMR ceil(7 500 x 0.6) = 4 500. Perpetual 4: notional 30 000, OI 150 000 (below the lower cap):
    IMR 1 500, MMR 900. BTC: 64 000 notional: IMR 3 200, MMR 1 920. NC = -100 000 + 150 000 - 30 000 + 64 000."""
    s = _capped_store(ex)
    risk = keeper.compute_risk(s, _mixed_subaccount(), None, perpetuals_keeper.MarginView(s))
    assert risk.net_collateral_quote_quantums == 84_000 * USD
    assert risk.initial_margin_quote_quantums == (78_750 + 1_500 + 3_200) * USD
    assert risk.maintenance_margin_quote_quantums == (4_500 + 900 + 1_920) * USD


def test_risk_sees_the_open_interest_a_match_would_add_to_its_own_perpetual_only(ex):
    """oi_delta (4, +4e10): perpetual 4's OI becomes 5e10 = 750 000 USDC -> IMF 52.5 %: IMR 15 750 instead of 1 500;
    perpetual 3 keeps 78 750."""
    s = _capped_store(ex)
    risk = keeper.compute_risk(s, _mixed_subaccount(), (4, 4 * 10**10), perpetuals_keeper.MarginView(s))
    assert risk.initial_margin_quote_quantums == (78_750 + 15_750 + 3_200) * USD
    assert risk.maintenance_margin_quote_quantums == (4_500 + 900 + 1_920) * USD


def test_closing_one_oi_scaled_position_keeps_counting_the_next(ex):
    """Derived incrementally from the loaded state: perpetual 3 closed (sold at 150 000 USDC), perpetual 4 still
    counts: NC = -100 000 + 150 000 - 30 000 + 64 000; IMR 1 500 + 3 200; MMR 900 + 1 920."""
    s = _capped_store(ex)
    view = perpetuals_keeper.MarginView(s)
    before = _mixed_subaccount()
    keeper.compute_risk(s, before, None, view)
    after = before.copy()
    keeper.apply_position_delta(after, 3, 0, -10**10, 150_000 * USD)
    after.quote_balance_quote_quantums += 150_000 * USD
    risk = keeper.compute_risk(s, after, None, view)
    assert risk.net_collateral_quote_quantums == 84_000 * USD
    assert risk.initial_margin_quote_quantums == (1_500 + 3_200) * USD
    assert risk.maintenance_margin_quote_quantums == (900 + 1_920) * USD


def test_a_position_without_an_oracle_price_is_refused_with_exactly_that_message(ex):
    import dataclasses

    s = _capped_store(ex)
    view = perpetuals_keeper.MarginView(s)
    view._infos[4] = dataclasses.replace(view.info(4), price=0)
    err = refused(keeper.compute_risk, s, _mixed_subaccount(), None, view)
    assert err.code == errors.ERR_PRICE_UNAVAILABLE.code
    assert err.log == f"{errors.ERR_PRICE_UNAVAILABLE.name}: perpetual 4 (market {SOL}) has no oracle price yet"


@pytest.mark.parametrize("quote_before, moved", [
    pytest.param(1, 1, id="one quote quantum moves into the isolated pool"),
    pytest.param(0, 0, id="an empty quote balance moves nothing (and raises nothing)"),
    pytest.param(-5, 0, id="a negative quote balance moves nothing"),
])
def test_opening_an_isolated_position_moves_the_quote_balance_before_it(ex, quote_before, moved):
    s = BranchStore(ex.store)
    cross0, sol0 = bank_keeper.get_balance(s, keeper.CROSS_POOL), bank_keeper.get_balance(s, keeper.isolated_pool(SOL))
    before = SubaccountState(quote_before)
    after = SubaccountState(quote_before, {SOL: Position(SOL, ONE_SOL, 0, 0)})
    keeper.persist(s, keeper.Prepared(SubaccountId(A[4], 5), before, after, 0, []))
    assert bank_keeper.get_balance(s, keeper.isolated_pool(SOL)) == sol0 + moved
    assert bank_keeper.get_balance(s, keeper.CROSS_POOL) == cross0 - moved


# --- genesis with many holders (survivors of the full run) ---------------------------------------------------------

ONE_ETH = 10**9


def many_holders_genesis(btc_oi: int = ONE_BTC, extra: list | None = None) -> dict:
    """BTC: longs ONE_BTC - 1 (account 1) + 1 (account 3); shorts ONE_BTC - 1 (account 2) + 1 (account 4, subaccount
    127). ETH: account 1 long 1, account 2 short 1 (two cross positions per subaccount). Quote: -60 000 + 70 000 + 1
    + 1 USDC = 10 002 USDC in the cross pool."""
    pos = lambda pid, size: {"perpetual_id": pid, "size_base_quantums": str(size)}  # noqa: E731
    subs = [
        {"owner": ADDRS[1], "number": 0, "quote_balance_quote_quantums": str(-60_000 * USD),
         "positions": [pos(BTC, ONE_BTC - 1), pos(ETH, ONE_ETH)]},
        {"owner": ADDRS[2], "number": 0, "quote_balance_quote_quantums": str(70_000 * USD),
         "positions": [pos(BTC, -(ONE_BTC - 1)), pos(ETH, -ONE_ETH)]},
        {"owner": ADDRS[3], "number": 0, "quote_balance_quote_quantums": str(USD), "positions": [pos(BTC, 1)]},
        {"owner": ADDRS[4], "number": 127, "quote_balance_quote_quantums": str(USD), "positions": [pos(BTC, -1)]},
    ] + (extra or [])
    state = exchange_app_state(depositors=())
    state["bank"]["balances"] += [{"address": encode_address(keeper.CROSS_POOL),
                                   "amount_quote_quantums": str(10_002 * USD)}]
    for p in state["perpetuals"]["perpetuals"]:
        p["open_interest_base_quantums"] = {BTC: str(btc_oi), ETH: str(ONE_ETH)}.get(p["id"], "0")
    state["subaccounts"] = {"subaccounts": subs}
    return state


def test_genesis_adds_up_many_longs_and_shorts_per_perpetual_and_accepts_subaccount_127():
    r = init(many_holders_genesis())
    assert subaccount(r, 4, 127)["quote_balance_quote_quantums"] == str(USD)
    assert len(subaccount(r, 1)["positions"]) == 2


def test_genesis_refuses_open_interest_that_differs_from_equal_longs_and_shorts():
    err = refused(MemReplica().init_chain, many_holders_genesis(btc_oi=ONE_BTC + 1))
    assert err.log == (f"{errors.ERR_INVALID_GENESIS.name}: perpetual 0: longs {ONE_BTC}, shorts {ONE_BTC}, open "
                       f"interest {ONE_BTC + 1} must be equal")


def test_genesis_refuses_an_isolated_position_beside_another_with_exactly_that_message():
    extra = [{"owner": ADDRS[5], "number": 0, "quote_balance_quote_quantums": "0", "positions": [
        {"perpetual_id": BTC, "size_base_quantums": "5"}, {"perpetual_id": SOL, "size_base_quantums": "5"}]}]
    err = refused(MemReplica().init_chain, many_holders_genesis(extra=extra))
    assert err.log == (f"{errors.ERR_INVALID_GENESIS.name}: subaccount {ADDRS[5]}/0 holds isolated perpetual {SOL} "
                       "with other positions")


@pytest.mark.parametrize("sub_state, log", [
    pytest.param([], "subaccounts genesis must be an object", id="not an object"),
    pytest.param({"subaccounts": [{"owner": "nobody"}]},
                 "subaccounts.subaccounts[0]: owner must be an address and number in 0..127", id="a bad owner"),
])
def test_bad_subaccounts_genesis_says_exactly_what_and_where(sub_state, log):
    state = exchange_app_state(depositors=())
    state["subaccounts"] = sub_state
    err = refused(MemReplica().init_chain, state)
    assert err.log == f"{errors.ERR_INVALID_GENESIS.name}: {log}"


def test_a_genesis_without_unsettled_funding_stores_no_funding_record():
    r = init(many_holders_genesis())
    assert r.store.get(keeper.UNSETTLED_FUNDING_KEY) is None


def test_growing_a_position_by_one_base_quantum_or_from_one_adds_the_cost():
    sub = SubaccountState()
    keeper.apply_position_delta(sub, 0, 0, 1, -64)  # opens 1 for 64
    keeper.apply_position_delta(sub, 0, 0, 1, -66)  # grows from 1 to 2: 64 + 66
    assert sub.positions[0] == Position(0, 2, 0, 130)
    keeper.apply_position_delta(sub, 0, 0, 3, -200)  # grows by 3: 330
    keeper.apply_position_delta(sub, 0, 0, 1, -70)  # grows by exactly 1: 400
    assert sub.positions[0] == Position(0, 6, 0, 400)


def test_block_invariants_accept_trades_in_a_perpetual_created_in_the_same_block(ex):
    s = BranchStore(ex.store)
    perpetuals_keeper.set_perpetual(s, exchange_pb2.Perpetual(id=3, ticker="X-USD", market_id=BTC,
                                                              atomic_resolution=-10, liquidity_tier=0,
                                                              market_type=perpetuals_keeper.CROSS))
    put(s, 1, 0, SubaccountState(100_000 * USD - 10, {3: Position(3, 5, 0, 10)}))
    put(s, 2, 0, SubaccountState(100_000 * USD + 10, {3: Position(3, -5, 0, 10)}))
    perpetuals_keeper.apply_open_interest_delta(s, 3, 5)
    keeper.check_block_invariants(s)  # no open interest before the block: it moved by 5, longs by 5


def test_block_invariants_report_the_open_interest_move_against_the_block_start(ex):
    base = BranchStore(ex.store)
    perpetuals_keeper.apply_open_interest_delta(base, BTC, 7)  # open interest 7 when the block starts
    s = BranchStore(base)
    put(s, 1, 0, SubaccountState(100_000 * USD, {BTC: Position(BTC, 5, 0, 0)}))
    put(s, 2, 0, SubaccountState(100_000 * USD, {BTC: Position(BTC, -5, 0, 0)}))
    perpetuals_keeper.apply_open_interest_delta(s, BTC, 4)
    with pytest.raises(errors.InvariantViolation) as info:
        keeper.check_block_invariants(s)
    assert str(info.value) == "perpetual 0: open interest moved by 4, longs by 5"
