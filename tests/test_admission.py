"""Admission (issue #7): /check_tx cannot censor, request budgets and fees, honest historical queries, edges.

Hand-worked numbers use the default admission params: fee 0.01 USDC (10 000 quote quantums) per non-trading
message; capacity = min(1000, 50 + balance // 100 USDC) requests; refill = capacity x 10 % per block (floor, >= 1);
cancel bucket = 4x.
"""

import json

import pytest

from app import errors
from app.auth.admission import compute_budget
from app.auth.params import AdmissionParams
from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from node.client.txbuilder import NoNonceLeft, default_nonce, msg_send, sign_tx
from tests.helpers import ADDRS, CHAIN_ID, FEE, KEYS, ONE_USDC, Replica, genesis_app_state, send_tx

P = AdmissionParams()


# --- 1. /check_tx never makes a node refuse or delay a tx it would otherwise accept ----------------------------

def test_check_tx_then_mempool_accepts_the_same_tx(replica):
    """CometBFT's /check_tx sends the mempool's own CheckTx: the same tx must pass again (it was code 6)."""
    t = send_tx(1, 2, ONE_USDC, 5)
    assert replica.app.check_tx(t).code == 0  # the /check_tx RPC
    assert replica.app.check_tx(t).code == 0  # broadcast_tx_sync, or the tx gossiped by a peer
    assert replica.block([t]).tx_results[0].code == 0


def test_check_tx_of_whole_balance_does_not_block_other_transfers(replica):
    """A /check_tx of a tx spending everything (never broadcast) does not reserve the balance."""
    whole = send_tx(1, 2, 1_000_000 * ONE_USDC - FEE, 10)
    assert replica.app.check_tx(whole).code == 0
    honest = send_tx(1, 3, 1, 11)
    assert replica.app.check_tx(honest).code == 0
    res = replica.block([honest])
    assert res.tx_results[0].code == 0


def test_what_check_tx_added_is_gone_after_the_next_commit(replica):
    """A tx only /check_tx'd (not in the mempool) is not rechecked, so its nonce is free again after a block."""
    only_checked = send_tx(1, 2, ONE_USDC, 20)
    assert replica.app.check_tx(only_checked).code == 0
    other_same_nonce = send_tx(1, 3, ONE_USDC, 20)
    assert replica.app.check_tx(other_same_nonce).code == errors.ERR_NONCE_USED.code  # first seen wins
    replica.block([])  # Commit clears the view; CometBFT rechecks only mempool txs
    assert replica.app.check_tx(other_same_nonce).code == 0


def test_pending_tx_survives_recheck_after_a_block(replica):
    t = send_tx(1, 2, ONE_USDC, 30)
    assert replica.app.check_tx(t).code == 0
    replica.block([send_tx(3, 4, ONE_USDC, 1)])
    assert replica.app.check_tx(t).code == 0
    assert replica.app.check_tx(send_tx(1, 3, ONE_USDC, 30)).code == errors.ERR_NONCE_USED.code  # view rebuilt
    assert replica.block([t]).tx_results[0].code == 0
    assert replica.app.check_tx(t).code == errors.ERR_NONCE_USED.code  # committed: evicted


def test_failed_check_tx_uses_nothing(replica):
    bad = send_tx(1, 2, 2_000_000 * ONE_USDC, 40)  # more than the balance
    assert replica.app.check_tx(bad).code == errors.ERR_INSUFFICIENT_FUNDS.code
    good = send_tx(1, 2, ONE_USDC, 40)  # the same nonce is still free
    assert replica.app.check_tx(good).code == 0


def test_other_accounts_txs_never_touch_an_accounts_budget(replica):
    """Only txs signed by the account count against it: account 2's burst leaves account 1 untouched."""
    for n in range(1, 200):
        replica.app.check_tx(send_tx(2, 3, 1, n))
    assert replica.app.check_tx(send_tx(1, 3, 1, 1)).code == 0


# --- 4. budgets and fees ----------------------------------------------------------------------------------

