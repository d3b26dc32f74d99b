"""Oracle plane in-process: sign bytes, weighted median, vote extensions, the injected oracle tx, staleness."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from perpchain.v1 import prices_pb2
from tendermint.types import canonical_pb2

from app import errors
from app.lib.encoding import encode_proto, uvarint
from app.prices.logic import (
    compute_mark,
    compute_weighted_median,
    has_supermajority,
    is_price_change_big_enough,
    vote_extension_sign_bytes,
)
from app.prices.params import ORACLE_TX_MARKER
from app.prices.types import CommitVote, LastCommitInfo
from tests.helpers import BLOCK_INTERVAL_NS, CHAIN_ID, GENESIS_TIME_NS, Replica, send_tx
from tests.oracle_helpers import BTC, ETH, PEPE, SOL, STALE_AFTER_NS, extended_commit, oracle_app_state


# --- sign bytes match CometBFT's CanonicalVoteExtension, length-delimited ---------------------------------
@pytest.mark.parametrize(
    "ext, height, round_, chain",
    [
        pytest.param(b"\x0a\x04\x08\x01\x10\x05", 7, 0, "perpchain-localnet", id="round 0 is omitted"),
        pytest.param(b"", 1, 0, "c", id="empty extension is omitted"),
        pytest.param(b"x" * 300, 2**40, 3, "chain-abc", id="two-byte length prefix, round 3"),
    ],
)
def test_vote_extension_sign_bytes_match_cometbft_proto(ext, height, round_, chain):
    canonical = canonical_pb2.CanonicalVoteExtension(extension=ext, height=height, round=round_, chain_id=chain)
    body = canonical.SerializeToString()
    assert vote_extension_sign_bytes(ext, height, round_, chain) == uvarint(len(body)) + body


# --- weighted median ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reports, expected",
    [
        pytest.param([(5, 1)], 5, id="single report"),
        pytest.param([(1, 1), (2, 1), (3, 1)], 2, id="odd count, equal power"),
        pytest.param([(1, 1), (2, 1), (3, 1), (4, 1)], 2, id="even count: lower median"),
        pytest.param([(1, 10), (100, 1), (1000, 1)], 1, id="power dominates"),
        pytest.param([(3, 1), (1, 1), (2, 1)], 2, id="unsorted input"),
    ],
)
def test_weighted_median_table(reports, expected):
    assert compute_weighted_median(reports) == expected


@settings(max_examples=400, deadline=None)
@given(
    honest=st.lists(st.tuples(st.integers(1_000, 2_000), st.integers(1, 100)), min_size=1, max_size=30),
    byzantine=st.lists(st.tuples(st.integers(1, 10**12), st.integers(1, 100)), max_size=30),
    absent_honest_power=st.integers(0, 100),
)
def test_median_stays_in_honest_range_when_byzantine_stake_below_a_third(honest, byzantine, absent_honest_power):
    honest_power = sum(p for _, p in honest)
    byz_power = sum(p for _, p in byzantine)
    total = honest_power + byz_power + absent_honest_power
    if byz_power * 3 >= total:  # the property's premise: < 1/3 of stake is byzantine
        return
    reported = honest_power + byz_power
    if not has_supermajority(reported, total):
        return  # no price is published at all
    median = compute_weighted_median(honest + byzantine)
    assert min(p for p, _ in honest) <= median <= max(p for p, _ in honest)


def test_supermajority_is_strict():
    assert not has_supermajority(2, 3)
    assert has_supermajority(3, 4)
    assert not has_supermajority(20, 30)
    assert has_supermajority(21, 30)


@pytest.mark.parametrize(
    "current, new, ppm, big_enough",
    [
        pytest.param(0, 5, 1000, True, id="first price always applies"),
        pytest.param(1_000_000, 1_001_000, 1000, True, id="exactly the minimum change"),
        pytest.param(1_000_000, 1_000_999, 1000, False, id="just below the minimum"),
        pytest.param(1_000_000, 999_000, 1000, True, id="downward move"),
        pytest.param(999, 999, 1000, True, id="min change floors to 0: equal price counts"),
    ],
)
def test_min_price_change_rule(current, new, ppm, big_enough):
    assert is_price_change_big_enough(current, new, ppm) is big_enough


def test_mark_basis_is_smoothed_and_clamped():
    mark, ema = compute_mark(1_000_000, 0, 100_000, smoothing_ppm=100_000, clamp_ppm=5_000)
    assert (mark, ema) == (1_005_000, 5_000)  # 10% of the sample would be 10_000: clamped to 0.5%
    mark, ema = compute_mark(1_000_000, 5_000, None, smoothing_ppm=100_000, clamp_ppm=5_000)
    assert (mark, ema) == (1_004_500, 4_500)  # no book: decays toward oracle
    mark, ema = compute_mark(1_000_000, -3, None, smoothing_ppm=100_000, clamp_ppm=5_000)
    assert ema == -3  # truncation toward zero keeps a tiny negative basis from flipping sign


# --- the chain ----------------------------------------------------------------------------------------------
@pytest.fixture
def chain(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain(oracle_app_state(), vote_extensions_enable_height=1)
    r.block([])  # height 1: vote extensions start here, no oracle tx yet
    yield r
    r.close()


def market(r: Replica, pair: str) -> dict:
    res = r.app.query(f"/prices/market/{pair}", b"")
    assert res.code == 0, res.log
    return json.loads(res.value)


def oracle_block(r: Replica, per_validator, txs=(), time_ns=None):
    """Propose (PrepareProposal), check (ProcessProposal) and execute the next block like CometBFT does."""
    height = r.app.info()[0] + 1
    ext, last = extended_commit(height - 1, per_validator)
    proposal = r.app.prepare_proposal(list(txs), 1 << 20, height, ext)
    assert proposal[0].startswith(ORACLE_TX_MARKER)
    assert r.app.process_proposal(proposal, height, last)
    return r.block(proposal, last_commit=last, time_ns=time_ns), proposal, last


def test_prices_follow_the_stake_weighted_median(chain):
    votes = [{BTC: 6_500_000_000, ETH: 3_100_000_000}, {BTC: 6_500_100_000, ETH: 3_100_000_000},
             {BTC: 6_499_900_000}, {BTC: 9_999_999_999_999}]  # validator 3 lies about BTC
    res, proposal, _ = oracle_block(chain, votes)
    assert res.tx_results[0].code == 0
    btc, eth = market(chain, "BTC-USD"), market(chain, "ETH-USD")
    assert btc["oracle_price"] == "6500000000"  # lower median of the 4, the liar is outvoted
    assert btc["reporters"] == 4 and btc["reported_power"] == "40" and btc["total_power"] == "40"
    assert btc["oracle_price_usd"] == "65000.00000"
    assert eth["oracle_price"] == "3000000000"  # only 2 of 4 reported ETH: no 2/3, unchanged
    assert eth["last_update_height"] == "0"
    assert market(chain, "PEPE-USD")["stale"] is True  # never had a price
    event_types = [e.type for e in res.events]
    assert event_types.count("oracle_price") == 1


def test_min_price_change_refreshes_without_rewriting(chain):
    oracle_block(chain, [{SOL: 15_000_000_000}] * 4)
    res, _, _ = oracle_block(chain, [{SOL: 15_000_100_000}] * 4)  # +0.00067% < 0.1%
    sol = market(chain, "SOL-USD")
    assert sol["oracle_price"] == "15000000000"
    assert sol["last_update_height"] == str(chain.app.info()[0])
    assert ("applied", "false") in [a for e in res.events if e.type == "oracle_price" for a in e.attributes]


def test_markets_go_stale_and_recover(chain):
    t = GENESIS_TIME_NS + 10 * BLOCK_INTERVAL_NS
    oracle_block(chain, [{BTC: 6_400_000_000}] * 4, time_ns=t)
    assert market(chain, "BTC-USD")["stale"] is False
    res, _, _ = oracle_block(chain, [None, None, {}, {}], time_ns=t + STALE_AFTER_NS)  # within the window
    assert market(chain, "BTC-USD")["stale"] is False
    res, _, _ = oracle_block(chain, [{}, {}, {}, {}], time_ns=t + STALE_AFTER_NS + 1)
    btc = market(chain, "BTC-USD")
    assert btc["stale"] is True
    assert ("market", "BTC-USD") in [a for e in res.events if e.type == "market_stale" for a in e.attributes]
    res, _, _ = oracle_block(chain, [{BTC: 6_300_000_000}] * 4, time_ns=t + STALE_AFTER_NS + 2)
    assert market(chain, "BTC-USD")["stale"] is False
    assert "market_fresh" in [e.type for e in res.events]


def test_absent_validators_and_two_thirds_threshold(chain):
    oracle_block(chain, [{BTC: 7_000_000_000}, {BTC: 7_000_000_000}, {BTC: 7_000_000_000}, None])
    assert market(chain, "BTC-USD")["oracle_price"] == "7000000000"  # 30 of 40 > 2/3
    oracle_block(chain, [{BTC: 8_000_000_000}, {BTC: 8_000_000_000}, None, None])
    assert market(chain, "BTC-USD")["oracle_price"] == "7000000000"  # 20 of 40: no update


# --- tampering: ProcessProposal rejects, FinalizeBlock refuses to move prices ----------------------------------
def _tamper(tx: bytes, mutate) -> bytes:
    msg = prices_pb2.OracleTx.FromString(tx[len(ORACLE_TX_MARKER):])
    mutate(msg)
    return ORACLE_TX_MARKER + encode_proto(msg)


def _flip_sig(m):
    sig = bytearray(m.votes[1].extension_signature)
    sig[5] ^= 0x10
    m.votes[1].extension_signature = bytes(sig)


def _drop_vote(m):
    del m.votes[3]


def _swap_extension(m):
    m.votes[2].vote_extension, m.votes[3].vote_extension = m.votes[3].vote_extension, m.votes[2].vote_extension


def _inflate_price(m):
    m.updates[0].price += 1


def _extra_update(m):
    m.updates.append(prices_pb2.PriceUpdate(market_id=SOL, price=1, reporters=4, reported_power=40))


def _round(m):
    m.round = 1


TAMPERS = [
    pytest.param(_flip_sig, id="flipped signature bit"),
    pytest.param(_drop_vote, id="a vote dropped (cherry-picking)"),
    pytest.param(_swap_extension, id="extensions swapped between validators"),
    pytest.param(_inflate_price, id="median price altered"),
    pytest.param(_extra_update, id="price for a market nobody reported"),
    pytest.param(_round, id="wrong round"),
]


@pytest.mark.parametrize("mutate", TAMPERS)
def test_tampered_oracle_tx_is_rejected(chain, mutate):
    height = chain.app.info()[0] + 1
    votes = [{BTC: 6_500_000_000 + i} for i in range(3)] + [{BTC: 6_600_000_000, ETH: 1}]
    ext, last = extended_commit(height - 1, votes)
    proposal = chain.app.prepare_proposal([], 1 << 20, height, ext)
    assert chain.app.process_proposal(proposal, height, last)
    bad = [_tamper(proposal[0], mutate)]
    assert not chain.app.process_proposal(bad, height, last)
    before = market(chain, "BTC-USD")
    res = chain.block(bad, last_commit=last)
    assert res.tx_results[0].code == errors.ERR_INVALID_ORACLE_TX.code
    assert market(chain, "BTC-USD")["oracle_price"] == before["oracle_price"]


def _with_bad_signature(ext, index: int):
    """The extended commit with validator ``index``'s extension signature corrupted (a late, unverified vote)."""
    votes = list(ext.votes)
    sig = bytearray(votes[index].signature)
    sig[0] ^= 0xFF
    votes[index] = dataclasses.replace(votes[index], signature=bytes(sig))
    return dataclasses.replace(ext, votes=tuple(votes))


