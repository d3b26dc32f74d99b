"""prices constants and parameter defaults."""

MAX_PRICE_CHANGE_PPM = 10_000  # min_price_change_ppm must be < this (dYdX MaxPriceChangePpm)
MAX_MARKETS = 1000  # markets per chain (bounds vote extension size)
MAX_VOTE_EXTENSION_BYTES = 16 * MAX_MARKETS  # a PriceVote is at most 2+5+1+10 bytes; generous bound
MIN_EXPONENT = -18
MAX_EXPONENT = 0

DEFAULT_STALE_AFTER_NS = 15_000_000_000  # 15 s of block time without an agreed median
DEFAULT_MARK_BASIS_SMOOTHING_PPM = 100_000  # 10% of each new basis sample per block
DEFAULT_MARK_BASIS_CLAMP_PPM = 5_000  # |mark - oracle| <= 0.5% of oracle

# CometBFT BlockIDFlag values (tendermint/types/validator.proto).
BLOCK_ID_FLAG_ABSENT = 1
BLOCK_ID_FLAG_COMMIT = 2
BLOCK_ID_FLAG_NIL = 3

ORACLE_TX_MARKER = b"\x00\x01"  # never a valid user Tx (field number 0), so the kinds cannot be confused
