"""Vote extensions and the injected oracle tx: encoding, deterministic validation, medians.

Used identically by VerifyVoteExtension, PrepareProposal, ProcessProposal and
FinalizeBlock, so an honest proposer's oracle tx always verifies. Rules:

- A vote extension is a canonical OracleVoteExtension, at most
  MAX_VOTE_EXTENSION_BYTES, market ids strictly increasing and known, prices > 0.
  Empty is valid (a validator whose daemon has no healthy price).
- The oracle tx carries the previous height's extended commit. Its votes must
  match the block's last commit (same validators, same order, same block-id
  flags, same round). The proposer may prune COMMIT votes whose extension it
  could not verify (late votes, cometbft#2361): extension and signature
  emptied. Pruned power must stay below 1/3, so a byzantine proposer can drop
  some honest reports (never alter one); each block emits ``oracle_pruned``
  naming them, for audit.
  Every COMMIT vote's extension signature must verify (ed25519, CometBFT's
  canonical vote-extension sign bytes) against the key the app tracks for that
  validator. An extension whose content is invalid counts as "no prices".
- For each market, the stake-weighted median of the COMMIT votes' prices is
  published only if the reporting power is more than 2/3 of total power.
  The tx's updates must equal the recomputed list exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import numpy as np
from perpchain.v1 import prices_pb2, state_pb2

from app.errors import ERR_INVALID_ORACLE_TX, AppError
from app.lib.crypto import SignatureMemo
from app.lib.encoding import decode_canonical, encode_proto
from app.lib.math import UINT64_MAX
from app.prices.logic import compute_weighted_median, has_supermajority, vote_extension_sign_bytes
from app.prices.params import BLOCK_ID_FLAG_COMMIT, MAX_VOTE_EXTENSION_BYTES, ORACLE_TX_MARKER
from app.prices.types import ExtendedCommitInfo, ExtendedVote, LastCommitInfo


def encode_vote_extension(prices: dict[int, int], known_market_ids: list[int]) -> bytes:
    """Our validator's prices for known markets, ids ascending (ExtendVote)."""
    known = dict.fromkeys(known_market_ids)
    kept = [(m, p) for m, p in sorted(prices.items()) if m in known and 0 < p <= UINT64_MAX]
    return encode_proto(prices_pb2.OracleVoteExtension(market_ids=[m for m, _ in kept], prices=[p for _, p in kept]))


class MarketIndex:
    """The chain's markets as a sorted id array, for vectorized validation and median computation."""

    def __init__(self, market_ids: list[int]) -> None:
        self.ids = np.array(sorted(market_ids), dtype=np.int64)


DecodedVote = tuple[np.ndarray, np.ndarray]  # (column positions in MarketIndex.ids, prices uint64)


def decode_vote_extension_or_none(extension: bytes, index: MarketIndex) -> DecodedVote | None:
    """(market positions, prices) if the extension is valid, else None. Deterministic, no per-entry Python loop."""
    if len(extension) > MAX_VOTE_EXTENSION_BYTES:
        return None
    ve = decode_canonical(prices_pb2.OracleVoteExtension, extension)
    if ve is None or len(ve.market_ids) != len(ve.prices):
        return None
    ids = np.array(ve.market_ids, dtype=np.int64)
    prices = np.array(ve.prices, dtype=np.uint64)
    if len(ids) == 0:
        return ids, prices
    if np.any(ids[1:] <= ids[:-1]) or np.any(prices == 0) or len(index.ids) == 0:
        return None
    positions = np.searchsorted(index.ids, ids)
    if np.any(positions >= len(index.ids)) or np.any(index.ids[np.minimum(positions, len(index.ids) - 1)] != ids):
        return None  # an unknown market
    return positions, prices


class OracleCache:
    """Per-node memo of decoded vote extensions and of computed medians, for one (markets, validators) view.

    Both are pure functions of their inputs within the view, so the cache never changes an outcome: it lets
    VerifyVoteExtension's decoding serve ProcessProposal, and one median computation serve PrepareProposal,
    ProcessProposal and FinalizeBlock of the same block. Rebuilt when markets or validators change.
    """

    MAX_DECODED = 4096
    MAX_UPDATES = 64

    def __init__(self, market_ids: list[int], validators: dict[bytes, state_pb2.Validator]) -> None:
        self.index = MarketIndex(market_ids)
        self.validators = validators
        self._decoded: dict[bytes, DecodedVote | None] = {}
        self._updates: dict[tuple, list[prices_pb2.PriceUpdate]] = {}

    def same_view(self, market_ids: list[int], validators: dict[bytes, state_pb2.Validator]) -> bool:
        return sorted(market_ids) == self.index.ids.tolist() and validators == self.validators

    def decode(self, extension: bytes) -> DecodedVote | None:
        if len(extension) > MAX_VOTE_EXTENSION_BYTES:
            return None  # never hashed or cached: an oversized extension must not cost memory
        if extension in self._decoded:
            return self._decoded[extension]
        decoded = decode_vote_extension_or_none(extension, self.index)
        if len(self._decoded) >= self.MAX_DECODED:
            del self._decoded[next(iter(self._decoded))]
        self._decoded[extension] = decoded
        return decoded

    def updates_for(self, votes: list[tuple[bytes, int, bytes]]) -> list[prices_pb2.PriceUpdate]:
        digest = hashlib.sha256()
        for address, flag, extension in votes:
            digest.update(b"%d|%d|%d|" % (len(address), flag, len(extension)) + address + extension)
        key = digest.digest()  # bounded memory per entry whatever the votes' size
        hit = self._updates.get(key)
        if hit is None:
            hit = compute_updates(votes, self.validators, self.index, self.decode)
            if len(self._updates) >= self.MAX_UPDATES:
                del self._updates[next(iter(self._updates))]
            self._updates[key] = hit
        return list(hit)