def test_proposer_prunes_an_unverified_late_extension(chain):
    height = chain.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 3 + [{BTC: 1}])
    proposal = chain.app.prepare_proposal([], 1 << 20, height, _with_bad_signature(ext, 3))
    tx = prices_pb2.OracleTx.FromString(proposal[0][len(ORACLE_TX_MARKER):])
    assert tx.votes[3].block_id_flag == 2 and tx.votes[3].vote_extension == b"" and tx.votes[3].extension_signature == b""
    assert chain.app.process_proposal(proposal, height, last)
    res = chain.block(proposal, last_commit=last)
    assert res.tx_results[0].code == 0
    assert market(chain, "BTC-USD")["reporters"] == 3 and market(chain, "BTC-USD")["oracle_price"] == "6500000000"


def test_an_oversized_late_extension_is_pruned_and_audited(chain):
    height = chain.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 4)
    votes = list(ext.votes)
    votes[2] = dataclasses.replace(votes[2], extension=b"\x0a" * 200_000)  # over 16 000 bytes
    proposal = chain.app.prepare_proposal([], 1 << 20, height, dataclasses.replace(ext, votes=tuple(votes)))
    assert len(proposal[0]) < 10_000
    assert chain.app.process_proposal(proposal, height, last)
    res = chain.block(proposal, last_commit=last)
    assert res.tx_results[0].code == 0
    assert [e.type for e in res.tx_results[0].events] == ["oracle_pruned"]
    assert res.tx_results[0].events[0].attributes == (("validator", votes[2].address.hex().upper()),)
    assert market(chain, "BTC-USD")["reporters"] == 3


