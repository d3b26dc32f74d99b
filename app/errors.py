"""Typed, expected errors with stable ABCI codes.

Only :class:`AppError` is ever caught inside ``app/``: it becomes a non-zero
result code and the state branch it happened in is discarded. Any other
exception is a bug or an invariant violation and halts the node (a validator
that diverges must stop, not limp on).

Codes are append-only and globally unique; the codespace names the module.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ErrorCode:
    codespace: str
    code: int
    name: str


class AppError(Exception):
    """An expected failure of one tx / query; carries a stable code."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(f"{error.name}: {message}")
        self.error = error
        self.message = message

    @property
    def code(self) -> int:
        return self.error.code

    @property
    def codespace(self) -> str:
        return self.error.codespace

    @property
    def log(self) -> str:
        return f"{self.error.name}: {self.message}"


class IncompatibleState(Exception):
    """The data directory holds state in a layout this version does not read. Refuse to start; never guess."""


class InvariantViolation(Exception):
    """Consensus-critical invariant broken. Never caught in app/: the node halts."""


_REGISTRY: dict[int, ErrorCode] = {}


def register(codespace: str, code: int, name: str) -> ErrorCode:
    if code in _REGISTRY:
        raise RuntimeError(f"error code {code} registered twice")
    err = ErrorCode(codespace, code, name)
    _REGISTRY[code] = err
    return err


def all_codes() -> list[ErrorCode]:
    return [_REGISTRY[c] for c in sorted(_REGISTRY)]


# --- tx envelope / authentication (codespace "tx") ------------------------
ERR_TX_TOO_LARGE = register("tx", 2, "tx_too_large")
ERR_TX_DECODE = register("tx", 3, "tx_decode")
ERR_INVALID_SIGNATURE = register("tx", 4, "invalid_signature")
ERR_WRONG_CHAIN_ID = register("tx", 5, "wrong_chain_id")
ERR_NONCE_USED = register("tx", 6, "nonce_already_used")
ERR_NONCE_TOO_OLD = register("tx", 7, "nonce_too_old")
ERR_NONCE_TOO_FAR = register("tx", 8, "nonce_too_far_ahead")
ERR_UNKNOWN_MESSAGE = register("tx", 9, "unknown_message")
ERR_NO_MESSAGES = register("tx", 10, "no_messages")
ERR_TOO_MANY_MESSAGES = register("tx", 11, "too_many_messages")
ERR_MEMO_TOO_LONG = register("tx", 12, "memo_too_long")
ERR_UNAUTHORIZED = register("tx", 13, "unauthorized")
ERR_INVALID_ADDRESS = register("tx", 14, "invalid_address")
ERR_INVALID_PUBKEY = register("tx", 15, "invalid_pub_key")
ERR_APP_ONLY_TX = register("tx", 16, "app_only_tx")  # an oracle tx anywhere but index 0
ERR_RATE_LIMITED = register("tx", 17, "rate_limited")  # the signer's request (or cancel) budget is used up
ERR_INSUFFICIENT_FEE = register("tx", 18, "insufficient_fee")  # balance below the tx's non-trading fee
ERR_MEMPOOL_FULL = register("tx", 19, "mempool_full")  # this node's pending-tx view is at its bound
ERR_NO_COLLATERAL = register("tx", 20, "no_collateral")  # order actions need a bank balance or a funded subaccount

# --- prices / oracle (codespace "prices") -------------------------------------
ERR_INVALID_ORACLE_TX = register("prices", 301, "invalid_oracle_tx")
ERR_UNKNOWN_MARKET = register("prices", 302, "unknown_market")

# --- consensus (codespace "consensus") -----------------------------------------
ERR_INVALID_VALIDATOR_UPDATE = register("consensus", 401, "invalid_validator_update")

# --- bank (codespace "bank") ------------------------------------------------
ERR_INSUFFICIENT_FUNDS = register("bank", 101, "insufficient_funds")
ERR_INVALID_AMOUNT = register("bank", 102, "invalid_amount")
ERR_BALANCE_OVERFLOW = register("bank", 103, "balance_overflow")
ERR_MODULE_ACCOUNT = register("bank", 104, "module_account")  # users cannot send to a module account

# --- queries / genesis (codespace "app") -------------------------------------
ERR_UNKNOWN_QUERY = register("app", 201, "unknown_query")
ERR_INVALID_GENESIS = register("app", 202, "invalid_genesis")
ERR_NOT_FOUND = register("app", 203, "not_found")
ERR_BAD_QUERY_PATH = register("app", 204, "bad_query_path")
ERR_HEIGHT_UNAVAILABLE = register("app", 205, "height_unavailable")  # a query for a height whose state is not kept
ERR_QUERY_FAILED = register("app", 206, "query_failed")  # a query raised (a bug): answered, never fatal (node/abci)

