"""auth parameters (constants for now; a governance path is a later issue)."""

NONCE_WINDOW = 100  # how many recent nonces an account keeps (count)
MAX_NONCE_JUMP = 1 << 40  # max distance above the highest used nonce (nonce units)
