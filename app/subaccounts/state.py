"""In-memory form of a subaccount (decoded once, changed, encoded once) and its identity."""

from __future__ import annotations

import dataclasses

from perpchain.v1 import exchange_pb2

from app.lib.encoding import encode_proto

MAX_SUBACCOUNT_NUMBER = 127  # dYdX: subaccount numbers 0..127


@dataclasses.dataclass(frozen=True, order=True)
class SubaccountId:
    owner: bytes  # 20-byte address
    number: int  # 0..127


@dataclasses.dataclass
class Position:
    perpetual_id: int
    size_base_quantums: int  # != 0
    funding_index: int
    entry_notional_quote_quantums: int  # >= 0


@dataclasses.dataclass
class SubaccountState:
    quote_balance_quote_quantums: int = 0
    positions: dict[int, Position] = dataclasses.field(default_factory=dict)  # perpetual id -> position

    def copy(self) -> SubaccountState:
        return SubaccountState(self.quote_balance_quote_quantums,
                               {k: dataclasses.replace(p) for k, p in self.positions.items()})

    def is_empty(self) -> bool:
        return self.quote_balance_quote_quantums == 0 and not self.positions

    def size_of(self, perpetual_id: int) -> int:
        p = self.positions.get(perpetual_id)
        return 0 if p is None else p.size_base_quantums


def decode_subaccount(raw: bytes) -> SubaccountState:
    msg = exchange_pb2.Subaccount.FromString(raw)
    return SubaccountState(msg.quote_balance_quote_quantums, {
        p.perpetual_id: Position(p.perpetual_id, p.size_base_quantums, p.funding_index, p.entry_notional_quote_quantums)
        for p in msg.positions})


def encode_subaccount(sub: SubaccountState) -> bytes:
    return encode_proto(exchange_pb2.Subaccount(
        quote_balance_quote_quantums=sub.quote_balance_quote_quantums,
        positions=[exchange_pb2.PerpetualPosition(perpetual_id=p.perpetual_id, size_base_quantums=p.size_base_quantums,
                                                  funding_index=p.funding_index,
                                                  entry_notional_quote_quantums=p.entry_notional_quote_quantums)
                   for _, p in sorted(sub.positions.items())]))
