"""Heights (issue #8, gap 6): when the oracle tx starts, chains that start above height 1, unexpected heights."""

from __future__ import annotations

import json

import pytest

from app.errors import InvariantViolation
from app.prices.params import ORACLE_TX_MARKER
from app.prices.types import LastCommitInfo
from tests.helpers import ADDRS, BLOCK_INTERVAL_NS, CHAIN_ID, GENESIS_TIME_NS, VALIDATOR_KEYS, Replica, send_tx
from tests.oracle_helpers import BTC, extended_commit, oracle_app_state

NO_COMMIT = LastCommitInfo(round=0, votes=())
VALIDATORS = [(bytes(k.verify_key), 10) for k in VALIDATOR_KEYS]


def query(r: Replica, path: str) -> dict:
    res = r.app.query(path, b"")
    assert res.code == 0, res.log
    return json.loads(res.value)


def time_of(height: int) -> int:
    return GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS


@pytest.mark.parametrize(
    "enable_height, first_oracle_height",
    [
        pytest.param(0, None, id="enable height 0: vote extensions never start, no oracle tx"),
        pytest.param(1, 2, id="enable height 1: first oracle tx in block 2"),
        pytest.param(3, 4, id="enable height 3: none at 3 itself (its votes are the first extended), first at 4"),
    ],
)
def test_the_oracle_tx_is_due_from_one_block_after_the_enable_height(tmp_path, enable_height, first_oracle_height):
    r = Replica(tmp_path / "db")
    r.init_chain(oracle_app_state(), vote_extensions_enable_height=enable_height)
    last_plain = 5 if first_oracle_height is None else first_oracle_height - 1
    for height in range(1, last_plain + 1):
        user_tx = send_tx(1, 2, 1, height)
        proposal = r.app.prepare_proposal([user_tx], 1 << 20, height, None)
        assert proposal == [user_tx], f"height {height}: no oracle tx expected"
        assert r.app.process_proposal(proposal, height, NO_COMMIT)
        assert [t.code for t in r.block(proposal).tx_results] == [0]
    if first_oracle_height is not None:
        height = first_oracle_height
        ext, last = extended_commit(height - 1, [{BTC: 6_500_000_000}] * 4)
        proposal = r.app.prepare_proposal([], 1 << 20, height, ext)
        assert len(proposal) == 1 and proposal[0].startswith(ORACLE_TX_MARKER)
        assert not r.app.process_proposal([], height, last), "a block without the due oracle tx"
        assert r.app.process_proposal(proposal, height, last)
        assert r.block(proposal, last_commit=last).tx_results[0].code == 0
        btc = query(r, "/prices/market/BTC-USD")
        assert (btc["oracle_price"], btc["last_update_height"]) == ("6500000000", str(height))
    r.close()


