"""app/bank: genesis validation, the keeper's edges, the transfer event and the query answers (issue #8).

Expected messages, key bytes and values are written out by hand (protobuf by hand: Balance{amount} is 0x08 varint,
BankParams{authority} is 0x0a length string); the fee collector's address is recomputed with hashlib.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from app.bank import genesis as bank_genesis
from app.bank import handlers as bank_handlers
from app.bank import keeper
from app.bank import queries as bank_queries
from app.context import BlockInfo, Ctx
from app.errors import AppError, InvariantViolation
from app.lib.address import encode_address
from app.lib.math import UINT64_MAX
from app.store import BranchStore
from node.client.txbuilder import msg_send, sign_tx
from tests.helpers import ADDRS, CHAIN_ID, FEE, KEYS, ONE_USDC, send_tx


class DictStore:
    def __init__(self, items=None):
        self.items = dict(items or {})

    def get(self, key):
        return self.items.get(key)

    def iterate(self, start, end):
        for k in sorted(self.items):
            if start <= k and (end is None or k < end):
                yield k, self.items[k]


FEE_COLLECTOR = hashlib.sha256(b"perpchain/module/fee_collector").digest()[:20]
RAW1, RAW2, RAW3 = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
TEXT1, TEXT2, TEXT3 = encode_address(RAW1), encode_address(RAW2), encode_address(RAW3)
AUTHORITY = TEXT3


def varint(n: int) -> bytes:
    out = b""
    while True:
        if n < 0x80:
            return out + bytes([n])
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7


def balance_value(n: int) -> bytes:
    return b"\x08" + varint(n) if n else b""


def fresh() -> BranchStore:
    return BranchStore(DictStore())


def with_balances(*balances: tuple[bytes, int]) -> BranchStore:
    """State with raw balances (no supply): what a keeper unit test needs."""
    return BranchStore(DictStore({b"\x01\x00" + a: balance_value(n) for a, n in balances}))


def genesis(balances=None, authority=AUTHORITY, **extra) -> dict:
    state = {"authority": authority} if authority is not None else {}
    if balances is not None:
        state["balances"] = [{"address": a, "amount_quote_quantums": n} for a, n in balances]
    state.update(extra)
    return state


# --- genesis ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "state, message",
    [
        pytest.param(["x"], "bank genesis must be an object", id="a bank genesis that is not an object"),
        pytest.param(genesis([], authority=None), "bank.authority '' is not a valid address",
                     id="no authority at all"),
        pytest.param(genesis([], authority="nope"), "bank.authority 'nope' is not a valid address",
                     id="an authority that is not an address"),
        pytest.param({"authority": AUTHORITY, "balances": {"a": "1"}}, "bank.balances must be a list",
                     id="balances as an object"),
        pytest.param({"authority": AUTHORITY, "balances": [{"address": TEXT1, "amount_quote_quantums": "1"}, "x"]},
                     "bank.balances[1] must be an object", id="the second entry is not an object"),
        pytest.param({"authority": AUTHORITY, "balances": [{"amount_quote_quantums": "1"}]},
                     "bank.balances[0].address is not a valid address", id="an entry without an address"),
        pytest.param(genesis([(TEXT1, "1"), (TEXT2, "nope")]),
                     "bank.balances[1].amount_quote_quantums must be a decimal string, got 'nope'",
                     id="the second entry's amount is not a number"),
        pytest.param(genesis([(TEXT1, "1"), (TEXT1, "2")]), f"bank.balances[1] duplicates address {TEXT1}",
                     id="an address listed twice"),
        pytest.param(genesis([(TEXT1, 5)]), "bank.balances[0].amount_quote_quantums must be a decimal string, got 5",
                     id="an amount as a JSON number"),
        pytest.param({"authority": AUTHORITY, "balances": [{"address": TEXT1}]},
                     "bank.balances[0].amount_quote_quantums must be a decimal string, got None",
                     id="an entry without an amount"),
        pytest.param(genesis([(TEXT1, "12a")]),
                     "bank.balances[0].amount_quote_quantums must be a decimal string, got '12a'",
                     id="ASCII that is not all digits"),
        pytest.param(genesis([(TEXT1, "")]), "bank.balances[0].amount_quote_quantums must be a decimal string, got ''",
                     id="the empty string"),
        pytest.param(genesis([(TEXT1, "-5")]),
                     "bank.balances[0].amount_quote_quantums must be a decimal string, got '-5'", id="a negative amount"),
        pytest.param(genesis([(TEXT1, "\u0661")]),
                     "bank.balances[0].amount_quote_quantums must be a decimal string, got '\u0661'",
                     id="a non-ASCII digit"),
        pytest.param(genesis([(TEXT1, "0" * 20 + "1")]),
                     f"bank.balances[0].amount_quote_quantums must be a decimal string, got '{'0' * 20 + '1'}'",
                     id="21 characters are refused even when the value is small"),
        pytest.param(genesis([(TEXT1, "18446744073709551616")]), "bank.balances[0].amount_quote_quantums exceeds uint64",
                     id="2^64 (20 digits) exceeds uint64"),
        pytest.param(genesis([(TEXT1, str(UINT64_MAX)), (TEXT2, "1")]), "total supply exceeds uint64",
                     id="balances summing to 2^64"),
    ],
)
def test_bank_genesis_refusals(state, message):
    store = fresh()
    with pytest.raises(AppError) as exc:
        bank_genesis.init_genesis(store, state)
    assert exc.value.error is errors.ERR_INVALID_GENESIS
    assert exc.value.message == message


@pytest.mark.parametrize(
    "balances, supply, kept",
    [
        pytest.param([(TEXT1, str(UINT64_MAX))], UINT64_MAX, [(RAW1, UINT64_MAX)],
                     id="one balance of exactly 2^64-1 (20 digits)"),
        pytest.param([(TEXT1, "1"), (TEXT2, str(UINT64_MAX - 1))], UINT64_MAX, [(RAW1, 1), (RAW2, UINT64_MAX - 1)],
                     id="a total supply of exactly 2^64-1"),
        pytest.param([(TEXT1, "0" * 19 + "5")], 5, [(RAW1, 5)], id="20 characters with leading zeros"),
        pytest.param([(TEXT1, "1")], 1, [(RAW1, 1)], id="a balance of 1 quote quantum is kept"),
        pytest.param([(TEXT1, "0"), (TEXT2, "7"), (TEXT3, "0")], 7, [(RAW2, 7)],
                     id="zero balances are dropped and later entries still loaded"),
        pytest.param([(TEXT2, "3"), (TEXT1, "4")], 7, [(RAW1, 4), (RAW2, 3)], id="balances are stored by address"),
        pytest.param([], 0, [], id="no balances"),
    ],
)
def test_bank_genesis_accepts(balances, supply, kept):
    store = fresh()
    bank_genesis.init_genesis(store, genesis(balances))
    assert list(keeper.iter_balances(store)) == kept
    assert keeper.get_supply(store) == supply
    assert keeper.get_authority(store) == AUTHORITY


def test_a_bank_genesis_without_a_balances_key_is_an_empty_supply():
    store = fresh()
    bank_genesis.init_genesis(store, {"authority": AUTHORITY})
    assert list(keeper.iter_balances(store)) == []
    assert keeper.get_supply(store) == 0


def test_bank_genesis_key_layout_golden():
    """docs/state.md: 0x01 0x00 ‖ address -> Balance, 0x01 0x01 -> supply, 0x01 0x02 -> BankParams,
    0x01 0x03 ‖ address -> b"" (module account)."""
    store = fresh()
    bank_genesis.init_genesis(store, genesis([(TEXT2, "300"), (TEXT1, "5")]))
    assert store.write_set() == [
        (b"\x01\x00" + RAW1, b"\x08\x05"),
        (b"\x01\x00" + RAW2, b"\x08\xac\x02"),
        (b"\x01\x01", b"\x08\xb1\x02"),  # 305 = 0x31 + 2*128
        (b"\x01\x02", b"\x0a\x2b" + AUTHORITY.encode()),  # 43 characters
        (b"\x01\x03" + FEE_COLLECTOR, b""),
    ]


def test_bank_export_genesis():
    store = fresh()
    bank_genesis.init_genesis(store, genesis([(TEXT2, "3"), (TEXT1, "4"), (TEXT3, "0")]))
    assert bank_genesis.export_genesis(store) == {
        "authority": AUTHORITY,
        "balances": [{"address": TEXT1, "amount_quote_quantums": "4"}, {"address": TEXT2, "amount_quote_quantums": "3"}],
    }


def test_export_refuses_state_whose_balances_do_not_add_up_to_the_supply():
    store = fresh()
    bank_genesis.init_genesis(store, genesis([(TEXT1, "5")]))
    store.set(b"\x01\x01", b"\x08\x06")
    with pytest.raises(InvariantViolation, match="^Σ balances 5 != supply 6$"):
        bank_genesis.export_genesis(store)


# --- keeper -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("amount", [pytest.param(0, id="zero"), pytest.param(-1, id="negative")])
def test_apply_transfer_refuses_a_non_positive_amount(amount):
    store = with_balances((RAW1, 5))
    with pytest.raises(AppError) as exc:
        keeper.apply_transfer(store, RAW1, RAW2, amount)
    assert (exc.value.error, exc.value.message) == (errors.ERR_INVALID_AMOUNT, "amount must be positive")
    assert store.write_set() == []


def test_apply_transfer_refuses_more_than_the_balance_and_says_how_much():
    store = with_balances((RAW1, 5))
    with pytest.raises(AppError) as exc:
        keeper.apply_transfer(store, RAW1, RAW2, 6)
    assert exc.value.error is errors.ERR_INSUFFICIENT_FUNDS
    assert exc.value.message == f"{TEXT1} has 5 quote quantums, needs 6 quote quantums"
    assert store.write_set() == []


@pytest.mark.parametrize(
    "amount, writes",
    [
        pytest.param(5, [(b"\x01\x00" + RAW1, None), (b"\x01\x00" + RAW2, b"\x08\x05")],
                     id="the whole balance: the sender's entry is deleted, not stored as 0"),
        pytest.param(4, [(b"\x01\x00" + RAW1, b"\x08\x01"), (b"\x01\x00" + RAW2, b"\x08\x04")],
                     id="all but 1: a balance of 1 quote quantum is stored"),
        pytest.param(1, [(b"\x01\x00" + RAW1, b"\x08\x04"), (b"\x01\x00" + RAW2, b"\x08\x01")], id="1 quote quantum"),
    ],
)
def test_apply_transfer_writes(amount, writes):
    store = with_balances((RAW1, 5))
    keeper.apply_transfer(store, RAW1, RAW2, amount)
    assert store.write_set() == writes
    assert (keeper.get_balance(store, RAW1), keeper.get_balance(store, RAW2)) == (5 - amount, amount)


def test_a_transfer_to_oneself_changes_nothing():
    store = with_balances((RAW1, 5))
    keeper.apply_transfer(store, RAW1, RAW1, 5)
    assert store.write_set() == []
    assert keeper.get_balance(store, RAW1) == 5


@pytest.mark.parametrize(
    "amount, error",
    [
        pytest.param(2, None, id="the recipient reaches exactly 2^64-1"),
        pytest.param(3, errors.ERR_BALANCE_OVERFLOW, id="one more would exceed 2^64-1: refused, nothing written"),
    ],
)
def test_apply_transfer_recipient_overflow(amount, error):
    store = with_balances((RAW1, 5), (RAW2, UINT64_MAX - 2))
    if error is None:
        keeper.apply_transfer(store, RAW1, RAW2, amount)
        assert (keeper.get_balance(store, RAW1), keeper.get_balance(store, RAW2)) == (3, UINT64_MAX)
        return
    with pytest.raises(AppError) as exc:
        keeper.apply_transfer(store, RAW1, RAW2, amount)
    assert (exc.value.error, exc.value.message) == (error, "recipient balance would exceed uint64")
    assert store.write_set() == []


def test_unknown_accounts_hold_zero():
    store = fresh()
    assert (keeper.get_balance(store, RAW1), keeper.get_supply(store), keeper.get_authority(store)) == (0, 0, "")
    assert keeper.decode_amount(None) == 0


def test_the_fee_collector_is_a_module_account_users_cannot_send_to():
    store = fresh()
    keeper.init_balances(store, [(RAW1, 5)], AUTHORITY)
    assert keeper.is_module_account(store, FEE_COLLECTOR)
    assert not keeper.is_module_account(store, RAW1)
    keeper.validate_user_recipient(store, RAW2)
    with pytest.raises(AppError) as exc:
        keeper.validate_user_recipient(store, FEE_COLLECTOR)
    assert exc.value.error is errors.ERR_MODULE_ACCOUNT
    assert exc.value.message == f"{encode_address(FEE_COLLECTOR)} is a module account: users cannot send to it"


# --- handlers ---------------------------------------------------------------------------------------------------
def _send(frm: str, to: str, amount: int) -> tx_pb2.MsgSend:
    return tx_pb2.MsgSend(from_address=frm, to_address=to, amount_quote_quantums=amount)


@pytest.mark.parametrize(
    "msg, error, message",
    [
        pytest.param(_send("perp1bad", TEXT2, 1), errors.ERR_INVALID_ADDRESS,
                     "from_address 'perp1bad' is not a valid perp1... address", id="a bad sender names from_address"),
        pytest.param(_send(TEXT1, "perp1bad", 1), errors.ERR_INVALID_ADDRESS,
                     "to_address 'perp1bad' is not a valid perp1... address", id="a bad recipient names to_address"),
        pytest.param(_send(TEXT1, TEXT2, 0), errors.ERR_INVALID_AMOUNT, "amount_quote_quantums must be positive",
                     id="a zero amount is refused before any state is read"),
    ],
)
def test_signers_send_refusals(msg, error, message):
    with pytest.raises(AppError) as exc:
        bank_handlers.signers_send(msg)
    assert (exc.value.error, exc.value.message) == (error, message)


def test_signers_send_names_the_sender():
    assert bank_handlers.signers_send(_send(TEXT1, TEXT2, 1)) == [RAW1]


def _ctx(store: BranchStore) -> Ctx:
    return Ctx(block=BlockInfo(height=2, block_time_ns=0, chain_id=CHAIN_ID), store=store)


@pytest.mark.parametrize(
    "msg, message",
    [
        pytest.param(_send("perp1bad", TEXT2, 1), "from_address 'perp1bad' is not a valid perp1... address",
                     id="the handler itself refuses a bad sender"),
        pytest.param(_send(TEXT1, "perp1bad", 1), "to_address 'perp1bad' is not a valid perp1... address",
                     id="the handler itself refuses a bad recipient"),
    ],
)
def test_handle_send_checks_addresses_itself(msg, message):
    ctx = _ctx(with_balances((RAW1, 5)))
    with pytest.raises(AppError) as exc:
        bank_handlers.handle_send(ctx, msg)
    assert (exc.value.error, exc.value.message) == (errors.ERR_INVALID_ADDRESS, message)
    assert ctx.events == []


def test_handle_send_moves_funds_and_emits_the_transfer_event():
    store = with_balances((RAW1, 5))
    ctx = _ctx(store)
    bank_handlers.handle_send(ctx, _send(TEXT1.upper(), TEXT2.upper(), 3))
    assert (keeper.get_balance(store, RAW1), keeper.get_balance(store, RAW2)) == (2, 3)
    assert [(e.type, e.attributes) for e in ctx.events] == [
        ("transfer", (("sender", TEXT1), ("recipient", TEXT2), ("amount_quote_quantums", "3")))
    ]


def test_handle_send_refuses_the_fee_collector():
    store = fresh()
    keeper.init_balances(store, [(RAW1, 5)], AUTHORITY)
    ctx = _ctx(store)
    with pytest.raises(AppError) as exc:
        bank_handlers.handle_send(ctx, _send(TEXT1, encode_address(FEE_COLLECTOR), 1))
    assert exc.value.error is errors.ERR_MODULE_ACCOUNT
    assert keeper.get_balance(store, RAW1) == 5


# --- through the application --------------------------------------------------------------------------------------
def test_a_block_transfer_carries_its_event_and_a_send_to_the_fee_collector_is_refused(replica):
    to_collector = sign_tx(KEYS[1], CHAIN_ID, 2, [msg_send(ADDRS[1], encode_address(FEE_COLLECTOR), 1)])
    res = replica.block([send_tx(1, 2, 5, 1), to_collector])
    ok, refused = res.tx_results
    assert ok.code == 0
    assert [(e.type, e.attributes) for e in ok.events if e.type == "transfer"] == [
        ("transfer", (("sender", ADDRS[1]), ("recipient", ADDRS[2]), ("amount_quote_quantums", "5")))
    ]
    assert (refused.code, refused.codespace) == (104, "bank")
    assert replica.balance(1) == 1_000_000 * ONE_USDC - 5 - 2 * FEE


def test_bank_queries_answer_with_their_documented_fields(replica):
    assert json.loads(replica.app.query("/bank/supply", b"").value) == {
        "amount_quote_quantums": str(6 * 1_000_000 * ONE_USDC), "authority": ADDRS[0]}
    assert json.loads(replica.app.query(f"/bank/balance/{ADDRS[7].upper()}", b"").value) == {
        "address": ADDRS[7], "amount_quote_quantums": "0"}
    bad = replica.app.query("/bank/balance/perp1bad", b"")
    assert (bad.code, bad.codespace, bad.log) == (
        14, "tx", "invalid_address: address 'perp1bad' is not a valid perp1... address")


def test_query_supply_and_balance_directly():
    store = fresh()
    bank_genesis.init_genesis(store, genesis([(TEXT1, "5")]))
    assert bank_queries.query_supply(store) == {"amount_quote_quantums": "5", "authority": AUTHORITY}
    assert bank_queries.query_balance(store, TEXT1) == {"address": TEXT1, "amount_quote_quantums": "5"}
