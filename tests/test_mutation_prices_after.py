"""Survivors of the AFTER mutation run of app/prices/votes.py: a refused oracle tx says exactly why.

The reason is what FinalizeBlock writes as the oracle tx's log (block results) when a decided block carries an
invalid oracle tx; the older tests checked it with ``in``, which mutmut's "XX...XX" wrappers pass.
"""

from __future__ import annotations

import pytest
from perpchain.v1 import prices_pb2, state_pb2

from app import errors
from app.lib.crypto import SignatureMemo
from app.lib.encoding import encode_proto
from app.prices.params import BLOCK_ID_FLAG_ABSENT, ORACLE_TX_MARKER
from app.prices.types import CommitVote, LastCommitInfo
from app.prices.votes import verify_oracle_tx

ADDR = bytes(range(20))
ABSENT_VOTE = prices_pb2.ExtendedVote(validator_address=ADDR, block_id_flag=BLOCK_ID_FLAG_ABSENT)
ONE_ABSENT = LastCommitInfo(round=0, votes=(CommitVote(ADDR, BLOCK_ID_FLAG_ABSENT),))
VALIDATOR = {ADDR: state_pb2.Validator(address=ADDR, power=1)}


def oracle_tx(**fields) -> bytes:
    return ORACLE_TX_MARKER + encode_proto(prices_pb2.OracleTx(**fields))


CASES = [
    pytest.param(b"\x0a\x02\x08\x01", LastCommitInfo(0, ()), {}, "tx 0 is not an oracle tx", id="a user tx"),
    pytest.param(ORACLE_TX_MARKER + b"\xff", LastCommitInfo(0, ()), {}, "oracle tx is not a canonical OracleTx",
                 id="garbage after the marker"),
    pytest.param(oracle_tx(round=2), LastCommitInfo(0, ()), {}, "oracle tx round 2 != last commit round 0",
                 id="another round"),
    pytest.param(oracle_tx(votes=[ABSENT_VOTE]), LastCommitInfo(0, ()), {},
                 "oracle tx carries 1 votes, last commit has 0", id="a vote too many"),
    pytest.param(oracle_tx(votes=[ABSENT_VOTE]), ONE_ABSENT, {},
                 f"vote 0 is from unknown validator {ADDR.hex()}", id="an unknown validator"),
    pytest.param(oracle_tx(votes=[ABSENT_VOTE], updates=[prices_pb2.PriceUpdate(market_id=0, price=5)]), ONE_ABSENT,
                 VALIDATOR, "oracle tx prices differ from the medians of its votes", id="a price no vote supports"),
]


@pytest.mark.parametrize("tx, last_commit, validators, reason", CASES)
def test_a_refused_oracle_tx_logs_exactly_why(tx, last_commit, validators, reason):
    with pytest.raises(errors.AppError) as info:
        verify_oracle_tx(tx, 5, "perpchain-test", last_commit, validators, SignatureMemo(), lambda votes: [])
    assert info.value.log == f"{errors.ERR_INVALID_ORACLE_TX.name}: {reason}"