@pytest.mark.parametrize(
    "enable_height",
    [
        # perpd init writes enable height 1 whatever the initial height: block 100 then carries an oracle tx built
        # from an empty commit (CometBFT has no commit before the initial height).
        pytest.param(1, id="extensions enabled from height 1 (perpd init's genesis)"),
        pytest.param(100, id="extensions enabled at the initial height"),
    ],
)
def test_a_chain_starting_at_height_100(tmp_path, enable_height):
    r = Replica(tmp_path / "db")
    app = r.app
    app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(oracle_app_state()).encode(), VALIDATORS, 100, enable_height)
    assert app.info() == (0, b"")
    with pytest.raises(InvariantViolation, match="FinalizeBlock height 1, expected 100"):
        app.finalize_block(1, time_of(1), [])

    # Block 100: the first block.
    user_tx = send_tx(1, 2, 1, 1)
    proposal = app.prepare_proposal([user_tx], 1 << 20, 100, None)
    if enable_height == 1:
        assert len(proposal) == 2 and proposal[0].startswith(ORACLE_TX_MARKER) and proposal[1] == user_tx
    else:
        assert proposal == [user_tx]
    assert app.process_proposal(proposal, 100, NO_COMMIT)
    res = app.finalize_block(100, time_of(100), proposal, NO_COMMIT)
    assert [t.code for t in res.tx_results] == [0] * len(proposal)
    app.commit()
    assert app.info() == (100, res.app_hash)
    assert query(r, "/app/info") == {"chain_id": CHAIN_ID, "height": "100", "app_hash": res.app_hash.hex()}

    # Blocks 101 and 102 carry the votes of 100 and 101, signed by the genesis set (10 power each).
    for height, btc_price in ((101, 6_500_000_000), (102, 6_600_000_000)):
        ext, last = extended_commit(height - 1, [{BTC: btc_price}] * 4)
        proposal = app.prepare_proposal([send_tx(1, 2, 1, height)], 1 << 20, height, ext)
        assert proposal[0].startswith(ORACLE_TX_MARKER)
        assert not app.process_proposal(proposal[1:], height, last)
        assert app.process_proposal(proposal, height, last)
        res = app.finalize_block(height, time_of(height), proposal, last)
        assert [t.code for t in res.tx_results] == [0, 0]
        app.commit()
        btc = query(r, "/prices/market/BTC-USD")
        assert (btc["oracle_price"], btc["last_update_height"], btc["total_power"]) == (
            str(btc_price), str(height), "40")
    assert app.info()[0] == 102
    validators = query(r, "/consensus/validators")
    assert (validators["height"], validators["total_power"], len(validators["validators"])) == ("102", "40", 4)
    assert query(r, f"/auth/account/{ADDRS[1]}")["recent_nonces"] == ["1", "101", "102"]
    # Restarted from LevelDB, the chain continues at 103.
    r.restart()
    assert r.app.info()[0] == 102
    ext, last = extended_commit(102, [{BTC: 6_600_000_000}] * 4)
    proposal = r.app.prepare_proposal([], 1 << 20, 103, ext)
    assert r.app.process_proposal(proposal, 103, last)
    assert r.app.finalize_block(103, time_of(103), proposal, last).tx_results[0].code == 0
    r.close()


@pytest.mark.parametrize(
    "height",
    [
        pytest.param(3, id="one height ahead"),
        pytest.param(1, id="the height already committed"),
        pytest.param(0, id="height 0"),
        pytest.param(2**62, id="far ahead"),
    ],
)
def test_finalize_block_refuses_an_unexpected_height(replica, height):
    """Block 1 is committed, so only 2 may follow; a refused height leaves nothing behind."""
    before = (replica.app.info(), query(replica, f"/bank/balance/{ADDRS[1]}"))
    tx = send_tx(1, 2, 5, 1)
    with pytest.raises(InvariantViolation, match=f"FinalizeBlock height {height}, expected 2"):
        replica.app.finalize_block(height, time_of(2), [tx])
    with pytest.raises(InvariantViolation, match="Commit without a finalized block"):
        replica.app.commit()
    after = (replica.app.info(), query(replica, f"/bank/balance/{ADDRS[1]}"))
    assert after == before
    # The correct height still works, and the refused block did not use the tx's nonce.
    res = replica.app.finalize_block(2, time_of(2), [tx])
    assert [t.code for t in res.tx_results] == [0]
    replica.app.commit()
    assert replica.app.info() == (2, res.app_hash)


def test_a_refused_height_keeps_the_pending_block(replica):
    """FinalizeBlock(2) then a stray FinalizeBlock(3): block 2 is still the one Commit writes."""
    res = replica.app.finalize_block(2, time_of(2), [send_tx(1, 2, 5, 1)])
    with pytest.raises(InvariantViolation, match="FinalizeBlock height 3, expected 2"):
        replica.app.finalize_block(3, time_of(3), [send_tx(1, 2, 5, 2)])
    replica.app.commit()
    assert replica.app.info() == (2, res.app_hash)


def test_genesis_pending_refuses_any_height_but_the_initial_one(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain()
    with pytest.raises(InvariantViolation, match="FinalizeBlock height 2, expected 1"):
        r.app.finalize_block(2, time_of(2), [])
    res = r.app.finalize_block(1, time_of(1), [])
    r.app.commit()
    assert r.app.info() == (1, res.app_hash)
    r.close()