def test_an_oversized_extension_that_is_not_pruned_is_rejected(chain):
    height = chain.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 4)
    proposal = chain.app.prepare_proposal([], 1 << 20, height, ext)
    bad = [_tamper(proposal[0], lambda m: setattr(m.votes[1], "vote_extension", b"\x0a" * 20_000))]
    res = chain.block(bad, last_commit=last)
    assert res.tx_results[0].code == errors.ERR_INVALID_ORACLE_TX.code and "20000 bytes does not verify" in res.tx_results[0].log


def test_pruning_a_third_of_the_power_is_rejected(chain):
    height = chain.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 4)
    proposal = chain.app.prepare_proposal([], 1 << 20, height, _with_bad_signature(_with_bad_signature(ext, 2), 3))
    assert not chain.app.process_proposal(proposal, height, last)
    res = chain.block(proposal, last_commit=last)
    assert res.tx_results[0].code == errors.ERR_INVALID_ORACLE_TX.code and "below 1/3" in res.tx_results[0].log


def test_block_layout_rules(chain):
    height = chain.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 4)
    proposal = chain.app.prepare_proposal([send_tx(1, 2, 5, 1)], 1 << 20, height, ext)
    assert len(proposal) == 2
    assert not chain.app.process_proposal(proposal[1:], height, last), "oracle tx missing"
    assert not chain.app.process_proposal([proposal[1], proposal[0]], height, last), "oracle tx not first"
    assert not chain.app.process_proposal(proposal + [proposal[0]], height, last), "second oracle tx"
    wrong_last = LastCommitInfo(round=0, votes=last.votes[:3] + (CommitVote(last.votes[3].address, 1),))
    assert not chain.app.process_proposal(proposal, height, wrong_last), "flags differ from the last commit"
    # A user who submits oracle-marked bytes gets an error code, in CheckTx and in a block.
    assert chain.app.check_tx(proposal[0]).code != 0
    res = chain.block(proposal + [proposal[0]], last_commit=last)
    assert res.tx_results[0].code == 0 and res.tx_results[1].code == 0
    assert res.tx_results[2].code == errors.ERR_APP_ONLY_TX.code


