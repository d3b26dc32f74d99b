"""The positions view for the risk pass (app/subaccounts/positions_view.py): screen N subaccounts, refresh the ones
a block touched. Figures only; never a test.

    .venv/bin/python bench/risk_screen.py [--subaccounts 1000000] [--perps 100] [--touched 10000]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from app.subaccounts.positions_view import PositionsView, screen, screening_table  # noqa: E402
from app.subaccounts.state import Position, SubaccountId, SubaccountState, encode_subaccount  # noqa: E402
from app.subaccounts.keys import subaccount_key  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subaccounts", type=int, default=1_000_000)
    ap.add_argument("--perps", type=int, default=100)
    ap.add_argument("--touched", type=int, default=10_000)
    ns = ap.parse_args()
    rng = random.Random(1)
    params = {p: (-10, 100_000_000 + p, -5, 50_000, 600_000) for p in range(ns.perps)}
    tracemalloc.start()
    view = PositionsView()
    t = time.thread_time()
    for i in range(ns.subaccounts):
        sub = SubaccountState(rng.randrange(10**9, 10**11))
        for pid in rng.sample(range(ns.perps), rng.choice([1, 1, 2, 3])):
            sub.positions[pid] = Position(pid, rng.choice([1, -1]) * rng.randrange(10**9, 10**11), 0, 0)
        view.set(SubaccountId(i.to_bytes(20, "big"), 0), sub)
    build_s = time.thread_time() - t
    mem, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    table = screening_table(params)
    times = []
    for _ in range(5):
        t = time.thread_time()
        flagged = screen(view, table)
        times.append(time.thread_time() - t)
    writes = []
    for i in rng.sample(range(ns.subaccounts), ns.touched):
        sub = SubaccountState(rng.randrange(10**9, 10**11), {0: Position(0, rng.randrange(1, 10**10), 0, 0)})
        writes.append((subaccount_key(i.to_bytes(20, "big"), 0), encode_subaccount(sub)))
    writes.sort()
    t = time.thread_time()
    view.refresh(writes)
    refresh_s = time.thread_time() - t
    entries = view._n_entries
    print(f"view of {ns.subaccounts} subaccounts, {entries} positions over {ns.perps} perpetuals: built in "
          f"{build_s:.1f} s CPU (start-up, from decoded state), {mem / 2**20:.0f} MiB traced Python+numpy memory "
          f"({mem / ns.subaccounts:.0f} B per subaccount)")
    print(f"screen (vectorized, int64): median {1000 * sorted(times)[2]:.0f} ms CPU, min {1000 * min(times):.0f} ms; "
          f"{len(flagged)} candidates to confirm exactly")
    print(f"refresh of {ns.touched} touched subaccounts (one block's writes): {1000 * refresh_s:.0f} ms CPU "
          f"({1e6 * refresh_s / ns.touched:.0f} us each)")


if __name__ == "__main__":
    main()
