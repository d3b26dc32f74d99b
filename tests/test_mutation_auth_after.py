"""auth: survivors of the AFTER mutation run of app/auth (docs/mutation.md), pinned by exact log text.

A refused genesis makes InitChain raise ``AppError``; its log (``"<error name>: <message>"``, app/errors.py) is what
the operator reads, and docs/transactions.md promises that for ``invalid_genesis`` (202) "the message says which
field". tests/test_mutation_auth.py checks the wording with ``in``, which a message wrapped in stray text still
passes; here the whole log is compared. The genesis goes through Application.init_chain over an in-memory store
(tests/mutation_helpers.py), as a node loads it. Expected texts are written out by hand from the documented rules
(docs/parameters.md: fee, capacities, collateral step, refill 1..10^6 ppm, cancel multiplier 1..100).

The other survivors of that run are equivalent (see the mutation notes): the default of ``entry.get("address", ...)``
only reaches decode_address_or_none, which answers None for None and for any text that is not 43 characters long;
``nonce <= recent[0]`` differs from ``<`` only for a nonce equal to the window's smallest, which was already refused
as used; ``len >= NONCE_WINDOW`` in record_nonce deletes the empty slice ``[:0]`` when the window holds exactly 100.
"""

from __future__ import annotations

import pytest

from app import errors
from tests.helpers import genesis_app_state
from tests.mutation_helpers import MemReplica


def init_chain_log(auth_state) -> str:
    """The full log of the AppError InitChain raises for this auth genesis (the rest of the genesis is valid)."""
    with pytest.raises(errors.AppError) as info:
        MemReplica().init_chain({**genesis_app_state(), "auth": auth_state})
    assert info.value.code == errors.ERR_INVALID_GENESIS.code == 202
    return info.value.log


@pytest.mark.parametrize("auth_state, log", [
    # genesis.py:31
    pytest.param([], "invalid_genesis: auth genesis must be an object with an accounts list",
                 id="auth genesis not an object"),
    # genesis.py:19
    pytest.param({"params": ["1"]}, "invalid_genesis: auth.params must be an object", id="params not an object"),
    # params.py:49 -- a step of 0 would divide by zero in the capacity formula
    pytest.param({"params": {"collateral_per_request_quote_quantums": "0"}},
                 "invalid_genesis: auth.params.collateral_per_request_quote_quantums must be positive",
                 id="collateral step 0"),
    # params.py:51 -- 0 ppm (no refill) and more than 100 % per block are both out of 1..1000000
    pytest.param({"params": {"refill_ppm_per_block": "0"}},
                 "invalid_genesis: auth.params.refill_ppm_per_block must be in 1..1000000", id="refill 0"),
    pytest.param({"params": {"refill_ppm_per_block": "1000001"}},
                 "invalid_genesis: auth.params.refill_ppm_per_block must be in 1..1000000", id="refill 1000001"),
    # params.py:53
    pytest.param({"params": {"cancel_multiplier": "0"}},
                 "invalid_genesis: auth.params.cancel_multiplier must be in 1..100", id="cancel multiplier 0"),
    pytest.param({"params": {"cancel_multiplier": "101"}},
                 "invalid_genesis: auth.params.cancel_multiplier must be in 1..100", id="cancel multiplier 101"),
])
def test_a_refused_auth_genesis_logs_exactly_what_is_wrong(auth_state, log):
    assert init_chain_log(auth_state) == log
