"""Random bytes and random valid-looking txs never crash CheckTx/PrepareProposal/ProcessProposal/FinalizeBlock, an
honest proposal is always accepted, and replicas in other processes (other PYTHONHASHSEEDs) agree on everything.

Run as ``python -m tests.test_fuzz CASES.json DBDIR`` it is the other-process replica: it replays the recorded cases
without CheckTx and prints their outcomes.
"""

import json
import os
import pathlib
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from app.application import proto_size_of_tx
from node.client.txbuilder import msg_send, sign_tx
from tests.helpers import ADDRS, KEYS, Replica, send_tx

ROOT = pathlib.Path(__file__).resolve().parent.parent

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
# Each block: its txs and the proposer's max_tx_bytes (small limits make PrepareProposal choose).
blocks_strategy = st.lists(st.tuples(st.lists(any_tx, max_size=8), st.integers(0, 4000)), min_size=1, max_size=4)


def run_case(path: pathlib.Path, blocks: list[tuple[list[bytes], int]], check: bool) -> dict:
    """A fresh replica over ``blocks``: per block what PrepareProposal chose, what ProcessProposal said of that
    proposal and of the raw txs, the result codes and the app hash. With ``check``, every tx also goes through
    CheckTx first (which must not crash and must not change any of the above)."""
    r = Replica(path)
    outcome = {"genesis": r.init_chain().hex(), "blocks": []}
    for txs, max_tx_bytes in blocks:
        height = r.app.info()[0] + 1
        if check:
            for tx in txs:
                res = r.app.check_tx(tx)
                assert isinstance(res.code, int) and (res.code == 0 or res.log)
        proposal = r.app.prepare_proposal(txs, max_tx_bytes, height)
        honest_accepted = r.app.process_proposal(proposal, height)
        raw_accepted = r.app.process_proposal(txs, height)
        result = r.block(txs)  # FinalizeBlock must take any decided block, valid or not
        outcome["blocks"].append({
            "proposal": [t.hex() for t in proposal],
            "proposal_bytes": sum(proto_size_of_tx(len(t)) for t in proposal),
            "honest_accepted": honest_accepted,
            "raw_accepted": raw_accepted,
            "codes": [t.code for t in result.tx_results],
            "app_hash": result.app_hash.hex(),
        })
    r.close()
    return outcome


def test_fuzz_never_crashes_honest_proposals_pass_and_processes_agree(tmp_path_factory):
    cases: list[dict] = []

    @settings(max_examples=60, deadline=None)
    @given(blocks=blocks_strategy)
    def in_process(blocks):
        outcome = run_case(tmp_path_factory.mktemp("fuzz") / "db", blocks, check=True)
        for (txs, max_tx_bytes), block in zip(blocks, outcome["blocks"]):
            assert block["honest_accepted"], "ProcessProposal rejected PrepareProposal's own block"
            assert block["proposal_bytes"] <= max_tx_bytes
            assert set(block["proposal"]) <= {t.hex() for t in txs}
            assert len(block["codes"]) == len(txs)
        cases.append({"blocks": [[[t.hex() for t in txs], m] for txs, m in blocks], "outcome": outcome})

    in_process()
    spec = tmp_path_factory.mktemp("spec") / "cases.json"
    spec.write_text(json.dumps([c["blocks"] for c in cases]))
    expected = [c["outcome"] for c in cases]
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-m", "tests.test_fuzz", str(spec), str(tmp_path_factory.mktemp("p"))],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True).stdout
        got = json.loads(out)
        assert len(got) == len(expected)
        for i, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"PYTHONHASHSEED={seed}: case {i} diverged from the in-process replica ({cases[i]['blocks']})"


def main() -> None:
    cases = json.loads(pathlib.Path(sys.argv[1]).read_text())
    base = pathlib.Path(sys.argv[2])
    outcomes = [run_case(base / str(i), [([bytes.fromhex(t) for t in txs], m) for txs, m in blocks], check=False)
                for i, blocks in enumerate(cases)]
    json.dump(outcomes, sys.stdout)


if __name__ == "__main__":
    main()
