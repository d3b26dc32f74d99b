"""The ``perpd`` command line (Cosmos conventions: init, start, keys, tx, query, status, localnet).

This file only composes the command groups; each group lives in its own file under node/cli/ (tx and query of a
module side by side) and shares node/cli/common.py (--home/--node/-o, output, errors, signing).

Every failure prints one ``Error: ...`` line to stderr and exits non-zero;
set PERPD_DEBUG=1 for a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click

from node import localnet as ln
from node.cli import auth, bank, chain, clob, consensus, keys, lifecycle, markets, perpetuals, prices, subaccounts
from node.cli.common import OUTPUT, error_json
from node.cli.chain import daemon_summary  # noqa: F401 -- re-exported: tests and scripts import it from here
from node.cli.feeds import feeds
from node.cli.localnet import localnet
from node.cli.mm import mm
from node.client.keys import KeyError_
from node.client.rpc import RpcError
from node.client.units import UnitError
from node.config import ConfigError
from node.genesis import GenesisError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """perpd: perpetual-futures chain node and client."""


@cli.group()
def tx() -> None:
    """Sign and broadcast transactions; waits for the block and prints height, code and log."""


@cli.group()
def query() -> None:
    """Read chain state through the node's abci_query."""


for command in (lifecycle.init, lifecycle.start, lifecycle.export, keys.keys, chain.status, localnet, feeds, mm):
    cli.add_command(command)
for command in (bank.tx_bank, consensus.tx_consensus, subaccounts.tx_subaccounts, clob.tx_clob, markets.tx_markets):
    tx.add_command(command)
for command in (bank.query_bank, auth.query_auth, auth.query_account, consensus.query_validators, chain.query_tx,
                prices.query_prices, prices.query_oracle, subaccounts.query_subaccounts, clob.query_clob,
                perpetuals.query_perpetuals):
    query.add_command(command)


# --- entry point -------------------------------------------------------------------
EXPECTED = (RpcError, KeyError_, UnitError, ln.LocalnetError, FileNotFoundError, subprocess.CalledProcessError,
            json.JSONDecodeError, PermissionError, GenesisError, ConfigError)


_GLOBAL_OPTIONS = ("--home", "--node", "-o", "--output")


def _split_option(token: str) -> tuple[str, str | None]:
    """('--home', 'X') for '--home=X', ('-o', 'json') for '-ojson', (token, None) otherwise."""
    if token.startswith("--") and "=" in token:
        name, value = token.split("=", 1)
        return name, value
    if token.startswith("-o") and token != "-o" and not token.startswith("--"):
        return "-o", token[2:]
    return token, None


def hoist_global_options(argv: list[str]) -> list[str]:
    """Cosmos-style global flags before the command (`perpd -o json query bank supply`, `perpd --home H keys list`)
    moved behind it, where every command that takes them reads them (docs/cli.md "Global conventions"). Only the
    leading run of those flags moves; everything else keeps its place."""
    moved: list[str] = []
    i = 0
    while i < len(argv):
        name, value = _split_option(argv[i])
        if name not in _GLOBAL_OPTIONS:
            break
        if value is None:
            if i + 1 >= len(argv):
                break  # a flag without its value: Click's own error names it
            moved += [name, argv[i + 1]]
            i += 2
        else:
            moved += [name, value]
            i += 1
    if not moved:
        return argv
    rest = argv[i:]
    end = rest.index("--") if "--" in rest else len(rest)
    return rest[:end] + moved + rest[end:]


def wants_json(argv: list[str]) -> bool:
    """The command line asks for -o json (read before Click parses it, so a usage error is JSON on stdout too)."""
    for i, token in enumerate(argv):
        if token == "--":
            return False
        name, value = _split_option(token)
        if name in ("-o", "--output"):
            if value is None:
                value = argv[i + 1] if i + 1 < len(argv) else ""
            if value == "json":
                return True
    return False


def main() -> None:
    argv = hoist_global_options(sys.argv[1:])
    # until a command's own -o is read (one process may run main more than once: tests); a usage error raised while
    # Click parses the line is answered in the mode the line asks for
    OUTPUT["mode"] = "json" if wants_json(argv) else "text"
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:  # `perpd query`: the help is the answer, not an error
        click.echo(e.format_message(), err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        error_json(e.format_message(), "client")
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code or 1)
    except EXPECTED as e:
        if os.environ.get("PERPD_DEBUG"):
            raise
        msg = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
        error_json(str(msg), "rpc" if isinstance(e, RpcError) else "client")
        click.echo(f"Error: {msg}", err=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 -- CLI boundary: one line, no traceback
        if os.environ.get("PERPD_DEBUG"):
            raise
        error_json(f"{e.__class__.__name__}: {e}", "client")
        click.echo(f"Error: {e.__class__.__name__}: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
