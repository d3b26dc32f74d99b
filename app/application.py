"""The composition root: the one place where the order of block steps is written.

``Application`` is driven by ``node/abci`` with plain Python values (no
CometBFT types cross into ``app/``). State lives in a :class:`CommitStore`;
everything between two commits lives in branches that are thrown away unless
Commit writes them, so a block finalized but not committed is simply
re-executed after a restart.
"""

from __future__ import annotations

import dataclasses
import json

from app import errors
from app.auth import genesis as auth_genesis
from app.auth import keeper as auth_keeper
from app.bank import genesis as bank_genesis
from app.bank import keeper as bank_keeper
from app.bank import queries as bank_queries
from app.consensus import keeper as consensus_keeper
from app.context import BlockInfo, Ctx
from app.errors import AppError
from app.events import Event
from app.lib.address import address_from_pubkey, encode_address
from app.lib.encoding import uvarint
from app.store import BranchStore, CommitStore, compute_app_hash
from app.tx.codec import StatelessCheckCache
from app.tx.router import ROUTES

APP_VERSION = 1
MAX_VOTE_EXTENSION_BYTES = 0  # vote extensions carry nothing until the oracle plane (#3)


@dataclasses.dataclass(frozen=True)
class TxResult:
    code: int = 0
    codespace: str = ""
    log: str = ""
    events: tuple[Event, ...] = ()

    @staticmethod
    def from_error(err: AppError) -> "TxResult":
        return TxResult(code=err.code, codespace=err.codespace, log=err.log)


@dataclasses.dataclass(frozen=True)
class BlockResult:
    tx_results: tuple[TxResult, ...]
    events: tuple[Event, ...]
    app_hash: bytes


@dataclasses.dataclass(frozen=True)
class QueryResult:
    code: int = 0
    codespace: str = ""
    log: str = ""
    value: bytes = b""


@dataclasses.dataclass
class _Pending:
    height: int
    store: BranchStore
    app_hash: bytes


def proto_size_of_tx(n: int) -> int:
    """Bytes a tx of length n adds to CometBFT's Txs proto (tag + uvarint length + data)."""
    return 1 + len(uvarint(n)) + n


