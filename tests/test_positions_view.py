"""The struct-of-arrays positions view: equal to a rebuild after every block, and a conservative screen."""

from __future__ import annotations

import random

import numpy as np
import pytest

from app.perpetuals.logic import margin_requirements
from app.subaccounts.positions_view import PositionsView, screen, screening_table
from app.subaccounts.state import Position, SubaccountId, SubaccountState
from tests.blockgen import random_blocks, replica_exchange_app_state
from tests.helpers import Replica
from tests.oracle_helpers import oracle_app_state


def snapshot(view: PositionsView) -> dict:
    out = {}
    for sid, row in view.rows.items():
        entries = sorted((int(view.entry_perp[e]), int(view.entry_size[e])) for e in view.row_entries[row])
        if int(view.quote[row]) or entries:
            out[sid] = (int(view.quote[row]), entries)
    return out


def test_view_refreshed_per_block_equals_a_rebuild(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain(replica_exchange_app_state(oracle_app_state()))
    r.block([])
    view = r.app.positions_view()
    for txs in random_blocks(seed=5, n_blocks=40, orders=True):
        r.block(txs)
        assert snapshot(view) == snapshot(PositionsView.rebuild(r.store))
    assert sum(1 for _, (_, e) in snapshot(view).items() if e) >= 2  # positions really happened
    r.close()


BTC = (-10, 6_400_000_000, -5, 50_000, 600_000)  # atomic res, price, exponent, IM ppm, MF ppm
PEPE = (1, 10_000_000_000, -15, 200_000, 500_000)  # $0.00001 per coin, 10 coins per base quantum


def exact(sub: SubaccountState, params: dict) -> tuple[int, int]:
    from app.perpetuals.logic import net_collateral

    tnc, mmr = sub.quote_balance_quote_quantums, 0
    for pid, p in sub.positions.items():
        r, price, e, im, mf = params[pid]
        tnc += net_collateral(p.size_base_quantums, r, price, e)
        mmr += margin_requirements(p.size_base_quantums, r, price, e, im, mf, 0, 0, 0)[1]
    return tnc, mmr


@pytest.mark.parametrize("seed", range(5))
def test_screen_never_misses_a_subaccount_below_maintenance(seed):
    rng = random.Random(seed)
    params = {0: BTC, 3: PEPE}
    view = PositionsView()
    subs = {}
    for i in range(2000):
        sid = SubaccountId(i.to_bytes(20, "big"), 0)
        sub = SubaccountState(rng.randrange(-10**12, 10**12))
        for pid in rng.sample(sorted(params), rng.randrange(0, 3)):
            size = rng.choice([1, -1]) * rng.randrange(1, 10**12 if pid == 0 else 10**9)
            sub.positions[pid] = Position(pid, size, 0, 0)
        subs[sid] = sub
        view.set(sid, sub)
    flagged = set(screen(view, screening_table(params)))
    below = {sid for sid, sub in subs.items() if (lambda t, m: m > 0 and t < m)(*exact(sub, params))}
    assert below and below <= flagged  # never misses one
    near = {sid for sid, sub in subs.items() if exact(sub, params)[1] > 0
            and exact(sub, params)[0] < exact(sub, params)[1] + 100_000_000}  # within 100 USDC of the line
    assert flagged <= near  # over-selects only accounts close to the line (the error bound is a few USDC)


def test_positions_beyond_the_int64_bound_are_always_candidates():
    view = PositionsView()
    sid = SubaccountId(bytes(20), 1)
    view.set(sid, SubaccountState(10**18, {0: Position(0, 1 << 62, 0, 0)}))
    assert screen(view, screening_table({0: BTC})) == [sid]
    assert view.quote.dtype == np.int64


@pytest.mark.parametrize("seed", range(3))
def test_incremental_risk_equals_a_full_computation(tmp_path, seed):
    """compute_risk memoizes per-subaccount sums and derives an updated copy's from its parent: after any chain of
    updates (copies of copies, positions opened, grown, flipped, closed, in capped and uncapped tiers) the result
    equals a computation from scratch in a fresh view."""
    from app.perpetuals.keeper import MarginView
    from app.store import BranchStore
    from app.subaccounts.keeper import apply_position_delta, compute_risk
    from app.subaccounts.state import decode_subaccount, encode_subaccount
    from tests.exchange_helpers import exchange_app_state

    r = Replica(tmp_path / "db")
    r.init_chain(exchange_app_state())
    r.block([])
    store = BranchStore(r.store)
    rng = random.Random(seed)
    view = MarginView(store)
    sub = decode_subaccount(encode_subaccount(SubaccountState(10**12, {0: Position(0, 10**10, 0, 0)})))
    for _ in range(60):
        after = sub.copy()
        for _ in range(rng.randrange(1, 3)):
            pid = rng.choice([0, 1, 2])  # BTC, ETH uncapped; SOL in the OI-capped isolated tier
            apply_position_delta(after, pid, 0, rng.choice([1, -1]) * rng.randrange(1, 10**11), 10**6)
            if rng.random() < 0.2 and after.positions:
                p = next(iter(after.positions.values()))
                apply_position_delta(after, p.perpetual_id, 0, -p.size_base_quantums, 0)  # close one
        oi = (2, rng.randrange(0, 10**12))
        assert compute_risk(store, after, oi, view) == compute_risk(
            store, decode_subaccount(encode_subaccount(after)), oi, MarginView(store))
        if rng.random() < 0.5:  # persisted: the next update starts from its stored bytes
            raw = encode_subaccount(after)
            view.subaccount_risk[raw] = after.risk_sums
            sub = decode_subaccount(raw)
        else:
            sub = after
    r.close()
