"""Attacks on session 7's performance change (commits 19b07a4, 7505858): the order phase's working set of
subaccounts (written once at the phase's end, undone per refused action) and the incremental risk of a copy from
its parent's sums. Written to run on those commits and on eebfa24 (open interest joins the working set): the
reference path disables whichever working sets the tree has.

The main weapon is a differential twin: two in-memory chains fed the same proposals, one running the code as it is,
the other ("reference") with the working set disabled (persist writes every fill side to the store, as before the
change) and with every risk sum recomputed from scratch over the positions (no parent, no memo, no risk_sums). Their
app hashes, tx results, events and whole stores must be identical block by block. The other tests use numbers
worked by hand in their docstrings.

Markets (tests/exchange_helpers.py): BTC-USD oracle $64,000 (tick $1 = 100,000 subticks, step 0.0001 BTC =
1,000,000 base quantums), ETH-USD $3,000 (tick $0.1, step 0.001 ETH), SOL-USD $150 isolated (tier 4: IM 5 %,
MF 60 %, OI caps 0.5M / 1M USDC; tick $0.01, step 0.1 SOL); IM 5 %, MMR = 60 % of IMR; fees maker 100 ppm, taker
500 ppm. Accounts 1..4 hold 100,000 USDC in subaccount 0.
"""

from __future__ import annotations

import contextlib
import copy
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.lib.address import decode_address_or_none
from app.perpetuals import keeper as perpetuals_keeper
from app.perpetuals.keeper import MarginView
from app.store import BranchStore, prefix_end
from app.subaccounts import keeper as sk
from app.subaccounts import keys as sub_keys
from app.subaccounts.state import SubaccountId, SubaccountState, decode_subaccount
from tests.attack_helpers import (
    ETH_PRICE,
    ETH_STEP,
    ETH_TICK,
    SOL_PRICE,
    SOL_STEP,
    SOL_TICK,
    app_state,
    batch_cancel,
    cancel_replace,
    check_global_money,
    deposit_msg,
    transfer_msg,
    withdraw_msg,
)
from tests.exchange_helpers import (
    BTC,
    BTC_PRICE,
    BTC_STEP,
    BUY,
    ETH,
    FOK,
    IOC,
    POST_ONLY,
    SELL,
    SOL,
    cancel,
    msg_tx,
    orders_tx,
    place,
)
from tests.helpers import ADDRS, BLOCK_INTERVAL_NS, GENESIS_TIME_NS, ONE_USDC
from tests.mutation_helpers import MemReplica

USD = ONE_USDC
TICK = {BTC: 100_000, ETH: ETH_TICK, SOL: SOL_TICK}
STEP = {BTC: BTC_STEP, ETH: ETH_STEP, SOL: SOL_STEP}


# =====================================================================================================================
# The reference: the working set disabled, risk recomputed from scratch
# =====================================================================================================================

def _full_sums(view, sub):
    """(Σ NC, Σ IMR, Σ MMR) over uncapped positions and the capped perpetuals, from the positions alone (no parent,
    no memo, no risk_sums): the ground truth the incremental sums must equal."""
    nc = imr = mmr = 0
    capped = []
    for pid, p in sub.positions.items():
        if view.info(pid).oi_upper_cap_quote_quantums:
            capped.append(pid)
            continue
        n, i, m = sk._position_risk(view, pid, p.size_base_quantums, 0)
        nc, imr, mmr = nc + n, imr + i, mmr + m
    return nc, imr, mmr, tuple(capped)


def _no_flush(store, view):
    assert view.live is None


@contextlib.contextmanager
def reference_path():
    """Run the code as before the change: no working set (persist writes each fill side), risk from scratch. (If the
    open interest has a working set too -- app/perpetuals/keeper.start_order_phase, work in progress in the tree --
    it is disabled as well: every fill then writes its open interest to the store.)"""
    patches = [(sk, "start_working_set", lambda view: None), (sk, "flush_working_set", _no_flush),
               (sk, "_uncapped_sums", _full_sums)]
    if hasattr(perpetuals_keeper, "start_order_phase"):
        patches += [(perpetuals_keeper, "start_order_phase", lambda view: None),
                    (perpetuals_keeper, "flush_open_interest", lambda store, view: None)]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, fn in patches:
        setattr(mod, name, fn)
    try:
        yield
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def _phase_start(view) -> None:
    """Open the order phase's working set on a view (whichever module owns the phase in this tree)."""
    if hasattr(perpetuals_keeper, "start_order_phase"):
        perpetuals_keeper.start_order_phase(view)
    sk.start_working_set(view)


def _action_start(view) -> None:
    (perpetuals_keeper.start_action if hasattr(perpetuals_keeper, "start_action") else sk.start_action)(view)


def _action_rollback(view) -> None:
    (perpetuals_keeper.rollback_action if hasattr(perpetuals_keeper, "rollback_action") else sk.rollback_action)(view)


@contextlib.contextmanager
def shadow_risk():
    """Every compute_risk of the code under test is checked against a recomputation from the positions alone."""
    real = sk.compute_risk
    calls = [0]

    def checked(store, sub, oi_delta=None, view=None):
        got = real(store, sub, oi_delta, view)
        saved = sk._uncapped_sums
        sk._uncapped_sums = _full_sums
        try:
            want = real(store, sub, oi_delta, view)
        finally:
            sk._uncapped_sums = saved
        calls[0] += 1
        assert got == want, f"incremental risk {got} != fresh {want} for {sub}"
        return got

    real_flush = sk.flush_working_set

    def checked_flush(store, view):
        """At the phase's end, each live state's risk (through its chain of copies) must equal the risk of the
        bytes the flush writes, decoded afresh."""
        live = dict(view.live)
        got = {sid: real(store, sub, None, view) for sid, sub in live.items()}
        real_flush(store, view)
        for sid in live:
            raw = store.get(sub_keys.subaccount_key(sid.owner, sid.number))
            fresh = SubaccountState() if raw is None else decode_subaccount(raw)
            want = real(store, SubaccountState(fresh.quote_balance_quote_quantums, dict(fresh.positions)), None, view)
            assert got[sid] == want, f"live risk {got[sid]} != risk of the flushed bytes {want} for {sid}"

    sk.compute_risk = checked
    sk.flush_working_set = checked_flush
    try:
        yield calls
    finally:
        sk.compute_risk = real
        sk.flush_working_set = real_flush


