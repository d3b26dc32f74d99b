"""The reference market maker: a client process over CometBFT RPC that keeps two-sided quotes on the book.

Each round (at most one per new block, polled every ``interval_s``) it reads the chain at the latest committed
height -- /perpetuals/list (oracle prices, tick, step), its own orders (/clob/orders/<owner>/<number>), each
market's book (/clob/orderbook/<ticker>) and its admission budget (/auth/account/<owner>) -- plans the quotes
(node/mm/quotes.py) and sends what changed as ONE signed MsgOrders: cancel-replaces of stale quotes, placements
into empty slots, cancels of quotes it no longer wants. Quotes are post-only, short-term (good_til_block = height
+ 15), so a dead maker's quotes leave the book by themselves within 15 blocks.

One tx in flight at a time: the next one is planned only after the previous one is in a block (or after
``INFLIGHT_TIMEOUT_S``, when it is taken as dropped), so a plan never builds on a view that lacks its own last tx.
RPC errors, refused txs and rejected actions are logged and the loop goes on (with a backoff while the node is
unreachable). SIGTERM / SIGINT stop it after the current round; on the way out it asks the chain to cancel its
quotes (best effort, one tx). One log line per round on stdout.
"""

from __future__ import annotations

import dataclasses
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import httpx
from perpchain.v1 import exchange_pb2, tx_pb2

from node.client.keys import Key, Keyring
from node.client.rpc import RpcClient, RpcError
from node.client.txbuilder import NoNonceLeft, default_nonce, sign_tx, tx_hash
from node.mm.quotes import (
    BUY,
    Plan,
    Quote,
    QuoteError,
    Resting,
    Settings,
    parse_markets,
    parse_resting,
    plan_round,
    to_fraction,
    trim_to_budget,
)

INFLIGHT_TIMEOUT_S = 15.0  # a tx not in a block after this long is taken as dropped (mempool eviction, node restart)
MAX_BACKOFF_S = 5.0
RPC_TIMEOUT_S = 5.0
RECENT_NONCES = 100  # as many as the chain's nonce window
RPC_ERRORS = (RpcError, httpx.HTTPError, OSError, ValueError, KeyError, TypeError)


def _log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", flush=True)


@dataclasses.dataclass
class Inflight:
    hash: str
    sent_at: float  # monotonic


