"""Helpers for tests/test_exchange_attack.py: chains with odd genesis, several replicas driven in lock-step (plain,
FinalizeBlock twice before Commit, restart before and during every block), whole-state money checks (global and per
collateral pool), and a random order flow. Nothing here changes app/ behaviour; it only reads committed state."""

from __future__ import annotations

import copy
import json
import random

from perpchain.v1 import tx_pb2

from app.bank import keeper as bank_keeper
from app.lib.address import decode_address_or_none
from app.perpetuals import keeper as perpetuals_keeper
from app.store import BranchStore
from app.subaccounts import keeper as subaccounts_keeper
from app.subaccounts.logic import ZERO_RISK
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
    actions_of,
    cancel,
    exchange_app_state,
    msg_tx,
    orders_tx,
    place,
)
from tests.helpers import ADDRS, BLOCK_INTERVAL_NS, GENESIS_TIME_NS, ONE_USDC, Replica

USD = ONE_USDC
SOL_PRICE = 15_000_000_000  # $150 (exponent -8); SOL subticks = oracle units (exponent -8 + 9 - 7 + 6 = 0)
SOL_TICK = 1_000_000  # subticks = $0.01
SOL_STEP = 1_000_000  # base quantums = 0.1 SOL
ONE_SOL = 10_000_000
ETH_PRICE = 3_000_000_000  # $3,000 (exponent -6); ETH subticks = oracle units
ETH_TICK = 100_000  # $0.1
ETH_STEP = 1_000_000  # 0.001 ETH
BTC_TICK = 100_000  # $1


def app_state(**kwargs) -> dict:
    """exchange_app_state, deep-copied: exchange_helpers shares its module-level lists (mutating them would leak
    into every later test)."""
    return copy.deepcopy(exchange_app_state(**kwargs))


def committed(r: Replica) -> BranchStore:
    return BranchStore(r.store)


def raw(account: int) -> bytes:
    return decode_address_or_none(ADDRS[account])


def deposit_msg(account: int, amount: int, number: int = 0) -> tx_pb2.Msg:
    return tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(owner=ADDRS[account], subaccount_number=number,
                                                amount_quote_quantums=amount))


def withdraw_msg(account: int, amount: int, number: int = 0, recipient: str = "") -> tx_pb2.Msg:
    return tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(owner=ADDRS[account], subaccount_number=number,
                                                  amount_quote_quantums=amount, recipient=recipient))


def transfer_msg(account: int, to: int, amount: int, number: int = 0, to_number: int = 0) -> tx_pb2.Msg:
    return tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[account], subaccount_number=number,
                                                  recipient_owner=ADDRS[to], recipient_subaccount_number=to_number,
                                                  amount_quote_quantums=amount))


def batch_cancel(pair: int = BTC, number: int = 0, client_ids=(), flags: int = 0) -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(subaccount_number=number, clob_pair_id=pair,
                                                              client_ids=list(client_ids), order_flags=flags))


def cancel_replace(old_client_id: int, new: tx_pb2.OrderAction, pair: int = BTC, number: int = 0,
                   flags: int = 0) -> tx_pb2.OrderAction:
    return tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=tx_pb2.OrderId(subaccount_number=number, client_id=old_client_id, clob_pair_id=pair,
                                order_flags=flags),
        place=new.place))


class Nonces:
    def __init__(self) -> None:
        self._n: dict[int, int] = {}

    def __call__(self, account: int) -> int:
        self._n[account] = self._n.get(account, 0) + 1
        return self._n[account]


# --- whole-state money checks ----------------------------------------------------------------------------------------

def pools(store) -> list[bytes]:
    return [subaccounts_keeper.CROSS_POOL] + [subaccounts_keeper.isolated_pool(p.id)
                                              for p in perpetuals_keeper.iter_perpetuals(store)
                                              if p.market_type == perpetuals_keeper.ISOLATED]


def pool_breakdown(r: Replica) -> dict[bytes, tuple[int, int]]:
    """pool -> (its bank balance, Σ quote balances of the subaccounts whose collateral it holds)."""
    store = committed(r)
    members: dict[bytes, int] = {p: 0 for p in pools(store)}
    for _, sub in subaccounts_keeper.iter_subaccounts(store):
        pool = subaccounts_keeper.pool_of(store, sub)
        members[pool] = members.get(pool, 0) + sub.quote_balance_quote_quantums
    return {p: (bank_keeper.get_balance(store, p), q) for p, q in members.items()}


