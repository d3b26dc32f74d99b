"""Vote extensions and the injected oracle tx: encoding, deterministic validation, medians.

Used identically by VerifyVoteExtension, PrepareProposal, ProcessProposal and
FinalizeBlock, so an honest proposer's oracle tx always verifies. Rules:

- A vote extension is a canonical OracleVoteExtension, at most
  MAX_VOTE_EXTENSION_BYTES, market ids strictly increasing and known, prices > 0.
  Empty is valid (a validator whose daemon has no healthy price).
- The oracle tx carries the previous height's extended commit verbatim. Its
  votes must match the block's last commit (same validators, same order,
  same block-id flags, same round), so a proposer cannot drop votes it dislikes.
  Every COMMIT vote's extension signature must verify (ed25519, CometBFT's
  canonical vote-extension sign bytes) against the key the app tracks for that
  validator. An extension whose content is invalid counts as "no prices".
- For each market, the stake-weighted median of the COMMIT votes' prices is
  published only if the reporting power is more than 2/3 of total power.
  The tx's updates must equal the recomputed list exactly.
"""

from __future__ import annotations

from perpchain.v1 import prices_pb2, state_pb2

from app.errors import ERR_INVALID_ORACLE_TX, AppError
from app.lib.crypto import SignatureMemo
from app.lib.encoding import decode_canonical, encode_proto
from app.prices.logic import compute_weighted_median, has_supermajority, vote_extension_sign_bytes
from app.prices.params import BLOCK_ID_FLAG_COMMIT, MAX_VOTE_EXTENSION_BYTES, ORACLE_TX_MARKER
from app.prices.types import ExtendedCommitInfo, ExtendedVote, LastCommitInfo


def encode_vote_extension(prices: dict[int, int], known_market_ids: list[int]) -> bytes:
    """Our validator's prices for known markets, ids ascending (ExtendVote)."""
    known = dict.fromkeys(known_market_ids)
    votes = [prices_pb2.PriceVote(market_id=m, price=p) for m, p in sorted(prices.items()) if m in known and p > 0]
    return encode_proto(prices_pb2.OracleVoteExtension(prices=votes))


def decode_vote_extension_or_none(extension: bytes, market_ids: dict[int, object]) -> list[tuple[int, int]] | None:
    """[(market_id, price)] if the extension is valid, else None. Deterministic."""
    if len(extension) > MAX_VOTE_EXTENSION_BYTES:
        return None
    ve = decode_canonical(prices_pb2.OracleVoteExtension, extension)
    if ve is None:
        return None
    out = []
    last = -1
    for vote in ve.prices:
        if vote.market_id <= last or vote.market_id not in market_ids or vote.price == 0:
            return None
        out.append((vote.market_id, vote.price))
        last = vote.market_id
    return out


def is_oracle_tx(tx: bytes) -> bool:
    return tx.startswith(ORACLE_TX_MARKER)


def compute_updates(
    votes: list[tuple[bytes, int, bytes]],
    validators: dict[bytes, state_pb2.Validator],
    markets: dict[int, object],
) -> list[prices_pb2.PriceUpdate]:
    """Per-market stake-weighted medians from (address, block_id_flag, extension) votes.

    Only COMMIT votes of known validators count; power comes from the app's validator set.
    """
    total_power = sum(v.power for v in validators.values())
    reports: dict[int, list[tuple[int, int]]] = {}
    for address, flag, extension in votes:
        validator = validators.get(address)
        if flag != BLOCK_ID_FLAG_COMMIT or validator is None:
            continue
        for market_id, price in decode_vote_extension_or_none(extension, markets) or []:
            reports.setdefault(market_id, []).append((price, validator.power))
    updates = []
    for market_id in sorted(reports):
        market_reports = reports[market_id]
        power = sum(p for _, p in market_reports)
        if has_supermajority(power, total_power):
            updates.append(prices_pb2.PriceUpdate(
                market_id=market_id, price=compute_weighted_median(market_reports),
                reporters=len(market_reports), reported_power=power,
            ))
    return updates


def build_oracle_tx(
    commit: ExtendedCommitInfo, validators: dict[bytes, state_pb2.Validator], markets: dict[int, object]
) -> bytes:
    """PrepareProposal: tx 0 from the proposer's local extended commit, votes verbatim and in order."""
    votes = [(v.address, v.block_id_flag, v.extension) for v in commit.votes]
    tx = prices_pb2.OracleTx(
        round=commit.round,
        votes=[
            prices_pb2.ExtendedVote(validator_address=v.address, vote_extension=v.extension,
                                    extension_signature=v.signature, block_id_flag=v.block_id_flag)
            for v in commit.votes
        ],
        updates=compute_updates(votes, validators, markets),
    )
    return ORACLE_TX_MARKER + encode_proto(tx)


def _invalid(reason: str) -> AppError:
    return AppError(ERR_INVALID_ORACLE_TX, reason)


def verify_oracle_tx(
    tx_bytes: bytes,
    height: int,
    chain_id: str,
    last_commit: LastCommitInfo,
    validators: dict[bytes, state_pb2.Validator],
    markets: dict[int, object],
    signatures: SignatureMemo,
) -> list[prices_pb2.PriceUpdate]:
    """The updates of a valid oracle tx for block ``height``; raises AppError(ERR_INVALID_ORACLE_TX) otherwise."""
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
    for i, (vote, expected) in enumerate(zip(tx.votes, last_commit.votes)):
        if vote.validator_address != expected.address or vote.block_id_flag != expected.block_id_flag:
            raise _invalid(f"vote {i} does not match the last commit (validator or flag)")
        validator = validators.get(vote.validator_address)
        if validator is None:
            raise _invalid(f"vote {i} is from unknown validator {vote.validator_address.hex()}")
        if vote.block_id_flag == BLOCK_ID_FLAG_COMMIT:
            sign_bytes = vote_extension_sign_bytes(vote.vote_extension, height - 1, tx.round, chain_id)
            if not signatures.verify(validator.pub_key_ed25519, sign_bytes, vote.extension_signature):
                raise _invalid(f"vote {i} ({vote.validator_address.hex()}): extension signature does not verify")
        elif vote.vote_extension or vote.extension_signature:
            raise _invalid(f"vote {i} is not a commit vote but carries an extension")
        votes.append((vote.validator_address, vote.block_id_flag, vote.vote_extension))
    expected_updates = compute_updates(votes, validators, markets)
    if list(tx.updates) != expected_updates:
        raise _invalid("oracle tx prices differ from the medians of its votes")
    return expected_updates


def decode_oracle_tx_or_none(tx_bytes: bytes) -> prices_pb2.OracleTx | None:
    """For queries and audits (``perpd query oracle votes``)."""
    if not is_oracle_tx(tx_bytes):
        return None
    return decode_canonical(prices_pb2.OracleTx, tx_bytes[len(ORACLE_TX_MARKER):])


__all__ = ["ExtendedVote", "build_oracle_tx", "verify_oracle_tx", "encode_vote_extension"]
