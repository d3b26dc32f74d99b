"""app/consensus: the keeper's key layout and history as golden vectors, the handler's limits and event, and the
/consensus/validators answer (issue #8).

Keys and values are written out by hand from docs/state.md (integers in keys are u64 big-endian; protobuf encoded by
hand here); addresses are recomputed with hashlib.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from perpchain.v1 import tx_pb2

from app import errors
from app.bank import keeper as bank_keeper
from app.consensus import handlers
from app.consensus import keeper
from app.consensus import queries
from app.context import BlockInfo, Ctx
from app.errors import AppError
from app.lib.address import encode_address
from app.store import BranchStore
from tests.helpers import ADDRS, KEYS, VALIDATOR_KEYS


class DictStore:
    def __init__(self, items=None):
        self.items = dict(items or {})

    def get(self, key):
        return self.items.get(key)

    def iterate(self, start, end):
        for k in sorted(self.items):
            if start <= k and (end is None or k < end):
                yield k, self.items[k]


def pk(i: int) -> bytes:
    return hashlib.sha256(b"consensus-mutation-pk-%d" % i).digest()


def addr(pub: bytes) -> bytes:
    return hashlib.sha256(pub).digest()[:20]


def row(i: int, power: int) -> tuple[bytes, bytes, int]:
    return addr(pk(i)), pk(i), power


def varint(n: int) -> bytes:
    out = b""
    while True:
        if n < 0x80:
            return out + bytes([n])
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7


def validator_bytes(i: int, power: int) -> bytes:
    """Validator{address = 1 (20 bytes), pub_key_ed25519 = 2 (32 bytes), power = 3 (varint)}."""
    return b"\x0a\x14" + addr(pk(i)) + b"\x12\x20" + pk(i) + b"\x18" + varint(power)


def set_bytes(*validators: tuple[int, int]) -> bytes:
    """ValidatorSet{validators = 1, repeated}, in address order."""
    ordered = sorted(validators, key=lambda v: addr(pk(v[0])))
    return b"".join(b"\x0a" + bytes([len(validator_bytes(*v))]) + validator_bytes(*v) for v in ordered)


def set_key(height: int) -> bytes:
    return b"\x03\x02" + height.to_bytes(8, "big")


def fresh(items=None) -> BranchStore:
    return BranchStore(DictStore(items))


def with_sets(*sets: tuple[int, list[tuple[int, int]]]) -> BranchStore:
    return fresh({set_key(h): set_bytes(*vs) for h, vs in sets})


def rows_of(validators) -> list[tuple[bytes, bytes, int]]:
    return [(v.address, v.pub_key_ed25519, v.power) for v in validators]


# --- key layout and values ----------------------------------------------------------------------------------------
def test_chain_info_golden():
    """ChainInfo{chain_id = 1, initial_height = 2, genesis_time_ns = 3, vote_extensions_enable_height = 4,
    state_format = 5 (now 4)} at 0x03 0x00."""
    store = fresh()
    keeper.set_chain_info(store, "c", 7, 300, 9)
    assert store.write_set() == [(b"\x03\x00", b"\x0a\x01c" + b"\x10\x07" + b"\x18\xac\x02" + b"\x20\x09" + b"\x28\x04")]
    info = keeper.get_chain_info_or_none(store)
    assert (info.chain_id, info.initial_height, info.genesis_time_ns, info.vote_extensions_enable_height,
            info.state_format) == ("c", 7, 300, 9, 4)


def test_no_chain_info_before_genesis():
    assert keeper.get_chain_info_or_none(fresh()) is None


@pytest.mark.parametrize(
    "time_ns, stored",
    [
        pytest.param(0x0102030405060708, b"\x01\x02\x03\x04\x05\x06\x07\x08", id="a header time as u64 BE"),
        pytest.param(0, bytes(8), id="time 0 is eight zero bytes"),
        pytest.param(-5, bytes(8), id="a negative time is stored as 0"),
        pytest.param(1, b"\x00" * 7 + b"\x01", id="time 1"),
    ],
)
def test_last_block_time_golden(time_ns, stored):
    store = fresh()
    keeper.set_last_block_time(store, time_ns)
    assert store.write_set() == [(b"\x03\x04", stored)]
    assert keeper.get_last_block_time_ns(store) == max(0, time_ns)


def test_last_block_time_falls_back_to_the_genesis_time_then_to_zero():
    assert keeper.get_last_block_time_ns(fresh()) == 0
    store = fresh()
    keeper.set_chain_info(store, "c", 1, 1234, 0)
    assert keeper.get_last_block_time_ns(store) == 1234
    keeper.set_last_block_time(store, 99)
    assert keeper.get_last_block_time_ns(store) == 99


def test_validator_set_golden():
    """validators(h) for h >= height lives at 0x03 0x02 ‖ height (u64 BE), sorted by address, power 0 dropped."""
    store = fresh()
    keeper.set_validators_from(store, 1, [row(2, 10), row(1, 1), row(3, 0)])
    assert store.write_set() == [(b"\x03\x02\x00\x00\x00\x00\x00\x00\x00\x01", set_bytes((1, 1), (2, 10)))]
    store = fresh()
    keeper.set_validators_from(store, 258, [row(1, 5)])
    assert store.write_set() == [(b"\x03\x02" + b"\x00" * 6 + b"\x01\x02", set_bytes((1, 5)))]


def test_a_power_1_validator_is_kept_and_power_0_dropped():
    store = fresh()
    keeper.set_validators_from(store, 1, [row(1, 1), row(2, 0)])
    assert rows_of(keeper.validators_at(store, 1)) == [row(1, 1)]


def test_staged_update_golden():
    """This block's staged power: 0x03 0x03 ‖ pub_key -> power (u64 BE)."""
    store = fresh()
    keeper.stage_validator_update(store, pk(1), 7)
    keeper.stage_validator_update(store, pk(2), 0)
    assert store.write_set() == sorted([(b"\x03\x03" + pk(1), b"\x00" * 7 + b"\x07"), (b"\x03\x03" + pk(2), bytes(8))])
    assert keeper.staged_validator_updates(store) == sorted([(pk(1), 7), (pk(2), 0)])


