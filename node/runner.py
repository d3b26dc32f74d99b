"""``perpd start``: the app's ABCI server plus its supervised ``cometbft`` child.

One command per validator. The child gets PR_SET_PDEATHSIG so it dies with
us even on ``kill -9``; if the child exits, we exit too (code 1) and the
operator's supervisor (systemd, the localnet) restarts the pair. SIGTERM /
SIGINT stop the child first, then close LevelDB.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import signal
import subprocess
import sys

from app.application import Application
from node import gctune
from node.abci.handler import AbciHandler
from node.abci.server import AbciServer
from node.config import db_path, find_cometbft, load_app_config
from node.daemons.pricefeed import OracleConfig
from node.daemons.process import PriceDaemonProcess
from node.procutil import die_with_parent, write_pid_file
from node.storage.leveldb import LevelDBStore

log = logging.getLogger("perpd")

CHILD_STOP_TIMEOUT_S = 15.0  # cometbft's grace period after SIGTERM before SIGKILL


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )


async def _run(home: pathlib.Path, with_cometbft: bool, cometbft_args: list[str]) -> int:
    cfg = load_app_config(home)
    store = LevelDBStore(db_path(home, cfg))  # holds the LevelDB lock: a second perpd on this home stops here
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    daemon: PriceDaemonProcess | None = None
    server: AbciServer | None = None
    child: subprocess.Popen | None = None
    code = 1  # anything that escapes below is a failed start or run
    try:
        app = Application(store)
        gctune.tune()  # after the state and the book index are loaded
        oracle_cfg = OracleConfig.from_dict(cfg.oracle)
        if oracle_cfg.enabled:
            daemon = PriceDaemonProcess(oracle_cfg, app.markets)
        else:
            log.warning("perpd: no [oracle] feeds_url in app.toml: this validator votes no prices")
        handler = AbciHandler(
            app,
            vote_prices=daemon.vote_prices if daemon is not None else None,
            node_queries={"/node/oracle/health": daemon.health if daemon is not None
                          else (lambda: {"status": "disabled"})},
            retain_blocks=cfg.retain_blocks,
        )
        server = AbciServer(handler, cfg.abci_address)
        await server.start()
        write_pid_file(home / "perpd.pid", os.getpid())
        height, app_hash = app.info()
        log.info("perpd: home %s, committed height %d, app hash %s", home, height, app_hash.hex())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        if with_cometbft:
            cmt_log = open(home / "cometbft.log", "ab")  # noqa: SIM115 -- lives as long as the child
            child = subprocess.Popen(
                [find_cometbft(), "start", "--home", str(home), *cometbft_args],
                stdout=cmt_log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )
            write_pid_file(home / "cometbft.pid", child.pid)
            log.info("perpd: started cometbft pid %d (log %s)", child.pid, home / "cometbft.log")
        if daemon is not None:  # last: nothing that can fail comes after it
            daemon.start()
            log.info("perpd: price daemon polling %s (venues %s)", oracle_cfg.feeds_url, ",".join(oracle_cfg.venues))

        async def child_exit() -> None:
            while child is not None and child.poll() is None:
                await asyncio.sleep(0.2)

        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.wait_stopped())]
        if child is not None:
            waits.append(asyncio.ensure_future(child_exit()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

        code = 0
        if server.fatal is not None:
            log.critical("perpd: stopping after a fatal application error")
            code = 1
        elif child is not None and child.poll() is not None and not stop.is_set():
            log.error("perpd: cometbft exited with code %s; stopping", child.returncode)
            code = 1
    finally:
        # From here a second SIGTERM/SIGINT means "now": kill cometbft and exit (committed data is already on
        # disk: every Commit is a synced LevelDB batch).
        def die_now() -> None:
            if child is not None and child.poll() is None:
                child.kill()
            os._exit(1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
            loop.add_signal_handler(sig, die_now)
        if child is not None and child.poll() is None:
            child.terminate()
            deadline = loop.time() + CHILD_STOP_TIMEOUT_S
            while child.poll() is None and loop.time() < deadline:  # polled: no thread can block the exit
                await asyncio.sleep(0.05)
            if child.poll() is None:
                log.warning("perpd: cometbft did not stop within %.0f s of SIGTERM; killing it", CHILD_STOP_TIMEOUT_S)
                child.kill()
                child.wait()
        if server is not None:
            server.stop()
        if daemon is not None:
            await daemon.stop()
        store.close()
        for name in ("perpd.pid", "cometbft.pid"):
            (home / name).unlink(missing_ok=True)
        log.info("perpd: stopped")
    return code


def run_node(home: pathlib.Path, with_cometbft: bool = True, cometbft_args: list[str] | None = None) -> int:
    cfg = load_app_config(home)
    setup_logging(cfg.log_level)
    return asyncio.run(_run(home, with_cometbft, cometbft_args or []))
