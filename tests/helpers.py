"""Shared fixtures: deterministic keys, genesis, and an in-process replica over real LevelDB."""

from __future__ import annotations

import hashlib
import json
import pathlib

import nacl.signing

from app.application import Application, BlockResult
from node.client.txbuilder import msg_send, sign_tx
from node.storage.leveldb import LevelDBStore

CHAIN_ID = "perpchain-test"
GENESIS_TIME_NS = 1_700_000_000_000_000_000
BLOCK_INTERVAL_NS = 500_000_000
ONE_USDC = 1_000_000
# Default fee per non-trading message (auth admission params): 0.01 USDC, paid by the signer to the fee collector.
FEE = 10_000


def signing_key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"perpchain-test-key-%d" % i).digest())


KEYS = [signing_key(i) for i in range(8)]


def address(sk: nacl.signing.SigningKey) -> str:
    from app.lib.address import address_from_pubkey, encode_address

    return encode_address(address_from_pubkey(bytes(sk.verify_key)))


ADDRS = [address(k) for k in KEYS]
# Validators' consensus keys (distinct from account keys).
VALIDATOR_KEYS = [nacl.signing.SigningKey(hashlib.sha256(b"validator-%d" % i).digest()) for i in range(4)]


def genesis_app_state(balance_quote_quantums: int = 1_000_000 * ONE_USDC, n_funded: int = 6) -> dict:
    """Accounts 0..n_funded-1 funded; the last two keys start empty. Account 0 is the authority."""
    return {
        "bank": {
            "authority": ADDRS[0],
            "balances": [{"address": a, "amount_quote_quantums": str(balance_quote_quantums)} for a in ADDRS[:n_funded]],
        }
    }


def send_tx(sender: int, recipient: int, amount_quote_quantums: int, nonce: int, chain_id: str = CHAIN_ID) -> bytes:
    return sign_tx(KEYS[sender], chain_id, nonce, [msg_send(ADDRS[sender], ADDRS[recipient], amount_quote_quantums)])


class Replica:
    """An Application over its own LevelDB folder; can be 'restarted' (closed and reopened)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.store = LevelDBStore(path)
        self.app = Application(self.store)

    def init_chain(self, app_state: dict | None = None, vote_extensions_enable_height: int = 0) -> bytes:
        validators = [(bytes(k.verify_key), 10) for k in VALIDATOR_KEYS]
        from node.genesis import initial_height_of

        app_state = app_state if app_state is not None else genesis_app_state()
        # an export starts at its height + 1, as perpd init writes it
        initial = initial_height_of(app_state) if isinstance(app_state, dict) else 1
        if vote_extensions_enable_height:
            vote_extensions_enable_height = max(vote_extensions_enable_height, initial)
        return self.app.init_chain(CHAIN_ID, GENESIS_TIME_NS, json.dumps(app_state).encode(), validators, initial,
                                   vote_extensions_enable_height)

    def restart(self) -> None:
        self.store.close()
        self.store = LevelDBStore(self.path)
        self.app = Application(self.store)

    def block(self, txs: list[bytes], commit: bool = True, last_commit=None, time_ns: int | None = None) -> BlockResult:
        height = self.app._last_height() + 1  # initial_height while genesis is pending (an import: exported + 1)
        t = time_ns if time_ns is not None else GENESIS_TIME_NS + height * BLOCK_INTERVAL_NS
        res = self.app.finalize_block(height, t, txs, last_commit)
        if commit:
            self.app.commit()
        return res

    def balance(self, i: int) -> int:
        return self.balance_of_address(ADDRS[i])

    def balance_of(self, raw_address: bytes) -> int:
        from app.lib.address import encode_address

        return self.balance_of_address(encode_address(raw_address))

    def balance_of_address(self, address: str) -> int:
        return int(json.loads(self.app.query(f"/bank/balance/{address}", b"").value)["amount_quote_quantums"])

    def close(self) -> None:
        self.store.close()
