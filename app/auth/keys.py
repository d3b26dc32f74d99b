from app.store import PREFIX_AUTH


def nonce_window_key(address: bytes) -> bytes:
    return PREFIX_AUTH + address
