"""The only place auth's raw keys are spelled."""

from app.store import PREFIX_AUTH

ACCOUNT_PREFIX = PREFIX_AUTH + b"\x00"  # ‖ address(20) -> packed AccountState (keeper.encode_account)
PARAMS_KEY = PREFIX_AUTH + b"\x01"  # AdmissionParams


def account_key(address: bytes) -> bytes:
    return ACCOUNT_PREFIX + address
