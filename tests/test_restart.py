"""Commit is the only write; a block finalized but not committed is re-executed identically."""

import pytest

from app import errors
from tests.helpers import FEE, ONE_USDC, Replica, send_tx


def test_crash_between_finalize_and_commit(tmp_path):
    r = Replica(tmp_path / "db")
    r.init_chain()
    r.block([])
    r.block([send_tx(1, 2, ONE_USDC, 1)])
    committed = r.app.info()
    res = r.block([send_tx(1, 2, 3 * ONE_USDC, 2), send_tx(2, 3, ONE_USDC, 1)], commit=False)
    r.restart()  # "crash": nothing of block 3 may be on disk
    assert r.app.info() == committed
    again = r.block([send_tx(1, 2, 3 * ONE_USDC, 2), send_tx(2, 3, ONE_USDC, 1)])
    assert again.app_hash == res.app_hash
    assert r.app.info() == (3, res.app_hash)
    r.restart()
    assert r.app.info() == (3, res.app_hash)
    assert r.balance(2) == 1_000_000 * ONE_USDC + 4 * ONE_USDC - ONE_USDC - FEE
    r.close()


def test_crash_before_first_commit_restarts_from_genesis(tmp_path):
    r = Replica(tmp_path / "db")
    genesis_hash = r.init_chain()
    first = r.block([send_tx(1, 2, ONE_USDC, 1)], commit=False)
    r.restart()
    assert r.app.info() == (0, b"")  # CometBFT will send InitChain again
    assert r.init_chain() == genesis_hash
    assert r.block([send_tx(1, 2, ONE_USDC, 1)]).app_hash == first.app_hash
    r.close()


def test_finalize_twice_without_commit_starts_from_committed_state(replica):
    """CometBFT restarted while the app stayed up: FinalizeBlock(H) arrives again."""
    tx = send_tx(1, 2, ONE_USDC, 1)
    first = replica.block([tx], commit=False)
    replica.app.discard_pending()
    second = replica.block([tx])
    assert first.app_hash == second.app_hash
    assert second.tx_results[0].code == 0


def test_restart_keeps_chain_id_and_nonces(replica):
    replica.block([send_tx(1, 2, ONE_USDC, 9)])
    replica.restart()
    assert replica.app.chain_id == "perpchain-test"
    assert replica.app.check_tx(send_tx(1, 2, ONE_USDC, 9)).code == errors.ERR_NONCE_USED.code


def test_data_in_another_state_format_is_refused_not_misread(tmp_path):
    from perpchain.v1 import state_pb2

    from app.application import Application
    from app.consensus import keeper as consensus_keeper
    from app.lib.encoding import encode_proto
    from node.storage.leveldb import LevelDBStore

    r = Replica(tmp_path / "db")
    r.init_chain()
    r.block([send_tx(1, 2, ONE_USDC, 1)])
    r.close()
    store = LevelDBStore(tmp_path / "db")
    info = consensus_keeper.get_chain_info_or_none(store)
    assert info.state_format == consensus_keeper.STATE_FORMAT
    info.state_format = 0  # as written before the marker existed
    store.commit([(consensus_keeper.CHAIN_INFO_KEY, encode_proto(info))], store.last_height() + 1, b"x" * 32)
    with pytest.raises(errors.IncompatibleState, match="state format 0"):
        Application(store)
    store.close()
