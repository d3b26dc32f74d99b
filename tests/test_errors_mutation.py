"""app/errors.py: register() and all_codes() called directly (issue #8).

register() runs at import, before mutmut switches a mutant on, so the table at the bottom of app/errors.py never
exercises a mutant: these tests register codes of their own in a copy of the registry.
"""

from __future__ import annotations

import pytest

from app import errors
from app.errors import AppError, ErrorCode


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry: the real one is restored after the test."""
    copy = dict(errors._REGISTRY)
    monkeypatch.setattr(errors, "_REGISTRY", copy)
    return copy


def test_register_returns_the_code_and_records_it(registry):
    before = len(registry)
    err = errors.register("testspace", 90_001, "test_code")
    assert err == ErrorCode(codespace="testspace", code=90_001, name="test_code")
    assert (err.codespace, err.code, err.name) == ("testspace", 90_001, "test_code")
    assert registry[90_001] is err
    assert len(registry) == before + 1
    assert errors.all_codes()[-1] is err  # the highest code sorts last


def test_registering_a_code_twice_is_refused_and_keeps_the_first(registry):
    first = errors.register("testspace", 90_002, "first")
    with pytest.raises(RuntimeError, match="^error code 90002 registered twice$"):
        errors.register("other", 90_002, "second")
    assert registry[90_002] is first


def test_all_codes_lists_every_code_once_in_ascending_order(registry):
    b = errors.register("testspace", 90_005, "b")
    a = errors.register("testspace", 90_004, "a")
    codes = errors.all_codes()
    assert codes[-2:] == [a, b]
    assert [c.code for c in codes] == sorted(registry)
    assert len(codes) == len(registry)
    # A few of the documented, append-only codes (docs/transactions.md) sit at their place in the list.
    assert errors.ERR_TX_TOO_LARGE in codes and codes[0] == ErrorCode("tx", 2, "tx_too_large")
    assert ErrorCode("bank", 101, "insufficient_funds") in codes
    assert ErrorCode("app", 202, "invalid_genesis") in codes


def test_an_app_error_carries_its_code_and_message():
    err = AppError(errors.ERR_INVALID_AMOUNT, "amount must be positive")
    assert str(err) == "invalid_amount: amount must be positive"
    assert err.error is errors.ERR_INVALID_AMOUNT
    assert err.message == "amount must be positive"
    assert (err.code, err.codespace, err.log) == (102, "bank", "invalid_amount: amount must be positive")
