"""``perpd tx consensus`` and ``perpd query validators``: the validator set."""

from __future__ import annotations

import base64

import click

from app.lib.math import UINT64_MAX
from node.cli.common import (
    CliError,
    WholeNumber,
    common,
    emit,
    keyring,
    query_json,
    sign_and_broadcast,
    tx_options,
)
from node.client.txbuilder import msg_set_validator_power


def parse_pub_key(text: str) -> bytes:
    """A 32-byte ed25519 key as 64 hex digits or base64 (as in priv_validator_key.json / `cometbft show-validator`)."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CliError(f"{text!r} is not a 32-byte ed25519 public key (64 hex digits or base64)")
    return raw


@click.group("consensus")
def tx_consensus() -> None:
    """Validator-set changes (chain authority only)."""


@tx_consensus.command("set-validator-power", context_settings={"ignore_unknown_options": True})
@click.argument("from_key")
@click.argument("pub_key")
@click.argument("power", type=WholeNumber(0, UINT64_MAX))
@tx_options
def tx_consensus_set_validator_power(from_key, pub_key, power, chain_id, nonce, memo, no_wait) -> None:
    """Set the voting power of consensus key PUB_KEY to POWER (0 removes it); FROM_KEY must be the authority.

    Takes effect two blocks after the block that includes it.
    """
    obj = click.get_current_context().obj
    if power < 0:
        raise CliError("power must be >= 0")
    key = keyring(obj).get(from_key)
    msg = msg_set_validator_power(key.address, parse_pub_key(pub_key), power)
    sign_and_broadcast(obj, key, [msg], chain_id, nonce, memo, no_wait)


@click.command("validators")
@common
def query_validators() -> None:
    """The validator set the app tracks (the one that signed the last block) and any set already scheduled."""
    obj, res = query_json("/consensus/validators")
    lines = [f"height {res['height']}: {len(res['validators'])} validators, total power {res['total_power']}"]
    lines += [f"  {v['address'].upper()}  power {v['power']}  pub_key {v['pub_key']}" for v in res["validators"]]
    for s in res["scheduled"]:
        lines.append(f"from height {s['effective_height']}: "
                     + ", ".join(f"{v['address'].upper()} power {v['power']}" for v in s["validators"]))
    emit(obj, res, "\n".join(lines))