def _ve(ids, prices) -> bytes:
    return encode_proto(prices_pb2.OracleVoteExtension(market_ids=ids, prices=prices))


@pytest.mark.parametrize(
    "extension",
    [
        pytest.param(b"\xff\xff\xff", id="garbage bytes"),
        pytest.param(_ve([ETH, BTC], [1, 1]), id="market ids out of order"),
        pytest.param(_ve([BTC, BTC], [1, 2]), id="duplicate market"),
        pytest.param(_ve([77], [1]), id="unknown market"),
        pytest.param(_ve([BTC, 5], [1, 1]), id="unknown market after a known one"),
        pytest.param(_ve([SOL], [0]), id="zero price"),
        pytest.param(_ve([BTC, ETH], [5]), id="arrays of different length"),
        pytest.param(_ve([BTC], [5]) + b"\x18\x01", id="trailing unknown field (non-canonical)"),
        pytest.param(b"\x0a\x00" * 20_000, id="oversized"),
    ],
)
def test_verify_vote_extension_rejects_garbage(chain, extension):
    assert not chain.app.verify_vote_extension(extension)


def test_garbage_extension_counts_as_no_prices(chain):
    """A signed but invalid extension (one that skipped VerifyVoteExtension) contributes nothing, deterministically."""
    res, _, _ = oracle_block(chain, [{PEPE: 12_000_000_000}] * 3 + [b"\xff\xfe"])
    assert res.tx_results[0].code == 0
    pepe = market(chain, "PEPE-USD")
    assert pepe["oracle_price"] == "12000000000" and pepe["reporters"] == 3