def check_global_money(r: Replica) -> None:
    """What the chain promises (and what its per-block check sees): USDC supply is the sum of balances; the pools
    together hold Σ quote balances + unsettled funding; per perpetual Σ long = Σ short = open interest."""
    store = committed(r)
    bank_keeper.check_supply(store)
    held = sum(bank_keeper.get_balance(store, p) for p in pools(store))
    quotes = 0
    longs: dict[int, int] = {}
    shorts: dict[int, int] = {}
    for _, sub in subaccounts_keeper.iter_subaccounts(store):
        quotes += sub.quote_balance_quote_quantums
        for pid, p in sub.positions.items():
            if p.size_base_quantums > 0:
                longs[pid] = longs.get(pid, 0) + p.size_base_quantums
            else:
                shorts[pid] = shorts.get(pid, 0) - p.size_base_quantums
    assert held == quotes + subaccounts_keeper.get_unsettled_funding(store), (held, quotes)
    for perp in perpetuals_keeper.iter_perpetuals(store):
        assert longs.get(perp.id, 0) == shorts.get(perp.id, 0), perp.id
        assert perp.open_interest_base_quantums == longs.get(perp.id, 0), perp.id


def risks(r: Replica) -> dict:
    """(owner, number) -> Risk at the committed oracle prices (funding settled as of now)."""
    store = committed(r)
    out = {}
    for sid, sub in subaccounts_keeper.iter_subaccounts(store):
        subaccounts_keeper.settle_funding(store, sid, sub)
        out[(sid.owner, sid.number)] = subaccounts_keeper.compute_risk(store, sub) if sub.positions else \
            ZERO_RISK._replace(net_collateral_quote_quantums=sub.quote_balance_quote_quantums)
    return out


def best_prices(r: Replica, market: str) -> tuple[int | None, int | None]:
    res = r.app.query(f"/clob/orderbook/{market}/1", b"")
    assert res.code == 0, res.log
    b = json.loads(res.value)
    bid = int(b["bids"][0]["subticks"]) if b["bids"] else None
    ask = int(b["asks"][0]["subticks"]) if b["asks"] else None
    return bid, ask


# --- several replicas in lock-step ------------------------------------------------------------------------------------

class LockStep:
    """Replicas fed the same proposals: 'plain' (finalize + commit), 'double' (FinalizeBlock twice, a query in
    between, then Commit), 'other' (first FinalizeBlock a different block of the same height -- the user txs in
    reverse order, as after a round change -- then the decided one), 'restart' (restart before the block,
    finalize, restart again -- the uncommitted block is lost -- finalize again, commit). Every block's app hash
    and tx results must agree."""

    MODES = ("plain", "double", "other", "restart")

    def __init__(self, tmp_path, state: dict) -> None:
        self.replicas = {m: Replica(tmp_path / m) for m in self.MODES}
        for r in self.replicas.values():
            r.init_chain(copy.deepcopy(state), vote_extensions_enable_height=1)
            r.block([])

    @property
    def main(self) -> Replica:
        return self.replicas["plain"]

    def height(self) -> int:
        return self.main.app.info()[0]

    def block(self, txs, prices: dict[int, int] | None = None):
        from tests.oracle_helpers import extended_commit

        height = self.height() + 1
        t = GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS
        ext, last = extended_commit(height - 1, [dict(prices or {})] * 4)
        proposal = self.main.app.prepare_proposal(list(txs), 1 << 22, height, ext)
        results = {}
        for mode, r in self.replicas.items():
            if mode == "restart":
                r.restart()
            assert r.app.process_proposal(proposal, height, last)
            first = proposal[:1] + proposal[1:][::-1] if mode == "other" else proposal
            res = r.app.finalize_block(height, t, first, last)
            if mode == "double":
                r.app.query("/clob/orderbook/BTC-USD", b"")  # the uncommitted-book path of the query
                res = r.app.finalize_block(height, t, proposal, last)
            elif mode == "other":
                res = r.app.finalize_block(height, t, proposal, last)
            elif mode == "restart":
                r.restart()
                assert r.app.process_proposal(proposal, height, last)
                res = r.app.finalize_block(height, t, proposal, last)
            r.app.commit()
            results[mode] = res
        ref = results["plain"]
        for mode, res in results.items():
            assert res.app_hash == ref.app_hash, f"{mode} diverged at height {height}"
            assert res.tx_results == ref.tx_results, f"{mode} tx results differ at height {height}"
            assert res.events == ref.events, f"{mode} block events differ at height {height}"
        assert ref.tx_results[0].code == 0, ref.tx_results[0].log  # the oracle tx
        return ref.tx_results[1:]

    def close(self) -> None:
        for r in self.replicas.values():
            r.close()


# --- a random order flow ----------------------------------------------------------------------------------------------

MARKETS = {  # pair -> (tick, step, max steps per order)
    BTC: (BTC_TICK, BTC_STEP, 2_000),
    ETH: (ETH_TICK, ETH_STEP, 3_000),
    SOL: (SOL_TICK, SOL_STEP, 300),
}
ORACLE_MARKET = {BTC: BTC, ETH: ETH, SOL: SOL}


