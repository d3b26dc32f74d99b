"""Sole owner of the bank prefix."""

from __future__ import annotations

from perpchain.v1 import state_pb2

from app.bank import keys
from app.errors import (
    ERR_BALANCE_OVERFLOW,
    ERR_INSUFFICIENT_FUNDS,
    ERR_INVALID_AMOUNT,
    ERR_MODULE_ACCOUNT,
    AppError,
    InvariantViolation,
)
from app.lib.address import encode_address, module_address
from app.lib.encoding import encode_proto
from app.lib.math import checked_add_u64
from app.store import BranchStore, CommittedReader


# Receives every fee (non-trading message fees now; trading fees with the order book). No key signs for it.
FEE_COLLECTOR_ADDRESS = module_address("fee_collector")


def register_module_account(store: BranchStore, address: bytes) -> None:
    """Mark a module account (a collateral pool, the fee collector): users cannot send to it, because its balance is
    bound by an invariant (a pool holds exactly its subaccounts' collateral) that a gift would break."""
    store.set(keys.module_account_key(address), b"")


def is_module_account(store: CommittedReader, address: bytes) -> bool:
    return store.get(keys.module_account_key(address)) is not None


def validate_user_recipient(store: CommittedReader, address: bytes) -> None:
    if is_module_account(store, address):
        raise AppError(ERR_MODULE_ACCOUNT, f"{encode_address(address)} is a module account: users cannot send to it")


def decode_amount(raw: bytes | None) -> int:
    if raw is None:
        return 0
    bal = state_pb2.Balance()
    bal.ParseFromString(raw)
    return bal.amount_quote_quantums


def get_balance(store: CommittedReader, address: bytes) -> int:
    """Balance in quote quantums (0 for an unknown address)."""
    return decode_amount(store.get(keys.balance_key(address)))


def get_supply(store: CommittedReader) -> int:
    return decode_amount(store.get(keys.SUPPLY_KEY))


def get_authority(store: CommittedReader) -> str:
    raw = store.get(keys.PARAMS_KEY)
    params = state_pb2.BankParams()
    if raw is not None:
        params.ParseFromString(raw)
    return params.authority


def _set_balance(store: BranchStore, address: bytes, amount: int) -> None:
    key = keys.balance_key(address)
    if amount == 0:
        store.delete(key)  # zero balances are not stored: state stays O(funded accounts)
    else:
        store.set(key, encode_proto(state_pb2.Balance(amount_quote_quantums=amount)))


def apply_transfer(store: BranchStore, sender: bytes, recipient: bytes, amount_quote_quantums: int) -> None:
    """Move USDC; raises on a non-positive amount, insufficient funds or overflow."""
    if amount_quote_quantums <= 0:
        raise AppError(ERR_INVALID_AMOUNT, "amount must be positive")
    sender_balance = get_balance(store, sender)
    if sender_balance < amount_quote_quantums:
        raise AppError(
            ERR_INSUFFICIENT_FUNDS,
            f"{encode_address(sender)} has {sender_balance} quote quantums, needs {amount_quote_quantums} quote "
            "quantums",
        )
    if sender == recipient:
        return
    recipient_new = checked_add_u64(get_balance(store, recipient), amount_quote_quantums)
    if recipient_new is None:
        raise AppError(ERR_BALANCE_OVERFLOW, "recipient balance would exceed uint64")
    _set_balance(store, sender, sender_balance - amount_quote_quantums)
    _set_balance(store, recipient, recipient_new)


def init_balances(store: BranchStore, balances: list[tuple[bytes, int]], authority: str) -> None:
    """Genesis: set balances and supply. Inputs already validated."""
    total = 0
    for address, amount in balances:
        _set_balance(store, address, amount)
        total += amount
    store.set(keys.SUPPLY_KEY, encode_proto(state_pb2.Balance(amount_quote_quantums=total)))
    store.set(keys.PARAMS_KEY, encode_proto(state_pb2.BankParams(authority=authority)))
    register_module_account(store, FEE_COLLECTOR_ADDRESS)


def iter_balances(store: CommittedReader):
    """(address, amount) in address order."""
    n = len(keys.BALANCE_PREFIX)
    for key, raw in store.iterate_prefix(keys.BALANCE_PREFIX):
        yield key[n:], decode_amount(raw)


def check_block_conservation(block_store: BranchStore) -> None:
    """The block's balance changes must sum to zero (no mint or burn outside genesis).

    O(changes): compares each written balance key with its committed value.
    Raises InvariantViolation (halts the node) otherwise.
    """
    delta = 0
    for key, value in block_store.write_set():
        if key.startswith(keys.BALANCE_PREFIX):
            delta += decode_amount(value) - decode_amount(block_store.parent_value(key))
    if delta != 0:
        raise InvariantViolation(f"USDC not conserved in block: balances changed by {delta} quote quantums")


def check_supply(store: BranchStore) -> None:
    """Full check Σ balances == supply, O(accounts); genesis, export and tests."""
    total = sum(amount for _, amount in iter_balances(store))
    supply = get_supply(store)
    if total != supply:
        raise InvariantViolation(f"Σ balances {total} != supply {supply}")
