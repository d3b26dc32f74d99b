"""``python -m node.mm``: the reference market maker with ``perpd mm run``'s options (docs/localnet.md)."""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal, InvalidOperation

from node.client.keys import KeyError_
from node.mm.quotes import QuoteError
from node.mm.runner import run


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m node.mm", description="Keep post-only quotes around each oracle price.")
    p.add_argument("--node", default=os.environ.get("PERPD_NODE", "http://127.0.0.1:26657"), help="CometBFT RPC")
    p.add_argument("--home", default=os.environ.get("PERPD_HOME", os.path.expanduser("~/.perpd")),
                   help="folder whose keys/ holds the key")
    p.add_argument("--key", required=True, help="key name in <home>/keys")
    p.add_argument("--markets", default="", help="comma-separated tickers (default: every market)")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--spread-bps", type=int, default=10)
    p.add_argument("--step-bps", type=int, default=10)
    p.add_argument("--size-usd", type=_decimal, default=Decimal("1000"))
    p.add_argument("--interval", type=float, default=0.5, help="seconds between looks for a new block")
    p.add_argument("--number", type=int, default=0, help="subaccount that quotes")
    ns = p.parse_args(argv)
    markets = [m for m in ns.markets.split(",") if m.strip()] or None
    try:
        run(ns.node, ns.home, ns.key, markets, ns.levels, ns.spread_bps, ns.step_bps, ns.size_usd, ns.interval,
            ns.number)
    except (QuoteError, KeyError_) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
