"""Multi-replica determinism harness.

Replicas that see every CheckTx (plus PrepareProposal/ProcessProposal), see
none, or restart from LevelDB before every block, plus separate processes
with different PYTHONHASHSEEDs, must agree on every app hash over hundreds of
random blocks (valid, failing, replayed and garbage txs).
"""

import json
import os
import pathlib
import subprocess
import sys

from tests.blockgen import random_blocks
from tests.helpers import Replica, genesis_app_state

ROOT = pathlib.Path(__file__).resolve().parent.parent
N_BLOCKS = 300


def test_replicas_agree_on_every_app_hash(tmp_path):
    blocks = random_blocks(seed=20261121, n_blocks=N_BLOCKS)
    app_state = genesis_app_state()
    all_check = Replica(tmp_path / "all_check")
    no_check = Replica(tmp_path / "no_check")
    restarting = Replica(tmp_path / "restarting")
    hashes = {name: [r.init_chain(app_state)] for name, r in
              [("all_check", all_check), ("no_check", no_check), ("restarting", restarting)]}
    codes_seen: dict[int, int] = {}
    for txs in blocks:
        for tx in txs:
            all_check.app.check_tx(tx)
        proposal = all_check.app.prepare_proposal(txs, max_tx_bytes=1 << 22, height=2)
        all_check.app.process_proposal(proposal, height=2)
        restarting.restart()
        if restarting.app.info()[0] == 0:  # as CometBFT does: InitChain again before the first commit
            restarting.init_chain(app_state)
        results = []
        for name, r in [("all_check", all_check), ("no_check", no_check), ("restarting", restarting)]:
            res = r.block(txs)
            hashes[name].append(res.app_hash)
            results.append([t.code for t in res.tx_results])
        assert results[0] == results[1] == results[2]
        for c in results[0]:
            codes_seen[c] = codes_seen.get(c, 0) + 1
    assert hashes["all_check"] == hashes["no_check"] == hashes["restarting"]
    # The blocks really exercise success and several failure paths.
    assert codes_seen.get(0, 0) > 300 and len(codes_seen) >= 6, codes_seen

    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps({"app_state": app_state, "blocks": [[t.hex() for t in b] for b in blocks]}))
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-m", "tests.replica_main", str(spec), str(tmp_path / f"p{seed}")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True).stdout
        assert json.loads(out)["hashes"] == [h.hex() for h in hashes["no_check"]], f"PYTHONHASHSEED={seed} diverged"
    assert all_check.app.export_genesis() == no_check.app.export_genesis() == restarting.app.export_genesis()
    for r in (all_check, no_check, restarting):
        r.close()