# --- history ------------------------------------------------------------------------------------------------------
SETS = [(1, [(1, 10)]), (5, [(1, 10), (2, 20)]), (9, [(2, 20)])]


@pytest.mark.parametrize(
    "height, expected",
    [
        pytest.param(0, None, id="before the first set: no validators"),
        pytest.param(1, 1, id="the first set from its own height"),
        pytest.param(4, 1, id="the first set until the next one"),
        pytest.param(5, 5, id="the second set exactly at its height"),
        pytest.param(8, 5, id="the second set until the third"),
        pytest.param(9, 9, id="the last set at its height"),
        pytest.param(1000, 9, id="the last set forever after"),
    ],
)
def test_validators_at(height, expected):
    store = with_sets(*SETS)
    want = [] if expected is None else sorted(row(i, p) for i, p in dict(SETS)[expected])
    assert rows_of(keeper.validators_at(store, height)) == want


def test_validators_at_before_a_later_first_set_is_empty():
    assert keeper.validators_at(with_sets((5, [(1, 10)])), 3) == []


def test_latest_validators():
    assert keeper.latest_validators(fresh()) == (0, [])
    height, vs = keeper.latest_validators(with_sets(*SETS))
    assert (height, rows_of(vs)) == (9, [row(2, 20)])


@pytest.mark.parametrize(
    "height, expected",
    [
        pytest.param(1, [5, 9], id="both later sets are scheduled after height 1"),
        pytest.param(5, [9], id="the set effective at the queried height is not scheduled"),
        pytest.param(9, [], id="nothing after the last set"),
    ],
)
def test_scheduled_validator_sets(height, expected):
    assert [h for h, _ in keeper.scheduled_validator_sets(with_sets(*SETS), height)] == expected


@pytest.mark.parametrize(
    "oldest_needed, kept",
    [
        pytest.param(0, [1, 5, 9], id="before every set: nothing pruned"),
        pytest.param(4, [1, 5, 9], id="the first set still signs height 4"),
        pytest.param(5, [5, 9], id="superseded exactly at the pruning height: deleted"),
        pytest.param(8, [5, 9], id="the second set signs 8"),
        pytest.param(100, [9], id="only the last set is needed"),
    ],
)
def test_prune_validator_sets(oldest_needed, kept):
    store = with_sets(*SETS)
    keeper.prune_validator_sets(store, oldest_needed)
    assert [h for h, _ in keeper._entries(store)] == kept


def test_prune_keeps_everything_when_every_set_is_in_the_future():
    store = with_sets((5, [(1, 10)]), (7, [(2, 10)]))
    keeper.prune_validator_sets(store, 3)
    assert store.write_set() == []


