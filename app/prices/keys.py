from app.store import PREFIX_PRICES

PARAM_PREFIX = PREFIX_PRICES + b"\x00"
PRICE_PREFIX = PREFIX_PRICES + b"\x01"
PARAMS_KEY = PREFIX_PRICES + b"\x02"


def market_param_key(market_id: int) -> bytes:
    return PARAM_PREFIX + market_id.to_bytes(4, "big")


def market_price_key(market_id: int) -> bytes:
    return PRICE_PREFIX + market_id.to_bytes(4, "big")
