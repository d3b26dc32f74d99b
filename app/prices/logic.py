"""Pure oracle math: weighted median, min-price-change rule, mark price, staleness, vote-extension sign bytes."""

from __future__ import annotations

from app.lib.encoding import uvarint
from app.lib.math import ONE_MILLION, Rounding, div_round


def compute_weighted_median(reports: list[tuple[int, int]]) -> int:
    """Lower stake-weighted median of (price, power) reports, power > 0.

    Sort by price; return the first price at which the cumulative power
    reaches half of the total (cum × 2 >= total). With byzantine power below
    half of the reported power the result lies within the honest reports'
    range: below the honest minimum only byzantine power accumulates (< half),
    and at the honest maximum the honest power alone exceeds half. Mirrors
    Slinky/dYdX's vote-weighted median (not their even-count averaging: the
    lower median keeps the result one of the reported prices).
    Raises ValueError on an empty list (callers check the power threshold first).
    """
    if not reports:
        raise ValueError("no reports")
    ordered = sorted(reports)
    total = sum(power for _, power in ordered)
    cumulative = 0
    for price, power in ordered:
        cumulative += power
        if cumulative * 2 >= total:
            return price
    raise AssertionError("unreachable: cumulative power reaches the total")


def has_supermajority(power: int, total_power: int) -> bool:
    """More than 2/3 of total voting power (strict, integer-exact)."""
    return power * 3 > total_power * 2


def compute_min_price_change(current_price: int, min_price_change_ppm: int) -> int:
    """floor(current × ppm ÷ 10^6): dYdX x/prices getMinPriceChangeAmountForMarket (floor biases toward updating)."""
    return div_round(current_price * min_price_change_ppm, ONE_MILLION, Rounding.FLOOR)


def is_price_change_big_enough(current_price: int, new_price: int, min_price_change_ppm: int) -> bool:
    """dYdX rule: |new - current| >= min change; any first price is accepted."""
    if current_price == 0:
        return True
    return abs(new_price - current_price) >= compute_min_price_change(current_price, min_price_change_ppm)


def compute_mark(
    oracle_price: int, basis_ema: int, basis_sample: int | None, smoothing_ppm: int, clamp_ppm: int
) -> tuple[int, int]:
    """(mark_price, new_basis_ema).

    basis_ema' = basis_ema + trunc((sample - basis_ema) × smoothing_ppm ÷ 10^6), with sample = 0 when the
    market has no two-sided book (the EMA then decays toward 0 and mark -> oracle); then
    |basis_ema'| <= floor(oracle × clamp_ppm ÷ 10^6); mark = max(1, oracle + basis_ema').
    A manipulated book can move the mark by at most clamp_ppm of the oracle, and only gradually.
    """
    sample = 0 if basis_sample is None else basis_sample
    ema = basis_ema + div_round((sample - basis_ema) * smoothing_ppm, ONE_MILLION, Rounding.TRUNC)
    bound = div_round(oracle_price * clamp_ppm, ONE_MILLION, Rounding.FLOOR)
    ema = max(-bound, min(bound, ema))
    return max(1, oracle_price + ema), ema


def is_stale(block_time_ns: int, last_update_time_ns: int, oracle_price: int, stale_after_ns: int) -> bool:
    """No price yet, or no agreed median within the window of block time."""
    return oracle_price == 0 or block_time_ns - last_update_time_ns > stale_after_ns


def vote_extension_sign_bytes(extension: bytes, height: int, round_: int, chain_id: str) -> bytes:
    """CometBFT v0.38 VoteExtensionSignBytes: length-delimited CanonicalVoteExtension.

    CanonicalVoteExtension{extension=1 bytes, height=2 sfixed64, round=3 sfixed64, chain_id=4 string}
    (proto/tendermint/types/canonical.proto, types/vote.go), proto3 encoding (zero values omitted),
    prefixed by its uvarint length (libs/protoio MarshalDelimited). Hand-encoded so that app/ needs no
    CometBFT types; tests check it byte-for-byte against the generated CometBFT message.
    """
    out = bytearray()
    if extension:
        out += b"\x0a" + uvarint(len(extension)) + extension
    if height:
        out += b"\x11" + (height & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    if round_:
        out += b"\x19" + (round_ & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    if chain_id:
        cid = chain_id.encode()
        out += b"\x22" + uvarint(len(cid)) + cid
    return uvarint(len(out)) + bytes(out)