class Application:
    def __init__(self, store: CommitStore) -> None:
        self._store = store
        self._genesis: _Pending | None = None  # InitChain writes, committed with the first block
        self._pending: _Pending | None = None  # FinalizeBlock result awaiting Commit
        info = consensus_keeper.get_chain_info_or_none(store)
        self._chain_id = info.chain_id if info is not None else ""
        self._check_state = BranchStore(store)
        self._stateless = StatelessCheckCache()

    # --- handshake -----------------------------------------------------------
    def info(self) -> tuple[int, bytes]:
        """(last committed height, its app hash); (0, b"") before the first Commit."""
        return self._store.last_height(), self._store.last_app_hash()

    @property
    def chain_id(self) -> str:
        return self._chain_id

    def init_chain(
        self,
        chain_id: str,
        genesis_time_ns: int,
        app_state_bytes: bytes,
        validators: list[tuple[bytes, int]],
        initial_height: int,
    ) -> bytes:
        """Load genesis into a pending branch; returns the genesis app hash. Raises AppError on bad genesis."""
        try:
            app_state = json.loads(app_state_bytes or b"{}")
        except (ValueError, UnicodeDecodeError) as e:
            raise AppError(errors.ERR_INVALID_GENESIS, f"app_state is not JSON: {e}") from None
        if not isinstance(app_state, dict):
            raise AppError(errors.ERR_INVALID_GENESIS, "app_state must be a JSON object")
        store = BranchStore(self._store)
        consensus_keeper.set_chain_info(store, chain_id, initial_height, genesis_time_ns)
        consensus_keeper.set_validators(store, [(address_from_pubkey(pk), pk, p) for pk, p in validators])
        bank_genesis.init_genesis(store, app_state.get("bank", {}))
        auth_genesis.init_genesis(store, app_state.get("auth", {}))
        bank_keeper.check_supply(store)
        app_hash = compute_app_hash(b"", store.write_set())
        self._genesis = _Pending(initial_height - 1, store, app_hash)
        self._pending = None
        self._chain_id = chain_id
        self._check_state = BranchStore(store)
        return app_hash

    def _base(self) -> tuple[BranchStore | CommitStore, bytes]:
        """State and app hash the next block builds on: genesis before the first commit."""
        if self._store.last_height() == 0 and self._genesis is not None:
            return self._genesis.store, self._genesis.app_hash
        return self._store, self._store.last_app_hash()

    def discard_pending(self) -> None:
        """Forget uncommitted work (CometBFT restarted while the app kept running)."""
        self._pending = None
        self._check_state = BranchStore(self._base()[0])

    # --- mempool ---------------------------------------------------------------
    def check_tx(self, tx_bytes: bytes, recheck: bool = False) -> TxResult:
        """Full execution against the check state (reset at every Commit; rechecks rebuild it)."""
        block = BlockInfo(height=self._store.last_height() + 1, block_time_ns=0, chain_id=self._chain_id)
        return self._run_tx(self._check_state, block, tx_bytes, is_check=True)

    # --- proposals -------------------------------------------------------------
    def prepare_proposal(self, txs: list[bytes], max_tx_bytes: int) -> list[bytes]:
        """Mempool order, drop txs that fail stateless checks, stay within max_tx_bytes (proto size)."""
        out: list[bytes] = []
        used = 0
        for tx in txs:
            size = proto_size_of_tx(len(tx))
            if used + size > max_tx_bytes:
                continue  # a smaller tx later in the list may still fit
            try:
                self._stateless.decode_and_verify(tx, self._chain_id)
            except AppError:
                continue
            out.append(tx)
            used += size
        return out

    def process_proposal(self, txs: list[bytes]) -> bool:
        """Deterministic: accept iff every tx passes the same stateless checks PrepareProposal applies."""
        for tx in txs:
            try:
                self._stateless.decode_and_verify(tx, self._chain_id)
            except AppError:
                return False
        return True

    def verify_vote_extension(self, extension: bytes) -> bool:
        return len(extension) <= MAX_VOTE_EXTENSION_BYTES

    # --- block execution ---------------------------------------------------------
    def finalize_block(self, height: int, block_time_ns: int, txs: list[bytes]) -> BlockResult:
        """Execute a decided block from committed state; the result waits for Commit.

        Always starts from the last committed state (or pending genesis), so a
        repeated FinalizeBlock for the same height gives the same result.
        """
        base, prev_app_hash = self._base()
        if self._store.last_height() == 0 and self._genesis is not None:
            expected = self._genesis.height + 1
        else:
            expected = self._store.last_height() + 1
        if height != expected:
            raise errors.InvariantViolation(f"FinalizeBlock height {height}, expected {expected}")
        block = BlockInfo(height=height, block_time_ns=block_time_ns, chain_id=self._chain_id)
        store = BranchStore(base)
        block_events: list[Event] = []

        # 1. Oracle price tx (tx 0) -- TODO(#3).
        # 2. User txs in block order, each in its own branch; a failure is a result code.
        tx_results = tuple(self._run_tx(store, block, tx, is_check=False) for tx in txs)
        # 3. Invariants: USDC conserved across the block (O(changes)).
        bank_keeper.check_block_conservation(store)
        # 4. App hash over this block's sorted write-set, chained to the previous one.
        app_hash = compute_app_hash(prev_app_hash, store.write_set())
        self._pending = _Pending(height, store, app_hash)
        return BlockResult(tx_results=tx_results, events=tuple(block_events), app_hash=app_hash)

    def commit(self) -> int:
        """Persist the pending block atomically; returns retain_height (0 = keep every block)."""
        pending = self._pending
        if pending is None:
            raise errors.InvariantViolation("Commit without a finalized block")
        if self._genesis is not None and self._store.last_height() == 0:
            pending.store.write()  # block writes on top of genesis writes, committed together
            writes = self._genesis.store.write_set()
        else:
            writes = pending.store.write_set()
        self._store.commit(writes, pending.height, pending.app_hash)
        self._genesis = None
        self._pending = None
        self._check_state = BranchStore(self._store)
        return 0

    # --- tx execution -------------------------------------------------------------
    def _run_tx(self, parent: BranchStore, block: BlockInfo, tx_bytes: bytes, is_check: bool) -> TxResult:
        """Authenticate, use the nonce, run the messages.

        In a block, once a tx authenticated (signature and nonce) its nonce
        stays used even if a message fails: the signed bytes are public and
        must never succeed later. CheckTx discards everything on failure.
        """
        try:
            decoded = self._stateless.decode_and_verify(tx_bytes, self._chain_id)
        except AppError as err:
            return TxResult.from_error(err)
        ante = BranchStore(parent)
        try:
            auth_keeper.apply_nonce(ante, decoded.signer, decoded.nonce)
        except AppError as err:
            return TxResult.from_error(err)
        ctx = Ctx(block=block, store=BranchStore(ante), is_check_tx=is_check)
        try:
            for name, msg in decoded.msgs:
                ROUTES[name].handle(ctx, msg)
        except AppError as err:
            if not is_check:
                ante.write()
            return TxResult.from_error(err)
        ctx.store.write()
        ante.write()
        signer_event = Event.of("tx", signer=encode_address(decoded.signer), nonce=decoded.nonce)
        return TxResult(events=(signer_event, *ctx.events))

    # --- queries -----------------------------------------------------------------
    def query(self, path: str, data: bytes) -> QueryResult:
        """Read-only queries against committed state; JSON answers."""
        store = BranchStore(self._store)
        parts = [p for p in path.split("/") if p]
        try:
            if parts[:2] == ["bank", "balance"] and len(parts) == 3:
                answer = bank_queries.query_balance(store, parts[2])
            elif parts == ["bank", "supply"]:
                answer = bank_queries.query_supply(store)
            elif parts[:2] == ["auth", "account"] and len(parts) == 3:
                address = bank_queries.parse_address(parts[2], "address")
                nonces = auth_keeper.get_recent_nonces(store, address)
                answer = {"address": parts[2], "recent_nonces": [str(n) for n in nonces]}
            elif parts == ["app", "info"]:
                height, app_hash = self.info()
                answer = {"chain_id": self._chain_id, "height": str(height), "app_hash": app_hash.hex()}
            elif parts == ["consensus", "validators"]:
                answer = {
                    "validators": [
                        {"address": v.address.hex(), "pub_key": v.pub_key_ed25519.hex(), "power": str(v.power)}
                        for v in consensus_keeper.get_validators(store)
                    ]
                }
            elif parts == ["app", "genesis"]:
                answer = self.export_genesis()
            else:
                raise AppError(errors.ERR_UNKNOWN_QUERY, f"unknown query path {path!r}")
        except AppError as err:
            return QueryResult(code=err.code, codespace=err.codespace, log=err.log)
        return QueryResult(value=json.dumps(answer, sort_keys=True).encode())

    def export_genesis(self) -> dict:
        """app_state of the last committed height (InitChain of it reproduces the state)."""
        store = BranchStore(self._store)
        return {"bank": bank_genesis.export_genesis(store), "auth": auth_genesis.export_genesis(store)}
