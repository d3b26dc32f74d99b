from app.store import PREFIX_BANK

BALANCE_PREFIX = PREFIX_BANK + b"\x00"
SUPPLY_KEY = PREFIX_BANK + b"\x01"
PARAMS_KEY = PREFIX_BANK + b"\x02"


def balance_key(address: bytes) -> bytes:
    return BALANCE_PREFIX + address
MODULE_ACCOUNT_PREFIX = PREFIX_BANK + b"\x03"  # ‖ address(20) -> b"": module accounts users may not send to


def module_account_key(address: bytes) -> bytes:
    return MODULE_ACCOUNT_PREFIX + address