# --- perpetuals (codespace "perpetuals") -----------------------------------
# Liquidity tier validation, mirrors dYdX x/perpetuals/types/liquidity_tier.go Validate (plus the range
# checks Go gets for free from uint32/uint64 fields). Codes 501..519 are reserved for this codespace.
ERR_INITIAL_MARGIN_PPM_OUT_OF_RANGE = register("perpetuals", 501, "initial_margin_ppm_out_of_range")
ERR_MAINTENANCE_FRACTION_PPM_OUT_OF_RANGE = register("perpetuals", 502, "maintenance_fraction_ppm_out_of_range")
ERR_IMPACT_NOTIONAL_OUT_OF_RANGE = register("perpetuals", 503, "impact_notional_out_of_range")
ERR_OPEN_INTEREST_CAP_OUT_OF_RANGE = register("perpetuals", 504, "open_interest_cap_out_of_range")
ERR_OPEN_INTEREST_LOWER_CAP_ABOVE_UPPER_CAP = register("perpetuals", 505, "open_interest_lower_cap_above_upper_cap")

# --- perpetuals (codespace "perpetuals", 510+; 501-509 are the liquidity-tier checks above) ---------------------
ERR_UNKNOWN_PERPETUAL = register("perpetuals", 510, "unknown_perpetual")
ERR_PERPETUAL_EXISTS = register("perpetuals", 511, "perpetual_exists")
ERR_UNKNOWN_LIQUIDITY_TIER = register("perpetuals", 512, "unknown_liquidity_tier")
ERR_INVALID_PERPETUAL = register("perpetuals", 513, "invalid_perpetual")

# --- subaccounts (codespace "subaccounts") ----------------------------------------------------------------------
ERR_INVALID_SUBACCOUNT = register("subaccounts", 601, "invalid_subaccount")  # number outside 0..127
ERR_NEWLY_UNDERCOLLATERALIZED = register("subaccounts", 602, "newly_undercollateralized")
ERR_STILL_UNDERCOLLATERALIZED = register("subaccounts", 603, "still_undercollateralized")
ERR_ISOLATED_MARKET_CONSTRAINT = register("subaccounts", 604, "isolated_market_constraint")
ERR_PRICE_UNAVAILABLE = register("subaccounts", 605, "price_unavailable")  # a position's market has no oracle price
ERR_POSITION_OVERFLOW = register("subaccounts", 606, "position_overflow")
ERR_SENDER_IS_RECIPIENT = register("subaccounts", 607, "sender_is_recipient")  # dYdX ErrSenderSameAsRecipient

# --- clob (codespace "clob") --------------------------------------------------------------------------------------
ERR_UNKNOWN_CLOB_PAIR = register("clob", 701, "unknown_clob_pair")
ERR_INVALID_QUANTUMS = register("clob", 702, "invalid_quantums")  # zero or not a multiple of the step
ERR_INVALID_SUBTICKS = register("clob", 703, "invalid_subticks")  # zero or not a multiple of the tick
ERR_INVALID_GOOD_TIL = register("clob", 704, "invalid_good_til")  # expired, too far, or both/neither set
ERR_ORDER_EXISTS = register("clob", 705, "order_exists")
ERR_ORDER_NOT_FOUND = register("clob", 706, "order_not_found")
ERR_POST_ONLY_WOULD_CROSS = register("clob", 707, "post_only_would_cross")
ERR_REDUCE_ONLY = register("clob", 708, "reduce_only_would_increase")
ERR_CLOB_PAIR_STATUS = register("clob", 709, "clob_pair_status")  # the pair's status refuses this action
ERR_TOO_MANY_ACTIONS = register("clob", 710, "too_many_actions")
ERR_INVALID_ORDER = register("clob", 711, "invalid_order")  # side, time in force, flags, market-order fields
ERR_FILL_OR_KILL_NOT_FILLED = register("clob", 712, "fill_or_kill_not_filled")
ERR_MIXED_MESSAGES = register("clob", 714, "mixed_messages")  # order actions and other messages in one tx
ERR_TOO_MANY_OPEN_ORDERS = register("clob", 715, "too_many_open_orders")
ERR_STALE_ORACLE = register("clob", 716, "stale_oracle")  # only reduce-only orders while the oracle is stale
ERR_INVALID_FEE_TIERS = register("clob", 717, "invalid_fee_tiers")
ERR_INVALID_CLOB_PAIR = register("clob", 718, "invalid_clob_pair")
# the subaccount's total net collateral allows no more open orders of the kind (dYdX
# ErrOrderWouldExceedMaxOpenOrdersEquityTierLimit)
ERR_EQUITY_TIER_LIMIT = register("clob", 719, "equity_tier_limit")
ERR_INVALID_EQUITY_TIERS = register("clob", 720, "invalid_equity_tiers")
# MsgSetClobLimits would leave a window, slippage bound or block cap the chain cannot run with
ERR_INVALID_CLOB_PARAMS = register("clob", 721, "invalid_clob_params")