@pytest.mark.parametrize("balance, cap, refill", [
    pytest.param(0, 50, 5, id="empty account: base capacity 50, refill 5"),
    pytest.param(99_999_999, 50, 5, id="just under 100 USDC adds nothing"),
    pytest.param(100_000_000, 51, 5, id="100 USDC adds one request; 5.1 refill floors to 5"),
    pytest.param(10_000 * ONE_USDC, 150, 15, id="10 000 USDC"),
    pytest.param(95_000 * ONE_USDC, 1000, 100, id="capped at 1000"),
])
def test_capacity_and_refill(balance, cap, refill):
    b = compute_budget(P, balance, 0, 0, 0, 7)
    assert (b.requests, b.request_capacity, b.request_refill_per_block) == (cap, cap, refill)
    assert (b.cancels, b.cancel_capacity, b.cancel_refill_per_block) == (4 * cap, 4 * cap, 4 * refill)


@pytest.mark.parametrize("stored, used_at, now, expected", [
    pytest.param(0, 10, 10, 0, id="same block: no refill"),
    pytest.param(0, 10, 11, 15, id="one block later: +15"),
    pytest.param(3, 10, 13, 48, id="three blocks: 3 + 45"),
    pytest.param(140, 10, 12, 150, id="capped at capacity"),
    pytest.param(400, 10, 10, 150, id="a capacity that shrank caps the stored level"),
])
def test_lazy_refill(stored, used_at, now, expected):
    assert compute_budget(P, 10_000 * ONE_USDC, stored, 0, used_at, now).requests == expected


@pytest.fixture
def small_account(tmp_path):
    """Account 6 holds 10 USDC: capacity 50 requests, refill 5 per block."""
    r = Replica(tmp_path / "db")
    state = genesis_app_state()
    state["bank"]["balances"].append({"address": ADDRS[6], "amount_quote_quantums": str(10 * ONE_USDC)})
    r.init_chain(state)
    r.block([])
    yield r
    r.close()


def test_budget_exhausts_and_refills_identically_in_check_tx_and_block(small_account):
    r = small_account
    txs = [send_tx(6, 1, 1, n) for n in range(1, 52)]
    codes = [r.app.check_tx(t).code for t in txs]
    assert codes == [0] * 50 + [errors.ERR_RATE_LIMITED.code]
    res = r.block(txs)
    assert [t.code for t in res.tx_results] == [0] * 50 + [errors.ERR_RATE_LIMITED.code]
    # Over-budget: refused before the nonce, so the same tx succeeds once the budget refilled (+5 next block).
    assert r.app.check_tx(txs[50]).code == 0
    more = [send_tx(6, 1, 1, n) for n in range(52, 57)]
    res = r.block([txs[50], *more])
    assert [t.code for t in res.tx_results] == [0] * 5 + [errors.ERR_RATE_LIMITED.code]
    # 55 transfers of 1 quantum and 55 fees of 0.01 USDC.
    assert r.balance(6) == 10 * ONE_USDC - 55 - 55 * FEE


def test_fees_go_to_the_fee_collector_and_conserve_supply(replica):
    before = [replica.balance(i) for i in range(3)]
    res = replica.block([send_tx(1, 2, 7 * ONE_USDC, 1), send_tx(2, 1, 3 * ONE_USDC, 1)])
    assert [t.code for t in res.tx_results] == [0, 0]
    assert replica.balance(1) == before[1] - 7 * ONE_USDC + 3 * ONE_USDC - FEE
    assert replica.balance(2) == before[2] + 7 * ONE_USDC - 3 * ONE_USDC - FEE
    assert replica.balance_of(FEE_COLLECTOR_ADDRESS) == 2 * FEE
    supply = json.loads(replica.app.query("/bank/supply", b"").value)["amount_quote_quantums"]
    assert int(supply) == 6 * 1_000_000 * ONE_USDC
    fees = [dict(e.attributes)["fee_quote_quantums"] for t in res.tx_results for e in t.events if e.type == "tx"]
    assert fees == [str(FEE), str(FEE)]


