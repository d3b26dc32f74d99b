"""``perpd status`` and ``perpd query tx``: the node's sync state and committed txs."""

from __future__ import annotations

import click

from node.cli.common import CliError, common, emit, rpc


@click.command("tx")
@click.argument("tx_hash_hex")
@common
def query_tx(tx_hash_hex: str) -> None:
    """A committed tx by hash: height, code, log, events."""
    obj = click.get_current_context().obj
    hash_hex = tx_hash_hex.upper().removeprefix("0X")
    if len(hash_hex) != 64 or any(c not in "0123456789ABCDEF" for c in hash_hex):
        raise CliError(f"tx hash {tx_hash_hex!r} must be 64 hex characters (the sha256 of the tx bytes)")
    with rpc(obj) as client:
        res = client.tx(hash_hex)
    if res is None:
        raise CliError(f"tx {tx_hash_hex} not found")
    r = res["tx_result"]
    out = {"hash": res["hash"], "height": int(res["height"]), "code": int(r.get("code", 0)),
           "codespace": r.get("codespace", ""), "log": r.get("log", ""), "events": r.get("events", [])}
    lines = [f"height {out['height']}  code {out['code']}  hash {out['hash']}" + (f"  log {out['log']}" if out["log"] else "")]
    for e in out["events"]:
        attrs = "  ".join(f"{a.get('key')}={a.get('value')}" for a in e.get("attributes", []))
        lines.append(f"  {e.get('type')}: {attrs}")
    emit(obj, out, "\n".join(lines))


@click.command()
@common
def status() -> None:
    """Node sync status, the app's committed height and hash, and the price daemon's health."""
    obj = click.get_current_context().obj
    with rpc(obj) as client:
        st = client.status()
        app = client.query_json("/app/info")
        oracle = client.query_json("/node/oracle/health")
    si = st["sync_info"]
    out = {"chain_id": st["node_info"]["network"], "moniker": st["node_info"]["moniker"],
           "latest_block_height": int(si["latest_block_height"]), "latest_app_hash": si["latest_app_hash"],
           "catching_up": si["catching_up"], "app": app, "oracle_daemon": oracle}
    h = out["latest_block_height"]
    emit(obj, out, f"{out['chain_id']}  {out['moniker']}  height {h}  catching up {out['catching_up']}\n"
                   f"block {h} header app hash {out['latest_app_hash']} (the state after block {h - 1})\n"
                   f"app: committed height {app['height']}  app hash {app['app_hash'].upper()}\n"
                   f"price daemon {daemon_summary(oracle)}")


def daemon_summary(health: dict) -> str:
    """'ok', or the status with the venues and markets that are not ok (e.g. 'degraded: venues okx down')."""
    status = health.get("status", "?")
    venues = [f"{name} {v['status']}" for name, v in sorted(health.get("venues", {}).items()) if v.get("status") != "ok"]
    markets = [pair for pair, m in sorted(health.get("markets", {}).items()) if not m.get("healthy")]
    parts = ([f"venues {', '.join(venues)}"] if venues else []) + ([f"no index for {', '.join(markets)}"] if markets else [])
    return f"{status}: {'; '.join(parts)}" if parts and status != "ok" else status
