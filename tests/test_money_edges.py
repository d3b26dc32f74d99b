"""Small but money-adjacent edges (issue #8, gap 7): rounding of negative quotients, the block conservation check,
the memo and message-count limits with their codes."""

from __future__ import annotations

import pytest
from perpchain.v1 import state_pb2

from app.bank import keeper as bank_keeper
from app.bank.keys import balance_key
from app.errors import InvariantViolation
from app.lib.address import address_from_pubkey
from app.lib.encoding import encode_proto
from app.lib.math import Rounding, div_round
from app.store import BranchStore
from app.tx.router import ROUTES, Route
from node.client.txbuilder import msg_send, sign_tx
from tests.helpers import ADDRS, BLOCK_INTERVAL_NS, CHAIN_ID, GENESIS_TIME_NS, KEYS, ONE_USDC

T, F, C = Rounding.TRUNC, Rounding.FLOOR, Rounding.CEIL
# (code, codespace) as documented for clients (app/errors.py is append-only: these never change).
NO_MESSAGES, TOO_MANY_MESSAGES, MEMO_TOO_LONG = (10, "tx"), (11, "tx"), (12, "tx")


# --- div_round: every sign combination, exact and inexact (hand-worked) ------------------------------------------
@pytest.mark.parametrize(
    "n, d, rounding, expected",
    [
        pytest.param(7, 2, T, 3, id="trunc +7/+2 = 3.5 -> 3"),
        pytest.param(-7, 2, T, -3, id="trunc -7/+2 = -3.5 -> -3 (toward zero, not -4)"),
        pytest.param(7, -2, T, -3, id="trunc +7/-2 = -3.5 -> -3 (toward zero, not -4)"),
        pytest.param(-7, -2, T, 3, id="trunc -7/-2 = 3.5 -> 3"),
        pytest.param(-1, 3, T, 0, id="trunc -1/3 -> 0 (not -1)"),
        pytest.param(1, -3, T, 0, id="trunc +1/-3 -> 0 (not -1)"),
        pytest.param(-2, 3, T, 0, id="trunc -2/3 -> 0"),
        pytest.param(-6, 2, T, -3, id="trunc -6/+2 exact = -3"),
        pytest.param(6, -2, T, -3, id="trunc +6/-2 exact = -3"),
        pytest.param(-6, -2, T, 3, id="trunc -6/-2 exact = 3"),
        pytest.param(0, -5, T, 0, id="trunc 0/-5 = 0"),
        pytest.param(-(10**30 + 1), 10**6, T, -(10**24), id="trunc of a big negative notional drops the remainder"),
        pytest.param(-7, 2, F, -4, id="floor -7/+2 = -3.5 -> -4"),
        pytest.param(7, -2, F, -4, id="floor +7/-2 = -3.5 -> -4"),
        pytest.param(-7, -2, F, 3, id="floor -7/-2 = 3.5 -> 3"),
        pytest.param(-6, 2, F, -3, id="floor -6/+2 exact = -3"),
        pytest.param(-7, 2, C, -3, id="ceil -7/+2 = -3.5 -> -3"),
        pytest.param(7, -2, C, -3, id="ceil +7/-2 = -3.5 -> -3"),
        pytest.param(-7, -2, C, 4, id="ceil -7/-2 = 3.5 -> 4"),
        pytest.param(7, 2, C, 4, id="ceil +7/+2 = 3.5 -> 4"),
        pytest.param(-6, 2, C, -3, id="ceil -6/+2 exact = -3"),
        pytest.param(6, 2, C, 3, id="ceil +6/+2 exact = 3"),
    ],
)
def test_div_round_table(n, d, rounding, expected):
    assert div_round(n, d, rounding) == expected


def test_div_round_by_zero_halts():
    with pytest.raises(ZeroDivisionError):
        div_round(1, 0, Rounding.TRUNC)


# --- block conservation: a mint or a burn outside genesis halts the node ----------------------------------------
def raw_address(i: int) -> bytes:
    return address_from_pubkey(bytes(KEYS[i].verify_key))


GENESIS_BALANCE = 1_000_000 * ONE_USDC  # accounts 0..5 (tests/helpers.genesis_app_state); 6 and 7 start empty


def write_balance(store: BranchStore, i: int, amount_quote_quantums: int) -> None:
    """A raw write to the bank prefix, bypassing the keeper (what a buggy module could do)."""
    store.set(balance_key(raw_address(i)), encode_proto(state_pb2.Balance(amount_quote_quantums=amount_quote_quantums)))


def _mint_one(block: BranchStore) -> None:
    write_balance(block, 1, GENESIS_BALANCE + 1)


def _burn_one(block: BranchStore) -> None:
    write_balance(block, 1, GENESIS_BALANCE - 1)


def _mint_new_account(block: BranchStore) -> None:
    write_balance(block, 7, 5)


def _burn_by_delete(block: BranchStore) -> None:
    block.delete(balance_key(raw_address(1)))


def _mint_in_a_tx_branch(block: BranchStore) -> None:
    tx = BranchStore(block)
    write_balance(tx, 2, GENESIS_BALANCE + 3)
    tx.write()


