"""Writing CometBFT genesis files for perpd (vote extensions on from height 1)."""

from __future__ import annotations

import copy
import json
import pathlib

from node.client.keys import Keyring


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
    params.setdefault("abci", {})["vote_extensions_enable_height"] = "1"
    doc["app_state"] = app_state
    path.write_text(json.dumps(doc, indent=2))
    return doc