@pytest.mark.parametrize(
    "updates, expected",
    [
        pytest.param([(pk(3), 0)], [row(1, 10), row(2, 20)], id="removing a non-member changes nothing"),
        pytest.param([(pk(1), 0)], [row(2, 20)], id="power 0 removes"),
        pytest.param([(pk(1), 5)], [row(1, 5), row(2, 20)], id="a new power replaces the old"),
        pytest.param([(pk(3), 1), (pk(3), 2)], sorted([row(1, 10), row(2, 20), row(3, 2)]), id="the last update wins"),
    ],
)
def test_apply_updates(updates, expected):
    assert keeper.apply_updates(sorted([row(1, 10), row(2, 20)]), updates) == sorted(expected)


def test_end_block_turns_staged_updates_into_the_set_two_blocks_later_and_prunes():
    store = with_sets((1, [(1, 10)]), (5, [(1, 10), (2, 20)]))
    keeper.stage_validator_update(store, pk(3), 7)
    keeper.stage_validator_update(store, pk(1), 0)
    assert keeper.end_block_validator_updates(store, 10) == sorted([(pk(3), 7), (pk(1), 0)])
    assert keeper.staged_validator_updates(store) == []
    assert [h for h, _ in keeper._entries(store)] == [5, 12]  # set 1 pruned: set 5 signs height 10
    assert rows_of(keeper.validators_at(store, 12)) == sorted([row(2, 20), row(3, 7)])
    assert store.get(b"\x03\x03" + pk(3)) is None


def test_end_block_without_updates_only_prunes():
    store = with_sets((1, [(1, 10)]), (5, [(2, 20)]))
    assert keeper.end_block_validator_updates(store, 6) == []
    assert [h for h, _ in keeper._entries(store)] == [5]


# --- the handler ----------------------------------------------------------------------------------------------------
AUTH = ADDRS[0]
MAX_TOTAL = (2**63 - 1) // 8  # CometBFT's MaxTotalVotingPower = MaxInt64 / 8 = 1152921504606846975


def _msg(pub: bytes, power: int, authority: str = AUTH) -> tx_pb2.MsgSetValidatorPower:
    return tx_pb2.MsgSetValidatorPower(authority=authority, pub_key_ed25519=pub, power=power)


@pytest.mark.parametrize(
    "msg, error, message",
    [
        pytest.param(_msg(pk(1), 1, "perp1bad"), errors.ERR_INVALID_ADDRESS,
                     "authority 'perp1bad' is not a valid perp1... address", id="a bad authority names the field"),
        pytest.param(_msg(pk(1)[:31], 1), errors.ERR_INVALID_PUBKEY, "pub_key_ed25519 must be a 32-byte ed25519 key",
                     id="a 31-byte key"),
        pytest.param(_msg(pk(1) + b"\x00", 1), errors.ERR_INVALID_PUBKEY, "pub_key_ed25519 must be a 32-byte ed25519 key",
                     id="a 33-byte key"),
        pytest.param(_msg(pk(1), 10**12 + 1), errors.ERR_INVALID_VALIDATOR_UPDATE,
                     "power 1000000000001 exceeds the maximum 1000000000000", id="power one above 10^12"),
    ],
)
def test_signers_set_validator_power_refusals(msg, error, message):
    with pytest.raises(AppError) as exc:
        handlers.signers_set_validator_power(msg)
    assert (exc.value.error, exc.value.message) == (error, message)


@pytest.mark.parametrize("power", [pytest.param(10**12, id="power exactly 10^12"), pytest.param(0, id="power 0")])
def test_signers_set_validator_power_accepts(power):
    assert handlers.signers_set_validator_power(_msg(pk(1), power)) == [addr(bytes(KEYS[0].verify_key))]


def _ctx(*sets, height: int = 10) -> Ctx:
    store = with_sets(*sets)
    bank_keeper.init_balances(store, [], AUTH)
    return Ctx(block=BlockInfo(height=height, block_time_ns=0, chain_id="c"), store=store)


def test_a_power_change_is_staged_and_announced():
    ctx = _ctx((1, [(1, 10)]))
    handlers.handle_set_validator_power(ctx, _msg(pk(2), 7))
    assert keeper.staged_validator_updates(ctx.store) == [(pk(2), 7)]
    assert [(e.type, e.attributes) for e in ctx.events] == [("validator_power", (
        ("pub_key", pk(2).hex()), ("address", addr(pk(2)).hex().upper()), ("power", "7"), ("effective_height", "12")))]


