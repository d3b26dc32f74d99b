"""Plain-value views of CometBFT commit data (node/abci converts; app/ never sees CometBFT types)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CommitVote:
    address: bytes
    block_id_flag: int


@dataclasses.dataclass(frozen=True)
class LastCommitInfo:
    """RequestProcessProposal.proposed_last_commit / RequestFinalizeBlock.decided_last_commit."""

    round: int
    votes: tuple[CommitVote, ...]


@dataclasses.dataclass(frozen=True)
class ExtendedVote:
    address: bytes
    block_id_flag: int
    extension: bytes
    signature: bytes


@dataclasses.dataclass(frozen=True)
class ExtendedCommitInfo:
    """RequestPrepareProposal.local_last_commit."""

    round: int
    votes: tuple[ExtendedVote, ...]