def test_fee_per_message_and_insufficient_fee_changes_nothing(small_account):
    r = small_account
    three = sign_tx(KEYS[6], CHAIN_ID, 1, [msg_send(ADDRS[6], ADDRS[1], ONE_USDC)] * 3)
    assert r.block([three]).tx_results[0].code == 0
    assert r.balance(6) == 10 * ONE_USDC - 3 * ONE_USDC - 3 * FEE
    # 6.97 USDC left; send all but 5 000 quote quantums (half a fee), paying this tx's fee too.
    r.block([send_tx(6, 1, 6_970_000 - FEE - 5_000, 2)])
    assert r.balance(6) == 5_000
    res = r.block([send_tx(6, 1, 1, 3)])
    assert res.tx_results[0].code == errors.ERR_INSUFFICIENT_FEE.code
    assert r.balance(6) == 5_000
    assert r.app.check_tx(send_tx(6, 1, 1, 3)).code == errors.ERR_INSUFFICIENT_FEE.code


def test_pending_fees_are_counted_in_check_tx(small_account):
    r = small_account
    r.block([send_tx(6, 1, 10 * ONE_USDC - 2 * FEE - FEE, 1)])  # leaves 2 fees
    assert r.balance(6) == 2 * FEE
    assert [r.app.check_tx(send_tx(6, 1, 1, n)).code for n in (2, 3, 4)] == [
        0, 0, errors.ERR_INSUFFICIENT_FEE.code]


def test_account_query_shows_the_budget(small_account):
    r = small_account
    r.block([send_tx(6, 1, ONE_USDC, n) for n in range(1, 11)])  # 10 requests used at height 2
    acct = json.loads(r.app.query(f"/auth/account/{ADDRS[6]}", b"").value)
    # Next block is height 3: 50 - 10 + 5 = 45 requests; balance 10 - 10 - 0.1 = -> capacity stays 50.
    assert acct["budget"] == {"at_height": "3", "requests_available": "45", "request_capacity": "50",
                              "request_refill_per_block": "5", "cancels_available": "200",
                              "cancel_capacity": "200", "cancel_refill_per_block": "20",
                              "fee_per_message_quote_quantums": "10000"}
    params = json.loads(r.app.query("/auth/params", b"").value)
    assert params["fee_per_message_quote_quantums"] == "10000"


def test_admission_params_come_from_genesis_and_are_validated(tmp_path):
    r = Replica(tmp_path / "db")
    state = genesis_app_state()
    state["auth"] = {"params": {"fee_per_message_quote_quantums": "0", "base_capacity_requests": "2",
                                "max_capacity_requests": "2"}}
    r.init_chain(state)
    r.block([])
    res = r.block([send_tx(1, 2, 1, n) for n in (1, 2, 3)])
    assert [t.code for t in res.tx_results] == [0, 0, errors.ERR_RATE_LIMITED.code]
    assert r.balance(2) == 1_000_000 * ONE_USDC + 2  # no fee
    r.close()
    bad = genesis_app_state()
    bad["auth"] = {"params": {"refill_ppm_per_block": "0"}}
    with pytest.raises(errors.AppError, match="refill_ppm_per_block"):
        Replica(tmp_path / "db2").init_chain(bad)


# --- 2. historical queries ----------------------------------------------------------------------------------

def test_query_at_another_height_is_refused_not_mislabelled(replica):
    replica.block([])
    replica.block([])  # last committed height 3
    path = f"/bank/balance/{ADDRS[1]}"
    assert replica.app.query(path, b"", 0).code == 0
    assert replica.app.query(path, b"", 3).code == 0
    for h in (1, 2, 4, 10**9):
        res = replica.app.query(path, b"", h)
        assert res.code == errors.ERR_HEIGHT_UNAVAILABLE.code and res.value == b""
        assert "height 3" in res.log


# --- 3. edges -------------------------------------------------------------------------------------------------