def test_a_new_validator_of_power_1_is_accepted():
    ctx = _ctx((1, [(1, 10)]))
    handlers.handle_set_validator_power(ctx, _msg(pk(2), 1))
    assert keeper.staged_validator_updates(ctx.store) == [(pk(2), 1)]


@pytest.mark.parametrize(
    "sets, msgs, error, message",
    [
        pytest.param([(1, [(1, 10)])], [_msg(pk(2), 7, ADDRS[1])], errors.ERR_UNAUTHORIZED,
                     f"only the chain authority {AUTH} may change validators", id="not the authority"),
        pytest.param([(1, [(1, 10)])], [_msg(pk(2), 0)], errors.ERR_INVALID_VALIDATOR_UPDATE,
                     f"{pk(2).hex()} is not a validator; nothing to remove", id="removing a non-validator"),
        pytest.param([(1, [(1, 10)])], [_msg(pk(1), 0)], errors.ERR_INVALID_VALIDATOR_UPDATE,
                     "the change would leave no validators", id="removing the only validator"),
        pytest.param([(1, [(1, 10), (2, 10)])], [_msg(pk(1), 0), _msg(pk(2), 0)], errors.ERR_INVALID_VALIDATOR_UPDATE,
                     "the change would leave no validators", id="removing the last one after a staged removal"),
        pytest.param([(1, [(1, MAX_TOTAL - 5)])], [_msg(pk(2), 6)], errors.ERR_INVALID_VALIDATOR_UPDATE,
                     f"total voting power {MAX_TOTAL + 1} would exceed {MAX_TOTAL}", id="total power one above the max"),
    ],
)
def test_handle_set_validator_power_refusals(sets, msgs, error, message):
    ctx = _ctx(*sets)
    for m in msgs[:-1]:
        handlers.handle_set_validator_power(ctx, m)
    staged = keeper.staged_validator_updates(ctx.store)
    with pytest.raises(AppError) as exc:
        handlers.handle_set_validator_power(ctx, msgs[-1])
    assert (exc.value.error, exc.value.message) == (error, message)
    assert keeper.staged_validator_updates(ctx.store) == staged


def test_a_total_power_of_exactly_the_max_is_accepted():
    ctx = _ctx((1, [(1, MAX_TOTAL - 5)]))
    handlers.handle_set_validator_power(ctx, _msg(pk(2), 5))
    assert keeper.staged_validator_updates(ctx.store) == [(pk(2), 5)]


def test_a_staged_change_of_the_same_key_is_replaced_not_added():
    """Raising one key twice in a block: the earlier staged power is not counted on top of the new one."""
    ctx = _ctx((1, [(1, MAX_TOTAL - 10)]))
    handlers.handle_set_validator_power(ctx, _msg(pk(2), 10))
    handlers.handle_set_validator_power(ctx, _msg(pk(2), 10))  # total stays MAX_TOTAL, not MAX_TOTAL + 10
    assert keeper.staged_validator_updates(ctx.store) == [(pk(2), 10)]


# --- the query ------------------------------------------------------------------------------------------------------
def test_query_validators_answer():
    store = with_sets((1, [(1, 10)]), (5, [(1, 10), (2, 3)]))
    v1 = {"address": addr(pk(1)).hex(), "pub_key": pk(1).hex(), "power": "10"}
    v2 = {"address": addr(pk(2)).hex(), "pub_key": pk(2).hex(), "power": "3"}
    assert queries.query_validators(store, 3) == {
        "height": "3",
        "validators": [v1],
        "total_power": "10",
        "scheduled": [{"effective_height": "5", "validators": sorted([v1, v2], key=lambda v: v["address"])}],
    }


def test_the_consensus_validators_query_through_the_app(replica):
    answer = json.loads(replica.app.query("/consensus/validators", b"").value)
    want = sorted(({"address": addr(bytes(k.verify_key)).hex(), "pub_key": bytes(k.verify_key).hex(), "power": "10"}
                   for k in VALIDATOR_KEYS), key=lambda v: v["address"])
    assert answer == {"height": "1", "validators": want, "total_power": "40", "scheduled": []}
    assert encode_address(addr(pk(1))).startswith("perp1")
