"""Edges of the struct-of-arrays positions view (app/subaccounts/positions_view.py), for mutation testing.

Every expected value below is worked out by hand from the module's documented meaning, or compared with an exact
Python-integer reference written here:
- ``screening_table``: a lot is 10^shift base quantums, shift the smallest in 0..18 whose lot value
  ⌊price × 10^(k+shift)⌋ is >= 10^6 quote quantums, k = price_exponent + atomic_resolution + 6; lot value floor/ceil;
  maintenance ppm ceil ⌈IM × MF / 10^6⌉;
- ``screen``: per position, long ⌊size/lot⌋ × lo, short −⌈|size|/lot⌉ × hi; requirement bound
  (⌊⌈|size|/lot⌉ × hi / 10^6⌋ + 1) × mm + 1; a row is flagged when its requirement bound is > 0 and its TNC lower
  bound is strictly below it, or when one of its positions has ⌈|size|/lot⌉ >= 2^31 lots.
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from app.lib.math import ONE_MILLION
from app.perpetuals.logic import margin_requirements, net_collateral
from app.store import prefix_end
from app.subaccounts import keys
from app.subaccounts.positions_view import PositionsView, screen, screening_table
from app.subaccounts.state import Position, SubaccountId, SubaccountState, encode_subaccount


def sid_of(i: int, number: int = 0) -> SubaccountId:
    return SubaccountId(i.to_bytes(20, "big"), number)


def sub_of(quote: int, **sizes: int) -> SubaccountState:
    """sub_of(q, p0=5, p3=-2): quote q, a position of 5 on perpetual 0 and of -2 on perpetual 3."""
    return SubaccountState(quote, {int(k[1:]): Position(int(k[1:]), v, 0, 0) for k, v in sizes.items()})


def key_of(sid: SubaccountId) -> bytes:
    return keys.subaccount_key(sid.owner, sid.number)


# --- exact references (Python integers / fractions only) --------------------------------------------------------------

def ref_table_entry(atomic_resolution: int, price: int, exponent: int, im_ppm: int, mf_ppm: int):
    k = exponent + atomic_resolution + 6
    shift = 0
    while shift < 18 and Fraction(price) * Fraction(10) ** (k + shift) < ONE_MILLION:
        shift += 1
    value = Fraction(price) * Fraction(10) ** (k + shift)
    lo = value.numerator // value.denominator
    hi = -((-value.numerator) // value.denominator)
    mm = -((-im_ppm * mf_ppm) // ONE_MILLION)
    return shift, lo, hi, mm


def ref_screen(subs: list[tuple[SubaccountId, SubaccountState]], table: dict) -> list[SubaccountId]:
    out = []
    for sid, sub in subs:
        tnc, mmr, big = sub.quote_balance_quote_quantums, 0, False
        for pid, p in sub.positions.items():
            shift, lo, hi, mm = table.get(pid, (0, 0, 0, 0))
            lot, size = 10**shift, p.size_base_quantums
            down, up = abs(size) // lot, -(-abs(size) // lot)
            if up >= 1 << 31:
                big, down, up = True, 0, 0
            tnc += down * lo if size > 0 else -up * hi
            mmr += (up * hi // ONE_MILLION + 1) * mm + 1
        if big or (mmr > 0 and tnc < mmr):
            out.append(sid)
    return out


# --- screening_table --------------------------------------------------------------------------------------------------

def test_screening_table_hand_computed_edges():
    params = {
        # k = -4 + 0 + 6 = 2 (k >= 0, e > 0): 9000 × 10^2 = 900_000 < 10^6, 9000 × 10^3 = 9_000_000 -> shift 1, e 3
        0: (0, 9_000, -4, 50_000, 600_000),
        # k = 0 - 9 + 6 = -3: ⌊10^9 / 10^3⌋ = 10^6 exactly, not below the limit -> shift 0, e -3
        1: (-9, 1_000_000_000, 0, 20_000, 500_000),
        # k = -6 + 0 + 6 = 0: 1000 × 10^0, 10^1, 10^2 < 10^6, 1000 × 10^3 = 10^6 -> shift 3 (odd), e 3 (k+shift >= 0)
        2: (0, 1_000, -6, 100_000, 1_000_000),
        # k = -5 - 10 + 6 = -9 (BTC-like), price not a multiple of 10^3: ⌊p/10^4⌋ = 640_000 < 10^6,
        # ⌊p/10^3⌋ = 6_400_000 -> shift 6, e -3, lo 6_400_000, hi ⌈6_400_000.123⌉ = 6_400_001
        3: (-10, 6_400_000_123, -5, 33_333, 500_001),
        # k = -30 - 10 + 6 = -34: the value never reaches 10^6; shift stops at its limit 18, e -16: lo 0, hi 1
        4: (-10, 1, -30, 0, 0),
        # k = -7 - 9 + 6 = -10: ⌊(10^16 - 1) / 10^10⌋ = 999_999 < 10^6 (a float product would give 1e6)
        # -> shift 1, e -9: lo ⌊9_999_999.999999999⌋, hi its ceil
        5: (-9, 10**16 - 1, -7, 50_000, 600_000),
        # k = 0 - 6 + 6 = 0 and price 10^6: shift 0, e 0, lo = hi = 10^6
        6: (-6, 1_000_000, 0, 1, 1),
    }
    table = screening_table(params)
    assert table == {
        0: (1, 9_000_000, 9_000_000, 30_000),  # ⌈50_000 × 600_000 / 10^6⌉ = 30_000
        1: (0, 1_000_000, 1_000_000, 10_000),
        2: (3, 1_000_000, 1_000_000, 100_000),
        3: (6, 6_400_000, 6_400_001, 16_667),  # 33_333 × 500_001 = 16_666_533_333 -> ⌈16_666.53⌉
        4: (18, 0, 1, 0),
        5: (1, 9_999_999, 10_000_000, 30_000),
        6: (0, 1_000_000, 1_000_000, 1),  # ⌈1 / 10^6⌉ = 1
    }
    for entry in table.values():  # integers only: no float may reach the int64 screen
        assert all(type(x) is int for x in entry)
    for pid, p in params.items():
        assert table[pid] == ref_table_entry(*p)


def test_screening_table_equals_an_exact_reference():
    rng = random.Random(11)
    params = {}
    for pid in range(300):
        params[pid] = (rng.randrange(-12, 3), rng.choice([1, 7, 999, 10**6, rng.randrange(1, 10**12)]),
                       rng.randrange(-16, 4), rng.randrange(0, 1_000_001), rng.randrange(0, 1_000_001))
    table = screening_table(params)
    for pid, p in params.items():
        assert table[pid] == ref_table_entry(*p), p
        shift, lo, hi, _ = table[pid]
        assert 0 <= shift <= 18 and lo <= hi <= lo + 1
        if shift:  # the smallest shift: one lot fewer is below 10^6, and the lot value stays below 2^31
            assert lo >= ONE_MILLION or shift == 18
            assert hi < 1 << 31


# --- the view's arrays ------------------------------------------------------------------------------------------------

def test_fresh_view_layout_and_dtypes():
    view = PositionsView()
    for arr in (view.quote, view.entry_row, view.entry_perp, view.entry_size):
        assert arr.dtype == np.int64 and len(arr) == 1024
    assert view._n_entries == 0
    sid = sid_of(1)
    view.set(sid, sub_of(-5, p2=2**53 + 1, p0=-(2**62 + 1)))
    # entries are allocated from index 0 upwards, one per position, in perpetual order
    assert view._n_entries == 2 and view.row_entries == [[0, 1]]
    assert [int(x) for x in view.entry_perp[:3]] == [0, 2, 0]
    assert [int(x) for x in view.entry_row[:2]] == [0, 0]
    assert int(view.entry_size[0]) == -(2**62 + 1) and int(view.entry_size[1]) == 2**53 + 1  # exact: not float64
    assert int(view.entry_size[2]) == 0
    assert int(view.quote[0]) == -5
    assert view.entry_size.dtype == np.int64


def test_set_again_updates_the_same_row_and_reuses_slots():
    view = PositionsView()
    a, b = sid_of(1), sid_of(2)
    view.set(a, sub_of(10, p0=5, p1=-6))
    view.set(b, sub_of(20, p3=7))
    view.set(a, sub_of(11, p4=8))
    assert view.rows == {a: 0, b: 1} and view.ids == [a, b]
    assert int(view.quote[0]) == 11 and int(view.quote[1]) == 20
    # a's two slots (0, 1) were freed and one of them reused: no new slot was taken
    assert view._n_entries == 3
    (e,) = view.row_entries[0]
    assert e in (0, 1) and int(view.entry_perp[e]) == 4 and int(view.entry_size[e]) == 8
    freed = ({0, 1} - {e}).pop()
    assert int(view.entry_size[freed]) == 0  # a free slot
    assert view._free == [freed]
    # closing every position: sizes back to 0, the row stays (quote only)
    view.set(a, sub_of(0))
    assert view.row_entries[0] == [] and int(view.entry_size[0]) == 0 and int(view.entry_size[1]) == 0
    assert sorted(view._free) == [0, 1]


def test_growth_past_the_initial_capacity_keeps_int64():
    view = PositionsView()
    n = 1100  # > 1024 rows and > 1024 entries
    for i in range(n):
        view.set(sid_of(i), sub_of(2**53 + 1 + i, p0=2**53 + 1 + i))
    assert len(view.quote) == 2048 and len(view.entry_size) == 2048
    for arr in (view.quote, view.entry_row, view.entry_perp, view.entry_size):
        assert arr.dtype == np.int64
    assert view._n_entries == n
    assert int(view.quote[n - 1]) == 2**53 + n and int(view.entry_size[n - 1]) == 2**53 + n
    assert int(view.entry_row[n - 1]) == n - 1
    assert all(int(view.quote[i]) == 2**53 + 1 + i for i in (0, 1023, 1024, 1025))
    table = {0: (18, 1, 1, 0)}  # lots of 10^18: 0 lots of value, 1 lot of requirement, bound (0 + 1) × 0 + 1 = 1
    assert screen(view, table) == []
    view.set(sid_of(1050), sub_of(0, p0=5))  # TNC bound 0 < 1
    assert screen(view, table) == [sid_of(1050)]


# --- refresh / rebuild ------------------------------------------------------------------------------------------------

def test_refresh_counts_changed_subaccounts_and_ignores_other_keys():
    view = PositionsView()
    a, b, c = sid_of(1), sid_of(2, 5), sid_of(3, 127)
    view.set(a, sub_of(7, p0=5, p2=-3))
    n = len(keys.SUBACCOUNT_PREFIX)
    other_same_length = keys.POOL_FUNDING_PREFIX + bytes(20) + b"\x01"  # n + 21 bytes, not a subaccount key
    assert len(other_same_length) == n + 21
    too_short = keys.SUBACCOUNT_PREFIX + bytes(20)  # the subaccount prefix, but no number byte
    too_long = keys.subaccount_key(bytes(20), 1) + b"\x00"
    write_set = sorted([
        (key_of(a), None),  # deleted: becomes an empty row
        (key_of(b), encode_subaccount(sub_of(-9, p1=4))),
        (key_of(c), encode_subaccount(sub_of(3))),
        (other_same_length, None),
        (too_short, b"junk"),
        (too_long, None),
        (b"\x07" + bytes(n + 20), None),
    ])
    assert view.refresh(write_set) == 3
    assert view.rows == {a: 0, b: 1, c: 2}
    assert int(view.quote[0]) == 0 and view.row_entries[0] == []
    assert int(view.quote[1]) == -9 and [int(view.entry_size[e]) for e in view.row_entries[1]] == [4]
    assert view.row_entries[1][0] in (0, 1) and view._n_entries == 2  # b reused one of a's freed slots
    assert int(view.entry_size[1 - view.row_entries[1][0]]) == 0  # the other is free
    assert int(view.quote[2]) == 3 and view.row_entries[2] == []
    assert view.refresh([]) == 0
    assert view.refresh([(key_of(c), None)]) == 1
    assert view.refresh([(other_same_length, None), (too_long, None)]) == 0
    assert len(view.ids) == 3


class _Store:
    def __init__(self, items: dict[bytes, bytes]) -> None:
        self.items = items

    def get(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def iterate(self, start: bytes, end: bytes | None):
        for k in sorted(self.items):
            if start <= k and (end is None or k < end):
                yield k, self.items[k]


def test_rebuild_reads_only_subaccounts():
    a, b = sid_of(9, 3), sid_of(4)
    store = _Store({
        key_of(a): encode_subaccount(sub_of(-1, p0=2)),
        key_of(b): encode_subaccount(sub_of(5, p1=-3, p2=6)),
        keys.pool_funding_key(bytes(20)): b"not a subaccount",
        prefix_end(keys.SUBACCOUNT_PREFIX) + b"x": b"not a subaccount",
    })
    view = PositionsView.rebuild(store)
    assert view.ids == [b, a]  # key order
    assert int(view.quote[0]) == 5 and int(view.quote[1]) == -1
    assert [(int(view.entry_perp[e]), int(view.entry_size[e])) for e in view.row_entries[0]] == [(1, -3), (2, 6)]
    assert [(int(view.entry_perp[e]), int(view.entry_size[e])) for e in view.row_entries[1]] == [(0, 2)]


# --- screen -----------------------------------------------------------------------------------------------------------

# hand tables: (shift, lot value floor, lot value ceil, maintenance ppm ceil)
T = {
    0: (2, 3_000_000, 3_000_001, 30_000),  # lots of 100
    1: (0, 2_000_000, 2_000_000, 1_000),  # lots of 1
    2: (0, 999_999, 999_999, 500_000),  # a lot's notional below 10^6
    3: (0, 5_000_000, 5_000_000, 0),  # no maintenance ppm: the bound is still 1
}

# (positions, q*): the smallest quote not flagged; q* - 1 is flagged (TNC lower bound == requirement bound - 1)
THRESHOLDS = [
    # short 300 = 3 lots: -3 × 3_000_001; requirement (⌊9_000_003 / 10^6⌋ + 1) × 30_000 + 1 = 300_001
    (dict(p0=-300), 9_000_003 + 300_001),
    (dict(p0=-299), 9_000_003 + 300_001),  # ⌈2.99⌉ = 3 lots
    (dict(p0=-201), 9_000_003 + 300_001),  # ⌈2.01⌉ = 3 lots
    (dict(p0=-200), 6_000_002 + 210_001),  # 2 lots: (6 + 1) × 30_000 + 1
    (dict(p0=299), 300_001 - 6_000_000),  # long: ⌊2.99⌋ = 2 lots of value, ⌈2.99⌉ = 3 lots of requirement
    (dict(p0=300), 300_001 - 9_000_000),
    (dict(p1=1), 3_001 - 2_000_000),  # long 1: (2 + 1) × 1_000 + 1
    (dict(p1=-1), 2_000_000 + 3_001),
    (dict(p1=-5), 10_000_000 + 11_001),  # (10 + 1) × 1_000 + 1
    (dict(p2=1), 500_001 - 999_999),  # (0 + 1) × 500_000 + 1
    (dict(p2=-1), 999_999 + 500_001),
    (dict(p3=1), 1 - 5_000_000),  # requirement bound 1 (> 0): flagged while TNC < 1
    (dict(p0=-250, p1=3), 3_000_003 + 300_001 + 7_001),  # -9_000_003 + 6_000_000; 300_001 + (6 + 1) × 1_000 + 1
]


def test_screen_exact_thresholds():
    view = PositionsView()
    subs, expected = [], []
    for i, (sizes, q) in enumerate(THRESHOLDS):
        for j, quote in enumerate((q - 1, q)):
            sid = sid_of(2 * i + j)
            subs.append((sid, sub_of(quote, **sizes)))
            view.set(sid, subs[-1][1])
            if j == 0:
                expected.append(sid)
    # rows without a position are never flagged, whatever their quote
    subs.append((sid_of(1000), sub_of(-10**15)))
    view.set(*subs[-1])
    assert ref_screen(subs, T) == expected
    assert screen(view, T) == expected


def test_screen_int64_precision_near_2_pow_62():
    """Requirement bound ~1.3e18: the comparison must stay in int64 (float64 would merge mmr - 1 and mmr)."""
    table = {0: (0, 2_000_000_000, 2_000_000_000, 333_333)}  # lot value < 2^31
    size = 2_000_000_000  # < 2^31 lots
    mmr = (size * 2_000_000_000 // ONE_MILLION + 1) * 333_333 + 1
    assert mmr == 1_333_332_000_000_333_334
    assert float(mmr - 1) == float(mmr)  # the hazard the int64 arrays avoid
    below, at = sid_of(1), sid_of(2)
    view = PositionsView()
    view.set(below, sub_of(mmr - 1 - size * 2_000_000_000, p0=size))
    view.set(at, sub_of(mmr - size * 2_000_000_000, p0=size))
    assert screen(view, table) == [below]


def test_screen_lot_count_limit():
    table = {4: (0, 1, 1, 1), 5: (2, 1, 1, 1)}
    rich = 10**18
    cases = [
        (dict(p4=(1 << 31) - 1), False),  # 2^31 - 1 lots: inside the bound, well collateralized
        (dict(p4=1 << 31), True),  # 2^31 lots: always a candidate
        (dict(p4=-(1 << 31)), True),
        (dict(p5=100 * ((1 << 31) - 1)), False),
        (dict(p5=100 * ((1 << 31) - 1) + 1), True),  # ⌈.. / 100⌉ = 2^31 lots (the ceiling counts)
        (dict(p5=-(100 * ((1 << 31) - 1) + 1)), True),
    ]
    view = PositionsView()
    subs = [(sid_of(i), sub_of(rich, **sizes)) for i, (sizes, _) in enumerate(cases)]
    for s in subs:
        view.set(*s)
    expected = [sid_of(i) for i, (_, flag) in enumerate(cases) if flag]
    assert ref_screen(subs, table) == expected
    assert screen(view, table) == expected


def test_screen_ignores_closed_positions_and_empty_views():
    assert screen(PositionsView(), T) == []
    view = PositionsView()
    a, b = sid_of(1), sid_of(2)
    view.set(a, sub_of(0))  # a row, no entry at all
    assert screen(view, T) == []
    view.set(a, sub_of(0, p0=-7, p1=1))
    view.set(a, sub_of(0))  # closed: its slots are free (size 0) but still name row a and perpetuals 0, 1
    assert screen(view, T) == []
    view.set(b, sub_of(10**12, p1=-1))  # another row with a healthy position
    assert screen(view, T) == []
    view.set(b, sub_of(0, p1=-1))  # now below
    assert screen(view, T) == [b]


def test_screen_table_with_perpetuals_beyond_the_positions():
    """The table may list perpetuals no one holds, with ids >= the largest held id + 1."""
    table = dict(T)
    table[5] = (0, 1, 1, 1)
    table[40] = (3, 7, 8, 9)
    view = PositionsView()
    a, b = sid_of(1), sid_of(2)
    view.set(a, sub_of(2_000_000 + 3_000, p1=-1))  # threshold 2_003_001: flagged
    view.set(b, sub_of(2_000_000 + 3_001, p1=-1))
    assert screen(view, table) == [a]
    # only perpetual 0 held: width 1, table ids 1, 2, 3, 5, 40 all ignored
    view.set(a, sub_of(300_001 - 9_000_000, p0=300))
    view.set(b, sub_of(300_001 - 9_000_000 - 1, p0=300))
    assert screen(view, table) == [b]


@pytest.mark.parametrize("seed", range(3))
def test_screen_equals_the_exact_reference(seed):
    rng = random.Random(seed)
    table = dict(T)
    table.update(screening_table({
        4: (-10, 6_400_000_123, -5, 50_000, 600_000),
        5: (0, 9_000, -4, 200_000, 500_000),
        6: (-9, 10**16 - 1, -7, 50_000, 600_000),
    }))
    view = PositionsView()
    subs: dict[SubaccountId, SubaccountState] = {}
    sids = [sid_of(i) for i in range(1200)]
    for _ in range(2500):  # sets, resets and closes: slots are freed and reused, arrays grow
        sid = rng.choice(sids)
        sub = SubaccountState(rng.randrange(-10**13, 10**13))
        for pid in rng.sample(range(8), rng.randrange(0, 3)):  # 7 is not in the table
            lot = 10 ** table.get(pid, (0,))[0]
            size = rng.choice([1, -1]) * (rng.randrange(1, 10**7) * lot + rng.choice([0, 1, lot - 1]))
            if size:
                sub.positions[pid] = Position(pid, size, 0, 0)
        subs[sid] = sub
        view.set(sid, sub)
    ordered = sorted(subs.items(), key=lambda kv: view.rows[kv[0]])
    flagged = screen(view, table)
    assert flagged == ref_screen(ordered, table)
    assert flagged and len(flagged) < len(ordered)


def test_screen_never_misses_an_account_below_maintenance_on_edge_perpetuals():
    """With the documented tables: any account exactly one quote quantum below its maintenance requirement (exact
    dYdX arithmetic) is a candidate."""
    params = {
        0: (0, 9_000, -4, 200_000, 500_000),  # k + shift >= 0, e > 0
        1: (-9, 1_000_000_000, 0, 20_000, 500_000),  # e < 0, lot value exactly 10^6
        2: (0, 1_000, -6, 100_000, 1_000_000),  # k = 0, shift 3
        3: (-10, 6_400_000_123, -5, 50_000, 600_000),  # lo != hi
        4: (-9, 10**16 - 1, -7, 50_000, 600_000),
    }
    table = screening_table(params)
    view = PositionsView()
    expected = []
    i = 0
    for pid, (r, price, e, im, mf) in params.items():
        lot = 10 ** table[pid][0]
        for size in (1, lot - 1, lot, lot + 1, 7 * lot, 7 * lot + 1, 123_457 * lot - 1):
            for sign in (1, -1):
                s = sign * size
                if s == 0:
                    continue
                mmr = margin_requirements(s, r, price, e, im, mf, 0, 0, 0)[1]
                tnc_pos = net_collateral(s, r, price, e)
                if mmr <= 0:
                    continue
                sid = sid_of(i)
                i += 1
                view.set(sid, sub_of(mmr - 1 - tnc_pos, **{f"p{pid}": s}))  # TNC = MMR - 1
                expected.append(sid)
    assert len(expected) > 40
    assert screen(view, table) == expected