class MarketMaker:
    """One maker: its key, its settings and its view of its last tx. ``step()`` is one round."""

    def __init__(self, rpc: RpcClient, key: Key, settings: Settings, log: Callable[[str], None] = _log) -> None:
        settings.validate()
        self.rpc = rpc
        self.key = key
        self.settings = settings
        self.log = log
        self.chain_id: str | None = None
        self.nonces: list[int] | None = None  # recent nonces (chain's + ours); None = fetch from the chain
        self.inflight: Inflight | None = None
        self.last_height = 0
        self.catching_up = False  # the node said so at the last poll (logged once)

    # --- chain reads -------------------------------------------------------------------------------------------

    def _account(self) -> dict:
        return self.rpc.query_json(f"/auth/account/{self.key.address}")

    def _next_nonce(self, account: dict) -> int:
        if self.nonces is None:
            self.nonces = [int(n) for n in account.get("recent_nonces", [])]
        nonce = default_nonce(self.nonces)
        self.nonces = sorted([*self.nonces, nonce])[-RECENT_NONCES:]
        return nonce

    def _inflight_outcome(self) -> str | None:
        """None while the last tx is pending; else a short summary of its outcome ('' when nothing was in flight)."""
        if self.inflight is None:
            return ""
        res = self.rpc.tx(self.inflight.hash)
        if res is None:
            if time.monotonic() - self.inflight.sent_at < INFLIGHT_TIMEOUT_S:
                return None
            short = self.inflight.hash[:10]
            self.inflight = None
            self.nonces = None  # re-read: the tx may yet land, or never
            return f"tx {short} not in a block after {INFLIGHT_TIMEOUT_S:.0f}s: taken as dropped"
        self.inflight = None
        return summarize_result(res)

    # --- one round ---------------------------------------------------------------------------------------------

    def step(self) -> str | None:
        """One round: returns the log line, or None when there is nothing new (same block, tx still pending)."""
        status = self.rpc.status()
        if self.chain_id is None:
            self.chain_id = status["node_info"]["network"]
        height = int(status["sync_info"]["latest_block_height"])
        if status["sync_info"].get("catching_up"):
            # its state is behind the chain: quotes planned on it would be stale and their short-term expiry
            # already past, so the tx would never land (and the next round would wait for it to time out)
            if self.catching_up:
                return None
            self.catching_up = True
            return f"mm h={height} node is catching up: not quoting until it is synced"
        self.catching_up = False
        if height <= self.last_height:
            return None
        previous = self._inflight_outcome()
        if previous is None:
            return None  # our last tx is not in a block yet: plan on a view that has it
        self.last_height = height
        s = self.settings
        markets = parse_markets(self.rpc.query_json("/perpetuals/list"))
        own = parse_resting(self.rpc.query_json(f"/clob/orders/{self.key.address}/{s.subaccount_number}"),
                            s.subaccount_number)
        books = {}
        depth = 2 * s.levels + 2  # deep enough to see past our own levels to others' best price
        for m in markets:
            if not s.markets or m.ticker.upper() in s.markets:
                books[m.ticker] = self.rpc.query_json(f"/clob/orderbook/{m.ticker}/{depth}")
        account = self._account()
        plan = plan_round(markets, own, books, height, s)
        budget = account.get("budget", {})
        plan = trim_to_budget(plan, int(budget.get("requests_available", 0)), int(budget.get("cancels_available", 0)))
        sent = self._send(plan, account) if plan.actions else "no tx"
        return format_round(height, plan, sent, previous)

    def _send(self, plan: Plan, account: dict) -> str:
        actions = build_actions(plan, self.settings.subaccount_number)
        msg = tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=self.key.address, actions=actions))
        try:
            nonce = self._next_nonce(account)
        except NoNonceLeft as e:
            return f"no tx: {e}"
        tx = sign_tx(self.key.signing_key, self.chain_id, nonce, [msg])
        res = self.rpc.broadcast_tx_sync(tx)
        code = int(res.get("code", 0))
        if code != 0:
            self.nonces = None  # whatever the reason, re-read the chain's nonces next time
            return f"tx refused by CheckTx: code {code} {res.get('log', '')[:160]}"
        self.inflight = Inflight(tx_hash(tx), time.monotonic())
        return f"tx {self.inflight.hash[:10]}"

    def cancel_all(self) -> str:
        """Best effort on the way out: one tx cancelling the maker's quotes on every pair it quoted."""
        s = self.settings
        own = parse_resting(self.rpc.query_json(f"/clob/orders/{self.key.address}/{s.subaccount_number}"),
                            s.subaccount_number)
        pairs = sorted({r.clob_pair_id for r in own})
        if not pairs or self.chain_id is None:
            return "no quotes to cancel"
        actions = [tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(
            subaccount_number=s.subaccount_number, clob_pair_id=pair, order_flags=0,
            client_ids=sorted(r.client_id for r in own if r.clob_pair_id == pair))) for pair in pairs]
        nonce = self._next_nonce(self._account())
        tx = sign_tx(self.key.signing_key, self.chain_id, nonce,
                     [tx_pb2.Msg(orders=tx_pb2.MsgOrders(owner=self.key.address, actions=actions))])
        res = self.rpc.broadcast_tx_sync(tx)
        return f"cancel of {len(own)} quotes on {len(pairs)} pairs sent (CheckTx code {int(res.get('code', 0))})"


# --- tx building and log lines ---------------------------------------------------------------------------------

def _place(q: Quote, subaccount_number: int) -> tx_pb2.PlaceOrder:
    return tx_pb2.PlaceOrder(
        subaccount_number=subaccount_number, client_id=q.client_id, clob_pair_id=q.clob_pair_id,
        side=exchange_pb2.SIDE_BUY if q.side == BUY else exchange_pb2.SIDE_SELL, quantums=q.quantums,
        subticks=q.subticks, good_til_block=q.good_til_block, time_in_force=exchange_pb2.TIME_IN_FORCE_POST_ONLY)


def _order_id(clob_pair_id: int, client_id: int, subaccount_number: int) -> tx_pb2.OrderId:
    return tx_pb2.OrderId(subaccount_number=subaccount_number, client_id=client_id, clob_pair_id=clob_pair_id,
                          order_flags=0)


