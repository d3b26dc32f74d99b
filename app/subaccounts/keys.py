"""The only place subaccounts' raw keys are spelled."""

from app.store import PREFIX_SUBACCOUNTS

SUBACCOUNT_PREFIX = PREFIX_SUBACCOUNTS + b"\x00"  # ‖ owner(20) ‖ number(u8) -> Subaccount
POOL_FUNDING_PREFIX = PREFIX_SUBACCOUNTS + b"\x01"  # ‖ pool address(20) -> PoolFunding


def subaccount_key(owner: bytes, number: int) -> bytes:
    return SUBACCOUNT_PREFIX + owner + bytes((number,))


def owner_prefix(owner: bytes) -> bytes:
    return SUBACCOUNT_PREFIX + owner


def pool_funding_key(pool: bytes) -> bytes:
    return POOL_FUNDING_PREFIX + pool
