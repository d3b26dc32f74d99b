"""clob state: behaviours no other test pinned, found by mutation testing (docs/mutation.md, issue #9).

Key layout (golden bytes), fee-tier validation (every refusal and its bounds), orders and their expiry index, the
placement sequence, the 30-day volume window and the fill ledger, fee tiers by volume, the in-memory book (price
levels, time priority, journal) and the book's basis for the mark price. Unit tests over in-memory stores.
"""

from __future__ import annotations

import pytest
from perpchain.v1 import exchange_pb2

from app import errors
from app.clob import book as book_mod
from app.clob import keeper, keys
from app.clob.basis import BookBasis
from app.clob.book import BUY, SELL, Books, SideBook
from app.lib.address import decode_address_or_none
from app.store import BranchStore
from tests.attack_helpers import app_state as exchange_app_state  # deep copy: the helpers' lists are shared
from tests.exchange_helpers import BTC, ETH, SOL
from tests.helpers import ADDRS
from tests.mutation_helpers import Empty, MemReplica, refused

A = [decode_address_or_none(a) for a in ADDRS]
DAY = 86_400 * 10**9  # ns


def store() -> BranchStore:
    return BranchStore(Empty())


# --- keys ------------------------------------------------------------------------------------------------------

def test_key_layout():
    owner = bytes(range(1, 21))
    okey = keys.order_key(owner, 3, 258, 0x01020304, 64)
    assert okey == owner + b"\x03" + b"\x00\x00\x01\x02" + b"\x01\x02\x03\x04" + b"\x40" and len(okey) == 30
    assert keys.pair_key(258) == b"\x07\x00\x00\x00\x01\x02"
    assert keys.subaccount_pair_prefix(owner, 3, 258) == b"\x07\x02" + owner + b"\x03\x00\x00\x01\x02"
    assert keys.expiry_block_key(258, okey) == b"\x07\x03" + b"\x00" * 6 + b"\x01\x02" + okey
    assert keys.expiry_time_key(2**40, okey) == b"\x07\x04" + b"\x00\x00\x01" + b"\x00" * 5 + okey
    assert keys.stats_key(owner) == b"\x07\x06" + owner


# --- fee tiers -------------------------------------------------------------------------------------------------

def tier(name="t", absolute=0, total_share=0, maker_share=0, maker=0, taker=0) -> exchange_pb2.FeeTier:
    return exchange_pb2.FeeTier(name=name, absolute_volume_requirement_quote_quantums=absolute,
                                total_volume_share_requirement_ppm=total_share,
                                maker_volume_share_requirement_ppm=maker_share, maker_fee_ppm=maker,
                                taker_fee_ppm=taker)


BAD_TIERS = [
    pytest.param([], "at least one fee tier is needed", id="no tier"),
    pytest.param([tier(absolute=1)], "the first fee tier must have no requirements", id="first tier needs volume"),
    pytest.param([tier(total_share=1)], "the first fee tier must have no requirements", id="first tier needs a share"),
    pytest.param([tier(maker_share=1)], "the first fee tier must have no requirements",
                 id="first tier needs a maker share"),
    pytest.param([tier(name="m", maker=10_001, taker=20_000)], "tier 'm': maker fee must be in -10000..10000 ppm",
                 id="maker fee above 1 %"),
    pytest.param([tier(name="m", maker=-10_001, taker=10_000)], "tier 'm': maker fee must be in -10000..10000 ppm",
                 id="maker rebate above 1 %"),
    pytest.param([tier(name="t", taker=-1)], "taker fee in 0..10000 ppm", id="a negative taker fee"),
    pytest.param([tier(name="t", taker=10_001)], "taker fee in 0..10000 ppm", id="taker fee above 1 %"),
    pytest.param([tier(), tier(name="s", total_share=1_000_001)], "tier 's': a volume share above 100 %",
                 id="a total share above 100 %"),
    pytest.param([tier(), tier(name="s", maker_share=1_000_001)], "tier 's': a volume share above 100 %",
                 id="a maker share above 100 %"),
    pytest.param([tier(maker=-50, taker=40)], "the largest maker rebate (50 ppm) exceeds the lowest taker fee (40 ppm)",
                 id="a rebate above the taker fee"),
    pytest.param([tier(maker=0, taker=39), tier("u", absolute=1, maker=-40, taker=100)],
                 "the largest maker rebate (40 ppm) exceeds the lowest taker fee (39 ppm)",
                 id="the largest rebate and the lowest taker fee in different tiers"),
    # a fill names its tiers by name (session-15 attack: unnamed or repeated names left a fill naming no tier)
    pytest.param([tier(name="")], "invalid_fee_tiers: tier '': every fee tier needs a name of its own (fills name the "
                 "tiers they used)", id="an unnamed tier"),
    pytest.param([tier(), tier(name="u", absolute=1), tier(name="u", absolute=2)],
                 "tier 'u': every fee tier needs a name of its own", id="two tiers of one name"),
]


