"""auth: behaviours no other test pinned, found by mutation testing (docs/mutation.md, issue #8).

Pure unit tests over an in-memory store (no replica, no LevelDB): the admission params' bounds, the nonce window's
size, the genesis parser's refusals and defaults, the export round trip of non-default params, the query fields.
Numbers are worked by hand in the comments; defaults are the documented ones (docs/transactions.md): fee 10 000
quote quantums per message, capacity 50 + balance // 100 USDC capped at 1 000, refill 10 % per block (floor, >= 1),
cancel bucket 4x.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from app import errors
from app.auth import admission, keeper, queries
from app.auth import genesis as auth_genesis
from app.auth.admission import Cost
from app.auth.params import AdmissionParams
from app.lib.address import decode_address_or_none
from app.store import BranchStore
from tests.helpers import ADDRS
from tests.mutation_helpers import Empty, refused

A1 = decode_address_or_none(ADDRS[1])
A2 = decode_address_or_none(ADDRS[2])


def store() -> BranchStore:
    return BranchStore(Empty())


# --- admission math --------------------------------------------------------------------------------------------

def test_costs_add_field_by_field():
    assert Cost(1, 2, 3) + Cost(10, 20, 30) == Cost(11, 22, 33)


@pytest.mark.parametrize("capacity, refill", [
    pytest.param(9, 1, id="9 x 10 % = 0.9 floors to 0: at least 1 request per block"),
    pytest.param(10, 1, id="10 x 10 % = exactly 1"),
    pytest.param(19, 1, id="19 x 10 % = 1.9 floors to 1"),
    pytest.param(20, 2, id="20 x 10 % = 2"),
])
def test_refill_is_a_floored_share_of_the_capacity_and_at_least_one(capacity, refill):
    assert admission.compute_refill_per_block(AdmissionParams(), capacity) == refill


@pytest.mark.parametrize("balance, capacity", [
    pytest.param(199_999_999, 51, id="199.999999 USDC adds one request (floor)"),
    pytest.param(200_000_000, 52, id="200 USDC adds two"),
])
def test_capacity_floors_the_collateral_bonus(balance, capacity):
    assert admission.compute_capacity_requests(AdmissionParams(), balance) == capacity


# --- params bounds ---------------------------------------------------------------------------------------------

ACCEPTED = [
    pytest.param({"base_capacity_requests": 1, "max_capacity_requests": 1}, id="capacity 1..1"),
    pytest.param({"max_capacity_requests": 1_000_000}, id="max capacity at the hard bound 1 000 000"),
    pytest.param({"fee_per_message_quote_quantums": 1_000_000_000}, id="fee exactly 1 000 USDC"),
    pytest.param({"fee_per_message_quote_quantums": 0}, id="no fee"),
    pytest.param({"collateral_per_request_quote_quantums": 1}, id="one request per quote quantum"),
    pytest.param({"refill_ppm_per_block": 1}, id="refill 1 ppm"),
    pytest.param({"refill_ppm_per_block": 1_000_000}, id="refill 100 %"),
    pytest.param({"cancel_multiplier": 1}, id="cancel bucket as large as the request bucket"),
    pytest.param({"cancel_multiplier": 100}, id="cancel bucket 100x"),
]


@pytest.mark.parametrize("fields", ACCEPTED)
def test_params_on_the_bounds_are_accepted(fields):
    AdmissionParams(**fields).validate()


REFUSED = [
    pytest.param({"fee_per_message_quote_quantums": 1_000_000_001}, "fee_per_message_quote_quantums above 1000000000",
                 id="fee above 1 000 USDC"),
    pytest.param({"base_capacity_requests": 0}, "need 1 <= base_capacity_requests <= max_capacity_requests <= 1000000",
                 id="base capacity 0"),
    pytest.param({"base_capacity_requests": 51, "max_capacity_requests": 50}, "need 1 <= base_capacity_requests",
                 id="base capacity above the max"),
    pytest.param({"max_capacity_requests": 1_000_001}, "max_capacity_requests <= 1000000",
                 id="max capacity above the hard bound"),
    pytest.param({"collateral_per_request_quote_quantums": 0}, "collateral_per_request_quote_quantums must be positive",
                 id="collateral step 0 (would divide by zero)"),
    pytest.param({"refill_ppm_per_block": 0}, "refill_ppm_per_block must be in 1..1000000", id="refill 0"),
    pytest.param({"refill_ppm_per_block": 1_000_001}, "refill_ppm_per_block must be in 1..1000000",
                 id="refill above 100 %"),
    pytest.param({"cancel_multiplier": 0}, "cancel_multiplier must be in 1..100", id="cancel multiplier 0"),
    pytest.param({"cancel_multiplier": 101}, "cancel_multiplier must be in 1..100", id="cancel multiplier 101"),
    pytest.param({"cancel_multiplier": -1}, "auth.params.cancel_multiplier must be a non-negative integer",
                 id="a negative value"),
    pytest.param({"refill_ppm_per_block": True}, "auth.params.refill_ppm_per_block must be a non-negative integer",
                 id="a bool is not an integer here"),
    pytest.param({"base_capacity_requests": "5"}, "auth.params.base_capacity_requests must be a non-negative integer",
                 id="a string is not an integer"),
]


@pytest.mark.parametrize("fields, words", REFUSED)
def test_params_out_of_bounds_are_refused_with_the_field_named(fields, words):
    err = refused(AdmissionParams(**fields).validate)
    assert err.code == errors.ERR_INVALID_GENESIS.code and words in err.log, err.log


# --- nonce window ----------------------------------------------------------------------------------------------

def test_the_window_keeps_exactly_the_100_highest_nonces():
    acct = keeper.AccountState(list(range(1, 100)))  # 99 nonces: not full yet
    keeper.record_nonce(acct, 100)
    assert acct.nonces == list(range(1, 101))  # 100 kept
    keeper.record_nonce(acct, 101)
    assert acct.nonces == list(range(2, 102))  # the oldest (1) left, still 100
    # Full window: below its smallest (2) is too old, 2 itself was used, anything above is fine.
    err = refused(keeper.validate_nonce, acct.nonces, 1)
    assert err.code == errors.ERR_NONCE_TOO_OLD.code
    assert "nonce 1 is below the account's window (smallest kept nonce 2)" in err.log
    err = refused(keeper.validate_nonce, acct.nonces, 2)
    assert err.code == errors.ERR_NONCE_USED.code and "nonce 2 was already used" in err.log
    keeper.validate_nonce(acct.nonces, 102)


def test_a_window_not_yet_full_accepts_a_nonce_below_its_smallest():
    keeper.validate_nonce(list(range(10, 109)), 3)  # 99 nonces: 3 is new, not too old


@pytest.mark.parametrize("nonce, code", [
    pytest.param(7 + (1 << 40), 0, id="exactly 2^40 above the highest: accepted"),
    pytest.param(8 + (1 << 40), errors.ERR_NONCE_TOO_FAR.code, id="2^40 + 1 above: too far"),
])
def test_the_jump_bound_is_inclusive(nonce, code):
    if code:
        err = refused(keeper.validate_nonce, [5, 7], nonce)
        assert err.code == code and f"above the highest used nonce 7" in err.log
    else:
        keeper.validate_nonce([5, 7], nonce)


def test_accounts_round_trip_through_the_store():
    s = store()
    keeper.set_account(s, A1, keeper.AccountState([3, 5], requests=2, cancels=9, last_use_height=4))
    assert keeper.get_account(s, A1) == keeper.AccountState([3, 5], 2, 9, 4)
    assert keeper.get_account(s, A2) == keeper.AccountState([])


def test_params_round_trip_through_the_store_and_default_when_absent():
    s = store()
    assert keeper.get_params(s) == AdmissionParams()
    odd = AdmissionParams(7, 2, 3, 9, 11, 5)
    keeper.set_params(s, odd)
    assert keeper.get_params(s) == odd


# --- genesis ---------------------------------------------------------------------------------------------------

GOOD_ACCOUNT = {"address": ADDRS[1], "recent_nonces": ["9", "4"], "requests": "7", "cancels": "8",
                "last_use_height": "12"}

BAD_GENESIS = [
    pytest.param([], "auth genesis must be an object with an accounts list", id="not an object"),
    pytest.param({"accounts": {}}, "auth genesis must be an object with an accounts list", id="accounts not a list"),
    pytest.param({"params": []}, "auth.params must be an object", id="params not an object"),
    pytest.param({"params": {"fee": "1", "zeta": "2"}}, "auth.params has unknown fields ['fee', 'zeta']",
                 id="unknown params fields (sorted)"),
    pytest.param({"params": {"cancel_multiplier": "x"}}, "auth.params.cancel_multiplier must be a decimal string",
                 id="a param that is not a decimal string"),
    pytest.param({"accounts": ["perp1"]}, "auth.accounts[0].address is not a valid address",
                 id="an account entry that is not an object"),
    pytest.param({"accounts": [{"recent_nonces": []}]}, "auth.accounts[0].address is not a valid address",
                 id="an account without an address"),
    pytest.param({"accounts": [{**GOOD_ACCOUNT, "recent_nonces": "1"}]},
                 "auth.accounts[0].recent_nonces must be a list",
                 id="recent_nonces not a list"),
    pytest.param({"accounts": [{**GOOD_ACCOUNT, "recent_nonces": ["3", "x"]}]},
                 "auth.accounts[0].recent_nonces must be a decimal string", id="a nonce that is not a number"),
    pytest.param({"accounts": [{**GOOD_ACCOUNT, "recent_nonces": ["3", "3"]}]},
                 "auth.accounts[0].recent_nonces: too many or duplicated", id="a repeated nonce"),
    pytest.param({"accounts": [{**GOOD_ACCOUNT, "recent_nonces": [str(n) for n in range(1, 102)]}]},
                 "auth.accounts[0].recent_nonces: too many or duplicated", id="101 nonces"),
    pytest.param({"accounts": [GOOD_ACCOUNT, {**GOOD_ACCOUNT, "requests": "-1"}]},
                 "auth.accounts[1].requests must be a decimal string", id="a negative counter (second entry)"),
]


@pytest.mark.parametrize("state, words", BAD_GENESIS)
def test_bad_auth_genesis_is_refused_with_the_place_named(state, words):
    err = refused(auth_genesis.init_genesis, store(), state)
    assert err.code == errors.ERR_INVALID_GENESIS.code and words in err.log, err.log


def test_genesis_defaults_an_empty_window_and_zero_counters():
    s = store()
    auth_genesis.init_genesis(s, {"accounts": [{"address": ADDRS[2]}]})
    assert keeper.get_account(s, A2) == keeper.AccountState([], 0, 0, 0)
    assert keeper.get_params(s) == AdmissionParams()


def test_genesis_accepts_a_full_window_of_100_nonces_and_sorts_it():
    s = store()
    nonces = [str(n) for n in range(200, 100, -1)]  # 200 down to 101: 100 nonces
    auth_genesis.init_genesis(s, {"accounts": [{**GOOD_ACCOUNT, "recent_nonces": nonces}]})
    assert keeper.get_account(s, A1) == keeper.AccountState(list(range(101, 201)), 7, 8, 12)


def test_export_then_import_keeps_non_default_params_and_accounts():
    s = store()
    params = {"fee_per_message_quote_quantums": "3", "base_capacity_requests": "4", "max_capacity_requests": "40",
              "collateral_per_request_quote_quantums": "5", "refill_ppm_per_block": "6", "cancel_multiplier": "2"}
    auth_genesis.init_genesis(s, {"params": params, "accounts": [GOOD_ACCOUNT]})
    exported = auth_genesis.export_genesis(s)
    assert exported == {"params": params, "accounts": [{"address": ADDRS[1], "recent_nonces": ["4", "9"],
                                                        "requests": "7", "cancels": "8", "last_use_height": "12"}]}
    again = store()
    auth_genesis.init_genesis(again, exported)
    assert keeper.get_params(again) == AdmissionParams(3, 4, 5, 40, 6, 2)
    assert dataclasses.asdict(keeper.get_account(again, A1)) == {"nonces": [4, 9], "requests": 7, "cancels": 8,
                                                                 "last_use_height": 12}


# --- queries ---------------------------------------------------------------------------------------------------

def test_account_query_names_the_canonical_address_even_for_an_uppercase_query():
    s = store()
    keeper.set_account(s, A1, keeper.AccountState([2, 6], requests=3, cancels=1, last_use_height=10))
    out = queries.query_account(s, ADDRS[1].upper(), 11)
    # Empty bank balance: capacity 50, refill 5: 3 + 5 = 8 requests; cancels 1 + 20 = 21 (capacity 200).
    assert out["address"] == ADDRS[1] and out["recent_nonces"] == ["2", "6"]
    assert out["budget"]["requests_available"] == "8" and out["budget"]["cancels_available"] == "21"


def test_account_query_of_a_bad_address_names_the_field():
    err = refused(queries.query_account, store(), "perp1bad", 1)
    assert err.code == errors.ERR_INVALID_ADDRESS.code and "address 'perp1bad' is not a valid" in err.log, err.log


def test_params_query_names_the_fee_collector():
    expected = hashlib.sha256(b"perpchain/module/fee_collector").digest()[:20]
    out = queries.query_params(store())
    assert decode_address_or_none(out["fee_collector"]) == expected
    assert out["cancel_multiplier"] == "4" and out["fee_per_message_quote_quantums"] == "10000"