def test_verify_vote_extension_accepts_valid_and_empty(chain):
    assert chain.app.verify_vote_extension(b"")
    assert chain.app.verify_vote_extension(chain.app.build_vote_extension({BTC: 1, PEPE: 2, 99: 3}))
    assert chain.app.markets() == [(0, "BTC-USD", -5), (1, "ETH-USD", -6), (2, "SOL-USD", -8), (3, "PEPE-USD", -15)]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_random_extensions_never_crash_verification(tmp_path_factory, ext):
    r = Replica(tmp_path_factory.mktemp("ve"))
    r.init_chain(oracle_app_state(), vote_extensions_enable_height=1)
    assert r.app.verify_vote_extension(ext) in (True, False)
    r.close()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 30), st.lists(st.one_of(st.none(), st.integers(1, 2**64 - 1)),
                                                     min_size=4, max_size=4)), min_size=1, max_size=12),
)
def test_vectorized_medians_equal_the_reference(rows):
    """compute_updates (numpy, all markets at once) == compute_weighted_median (pure Python) per market."""
    from app.prices.votes import OracleCache, encode_vote_extension

    ids = [BTC, ETH, SOL, PEPE]
    validators = {bytes([i]) * 20: __import__("perpchain.v1.state_pb2", fromlist=["x"]).Validator(
        address=bytes([i]) * 20, power=power) for i, (power, _) in enumerate(rows)}
    votes = [(bytes([i]) * 20, 2, encode_vote_extension({m: p for m, p in zip(ids, prices) if p}, ids))
             for i, (_, prices) in enumerate(rows)]
    got = {u.market_id: (u.price, u.reporters, u.reported_power) for u in OracleCache(ids, validators).updates_for(votes)}
    total = sum(p for p, _ in rows)
    for col, m in enumerate(ids):
        reports = [(prices[col], power) for power, prices in rows if prices[col]]
        power = sum(p for _, p in reports)
        if reports and has_supermajority(power, total):
            assert got[m] == (compute_weighted_median(reports), len(reports), power)
        else:
            assert m not in got


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        pytest.param(lambda m: m.__setitem__("pair", "btc"), "must look like", id="bad pair"),
        pytest.param(lambda m: m.__setitem__("exponent", 3), "exponent", id="positive exponent"),
        pytest.param(lambda m: m.__setitem__("min_price_change_ppm", 10_000), "min_price_change_ppm",
                     id="min change too large"),
        pytest.param(lambda m: m.__setitem__("id", 1), "not unique", id="duplicate id"),
        pytest.param(lambda m: m.__setitem__("price", -1), "decimal string", id="price as a number"),
    ],
)
def test_invalid_markets_rejected_at_genesis(tmp_path, mutate, fragment):
    state = oracle_app_state()
    state["prices"]["markets"] = [dict(m) for m in state["prices"]["markets"]]
    mutate(state["prices"]["markets"][0])
    r = Replica(tmp_path / "db")
    with pytest.raises(errors.AppError) as exc:
        r.init_chain(state, vote_extensions_enable_height=1)
    assert fragment in exc.value.message
    r.close()