class Twin:
    """Two in-memory chains (the code as it is, and the reference) fed the same proposals."""

    def __init__(self, state: dict, restart_new: bool = False) -> None:
        self.new, self.ref = MemReplica(), MemReplica()
        self.restart_new = restart_new
        for r in (self.new, self.ref):
            r.init_chain(copy.deepcopy(state), vote_extensions_enable_height=1)
        self._both(lambda r: r.block([]))
        self.nonces: dict[int, int] = {}

    def _both(self, fn):
        with shadow_risk():
            a = fn(self.new)
        with reference_path():
            b = fn(self.ref)
        return a, b

    def nonce(self, account: int) -> int:
        self.nonces[account] = self.nonces.get(account, 0) + 1
        return self.nonces[account]

    def height(self) -> int:
        return self.new.app.info()[0]

    def set_funding_index(self, pid: int, index: int) -> None:
        """A test sets a perpetual's funding index in the committed state of both chains (as tests/test_exchange.py
        does in a branch): the next position change of every holder settles against it."""
        for r in (self.new, self.ref):
            b = BranchStore(r.store)
            perpetuals_keeper.set_funding_index(b, pid, index)
            r.store.commit(list(b.write_set()), r.store.last_height(), r.store.last_app_hash())
            r.restart()

    def block(self, txs, prices: dict[int, int] | None = None):
        from tests.oracle_helpers import extended_commit

        height = self.height() + 1
        t = GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS
        ext, last = extended_commit(height - 1, [dict(prices or {})] * 4)
        proposal = self.new.app.prepare_proposal(list(txs), 1 << 22, height, ext)
        if self.restart_new:
            self.new.restart()

        def run(r):
            assert r.app.process_proposal(proposal, height, last)
            res = r.app.finalize_block(height, t, proposal, last)
            r.app.commit()
            return res

        a, b = self._both(run)
        assert a.tx_results == b.tx_results, f"tx results differ at height {height}:\n{_diff_results(a, b)}"
        assert a.events == b.events, f"block events differ at height {height}"
        assert a.app_hash == b.app_hash, f"app hash differs at height {height}: {_diff_stores(self)}"
        assert self.new.store._data == self.ref.store._data
        for key, value in self.new.store.iterate(sub_keys.SUBACCOUNT_PREFIX, prefix_end(sub_keys.SUBACCOUNT_PREFIX)):
            assert value == _pack(decode_subaccount(value)), f"non-canonical subaccount bytes at {key.hex()}"
        return a

    def subaccount(self, account: int, number: int = 0):
        raw = self.new.store.get(sub_keys.subaccount_key(decode_address_or_none(ADDRS[account]), number))
        return None if raw is None else decode_subaccount(raw)


def _pack(sub) -> bytes:
    """The stored form, packed independently of app/subaccounts/state.py: quote (>q), then per position sorted by
    perpetual id: id (>I), size (>q), funding index (>q), entry notional (>Q)."""
    out = struct.pack(">q", sub.quote_balance_quote_quantums)
    for pid in sorted(sub.positions):
        p = sub.positions[pid]
        assert p.size_base_quantums != 0
        out += struct.pack(">IqqQ", pid, p.size_base_quantums, p.funding_index, p.entry_notional_quote_quantums)
    return out


def _diff_results(a, b) -> str:
    out = []
    for i, (x, y) in enumerate(zip(a.tx_results, b.tx_results)):
        if x != y:
            ex = [(e.type, dict(e.attributes)) for e in x.events]
            ey = [(e.type, dict(e.attributes)) for e in y.events]
            for j, (u, v) in enumerate(zip(ex, ey)):
                if u != v:
                    out.append(f"tx {i} event {j}:\n  new {u}\n  ref {v}")
                    break
            else:
                out.append(f"tx {i}: {len(ex)} vs {len(ey)} events; code {x.code}/{y.code} log {x.log!r}/{y.log!r}")
    return "\n".join(out[:5])


def _diff_stores(t: Twin) -> str:
    a, b = t.new.store._data, t.ref.store._data
    keys = sorted(set(a) | set(b))
    diffs = [k for k in keys if a.get(k) != b.get(k)]
    return "; ".join(f"{k.hex()}: new={a.get(k)!r} ref={b.get(k)!r}" for k in diffs[:4])


# =====================================================================================================================
# 1. Differential: random heavy same-subaccount flows
# =====================================================================================================================

def _twin_state() -> dict:
    """Exchange genesis; subaccount 1 of accounts 1..4 holds 200,000 USDC (SOL, isolated), subaccount 2 holds 2,000
    USDC (small: its big orders fail collateral checks)."""
    state = app_state()
    for account in (1, 2, 3, 4):
        state["subaccounts"]["deposits"].append({"owner": ADDRS[account], "number": 1,
                                                 "amount_quote_quantums": str(200_000 * USD)})
        state["subaccounts"]["deposits"].append({"owner": ADDRS[account], "number": 2,
                                                 "amount_quote_quantums": str(2_000 * USD)})
    return state


ORACLE = {BTC: BTC_PRICE, ETH: ETH_PRICE, SOL: SOL_PRICE}

_order = st.fixed_dictionaries({
    "pair": st.sampled_from([BTC, BTC, BTC, ETH, SOL, SOL]),
    "number": st.sampled_from([None] * 5 + [0, 1, 2, 2]),  # None: the pair's usual subaccount
    "side": st.sampled_from([BUY, SELL]),
    "steps": st.one_of(st.integers(1, 30), st.integers(1, 3000), st.sampled_from([40_000, 300_000, 350_000])),
    "aggressive": st.booleans(),  # a taker priced through the passive quotes, or a passive quote
    "offset": st.integers(0, 4),
    "tif": st.integers(0, 3),  # aggressive: gtc, ioc, ioc, fok; passive: post-only, post-only, gtc, post-only
    "reduce_only": st.sampled_from([False, False, False, True]),
    "client": st.integers(1, 12),
    "kind": st.sampled_from(["place"] * 12 + ["cancel", "replace", "replace", "batch"]),
})
_tx = st.tuples(st.integers(1, 4), st.lists(_order, min_size=1, max_size=7))
_money = st.tuples(st.sampled_from(["deposit", "withdraw", "transfer"]), st.integers(1, 4), st.sampled_from([0, 1, 2]),
                   st.sampled_from([1, 500 * USD, 50_000 * USD]))
_block = st.fixed_dictionaries({
    "txs": st.lists(_tx, min_size=1, max_size=5),
    "money": st.lists(_money, max_size=1),
    "move": st.one_of(st.none(), st.tuples(st.sampled_from([BTC, ETH, SOL]),
                                           st.sampled_from([-100_000, -30_000, 30_000, 100_000]))),
    "funding": st.one_of(st.none(), st.none(), st.tuples(st.sampled_from([BTC, ETH, SOL]), st.integers(-5000, 5000))),
})


def _random_blocks(seed: int, n_blocks: int, pairs=(BTC, BTC, BTC, ETH, SOL, SOL)) -> list[dict]:
    """The same block specs as ``_block`` from a seeded RNG, shaped for many fills per subaccount per block: each
    block has passive quotes (mostly post-only, which run first) and aggressive takers of every time in force."""
    import random

    rng = random.Random(seed)
    blocks = []
    for _ in range(n_blocks):
        txs = []
        for account in rng.sample((1, 2, 3, 4), k=rng.randint(2, 4)):
            for _ in range(rng.choice((1, 1, 2))):
                specs = []
                for _ in range(rng.randint(1, 8)):
                    pair = rng.choice(pairs)
                    specs.append({
                        "pair": pair,
                        "number": rng.choice([None] * 6 + [0, 1, 2, 2, 3]),
                        "side": rng.choice((BUY, SELL)),
                        "steps": rng.choice((rng.randint(1, 30), rng.randint(1, 30), rng.randint(1, 3000),
                                             rng.choice((40_000, 60_000, 300_000, 350_000)))),
                        "aggressive": rng.random() < 0.45,
                        "offset": rng.randint(0, 4),
                        "tif": rng.randint(0, 3),
                        "reduce_only": rng.random() < 0.2,
                        "client": rng.randint(1, 12),
                        "kind": rng.choice(["place"] * 12 + ["cancel", "replace", "replace", "batch", "market",
                                                             "long"]),
                    })
                txs.append((account, specs))
        money = []
        if rng.random() < 0.2:
            money.append((rng.choice(("deposit", "withdraw", "transfer")), rng.randint(1, 4), rng.choice((0, 1, 2)),
                          rng.choice((1, 500 * USD, 50_000 * USD))))
        move = None
        if rng.random() < 0.3:
            move = (rng.choice((BTC, ETH, SOL)), rng.choice((-100_000, -30_000, 30_000, 100_000)))
        funding = None
        if rng.random() < 0.3:
            funding = (rng.choice(sorted(set(pairs))), rng.randint(-5000, 5000))
        blocks.append({"txs": txs, "money": money, "move": move, "funding": funding})
    return blocks


