"""The price daemon's own process: ``python -m node.daemons.worker`` (started by :class:`PriceDaemonProcess`).

Protocol, one JSON object per line:
- stdin, from the node: first ``{"config": {...the [oracle] table...}}``, then ``{"markets": [[id, pair, exponent],
  ...]}`` whenever the chain's market list changes. EOF on stdin (the node went away) stops the worker.
- stdout, to the node: after every polling round ``{"votes": [[id, units, valid_until_ns], ...], "health": {...}}``.
Logs go to stderr (the node's log).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from node.daemons.pricefeed import OracleConfig, PriceDaemon

log = logging.getLogger("perpd.pricefeed")


async def _main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = await reader.readline()
    if not first:
        return 0
    config = OracleConfig.from_dict(json.loads(first)["config"])
    markets: list[tuple[int, str, int]] = []

    def publish() -> None:
        sys.stdout.write(json.dumps(daemon.snapshot(), separators=(",", ":")) + "\n")
        sys.stdout.flush()

    daemon = PriceDaemon(config, lambda: markets, on_round=publish)
    task = daemon.start()
    try:
        while True:
            line = await reader.readline()
            if not line:
                break  # the node closed our stdin: it is stopping or gone
            msg = json.loads(line)
            if "markets" in msg:
                markets = [(int(m), str(p), int(e)) for m, p, e in msg["markets"]]
    finally:
        await daemon.stop()
        await asyncio.gather(task, return_exceptions=True)
    return 0


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    # httpx logs every request at INFO: thousands of lines a minute and measurable CPU.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        sys.exit(asyncio.run(_main()))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)


if __name__ == "__main__":
    main()
