"""``perpd feeds``: run the venue feed simulator and drive its faults (serve, fault, pin, state).

Registered in ``node.cli.main`` with ``cli.add_command(feeds)``. Client commands talk to a running simulator over
its control API (``--url``; default ``$PERPD_FEEDS_URL``, else the simulator of the localnet in
``$PERPD_LOCALNET_DIR`` or ``.localnet`` if there is one, else http://127.0.0.1:26600); see docs/feeds.md.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import threading
from typing import Any

import click
import httpx

from node.cli.common import WholeNumber
from node.feeds.simulator import (
    DEFAULT_MARKETS,
    DEFAULT_NOISE_PPM,
    DEFAULT_PORT,
    DEFAULT_TICK_MS,
    MODES,
    parse_markets,
    serve,
)
from node.feeds.venues import DEFAULT_VENUES

_TIMEOUT_S = 10.0


def default_feeds_url() -> str:
    """``$PERPD_FEEDS_URL``, else the local localnet's simulator, else the simulator's default port."""
    from node import localnet as ln  # local import: keeps `perpd feeds serve` free of localnet machinery

    if os.environ.get("PERPD_FEEDS_URL"):
        return os.environ["PERPD_FEEDS_URL"]
    localnet_dir = pathlib.Path(os.environ.get("PERPD_LOCALNET_DIR", ".localnet"))
    try:
        url = ln.feeds_url(ln.load_manifest(localnet_dir)) if ln.manifest_path(localnet_dir).exists() else None
    except (OSError, ValueError, KeyError, ln.LocalnetError):
        url = None
    return url or f"http://127.0.0.1:{DEFAULT_PORT}"


def _url_option(f):
    return click.option("--url", default=default_feeds_url, show_default="$PERPD_FEEDS_URL, the localnet's, or :26600",
                        help="base URL of the running feed simulator")(f)


def _output_option(f):
    return click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
                        show_default=True)(f)


def _request(method: str, url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the control API; any failure becomes one ClickException line."""
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, timeout=_TIMEOUT_S, trust_env=False)
    except httpx.HTTPError as e:
        raise click.ClickException(f"cannot reach feed simulator at {url}: {e}") from None
    try:
        data = response.json()
    except ValueError:
        raise click.ClickException(f"{url}{path}: HTTP {response.status_code}, not JSON") from None
    if response.status_code != 200:
        raise click.ClickException(data.get("error", f"HTTP {response.status_code}") if isinstance(data, dict)
                                   else f"HTTP {response.status_code}")
    return data


def _emit(output: str, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if output == "json" else text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def feeds() -> None:
    """Venue feed simulator for the oracle plane (off-consensus test tooling)."""


@feeds.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=WholeNumber(0, 65535),
              help="0 picks a free port")
@click.option("--seed", default=1, show_default=True, type=int, help="seed of the random walk and venue noise")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False),
              help="replay a price path: header t_seconds,PAIR,...; linear between rows, last row held")
@click.option("--venues", default=",".join(DEFAULT_VENUES), show_default=True,
              help="comma-separated venue names; unknown names get the generic shape")
@click.option("--markets", default=",".join(f"{k}={v}" for k, v in DEFAULT_MARKETS.items()), show_default=True,
              help="comma-separated PAIR=START_PRICE")
@click.option("--noise-ppm", default=DEFAULT_NOISE_PPM, show_default=True, type=WholeNumber(0, 999_999),
              help="venue noise: each quote is true price x (1 + U[-n, n] / 1e6)")
@click.option("--tick-ms", default=DEFAULT_TICK_MS, show_default=True, type=WholeNumber(1, 60_000),
              help="price grid: the true price and every quote change once per tick")
def serve_cmd(host: str, port: int, seed: int, csv_path: str | None, venues: str, markets: str,
              noise_ppm: int, tick_ms: int) -> None:
    """Serve venue tickers and the control API until SIGTERM or SIGINT."""
    try:
        venue_list = [v.strip() for v in venues.split(",") if v.strip()]
        server = serve(host, port, venue_list, parse_markets(markets), seed, csv_path, noise_ppm=noise_ppm,
                       tick_ms=tick_ms)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sim = server.simulator
        click.echo(f"feeds: serving on {server.url}")
        click.echo(f"feeds: venues {', '.join(f'{v} ({s.shape})' for v, s in sim.venues.items())}")
        click.echo(f"feeds: markets {', '.join(sim.markets)}" + (f" (csv {csv_path})" if csv_path else ""))
        sys.stdout.flush()
        # A timed wait keeps the main thread returning to the interpreter, where signal handlers run.
        while not stopping.wait(0.5):
            pass
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("feeds: stopped")


@feeds.command("fault")
@click.argument("venue")
@click.argument("mode", type=click.Choice(MODES))
@click.option("--offset-ppm", type=int, default=0, show_default=True,
              help="manipulated: quote true price x (1 + offset_ppm / 1e6)")
@click.option("--delay-ms", type=int, default=0, show_default=True, help="slow: delay before each answer")
@_url_option
@_output_option
def fault_cmd(venue: str, mode: str, offset_ppm: int, delay_ms: int, url: str, output: str) -> None:
    """Set VENUE's fault MODE: ok, stale, manipulated, down or slow."""
    data = _request("POST", url, f"/control/venue/{venue}",
                    {"mode": mode, "offset_ppm": offset_ppm, "delay_ms": delay_ms})
    detail = {"manipulated": f" offset {data['offset_ppm']} ppm", "slow": f" delay {data['delay_ms']} ms"}
    _emit(output, data, f"{venue}: {data['mode']}{detail.get(data['mode'], '')}")


@feeds.command("pin")
@click.argument("pair")
@click.argument("price")
@_url_option
@_output_option
def pin_cmd(pair: str, price: str, url: str, output: str) -> None:
    """Pin PAIR's true price to PRICE (a decimal), or release it with PRICE = none."""
    body = {"pair": pair, "price": None if price.lower() == "none" else price}
    data = _request("POST", url, "/control/price", body)
    _emit(output, data, f"{data['pair']}: {data['true_price']} ({data['source']})")


@feeds.command("state")
@_url_option
@_output_option
def state_cmd(url: str, output: str) -> None:
    """Show true prices, venue modes and uptime."""
    data = _request("GET", url, "/control/state")
    lines = [f"uptime {data['uptime_ms'] / 1000:.1f} s, tick {data['tick']} ({data['tick_ms']} ms), "
             f"seed {data['seed']}, noise {data['noise_ppm']} ppm" + (f", csv {data['csv']}" if data["csv"] else "")]
    for pair, m in data["markets"].items():
        lines.append(f"  {pair:<12} {m['true_price']:>20}  {m['source']}")
    for venue, v in data["venues"].items():
        extra = {"manipulated": f" {v['offset_ppm']:+d} ppm", "slow": f" {v['delay_ms']} ms"}.get(v["mode"], "")
        lines.append(f"  {venue:<12} {v['shape']:<9} {v['mode']}{extra}")
    _emit(output, data, "\n".join(lines))