def _action(spec: dict, height: int, prices: dict[int, int]):
    pair = spec["pair"]
    number = spec["number"]
    if number is None:
        number = 1 if pair == SOL else 0
    tick, step = TICK.get(pair, 100_000), STEP.get(pair, 1_000_000)
    oracle = prices[pair]
    # passive: buy 1..5 ticks under the oracle, sell 1..5 over it (passive quotes never cross each other);
    # aggressive: through all of them (5..9 ticks the other way), unless the price is moved by the flow
    away = spec["offset"] + 1
    through = spec["offset"] + 5
    buy = spec["side"] == BUY
    ticks = (through if buy else -through) if spec["aggressive"] else (-away if buy else away)
    price = max(tick, oracle - oracle % tick + ticks * tick)
    cid = spec["client"]
    tif = (0, IOC, IOC, FOK)[spec["tif"]] if spec["aggressive"] else (POST_ONLY, POST_ONLY, 0, POST_ONLY)[spec["tif"]]
    new = place(cid, spec["side"], spec["steps"] * step, price, pair=pair, number=number, tif=tif,
                reduce_only=spec["reduce_only"], height_hint=height)
    if spec["kind"] == "cancel":
        return cancel(cid, pair=pair, number=number)
    if spec["kind"] == "batch":
        return batch_cancel(pair=pair, number=number)
    if spec["kind"] == "replace":
        return cancel_replace(cid, new, pair=pair, number=number)
    if spec["kind"] == "market":  # IOC at the oracle ± 0.5 %
        return place(cid, spec["side"], spec["steps"] * step, 0, pair=pair, number=number, slippage_ppm=5_000,
                     reduce_only=spec["reduce_only"], height_hint=height)
    if spec["kind"] == "long":  # a long-term (good-til-time) resting order, expiring a few blocks later
        return place(cid + 1000, spec["side"], spec["steps"] * step, price, pair=pair, number=number,
                     tif=POST_ONLY if tif == POST_ONLY else 0, reduce_only=spec["reduce_only"],
                     gtbt_ns=GENESIS_TIME_NS + (height + 1 + spec["offset"]) * BLOCK_INTERVAL_NS, height_hint=height)
    return new


def _many_markets_state(n_extra: int = 9) -> dict:
    """_twin_state plus ``n_extra`` cross markets X3..: oracle $1,000 + $100 × k (exponent -6, atomic resolution -9,
    QCE -9: subticks = oracle units; tick $0.1, step 0.001), Large-Cap tier. A subaccount trading them all holds
    more than 8 positions: its stored bytes are then written by splicing changes into the bytes it came from."""
    state = _twin_state()
    for k in range(n_extra):
        i = 3 + k
        state["prices"]["markets"].append({"id": i, "pair": f"X{i}-USD", "exponent": -6, "min_price_change_ppm": 1000,
                                           "price": str(EXTRA_PRICE[i])})
        state["perpetuals"]["perpetuals"].append({"id": i, "ticker": f"X{i}-USD", "market_id": i,
                                                  "atomic_resolution": -9, "liquidity_tier": 0,
                                                  "market_type": "MARKET_TYPE_CROSS"})
        state["clob"]["clob_pairs"].append({"id": i, "perpetual_id": i, "step_base_quantums": "1000000",
                                            "subticks_per_tick": "100000", "quantum_conversion_exponent": -9,
                                            "status": "CLOB_PAIR_STATUS_ACTIVE"})
    return state


def _seed_positions_blocks(pairs) -> list[dict]:
    """Two blocks: accounts 2 and 4 quote 20 steps 1 tick away on every pair (post-only), accounts 1 and 3 take
    them (IOC, 10 steps each). Afterwards every account holds a position in every pair (subaccount 0)."""
    blocks = []
    for maker, taker in ((2, 1), (4, 3)):
        quotes, takes = [], []
        for i, pair in enumerate(pairs):
            side = BUY if i % 2 else SELL
            other = SELL if side == BUY else BUY
            quotes.append({"pair": pair, "number": 0, "side": side, "steps": 20, "aggressive": False, "offset": 0,
                           "tif": 0, "reduce_only": False, "client": 50 + i, "kind": "place"})
            takes.append({"pair": pair, "number": 0, "side": other, "steps": 10, "aggressive": True, "offset": 0,
                          "tif": 1, "reduce_only": False, "client": 50 + i, "kind": "place"})
        blocks.append({"txs": [(maker, quotes), (taker, takes)], "money": [], "move": None, "funding": None})
    return blocks


def _seed_sol_open_interest() -> list[dict]:
    """One block: account 2 (subaccount 1) asks 3,000 SOL ($450,000) post-only at $150.01 and account 1 (subaccount 1)
    buys it IOC: SOL's open interest is then 3,000 SOL, just under the $500,000 lower cap, so the next fills move
    it into the OI-scaled region (IMF from 5 % toward 100 % at $1M)."""
    ask = {"pair": SOL, "number": 1, "side": SELL, "steps": 30_000, "aggressive": False, "offset": 0, "tif": 0,
           "reduce_only": False, "client": 90, "kind": "place"}
    take = dict(ask, side=BUY, aggressive=True, tif=1)
    return [{"txs": [(2, [ask]), (1, [take])], "money": [], "move": None, "funding": None}]


EXTRA_PRICE = {3 + k: 1_000_000_000 + k * 100_000_000 for k in range(9)}


def _run_flow(twin: Twin, blocks: list[dict]) -> None:
    prices = {**ORACLE, **EXTRA_PRICE}
    used: set = set()
    for b in blocks:
        if b["funding"] is not None:
            pid, idx = b["funding"]
            twin.set_funding_index(pid, idx)
        height = twin.height() + 1
        txs = []
        for kind, account, number, amount in b["money"]:
            msg = deposit_msg(account, amount, number) if kind == "deposit" else \
                withdraw_msg(account, amount, number) if kind == "withdraw" else \
                transfer_msg(account, account % 4 + 1, amount, number, number)
            txs.append(msg_tx(account, twin.nonce(account), [msg]))
        for account, specs in b["txs"]:
            actions = []
            for s in specs:
                s = dict(s)
                # client ids of resting orders must be fresh unless cancelled: keep a per-block offset
                if s["kind"] == "place":
                    key = (account, s["pair"], s["client"], height)
                    if key in used:
                        s["client"] += 100
                    used.add(key)
                actions.append(_action(s, height, prices))
            txs.append(orders_tx(account, twin.nonce(account), actions))
        move = None
        if b["move"] is not None and b["move"][0] in ORACLE:
            pair, ppm = b["move"]
            prices[pair] = prices[pair] + prices[pair] * ppm // 1_000_000
            move = {pair: prices[pair]}
        twin.block(txs, move)
    check_global_money(twin.new)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_block, min_size=2, max_size=8))
def test_differential_random_flows_match_the_per_fill_reference(blocks):
    """Random blocks of several txs of several actions each, concentrated on 4 accounts × 3 subaccounts (each
    subaccount is touched many times per block), with refused actions of every kind (FOK not filled, collateral,
    reduce-only, post-only crossing, self-trade, isolated-market constraint, unknown cancels), oracle moves, funding
    index changes before the block, deposits, withdrawals and transfers: every block's app hash, tx results, events
    and the whole store must equal the reference's (working set off, risk from scratch)."""
    twin = Twin(_twin_state())
    _run_flow(twin, blocks)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_block, min_size=2, max_size=5))