@pytest.mark.parametrize("tiers, words", BAD_TIERS)
def test_bad_fee_tiers_are_refused(tiers, words):
    err = refused(keeper.validate_fee_tiers, tiers)
    assert err.code == errors.ERR_INVALID_FEE_TIERS.code and words in err.log, err.log


@pytest.mark.parametrize("tiers", [
    pytest.param([tier(maker=-10_000, taker=10_000)], id="the largest rebate equals the taker fee"),
    pytest.param([tier(maker=10_000, taker=0)], id="a 1 % maker fee and no taker fee"),
    pytest.param([tier(taker=40), tier("u", absolute=1, total_share=1_000_000, maker_share=1_000_000, maker=-40,
                                       taker=50)],
                 id="shares of exactly 100 %, rebate covered by another tier's taker fee"),
])
def test_fee_tiers_on_the_bounds_are_accepted(tiers):
    keeper.validate_fee_tiers(tiers)


def test_fee_ppm_follows_the_30_day_volume():
    s = store()
    assert keeper.fee_ppm(s, A[1], DAY, maker=False) == (0, "")  # no params stored: no fee, no tier
    assert keeper.fee_ppm(s, A[1], DAY, maker=True) == (0, "")
    keeper.set_params(s, exchange_pb2.ClobParams(fee_tiers=[
        tier("base", maker=100, taker=500), tier("silver", absolute=1_000, maker=90, taker=450),
        tier("gold", absolute=1_000, total_share=500_000, maker=-10, taker=400)]))
    assert keeper.fee_ppm(s, A[1], 10 * DAY, maker=False) == (500, "base")
    ledger = keeper.FillLedger()
    ledger.add_fill(A[1], A[2], 1_000)  # account 1 traded 1,000 as taker, account 2 as maker
    ledger.add_fill(A[3], A[2], 2_000)
    ledger.write(s, 10 * DAY)
    # account 1: 1,000 of 3,000 exchange volume: tier 1 (index 1) met, tier 2 needs 50 % = 1,500: missed.
    assert keeper.fee_ppm(s, A[1], 10 * DAY, maker=False) == (450, "silver")
    assert keeper.fee_ppm(s, A[1], 10 * DAY, maker=True) == (90, "silver")
    # account 2: 3,000 of 3,000: tier 2
    assert keeper.fee_ppm(s, A[2], 10 * DAY, maker=True) == (-10, "gold")
    # 30 days later the volume has left the window
    assert keeper.fee_ppm(s, A[2], 40 * DAY, maker=True) == (100, "base")


# --- orders, expiry, sequence ----------------------------------------------------------------------------------

def order(owner=1, client_id=1, gtb=0, gtbt=0, **fields) -> exchange_pb2.Order:
    return exchange_pb2.Order(owner=A[owner], client_id=client_id, clob_pair_id=BTC, side=SELL, quantums=10,
                              remaining_quantums=10, subticks=100, good_til_block=gtb, good_til_block_time_ns=gtbt,
                              order_flags=keys.LONG_TERM if gtbt else keys.SHORT_TERM, **fields)