def test_all_uppercase_addresses_accepted_in_messages_mixed_case_refused(replica):
    upper = sign_tx(KEYS[1], CHAIN_ID, 1, [msg_send(ADDRS[1].upper(), ADDRS[2].upper(), ONE_USDC)])
    res = replica.block([upper])
    assert res.tx_results[0].code == 0
    transfer = next(dict(e.attributes) for e in res.tx_results[0].events if e.type == "transfer")
    assert transfer["sender"] == ADDRS[1] and transfer["recipient"] == ADDRS[2]  # canonical lowercase
    mixed = ADDRS[2][:10] + ADDRS[2][10:].upper()
    bad = sign_tx(KEYS[1], CHAIN_ID, 2, [msg_send(ADDRS[1], mixed, ONE_USDC)])
    assert replica.app.check_tx(bad).code == errors.ERR_INVALID_ADDRESS.code
    assert json.loads(replica.app.query(f"/bank/balance/{ADDRS[2].upper()}", b"").value)["address"] == ADDRS[2]
    assert replica.app.query(f"/bank/balance/{mixed}", b"").code == errors.ERR_INVALID_ADDRESS.code


TOP = 2**64 - 1


@pytest.mark.parametrize("recent, expected", [
    pytest.param([TOP], TOP - 1, id="after 2^64-1 with room below: the largest free nonce"),
    pytest.param([TOP - 1, TOP], TOP - 2, id="skips used nonces"),
    pytest.param(list(range(TOP - 99, TOP + 1))[1:] + [5], TOP - 99, id="full window: above its minimum"),
])
def test_default_nonce_past_the_top_of_uint64(recent, expected):
    from app.auth.keeper import validate_nonce

    assert default_nonce(recent, now_ms=1_795_000_000_000) == expected
    validate_nonce(sorted(recent), expected)


def test_default_nonce_says_when_none_is_left():
    with pytest.raises(NoNonceLeft, match="no nonce is left"):
        default_nonce(list(range(TOP - 99, TOP + 1)), now_ms=1_795_000_000_000)


def test_nonce_2_64_minus_1_then_default_nonce_commits(replica):
    replica.block([send_tx(1, 2, 1, TOP)])
    recent = json.loads(replica.app.query(f"/auth/account/{ADDRS[1]}", b"").value)["recent_nonces"]
    nonce = default_nonce([int(n) for n in recent])
    assert nonce == TOP - 1
    assert replica.block([send_tx(1, 2, 1, nonce)]).tx_results[0].code == 0


# --- issue #8 points 4 and 7: multi-message atomicity, whole balance ----------------------------------------------

def test_a_tx_whose_second_message_fails_leaves_no_trace_of_the_first(replica):
    """Messages of one tx are all-or-nothing: the first transfer is undone when the second fails; only the ante
    (nonce, budget, fee) stays."""
    before = [replica.balance(i) for i in range(4)]
    tx = sign_tx(KEYS[1], CHAIN_ID, 1, [msg_send(ADDRS[1], ADDRS[2], 5 * ONE_USDC),
                                        msg_send(ADDRS[1], ADDRS[3], 2_000_000 * ONE_USDC)])
    res = replica.block([tx])
    assert res.tx_results[0].code == errors.ERR_INSUFFICIENT_FUNDS.code
    assert [e.type for e in res.tx_results[0].events] == ["tx"]  # no transfer event survives
    assert replica.balance(2) == before[2] and replica.balance(3) == before[3]
    assert replica.balance(1) == before[1] - 2 * FEE  # two non-trading messages' fees, nothing else
    assert replica.block([tx]).tx_results[0].code == errors.ERR_NONCE_USED.code  # the nonce is spent


def test_sending_a_whole_balance_succeeds(replica):
    """Everything but the fee: the account ends at exactly 0 (and is no longer stored)."""
    whole = replica.balance(5)
    res = replica.block([send_tx(5, 1, whole - FEE, 1)])
    assert res.tx_results[0].code == 0
    assert replica.balance(5) == 0
    # Funded with 3 fees again: sending 2 fees + 1 quantum (one more than balance - fee) fails; it pays its fee.
    replica.block([send_tx(1, 5, 3 * FEE, 1)])
    assert replica.block([send_tx(5, 1, 2 * FEE + 1, 2)]).tx_results[0].code == errors.ERR_INSUFFICIENT_FUNDS.code
    assert replica.balance(5) == 3 * FEE - FEE
