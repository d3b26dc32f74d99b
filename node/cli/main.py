"""The ``perpd`` command line (Cosmos conventions: init, start, keys, tx, query, status, localnet).

Every failure prints one ``Error: ...`` line to stderr and exits non-zero;
set PERPD_DEBUG=1 for a traceback.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pathlib
import subprocess
import sys

import click

from app.lib.address import decode_address_or_none
from app.lib.math import UINT64_MAX
from app.prices.queries import format_scaled
from app.prices.votes import decode_oracle_tx_or_none
from node import localnet as ln
from node.cli.feeds import feeds
from node.client.keys import Keyring, KeyError_
from node.client.rpc import RpcClient, RpcError
from node.client.txbuilder import NoNonceLeft, default_nonce, msg_send, msg_set_validator_power, sign_tx, tx_hash
from node.client.units import UnitError, quote_quantums_to_usdc, usdc_to_quote_quantums
from node.config import AppConfig, edit_cometbft_config, find_cometbft, perpd_cometbft_settings, write_app_config
from node.genesis import GenesisError, load_app_state_file, patch_genesis, validate_app_state

DEFAULT_HOME = os.environ.get("PERPD_HOME", str(pathlib.Path.home() / ".perpd"))
DEFAULT_NODE = os.environ.get("PERPD_NODE", "http://127.0.0.1:26657")
DEFAULT_LOCALNET = os.environ.get("PERPD_LOCALNET_DIR", ".localnet")
INT64_MAX = (1 << 63) - 1  # CometBFT heights are int64
MAX_CHAIN_ID_LEN = 50  # CometBFT's genesis limit


class CliError(click.ClickException):
    """One clear line, exit code 1."""


def emit(ctx_obj: dict, data, text: str | None = None) -> None:
    if ctx_obj.get("output") == "json" or text is None:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text)


def fail(ctx_obj: dict, data, text: str) -> None:
    """A failed tx: JSON on stdout with -o json, else one ``Error:`` line on stderr; exit 1 either way."""
    if ctx_obj.get("output") == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(f"Error: {text}", err=True)
    sys.exit(1)


def common(f):
    """--home / --node / -o on every command."""
    @click.option("--home", default=DEFAULT_HOME, show_default=True, help="node / keyring home folder")
    @click.option("--node", "node_url", default=DEFAULT_NODE, show_default=True, help="CometBFT RPC address")
    @click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
    @click.pass_context
    @functools.wraps(f)
    def wrapper(ctx, home, node_url, output, *args, **kwargs):
        ctx.ensure_object(dict)
        ctx.obj.update(home=pathlib.Path(home), node=node_url, output=output)
        return ctx.invoke(f, *args, **kwargs)
    return wrapper


def rpc(ctx_obj: dict) -> RpcClient:
    return RpcClient(ctx_obj["node"])


def keyring(ctx_obj: dict) -> Keyring:
    return Keyring(ctx_obj["home"] / "keys")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """perpd: perpetual-futures chain node and client."""


# --- init / start -----------------------------------------------------------------
@cli.command()
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


@cli.command()
@click.option("--home", default=DEFAULT_HOME, show_default=True)
@click.option("--abci-only", is_flag=True, help="serve ABCI only; do not start the cometbft child")
@click.argument("cometbft_args", nargs=-1, type=click.UNPROCESSED)
def start(home: str, abci_only: bool, cometbft_args: tuple[str, ...]) -> None:
    """Run the app and its supervised cometbft child (extra args after -- go to cometbft)."""
    from node.runner import run_node

    sys.exit(run_node(pathlib.Path(home), with_cometbft=not abci_only, cometbft_args=list(cometbft_args)))


# --- keys ------------------------------------------------------------------------
@cli.command("export")
@click.option("--home", default=DEFAULT_HOME, show_default=True)
def export(home: str) -> None:
    """Print the committed state as genesis app_state JSON (offline: stop the node first).

    Not an RPC query on purpose: exporting reads the whole state, which would stall block execution and lets
    anyone on the RPC make a validator do unbounded work.
    """
    import plyvel

    from app.application import Application
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
    finally:
        store.close()
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


@cli.group()
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


# --- tx --------------------------------------------------------------------------
@cli.group()
def tx() -> None:
    """Sign and broadcast transactions; waits for the block and prints height, code and log."""


def resolve_address(obj: dict, who: str) -> str:
    if who.isupper() and decode_address_or_none(who.lower()) is not None:
        return who.lower()  # bech32 allows all-uppercase; the chain's canonical form is lowercase
    if decode_address_or_none(who) is not None:
        return who
    try:
        return keyring(obj).get(who).address
    except KeyError_:
        raise CliError(f"{who!r} is neither a perp1... address nor a key in {obj['home'] / 'keys'}") from None


def broadcast_and_wait(obj: dict, client: RpcClient, tx_bytes: bytes, wait: bool) -> None:
    res = client.broadcast_tx_sync(tx_bytes)
    h = tx_hash(tx_bytes)
    if int(res["code"]) != 0:
        fail(obj, {"hash": h, "code": int(res["code"]), "codespace": res.get("codespace", ""), "log": res["log"],
                   "stage": "check_tx"},
             f"rejected by CheckTx: code {res['code']} ({res.get('codespace', '')}): {res['log']}")
    if not wait:
        emit(obj, {"hash": h, "code": 0, "stage": "mempool"}, f"in mempool: {h}")
        return
    try:
        result = client.wait_tx(h)
    except RpcError as e:
        if "not committed" not in str(e):
            raise
        raise CliError(f"{e}: CheckTx accepted it, so it was probably dropped from the mempool (for example another "
                       f"tx spent the funds first); check later with `perpd query tx {h}`") from None
    r = result["tx_result"]
    code = int(r.get("code", 0))
    out = {"hash": h, "height": int(result["height"]), "code": code, "codespace": r.get("codespace", ""),
           "log": r.get("log", "")}
    if code != 0:
        fail(obj, {**out, "stage": "finalize_block"}, f"included at height {result['height']} but failed: code {code} "
             f"({out['codespace']}): {out['log']}  hash {h}")
    emit(obj, out, f"height {result['height']}  code {code}  hash {h}" + (f"  log {r.get('log')}" if r.get("log") else ""))


@tx.group("bank")
def tx_bank() -> None:
    """USDC transfers."""


def tx_options(f):
    """--chain-id, --nonce, --memo, --no-wait and the common flags, for every tx command."""
    f = common(f)
    f = click.option("--no-wait", is_flag=True, help="return once CheckTx accepted the tx")(f)
    f = click.option("--memo", default="")(f)
    f = click.option("--nonce", type=click.IntRange(0, UINT64_MAX),
                     help="defaults to max(now in ms, highest used nonce + 1); highest + 1 for a small-counter account")(f)
    return click.option("--chain-id", help="defaults to the node's chain id")(f)


@tx_bank.command("send", context_settings={"ignore_unknown_options": True})
@click.argument("from_key")
@click.argument("to")
@click.argument("amount_usdc")
@tx_options
def tx_bank_send(from_key, to, amount_usdc, chain_id, nonce, memo, no_wait) -> None:
    """Send AMOUNT_USDC (e.g. 12.5) from key FROM_KEY to address or key name TO."""
    obj = click.get_current_context().obj
    amount = usdc_to_quote_quantums(amount_usdc)
    key = keyring(obj).get(from_key)
    to_address = resolve_address(obj, to)
    sign_and_broadcast(obj, key, [msg_send(key.address, to_address, amount)], chain_id, nonce, memo, no_wait)


def sign_and_broadcast(obj: dict, key, msgs: list, chain_id: str | None, nonce: int | None, memo: str,
                       no_wait: bool) -> None:
    """Fill in chain id and nonce from the node, sign with ``key``, broadcast and (unless no_wait) wait."""
    with rpc(obj) as client:
        if chain_id == "":
            raise CliError("--chain-id is empty (omit it to use the node's chain id)")
        chain_id = chain_id or client.chain_id()
        if nonce is None:
            recent = client.query_json(f"/auth/account/{key.address}")["recent_nonces"]
            try:
                nonce = default_nonce([int(n) for n in recent])
            except NoNonceLeft as e:
                raise CliError(str(e)) from None
        if nonce < 0:
            raise CliError("nonce must be non-negative")
        tx_bytes = sign_tx(key.signing_key, chain_id, nonce, msgs, memo)
        broadcast_and_wait(obj, client, tx_bytes, wait=not no_wait)


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


@tx.group("consensus")
def tx_consensus() -> None:
    """Validator-set changes (chain authority only)."""


@tx_consensus.command("set-validator-power", context_settings={"ignore_unknown_options": True})
@click.argument("from_key")
@click.argument("pub_key")
@click.argument("power", type=click.IntRange(0, UINT64_MAX))
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


# --- query -----------------------------------------------------------------------
def query_json(path: str) -> tuple[dict, dict]:
    """(CLI context object, JSON answer of the app query ``path``) for the current command."""
    obj = click.get_current_context().obj
    with rpc(obj) as client:
        return obj, client.query_json(path)


@cli.group()
def query() -> None:
    """Read chain state through the node's abci_query."""