def test_orders_are_stored_with_one_expiry_entry_and_deleted_with_it():
    s = store()
    short = keeper.insert_order(s, order(client_id=1, gtb=7))
    long = keeper.insert_order(s, order(client_id=2, gtbt=5 * DAY))
    assert s.get(keys.expiry_block_key(7, short)) == b"" and s.get(keys.expiry_time_key(5 * DAY, long)) == b""
    assert s.get(keys.expiry_time_key(7, short)) is None and s.get(keys.expiry_block_key(5 * DAY, long)) is None
    o = keeper.get_order(s, short)
    keeper.update_remaining(s, short, o, 4)
    assert keeper.get_order(s, short).remaining_quantums == 4
    keeper.delete_order(s, short, o)
    assert keeper.get_order_or_none(s, short) is None and s.get(keys.expiry_block_key(7, short)) is None
    err = refused(keeper.get_order, s, short)
    assert err.code == errors.ERR_ORDER_NOT_FOUND.code
    assert err.log == (f"order_not_found: order {ADDRS[1]}/0 pair 0 client id 1 short-term (flags 0) is not on the "
                       "book (it filled, expired or was canceled, or never rested)")
    assert [k for k, _ in keeper.iter_orders(s)] == [long]


def test_describe_key_names_owner_number_pair_client_and_flags():
    okey = keys.order_key(A[2], 3, 258, 0x01020304, 64)
    assert keeper.describe_key(okey) == f"{ADDRS[2]}/3 pair 258 client id 16909060 long-term (flags 64)"


def test_orders_expire_when_height_passes_their_block_or_time_reaches_theirs():
    s = store()
    by_block = {gtb: keeper.insert_order(s, order(client_id=gtb, gtb=gtb)) for gtb in (4, 5, 6)}
    by_time = {t: keeper.insert_order(s, order(client_id=100 + t, gtbt=t)) for t in (99, 100, 101)}
    # height 6: good-til-block 4 and 5 are past (6 is still good in block 6); time 100: 99 and 100 have arrived.
    assert list(keeper.iter_expired(s, 6, 100)) == [by_block[4], by_block[5], by_time[99], by_time[100]]
    assert list(keeper.iter_expired(s, 0, 0)) == []


def test_the_placement_sequence_starts_at_one_and_is_stored_as_the_next():
    s = store()
    assert [keeper.next_sequence(s) for _ in range(3)] == [1, 2, 3]
    assert s.get(keys.SEQUENCE_KEY) == (4).to_bytes(8, "big")


# --- volume ----------------------------------------------------------------------------------------------------

def fills(notional: int) -> keeper.FillLedger:
    ledger = keeper.FillLedger()
    ledger.add_fill(A[1], A[2], notional)
    return ledger


def test_volume_window_keeps_the_last_30_days_by_block_time():
    s = store()
    fills(5).write(s, 70 * DAY)  # day 70
    fills(7).write(s, 71 * DAY + 1)  # day 71
    # The window at day d is days d-29..d: at day 99, days 70 and 71; at day 100, day 71 only.
    assert keeper.get_volume(s, A[1], 99 * DAY + DAY - 1) == keeper.Volume(12, 0)
    assert keeper.get_volume(s, A[1], 100 * DAY) == keeper.Volume(7, 0)
    assert keeper.get_volume(s, A[2], 100 * DAY) == keeper.Volume(7, 7)
    assert keeper.get_volume(s, None, 99 * DAY) == keeper.Volume(12, 0)
    fills(11).write(s, 100 * DAY + 1)
    fills(2).write(s, 100 * DAY + 2)
    assert keeper.get_volume(s, A[1], 100 * DAY) == keeper.Volume(20, 0)  # 7 + 11 + 2
    # stored: day 70 was dropped when day 100 was written; day 100's fills are one bucket
    raw = s.get(keys.stats_key(A[1]))
    assert raw.hex() == ("%016x%016x%016x" % (71, 7, 0)) + ("%016x%016x%016x" % (100, 13, 0))
    assert keeper.get_volume(s, A[2], 100 * DAY) == keeper.Volume(20, 20)


