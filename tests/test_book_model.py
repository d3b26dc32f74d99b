"""Hypothesis stateful test: the on-chain book (through real blocks) against a tiny reference model.

The model knows only price-time priority, fills at the maker's price, self-trade prevention, post-only, IOC, FOK
and cancels; sizes are small enough that no collateral check ever binds. After every block: the book equals the
model's (price levels and sizes), it is never crossed, fills conserve size, USDC is conserved including fees
(bank supply, collateral pool = Σ quote balances, fee collector = Σ fees), and open interest long = short.
"""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from app.bank.keeper import FEE_COLLECTOR_ADDRESS
from app.subaccounts.keeper import CROSS_POOL
from tests.exchange_helpers import (
    BTC_STEP,
    BUY,
    FOK,
    IOC,
    ONE_DOLLAR_BTC,
    POST_ONLY,
    SELL,
    actions_of,
    book,
    cancel,
    exchange_app_state,
    fills_of,
    orders_tx,
    place,
    subaccount,
)
from tests.helpers import ADDRS, Replica

ACCOUNTS = [1, 2, 3, 4]
TIFS = {"gtc": 0, "ioc": IOC, "post": POST_ONLY, "fok": FOK}


class BookModel:
    def __init__(self) -> None:
        self.orders: dict[tuple[int, int], dict] = {}  # (account, client id) -> side, price, remaining, seq
        self.seq = 0

    def _opposite(self, side: int) -> list[tuple[tuple[int, int], dict]]:
        other = [(k, o) for k, o in self.orders.items() if o["side"] != side]
        if side == BUY:  # asks, lowest first
            return sorted(other, key=lambda ko: (ko[1]["price"], ko[1]["seq"]))
        return sorted(other, key=lambda ko: (-ko[1]["price"], ko[1]["seq"]))

    @staticmethod
    def _crosses(side: int, limit: int, price: int) -> bool:
        return price <= limit if side == BUY else price >= limit

    def _match(self, account: int, side: int, limit: int, size: int, dry: bool) -> tuple[int, list]:
        """(filled, fills as (maker account, price, size)); removes self-trades and fills unless dry."""
        remaining, fills = size, []
        for key, o in self._opposite(side):
            if remaining == 0 or not self._crosses(side, limit, o["price"]):
                break
            if key[0] == account:
                if not dry:
                    del self.orders[key]
                continue
            fill = min(remaining, o["remaining"])
            fills.append((key[0], o["price"], fill))
            remaining -= fill
            if not dry:
                o["remaining"] -= fill
                if o["remaining"] == 0:
                    del self.orders[key]
        return size - remaining, fills

    def expire(self, height: int) -> None:
        """Short-term orders leave the book in the first block above their good-til-block."""
        for key in [k for k, o in self.orders.items() if o["gtb"] < height]:
            del self.orders[key]

    def place(self, account: int, cid: int, side: int, price: int, size: int, tif: str,
              gtb: int) -> tuple[str, list]:
        if (account, cid) in self.orders:
            return "rejected", []
        if tif == "post":
            best = self._opposite(side)
            if best and self._crosses(side, price, best[0][1]["price"]):
                return "rejected", []
        if tif == "fok":
            filled, _ = self._match(account, side, price, size, dry=True)
            # a FOK whose own resting orders would be removed first: the dry run skips them (as the chain does)
            if filled < size:
                return "rejected", []
        filled, fills = self._match(account, side, price, size, dry=False) if tif != "post" else (0, [])
        if size - filled and tif in ("gtc", "post"):
            self.seq += 1
            self.orders[(account, cid)] = {"side": side, "price": price, "remaining": size - filled, "seq": self.seq,
                                           "gtb": gtb}
        return ("filled" if filled == size else "ok"), fills

    def levels(self, side: int) -> list[tuple[int, int]]:
        agg: dict[int, int] = {}
        for o in self.orders.values():
            if o["side"] == side:
                agg[o["price"]] = agg.get(o["price"], 0) + o["remaining"]
        return sorted(agg.items(), reverse=side == BUY)


class BookMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        import pathlib
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.r = Replica(pathlib.Path(self.dir.name) / "db")
        self.r.init_chain(exchange_app_state())
        self.r.block([])
        self.model = BookModel()
        self.nonce = {a: 1 for a in ACCOUNTS}
        self.cid = 0
        self.fees = 0

    def teardown(self):
        if hasattr(self, "r"):
            self.r.close()
            self.dir.cleanup()

    def _send(self, account: int, action) -> dict:
        self.model.expire(self.r.app.info()[0] + 1)
        self.nonce[account] += 1
        res = self.r.block([orders_tx(account, self.nonce[account], [action])]).tx_results[0]
        assert res.code == 0, res.log
        for f in fills_of(res):
            self.fees += int(f["taker_fee_quote_quantums"]) + int(f["maker_fee_quote_quantums"])
        return res

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from([BUY, SELL]),
          dollars=st.integers(63_999, 64_001), steps=st.integers(1, 12), tif=st.sampled_from(sorted(TIFS)),
          lifetime=st.integers(0, 40))
    def place_order(self, account, side, dollars, steps, tif, lifetime):
        self.cid += 1
        h = self.r.app.info()[0] + 1
        size = steps * BTC_STEP
        self.model.expire(h)
        expected, model_fills = self.model.place(account, self.cid, side, dollars * ONE_DOLLAR_BTC, size, tif,
                                                 h + lifetime)
        res = self._send(account, place(self.cid, side, size, dollars * ONE_DOLLAR_BTC, tif=TIFS[tif],
                                        gtb=h + lifetime))
        (action,) = actions_of(res)
        assert (action["status"] == "rejected") == (expected == "rejected"), (action, expected)
        fills = [(ADDRS.index(f["maker"]), int(f["subticks"]), int(f["quantums"])) for f in fills_of(res)]
        assert fills == model_fills
        if action["status"] != "rejected":
            assert int(action["filled_quantums"]) == sum(f[2] for f in fills)  # fills conserve size

    @rule(data=st.data())
    def cancel_order(self, data):
        next_height = self.r.app.info()[0] + 1
        alive = sorted(k for k, o in self.model.orders.items() if o["gtb"] >= next_height)  # still there next block
        if not alive:
            return
        account, cid = data.draw(st.sampled_from(alive))
        del self.model.orders[(account, cid)]
        res = self._send(account, cancel(cid))
        assert actions_of(res)[0]["status"] == "canceled"

    @invariant()
    def book_matches_model_and_never_crosses(self):
        if not hasattr(self, "r"):
            return
        b = book(self.r)
        bids = [(int(lv["subticks"]), int(lv["quantums"])) for lv in b["bids"]]
        asks = [(int(lv["subticks"]), int(lv["quantums"])) for lv in b["asks"]]
        assert bids == self.model.levels(BUY)[:20] and asks == self.model.levels(SELL)[:20]
        if bids and asks:
            assert bids[0][0] < asks[0][0]

    @invariant()
    def usdc_and_open_interest_are_conserved(self):
        if not hasattr(self, "r"):
            return
        r = self.r
        quotes = sum(int(subaccount(r, a)["quote_balance_quote_quantums"]) for a in ACCOUNTS)
        assert r.balance_of(CROSS_POOL) == quotes
        assert r.balance_of(FEE_COLLECTOR_ADDRESS) == self.fees
        sizes = [sum(int(p["size_base_quantums"]) for p in subaccount(r, a)["positions"]) for a in ACCOUNTS]
        assert sum(sizes) == 0
        oi = json.loads(r.app.query("/perpetuals/list", b"").value)["perpetuals"][0]["open_interest_base_quantums"]
        assert int(oi) == sum(s for s in sizes if s > 0)
        assert r.balance_of(CROSS_POOL) + r.balance_of(FEE_COLLECTOR_ADDRESS) == 4 * 100_000 * 10**6


BookMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=50, deadline=None)
TestBookAgainstModel = BookMachine.TestCase