def is_oracle_tx(tx: bytes) -> bool:
    return tx.startswith(ORACLE_TX_MARKER)


def compute_updates(
    votes: list[tuple[bytes, int, bytes]],
    validators: dict[bytes, state_pb2.Validator],
    index: MarketIndex,
    decode: Callable[[bytes], DecodedVote | None],
) -> list[prices_pb2.PriceUpdate]:
    """Per-market stake-weighted medians from (address, block_id_flag, extension) votes.

    Only COMMIT votes of known validators with a valid extension count; power comes from the app's
    validator set. Vectorized over a validators × markets matrix of uint64 prices (0 = no report):
    per market, reports are sorted by price (stable), weighted by power, and the first price whose
    cumulative power reaches half of the reported power is the median -- exactly
    ``logic.compute_weighted_median`` (tests compare the two). Bounds: total voting power is at most
    CometBFT's MaxTotalVotingPower (2^60), so power × 3 fits in int64.
    """
    total_power = sum(v.power for v in validators.values())
    n_markets = len(index.ids)
    rows_prices = []
    rows_power = []
    for address, flag, extension in votes:
        validator = validators.get(address)
        if flag != BLOCK_ID_FLAG_COMMIT or validator is None:
            continue
        decoded = decode(extension)
        if decoded is None or len(decoded[0]) == 0:
            continue
        row = np.zeros(n_markets, dtype=np.uint64)
        row[decoded[0]] = decoded[1]
        rows_prices.append(row)
        rows_power.append(validator.power)
    if not rows_prices or n_markets == 0:
        return []
    price_matrix = np.stack(rows_prices)  # (V, M)
    power = np.array(rows_power, dtype=np.int64)
    reported = price_matrix > 0
    reported_power = (reported * power[:, None]).sum(axis=0)
    reporters = reported.sum(axis=0)
    order = np.argsort(price_matrix, axis=0, kind="stable")
    sorted_prices = np.take_along_axis(price_matrix, order, axis=0)
    sorted_weight = np.take_along_axis(reported * power[:, None], order, axis=0)
    cumulative = np.cumsum(sorted_weight, axis=0)
    median_row = np.argmax(cumulative * 2 >= reported_power[None, :], axis=0)
    updates = []
    for col in range(n_markets):
        market_power = int(reported_power[col])
        if market_power > 0 and has_supermajority(market_power, total_power):
            updates.append(prices_pb2.PriceUpdate(
                market_id=int(index.ids[col]), price=int(sorted_prices[median_row[col], col]),
                reporters=int(reporters[col]), reported_power=market_power,
            ))
    return updates


def is_pruned(vote: prices_pb2.ExtendedVote) -> bool:
    """A COMMIT vote whose extension the proposer dropped: no extension and no signature (CometBFT always signs)."""
    return vote.block_id_flag == BLOCK_ID_FLAG_COMMIT and not vote.vote_extension and not vote.extension_signature


def build_oracle_tx(
    commit: ExtendedCommitInfo,
    height: int,
    chain_id: str,
    validators: dict[bytes, state_pb2.Validator],
    signatures: SignatureMemo,
    updates_for: Callable[[list], list],
) -> bytes:
    """PrepareProposal: tx 0 from the proposer's local extended commit, votes in order.

    CometBFT v0.38 adds precommits that arrive after the decision (during timeout_commit) to the local commit
    without verifying their extensions (cometbft#2361), so a byzantine validator could otherwise make an honest
    proposer's block fail ProcessProposal (or, with a huge extension, overflow the block). The proposer therefore
    prunes every COMMIT vote whose extension is over MAX_VOTE_EXTENSION_BYTES or whose extension signature does
    not verify (extension and signature emptied, flag kept); the +2/3 that decided the block were verified by
    CometBFT, so pruned power always stays below 1/3, which ProcessProposal enforces.
    """
    votes = []
    tx_votes = []
    for v in commit.votes:
        extension, signature = v.extension, v.signature
        validator = validators.get(v.address)
        if v.block_id_flag == BLOCK_ID_FLAG_COMMIT and validator is not None and not _extension_verifies(
                extension, signature, validator, height, commit.round, chain_id, signatures):
            extension, signature = b"", b""
        votes.append((v.address, v.block_id_flag, extension))
        tx_votes.append(prices_pb2.ExtendedVote(validator_address=v.address, vote_extension=extension,
                                                extension_signature=signature, block_id_flag=v.block_id_flag))
    tx = prices_pb2.OracleTx(round=commit.round, votes=tx_votes, updates=updates_for(votes))
    return ORACLE_TX_MARKER + encode_proto(tx)


