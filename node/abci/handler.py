"""ABCI request -> app call -> ABCI response.

The only place where CometBFT protobuf types meet ``app.Application``. Every
response sets its status explicitly (an UNKNOWN status makes CometBFT panic).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from tendermint.abci import types_pb2 as abci
from tendermint.crypto import keys_pb2 as crypto_keys

from app.application import APP_VERSION, Application
from app.errors import ERR_QUERY_FAILED
from app.events import Event
from app.prices.types import CommitVote, ExtendedCommitInfo, ExtendedVote, LastCommitInfo

log = logging.getLogger("perpd.abci")

APP_NAME = "perpd"
SOFTWARE_VERSION = "0.1.0"


def timestamp_ns(ts) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


# Event attributes marked for CometBFT's tx indexer (EventAttribute.index): the accounts an event names, so
# `tx_search "fill.taker='perp1...'"` (or order_action.owner, transfer.sender, ...) finds an account's txs. Amounts,
# prices and ids stay in the results (block_results, `query tx`) but are not indexed: the kv indexer writes one key
# per indexed attribute, and a fill alone has 17 (docs/benchmarks.md, session of 2026-12-03, "Event indexing":
# +8 % order txs on the localnet).
INDEXED_KEYS = frozenset({"owner", "sender", "recipient", "recipient_owner", "signer", "taker", "maker"})


def add_abci_events(target, events) -> None:
    """Append ``events`` to a repeated ``abci.Event`` field, built in place. Measured (timeit, a 12-attribute event):
    15 us this way against 34 us for ``abci.Event(attributes=[abci.EventAttribute(...), ...])`` — a message handed
    to a repeated field or a constructor is copied, and keyword construction costs more than field assignment."""
    for e in events:
        ev = target.add()
        ev.type = e.type
        add = ev.attributes.add
        for k, v in e.attributes:
            attr = add()
            attr.key = k
            attr.value = v
            attr.index = k in INDEXED_KEYS


def to_last_commit(info: abci.CommitInfo) -> LastCommitInfo:
    return LastCommitInfo(
        round=info.round,
        votes=tuple(CommitVote(address=v.validator.address, block_id_flag=v.block_id_flag) for v in info.votes),
    )


def to_extended_commit(info: abci.ExtendedCommitInfo) -> ExtendedCommitInfo:
    return ExtendedCommitInfo(
        round=info.round,
        votes=tuple(
            ExtendedVote(address=v.validator.address, block_id_flag=v.block_id_flag, extension=v.vote_extension,
                         signature=v.extension_signature)
            for v in info.votes
        ),
    )


class AbciHandler:
    """Dispatches decoded ABCI requests to the application; one instance per node."""

    def __init__(
        self,
        app: Application,
        vote_prices: Callable[[], dict[int, int]] | None = None,
        node_queries: dict[str, Callable[[], dict]] | None = None,
        retain_blocks: int = 0,
    ) -> None:
        self.app = app
        # Node-local block pruning (app.toml [storage] retain_blocks; 0 = keep every block): not consensus state.
        self._retain_blocks = retain_blocks
        # ExtendVote may be non-deterministic: it carries this validator's price daemon's view.
        self._vote_prices = vote_prices or dict
        # Node-local (non-consensus) answers, e.g. the price daemon's health: path -> JSON-able dict.
        self._node_queries = node_queries or {}
        self._methods: dict[str, Callable] = {
            "info": self.info,
            "init_chain": self.init_chain,
            "query": self.query,
            "check_tx": self.check_tx,
            "prepare_proposal": self.prepare_proposal,
            "process_proposal": self.process_proposal,
            "extend_vote": self.extend_vote,
            "verify_vote_extension": self.verify_vote_extension,
            "finalize_block": self.finalize_block,
            "commit": self.commit,
            "list_snapshots": lambda r: abci.Response(list_snapshots=abci.ResponseListSnapshots()),
            "offer_snapshot": lambda r: abci.Response(
                offer_snapshot=abci.ResponseOfferSnapshot(result=abci.ResponseOfferSnapshot.REJECT)
            ),
            "load_snapshot_chunk": lambda r: abci.Response(load_snapshot_chunk=abci.ResponseLoadSnapshotChunk()),
            "apply_snapshot_chunk": lambda r: abci.Response(
                apply_snapshot_chunk=abci.ResponseApplySnapshotChunk(result=abci.ResponseApplySnapshotChunk.ABORT)
            ),
        }

    def handle(self, req: abci.Request) -> abci.Response:
        kind = req.WhichOneof("value")
        if kind == "echo":
            return abci.Response(echo=abci.ResponseEcho(message=req.echo.message))
        if kind == "flush":
            return abci.Response(flush=abci.ResponseFlush())
        method = self._methods.get(kind)
        if method is None:
            return abci.Response(exception=abci.ResponseException(error=f"unsupported ABCI request {kind!r}"))
        return method(getattr(req, kind))

    def info(self, req: abci.RequestInfo) -> abci.Response:
        height, app_hash = self.app.info()
        log.info("info: cometbft %s, app at height %d", req.version, height)
        return abci.Response(
            info=abci.ResponseInfo(
                data=APP_NAME,
                version=SOFTWARE_VERSION,
                app_version=APP_VERSION,
                last_block_height=height,
                last_block_app_hash=app_hash,
            )
        )

    def init_chain(self, req: abci.RequestInitChain) -> abci.Response:
        validators = [(v.pub_key.ed25519, v.power) for v in req.validators]
        app_hash = self.app.init_chain(
            chain_id=req.chain_id,
            genesis_time_ns=timestamp_ns(req.time),
            app_state_bytes=req.app_state_bytes,
            validators=validators,
            initial_height=req.initial_height or 1,
            vote_extensions_enable_height=req.consensus_params.abci.vote_extensions_enable_height,
        )
        log.info("init_chain: chain %s, %d validators, app hash %s", req.chain_id, len(validators), app_hash.hex())
        return abci.Response(init_chain=abci.ResponseInitChain(app_hash=app_hash))

    def query(self, req: abci.RequestQuery) -> abci.Response:
        height, _ = self.app.info()
        node_query = self._node_queries.get(req.path)
        if node_query is not None:
            value = json.dumps(node_query(), sort_keys=True).encode()
            return abci.Response(query=abci.ResponseQuery(value=value, height=height))
        try:
            res = self.app.query(req.path, req.data, req.height)
        except Exception as e:  # noqa: BLE001 -- a query reads committed state only: a bug there must not stop a node
            log.exception("query %r failed", req.path)
            return abci.Response(query=abci.ResponseQuery(
                code=ERR_QUERY_FAILED.code, codespace=ERR_QUERY_FAILED.codespace, height=height,
                log=f"{ERR_QUERY_FAILED.name}: {e.__class__.__name__} (logged on the node)"))
        return abci.Response(
            query=abci.ResponseQuery(code=res.code, codespace=res.codespace, log=res.log, value=res.value, height=height)
        )

    def check_tx(self, req: abci.RequestCheckTx) -> abci.Response:
        # A recheck of short-term order actions checks their window only (app/clob/handlers.recheck_orders).
        res = self.app.check_tx(req.tx, recheck=req.type == abci.RECHECK)
        # No events: CometBFT indexes FinalizeBlock's, never CheckTx's, and converting them cost ~8 % of CheckTx.
        return abci.Response(
            check_tx=abci.ResponseCheckTx(code=res.code, codespace=res.codespace, log=res.log, gas_wanted=1)
        )

    def prepare_proposal(self, req: abci.RequestPrepareProposal) -> abci.Response:
        txs = self.app.prepare_proposal(list(req.txs), req.max_tx_bytes, req.height,
                                        to_extended_commit(req.local_last_commit))
        return abci.Response(prepare_proposal=abci.ResponsePrepareProposal(txs=txs))

    def process_proposal(self, req: abci.RequestProcessProposal) -> abci.Response:
        ok = self.app.process_proposal(list(req.txs), req.height, to_last_commit(req.proposed_last_commit))
        status = abci.ResponseProcessProposal.ACCEPT if ok else abci.ResponseProcessProposal.REJECT
        if not ok:
            log.warning("process_proposal: rejecting block at height %d", req.height)
        return abci.Response(process_proposal=abci.ResponseProcessProposal(status=status))

    def extend_vote(self, req: abci.RequestExtendVote) -> abci.Response:
        try:
            prices = self._vote_prices()
        except Exception:  # noqa: BLE001 -- a daemon failure must never stop consensus: vote no prices
            log.exception("extend_vote: price daemon failed; voting without prices")
            prices = {}
        extension = self.app.build_vote_extension(prices)
        return abci.Response(extend_vote=abci.ResponseExtendVote(vote_extension=extension))

    def verify_vote_extension(self, req: abci.RequestVerifyVoteExtension) -> abci.Response:
        ok = self.app.verify_vote_extension(req.vote_extension)
        status = abci.ResponseVerifyVoteExtension.ACCEPT if ok else abci.ResponseVerifyVoteExtension.REJECT
        return abci.Response(verify_vote_extension=abci.ResponseVerifyVoteExtension(status=status))

    def finalize_block(self, req: abci.RequestFinalizeBlock) -> abci.Response:
        res = self.app.finalize_block(req.height, timestamp_ns(req.time), list(req.txs),
                                      to_last_commit(req.decided_last_commit))
        out = abci.Response()
        fb = out.finalize_block  # filled in place (app_hash is always set, so the oneof is): sub-messages handed to a
        # constructor would be copied
        add_abci_events(fb.events, res.events)
        add_result = fb.tx_results.add
        for r in res.tx_results:
            tx = add_result()
            tx.code = r.code
            tx.codespace = r.codespace
            tx.log = r.log
            add_abci_events(tx.events, r.events)
        fb.app_hash = res.app_hash
        for pk, power in res.validator_updates:
            fb.validator_updates.add(pub_key=crypto_keys.PublicKey(ed25519=pk), power=power)
        return out

    def commit(self, req: abci.RequestCommit) -> abci.Response:
        retain = self.app.commit()
        if self._retain_blocks:
            height, _ = self.app.info()
            retain = max(retain, height - self._retain_blocks + 1)  # CometBFT keeps heights >= retain_height
        return abci.Response(commit=abci.ResponseCommit(retain_height=max(retain, 0)))

    def on_consensus_lost(self) -> None:
        """CometBFT went away: drop uncommitted work; it will re-handshake and replay."""
        self.app.discard_pending()


__all__ = ["AbciHandler", "Event"]
