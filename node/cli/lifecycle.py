"""``perpd init``, ``perpd start``, ``perpd export``: create, run and dump a node home."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import click

from node.cli.common import DEFAULT_HOME, CliError, common, emit, keyring
from node.config import AppConfig, edit_cometbft_config, find_cometbft, perpd_cometbft_settings, write_app_config
from node.genesis import load_app_state_file, patch_genesis, validate_app_state

MAX_CHAIN_ID_LEN = 50  # CometBFT's genesis limit


@click.command()
@click.option("--chain-id", required=True, help="chain id written into genesis.json")
@click.option("--moniker", default="perpd-node", show_default=True)
@click.option("--app-state", type=click.Path(exists=True, dir_okay=False),
              help="JSON file with the genesis app_state; default: a new key 'validator' funded with 1,000,000 USDC "
                   "and made the bank authority")
@common
def init(chain_id: str, moniker: str, app_state: str | None) -> None:
    """Create a node home: CometBFT config and keys, genesis with vote extensions on, app.toml."""
    obj = click.get_current_context().obj
    home: pathlib.Path = obj["home"]
    if (home / "config" / "genesis.json").exists():
        raise CliError(f"{home} is already initialized")
    # Everything that can fail on user input is checked before anything is written.
    if not chain_id or len(chain_id) > MAX_CHAIN_ID_LEN:
        raise CliError(f"--chain-id must be 1..{MAX_CHAIN_ID_LEN} characters (CometBFT's limit)")
    if not app_state and (home / "keys" / "validator.json").exists():
        raise CliError(f"{home / 'keys'} already has a key named 'validator'; pass --app-state, or use a fresh home")
    if app_state:
        state = load_app_state_file(pathlib.Path(app_state))
        validate_app_state(chain_id, state)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create {home}: {e.strerror}") from None
    done = subprocess.run([find_cometbft(), "init", "--home", str(home)], capture_output=True, text=True)
    if done.returncode != 0:
        first = next((ln_ for ln_ in done.stderr.splitlines() if ln_.strip()), f"exit code {done.returncode}")
        raise CliError(f"cometbft init failed: {first.strip()}")
    if not app_state:
        key = keyring(obj).add("validator")
        state = {"bank": {"authority": key.address,
                          "balances": [{"address": key.address, "amount_quote_quantums": "1000000000000"}]}}
    cfg = AppConfig.default(home)
    write_app_config(home, cfg)
    edit_cometbft_config(home, {**perpd_cometbft_settings(), "": {"proxy_app": cfg.abci_address, "moniker": moniker}})
    patch_genesis(home / "config" / "genesis.json", chain_id, state)
    emit(obj, {"home": str(home), "chain_id": chain_id, "abci": cfg.abci_address},
         f"initialized {home} for chain {chain_id}")


@click.command()
@click.option("--home", default=DEFAULT_HOME, show_default=True)
@click.option("--abci-only", is_flag=True, help="serve ABCI only; do not start the cometbft child")
@click.argument("cometbft_args", nargs=-1, type=click.UNPROCESSED)
def start(home: str, abci_only: bool, cometbft_args: tuple[str, ...]) -> None:
    """Run the app and its supervised cometbft child (extra args after -- go to cometbft)."""
    from node.runner import run_node

    sys.exit(run_node(pathlib.Path(home), with_cometbft=not abci_only, cometbft_args=list(cometbft_args)))


@click.command("export")
@click.option("--home", default=DEFAULT_HOME, show_default=True)
def export(home: str) -> None:
    """Print the committed state as genesis app_state JSON (offline: stop the node first).

    Not an RPC query on purpose: exporting reads the whole state, which would stall block execution and lets
    anyone on the RPC make a validator do unbounded work.
    """
    import plyvel

    from app.application import Application
    from app.errors import AppError
    from node.config import db_path, load_app_config
    from node.storage.leveldb import LevelDBStore

    home_path = pathlib.Path(home)
    path = db_path(home_path, load_app_config(home_path))
    if not path.exists():
        raise CliError(f"no app state at {path}")
    try:
        store = LevelDBStore(path)
    except plyvel.IOError as e:
        raise CliError(f"cannot open {path} ({e}); is the node still running? stop it first") from None
    try:
        app = Application(store)
        doc = {"height": str(store.last_height()), "app_hash": store.last_app_hash().hex(),
               "app_state": app.export_genesis()}
    except AppError as e:
        raise CliError(e.message) from None
    finally:
        store.close()
    click.echo(json.dumps(doc, indent=2, sort_keys=True))
