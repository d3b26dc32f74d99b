"""Burst-safe nonces: any unused nonce inside the recent window; replays always rejected."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import errors
from app.auth.keeper import AccountState, decode_account, encode_account, validate_nonce
from app.auth.params import MAX_NONCE_JUMP, NONCE_WINDOW
from app.errors import AppError
from tests.helpers import ADDRS, ONE_USDC, send_tx


def test_out_of_order_burst_all_accepted(replica):
    nonces = [5, 3, 9, 1, 2, 8, 4, 7, 6]
    assert all(replica.app.check_tx(send_tx(1, 2, ONE_USDC, n)).code == 0 for n in nonces)
    res = replica.block([send_tx(1, 2, ONE_USDC, n) for n in nonces])
    assert [r.code for r in res.tx_results] == [0] * len(nonces)
    assert replica.balance(2) == 1_000_000 * ONE_USDC + 9 * ONE_USDC


def test_window_full_rejects_nonces_below_it(replica):
    replica.block([send_tx(1, 2, 1, n) for n in range(1000, 1000 + NONCE_WINDOW)])
    res = replica.block([send_tx(1, 2, 1, 999), send_tx(1, 2, 1, 1000), send_tx(1, 2, 1, 2000)])
    assert [r.code for r in res.tx_results] == [errors.ERR_NONCE_TOO_OLD.code, errors.ERR_NONCE_USED.code, 0]
    # 1000 fell out of the window (2000 pushed it out) and is now too old: still a replay, still rejected.
    assert replica.block([send_tx(1, 2, 1, 1000)]).tx_results[0].code == errors.ERR_NONCE_TOO_OLD.code


def test_nonce_too_far_ahead(replica):
    replica.block([send_tx(1, 2, 1, 10)])
    res = replica.block([send_tx(1, 2, 1, 10 + MAX_NONCE_JUMP + 1), send_tx(1, 2, 1, 10 + MAX_NONCE_JUMP)])
    assert [r.code for r in res.tx_results] == [errors.ERR_NONCE_TOO_FAR.code, 0]


def test_check_tx_state_resets_at_commit_and_rechecks(replica):
    tx = send_tx(1, 2, ONE_USDC, 77)
    assert replica.app.check_tx(tx).code == 0
    replica.block([tx])  # commit resets the check state
    assert replica.app.check_tx(tx).code == errors.ERR_NONCE_USED.code


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=400))
def test_model_no_nonce_ever_accepted_twice(nonces):
    """Against a model: every accepted nonce is unique, and acceptance matches the rule."""
    import bisect

    window: list[int] = []
    accepted: list[int] = []
    for n in nonces:
        try:
            validate_nonce(window, n)
        except AppError:
            ok = False
        else:
            ok = True
        expect = n not in window and (len(window) < NONCE_WINDOW or n > window[0]) and (
            not window or n <= window[-1] + MAX_NONCE_JUMP)
        assert ok == expect
        if ok:
            accepted.append(n)
            bisect.insort(window, n)
            del window[: max(0, len(window) - NONCE_WINDOW)]
    assert len(accepted) == len(set(accepted))


@pytest.mark.parametrize(
    "n",
    [
        pytest.param(0, id="zero (the proto3 default: absent from the signed body)"),
        pytest.param(1, id="one"),
        pytest.param(2**63, id="2^63 (does not fit an int64)"),
        pytest.param(2**64 - 1, id="the largest uint64"),
    ],
)
def test_a_fresh_account_may_start_at_any_nonce_and_use_it_once(replica, n):
    validate_nonce([], n)
    with pytest.raises(AppError) as used:
        validate_nonce([n], n)
    assert used.value.code == errors.ERR_NONCE_USED.code
    # Account 1 has never sent: its first nonce may be anything. The same nonce again (other tx bytes) is refused,
    # in the same block and in a later one.
    res = replica.block([send_tx(1, 2, 1, n), send_tx(1, 2, 2, n)])
    assert [r.code for r in res.tx_results] == [0, errors.ERR_NONCE_USED.code]
    account = json.loads(replica.app.query(f"/auth/account/{ADDRS[1]}", b"").value)
    assert account["recent_nonces"] == [str(n)]
    assert replica.block([send_tx(1, 2, 3, n)]).tx_results[0].code == errors.ERR_NONCE_USED.code


@given(st.lists(st.integers(0, (1 << 64) - 1), max_size=NONCE_WINDOW, unique=True).map(sorted),
       st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1))
def test_account_encoding_round_trips_and_keeps_byte_order(nonces, requests, cancels, height):
    raw = encode_account(AccountState(nonces, requests, cancels, height))
    assert len(raw) == 24 + 8 * len(nonces)
    assert decode_account(raw) == AccountState(nonces, requests, cancels, height)
    words = [raw[i:i + 8] for i in range(24, len(raw), 8)]
    # Fixed-width big-endian: byte order of the packed nonces is numeric order (readable, stable).
    assert words == sorted(words)
    assert raw[:8] == requests.to_bytes(8, "big") and raw[16:24] == height.to_bytes(8, "big")


@pytest.mark.parametrize("size", [pytest.param(9, id="shorter than the header"), pytest.param(24 + 9, id="partial nonce")])
def test_corrupt_account_is_an_error_not_a_guess(size):
    with pytest.raises(ValueError, match="corrupt auth account"):
        decode_account(b"\x00" * size)


def test_client_default_nonce_never_breaks_the_jump_rule():
    from node.client.txbuilder import default_nonce

    now = 1_795_000_000_000  # ms since the epoch, > MAX_NONCE_JUMP
    assert default_nonce([], now) == now
    assert default_nonce([now + 5], now) == now + 6  # bumped above the highest used nonce
    # An account that counted 1..50 continues its counter: a timestamp would be "too far ahead".
    assert default_nonce(list(range(1, 51)), now) == 51
    for recent in ([], [now + 5], list(range(1, 51))):
        validate_nonce(recent, default_nonce(recent, now))