def test_differential_with_the_new_chain_restarting_before_every_block(blocks):
    """Same as above, the chain under test restarting (a fresh Application over the same committed state) before
    each block: nothing of the working set may survive in memory across blocks."""
    twin = Twin(_twin_state(), restart_new=True)
    _run_flow(twin, blocks)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1))
def test_differential_seeded_flows_match_the_reference(seed):
    """Seeded random flows shaped for many fills per subaccount per block (passive post-only quotes first, then
    aggressive takers of every time in force, cancel-replaces, reduce-only, oversized orders), 10 blocks: identical
    to the reference block by block."""
    twin = Twin(_twin_state())
    _run_flow(twin, _random_blocks(seed, 10))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1))
def test_differential_more_than_eight_positions_spliced_encoding(seed):
    """11 cross markets; accounts 1..4 first open a position in each (so the stored bytes of their subaccounts are
    written by splicing the changed positions into the bytes of the block's start, app/subaccounts/state._splice),
    then random flows over all of them with funding index changes: identical to the reference, and every stored
    subaccount is the canonical packing of its decoded value."""
    pairs = tuple(range(3, 12)) + (BTC, ETH)
    twin = Twin(_many_markets_state())
    _run_flow(twin, _seed_positions_blocks(pairs) + _random_blocks(seed, 8, pairs))
    assert len(twin.subaccount(1).positions) >= 8


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1))
def test_differential_isolated_market_in_the_oi_scaled_region(seed):
    """SOL's open interest is first brought to 3,000 SOL ($450,000), then random flows mostly on SOL push it past the
    $500,000 lower cap (IMF scaled toward 100 %): OI-scaled tiers ("capped" in the risk sums), isolated pools,
    opening and closing isolated positions, makers and takers failing collateral: identical to the reference."""
    twin = Twin(_twin_state())
    _run_flow(twin, _seed_sol_open_interest() + _random_blocks(seed, 10, (SOL, SOL, SOL, SOL, BTC)))


# =====================================================================================================================
# 2. Rollback and mid-sweep failures, numbers by hand
# =====================================================================================================================

P64K = 64_000 * 100_000  # BTC subticks of $64,000
D = 100_000  # BTC subticks of $1


def _results(twin: Twin, txs, prices=None):
    """The block's user-tx results (tx 0 is the oracle tx)."""
    return twin.block(txs, prices).tx_results[1:]


def _acts(result) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == "order_action"]


def _events(result, kind: str) -> list[dict]:
    return [dict(e.attributes) for e in result.events if e.type == kind]


def _state(twin: Twin, account: int, number: int = 0):
    """(quote balance, {perpetual id: size}) as stored, or None for a deleted (empty) subaccount."""
    sub = twin.subaccount(account, number)
    return None if sub is None else (sub.quote_balance_quote_quantums,
                                      {pid: p.size_base_quantums for pid, p in sub.positions.items()})


def _post_only(twin: Twin, account: int, client: int, side: int, steps: int, subticks: int, pair: int = BTC,
               number: int = 0, reduce_only: bool = False) -> None:
    h = twin.height() + 1
    (res,) = _results(twin, [orders_tx(account, twin.nonce(account), [
        place(client, side, steps * STEP[pair], subticks, pair=pair, number=number, tif=POST_ONLY, height_hint=h,
              reduce_only=reduce_only, gtb=h + 30)])])
    assert _acts(res)[0]["status"] == "resting", _acts(res)


def _asks(twin: Twin, market: str = "BTC-USD") -> list[tuple[int, int]]:
    import json

    res = twin.new.app.query(f"/clob/orderbook/{market}/100", b"")
    return [(int(lv["subticks"]), int(lv["quantums"])) for lv in json.loads(res.value)["asks"]]


def _bids(twin: Twin, market: str = "BTC-USD") -> list[tuple[int, int]]:
    import json

    res = twin.new.app.query(f"/clob/orderbook/{market}/100", b"")
    return [(int(lv["subticks"]), int(lv["quantums"])) for lv in json.loads(res.value)["bids"]]


def test_a_taker_stopped_by_its_collateral_mid_sweep_keeps_its_earlier_fills_of_the_block():
    """Account 1's subaccount 2 holds 2,000 USDC. Asks: account 2 3,000 steps, then account 3 3,200 steps, both at
    $64,000 (1 step = 0.0001 BTC = $6.40). One block, one tx of account 1 (subaccount 2):
    A: IOC buy 1,000 steps: fills account 2 (quote 6,400, taker fee 3.20, maker fee 0.64) -> quote -4,403.20,
       long 1,000 steps.
    B: IOC buy 5,200 steps at $64,000. Pre-check of the full size at its price with the maker fee (100 ppm):
       quote -4,403.20 - 33,280 - 3.328 = -37,686.528, long 6,200 steps = $39,680 -> NC 1,993.472 >= IMR 1,984: ok.
       Fill 1: 2,000 steps from account 2 (12,800, taker fee 6.40) -> quote -17,209.60, long 3,000 steps ($19,200):
       NC 1,990.40 >= IMR 960: ok. Fill 2: 3,200 steps from account 3 (20,480, taker fee 10.24) -> quote
       -37,699.84, long 6,200 ($39,680): NC 1,980.16 < IMR 1,984 (newly undercollateralized): the taker stops.
    So B is partially filled (2,000 steps) and stopped by collateral; its first fill stands (only a refused action
    is undone). Account 1/2: quote -17,209.60, long 3,000 steps; account 2: +19,200 - 0.64 - 1.28 = 119,198.08,
    short 3,000; account 3 untouched with its 3,200-step ask on the book."""
    twin = Twin(_twin_state())
    _post_only(twin, 2, 1, SELL, 3000, P64K)
    _post_only(twin, 3, 1, SELL, 3200, P64K)
    h = twin.height() + 1
    (res,) = _results(twin, [orders_tx(1, twin.nonce(1), [
        place(1, BUY, 1000 * BTC_STEP, P64K, number=2, tif=IOC, height_hint=h),
        place(2, BUY, 5200 * BTC_STEP, P64K, number=2, tif=IOC, height_hint=h)])])
    a, b = _acts(res)
    assert a["status"] == "filled"
    assert b["status"] == "partially_filled" and b["filled_quantums"] == str(2000 * BTC_STEP)
    assert b["stopped"].startswith("collateral: newly_undercollateralized"), b
    assert "1980160000 quote quantums < initial margin 1984000000 quote quantums" in b["stopped"], b["stopped"]
    assert _state(twin, 1, 2) == (-17_209_600_000, {BTC: 3000 * BTC_STEP})
    assert _state(twin, 2) == (119_198_080_000, {BTC: -3000 * BTC_STEP})
    assert _state(twin, 3) == (100_000 * USD, {})
    assert _asks(twin) == [(P64K, 3200 * BTC_STEP)]


