"""The oracle tx is bound to the last commit: slots, rounds, pruning limit, absent/nil votes (issue #8, gaps 1-3).

Each test drives Application.prepare_proposal / process_proposal / finalize_block like CometBFT does, and checks
that a refused oracle tx moves no price: ProcessProposal says no, FinalizeBlock answers code 301 for tx 0 and the
market is untouched (not even refreshed). Genesis BTC is 6_400_000_000 (64,000.00000 USD, exponent -5).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from perpchain.v1 import prices_pb2

from app import errors
from app.lib.encoding import encode_proto
from app.prices.params import BLOCK_ID_FLAG_ABSENT, BLOCK_ID_FLAG_NIL, ORACLE_TX_MARKER
from app.prices.types import CommitVote, ExtendedCommitInfo, ExtendedVote, LastCommitInfo
from app.prices.votes import encode_vote_extension
from tests.helpers import CHAIN_ID, GENESIS_TIME_NS, VALIDATOR_KEYS, Replica
from tests.oracle_helpers import BTC, ETH, MARKETS, VALIDATOR_ADDRS, extended_commit, oracle_app_state, signed_vote

GENESIS_BTC = "6400000000"
MARKET_IDS = [m["id"] for m in MARKETS]


def _ext(prices: dict[int, int]) -> bytes:
    return encode_vote_extension(prices, MARKET_IDS)


def _open_chain(tmp_path, powers=(10, 10, 10, 10)) -> Replica:
    """Oracle genesis, validator i with powers[i], vote extensions from height 1; block 1 (no oracle tx) committed."""
    r = Replica(tmp_path / "db")
    validators = [(bytes(k.verify_key), p) for k, p in zip(VALIDATOR_KEYS, powers)]
    r.app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(oracle_app_state()).encode(), validators, 1, 1)
    r.block([])
    return r


@pytest.fixture
def chain(tmp_path):
    r = _open_chain(tmp_path)
    yield r
    r.close()


def market(r: Replica, pair: str) -> dict:
    res = r.app.query(f"/prices/market/{pair}", b"")
    assert res.code == 0, res.log
    return json.loads(res.value)


def oracle_tx(round_: int, votes, updates: list[prices_pb2.PriceUpdate]) -> bytes:
    """An oracle tx written by hand (what a byzantine proposer can put in tx 0)."""
    tx = prices_pb2.OracleTx(round=round_, updates=updates, votes=[
        prices_pb2.ExtendedVote(validator_address=v.address, vote_extension=v.extension,
                                extension_signature=v.signature, block_id_flag=v.block_id_flag) for v in votes])
    return ORACLE_TX_MARKER + encode_proto(tx)


def assert_refused_and_prices_unmoved(r: Replica, tx0: bytes, last: LastCommitInfo, log_fragment: str) -> None:
    height = r.app.info()[0] + 1
    assert not r.app.process_proposal([tx0], height, last)
    res = r.block([tx0], last_commit=last)
    assert res.tx_results[0].code == errors.ERR_INVALID_ORACLE_TX.code
    assert log_fragment in res.tx_results[0].log
    btc = market(r, "BTC-USD")
    assert (btc["oracle_price"], btc["last_update_height"], btc["reporters"]) == (GENESIS_BTC, "0", 0)
    assert not [e for e in res.events if e.type == "oracle_price"]


# --- gap 1: every vote sits in the slot of the validator it claims ---------------------------------------------------
LIAR = 3
LIE_BTC = 9_000_000_000  # 90,000 USD


@pytest.mark.parametrize(
    "slots, price, first_bad_slot",
    [
        # The liar's one signed vote fills every slot: 4 reports of 90,000, power 40 of 40.
        pytest.param([3, 3, 3, 3], LIE_BTC, 0, id="the liar's vote copied into all four slots"),
        # Honest 64,000 (10) + the lie three times (30): cumulative 10*2 < 40, 40*2 >= 40 -> median 90,000.
        pytest.param([0, 3, 3, 3], LIE_BTC, 1, id="the liar's vote in three slots (issue #8: 25% power moves BTC)"),
        # Even a copy of an honest vote that changes nothing must be refused: the rule is structural.
        pytest.param([0, 0, 2, 3], 6_400_000_000, 1, id="an honest vote copied into another validator's slot"),
    ],
)
def test_a_vote_copied_into_another_validators_slot_is_refused(chain, slots, price, first_bad_slot):
    height = chain.app.info()[0] + 1
    per_validator = [{BTC: 6_400_000_000}] * 3 + [{BTC: LIE_BTC}]
    ext, last = extended_commit(height - 1, per_validator)
    # The honest proposal of the same commit is accepted: 64,000 (power 30) outvotes the liar.
    assert chain.app.process_proposal(chain.app.prepare_proposal([], 1 << 20, height, ext), height, last)
    # Every vote below carries a valid signature by the validator it names; only the slots are wrong. The updates
    # are the medians of exactly these votes, so nothing but the slot check can refuse the tx.
    crafted = oracle_tx(0, [ext.votes[i] for i in slots],
                        [prices_pb2.PriceUpdate(market_id=BTC, price=price, reporters=4, reported_power=40)])
    assert_refused_and_prices_unmoved(chain, crafted, last, f"vote {first_bad_slot} does not match the last commit")


# --- gap 2: commits decided in round > 0 -------------------------------------------------------------------------
def test_a_round_1_commit_with_round_1_extensions_moves_prices(chain):
    height = chain.app.info()[0] + 1
    ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000, ETH: 3_100_000_000}] * 4, round_=1)
    proposal = chain.app.prepare_proposal([], 1 << 20, height, ext)
    tx = prices_pb2.OracleTx.FromString(proposal[0][len(ORACLE_TX_MARKER):])
    assert tx.round == 1
    assert [bool(v.vote_extension) for v in tx.votes] == [True] * 4, "the proposer pruned valid round-1 extensions"
    assert chain.app.process_proposal(proposal, height, last)
    res = chain.block(proposal, last_commit=last)
    assert res.tx_results[0].code == 0, res.tx_results[0].log
    btc, eth = market(chain, "BTC-USD"), market(chain, "ETH-USD")
    assert (btc["oracle_price"], btc["reporters"], btc["last_update_height"]) == ("6500000000", 4, str(height))
    assert eth["oracle_price"] == "3100000000"


def test_round_0_extensions_in_a_round_1_commit_are_refused(chain):
    height = chain.app.info()[0] + 1
    ext0, _ = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 4, round_=0)
    ext1 = ExtendedCommitInfo(round=1, votes=ext0.votes)  # signatures over round-0 sign bytes
    last1 = LastCommitInfo(round=1, votes=tuple(CommitVote(v.address, v.block_id_flag) for v in ext0.votes))
    # An honest proposer cannot verify them for round 1, so it prunes them all (and that block is refused too).
    proposal = chain.app.prepare_proposal([], 1 << 20, height, ext1)
    tx = prices_pb2.OracleTx.FromString(proposal[0][len(ORACLE_TX_MARKER):])
    assert [(v.vote_extension, v.extension_signature) for v in tx.votes] == [(b"", b"")] * 4
    # Forwarded unpruned, with the medians they would give, they must not verify.
    crafted = oracle_tx(1, ext0.votes,
                        [prices_pb2.PriceUpdate(market_id=BTC, price=6_500_000_000, reporters=4, reported_power=40)])
    assert_refused_and_prices_unmoved(chain, crafted, last1, "vote 0 (")


# --- gap 3: the pruning limit is strict, absent and nil votes carry nothing ---------------------------------------
def _with_bad_signature(ext: ExtendedCommitInfo, indices) -> ExtendedCommitInfo:
    votes = list(ext.votes)
    for i in indices:
        votes[i] = dataclasses.replace(votes[i], signature=bytes(64))  # a late vote CometBFT did not verify
    return dataclasses.replace(ext, votes=tuple(votes))


@pytest.mark.parametrize(
    "powers, pruned, accepted",
    [
        pytest.param((10, 7, 7, 6), [0], False, id="pruned 10 of 30: exactly one third is refused"),
        pytest.param((5, 5, 10, 10), [0, 1], False, id="pruned 5+5 of 30: two votes making exactly a third refused"),
        pytest.param((10, 7, 7, 7), [0], True, id="pruned 10 of 31: just below one third is accepted"),
        pytest.param((9, 7, 7, 7), [0], True, id="pruned 9 of 30: below one third is accepted"),
    ],
)
def test_pruned_power_limit_is_strictly_below_one_third(tmp_path, powers, pruned, accepted):
    r = _open_chain(tmp_path, powers)
    height = r.app.info()[0] + 1
    # The pruned validators lie (1 quantum): a pruned report must count for nothing.
    per_validator = [{BTC: 1} if i in pruned else {BTC: 6_500_000_000} for i in range(4)]
    ext, last = extended_commit(height - 1, per_validator)
    proposal = r.app.prepare_proposal([], 1 << 20, height, _with_bad_signature(ext, pruned))
    tx = prices_pb2.OracleTx.FromString(proposal[0][len(ORACLE_TX_MARKER):])
    assert [i for i, v in enumerate(tx.votes) if not v.vote_extension] == pruned
    if accepted:
        assert r.app.process_proposal(proposal, height, last)
        res = r.block(proposal, last_commit=last)
        assert res.tx_results[0].code == 0, res.tx_results[0].log
        reported = sum(p for i, p in enumerate(powers) if i not in pruned)  # 21 of 31 / 21 of 30: above 2/3
        btc = market(r, "BTC-USD")
        assert (btc["oracle_price"], btc["reporters"], btc["reported_power"]) == ("6500000000", 3, str(reported))
    else:
        assert_refused_and_prices_unmoved(r, proposal[0], last, "must stay below 1/3")
    r.close()


@pytest.mark.parametrize("flag", [pytest.param(BLOCK_ID_FLAG_ABSENT, id="absent"), pytest.param(BLOCK_ID_FLAG_NIL, id="nil")])
@pytest.mark.parametrize(
    "carry_extension, carry_signature",
    [
        pytest.param(True, True, id="signed extension"),
        pytest.param(True, False, id="extension without signature"),
        pytest.param(False, True, id="signature without extension"),
    ],
)
def test_an_absent_or_nil_vote_carrying_an_extension_is_refused(chain, flag, carry_extension, carry_signature):
    height = chain.app.info()[0] + 1
    ext, _ = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 3 + [None])
    votes = list(ext.votes)
    votes[3] = ExtendedVote(address=VALIDATOR_ADDRS[3], block_id_flag=flag, extension=b"", signature=b"")
    ext = dataclasses.replace(ext, votes=tuple(votes))
    last = LastCommitInfo(round=0, votes=tuple(CommitVote(v.address, v.block_id_flag) for v in votes))
    proposal = chain.app.prepare_proposal([], 1 << 20, height, ext)
    assert chain.app.process_proposal(proposal, height, last)  # the untampered block is fine
    lie = signed_vote(3, _ext({BTC: LIE_BTC}), height - 1)
    tampered = prices_pb2.OracleTx.FromString(proposal[0][len(ORACLE_TX_MARKER):])
    assert tampered.votes[3].block_id_flag == flag
    if carry_extension:
        tampered.votes[3].vote_extension = lie.extension
    if carry_signature:
        tampered.votes[3].extension_signature = lie.signature
    # The updates stay the honest medians (a non-commit vote never counts), so only the carry rule can refuse.
    assert [(u.market_id, u.price, u.reporters, u.reported_power) for u in tampered.updates] == [
        (BTC, 6_500_000_000, 3, 30)]
    assert_refused_and_prices_unmoved(chain, ORACLE_TX_MARKER + encode_proto(tampered), last,
                                      "vote 3 is not a commit vote but carries an extension")

