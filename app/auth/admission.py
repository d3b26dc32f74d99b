"""Admission control math: the per-account request budget (pure; no state).

Every account has two token buckets, counted in whole requests: one for requests (every non-cancel message or
order action) and a larger one for cancels, so a market maker that is out of placement budget can still pull its
quotes. A bucket's capacity grows with the account's collateral (bank balance), its refill is a fixed share of the
capacity per block, and it is refilled lazily: the stored level is brought up to date for the block height
whenever the account sends a tx. An account that never sent a tx has full buckets.

Inspired by Hyperliquid's per-address request budget and dYdX's per-block order rate limits; the block height
is the only clock.
"""

from __future__ import annotations

from typing import NamedTuple

from app.auth.params import AdmissionParams
from app.lib.math import ONE_MILLION, Rounding, div_round


class Cost(NamedTuple):
    """What a tx uses: requests, cancels (whole requests), and non-trading messages (each pays the fee).
    (NamedTuples here and for Budget: built for every CheckTx and tx; a frozen dataclass's __init__ costs ~2x.)"""

    requests: int = 0
    cancels: int = 0
    fee_messages: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.requests + other.requests, self.cancels + other.cancels,
                    self.fee_messages + other.fee_messages)


class Budget(NamedTuple):
    """Requests and cancels an account may use in a block (already refilled for that block)."""

    requests: int
    cancels: int
    request_capacity: int
    cancel_capacity: int
    request_refill_per_block: int
    cancel_refill_per_block: int


def compute_capacity_requests(params: AdmissionParams, balance_quote_quantums: int) -> int:
    """Request-bucket size: base + one request per collateral step of balance, capped (floor)."""
    bonus = div_round(balance_quote_quantums, params.collateral_per_request_quote_quantums, Rounding.FLOOR)
    return min(params.max_capacity_requests, params.base_capacity_requests + bonus)


def compute_refill_per_block(params: AdmissionParams, capacity_requests: int) -> int:
    """Requests added per block: refill_ppm_per_block of the capacity (floor), at least 1."""
    return max(1, div_round(capacity_requests * params.refill_ppm_per_block, ONE_MILLION, Rounding.FLOOR))


def compute_level(stored: int, stored_height: int, height: int, capacity: int, refill_per_block: int) -> int:
    """A bucket's level at ``height``: the stored level (after its last use at ``stored_height``) plus the refill
    of the blocks since, capped at the capacity. ``stored_height == 0`` means never used: full."""
    if stored_height == 0:
        return capacity
    return min(capacity, stored + max(0, height - stored_height) * refill_per_block)


def compute_budget(params: AdmissionParams, balance_quote_quantums: int, stored_requests: int,
                   stored_cancels: int, stored_height: int, height: int) -> Budget:
    capacity = compute_capacity_requests(params, balance_quote_quantums)
    refill = compute_refill_per_block(params, capacity)
    cancel_capacity = capacity * params.cancel_multiplier
    cancel_refill = refill * params.cancel_multiplier
    return Budget(
        requests=compute_level(stored_requests, stored_height, height, capacity, refill),
        cancels=compute_level(stored_cancels, stored_height, height, cancel_capacity, cancel_refill),
        request_capacity=capacity,
        cancel_capacity=cancel_capacity,
        request_refill_per_block=refill,
        cancel_refill_per_block=cancel_refill,
    )