def test_a_refused_cancel_replace_placement_undoes_its_fills_and_later_actions_see_the_state_before_it():
    """Account 1 rests a bid of 100 steps at $63,000 (client 7); asks: account 2 300 steps at $64,000, account 3 200
    steps at $64,001. One block, account 1: cancel-replace of client 7 by a FOK buy of 1,000 steps at $64,001 (its
    cancel half runs first and succeeds; its placement fills 300 + 200 in memory, finds no more, and is refused), then
    an IOC buy of 100 steps at $64,000. The bid is gone (the cancel stands), the FOK's fills are undone, and the IOC
    fills 100 steps from account 2 as if the FOK never ran: 100 steps = $640, taker fee 0.32, maker fee 0.064.
    Account 1: 99,359.68, long 100; account 2: 100,639.936, short 100; account 3 untouched; asks 200 @ 64,000 and
    200 @ 64,001."""
    twin = Twin(_twin_state())
    _post_only(twin, 1, 7, BUY, 100, 63_000 * D)
    _post_only(twin, 2, 1, SELL, 300, P64K)
    _post_only(twin, 3, 1, SELL, 200, 64_001 * D)
    h = twin.height() + 1
    fok = place(8, BUY, 1000 * BTC_STEP, 64_001 * D, tif=FOK, height_hint=h)
    (res,) = _results(twin, [orders_tx(1, twin.nonce(1), [
        cancel_replace(7, fok), place(9, BUY, 100 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    statuses = [(x.get("step"), x["status"]) for x in _acts(res)]
    assert statuses == [("cancel", "canceled"), ("place", "rejected"), (None, "filled")], statuses
    assert len(_events(res, "fill")) == 1
    assert _state(twin, 1) == (99_359_680_000, {BTC: 100 * BTC_STEP})
    assert _state(twin, 2) == (100_639_936_000, {BTC: -100 * BTC_STEP})
    assert _state(twin, 3) == (100_000 * USD, {})
    assert _asks(twin) == [(P64K, 200 * BTC_STEP), (64_001 * D, 200 * BTC_STEP)]
    assert _bids(twin) == []


def test_funding_is_settled_once_when_the_first_touch_of_the_block_is_a_refused_action():
    """Account 1 buys 1,000 steps (0.1 BTC = 1e9 base quantums) from account 2 at $64,000: 6,400 USDC, fees 3.20 /
    0.64 -> account 1: 93,596.80, account 2: 106,399.36. A test then sets BTC's funding index to 5: the long owes
    5 × 1e9 / 1e6 = 5,000 quote quantums at its next position change. Account 3 asks 500 steps at $64,000.
    One block, account 1: FOK buy 2,000 steps (fills 500 in memory, settling account 1's funding there, then is
    refused), then IOC buy 500 steps (fills; settles the funding again, now for good). Account 1 pays the 5,000
    exactly once: 93,596,800,000 - 5,000 - 3,200,000,000 - 1,600,000 = 90,395,195,000, long 1,500 steps, funding
    index 5; one funding_settlement event in the block (payment 5000); account 2 is not touched (its settlement
    waits); the pools' unsettled-funding counter is +5,000; account 3: 103,199.68, short 500."""
    twin = Twin(_twin_state())
    _post_only(twin, 2, 1, SELL, 1000, P64K)
    h = twin.height() + 1
    _results(twin, [orders_tx(1, twin.nonce(1), [place(1, BUY, 1000 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    assert _state(twin, 1) == (93_596_800_000, {BTC: 1000 * BTC_STEP})
    _post_only(twin, 3, 1, SELL, 500, P64K)
    twin.set_funding_index(BTC, 5)
    h = twin.height() + 1
    (res,) = _results(twin, [orders_tx(1, twin.nonce(1), [
        place(2, BUY, 2000 * BTC_STEP, P64K, tif=FOK, height_hint=h),
        place(3, BUY, 500 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    assert [x["status"] for x in _acts(res)] == ["rejected", "filled"]
    settlements = _events(res, "funding_settlement")
    assert [(s["owner"], s["payment_quote_quantums"]) for s in settlements] == [(ADDRS[1], "5000")]
    assert _state(twin, 1) == (90_395_195_000, {BTC: 1500 * BTC_STEP})
    assert twin.subaccount(1).positions[BTC].funding_index == 5
    assert twin.subaccount(2).positions[BTC].funding_index == 0
    assert _state(twin, 3) == (103_199_680_000, {BTC: -500 * BTC_STEP})
    assert sk.get_unsettled_funding(BranchStore(twin.new.store)) == 5_000


# =====================================================================================================================
# 3. Reduce-only clamping reads the working set
# =====================================================================================================================

def test_a_reduce_only_taker_clamps_to_the_position_its_earlier_action_of_the_block_left():
    """Account 1 is long 500 steps (bought from account 2 at $64,000: 100,000 - 3,200 - 1.60 = 96,798.40).
    Bids: account 3 300 steps at $64,000, account 4 1,000 steps at $63,999. One block, account 1: IOC sell 300 at
    $64,000 (fills account 3: +1,920, fee 0.96 -> long 200), then reduce-only IOC sell 500 at $63,999: it may only
    reduce the 200 left (not the 500 of the block's start): fill 200 steps at $63,999 = 1,279.98, taker fee
    ceil(0.63999) = 639,990 quote quantums, then it stops (no room). Account 1 ends flat: 96,798,400,000 +
    1,920,000,000 - 960,000 + 1,279,980,000 - 639,990 = 99,996,780,010 and no position; account 4: long 200,
    100,000,000,000 - 1,279,980,000 - 127,998 = 98,719,892,002; 800 steps of its bid stay."""
    twin = Twin(_twin_state())
    _post_only(twin, 2, 1, SELL, 500, P64K)
    h = twin.height() + 1
    _results(twin, [orders_tx(1, twin.nonce(1), [place(1, BUY, 500 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    assert _state(twin, 1) == (96_798_400_000, {BTC: 500 * BTC_STEP})
    _post_only(twin, 3, 1, BUY, 300, P64K)
    _post_only(twin, 4, 1, BUY, 1000, 63_999 * D)
    h = twin.height() + 1
    (res,) = _results(twin, [orders_tx(1, twin.nonce(1), [
        place(2, SELL, 300 * BTC_STEP, P64K, tif=IOC, height_hint=h),
        place(3, SELL, 500 * BTC_STEP, 63_999 * D, tif=IOC, reduce_only=True, height_hint=h)])])
    a, b = _acts(res)
    assert a["status"] == "filled"
    assert b["status"] == "partially_filled" and b["filled_quantums"] == str(200 * BTC_STEP), b
    assert _state(twin, 1) == (99_996_780_010, {})
    assert _state(twin, 4) == (98_719_892_002, {BTC: 200 * BTC_STEP})
    assert _bids(twin) == [(63_999 * D, 800 * BTC_STEP)]


def test_a_reduce_only_maker_clamps_to_the_position_its_owner_changed_earlier_in_the_block():
    """Account 2 buys 500 steps from account 3 at $64,000 (account 2: 96,798.40 long 500; account 3: 103,199.68
    short 500). Resting: account 2's reduce-only ask 500 steps at $64,005, account 4's bid 400 at $64,000, account
    3's ask 1,000 at $64,008. One block: account 2 IOC sells 400 at $64,000 (fills account 4: +2,560, fee 1.28 ->
    long 100, 99,357.12); then account 1 IOC buys 500 at $64,010. Account 2's reduce-only ask may only sell the 100
    steps left: fill 100 at $64,005 (640.05, taker fee 320,025, maker fee 64,005) and the order leaves the book
    (nothing left to reduce); then 400 from account 3 at $64,008 (2,560.32, fees 1,280,160 / 256,032).
    Account 2 ends flat at 99,357,120,000 + 640,050,000 - 64,005 = 99,997,105,995; account 1: long 500,
    100,000,000,000 - 3,200,370,000 - 1,600,185 = 96,798,029,815; account 3: short 900, 103,199,680,000 +
    2,560,320,000 - 256,032 = 105,759,743,968, 600 steps of its ask stay; account 4: long 400, 97,439,744,000."""
    twin = Twin(_twin_state())
    _post_only(twin, 3, 1, SELL, 500, P64K)
    h = twin.height() + 1
    _results(twin, [orders_tx(2, twin.nonce(2), [place(1, BUY, 500 * BTC_STEP, P64K, tif=IOC, height_hint=h)])])
    assert _state(twin, 2) == (96_798_400_000, {BTC: 500 * BTC_STEP})
    assert _state(twin, 3) == (103_199_680_000, {BTC: -500 * BTC_STEP})
    _post_only(twin, 2, 2, SELL, 500, 64_005 * D, reduce_only=True)
    _post_only(twin, 4, 1, BUY, 400, P64K)
    _post_only(twin, 3, 3, SELL, 1000, 64_008 * D)
    h = twin.height() + 1
    r2, r1 = _results(twin, [
        orders_tx(2, twin.nonce(2), [place(3, SELL, 400 * BTC_STEP, P64K, tif=IOC, height_hint=h)]),
        orders_tx(1, twin.nonce(1), [place(1, BUY, 500 * BTC_STEP, 64_010 * D, tif=IOC, height_hint=h)])])
    assert _acts(r2)[0]["status"] == "filled" and _acts(r1)[0]["status"] == "filled"
    fills = [(f["maker"], f["subticks"], f["quantums"]) for f in _events(r1, "fill")]
    assert fills == [(ADDRS[2], str(64_005 * D), str(100 * BTC_STEP)), (ADDRS[3], str(64_008 * D), str(400 * BTC_STEP))]
    removed = _events(r1, "order_removed")
    assert [(x["owner"], x["reason"]) for x in removed] == [(ADDRS[2], "reduce_only_nothing_to_reduce")]
    assert _state(twin, 2) == (99_997_105_995, {})
    assert _state(twin, 1) == (96_798_029_815, {BTC: 500 * BTC_STEP})
    assert _state(twin, 3) == (105_759_743_968, {BTC: -900 * BTC_STEP})
    assert _state(twin, 4) == (97_439_744_000, {BTC: 400 * BTC_STEP})
    assert _asks(twin) == [(64_008 * D, 600 * BTC_STEP)]


# =====================================================================================================================
# 4. Incremental risk through chains of copies, by hand
# =====================================================================================================================

def _fresh_risk(store, sub, view, oi_delta=None):
    """compute_risk of a brand-new state with the same value (no parent, no sums, no raw)."""
    from app.subaccounts.state import SubaccountState

    return sk.compute_risk(store, SubaccountState(sub.quote_balance_quote_quantums, dict(sub.positions)), oi_delta,
                           MarginView(store))


def test_incremental_risk_through_copies_that_flip_close_and_open_equals_the_hand_computation():
    """Values at the oracle: BTC s base quantums -> 6.4 × s quote quantums; ETH -> 3 × s; SOL -> 15 × s.
    IMR = ceil(5 % × |value|), MMR = ceil(60 % × IMR) (Large-Cap), SOL's IMF scaled by its open interest, set here
    to 5,000 SOL = 5e10 base quantums = $750,000: IMF = 50,000 + floor(950,000 × 250k / 500k) = 525,000 ppm; with
    a fill's +1e10 (OI $900,000): 50,000 + floor(950,000 × 400k / 500k) = 810,000 ppm. Quote balance Q = 10,000 USDC.
      s0 (stored): BTC +1e9, ETH -2e9: NC Q + 6.4e9 - 6e9, IMR 320e6 + 300e6, MMR 192e6 + 180e6.
      c1 = s0 + BTC -1.5e9 (flips to -5e8): NC Q - 3.2e9 - 6e9, IMR 160e6 + 300e6, MMR 96e6 + 180e6.
      c2 = c1 + ETH +2e9 (closes): NC Q - 3.2e9, IMR 160e6, MMR 96e6 -- computed only after c3.
      c3 = c2 + BTC +5e8 (closes) + ETH +1e9 (opens) + SOL +1e10 (opens, OI-scaled; c3 computed before c2): NC
           Q + 3e9 + 1.5e11, IMR 150e6 + ceil(1.5e11 × 52.5 %) = 150e6 + 78,750e6, MMR 90e6 + 4,500e6; with the
           fill's OI: SOL IMR ceil(1.5e11 × 81 %) = 121,500e6.
      c4 = c3 + SOL -2e10 (flips to -1e10): NC Q + 3e9 - 1.5e11, IMR 78,900e6, MMR 4,590e6.
      c5 = c4 + SOL +1e10 + ETH -1e9 (both close): NC Q, IMR 0, MMR 0.
      c6 = c5 + SOL +5e9 (reopens): NC Q + 7.5e10, IMR ceil(7.5e10 × 52.5 %) = 39,375e6, MMR ceil(3.75e9 × 60 %)
           = 2,250e6.
      c6 changed in place after its risk was known (+1e9 BTC), then c7 = c6 + ETH +1e9: NC Q + 7.5e10 + 6.4e9 +
           3e9, IMR 39,375e6 + 320e6 + 150e6, MMR 2,250e6 + 192e6 + 90e6.
    Each also equals the risk of a fresh state of the same value."""
    from app.subaccounts.logic import Risk
    from app.subaccounts.state import Position, SubaccountState
    from tests.attack_helpers import raw
    from tests.mutation_helpers import mem_exchange

    r = mem_exchange()
    store = BranchStore(BranchStore(r.store))
    perpetuals_keeper.apply_open_interest_delta(store, SOL, 5 * 10**10)
    sid = SubaccountId(raw(1), 5)
    q = 10_000 * USD
    sk.set_subaccount(store, sid, SubaccountState(q, {BTC: Position(BTC, 10**9, 0, 0),
                                                      ETH: Position(ETH, -2 * 10**9, 0, 0)}))
    view = MarginView(store)
    s0 = sk.prepare(store, sid, view).before

    def step(parent, *deltas):
        c = parent.copy()
        for pid, d in deltas:
            sk.apply_position_delta(c, pid, 0, d, 0)
        return c

    def check(sub, nc, imr, mmr, oi_delta=None):
        got = sk.compute_risk(store, sub, oi_delta, view)
        assert got == Risk(nc, imr, mmr), (got, (nc, imr, mmr))
        assert got == _fresh_risk(store, sub, view, oi_delta)

    check(s0, q + 400_000_000, 620_000_000, 372_000_000)
    c1 = step(s0, (BTC, -15 * 10**8))
    check(c1, q - 9_200_000_000, 460_000_000, 276_000_000)
    c2 = step(c1, (ETH, 2 * 10**9))
    c3 = step(c2, (BTC, 5 * 10**8), (ETH, 10**9), (SOL, 10**10))
    check(c3, q + 153_000_000_000, 78_900_000_000, 4_590_000_000)
    check(c3, q + 153_000_000_000, 121_650_000_000, 4_590_000_000, (SOL, 10**10))
    check(c2, q - 3_200_000_000, 160_000_000, 96_000_000)
    c4 = step(c3, (SOL, -2 * 10**10))
    check(c4, q - 147_000_000_000, 78_900_000_000, 4_590_000_000)
    c5 = step(c4, (SOL, 10**10), (ETH, -(10**9)))
    check(c5, q, 0, 0)
    c6 = step(c5, (SOL, 5 * 10**9))
    check(c6, q + 75_000_000_000, 39_375_000_000, 2_250_000_000)
    sk.apply_position_delta(c6, BTC, 0, 10**9, 0)
    c7 = step(c6, (ETH, 10**9))
    check(c7, q + 84_400_000_000, 39_845_000_000, 2_532_000_000)
    check(c6, q + 81_400_000_000, 39_695_000_000, 2_442_000_000)


def test_working_set_flush_splices_accumulated_changes_into_the_block_start_bytes():
    """A subaccount with 9 positions in perpetuals 3..11 (X markets, cross), each +1,000 base quantums, funding index
    0, entry notional 1,000, quote 5,000 USDC. Perpetuals 3 and 4 get funding index 7 before the order phase: the
    first load settles both (each owes 7 × 1,000 / 1e6: Σ -14,000 ppm -> floor -> -1 quote quantum). Then, through
    prepare / apply_position_delta / persist in the working set: 5 closes (-1,000), 5 reopens (+500 for 300: entry
    300); 6 grows (+1,000 for 2,000: entry 3,000); 7 flips (-1,500 for 3,000: size -500, entry floor(3,000 × 500 /
    1,500) = 1,000); 8 reduces (-400: entry floor(1,000 × 600 / 1,000) = 600); an action closing 9 is rolled back;
    10 grows three times by 1 for 1 (entry 1,003). The changed list then exceeds 8 entries and is deduplicated by a
    copy, the flushed bytes are spliced into the block-start bytes: they must equal the plain packing of quote
    5,000,000,000 - 1 and the positions (3: 1,000/7/1,000, 4: 1,000/7/1,000, 5: 500/0/300, 6: 2,000/0/3,000,
    7: -500/0/1,000, 8: 600/0/600, 9: 1,000/0/1,000, 10: 1,003/0/1,003, 11: 1,000/0/1,000)."""
    from app.subaccounts.state import Position, SubaccountState
    from tests.attack_helpers import raw

    r = MemReplica()
    r.init_chain(_many_markets_state())
    r.block([])
    base = BranchStore(r.store)
    sid = SubaccountId(raw(1), 9)
    q = 5_000 * USD
    sk.set_subaccount(base, sid, SubaccountState(q, {p: Position(p, 1000, 0, 1000) for p in range(3, 12)}))
    perpetuals_keeper.set_funding_index(base, 3, 7)
    perpetuals_keeper.set_funding_index(base, 4, 7)
    store = BranchStore(base)
    view = MarginView(store)
    _phase_start(view)

    def fill(pid, size, quote, refuse=False):
        _action_start(view)
        prep = sk.prepare(store, sid, view)
        sk.apply_position_delta(prep.after, pid, view.info(pid).funding_index, size, quote)
        sk.compute_risk(store, prep.after, None, view)
        sk.persist(store, prep, view)
        if refuse:
            _action_rollback(view)

    fill(5, -1000, 0)
    fill(5, 500, -300)
    fill(6, 1000, -2000)
    fill(7, -1500, 3000)
    fill(8, -400, 0)
    fill(9, -1000, 0, refuse=True)
    for _ in range(3):
        fill(10, 1, -1)
    sk.flush_working_set(store, view)
    want = SubaccountState(q - 1, {
        3: Position(3, 1000, 7, 1000), 4: Position(4, 1000, 7, 1000), 5: Position(5, 500, 0, 300),
        6: Position(6, 2000, 0, 3000), 7: Position(7, -500, 0, 1000), 8: Position(8, 600, 0, 600),
        9: Position(9, 1000, 0, 1000), 10: Position(10, 1003, 0, 1003), 11: Position(11, 1000, 0, 1000)})
    assert store.get(sub_keys.subaccount_key(sid.owner, sid.number)) == _pack(want)
    assert sk.get_unsettled_funding(store) == 1


# =====================================================================================================================
# 5. Empty subaccounts inside the phase; restart / replica agreement
# =====================================================================================================================

def test_a_subaccount_emptied_and_recreated_in_one_block_and_one_emptied_for_good():
    """Fees 0 (one fee tier 0/0). Account 1's subaccounts 3 and 4 hold 100 USDC each. Resting: account 2 asks 200
    BTC steps at $64,000, account 3 bids 200 steps at $54,000, account 4 asks 1 ETH (1,000 steps) at $2,700.
    One block, account 1: subaccount 3 buys 100 steps at $64,000 (-640: quote -540, long $640, NC 100 >= IMR 32),
    sells them at $54,000 (+540: quote 0, no position: empty), then buys 1 ETH at $2,700 (quote -2,700, ETH worth
    $3,000: NC 300 >= IMR 150); subaccount 4 buys 100 at $64,000 and sells at $54,000 (empty at the end: deleted).
    Stored after the block: 1/3 = (-2,700,000,000, ETH +1e9, entry 2,700,000,000); 1/4 absent; account 2:
    101,280 short 200 steps; account 3: 98,920 long 200; account 4: 102,700 short 1 ETH."""
    from app.clob.genesis import DEFAULT_PARAMS

    state = _twin_state()
    state["clob"]["params"] = {**DEFAULT_PARAMS, "fee_tiers": [{"name": "1", "maker_fee_ppm": 0, "taker_fee_ppm": 0}]}
    for number in (3, 4):
        state["subaccounts"]["deposits"].append({"owner": ADDRS[1], "number": number,
                                                 "amount_quote_quantums": str(100 * USD)})
    twin = Twin(state)
    _post_only(twin, 2, 1, SELL, 200, P64K)
    _post_only(twin, 3, 1, BUY, 200, 54_000 * D)
    _post_only(twin, 4, 1, SELL, 1000, 2_700 * USD, pair=ETH)
    h = twin.height() + 1
    (res,) = _results(twin, [orders_tx(1, twin.nonce(1), [
        place(1, BUY, 100 * BTC_STEP, P64K, number=3, tif=IOC, height_hint=h),
        place(2, SELL, 100 * BTC_STEP, 54_000 * D, number=3, tif=IOC, height_hint=h),
        place(3, BUY, 1000 * ETH_STEP, 2_700 * USD, pair=ETH, number=3, tif=IOC, height_hint=h),
        place(4, BUY, 100 * BTC_STEP, P64K, number=4, tif=IOC, height_hint=h),
        place(5, SELL, 100 * BTC_STEP, 54_000 * D, number=4, tif=IOC, height_hint=h)])])
    assert [x["status"] for x in _acts(res)] == ["filled"] * 5
    assert _state(twin, 1, 3) == (-2_700_000_000, {ETH: 10**9})
    assert twin.subaccount(1, 3).positions[ETH].entry_notional_quote_quantums == 2_700_000_000
    assert _state(twin, 1, 4) is None
    assert _state(twin, 2) == (101_280_000_000, {BTC: -200 * BTC_STEP})
    assert _state(twin, 3) == (98_920_000_000, {BTC: 200 * BTC_STEP})
    assert _state(twin, 4) == (102_700_000_000, {ETH: -(10**9)})
    check_global_money(twin.new)


def _heavy_block_txs(nonces, h: int) -> list[bytes]:
    """Account 2 quotes 12 asks and account 3 12 bids (post-only, 5 steps each, $1 apart around $64,000); account 1
    sends 16 IOC orders alternating buy / sell through them, a FOK that cannot fill and a reduce-only sell; account 4
    the same mirrored; all in one block."""
    asks = [place(100 + i, SELL, 5 * BTC_STEP, (64_001 + i) * D, tif=POST_ONLY, height_hint=h) for i in range(12)]
    bids = [place(100 + i, BUY, 5 * BTC_STEP, (63_999 - i) * D, tif=POST_ONLY, height_hint=h) for i in range(12)]
    a1 = [place(200 + i, BUY if i % 2 == 0 else SELL, 3 * BTC_STEP, (64_020 if i % 2 == 0 else 63_980) * D, tif=IOC,
                height_hint=h) for i in range(16)]
    a1.append(place(300, BUY, 1000 * BTC_STEP, 64_020 * D, tif=FOK, height_hint=h))
    a1.append(place(301, SELL, 50 * BTC_STEP, 63_980 * D, tif=IOC, reduce_only=True, height_hint=h))
    a4 = [place(200 + i, SELL if i % 2 == 0 else BUY, 4 * BTC_STEP, (63_980 if i % 2 == 0 else 64_020) * D, tif=IOC,
                height_hint=h) for i in range(16)]
    a4.append(place(300, SELL, 1000 * BTC_STEP, 63_980 * D, tif=FOK, height_hint=h))
    return [orders_tx(2, nonces(2), asks), orders_tx(3, nonces(3), bids), orders_tx(1, nonces(1), a1),
            orders_tx(4, nonces(4), a4)]


def test_heavy_same_subaccount_block_agrees_across_replica_modes_and_with_the_reference(tmp_path):
    """The block of _heavy_block_txs, twice, on the lock-step replicas of tests/attack_helpers.LockStep (plain;
    FinalizeBlock twice; another block first; restart before and during the block): same app hash, results and
    events everywhere; and the same app hash as the in-memory twin's reference (working set off, fill-by-fill
    writes). Account 1's 16 IOCs of 3 steps alternate and cancel out: it nets +3 × (8 - 8) = 0 steps before the FOK
    (refused: only 60 - 24 = 36 ask steps can be left) and the reduce-only sell (nothing to reduce: refused)."""
    from tests.attack_helpers import LockStep, Nonces

    chain = LockStep(tmp_path, app_state())
    twin = Twin(app_state())
    n1, n2 = Nonces(), Nonces()
    for _ in range(2):
        h = chain.height() + 1
        assert twin.height() + 1 == h
        results = chain.block(_heavy_block_txs(n1, h))
        twin.block(_heavy_block_txs(n2, h))
        assert chain.main.app.info() == twin.ref.app.info()
        assert len([e for t in results for e in t.events if e.type == "fill"]) >= 30
    sub = twin.subaccount(1)
    assert sub is None or BTC not in sub.positions or sub.positions[BTC].size_base_quantums == 0
    check_global_money(chain.main)
    chain.close()


def test_a_refused_fok_on_an_oi_scaled_market_leaves_the_open_interest_later_checks_see():
    """SOL (isolated, IMF 5 % up to $500,000 of open interest, then + 95 % × (OI - 500k) / 500k). Setup: account 1
    (subaccount 1) buys 3,000 SOL from account 2 (subaccount 1) at $150: OI 3,000 SOL = $450,000. Account 2 then
    asks 1,000 SOL more at $150. Account 4's subaccount 3 holds 1,000 USDC.
    One block: account 3 (subaccount 1) FOK buys 2,000 SOL at $150: fills the 1,000 in memory (OI would be 4,000)
    and is refused. Then account 4 (subaccount 3) IOC buys 100 SOL at $150 ($15,000, taker fee 7.50). With the OI
    the refused FOK must not have left (3,000 + 100 = 3,100 SOL = $465,000 < $500,000): IMF 5 %, IMR 750 <=
    NC 1,000 - 7.50 = 992.50: filled. (With the FOK's 1,000 SOL left in: OI 4,100 SOL = $615,000, IMF 26.85 %,
    IMR 4,027.50: refused.) Account 4/3: 1,000 - 15,000 - 7.50 = -14,007.50, long 100 SOL; account 2/1: 200,000 +
    450,000 - 45 + 15,000 - 1.50 = 664,953.50, short 3,100 SOL; account 3/1 untouched; SOL OI 3,100 SOL; 900 SOL
    of account 2's ask left."""
    from app.store import BranchStore as _B

    state = _twin_state()
    state["subaccounts"]["deposits"].append({"owner": ADDRS[4], "number": 3, "amount_quote_quantums": str(1_000 * USD)})
    twin = Twin(state)
    p150 = 150 * 10**8
    sol = 10  # steps per SOL
    _post_only(twin, 2, 1, SELL, 3000 * sol, p150, pair=SOL, number=1)
    h = twin.height() + 1
    (res,) = _results(twin, [orders_tx(1, twin.nonce(1), [
        place(1, BUY, 3000 * sol * SOL_STEP, p150, pair=SOL, number=1, tif=IOC, height_hint=h)])])
    assert _acts(res)[0]["status"] == "filled"
    _post_only(twin, 2, 2, SELL, 1000 * sol, p150, pair=SOL, number=1)
    h = twin.height() + 1
    r3, r4 = _results(twin, [
        orders_tx(3, twin.nonce(3), [place(1, BUY, 2000 * sol * SOL_STEP, p150, pair=SOL, number=1, tif=FOK,
                                           height_hint=h)]),
        orders_tx(4, twin.nonce(4), [place(1, BUY, 100 * sol * SOL_STEP, p150, pair=SOL, number=3, tif=IOC,
                                           height_hint=h)])])
    assert _acts(r3)[0]["status"] == "rejected"
    assert _acts(r4)[0]["status"] == "filled", _acts(r4)
    assert _state(twin, 4, 3) == (-14_007_500_000, {SOL: 100 * 10**7})
    assert _state(twin, 2, 1) == (664_953_500_000, {SOL: -3100 * 10**7})
    assert _state(twin, 3, 1) == (200_000 * USD, {})
    assert perpetuals_keeper.get_perpetual(_B(twin.new.store), SOL).open_interest_base_quantums == 3100 * 10**7
    assert _asks(twin, "SOL-USD") == [(p150, 900 * 10**7)]
    check_global_money(twin.new)


def test_placement_validation_reads_the_working_set_reduce_only_and_isolated_rule():
    """Resting: account 2 asks 100 BTC steps at $64,000, account 3 bids 100 steps at $63,999, account 4 (subaccount
    1) asks 10 SOL at $150. One tx of account 1, flat at the block's start:
    A: IOC buy 100 steps (640, fee 0.32) -> long 100;
    B: reduce-only IOC sell 100 steps at $63,999: valid only if its validation sees A's long (the store still says
       flat): fills account 3's bid (639.99, fee ceil(0.319995 USDC) = 319,995) -> flat at 100,000,000,000 -
       640,320,000 + 639,990,000 - 319,995 = 99,999,350,005;
    C: subaccount 1 IOC buys 10 SOL (1,500, fee 0.75) -> an isolated SOL position;
    D: subaccount 1 IOC buys 100 BTC steps: refused by the isolated-market rule (604), which must see C's position.
    Account 1/1: 200,000 - 1,500.75 = 198,499.25, long 10 SOL; account 2: short 100, 100,639.936; account 3: long
    100, 100,000,000,000 - 639,990,000 - 63,999 = 99,359,946,001."""
    twin = Twin(_twin_state())
    _post_only(twin, 2, 1, SELL, 100, P64K)
    _post_only(twin, 3, 1, BUY, 100, 63_999 * D)
    _post_only(twin, 4, 1, SELL, 100, 150 * 10**8, pair=SOL, number=1)
    h = twin.height() + 1
    (res,) = _results(twin, [orders_tx(1, twin.nonce(1), [
        place(1, BUY, 100 * BTC_STEP, P64K, tif=IOC, height_hint=h),
        place(2, SELL, 100 * BTC_STEP, 63_999 * D, tif=IOC, reduce_only=True, height_hint=h),
        place(3, BUY, 100 * SOL_STEP, 150 * 10**8, pair=SOL, number=1, tif=IOC, height_hint=h),
        place(4, BUY, 100 * BTC_STEP, 64_010 * D, number=1, tif=IOC, height_hint=h)])])
    acts = _acts(res)
    assert [x["status"] for x in acts] == ["filled", "filled", "filled", "rejected"], acts
    assert acts[3]["code"] == "604", acts[3]
    assert _state(twin, 1) == (99_999_350_005, {})
    assert _state(twin, 1, 1) == (198_499_250_000, {SOL: 10 * 10**7})
    assert _state(twin, 2) == (100_639_936_000, {BTC: -100 * BTC_STEP})
    assert _state(twin, 3) == (99_359_946_001, {BTC: 100 * BTC_STEP})
