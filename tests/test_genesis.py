"""Genesis validation and export/import round trip."""

import json

import pytest

from app import errors
from tests.helpers import ADDRS, ONE_USDC, Replica, genesis_app_state, send_tx


def _bad(mutate):
    state = genesis_app_state()
    mutate(state)
    return state


@pytest.mark.parametrize(
    "state, fragment",
    [
        pytest.param(_bad(lambda s: s["bank"].update(authority="nope")), "authority", id="bad authority"),
        pytest.param(_bad(lambda s: s["bank"]["balances"].append(dict(s["bank"]["balances"][0]))), "duplicates",
                     id="duplicate account"),
        pytest.param(_bad(lambda s: s["bank"]["balances"][0].update(amount_quote_quantums=5)), "decimal string",
                     id="amount as JSON number"),
        pytest.param(_bad(lambda s: s["bank"]["balances"][0].update(amount_quote_quantums="-5")), "decimal string",
                     id="negative amount"),
        pytest.param(_bad(lambda s: s["bank"]["balances"][0].update(address="perp1xyz")), "address",
                     id="bad address"),
        pytest.param([], "JSON object", id="app_state not an object"),
        pytest.param(_bad(lambda s: s.update(auth=["x"])), "auth genesis", id="auth not an object"),
        pytest.param(_bad(lambda s: s.update(auth={"accounts": [{"address": s["bank"]["balances"][0]["address"],
                                                                 "recent_nonces": "123"}]})),
                     "must be a list", id="nonces as a string"),
        pytest.param(_bad(lambda s: s["bank"].update(balances={"a": 1})), "must be a list", id="balances not a list"),
        pytest.param(_bad(lambda s: s["bank"]["balances"][0].update(amount_quote_quantums="\u0661")),
                     "decimal string", id="non-ASCII digits"),
    ],
)
def test_invalid_genesis_is_rejected_with_a_clear_error(tmp_path, state, fragment):
    r = Replica(tmp_path / "db")
    with pytest.raises(errors.AppError) as exc:
        r.init_chain(state)
    assert exc.value.error is errors.ERR_INVALID_GENESIS
    assert fragment in exc.value.message
    r.close()


def test_export_then_import_reproduces_state(tmp_path):
    a = Replica(tmp_path / "a")
    a.init_chain()
    a.block([send_tx(1, 2, 7 * ONE_USDC, 3), send_tx(2, 6, ONE_USDC, 1)])
    exported = a.app.export_genesis()
    b = Replica(tmp_path / "b")
    b.init_chain(json.loads(json.dumps(exported)))
    b.block([])
    assert b.app.export_genesis() == exported
    assert [b.balance(i) for i in range(8)] == [a.balance(i) for i in range(8)]
    # Nonces survive the round trip: the old tx is still a replay.
    assert b.app.check_tx(send_tx(1, 2, 7 * ONE_USDC, 3)).code == errors.ERR_NONCE_USED.code
    assert json.loads(b.app.query("/bank/supply", b"").value)["amount_quote_quantums"] == str(6 * 1_000_000 * ONE_USDC)
    assert exported["bank"]["authority"] == ADDRS[0]
    a.close()
    b.close()
