"""Multi-replica determinism harness.

Replicas that see every CheckTx (plus PrepareProposal/ProcessProposal), see
none, or restart from LevelDB before every block, plus separate processes
with different PYTHONHASHSEEDs, must agree on every app hash over hundreds of
random blocks: oracle txs built from random signed vote extensions (absent
validators, liars, garbage extensions, long silences that make markets stale)
followed by valid, failing, replayed and garbage user txs.
"""

import dataclasses
import json
import os
import pathlib
import random
import subprocess
import sys

from app.prices.types import CommitVote, LastCommitInfo
from tests.blockgen import random_blocks, replica_exchange_app_state
from tests.helpers import CHAIN_ID, Replica
from tests.oracle_helpers import MARKETS, extended_commit, oracle_app_state

ROOT = pathlib.Path(__file__).resolve().parent.parent
N_BLOCKS = 300


def random_votes(rng: random.Random, height: int) -> list:
    """Per validator: prices around a drifting truth, None (absent), garbage bytes, or {} (daemon down)."""
    silent = (height // 25) % 4 == 3  # every 100 blocks, 25 blocks without prices: markets go stale
    votes = []
    for _ in range(4):
        r = rng.random()
        if silent or r < 0.1:
            votes.append(None if r < 0.05 else {})
        elif r < 0.15:
            votes.append(rng.randbytes(rng.randrange(1, 40)))
        else:
            votes.append({m["id"]: max(1, 10**9 + height * 1_000_000 + rng.randrange(-5 * 10**6, 5 * 10**6))
                          for m in MARKETS if rng.random() < 0.9})
    return votes


def test_replicas_agree_on_every_app_hash(tmp_path):
    rng = random.Random(20261121)
    user_blocks = random_blocks(seed=20261121, n_blocks=N_BLOCKS, orders=True)
    app_state = replica_exchange_app_state(oracle_app_state())
    names = ["all_check", "no_check", "restarting"]
    replicas = {n: Replica(tmp_path / n) for n in names}
    hashes = {n: [r.init_chain(app_state, vote_extensions_enable_height=1)] for n, r in replicas.items()}
    spec_blocks = []
    codes_seen: dict[int, int] = {}
    event_types: dict[str, int] = {}
    tx_events: dict[str, int] = {}
    pruned_blocks = 0
    for i, user_txs in enumerate(user_blocks):
        height = i + 1
        all_check = replicas["all_check"]
        last = LastCommitInfo(round=0, votes=())
        txs = list(user_txs)
        if height >= 2:
            ext, last = extended_commit(height - 1, random_votes(rng, height))
            powers = {bytes.fromhex(v["address"]): int(v["power"]) for v in
                      json.loads(all_check.app.query("/consensus/validators", b"").value)["validators"]}
            prunable = 3 * powers[ext.votes[0].address] < sum(powers.values())  # as CometBFT guarantees
            if rng.random() < 0.05 and ext.votes[0].block_id_flag == 2 and prunable:  # a late, unverified vote
                pruned_blocks += 1
                bad = dataclasses.replace(ext.votes[0], signature=bytes(64))
                ext = dataclasses.replace(ext, votes=(bad, *ext.votes[1:]))
            oracle_tx = all_check.app.prepare_proposal([], 1 << 22, height, ext)[0]
            txs = [oracle_tx, *user_txs]
            all_check.app.prepare_proposal(user_txs, 1 << 22, height, ext)
            assert all_check.app.process_proposal([oracle_tx], height, last)
        for tx in user_txs:
            all_check.app.check_tx(tx)
        restarting = replicas["restarting"]
        restarting.restart()
        if restarting.app.info()[0] == 0:  # as CometBFT does: InitChain again before the first commit
            restarting.init_chain(app_state, vote_extensions_enable_height=1)
        results = []
        for n in names:
            res = replicas[n].block(txs, last_commit=last)
            hashes[n].append(res.app_hash)
            results.append([t.code for t in res.tx_results])
            if n == "no_check":
                for e in res.events:
                    event_types[e.type] = event_types.get(e.type, 0) + 1
                for t in res.tx_results:
                    for e in t.events:
                        tx_events[e.type] = tx_events.get(e.type, 0) + 1
                        if e.type == "order_action":
                            status = "status:" + dict(e.attributes)["status"]
                            tx_events[status] = tx_events.get(status, 0) + 1
        assert results[0] == results[1] == results[2]
        for c in results[0]:
            codes_seen[c] = codes_seen.get(c, 0) + 1
        spec_blocks.append({"txs": [t.hex() for t in txs], "round": last.round,
                            "votes": [[v.address.hex(), v.block_id_flag] for v in last.votes]})
    assert hashes["all_check"] == hashes["no_check"] == hashes["restarting"]
    # The blocks really exercise success and several failure paths, and the oracle moved and went stale.
    assert codes_seen.get(0, 0) > 300 and len(codes_seen) >= 6, codes_seen
    assert event_types.get("oracle_price", 0) > 200 and event_types.get("market_stale", 0) >= 4, event_types
    assert event_types.get("validator_update", 0) >= 5, event_types
    assert event_types.get("order_removed", 0) >= 20, event_types  # expiries are block events
    assert tx_events.get("fill", 0) >= 100 and tx_events.get("order_action", 0) >= 500, tx_events
    statuses = {k: v for k, v in tx_events.items() if k.startswith("status:")}
    assert len(statuses) >= 6, statuses  # resting, filled, partially filled, canceled, rejected, ...
    assert pruned_blocks >= 5, pruned_blocks

    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps({"app_state": app_state, "blocks": spec_blocks}))
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-m", "tests.replica_main", str(spec), str(tmp_path / f"p{seed}")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True).stdout
        assert json.loads(out)["hashes"] == [h.hex() for h in hashes["no_check"]], f"PYTHONHASHSEED={seed} diverged"
    exports = [replicas[n].app.export_genesis() for n in names]
    assert exports[0] == exports[1] == exports[2]
    for r in replicas.values():
        r.close()


def last_commit_from_spec(block: dict) -> LastCommitInfo:
    return LastCommitInfo(round=block["round"],
                          votes=tuple(CommitVote(bytes.fromhex(a), f) for a, f in block["votes"]))


__all__ = ["CHAIN_ID", "last_commit_from_spec"]
