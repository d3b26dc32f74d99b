"""Events emitted by txs and block steps (become ABCI events in node/abci)."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """Immutable and hashable; a NamedTuple, not a frozen dataclass: several are built per order action and a
    frozen dataclass's __init__ costs ~2x (one object.__setattr__ per field)."""

    type: str
    attributes: tuple[tuple[str, str], ...]

    @staticmethod
    def of(type_: str, **attrs: object) -> "Event":
        """Attributes in the order given (keyword order is deterministic in Python)."""
        return Event(type_, tuple([(k, str(v)) for k, v in attrs.items()]))  # a list is built faster than a genexpr
