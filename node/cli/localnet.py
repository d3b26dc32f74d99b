"""``perpd localnet``: a multi-validator network on 127.0.0.1 (node/localnet.py does the work)."""

from __future__ import annotations

import pathlib

import click

from node import localnet as ln
from node.cli.common import DEFAULT_LOCALNET, CliError, WholeNumber, emit


@click.group()
def localnet() -> None:
    """Run a multi-validator network on 127.0.0.1."""


def localnet_options(f):
    f = click.option("--dir", "dir_", default=DEFAULT_LOCALNET, show_default=True, help="localnet folder")(f)
    f = click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)(f)
    return f


@localnet.command("up")
@localnet_options
@click.option("--validators", type=int, default=None,
              help=f"number of validators when creating [default: {ln.DEFAULT_VALIDATORS}]; an existing localnet "
                   f"keeps its own")
@click.option("--base-port", type=int, default=None,
              help=f"node i: p2p base+10i, rpc base+10i+1; feed simulator base+10N+2 [default: {ln.DEFAULT_BASE_PORT}]")
@click.option("--proxy-app", type=click.Choice(ln.PROXY_APPS), default=None,
              help="kvstore runs CometBFT's built-in app (benchmark baseline) [default: perpd]")
@click.option("--timeout", default=180.0, show_default=True, help="seconds to wait for height 3")
@click.option("--genesis-template", type=click.Path(exists=True, dir_okay=False), default=None,
              help="accounts to create and fund, and the app_state (used when creating) [default: the config's, "
                   "localnet/genesis.json]")
@click.option("--timeout-commit", default=None, help="CometBFT consensus.timeout_commit [default: the config's, 200ms]")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="localnet configuration [default: $PERPD_LOCALNET_CONFIG, else localnet/localnet.toml]")
@click.option("--mm/--no-mm", default=None, help="run the reference market maker [default: the config's]")
def localnet_up(dir_, output, validators, base_port, proxy_app, timeout, genesis_template, timeout_commit,
                config_path, mm) -> None:
    """Create (if needed) and start the localnet; returns once every node is at height >= 3. Settings not given
    come from the localnet configuration (docs/localnet.md)."""
    manifest = ln.up(pathlib.Path(dir_), validators, base_port, proxy_app, timeout_s=timeout,
                     progress=lambda s: click.echo(s, err=True), timeout_commit=timeout_commit,
                     template_path=pathlib.Path(genesis_template) if genesis_template else None,
                     config_path=pathlib.Path(config_path) if config_path else None, mm=mm)
    endpoints = [{"node": n["index"], "rpc": ln.rpc_url(n), "home": n["home"]} for n in manifest["nodes"]]
    emit({"output": output}, {"chain_id": manifest["chain_id"], "nodes": endpoints, "keys": str(pathlib.Path(dir_).resolve() / "keys")},
         "\n".join([f"chain {manifest['chain_id']} is up; RPC endpoints:"]
                   + [f"  node{e['node']}: {e['rpc']}" for e in endpoints]
                   + [f"keys: perpd keys list --home {pathlib.Path(dir_).resolve()}"]))


@localnet.command("status")
@localnet_options
def localnet_status(dir_, output) -> None:
    rows = ln.status(pathlib.Path(dir_))
    lines = [f"node{r['node']}  {'up  ' if r['running'] else 'DOWN'}  height "
             f"{r['height'] if r['height'] is not None else '-'}" + ("  catching up" if r["catching_up"] else "")
             + f"  pids {','.join(str(p) for p in r['pids']) or '-'}  {r['rpc']}" for r in rows]
    hashes = {r["app_hash_at_common"] for r in rows if r["app_hash_at_common"]}
    if hashes:
        common = rows[0]["common_height"]
        answered = sum(1 for r in rows if r["app_hash_at_common"])
        lines.append(f"at height {common} (the lowest node's): " + (
            f"{answered} nodes agree, app hash {hashes.pop()} (after block {common - 1})" if len(hashes) == 1 else
            "nodes DISAGREE: " + ", ".join(f"node{r['node']} {r['app_hash_at_common']}" for r in rows
                                           if r["app_hash_at_common"])))
    emit({"output": output}, rows, "\n".join(lines))


@localnet.command("down")
@localnet_options
@click.option("--reset", is_flag=True, help="also delete the localnet folder (all chain data)")
def localnet_down(dir_, output, reset) -> None:
    pids = ln.down(pathlib.Path(dir_), reset=reset)
    emit({"output": output}, {"stopped_pids": pids}, f"stopped {len(pids)} processes" + (", deleted data" if reset else ""))


@localnet.command("logs")
@localnet_options
@click.option("--node", "node_index", default=0, show_default=True)
@click.option("--cometbft", "which", flag_value="cometbft", help="show cometbft's log instead of perpd's")
@click.option("-n", "--lines", type=WholeNumber(min=1), default=50, show_default=True)
def localnet_logs(dir_, output, node_index, which, lines) -> None:
    manifest = ln.load_manifest(pathlib.Path(dir_).resolve())
    if not 0 <= node_index < len(manifest["nodes"]):
        raise CliError(f"no node {node_index} (localnet has {len(manifest['nodes'])})")
    path = pathlib.Path(manifest["nodes"][node_index]["home"]) / f"{which or 'perpd'}.log"
    if not path.exists():
        raise CliError(f"no log at {path}" + (" (this localnet runs CometBFT's kvstore: try --cometbft)"
                                               if manifest["proxy_app"] != "perpd" and not which else ""))
    text = path.read_text(errors="replace").splitlines()[-lines:]
    click.echo("\n".join(text))
