"""Writing CometBFT genesis files for perpd (vote extensions on from height 1)."""

from __future__ import annotations

import copy
import json
import pathlib
import tempfile

from app.application import Application
from app.errors import AppError
from node.client.keys import Keyring
from node.storage.leveldb import LevelDBStore


class GenesisError(ValueError):
    pass


def load_app_state_file(path: pathlib.Path) -> dict:
    """The JSON object in ``path``; GenesisError naming the file otherwise."""
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise GenesisError(f"cannot read app state {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise GenesisError(f"app state {path} is not JSON: {e}") from None
    if not isinstance(state, dict):
        raise GenesisError(f"app state {path} must be a JSON object")
    if set(state) == EXPORT_KEYS:  # the file `perpd export` prints: its app_state is the state
        inner = state["app_state"]
        if not isinstance(inner, dict):
            raise GenesisError(f"app state {path}: its app_state must be a JSON object")
        if inner.get("exported_height") != state["height"]:
            raise GenesisError(f"app state {path}: the export's height {state['height']!r} is not its app_state's "
                               f"exported_height {inner.get('exported_height')!r}")
        return inner
    return state


EXPORT_KEYS = {"height", "app_hash", "app_state"}  # node/cli/lifecycle.py export


def initial_height_of(app_state: dict) -> int:
    """1 for a new chain; the exported height + 1 for a state from ``perpd export`` (its heights are the old
    chain's; InitChain refuses any other initial height). A malformed value is InitChain's to refuse."""
    exported = app_state.get("exported_height")
    if isinstance(exported, str) and exported.isascii() and exported.isdigit() and len(exported) <= 19:
        return int(exported) + 1
    return 1


def validate_app_state(chain_id: str, app_state: dict) -> None:
    """Run the app's own InitChain on a throwaway store: the exact checks the chain will apply at genesis."""
    with tempfile.TemporaryDirectory(prefix="perpd-genesis-check-") as tmp:
        store = LevelDBStore(tmp)
        try:
            Application(store).init_chain(chain_id=chain_id, genesis_time_ns=0,
                                          app_state_bytes=json.dumps(app_state).encode(), validators=[],
                                          initial_height=initial_height_of(app_state),
                                          vote_extensions_enable_height=1)
        except AppError as e:
            raise GenesisError(f"invalid app state: {e.message}") from None
        finally:
            store.close()


def build_app_state(template: dict, keyring: Keyring) -> dict:
    """Create/reuse the template's named keys, fund them, set the authority."""
    app_state = copy.deepcopy(template.get("app_state", {}))
    bank = app_state.setdefault("bank", {})
    balances = bank.setdefault("balances", [])
    existing = {k.name: k for k in keyring.list()}
    for acct in template.get("accounts", []):
        key = existing.get(acct["name"]) or keyring.add(acct["name"])
        balances.append({"address": key.address, "amount_quote_quantums": acct["amount_quote_quantums"]})
        existing[key.name] = key
    authority = template.get("authority")
    if authority:
        bank["authority"] = existing[authority].address
    return app_state


def patch_genesis(path: pathlib.Path, chain_id: str, app_state: dict) -> dict:
    doc = json.loads(path.read_text())
    doc["chain_id"] = chain_id
    params = doc.setdefault("consensus_params", {})
    height = initial_height_of(app_state)
    doc["initial_height"] = str(height)
    params.setdefault("abci", {})["vote_extensions_enable_height"] = str(height)
    doc["app_state"] = app_state
    path.write_text(json.dumps(doc, indent=2))
    return doc
