"""Validator-set changes by the authority: staged in a block, returned to CometBFT, effective two blocks later,
and the set the oracle verifies vote extensions against follows exactly that schedule."""

from __future__ import annotations

import hashlib
import json

import nacl.signing
import pytest

from app.lib.address import address_from_pubkey
from app.prices.params import BLOCK_ID_FLAG_ABSENT, BLOCK_ID_FLAG_COMMIT, ORACLE_TX_MARKER
from app.prices.types import CommitVote, ExtendedCommitInfo, ExtendedVote, LastCommitInfo
from app.prices.logic import vote_extension_sign_bytes
from app.prices.votes import encode_vote_extension
from node.client.txbuilder import msg_set_validator_power, sign_tx
from tests.helpers import ADDRS, CHAIN_ID, KEYS, VALIDATOR_KEYS, Replica
from tests.oracle_helpers import BTC, MARKETS, oracle_app_state

NEW_KEY = nacl.signing.SigningKey(hashlib.sha256(b"validator-4").digest())
OLD = list(VALIDATOR_KEYS)
MARKET_IDS = [m["id"] for m in MARKETS]


@pytest.fixture
def chain(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain(oracle_app_state(), vote_extensions_enable_height=1)
    r.block([])  # height 1: no oracle tx yet
    yield r
    r.close()


def pub(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


def set_power_tx(signer: int, key: nacl.signing.SigningKey | bytes, power: int, nonce: int) -> bytes:
    pk = key if isinstance(key, bytes) else pub(key)
    return sign_tx(KEYS[signer], CHAIN_ID, nonce, [msg_set_validator_power(ADDRS[signer], pk, power)])


def commit_of(height: int, voters: list[nacl.signing.SigningKey], absent=()) -> tuple[ExtendedCommitInfo, LastCommitInfo]:
    """The extended commit of ``height``: every voter reports BTC = 65 000, ``absent`` keys are listed absent.

    Ordered by address, as CometBFT orders a commit by the validator set (equal powers)."""
    votes = []
    ext = encode_vote_extension({BTC: 6_500_000_000}, MARKET_IDS)
    for key in sorted([*voters, *absent], key=lambda k: address_from_pubkey(pub(k))):
        addr = address_from_pubkey(pub(key))
        if key in absent:
            votes.append(ExtendedVote(address=addr, block_id_flag=BLOCK_ID_FLAG_ABSENT, extension=b"", signature=b""))
        else:
            sig = key.sign(vote_extension_sign_bytes(ext, height, 0, CHAIN_ID)).signature
            votes.append(ExtendedVote(address=addr, block_id_flag=BLOCK_ID_FLAG_COMMIT, extension=ext, signature=sig))
    return (ExtendedCommitInfo(round=0, votes=tuple(votes)),
            LastCommitInfo(round=0, votes=tuple(CommitVote(v.address, v.block_id_flag) for v in votes)))


def propose(r: Replica, voters, txs=(), absent=()):
    """PrepareProposal + ProcessProposal of the next block with the given voters; (accepted, proposal, last)."""
    height = r.app.info()[0] + 1
    ext, last = commit_of(height - 1, voters, absent)
    proposal = r.app.prepare_proposal(list(txs), 1 << 20, height, ext)
    assert proposal[0].startswith(ORACLE_TX_MARKER)
    return r.app.process_proposal(proposal, height, last), proposal, last


def run_block(r: Replica, voters, txs=(), absent=()):
    ok, proposal, last = propose(r, voters, txs, absent)
    assert ok, "ProcessProposal rejected an honest proposal"
    return r.block(proposal, last_commit=last)


def validators(r: Replica) -> dict:
    return json.loads(r.app.query("/consensus/validators", b"").value)


def btc(r: Replica) -> dict:
    return json.loads(r.app.query("/prices/market/BTC-USD", b"").value)


def test_a_new_validator_counts_from_two_blocks_later(chain):
    res = run_block(chain, OLD, [set_power_tx(0, NEW_KEY, 10, 1)])  # height 2
    assert [r.code for r in res.tx_results] == [0, 0]
    assert res.validator_updates == ((pub(NEW_KEY), 10),)
    assert ("effective_height", "4") in [a for e in res.events if e.type == "validator_update" for a in e.attributes]
    v = validators(chain)
    assert v["height"] == "2" and len(v["validators"]) == 4 and v["total_power"] == "40"
    assert [s["effective_height"] for s in v["scheduled"]] == ["4"] and len(v["scheduled"][0]["validators"]) == 5

    run_block(chain, OLD)  # height 3: votes of height 2, the old set
    # Height 4 verifies votes of height 3, still signed by the old set: the new key is unknown there.
    rejected, _, _ = propose(chain, [*OLD, NEW_KEY])
    assert not rejected
    run_block(chain, OLD)  # height 4
    # Height 5 verifies votes of height 4: the new set. Its vote counts; leaving it out shows it absent.
    res = run_block(chain, [*OLD, NEW_KEY])
    assert res.tx_results[0].code == 0
    assert btc(chain)["reporters"] == 5 and btc(chain)["total_power"] == "50"
    assert validators(chain)["scheduled"] == [] and len(validators(chain)["validators"]) == 5
    run_block(chain, OLD, absent=[NEW_KEY])
    assert btc(chain)["reporters"] == 4 and btc(chain)["reported_power"] == "40"


def test_a_removed_validator_no_longer_counts(chain):
    run_block(chain, OLD, [set_power_tx(0, VALIDATOR_KEYS[3], 0, 1)])  # height 2
    run_block(chain, OLD)  # 3
    run_block(chain, OLD)  # 4: votes of 3, old set
    rejected, _, _ = propose(chain, OLD)  # 5: votes of 4 by the new set, which no longer has validator 3
    assert not rejected
    run_block(chain, OLD[:3])
    assert btc(chain)["total_power"] == "30" and btc(chain)["reporters"] == 3


def test_power_changes_move_the_threshold_and_the_last_write_wins(chain):
    txs = [set_power_tx(0, VALIDATOR_KEYS[0], 50, 1), set_power_tx(0, VALIDATOR_KEYS[0], 70, 2)]
    res = run_block(chain, OLD, txs)
    assert res.validator_updates == ((pub(VALIDATOR_KEYS[0]), 70),)
    run_block(chain, OLD)
    run_block(chain, OLD)
    # Validator 0 alone now holds 70 of 100 > 2/3: its report is enough to publish a price.
    run_block(chain, OLD[:1], absent=OLD[1:])
    assert btc(chain)["reporters"] == 1 and btc(chain)["reported_power"] == "70" and btc(chain)["total_power"] == "100"


@pytest.mark.parametrize(
    "txs, code, fragment",
    [
        pytest.param([set_power_tx(1, NEW_KEY, 10, 1)], 13, "only the chain authority", id="not the authority"),
        pytest.param([set_power_tx(0, NEW_KEY, 0, 1)], 401, "not a validator", id="removing a non-validator"),
        pytest.param([set_power_tx(0, k, 0, i + 1) for i, k in enumerate(VALIDATOR_KEYS)], 401, "no validators",
                     id="removing every validator"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(chain, txs, code, fragment):
    if len(txs) == 1:
        check = chain.app.check_tx(txs[0])
        assert check.code == code and fragment in check.log
    res = run_block(chain, OLD, txs)
    last = res.tx_results[-1]
    assert last.code == code and fragment in last.log
    assert all(r.code == 0 for r in res.tx_results[:-1])
    assert len(res.validator_updates) == len(txs) - 1  # only the valid ones before the refused one
    if len(txs) == 1:
        assert validators(chain)["scheduled"] == []


@pytest.mark.parametrize(
    "tx, code, fragment",
    [
        pytest.param(set_power_tx(0, NEW_KEY, 10**12 + 1, 1), 401, "exceeds the maximum", id="power too high"),
        pytest.param(set_power_tx(0, b"\x01" * 31, 10, 1), 15, "32-byte", id="short key"),
    ],
)
def test_malformed_updates_never_reach_a_block(chain, tx, code, fragment):
    check = chain.app.check_tx(tx)
    assert check.code == code and fragment in check.log
    ok, proposal, last = propose(chain, OLD, [tx])
    assert ok and proposal[1:] == []  # PrepareProposal drops it
    assert not chain.app.process_proposal([*proposal, tx], chain.app.info()[0] + 1, last)
    res = chain.block([*proposal, tx], last_commit=last)  # had a byzantine proposer's block been decided anyway
    assert res.tx_results[-1].code == code and res.validator_updates == ()


def test_scheduled_sets_survive_a_restart(chain):
    run_block(chain, OLD, [set_power_tx(0, NEW_KEY, 10, 1)])
    chain.restart()
    run_block(chain, OLD)
    chain.restart()
    run_block(chain, OLD)
    chain.restart()
    run_block(chain, [*OLD, NEW_KEY])
    assert btc(chain)["reporters"] == 5