def test_fill_ledger_sums_per_owner_and_merges():
    a, b = keeper.FillLedger(), keeper.FillLedger()
    a.add_fill(A[1], A[2], 10)
    b.add_fill(A[2], A[1], 3)
    b.add_fill(A[2], A[3], 4)
    a.merge(b)
    assert a.by_owner == {A[1]: [13, 3], A[2]: [17, 10], A[3]: [4, 4]} and a.total == 17
    s = store()
    keeper.FillLedger().write(s, DAY)  # nothing traded: nothing written
    assert s.write_set() == []


# --- the in-memory book ----------------------------------------------------------------------------------------

def test_a_price_level_keeps_time_priority_whatever_the_insertion_order():
    side = SideBook()
    side.insert(100, 5, b"e")
    side.insert(100, 3, b"c")
    side.insert(100, 9, b"i")
    side.insert(90, 1, b"a")
    assert side.prices == [90, 100] and side.levels[100] == [(3, b"c"), (5, b"e"), (9, b"i")]
    with pytest.raises(KeyError):
        side.remove(100, 4, b"c")
    with pytest.raises(KeyError):
        side.remove(100, 10, b"z")
    side.remove(90, 1, b"a")
    assert side.prices == [100] and 90 not in side.levels


def test_books_journal_open_counts_and_best_prices():
    books = Books()
    k = [keys.order_key(A[1], 0, BTC, i, 0) for i in range(4)]
    books.add(k[0], BTC, BUY, 100, 1)
    books.add(k[1], BTC, BUY, 102, 2)
    books.commit()
    assert not books.has_uncommitted()
    mark = books.mark()
    books.add(k[2], BTC, SELL, 105, 3)
    books.remove(k[0])
    assert books.has_uncommitted() and books.open_count(A[1], 0, BTC) == 2
    with pytest.raises(KeyError, match="already in the book"):
        books.add(k[1], BTC, BUY, 101, 4)
    assert [p for p, _ in books.pair(BTC).levels_from_best(BUY)] == [102]
    assert book_mod.mid_subticks(books, BTC) == 103  # (102 + 105) / 2 = 103.5, floor
    books.rollback(mark)
    assert [p for p, _ in books.pair(BTC).levels_from_best(BUY)] == [102, 100]
    assert books.pair(BTC).best_price(SELL) is None and book_mod.mid_subticks(books, BTC) is None
    assert books.open_count(A[1], 0, BTC) == 2 and books.open_count(A[1], 1, BTC) == 0
    books.remove(k[0])
    books.remove(k[1])
    assert books.open_count(A[1], 0, BTC) == 0 and books.open_counts == {}
    assert book_mod.mid_subticks(books, 77) is None


# --- basis -----------------------------------------------------------------------------------------------------

def test_book_basis_is_the_mid_minus_the_oracle_in_price_units():
    r = MemReplica()
    r.init_chain(exchange_app_state())
    r.block([])
    books = Books()
    # BTC: price units = subticks (exponent -5, QCE -9, atomic resolution -10: 10^(-5+9-10+6) = 1).
    books.add(keys.order_key(A[1], 0, BTC, 1, 0), BTC, BUY, 6_399_000_000, 1)
    books.add(keys.order_key(A[2], 0, BTC, 1, 0), BTC, SELL, 6_401_000_001, 2)
    basis = BookBasis(books, BranchStore(r.store))
    # mid = floor((6,399,000,000 + 6,401,000,001) / 2) = 6,400,000,000; minus an oracle of 6,399,500,000
    assert basis(r.store, BTC, 6_399_500_000) == 500_000
    assert basis(r.store, ETH, 3_000_000_000) is None  # no two-sided book
    assert basis(r.store, 99, 1) is None  # no pair for that market
    assert basis(r.store, SOL, 1) is None