class RandomFlow:
    """Random but reproducible traffic of accounts 1..4 over subaccounts 0..2 on BTC, ETH (cross) and SOL
    (isolated): limit orders of every time in force around the oracle, market orders, reduce-only, cancels,
    batch cancels, cancel-replaces, deposits, withdrawals (to self and to others), transfers between subaccounts
    (also across collateral pools), and oracle moves."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nonce = Nonces()
        self.prices = {BTC: BTC_PRICE, ETH: ETH_PRICE, SOL: SOL_PRICE}
        self.client = 0
        self.placed: dict[tuple[int, int, int], list[int]] = {}  # (account, number, pair) -> client ids

    def _order(self, account: int, height: int) -> tx_pb2.OrderAction:
        rng = self.rng
        number = rng.choice((0, 0, 1, 2))
        # subaccount 2 trades SOL (isolated), the others BTC and ETH; 1 in 10 orders tries the other kind
        pair = SOL if (number == 2) != (rng.random() < 0.1) else rng.choice((BTC, BTC, ETH))
        tick, step, max_steps = MARKETS[pair]
        side = rng.choice((BUY, SELL))
        size = step * rng.randint(1, rng.choice((10, max_steps)))
        self.client += 1
        cid = self.client
        self.placed.setdefault((account, number, pair), []).append(cid)
        if rng.random() < 0.1:
            return place(cid, side, size, 0, pair=pair, number=number, slippage_ppm=rng.choice((1, 10_000, 400_000)),
                         reduce_only=rng.random() < 0.3, height_hint=height)
        oracle = self.prices[pair]
        offset = rng.randint(-30, 30) * tick
        price = max(tick, oracle - oracle % tick + offset)
        tif = rng.choice((0, 0, IOC, POST_ONLY, FOK))
        long_term = tif in (0, POST_ONLY) and rng.random() < 0.2
        return place(cid, side, size, price, pair=pair, number=number, tif=tif, reduce_only=rng.random() < 0.15,
                     gtb=0 if long_term else height + rng.randint(0, 3),
                     gtbt_ns=GENESIS_TIME_NS + (height + rng.randint(1, 4)) * BLOCK_INTERVAL_NS if long_term else 0,
                     height_hint=height)

    def _cancel(self, account: int, height: int) -> tx_pb2.OrderAction:
        rng = self.rng
        keys = [k for k in self.placed if k[0] == account]
        if not keys:
            return batch_cancel()
        acct, number, pair = rng.choice(keys)
        cid = rng.choice(self.placed[(acct, number, pair)])
        kind = rng.random()
        if kind < 0.4:
            return cancel(cid, pair=pair, number=number, flags=rng.choice((0, 0, 64)))
        if kind < 0.6:
            ids = self.placed[(acct, number, pair)]
            return batch_cancel(pair=pair, number=number, client_ids=rng.sample(ids, k=min(3, len(ids))))
        if kind < 0.7:
            return batch_cancel(pair=pair, number=number, flags=rng.choice((0, 64)))
        new = self._order(account, height)
        return cancel_replace(cid, new, pair=pair, number=number)

    def _money_msg(self, account: int) -> tx_pb2.Msg:
        rng = self.rng
        number = rng.choice((0, 1, 2))
        amount = rng.choice((1, 100 * USD, 5_000 * USD, 40_000 * USD))
        kind = rng.random()
        if kind < 0.3:
            return deposit_msg(account, amount, number)
        if kind < 0.6:
            recipient = rng.choice(("", ADDRS[rng.randint(1, 5)]))
            return withdraw_msg(account, amount, number, recipient)
        return transfer_msg(account, rng.randint(1, 4), amount, number, rng.choice((0, 1, 2)))

    def block_txs(self, height: int) -> tuple[list[bytes], dict[int, int] | None]:
        rng = self.rng
        txs = []
        for account in rng.sample((1, 2, 3, 4), k=4):
            if rng.random() < 0.25:
                txs.append(msg_tx(account, self.nonce(account), [self._money_msg(account)]))
            actions = []
            for _ in range(rng.randint(0, 8)):
                actions.append(self._order(account, height) if rng.random() < 0.7 else self._cancel(account, height))
            if actions:
                txs.append(orders_tx(account, self.nonce(account), actions))
        prices = None
        if rng.random() < 0.3:
            prices = {}
            for pair in rng.sample((BTC, ETH, SOL), k=rng.randint(1, 3)):
                move = rng.choice((-50_000, -20_000, -5_000, 5_000, 20_000, 50_000))
                self.prices[pair] = self.prices[pair] + self.prices[pair] * move // 1_000_000
                prices[ORACLE_MARKET[pair]] = self.prices[pair]
        return txs, prices


def random_flow_state() -> dict:
    """The exchange genesis plus 50,000 USDC in subaccounts 1 and 2 of accounts 1..4."""
    state = app_state()
    for account in (1, 2, 3, 4):
        for number in (1, 2):
            state["subaccounts"]["deposits"].append({"owner": ADDRS[account], "number": number,
                                                     "amount_quote_quantums": str(50_000 * USD)})
    return state


def statuses(result) -> list[str]:
    return [a.get("status") for a in actions_of(result)]
