"""auth: per-account replay protection (nonce windows).

State (prefix 0x02): ``0x02 || address(20)`` -> the up to NONCE_WINDOW highest
nonces the account has used, ascending, each as 8 bytes big-endian.

Rule (Hyperliquid-style, burst-safe for bots): a tx's nonce is accepted iff it
is not in the window, and either the window is not full or the nonce is
greater than the smallest nonce in it, and it is at most MAX_NONCE_JUMP above
the highest nonce used. Txs may therefore arrive out of order within the
window, and a replay is always rejected: a nonce leaves the window only by
falling below its minimum, after which it is too old.
"""