@query.group("bank")
def query_bank() -> None:
    """USDC balances and supply."""


@query_bank.command("balance")
@click.argument("who")
@common
def query_bank_balance(who: str) -> None:
    """Balance of an address or key name."""
    obj, res = query_json(f"/bank/balance/{resolve_address(click.get_current_context().obj, who)}")
    n = int(res["amount_quote_quantums"])
    emit(obj, {**res, "amount_usdc": quote_quantums_to_usdc(n)}, f"{quote_quantums_to_usdc(n)} USDC")


@query_bank.command("supply")
@common
def query_bank_supply() -> None:
    obj, res = query_json("/bank/supply")
    emit(obj, res, f"{quote_quantums_to_usdc(int(res['amount_quote_quantums']))} USDC")


@query.group("auth")
def query_auth() -> None:
    """Accounts' nonces and request budgets, admission parameters."""


def _show_account(who: str) -> None:
    obj, res = query_json(f"/auth/account/{resolve_address(click.get_current_context().obj, who)}")
    b = res["budget"]
    fee = quote_quantums_to_usdc(int(b["fee_per_message_quote_quantums"]))
    emit(obj, res, "\n".join([
        f"{res['address']}",
        f"  recent nonces: {', '.join(res['recent_nonces']) or '(none)'}",
        f"  budget at height {b['at_height']}: {b['requests_available']}/{b['request_capacity']} requests "
        f"(+{b['request_refill_per_block']}/block), {b['cancels_available']}/{b['cancel_capacity']} cancels "
        f"(+{b['cancel_refill_per_block']}/block); fee {fee} USDC per non-trading message",
    ]))


