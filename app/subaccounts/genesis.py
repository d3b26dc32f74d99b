"""subaccounts genesis:
{"deposits": [{"owner", "number", "amount_quote_quantums"}],            -- moved from the owner's bank balance
 "subaccounts": [{"owner", "number", "quote_balance_quote_quantums", "positions": [PerpetualPosition]}],
 "unsettled_funding_quote_quantums": "0"}
``subaccounts`` (what export writes) restores state as it was; the collateral pools' bank balances then come from
the bank genesis, and the USDC invariant is checked on the result."""

from __future__ import annotations

from google.protobuf import json_format
from perpchain.v1 import exchange_pb2

from app.bank import keeper as bank_keeper
from app.bank.genesis import parse_uint
from app.errors import ERR_INVALID_GENESIS, AppError
from app.lib.address import decode_address_or_none, encode_address
from app.lib.encoding import encode_proto
from app.perpetuals import keeper as perpetuals_keeper
from app.store import BranchStore
from app.subaccounts import keeper
from app.subaccounts.state import MAX_SUBACCOUNT_NUMBER, Position, SubaccountId, SubaccountState


def _sid(entry: object, where: str) -> SubaccountId:
    owner = decode_address_or_none(entry.get("owner", "")) if isinstance(entry, dict) else None
    number = entry.get("number", 0) if isinstance(entry, dict) else -1
    if owner is None or not isinstance(number, int) or not 0 <= number <= MAX_SUBACCOUNT_NUMBER:
        raise AppError(ERR_INVALID_GENESIS, f"{where}: owner must be an address and number in 0..127")
    return SubaccountId(owner, number)


def init_genesis(store: BranchStore, state: dict) -> None:
    if not isinstance(state, dict):
        raise AppError(ERR_INVALID_GENESIS, "subaccounts genesis must be an object")
    bank_keeper.register_module_account(store, keeper.CROSS_POOL)
    for i, entry in enumerate(state.get("subaccounts", [])):
        where = f"subaccounts.subaccounts[{i}]"
        sid = _sid(entry, where)
        body = {k: v for k, v in entry.items() if k not in ("owner", "number")}
        try:
            msg = json_format.ParseDict(body, exchange_pb2.Subaccount())
        except json_format.ParseError as e:
            raise AppError(ERR_INVALID_GENESIS, f"{where}: {e}") from None
        sub = SubaccountState(msg.quote_balance_quote_quantums)
        for p in msg.positions:
            perpetuals_keeper.get_perpetual(store, p.perpetual_id)
            if p.size_base_quantums == 0 or p.perpetual_id in sub.positions:
                raise AppError(ERR_INVALID_GENESIS, f"{where}: zero or repeated position in perpetual {p.perpetual_id}")
            sub.positions[p.perpetual_id] = Position(p.perpetual_id, p.size_base_quantums, p.funding_index,
                                                     p.entry_notional_quote_quantums)
        keeper.set_subaccount(store, sid, sub)
    unsettled = state.get("unsettled_funding_quote_quantums", "0")
    if unsettled != "0":
        store.set(keeper.UNSETTLED_FUNDING_KEY, encode_proto(exchange_pb2.PoolFunding(
            unsettled_quote_quantums=int(unsettled))))
    for i, entry in enumerate(state.get("deposits", [])):
        where = f"subaccounts.deposits[{i}]"
        sid = _sid(entry, where)
        amount = parse_uint(entry.get("amount_quote_quantums"), f"{where}.amount_quote_quantums")
        try:
            keeper.apply_deposit(store, sid.owner, sid, amount)
        except AppError as err:
            raise AppError(ERR_INVALID_GENESIS, f"{where}: {err.log}") from None


def check_genesis(store: BranchStore) -> None:
    """Full-state invariants (genesis and export), which the per-block checks (on changes only) then keep: no
    subaccount of a module account; pools hold Σ quote balances + unsettled funding; per perpetual Σ long = Σ short =
    open interest; an isolated position is alone in its subaccount; an isolated market without positions has an
    empty pool."""
    longs: dict[int, int] = {}
    shorts: dict[int, int] = {}
    for sid, sub in keeper.iter_subaccounts(store):
        if bank_keeper.is_module_account(store, sid.owner):  # as a transfer to one (104): nobody holds its key
            raise AppError(ERR_INVALID_GENESIS, f"subaccount {encode_address(sid.owner)}/{sid.number} belongs to a "
                                                "module account: nobody could ever move its USDC")
        for pid, p in sub.positions.items():
            if p.size_base_quantums > 0:
                longs[pid] = longs.get(pid, 0) + p.size_base_quantums
            else:
                shorts[pid] = shorts.get(pid, 0) - p.size_base_quantums
            if len(sub.positions) > 1 and perpetuals_keeper.get_perpetual(store, pid).market_type == \
                    perpetuals_keeper.ISOLATED:
                raise AppError(ERR_INVALID_GENESIS, f"subaccount {encode_address(sid.owner)}/{sid.number} holds "
                                                    f"isolated perpetual {pid} with other positions")
    for perp in perpetuals_keeper.iter_perpetuals(store):
        long_, short_ = longs.get(perp.id, 0), shorts.get(perp.id, 0)
        if long_ != short_ or perp.open_interest_base_quantums != long_:
            raise AppError(ERR_INVALID_GENESIS, f"perpetual {perp.id}: longs {long_}, shorts {short_}, open interest "
                                                f"{perp.open_interest_base_quantums} must be equal")
        if perp.market_type == perpetuals_keeper.ISOLATED and long_ == 0 and bank_keeper.get_balance(
                store, keeper.isolated_pool(perp.id)):
            raise AppError(ERR_INVALID_GENESIS, f"isolated perpetual {perp.id} has no position but a funded pool")
    total = sum(sub.quote_balance_quote_quantums for _, sub in keeper.iter_subaccounts(store))
    pools = [keeper.CROSS_POOL] + [keeper.isolated_pool(p.id) for p in perpetuals_keeper.iter_perpetuals(store)
                                   if p.market_type == perpetuals_keeper.ISOLATED]
    held = sum(bank_keeper.get_balance(store, p) for p in pools)
    if held != total + keeper.get_unsettled_funding(store):
        raise AppError(ERR_INVALID_GENESIS, f"collateral pools hold {held} quote quantums, subaccounts "
                                            f"{total} + unsettled funding {keeper.get_unsettled_funding(store)}")


def export_genesis(store: BranchStore) -> dict:
    out = []
    for sid, sub in keeper.iter_subaccounts(store):
        msg = exchange_pb2.Subaccount(quote_balance_quote_quantums=sub.quote_balance_quote_quantums, positions=[
            exchange_pb2.PerpetualPosition(perpetual_id=p.perpetual_id, size_base_quantums=p.size_base_quantums,
                                           funding_index=p.funding_index,
                                           entry_notional_quote_quantums=p.entry_notional_quote_quantums)
            for _, p in sorted(sub.positions.items())])
        body = json_format.MessageToDict(msg, preserving_proto_field_name=True)
        out.append({"owner": encode_address(sid.owner), "number": sid.number, **body})
    return {"subaccounts": out, "unsettled_funding_quote_quantums": str(keeper.get_unsettled_funding(store))}
