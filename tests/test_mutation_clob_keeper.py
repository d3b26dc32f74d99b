"""clob keeper (app/clob/keeper.py): behaviours pinned after its mutation run (docs/mutation.md, issue #9): the
messages and bounds of fee-tier validation, the description of an order key with a large pair id, and the volume
ledger of an owner filled several times in one action. Pure functions; numbers by hand."""

from __future__ import annotations

import pytest
from perpchain.v1 import exchange_pb2

from app.clob import keeper, keys
from app.errors import ERR_INVALID_FEE_TIERS, AppError
from app.lib.address import encode_address

OWNER = bytes(range(20))
TAKER, MAKER = b"\x01" * 20, b"\x02" * 20


def tier(name: str = "1", maker: int = 100, taker: int = 500, absolute: int = 0) -> exchange_pb2.FeeTier:
    return exchange_pb2.FeeTier(name=name, maker_fee_ppm=maker, taker_fee_ppm=taker,
                                absolute_volume_requirement_quote_quantums=absolute)


def refused(tiers) -> str:
    with pytest.raises(AppError) as e:
        keeper.validate_fee_tiers(tiers)
    assert e.value.code == ERR_INVALID_FEE_TIERS.code
    return e.value.log


def test_fee_tier_validation_messages_and_the_one_percent_bounds():
    assert refused([tier(absolute=1)]).endswith("the first fee tier must have no requirements")
    assert refused([tier("x", maker=10_001)]).endswith(
        "tier 'x': maker fee must be in -10000..10000 ppm and taker fee in 0..10000 ppm")
    assert refused([tier("y", taker=10_001)]).endswith(
        "tier 'y': maker fee must be in -10000..10000 ppm and taker fee in 0..10000 ppm")
    keeper.validate_fee_tiers([tier(maker=10_000, taker=10_000)])  # exactly 1 % each: accepted
    keeper.validate_fee_tiers([tier(maker=-10_000, taker=10_000)])  # a 1 % rebate covered by a 1 % taker fee


def test_describe_key_reads_a_pair_id_above_2_24():
    """Pair id 2^24 + 5 = 16 777 221 uses the key's first pair byte (bytes 21..24, big-endian)."""
    okey = keys.order_key(OWNER, 3, 2**24 + 5, 70_000, keys.LONG_TERM)
    assert keeper.describe_key(okey) == f"{encode_address(OWNER)}/3 pair 16777221 client id 70000 long-term (flags 64)"


def test_a_maker_filled_twice_in_one_action_counts_both_fills():
    """Two fills of 5 and 7 quote quantums between the same taker and maker: the maker's total and maker notional are
    both 12, the taker's total 12 (maker notional 0), the exchange's 12."""
    ledger = keeper.FillLedger()
    ledger.add_fill(TAKER, MAKER, 5)
    ledger.add_fill(TAKER, MAKER, 7)
    assert ledger.by_owner == {TAKER: [12, 0], MAKER: [12, 12]}
    assert ledger.total == 12
