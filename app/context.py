"""Block context and the per-tx execution context handed to handlers.

Height and time come from the block header only; there is no other clock.
"""

from __future__ import annotations

import dataclasses

from app.events import Event
from app.store import BranchStore


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    height: int
    block_time_ns: int
    chain_id: str


@dataclasses.dataclass
class Ctx:
    """What a handler sees: the block, a state branch, and an event sink."""

    block: BlockInfo
    store: BranchStore
    events: list[Event] = dataclasses.field(default_factory=list)
    # CheckTx: the committed state's memoized margin data (app/perpetuals/keeper.MarginView), shared by every CheckTx
    # until the next Commit (prices and parameters only change in blocks).
    margin_view: object = None

    def emit(self, event: Event) -> None:
        self.events.append(event)
