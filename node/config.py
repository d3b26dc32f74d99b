"""Node home layout and ``config/app.toml``.

A home holds CometBFT's files (``config/config.toml``, ``config/genesis.json``,
keys, ``data/``) and ours:

- ``config/app.toml``  -- this node's perpd settings (below)
- ``data/perpd.db``    -- committed app state (LevelDB)
- ``keys/``            -- the file keyring (``perpd keys``)
- ``perpd.pid``, ``cometbft.pid``, ``cometbft.log`` -- written by ``perpd start``
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tomllib

import tomlkit

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class AppConfig:
    abci_address: str  # unix:///abs/path.sock or tcp://127.0.0.1:PORT
    db_path: str  # LevelDB directory, relative to home unless absolute
    log_level: str = "info"
    oracle: dict = dataclasses.field(default_factory=dict)  # the [oracle] table (node/daemons/pricefeed.py)
    # [storage] retain_blocks: CometBFT keeps only the last this-many blocks (0 = every block). Node-local: the app
    # answers Commit with retain_height = committed height - retain_blocks + 1; CometBFT prunes its block store and
    # state below it (never the blocks evidence may still need). The app's own state is never pruned.
    retain_blocks: int = 0

    @staticmethod
    def default(home: pathlib.Path) -> "AppConfig":
        return AppConfig(abci_address=f"unix://{home.resolve() / 'perpd.sock'}", db_path="data/perpd.db")


class ConfigError(ValueError):
    """A setting of app.toml out of its range: one clear line at start-up."""


MIN_RETAIN_BLOCKS = 100  # below it a restarted node could not serve its peers the recent blocks they catch up from


def app_toml_path(home: pathlib.Path) -> pathlib.Path:
    return home / "config" / "app.toml"


def load_app_config(home: pathlib.Path) -> AppConfig:
    path = app_toml_path(home)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `perpd init --home {home}` first")
    doc = tomllib.loads(path.read_text())
    retain = doc["storage"].get("retain_blocks", 0)
    if type(retain) is not int or not (retain == 0 or MIN_RETAIN_BLOCKS <= retain <= 2**62):
        raise ConfigError(f"{path}: [storage] retain_blocks = {retain!r} must be 0 (keep every block) or an integer "
                         f">= {MIN_RETAIN_BLOCKS}")
    return AppConfig(
        abci_address=doc["abci"]["address"],
        db_path=doc["storage"]["db_path"],
        log_level=doc.get("log", {}).get("level", "info"),
        oracle=dict(doc.get("oracle", {})),
        retain_blocks=retain,
    )


def write_app_config(home: pathlib.Path, cfg: AppConfig) -> None:
    doc = tomlkit.document()
    doc.add(tomlkit.comment("perpd application settings (see docs/parameters.md)"))
    abci = tomlkit.table()
    abci.add("address", cfg.abci_address)
    abci["address"].comment("ABCI socket CometBFT connects to (must equal proxy_app in config.toml)")
    doc.add("abci", abci)
    storage = tomlkit.table()
    storage.add("db_path", cfg.db_path)
    storage.add("retain_blocks", cfg.retain_blocks)
    storage["retain_blocks"].comment("CometBFT keeps only the last N blocks; 0 = every block (docs/parameters.md)")
    doc.add("storage", storage)
    lg = tomlkit.table()
    lg.add("level", cfg.log_level)
    doc.add("log", lg)
    oracle = tomlkit.table()
    oracle.add(tomlkit.comment("price daemon (docs/feeds.md); empty feeds_url = no prices in this validator's votes"))
    for k, v in cfg.oracle.items():
        oracle.add(k, v)
    doc.add("oracle", oracle)
    path = app_toml_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomlkit.dumps(doc))


def db_path(home: pathlib.Path, cfg: AppConfig) -> pathlib.Path:
    p = pathlib.Path(cfg.db_path)
    return p if p.is_absolute() else home / p


def find_cometbft() -> str:
    """The pinned binary: $PERPD_COMETBFT, else the repo's bin/cometbft, else PATH."""
    env = os.environ.get("PERPD_COMETBFT")
    if env:
        return env
    local = REPO_ROOT / "bin" / "cometbft"
    if local.exists():
        return str(local)
    found = shutil.which("cometbft")
    if not found:
        raise FileNotFoundError("cometbft binary not found: run `make cometbft` or set PERPD_COMETBFT")
    return found


def perpd_cometbft_settings() -> dict[str, dict[str, object]]:
    """config.toml settings every perpd node gets (init and localnet): CometBFT refuses a tx larger than the app
    accepts before it costs a CheckTx round trip or gossip bandwidth (its default limit is 1 MiB)."""
    from app.tx.codec import MAX_TX_BYTES

    return {"mempool": {"max_tx_bytes": MAX_TX_BYTES}}


def edit_cometbft_config(home: pathlib.Path, settings: dict[str, dict[str, object]]) -> None:
    """Set keys in config/config.toml, keeping its comments. settings: {table or "": {key: value}}."""
    path = home / "config" / "config.toml"
    doc = tomlkit.parse(path.read_text())
    for table, values in settings.items():
        target = doc if table == "" else doc[table]
        for k, v in values.items():
            target[k] = v
    path.write_text(tomlkit.dumps(doc))
