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
from app.auth import queries as auth_queries
from app.bank import genesis as bank_genesis
from app.bank import keeper as bank_keeper
from app.bank import queries as bank_queries
from app.clob import abci as clob_abci
from app.clob.basis import BookBasis
from app.clob import genesis as clob_genesis
from app.clob import keeper as clob_keeper
from app.clob import queries as clob_queries
from app.clob.book import Books
from app.clob.book import rebuild as rebuild_books
from app.consensus import keeper as consensus_keeper
from app.consensus import queries as consensus_queries
from app.context import BlockInfo, Ctx
from app.errors import AppError
from app.events import Event
from app.lib.address import address_from_pubkey, encode_address
from app.lib.crypto import SignatureMemo
from app.lib.encoding import uvarint
from app.lib.math import INT64_MAX
from app.prices import abci as prices_abci
from app.prices import genesis as prices_genesis
from app.prices import keeper as prices_keeper
from app.prices import queries as prices_queries
from app.prices import votes as oracle_votes
from app.perpetuals import genesis as perpetuals_genesis
from app.perpetuals.keeper import MarginView
from app.prices.types import ExtendedCommitInfo, LastCommitInfo
from app.store import BranchStore, CommitStore, CommittedReader, compute_app_hash
from app.tx.ante import apply_ante
from app.tx.codec import StatelessCheckCache
from app.tx.mempool import MempoolView
from app.subaccounts import genesis as subaccounts_genesis
from app.subaccounts import keeper as subaccounts_keeper
from app.subaccounts.positions_view import PositionsView
from app.tx.router import ROUTES, is_deferred, tx_cost

APP_VERSION = 1


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
    # (ed25519 pub_key, power) for CometBFT, effective for block height+2; power 0 removes.
    validator_updates: tuple[tuple[bytes, int], ...] = ()


@dataclasses.dataclass(frozen=True)
class QueryResult:
    code: int = 0
    codespace: str = ""
    log: str = ""
    value: bytes = b""


@dataclasses.dataclass(frozen=True)
class ConsensusView:
    """Markets and validators of the state the next block builds on (cached until it changes)."""

    markets: dict  # market_id -> MarketParam
    validators: dict  # address -> Validator
    vote_extensions_enable_height: int
    oracle: oracle_votes.OracleCache


@dataclasses.dataclass
class _Pending:
    height: int
    store: BranchStore
    app_hash: bytes


def proto_size_of_tx(n: int) -> int:
    """Bytes a tx of length n adds to CometBFT's Txs proto (tag + uvarint length + data)."""
    return 1 + len(uvarint(n)) + n


def _order_units(decoded) -> int:
    """A tx's weight against the block's order-action cap: the admission cost of its order actions (place 1, cancel
    1, batch cancel 1, cancel-replace 2: app/clob/handlers.py cost_orders); other txs weigh nothing."""
    if not is_deferred(decoded.msgs):
        return 0
    cost = tx_cost(decoded.msgs)
    return cost.requests + cost.cancels