def _move_and_mint(block: BranchStore) -> None:
    write_balance(block, 1, GENESIS_BALANCE - 5)
    write_balance(block, 2, GENESIS_BALANCE + 6)


@pytest.mark.parametrize(
    "change, delta",
    [
        pytest.param(_mint_one, "1", id="one quantum minted"),
        pytest.param(_burn_one, "-1", id="one quantum burned"),
        pytest.param(_mint_new_account, "5", id="minted into an account with no balance"),
        pytest.param(_burn_by_delete, str(-GENESIS_BALANCE), id="a whole balance burned by deleting its key"),
        pytest.param(_mint_in_a_tx_branch, "3", id="minted in a tx branch written into the block"),
        pytest.param(_move_and_mint, "1", id="a transfer of 5 that credits 6"),
    ],
)
def test_block_conservation_check_fires_on_mint_and_burn(replica, change, delta):
    block = BranchStore(replica.store)
    change(block)
    with pytest.raises(InvariantViolation, match=rf"balances changed by {delta} quote quantums"):
        bank_keeper.check_block_conservation(block)


def test_block_conservation_check_accepts_a_balanced_move(replica):
    block = BranchStore(replica.store)
    write_balance(block, 1, GENESIS_BALANCE - 5)
    write_balance(block, 7, 5)
    bank_keeper.check_block_conservation(block)



@pytest.mark.parametrize("delta", [pytest.param(1, id="a handler that mints"), pytest.param(-1, id="a handler that burns")])
def test_finalize_block_halts_on_a_block_that_mints_or_burns(replica, monkeypatch, delta):
    """The check runs in FinalizeBlock: a buggy module's block is never finalized, let alone committed."""

    def buggy_send(ctx, msg):  # writes the recipient's balance directly, debiting no one (or debiting into the void)
        write_balance(ctx.store, 2, GENESIS_BALANCE + delta)

    monkeypatch.setitem(ROUTES, "send", Route(ROUTES["send"].signers, buggy_send))
    before = replica.app.info()
    with pytest.raises(InvariantViolation, match=rf"balances changed by {delta} quote quantums"):
        replica.app.finalize_block(2, GENESIS_TIME_NS + 2 * BLOCK_INTERVAL_NS, [tx_with()])
    with pytest.raises(InvariantViolation, match="Commit without a finalized block"):
        replica.app.commit()
    assert replica.app.info() == before

# --- stateless limits, in ProcessProposal and in a block ------------------------------------------------------------
def tx_with(memo: str = "", n_msgs: int = 1, nonce: int = 1) -> bytes:
    return sign_tx(KEYS[1], CHAIN_ID, nonce, [msg_send(ADDRS[1], ADDRS[2], 1)] * n_msgs, memo)


@pytest.mark.parametrize(
    "memo, error",
    [
        pytest.param("", None, id="empty memo"),
        pytest.param("m" * 256, None, id="256 ASCII bytes: at the limit"),
        pytest.param("m" * 257, MEMO_TOO_LONG, id="257 ASCII bytes: refused"),
        pytest.param("é" * 128, None, id="128 two-byte characters = 256 bytes"),
        pytest.param("é" * 128 + "m", MEMO_TOO_LONG, id="129 characters = 257 bytes: refused"),
        pytest.param("€" * 85 + "m", None, id="85 three-byte characters + 1 = 256 bytes"),
        pytest.param("€" * 86, MEMO_TOO_LONG, id="86 three-byte characters = 258 bytes: refused"),
        pytest.param("🙂" * 64, None, id="64 four-byte characters = 256 bytes"),
        pytest.param("🙂" * 64 + "m", MEMO_TOO_LONG, id="65 characters = 257 bytes: refused"),
    ],
)
def test_memo_limit_counts_utf8_bytes(replica, memo, error):
    assert_stateless_outcome(replica, tx_with(memo=memo), error)


@pytest.mark.parametrize(
    "n_msgs, error",
    [
        pytest.param(0, NO_MESSAGES, id="no message: refused"),
        pytest.param(1, None, id="one message"),
        pytest.param(32, None, id="32 messages: at the limit"),
        pytest.param(33, TOO_MANY_MESSAGES, id="33 messages: refused"),
    ],
)
def test_message_count_limit(replica, n_msgs, error):
    assert_stateless_outcome(replica, tx_with(n_msgs=n_msgs), error)


def assert_stateless_outcome(replica, tx: bytes, error) -> None:
    height = replica.app.info()[0] + 1
    assert replica.app.process_proposal([tx], height) is (error is None)
    res = replica.app.finalize_block(height, GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS, [tx])
    replica.app.commit()
    assert (res.tx_results[0].code, res.tx_results[0].codespace) == (error or (0, "")), res.tx_results[0].log



@pytest.mark.parametrize("bad", [None, "floor", 0])
def test_div_round_refuses_anything_but_a_rounding(bad):
    """A typo'd rounding must not silently truncate."""
    with pytest.raises(TypeError, match="must be a Rounding"):
        div_round(7, 2, bad)
