"""auth parameters: nonce window constants and the admission (anti-spam) parameters.

The admission parameters live in state (genesis ``auth.params``); every value is an integer with its unit in its
name. Defaults are the localnet's and the test suite's.
"""

from __future__ import annotations

import dataclasses

from app.errors import ERR_INVALID_GENESIS, AppError

NONCE_WINDOW = 100  # how many recent nonces an account keeps (count)
MAX_NONCE_JUMP = 1 << 40  # max distance above the highest used nonce (nonce units)

MAX_CAPACITY_REQUESTS = 1_000_000  # hard bound on any bucket size (requests); keeps the packed counters small
MAX_FEE_QUOTE_QUANTUMS = 1_000_000_000  # 1 000 USDC: a fee above this is a genesis typo


@dataclasses.dataclass(frozen=True)
class AdmissionParams:
    """Per-account request budget (token bucket, refilled per block) and the fee on non-trading messages.

    capacity(account) = min(max_capacity_requests,
                            base_capacity_requests + balance_quote_quantums // collateral_per_request_quote_quantums)
    refill per block  = max(1, capacity × refill_ppm_per_block // 1e6)          (floor)
    cancel bucket     = cancel_multiplier × the request bucket (capacity and refill)
    """

    # Charged to the signer, per non-trading message (transfers, validator changes, ...), to the fee collector.
    fee_per_message_quote_quantums: int = 10_000  # 0.01 USDC
    base_capacity_requests: int = 50  # every account, even an empty one (requests)
    collateral_per_request_quote_quantums: int = 100_000_000  # each 100 USDC of balance adds one request of capacity
    max_capacity_requests: int = 1_000  # requests
    refill_ppm_per_block: int = 100_000  # ppm of capacity per block: an empty bucket is full again after 10 blocks
    cancel_multiplier: int = 4  # the cancel bucket is this many times the request bucket (capacity and refill)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise AppError(ERR_INVALID_GENESIS, f"auth.params.{f.name} must be a non-negative integer")
        if self.fee_per_message_quote_quantums > MAX_FEE_QUOTE_QUANTUMS:
            raise AppError(ERR_INVALID_GENESIS, f"auth.params.fee_per_message_quote_quantums above {MAX_FEE_QUOTE_QUANTUMS}")
        if not 1 <= self.base_capacity_requests <= self.max_capacity_requests <= MAX_CAPACITY_REQUESTS:
            raise AppError(ERR_INVALID_GENESIS, "auth.params: need 1 <= base_capacity_requests <= "
                                                f"max_capacity_requests <= {MAX_CAPACITY_REQUESTS}")
        if self.collateral_per_request_quote_quantums == 0:
            raise AppError(ERR_INVALID_GENESIS, "auth.params.collateral_per_request_quote_quantums must be positive")
        if not 0 < self.refill_ppm_per_block <= 1_000_000:
            raise AppError(ERR_INVALID_GENESIS, "auth.params.refill_ppm_per_block must be in 1..1000000")
        if not 1 <= self.cancel_multiplier <= 100:
            raise AppError(ERR_INVALID_GENESIS, "auth.params.cancel_multiplier must be in 1..100")