class Application:
    def __init__(self, store: CommitStore) -> None:
        self._store = store
        self._genesis: _Pending | None = None  # InitChain writes, committed with the first block
        self._pending: _Pending | None = None  # FinalizeBlock result awaiting Commit
        info = consensus_keeper.get_chain_info_or_none(store)
        if info is not None and info.state_format != consensus_keeper.STATE_FORMAT:
            raise errors.IncompatibleState(
                f"the data directory holds state format {info.state_format}; this perpd reads format "
                f"{consensus_keeper.STATE_FORMAT} only. Start from a fresh data directory (localnet: "
                f"`perpd localnet down --reset`, then `perpd localnet up`)")
        self._chain_id = info.chain_id if info is not None else ""
        self._mempool = MempoolView()
        self._stateless = StatelessCheckCache()
        self._signatures = SignatureMemo()
        self._view: ConsensusView | None = None
        self._oracle_cache: oracle_votes.OracleCache | None = None
        # In-memory order book index over committed state + the current block's journal (app/clob/book.py).
        self._books: Books | None = None
        # CheckTx's memoized margin data of the committed state (dropped whenever that state changes).
        self._check_view: MarginView | None = None
        # Struct-of-arrays positions of committed subaccounts for the risk pass (built on first use, then
        # refreshed at every Commit for the subaccounts the block wrote).
        self._positions: PositionsView | None = None

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
        vote_extensions_enable_height: int = 0,
    ) -> bytes:
        """Load genesis into a pending branch; returns the genesis app hash. Raises AppError on bad genesis."""
        try:
            app_state = json.loads(app_state_bytes or b"{}")
        except (ValueError, UnicodeDecodeError) as e:
            raise AppError(errors.ERR_INVALID_GENESIS, f"app_state is not JSON: {e}") from None
        if not isinstance(app_state, dict):
            raise AppError(errors.ERR_INVALID_GENESIS, "app_state must be a JSON object")
        exported = app_state.get("exported_height")
        if exported is not None:
            # An export's heights (last price update, short-term good-til blocks, admission budgets' last use) are
            # the old chain's: its next block must be the exported height + 1, or short-term orders would outlive
            # their window and spent budgets refill late until the new chain caught up.
            if not (isinstance(exported, str) and exported.isascii() and exported.isdigit() and len(exported) <= 19
                    and 0 < int(exported) < INT64_MAX):
                raise AppError(errors.ERR_INVALID_GENESIS, "exported_height must be a decimal string in 1..2^63-2")
            if initial_height != int(exported) + 1:
                raise AppError(errors.ERR_INVALID_GENESIS, f"this state was exported at height {exported}: start "
                                                           f"the chain with initial_height {int(exported) + 1} (got "
                                                           f"{initial_height}); perpd init --app-state writes it")
        store = BranchStore(self._store)
        consensus_keeper.set_chain_info(store, chain_id, initial_height, genesis_time_ns,
                                        vote_extensions_enable_height)
        consensus_keeper.set_validators_from(store, initial_height,
                                             [(address_from_pubkey(pk), pk, p) for pk, p in validators])
        prices_genesis.init_genesis(store, app_state.get("prices", {}), genesis_time_ns)
        bank_genesis.init_genesis(store, app_state.get("bank", {}))
        auth_genesis.init_genesis(store, app_state.get("auth", {}))
        perpetuals = perpetuals_genesis.init_genesis(store, app_state.get("perpetuals", {}))
        restore = clob_genesis.init_genesis(store, app_state.get("clob", {}), perpetuals)
        subaccounts_genesis.init_genesis(store, app_state.get("subaccounts", {}))
        clob_genesis.restore_perpetual_state(store, restore)
        bank_keeper.check_supply(store)
        subaccounts_genesis.check_genesis(store)
        app_hash = compute_app_hash(b"", store.write_set())
        self._genesis = _Pending(initial_height - 1, store, app_hash)
        self._pending = None
        self._chain_id = chain_id
        self._mempool.clear()
        self._view = None
        self._books = None
        self._positions = None
        self._check_view = None
        return app_hash

    def _base(self) -> tuple[BranchStore | CommitStore, bytes]:
        """State and app hash the next block builds on: genesis before the first commit."""
        if self._store.last_height() == 0 and self._genesis is not None:
            return self._genesis.store, self._genesis.app_hash
        return self._store, self._store.last_app_hash()

    def consensus_view(self) -> ConsensusView:
        if self._view is None:
            base = self._base()[0]
            info = consensus_keeper.get_chain_info_or_none(base)
            markets = prices_keeper.get_markets_by_id(base)
            # The next block verifies the votes of the last height, signed by that height's set.
            signing_height = max(self._last_height(), info.initial_height if info is not None else 0)
            validators = {v.address: v for v in consensus_keeper.validators_at(base, signing_height)}
            oracle = self._oracle_cache
            if oracle is None or not oracle.same_view(list(markets), validators):
                oracle = oracle_votes.OracleCache(list(markets), validators)
            self._oracle_cache = oracle
            self._view = ConsensusView(
                markets=markets,
                validators=validators,
                vote_extensions_enable_height=info.vote_extensions_enable_height if info is not None else 0,
                oracle=oracle,
            )
        return self._view

    def _last_height(self) -> int:
        """Height of the state the next block builds on (initial_height - 1 while genesis is pending)."""
        if self._store.last_height() == 0 and self._genesis is not None:
            return self._genesis.height
        return self._store.last_height()

    def expects_oracle_tx(self, height: int) -> bool:
        """Tx 0 is the oracle tx from one height after vote extensions start (that height's votes carry none)."""
        enable = self.consensus_view().vote_extensions_enable_height
        return enable > 0 and height > enable

    def markets(self) -> list[tuple[int, str, int]]:
        """(market_id, pair, exponent) of every market, for the node's price daemon."""
        return [(m.id, m.pair, m.exponent) for _, m in sorted(self.consensus_view().markets.items())]

    def discard_pending(self) -> None:
        """Forget uncommitted work (CometBFT restarted while the app kept running)."""
        self._pending = None
        self._view = None
        self._mempool.clear()
        if self._books is not None:
            self._books.rollback()
        self._check_view = None

    # --- mempool ---------------------------------------------------------------
    def check_tx(self, tx_bytes: bytes, recheck: bool = False) -> TxResult:
        """Validate a tx against the last committed state plus this node's mempool view (app/tx/mempool.py).

        The same tx checked again answers the same (idempotent by sha256), so CometBFT's ``/check_tx`` RPC can
        never make the node refuse or delay a tx it would otherwise accept. The view is cleared at Commit and
        CometBFT's rechecks (``recheck``) rebuild it from the txs still pending: a recheck runs the same ante (nonce,
        budget, fee), but for order actions that are all short-term it checks only their window, not the book or the
        collateral again (dYdX's rule for short-term orders on ReCheckTx; app/clob/handlers.recheck_orders).
        """
        if oracle_votes.is_oracle_tx(tx_bytes):
            return TxResult.from_error(AppError(errors.ERR_APP_ONLY_TX, "oracle txs are only valid as tx 0"))
        try:
            decoded = self._stateless.decode_and_verify(tx_bytes, self._chain_id)
        except AppError as err:
            return TxResult.from_error(err)
        if decoded.digest in self._mempool:
            return TxResult()
        if self._mempool.is_full():
            return TxResult.from_error(AppError(errors.ERR_MEMPOOL_FULL, "this node's pending-tx view is full "
                                                                         "until the next block; retry"))
        base = self._base()[0]
        # The next block's time is unknown: time-based checks use the last block's (dYdX: previous block time).
        block = BlockInfo(height=self._last_height() + 1, block_time_ns=consensus_keeper.get_last_block_time_ns(base),
                          chain_id=self._chain_id)
        pending = self._mempool.pending_for(decoded.signer)
        cost = tx_cost(decoded.msgs)
        if self._check_view is None:
            self._check_view = MarginView(base)
        ctx = Ctx(block=block, store=BranchStore(base), margin_view=self._check_view)
        try:
            fee = apply_ante(ctx.store, block.height, decoded.signer, decoded.nonce, cost, pending)
            if is_deferred(decoded.msgs):
                route, msgs = ROUTES[decoded.msgs[0][0]], [msg for _, msg in decoded.msgs]
                if not (recheck and route.recheck is not None and route.recheck(ctx, msgs)):
                    route.check(ctx, msgs)
            else:
                for name, msg in decoded.msgs:
                    ROUTES[name].handle(ctx, msg)
        except AppError as err:
            return TxResult.from_error(err)
        self._mempool.add(decoded.digest, decoded.signer, decoded.nonce, cost, fee)
        return TxResult()

    # --- vote extensions ---------------------------------------------------------
    def build_vote_extension(self, prices: dict[int, int]) -> bytes:
        """ExtendVote payload from the daemon's index prices (market_id -> price in exponent units)."""
        return oracle_votes.encode_vote_extension(prices, list(self.consensus_view().markets))

    def verify_vote_extension(self, extension: bytes) -> bool:
        """Deterministic: size, canonical encoding, known markets in order, positive prices. Empty is fine."""
        return self.consensus_view().oracle.decode(extension) is not None

    # --- proposals -------------------------------------------------------------
    def prepare_proposal(
        self, txs: list[bytes], max_tx_bytes: int, height: int, local_last_commit: ExtendedCommitInfo | None = None
    ) -> list[bytes]:
        """[oracle tx] + mempool txs in order that pass the stateless checks, within max_tx_bytes (proto size)."""
        out: list[bytes] = []
        used = 0
        cap = self._block_action_cap()
        units = 0
        if self.expects_oracle_tx(height):
            view = self.consensus_view()
            commit = local_last_commit or ExtendedCommitInfo(round=0, votes=())
            oracle_tx = oracle_votes.build_oracle_tx(commit, height, self._chain_id, view.validators, self._signatures,
                                                     view.oracle.updates_for)
            out.append(oracle_tx)
            used += proto_size_of_tx(len(oracle_tx))
        for tx in txs:
            size = proto_size_of_tx(len(tx))
            if used + size > max_tx_bytes or oracle_votes.is_oracle_tx(tx):
                continue  # a smaller tx later in the list may still fit
            try:
                decoded = self._stateless.decode_and_verify(tx, self._chain_id)
            except AppError:
                continue
            weight = _order_units(decoded)
            if cap and units + weight > cap:
                continue  # over the block's order-action cap: it waits for a later block (a smaller tx may fit)
            out.append(tx)
            used += size
            units += weight
        return out

    def process_proposal(self, txs: list[bytes], height: int, last_commit: LastCommitInfo | None = None) -> bool:
        """Deterministic: accept iff the oracle tx (when due) verifies, every other tx passes the stateless checks,
        and the txs' order actions stay within the block's cap (ClobParams.max_order_actions_per_block)."""
        user_txs = txs
        if self.expects_oracle_tx(height):
            if not txs:
                return False
            try:
                self._verify_oracle(txs[0], height, last_commit)
            except AppError:
                return False
            user_txs = txs[1:]
        cap = self._block_action_cap()
        units = 0
        for tx in user_txs:
            if oracle_votes.is_oracle_tx(tx):
                return False
            try:
                decoded = self._stateless.decode_and_verify(tx, self._chain_id)
            except AppError:
                return False
            units += _order_units(decoded)
        return not cap or units <= cap

    def _block_action_cap(self) -> int:
        """Order-action units the next block may carry, from the state it builds on (0 = no cap)."""
        return clob_keeper.get_params(self._base()[0]).max_order_actions_per_block

    def _verify_oracle(self, tx: bytes, height: int, last_commit: LastCommitInfo | None):
        view = self.consensus_view()
        return oracle_votes.verify_oracle_tx(
            tx, height, self._chain_id, last_commit or LastCommitInfo(round=0, votes=()),
            view.validators, self._signatures, view.oracle.updates_for,
        )

    # --- block execution ---------------------------------------------------------
    def finalize_block(
        self, height: int, block_time_ns: int, txs: list[bytes], last_commit: LastCommitInfo | None = None
    ) -> BlockResult:
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

        # 1. Oracle prices (tx 0), re-verified here because replay and block sync never run
        #    ProcessProposal; an invalid oracle tx gets an error code and no price moves. Then mark
        #    prices and staleness for every market, before any user tx sees them.
        results: list[TxResult] = []
        user_txs = txs
        updates = []
        if self.expects_oracle_tx(height) and txs and oracle_votes.is_oracle_tx(txs[0]):
            try:
                verified = self._verify_oracle(txs[0], height, last_commit)
                updates = verified.updates
                pruned = [Event.of("oracle_pruned", validator=a.hex().upper()) for a in verified.pruned]
                results.append(TxResult(events=tuple(pruned)))
            except AppError as err:
                results.append(TxResult.from_error(err))
            user_txs = txs[1:]
        books = self._books_for_block()
        # The book this block starts from feeds the mark price (a smoothed, clamped basis; app/clob/basis.py).
        block_events.extend(prices_abci.process_oracle_prices(store, block, updates, BookBasis(books, store)))
        consensus_keeper.set_last_block_time(store, block_time_ns)
        # 2. Orders that expire in this block leave the book before any user tx sees it.
        block_events.extend(clob_abci.process_expired_orders(store, books, block))
        # 3. User txs in block order, each in its own branch; a failure is a result code. Order actions are
        #    only queued here (after their tx's ante) ...
        queued: list[clob_abci.QueuedAction] = []
        for tx in user_txs:
            results.append(self._run_tx(store, block, tx, queued, len(results)))
        # 4. ... and run here in the fixed phase order: all cancels, then post-only, then the other placements.
        action_events = clob_abci.process_order_actions(store, books, block, queued)
        for i, events in action_events.items():
            results[i] = dataclasses.replace(results[i], events=(*results[i].events, *events))
        tx_results = tuple(results)
        # 5. End of block: staged validator changes become the set signing height+2 (CometBFT's delay).
        validator_updates = tuple(consensus_keeper.end_block_validator_updates(store, height))
        for pub_key, power in validator_updates:
            block_events.append(Event.of("validator_update", pub_key=pub_key.hex(), power=power,
                                         effective_height=height + consensus_keeper.VALIDATOR_UPDATE_DELAY))
        # 6. Invariants, O(changes): USDC conserved across the block; collateral pools back the subaccounts;
        #    per perpetual Σ long = Σ short = open interest.
        bank_keeper.check_block_conservation(store)
        subaccounts_keeper.check_block_invariants(store)
        # 7. App hash over this block's sorted write-set, chained to the previous one.
        app_hash = compute_app_hash(prev_app_hash, store.write_set())
        self._pending = _Pending(height, store, app_hash)
        return BlockResult(tx_results=tx_results, events=tuple(block_events), app_hash=app_hash,
                           validator_updates=validator_updates)

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
        if self._positions is not None:
            self._positions.refresh(writes)
        self._genesis = None
        self._pending = None
        self._mempool.clear()  # rechecks of the txs still pending rebuild it against the new state
        self._view = None
        self._check_view = None
        if self._books is not None:
            self._books.commit()
        return 0

    # --- tx execution -------------------------------------------------------------
    def _run_tx(self, parent: BranchStore, block: BlockInfo, tx_bytes: bytes,
                queued: list[clob_abci.QueuedAction], tx_index: int) -> TxResult:
        """Authenticate, pass the ante (nonce, budget, fee), run the messages (or queue order actions).

        Once the ante passed, its effects stay even if a message fails (app/tx/ante.py); the
        messages are all-or-nothing. Order actions are each their own unit (app/clob/abci.py).
        """
        if oracle_votes.is_oracle_tx(tx_bytes):
            return TxResult.from_error(AppError(errors.ERR_APP_ONLY_TX, "oracle txs are only valid as tx 0"))
        try:
            decoded = self._stateless.decode_and_verify(tx_bytes, self._chain_id)
        except AppError as err:
            return TxResult.from_error(err)
        ante = BranchStore(parent)
        try:
            fee = apply_ante(ante, block.height, decoded.signer, decoded.nonce, tx_cost(decoded.msgs))
        except AppError as err:
            return TxResult.from_error(err)
        signer_event = Event.of("tx", signer=encode_address(decoded.signer), nonce=decoded.nonce,
                                fee_quote_quantums=fee)
        if is_deferred(decoded.msgs):
            ante.write()
            actions = [action for _, msg in decoded.msgs for action in msg.actions]
            queued.extend(clob_abci.QueuedAction(tx_index, i, decoded.signer, a) for i, a in enumerate(actions))
            return TxResult(events=(signer_event,))
        ctx = Ctx(block=block, store=BranchStore(ante))
        try:
            for name, msg in decoded.msgs:
                ROUTES[name].handle(ctx, msg)
        except AppError as err:
            ante.write()
            return dataclasses.replace(TxResult.from_error(err), events=(signer_event,))
        ctx.store.write()
        ante.write()
        return TxResult(events=(signer_event, *ctx.events))

    def _books_for_block(self) -> Books:
        """The book of the state this block builds on: rebuilt after a restart, rolled back if a previous
        FinalizeBlock of this height was not committed."""
        if self._books is None:
            self._books = rebuild_books(self._base()[0])
        elif self._books.has_uncommitted():
            self._books.rollback()
        return self._books

    # --- queries -----------------------------------------------------------------
    def query(self, path: str, data: bytes, height: int = 0) -> QueryResult:
        """Read-only queries against the last committed state; JSON answers.

        Only the latest committed height is kept (state is a single LevelDB version): ``height`` 0 or that
        height is answered, any other height is refused with height_unavailable -- never answered with
        another height's state.
        """
        last = self._store.last_height()
        if height not in (0, last):
            return QueryResult(code=errors.ERR_HEIGHT_UNAVAILABLE.code, codespace=errors.ERR_HEIGHT_UNAVAILABLE.codespace,
                               log=f"{errors.ERR_HEIGHT_UNAVAILABLE.name}: state at height {height} is not kept; this "
                                   f"node serves only its latest committed height {last} (query with height 0)")
        q = QueryCtx(BranchStore(self._store), last, self)
        parts = [p for p in path.split("/") if p]
        try:
            for pattern, handler in QUERY_ROUTES:
                args = match_path(pattern, parts)
                if args is not None:
                    answer = handler(q, *args)
                    break
            else:
                raise AppError(errors.ERR_UNKNOWN_QUERY, f"unknown query path {path!r}")
        except AppError as err:
            return QueryResult(code=err.code, codespace=err.codespace, log=err.log)
        return QueryResult(value=json.dumps(answer, sort_keys=True).encode())

    def positions_view(self) -> PositionsView:
        """Committed subaccounts as numpy arrays (app/subaccounts/positions_view.py)."""
        if self._positions is None:
            self._positions = PositionsView.rebuild(self._base()[0])
        return self._positions

    def committed_books(self) -> Books | None:
        """The in-memory book when it holds exactly committed state (None while a block is not yet committed)."""
        if self._books is None:
            self._books = rebuild_books(self._base()[0])
        return None if self._books.has_uncommitted() else self._books

    def _total_power(self, store: CommittedReader) -> int:
        """Power of the set that signed the last committed block."""
        return sum(v.power for v in consensus_keeper.validators_at(store, self._store.last_height()))

    def export_genesis(self) -> dict:
        """app_state of the last committed height (InitChain of it, at initial_height = that height + 1, reproduces
        the state). Refused while nothing is committed (a pending genesis is its own file)."""
        if self._store.last_height() == 0:
            raise AppError(errors.ERR_INVALID_GENESIS, "nothing is committed yet: there is no state to export (before "
                                                       "the first block, the genesis file is the state)")
        store = BranchStore(self._store)
        return {
            "exported_height": str(self._store.last_height()),
            "prices": prices_genesis.export_genesis(store),
            "bank": bank_genesis.export_genesis(store),
            "auth": auth_genesis.export_genesis(store),
            "perpetuals": perpetuals_genesis.export_genesis(store),
            "clob": clob_genesis.export_genesis(store),
            "subaccounts": subaccounts_genesis.export_genesis(store),
        }


