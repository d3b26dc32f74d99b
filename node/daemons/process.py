"""Runs the price daemon in its own supervised process, so polling never competes with ABCI for the event loop.

Measured (bench/pricefeed_cost.py): inside the validator's loop, each venue request costs ~1 ms of CPU, enough to
delay ABCI answers by tens of milliseconds at 20 markets and by seconds at 100. In a child process the node's
loop only parses one small JSON snapshot per round. The node keeps the latest snapshot; ExtendVote reads it
without I/O (:meth:`PriceDaemonProcess.vote_prices`). If the worker dies it is restarted after a short delay,
and until it reports again its prices age out on their own (each carries a valid-until time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from node.daemons.pricefeed import MarketsFn, OracleConfig
from node.procutil import die_with_parent

log = logging.getLogger("perpd.pricefeed")

RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 5.0
MAX_LINE_BYTES = 1 << 20  # a snapshot is a few KB even at 100 markets; a longer line is a broken worker
MIN_WATCHDOG_S = 10.0  # worker start-up (imports) on a loaded machine must not look like a hang


def watchdog_seconds(config: OracleConfig) -> float:
    """How long the worker may stay silent before it is killed and restarted. It reports after every round, and a
    round lasts up to request_timeout_ms when a venue is slow, so the limit covers several of either."""
    return max(MIN_WATCHDOG_S, 5 * config.poll_interval_ms / 1000, 3 * config.request_timeout_ms / 1000)


class PriceDaemonProcess:
    """Same interface as :class:`PriceDaemon` for the node: ``start``, ``stop``, ``vote_prices``, ``health``."""

    def __init__(self, config: OracleConfig, markets: MarketsFn, restart_delay_s: float = RESTART_DELAY_S,
                 watchdog_s: float | None = None) -> None:
        self.config = config
        self._markets_fn = markets
        self._restart_delay_s = restart_delay_s
        self._watchdog_s = watchdog_seconds(config) if watchdog_s is None else watchdog_s
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_ns = 0
        self._sent_markets: list | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name="pricefeed-process")
        return self._task

    async def stop(self) -> None:
        """Close the worker's stdin (it stops by itself), then SIGTERM/SIGKILL if it lingers."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def _supervise(self) -> None:
        while not self._stopping:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the daemon must never take the validator down
                log.exception("pricefeed: worker supervision failed")
            if self._stopping:
                break
            self.restarts += 1
            log.warning("pricefeed: worker exited (code %s); restarting in %.1f s",
                        self._proc.returncode if self._proc else None, self._restart_delay_s)
            await asyncio.sleep(self._restart_delay_s)

    async def _spawn(self) -> asyncio.subprocess.Process:
        """Start a worker. The spawn runs to completion even if we are cancelled meanwhile (CPython 3.11 never
        finishes a subprocess transport whose pipe setup was cancelled, which hung the node's shutdown), and a
        worker started that way is killed at once."""
        spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.daemons.worker", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=None, preexec_fn=die_with_parent(), limit=MAX_LINE_BYTES,
        ))
        try:
            return await asyncio.shield(spawn)
        except asyncio.CancelledError:
            try:
                proc = await spawn
            except Exception:  # noqa: BLE001 -- the spawn failed: nothing to clean up
                raise asyncio.CancelledError from None
            proc.kill()
            await proc.wait()
            raise

    async def _run_once(self) -> None:
        self._sent_markets = None
        self._proc = proc = await self._spawn()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"config": dict(vars(self.config))}).encode() + b"\n")
            self._send_markets()
            while True:
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), self._watchdog_s)
                except TimeoutError:
                    log.error("pricefeed: no snapshot from the worker for %.1f s (hung?); killing it",
                              self._watchdog_s)
                    line = None
                    break
                if not line:
                    break
                try:
                    snapshot = json.loads(line)
                except ValueError:
                    snapshot = None
                if isinstance(snapshot, dict) and isinstance(snapshot.get("votes"), list) \
                        and isinstance(snapshot.get("health"), dict):
                    self._snapshot = snapshot
                    self._snapshot_ns = time.monotonic_ns()
                else:
                    log.error("pricefeed: unreadable snapshot from the worker: %.200r", line)
                self._send_markets()
            if line == b"":  # stdout closed: the worker is exiting, or wedged without its stdout
                try:
                    await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    log.error("pricefeed: the worker closed its output but did not exit; killing it")
            if proc.returncode is None:
                proc.kill()  # a stopped (SIGSTOP) or wedged worker is replaced
            await proc.wait()
        finally:
            if proc.returncode is None:  # we are leaving on an error or cancellation: never leave a stray worker
                proc.kill()
                await asyncio.shield(proc.wait())

    def _send_markets(self) -> None:
        """Tell the worker the chain's markets when they changed (cheap: the app caches them per block)."""
        proc = self._proc
        try:
            markets = [list(m) for m in self._markets_fn()]
        except Exception:  # the callable is the node's; keep the worker's current list
            log.exception("pricefeed: markets() failed")
            return
        if markets != self._sent_markets and proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(json.dumps({"markets": markets}).encode() + b"\n")
            self._sent_markets = markets

    # --- reading (ExtendVote / RPC): no I/O, never raises --------------------------------
    def vote_prices(self) -> dict[int, int]:
        """market_id -> price units of the worker's last snapshot, minus indexes past their valid-until time."""
        snapshot = self._snapshot
        if snapshot is None:
            return {}
        try:
            now = time.monotonic_ns()
            return {int(m): int(units) for m, units, until in snapshot["votes"] if int(until) > now}
        except Exception:  # ExtendVote must always get an answer; an empty vote is safe
            log.exception("pricefeed: bad snapshot")
            return {}

    def health(self) -> dict[str, Any]:
        """The worker's health plus the process view; ``down`` when the worker has not reported recently.

        Never raises: it answers an ABCI query, where an exception would stop the node.
        """
        try:
            return self._health()
        except Exception as e:
            log.exception("pricefeed: health failed")
            return {"status": "down", "error": f"{type(e).__name__}: {e}"}

    def _health(self) -> dict[str, Any]:
        process = {"pid": self.pid, "restarts": self.restarts,
                   "last_report_ms_ago": (time.monotonic_ns() - self._snapshot_ns) // 1_000_000
                   if self._snapshot is not None else None}
        if self._snapshot is None:
            return {"status": "down", "reason": "price daemon worker has not reported yet", "process": process,
                    "feeds_url": self.config.feeds_url}
        health = dict(self._snapshot.get("health", {}))
        silent_ms = process["last_report_ms_ago"]
        limit_ms = max(3 * self.config.poll_interval_ms, self.config.max_print_age_ms)
        if silent_ms is not None and silent_ms > limit_ms:
            health["status"] = "down"
            health["reason"] = f"no report from the price daemon worker for {silent_ms} ms"
        health["process"] = process
        return health
