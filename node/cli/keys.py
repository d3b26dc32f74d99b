"""``perpd keys``: the file keyring in <home>/keys."""

from __future__ import annotations

import click

from node.cli.common import common, emit, keyring


@click.group()
def keys() -> None:
    """Manage the file keyring in <home>/keys (files are mode 0600)."""


@keys.command("add")
@click.argument("name")
@common
def keys_add(name: str) -> None:
    obj = click.get_current_context().obj
    key = keyring(obj).add(name)
    emit(obj, key.public_info(), f"{key.name}\t{key.address}")


@keys.command("list")
@common
def keys_list() -> None:
    obj = click.get_current_context().obj
    ks = keyring(obj).list()
    emit(obj, [k.public_info() for k in ks], "\n".join(f"{k.name}\t{k.address}" for k in ks) or "(no keys)")


@keys.command("show")
@click.argument("name")
@click.option("--address", "address_only", is_flag=True, help="print only the address")
@common
def keys_show(name: str, address_only: bool) -> None:
    obj = click.get_current_context().obj
    key = keyring(obj).get(name)
    emit(obj, key.public_info(), key.address if address_only else f"{key.name}\t{key.address}\t{key.pub_key.hex()}")


@keys.command("import")
@click.argument("name")
@click.argument("private_key_hex")
@common
def keys_import(name: str, private_key_hex: str) -> None:
    obj = click.get_current_context().obj
    key = keyring(obj).import_hex(name, private_key_hex)
    emit(obj, key.public_info(), f"{key.name}\t{key.address}")


@keys.command("export")
@click.argument("name")
@common
def keys_export(name: str) -> None:
    """Print the private key (hex). Anyone holding it controls the account."""
    obj = click.get_current_context().obj
    secret = keyring(obj).export_hex(name)
    emit(obj, {"name": name, "private_key": secret}, secret)