@dataclasses.dataclass(frozen=True)
class QueryCtx:
    store: BranchStore  # over committed state
    last_height: int
    app: Application


def match_path(pattern: tuple[str, ...], parts: list[str]) -> list[str] | None:
    """The parts matched by "*" (one segment) and "?" (an optional last segment, None when absent), or None."""
    optional = pattern and pattern[-1] == "?"
    fixed = pattern[:-1] if optional else pattern
    if not (len(parts) == len(fixed) or (optional and len(parts) == len(fixed) + 1)):
        return None
    args: list = []
    for want, got in zip(fixed, parts):
        if want == "*":
            args.append(got)
        elif want != got:
            return None
    if optional:
        args.append(parts[len(fixed)] if len(parts) > len(fixed) else None)
    return args


def _app_info(q: QueryCtx) -> dict:
    height, app_hash = q.app.info()
    return {"chain_id": q.app.chain_id, "height": str(height), "app_hash": app_hash.hex()}


# Query paths (abci_query "path") -> handler; each module answers its own (docs/state.md lists them).
QUERY_ROUTES: list[tuple[tuple[str, ...], object]] = [
    (("bank", "balance", "*"), lambda q, a: bank_queries.query_balance(q.store, a)),
    (("bank", "supply"), lambda q: bank_queries.query_supply(q.store)),
    (("auth", "account", "*"), lambda q, a: auth_queries.query_account(q.store, a, q.last_height + 1)),
    (("auth", "params"), lambda q: auth_queries.query_params(q.store)),
    (("app", "info"), _app_info),
    (("consensus", "validators"), lambda q: consensus_queries.query_validators(q.store, q.last_height)),
    (("prices", "markets"), lambda q: prices_queries.query_markets(q.store, q.app._total_power(q.store))),
    (("prices", "market", "*"), lambda q, m: prices_queries.query_market(q.store, m, q.app._total_power(q.store))),
    (("perpetuals", "list"), lambda q: clob_queries.query_perpetuals(q.store)),
    (("clob", "params"), lambda q: clob_queries.query_params(q.store)),
    (("clob", "orderbook", "*", "?"), lambda q, m, depth: clob_queries.query_orderbook(
        q.store, q.app.committed_books(), m, clob_queries.check_depth(depth or "20"))),
    (("clob", "orders", "*", "?"), lambda q, owner, n: clob_queries.query_orders(q.store, owner, n)),
    (("subaccounts", "show", "*", "?"), lambda q, owner, n: clob_queries.query_subaccount(q.store, owner, n)),
    (("subaccounts", "of", "*"), lambda q, owner: clob_queries.query_subaccounts_of(q.store, owner)),
]
