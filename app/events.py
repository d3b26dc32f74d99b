"""Events emitted by txs and block steps (become ABCI events in node/abci)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Event:
    type: str
    attributes: tuple[tuple[str, str], ...]

    @staticmethod
    def of(type_: str, **attrs: object) -> "Event":
        """Attributes in the order given (keyword order is deterministic in Python)."""
        return Event(type_, tuple((k, str(v)) for k, v in attrs.items()))