def build_actions(plan: Plan, subaccount_number: int) -> list[tx_pb2.OrderAction]:
    """Cancels, cancel-replaces, placements (the chain runs every cancel before any post-only placement anyway)."""
    out = [tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=_order_id(r.clob_pair_id, r.client_id,
                                                                             subaccount_number)))
           for r in plan.cancels]
    out += [tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(
        order_id=_order_id(q.clob_pair_id, q.client_id, subaccount_number), place=_place(q, subaccount_number)))
        for q in plan.replaces]
    out += [tx_pb2.OrderAction(place=_place(q, subaccount_number)) for q in plan.places]
    return out


def _attrs(event: dict) -> dict[str, str]:
    return {a.get("key", ""): a.get("value", "") for a in event.get("attributes", [])}


def summarize_result(res: dict) -> str:
    """'h=12 code=0: 6 resting, 2 canceled, 1 rejected (post-only would cross ...), 3 fills' for a committed tx."""
    result = res.get("tx_result", {})
    code = int(result.get("code", 0))
    head = f"prev tx h={res.get('height')} code={code}"
    if code != 0:
        return f"{head} {result.get('log', '')[:120]}"
    counts: dict[str, int] = {}
    first_reason = ""
    fills = 0
    for e in result.get("events", []):
        if e.get("type") == "fill":
            fills += 1
        if e.get("type") != "order_action":
            continue
        a = _attrs(e)
        status = a.get("status", "?")
        counts[status] = counts.get(status, 0) + 1
        if status in ("rejected", "skipped") and not first_reason:
            first_reason = a.get("reason", "")[:100]
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    if fills:
        parts.append(f"{fills} fills")
    return f"{head}: {', '.join(parts) or 'no actions'}" + (f" (first: {first_reason})" if first_reason else "")


def format_round(height: int, plan: Plan, sent: str, previous: str) -> str:
    touch = " ".join(f"{t} {b}/{a}" for t, (b, a) in sorted(plan.touch.items()))
    skipped = " ".join(f"{t}: {why}" for t, why in sorted(plan.skipped.items()))
    line = (f"mm h={height} {touch or 'no market quoted'} | place {len(plan.places)} replace {len(plan.replaces)} "
            f"cancel {len(plan.cancels)} keep {plan.kept}" + (f" trimmed {plan.trimmed}" if plan.trimmed else "")
            + f" | {sent}")
    if skipped:
        line += f" | skipped {skipped}"
    if previous:
        line += f" | {previous}"
    return line


# --- the process -----------------------------------------------------------------------------------------------

def run(node_url: str, home: str, key_name: str, markets: list[str] | None, levels: int, spread_bps: int,
        step_bps: int, size_usd: Decimal, interval_s: float, subaccount_number: int, *,
        stop: threading.Event | None = None, log: Callable[[str], None] = _log) -> None:
    """Quote until SIGTERM / SIGINT (or ``stop`` is set). Bad settings or an unknown key raise at once (QuoteError,
    KeyError_); everything that goes wrong later is logged and retried."""
    if interval_s <= 0:
        raise QuoteError("interval_s must be positive")
    settings = Settings(levels=levels, spread_bps=spread_bps, step_bps=step_bps, size_usd=to_fraction(size_usd),
                        subaccount_number=subaccount_number,
                        markets=tuple(sorted({m.strip().upper() for m in markets or [] if m.strip()})))
    settings.validate()
    key = Keyring(pathlib.Path(home) / "keys").get(key_name)
    stop = stop or threading.Event()
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous_handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    rpc = RpcClient(node_url, timeout_s=RPC_TIMEOUT_S)
    maker = MarketMaker(rpc, key, settings, log)
    log(f"mm: {key.name} {key.address} subaccount {subaccount_number} on {node_url}: {levels} levels, spread "
        f"{spread_bps} bps + {step_bps} bps per level, {size_usd} USD per quote, markets "
        f"{', '.join(settings.markets) or 'all'}")
    failures = 0
    try:
        while not stop.is_set():
            try:
                line = maker.step()
                failures = 0
                if line:
                    log(line)
                wait = interval_s
            except RPC_ERRORS as e:
                failures += 1
                maker.nonces = None
                wait = min(MAX_BACKOFF_S, interval_s * 2 ** min(failures, 8))
                log(f"mm error ({failures} in a row, retry in {wait:.1f}s): {e.__class__.__name__}: {e}")
            stop.wait(wait)
        try:
            log(f"mm: stopping; {maker.cancel_all()}")
        except RPC_ERRORS as e:
            log(f"mm: stopping; could not cancel the quotes ({e.__class__.__name__}: {e}); they expire by themselves")
    finally:
        rpc.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        sys.stdout.flush()