def _extension_verifies(extension: bytes, signature: bytes, validator: state_pb2.Validator, height: int, round_: int,
                        chain_id: str, signatures: SignatureMemo) -> bool:
    """The one acceptance rule for a COMMIT vote's extension in block ``height`` (votes of height - 1), shared by
    PrepareProposal (prune what fails) and ProcessProposal/FinalizeBlock (reject what fails unpruned): within the
    size limit (checked first, so an oversized one is never hashed) and signed over CometBFT's sign bytes."""
    if len(extension) > MAX_VOTE_EXTENSION_BYTES:
        return False
    sign_bytes = vote_extension_sign_bytes(extension, height - 1, round_, chain_id)
    return signatures.verify(validator.pub_key_ed25519, sign_bytes, signature)


@dataclasses.dataclass(frozen=True)
class VerifiedOracle:
    updates: list[prices_pb2.PriceUpdate]
    pruned: tuple[bytes, ...]  # validators whose extensions the proposer pruned (for an audit event)


def _invalid(reason: str) -> AppError:
    return AppError(ERR_INVALID_ORACLE_TX, reason)


def verify_oracle_tx(
    tx_bytes: bytes,
    height: int,
    chain_id: str,
    last_commit: LastCommitInfo,
    validators: dict[bytes, state_pb2.Validator],
    signatures: SignatureMemo,
    updates_for: Callable[[list], list],
) -> "VerifiedOracle":
    """The updates (and pruned votes) of a valid oracle tx for ``height``; AppError(ERR_INVALID_ORACLE_TX) otherwise."""
    if not is_oracle_tx(tx_bytes):
        raise _invalid("tx 0 is not an oracle tx")
    tx = decode_canonical(prices_pb2.OracleTx, tx_bytes[len(ORACLE_TX_MARKER):])
    if tx is None:
        raise _invalid("oracle tx is not a canonical OracleTx")
    if tx.round != last_commit.round:
        raise _invalid(f"oracle tx round {tx.round} != last commit round {last_commit.round}")
    if len(tx.votes) != len(last_commit.votes):
        raise _invalid(f"oracle tx carries {len(tx.votes)} votes, last commit has {len(last_commit.votes)}")
    votes = []
    pruned_power = 0
    pruned: list[bytes] = []
    for i, (vote, expected) in enumerate(zip(tx.votes, last_commit.votes)):
        if vote.validator_address != expected.address or vote.block_id_flag != expected.block_id_flag:
            raise _invalid(f"vote {i} does not match the last commit (validator or flag)")
        validator = validators.get(vote.validator_address)
        if validator is None:
            raise _invalid(f"vote {i} is from unknown validator {vote.validator_address.hex()}")
        if is_pruned(vote):
            pruned_power += validator.power
            pruned.append(vote.validator_address)
        elif vote.block_id_flag == BLOCK_ID_FLAG_COMMIT:
            if not _extension_verifies(vote.vote_extension, vote.extension_signature, validator, height, tx.round,
                                       chain_id, signatures):
                raise _invalid(f"vote {i} ({vote.validator_address.hex()}): extension of {len(vote.vote_extension)} "
                               f"bytes does not verify (limit {MAX_VOTE_EXTENSION_BYTES} bytes, ed25519 signature)")
        elif vote.vote_extension or vote.extension_signature:
            raise _invalid(f"vote {i} is not a commit vote but carries an extension")
        votes.append((vote.validator_address, vote.block_id_flag, vote.vote_extension))
    total_power = sum(v.power for v in validators.values())
    if pruned_power * 3 >= total_power:
        raise _invalid(f"pruned extensions carry {pruned_power} of {total_power} power (must stay below 1/3)")
    expected_updates = updates_for(votes)
    if list(tx.updates) != expected_updates:
        raise _invalid("oracle tx prices differ from the medians of its votes")
    return VerifiedOracle(updates=expected_updates, pruned=tuple(pruned))


def decode_oracle_tx_or_none(tx_bytes: bytes) -> prices_pb2.OracleTx | None:
    """For queries and audits (``perpd query oracle votes``)."""
    if not is_oracle_tx(tx_bytes):
        return None
    return decode_canonical(prices_pb2.OracleTx, tx_bytes[len(ORACLE_TX_MARKER):])


__all__ = ["ExtendedVote", "build_oracle_tx", "verify_oracle_tx", "encode_vote_extension"]