@query_auth.command("account")
@click.argument("who")
@common
def query_auth_account(who: str) -> None:
    """Recent nonces and remaining request/cancel budget of an address or key name."""
    _show_account(who)


@query_auth.command("params")
@common
def query_auth_params() -> None:
    """Admission parameters: fee per non-trading message, budget capacity and refill, fee collector."""
    obj, res = query_json("/auth/params")
    emit(obj, res, "\n".join(f"{k}: {v}" for k, v in sorted(res.items())))


@query.command("account", hidden=True)
@click.argument("who")
@common
def query_account(who: str) -> None:
    """Alias of `query auth account`."""
    _show_account(who)


@query.command("validators")
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


@query.command("tx")
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


@query.group("prices")
def query_prices() -> None:
    """Oracle and mark prices per market."""


def _market_line(m: dict) -> str:
    return (f"{m['pair']:10s} oracle {m['oracle_price_usd']:>22s}  mark {m['mark_price_usd']:>22s}  "
            f"updated h{m['last_update_height']}  {'STALE' if m['stale'] else 'fresh'}  "
            f"{m['reporters']} validators, power {m['reported_power']}/{m['total_power']}")


@query_prices.command("list")
@common
def query_prices_list() -> None:
    """Every market: oracle and mark price, last update height, stale flag, reporters."""
    obj, res = query_json("/prices/markets")
    emit(obj, res, "\n".join(_market_line(m) for m in res["markets"]) or "(no markets)")


@query_prices.command("market")
@click.argument("pair")
@common
def query_prices_market(pair: str) -> None:
    """One market: oracle, mark, last update height/time, stale flag, reporters and their stake."""
    obj, res = query_json(f"/prices/market/{pair}")
    emit(obj, res, _market_line(res) + f"  basis EMA {res['basis_ema']}  (last update time "
                   f"{res['last_update_time_ns']} ns)")


@query.group("oracle")
def query_oracle() -> None:
    """The validators' price votes, as carried in blocks."""


