"""Random bytes and random valid-looking txs never crash CheckTx/FinalizeBlock, and replicas never diverge."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ADDRS, KEYS, Replica, send_tx
from node.client.txbuilder import msg_send, sign_tx

valid_looking = st.builds(
    lambda s, r, amount, nonce, chain, memo: sign_tx(KEYS[s], chain, nonce, [msg_send(ADDRS[s], ADDRS[r], amount)], memo),
    st.integers(0, 7), st.integers(0, 7), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
    st.sampled_from(["perpchain-test", "perpchain-tes", ""]), st.text(max_size=300),
)
mutated = st.builds(
    lambda raw, i, bit: raw[: i % len(raw)] + bytes([raw[i % len(raw)] ^ (1 << bit)]) + raw[i % len(raw) + 1:],
    st.builds(lambda n: send_tx(1, 2, 5, n), st.integers(1, 50)), st.integers(0, 10_000), st.integers(0, 7),
)
any_tx = st.one_of(st.binary(max_size=400), valid_looking, mutated)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(st.lists(any_tx, max_size=8), min_size=1, max_size=4))
def test_fuzz_never_crashes_and_replicas_agree(tmp_path_factory, blocks):
    base = tmp_path_factory.mktemp("fuzz")
    a, b = Replica(base / "a"), Replica(base / "b")
    assert a.init_chain() == b.init_chain()
    for txs in blocks:
        for tx in txs:
            res = a.app.check_tx(tx)
            assert isinstance(res.code, int) and (res.code == 0 or res.log)
        a.app.process_proposal(txs, height=2)
        a.app.prepare_proposal(txs, 1 << 20, height=2)
        ra, rb = a.block(txs), b.block(txs)
        assert ra.app_hash == rb.app_hash
        assert len(ra.tx_results) == len(txs)
    a.close()
    b.close()
