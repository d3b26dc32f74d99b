"""consensus queries."""

from __future__ import annotations

from app.consensus import keeper
from app.store import CommittedReader


def _rows(validators) -> list[dict]:
    return [{"address": v.address.hex(), "pub_key": v.pub_key_ed25519.hex(), "power": str(v.power)}
            for v in validators]


def query_validators(store: CommittedReader, height: int) -> dict:
    """The set that signed block ``height`` and any sets already scheduled for later heights."""
    current = keeper.validators_at(store, height)
    scheduled = [{"effective_height": str(h), "validators": _rows(vs)}
                 for h, vs in keeper.scheduled_validator_sets(store, height)]
    return {"height": str(height), "validators": _rows(current), "total_power": str(sum(v.power for v in current)),
            "scheduled": scheduled}
