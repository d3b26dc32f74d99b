"""Node-local block pruning (app.toml [storage] retain_blocks): Commit answers retain_height = committed height -
retain_blocks + 1, so CometBFT keeps exactly the last retain_blocks blocks; 0 keeps every block. Checked through the
real ABCI handler over a real Application and LevelDB (CometBFT's side was checked on a live localnet: with 100, a
node at height 267 reported earliest_block_height 168 and refused block 5; docs/parameters.md)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from tendermint.abci import types_pb2 as abci

from app.application import Application
from node.abci.handler import AbciHandler
from node.config import MIN_RETAIN_BLOCKS, AppConfig, ConfigError, load_app_config, write_app_config
from node.storage.leveldb import LevelDBStore
from tests.exchange_helpers import exchange_app_state
from tests.helpers import CHAIN_ID, VALIDATOR_KEYS


def _chain(path, retain_blocks: int) -> AbciHandler:
    h = AbciHandler(Application(LevelDBStore(path)), retain_blocks=retain_blocks)
    init = abci.RequestInitChain(chain_id=CHAIN_ID, initial_height=1,
                                 app_state_bytes=json.dumps(exchange_app_state()).encode())
    init.time.seconds = 1_700_000_000
    for k in VALIDATOR_KEYS:
        init.validators.add(power=10).pub_key.ed25519 = bytes(k.verify_key)
    h.handle(abci.Request(init_chain=init))
    return h


def _retain_heights(h: AbciHandler, blocks: int) -> list[int]:
    out = []
    for height in range(1, blocks + 1):
        req = abci.RequestFinalizeBlock(height=height)
        req.time.seconds = 1_700_000_000 + height
        h.handle(abci.Request(finalize_block=req))
        out.append(h.handle(abci.Request(commit=abci.RequestCommit())).commit.retain_height)
    return out


def test_commit_asks_cometbft_to_keep_exactly_the_last_retain_blocks(tmp_path):
    """retain_blocks 100: heights 1..99 keep everything (retain_height 0); at 100 the oldest kept is 1, at 101 it is
    2, at 102 it is 3 (102 - 100 + 1)."""
    heights = _retain_heights(_chain(tmp_path / "db", 100), 102)
    assert heights[:99] == [0] * 99
    assert heights[99:] == [1, 2, 3]


def test_retain_blocks_0_keeps_every_block(tmp_path):
    assert _retain_heights(_chain(tmp_path / "db", 0), 5) == [0] * 5


def test_app_toml_carries_retain_blocks_and_refuses_values_below_the_minimum(tmp_path):
    home = tmp_path / "home"
    cfg = AppConfig.default(home)
    write_app_config(home, cfg)
    text = (home / "config" / "app.toml").read_text()
    assert "retain_blocks = 0" in text
    assert load_app_config(home).retain_blocks == 0
    cfg.retain_blocks = MIN_RETAIN_BLOCKS
    write_app_config(home, cfg)
    assert load_app_config(home).retain_blocks == 100 == MIN_RETAIN_BLOCKS
    for bad in ("99", "1", "-1", "true", '"100"', "1.5"):
        (home / "config" / "app.toml").write_text(text.replace("retain_blocks = 0", f"retain_blocks = {bad}"))
        with pytest.raises(ConfigError, match=r"\[storage\] retain_blocks = .* must be 0 \(keep every block\) or an "
                                             r"integer >= 100"):
            load_app_config(home)


def test_an_app_toml_without_retain_blocks_keeps_every_block(tmp_path):
    """Homes created before the setting existed read as 0."""
    home = tmp_path / "home"
    write_app_config(home, AppConfig.default(home))
    path = home / "config" / "app.toml"
    path.write_text("\n".join(line for line in path.read_text().splitlines() if "retain_blocks" not in line))
    assert load_app_config(home).retain_blocks == 0


def test_perpd_start_with_a_bad_retain_blocks_is_one_clear_line(tmp_path):
    """The real entry point: exit 1, one `Error:` line naming the file and the rule, no exception class, no trace."""
    root = pathlib.Path(__file__).resolve().parent.parent
    home = tmp_path / "h"
    env = {**os.environ, "PERPD_DEBUG": ""}
    subprocess.run([sys.executable, "-m", "node.cli.main", "init", "--home", str(home), "--chain-id", "t"], cwd=root,
                   check=True, capture_output=True, timeout=60, env=env)
    path = home / "config" / "app.toml"
    path.write_text(path.read_text().replace("retain_blocks = 0", "retain_blocks = 5"))
    res = subprocess.run([sys.executable, "-m", "node.cli.main", "start", "--home", str(home)], cwd=root,
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"Error: {path}: [storage] retain_blocks = 5 must be 0 (keep every "
                                               "block) or an integer >= 100"]
    assert not (home / "perpd.pid").exists()