@query_oracle.command("votes")
@click.argument("height", type=click.IntRange(1, INT64_MAX))
@common
def query_oracle_votes(height: int) -> None:
    """Per-validator prices behind block HEIGHT's oracle prices (votes of HEIGHT-1, from the block itself)."""
    from app.prices.votes import MarketIndex, decode_vote_extension_or_none, is_pruned

    obj = click.get_current_context().obj
    if height == 1:
        raise CliError("block 1 carries no oracle tx (it has no previous height whose votes it could carry)")
    with rpc(obj) as client:
        block = client.block(height)["block"]
        markets = client.query_json("/prices/markets")["markets"]
        # Powers of the set that signed those votes (height - 1), from CometBFT's history, not today's set.
        signed_by = client.call("validators", height=str(height - 1), per_page="100")["validators"]
        validators = {v["address"].lower(): int(v["voting_power"]) for v in signed_by}
    txs = block["data"]["txs"] or []
    tx = decode_oracle_tx_or_none(base64.b64decode(txs[0])) if txs else None
    if tx is None:
        raise CliError(f"block {height} carries no oracle tx (vote extensions start one height after they are enabled)")
    by_id = {m["id"]: m for m in markets}
    index = MarketIndex(list(by_id))
    flags = {1: "absent", 2: "commit", 3: "nil"}
    votes = []
    for v in tx.votes:
        decoded = decode_vote_extension_or_none(v.vote_extension, index) if v.block_id_flag == 2 else None
        prices = {}
        if decoded is not None:
            for pos, price in zip(decoded[0].tolist(), decoded[1].tolist()):
                m = by_id[int(index.ids[pos])]
                prices[m["pair"]] = {"price": str(price), "usd": format_scaled(price, m["exponent"])}
        pruned = is_pruned(v)
        votes.append({"validator": v.validator_address.hex().upper(), "power": validators.get(v.validator_address.hex(), 0),
                      "flag": "pruned" if pruned else flags.get(v.block_id_flag, str(v.block_id_flag)),
                      "valid_extension": decoded is not None or v.block_id_flag != 2, "prices": prices})
    updates = {by_id[u.market_id]["pair"]: {"price": str(u.price), "usd": format_scaled(u.price, by_id[u.market_id]["exponent"]),
                                            "reporters": u.reporters, "reported_power": str(u.reported_power)}
               for u in tx.updates}
    out = {"height": height, "votes_of_height": height - 1, "round": tx.round, "votes": votes, "medians": updates}
    lines = [f"block {height}: votes of height {height - 1}, round {tx.round}"]
    for v in votes:
        shown = ", ".join(f"{p} {q['usd']}" for p, q in v["prices"].items()) or "(no prices)"
        lines.append(f"  {v['validator']}  power {v['power']}  {v['flag']:6s}  {shown}")
    lines.append("medians: " + (", ".join(f"{p} {u['usd']} ({u['reporters']} validators)" for p, u in updates.items())
                                or "(none reached 2/3 of stake)"))
    emit(obj, out, "\n".join(lines))


@cli.command()
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


# --- localnet --------------------------------------------------------------------
@cli.group()
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
@click.option("--genesis-template", type=click.Path(exists=True, dir_okay=False), default=str(ln.DEFAULT_TEMPLATE),
              show_default=True, help="accounts to create and fund, and the app_state (used when creating)")
@click.option("--timeout-commit", default="500ms", show_default=True, help="CometBFT consensus.timeout_commit")
def localnet_up(dir_, output, validators, base_port, proxy_app, timeout, genesis_template, timeout_commit) -> None:
    """Create (if needed) and start the localnet; returns once every node is at height >= 3."""
    manifest = ln.up(pathlib.Path(dir_), validators, base_port, proxy_app, timeout_s=timeout,
                     progress=lambda s: click.echo(s, err=True), timeout_commit=timeout_commit,
                     template_path=pathlib.Path(genesis_template))
    endpoints = [{"node": n["index"], "rpc": ln.rpc_url(n), "home": n["home"]} for n in manifest["nodes"]]
    emit({"output": output}, {"chain_id": manifest["chain_id"], "nodes": endpoints, "keys": str(pathlib.Path(dir_).resolve() / "keys")},
         "\n".join([f"chain {manifest['chain_id']} is up; RPC endpoints:"]
                   + [f"  node{e['node']}: {e['rpc']}" for e in endpoints]
                   + [f"keys: perpd keys list --home {pathlib.Path(dir_).resolve()}"]))


@localnet.command("status")
@localnet_options
def localnet_status(dir_, output) -> None:
    rows = ln.status(pathlib.Path(dir_))
    emit({"output": output}, rows, "\n".join(
        f"node{r['node']}  {'up  ' if r['running'] else 'DOWN'}  height {r['height'] if r['height'] is not None else '-'}"
        f"  app hash {r['app_hash'] or '-'}  {r['rpc']}" for r in rows))


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
@click.option("-n", "--lines", type=click.IntRange(min=1), default=50, show_default=True)
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


cli.add_command(feeds)


# --- entry point -------------------------------------------------------------------
EXPECTED = (RpcError, KeyError_, UnitError, ln.LocalnetError, FileNotFoundError, subprocess.CalledProcessError,
            json.JSONDecodeError, PermissionError, GenesisError)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:  # `perpd query`: the help is the answer, not an error
        click.echo(e.format_message(), err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code or 1)
    except EXPECTED as e:
        if os.environ.get("PERPD_DEBUG"):
            raise
        msg = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
        click.echo(f"Error: {msg}", err=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 -- CLI boundary: one line, no traceback
        if os.environ.get("PERPD_DEBUG"):
            raise
        click.echo(f"Error: {e.__class__.__name__}: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
