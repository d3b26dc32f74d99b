"""Oracle test fixtures: markets, signed vote extensions, extended commits."""

from __future__ import annotations

from app.lib.address import address_from_pubkey
from app.prices.logic import vote_extension_sign_bytes
from app.prices.params import BLOCK_ID_FLAG_ABSENT, BLOCK_ID_FLAG_COMMIT
from app.prices.types import CommitVote, ExtendedCommitInfo, ExtendedVote, LastCommitInfo
from app.prices.votes import encode_vote_extension
from tests.helpers import CHAIN_ID, VALIDATOR_KEYS, genesis_app_state

BTC, ETH, SOL, PEPE = 0, 1, 2, 3
MARKETS = [
    {"id": BTC, "pair": "BTC-USD", "exponent": -5, "min_price_change_ppm": 1000, "price": "6400000000"},
    {"id": ETH, "pair": "ETH-USD", "exponent": -6, "min_price_change_ppm": 1000, "price": "3000000000"},
    {"id": SOL, "pair": "SOL-USD", "exponent": -8, "min_price_change_ppm": 1000, "price": "15000000000"},
    {"id": PEPE, "pair": "PEPE-USD", "exponent": -15, "min_price_change_ppm": 2500, "price": "0"},
]
STALE_AFTER_NS = 5_000_000_000
VALIDATOR_ADDRS = [address_from_pubkey(bytes(k.verify_key)) for k in VALIDATOR_KEYS]


def oracle_app_state() -> dict:
    state = genesis_app_state()
    state["prices"] = {"params": {"stale_after_ns": str(STALE_AFTER_NS)}, "markets": MARKETS}
    return state


def signed_vote(i: int, extension: bytes, height: int, round_: int = 0) -> ExtendedVote:
    sig = VALIDATOR_KEYS[i].sign(vote_extension_sign_bytes(extension, height, round_, CHAIN_ID)).signature
    return ExtendedVote(address=VALIDATOR_ADDRS[i], block_id_flag=BLOCK_ID_FLAG_COMMIT, extension=extension,
                        signature=sig)


def extended_commit(
    height: int, per_validator: list[dict[int, int] | bytes | None], round_: int = 0
) -> tuple[ExtendedCommitInfo, LastCommitInfo]:
    """The extended commit of ``height``: validator i votes per_validator[i] (prices, raw bytes, or None = absent)."""
    votes = []
    for i, v in enumerate(per_validator):
        if v is None:
            votes.append(ExtendedVote(address=VALIDATOR_ADDRS[i], block_id_flag=BLOCK_ID_FLAG_ABSENT, extension=b"",
                                      signature=b""))
        else:
            ext = v if isinstance(v, bytes) else encode_vote_extension(v, [m["id"] for m in MARKETS])
            votes.append(signed_vote(i, ext, height, round_))
    ext_commit = ExtendedCommitInfo(round=round_, votes=tuple(votes))
    last = LastCommitInfo(round=round_, votes=tuple(CommitVote(v.address, v.block_id_flag) for v in votes))
    return ext_commit, last
