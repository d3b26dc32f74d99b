"""``perpd query prices`` and ``perpd query oracle``: oracle and mark prices, and the votes behind them."""

from __future__ import annotations

import base64

import click

from app.prices.queries import format_scaled
from app.prices.votes import decode_oracle_tx_or_none
from node.client.market import format_rfc3339_ns
from node.cli.common import INT64_MAX, CliError, WholeNumber, common, current_obj, emit, query_json, rpc


@click.group("prices")
def query_prices() -> None:
    """Oracle and mark prices per market."""


def _market_line(m: dict) -> str:
    return (f"{m['pair']:10s} oracle {m['oracle_price_usd']:>22s} USD  mark {m['mark_price_usd']:>22s} USD  "
            f"updated h{m['last_update_height']}  {'STALE' if m['stale'] else 'fresh'}  "
            f"{m['reporters']} validators, power {m['reported_power']}/{m['total_power']}")


@query_prices.command("list")
@common
def query_prices_list() -> None:
    """Every market: oracle and mark price, last update height, stale flag, reporters."""
    obj, res = query_json("/prices/markets")
    emit(obj, res, "\n".join(_market_line(m) for m in res["markets"]) or "(no markets)")


@query_prices.command("market")
@click.argument("pair")
@common
def query_prices_market(pair: str) -> None:
    """One market: oracle, mark, last update height/time, stale flag, reporters and their stake."""
    obj = current_obj()
    with rpc(obj) as client:
        pairs = [m["pair"] for m in client.query_json("/prices/markets")["markets"]]
        named = [p for p in pairs if p.upper() == pair.upper()]  # any case, as the clob commands
        if not named:  # a typo lists the markets
            raise CliError(f"no market {pair!r}; markets: {', '.join(pairs)}")
        res = client.query_json(f"/prices/market/{named[0]}")
    basis = format_scaled(int(res["basis_ema"]), int(res["exponent"]))  # price units: 10^exponent USD each
    emit(obj, res, _market_line(res) + f"  basis EMA {basis} USD  (last update "
                   f"{format_rfc3339_ns(int(res['last_update_time_ns']))})")


@click.group("oracle")
def query_oracle() -> None:
    """The validators' price votes, as carried in blocks."""


@query_oracle.command("votes")
@click.argument("height", type=WholeNumber(1, INT64_MAX))
@common
def query_oracle_votes(height: int) -> None:
    """Per-validator prices behind block HEIGHT's oracle prices (votes of HEIGHT-1, from the block itself)."""
    from app.prices.votes import MarketIndex, decode_vote_extension_or_none, is_pruned

    obj = click.get_current_context().obj
    if height == 1:
        raise CliError("block 1 carries no oracle tx (it has no previous height whose votes it could carry)")
    with rpc(obj) as client:
        block = client.block(height)["block"]
        markets = client.query_json("/prices/markets")["markets"]
        # Powers of the set that signed those votes (height - 1), from CometBFT's history, not today's set.
        signed_by = client.call("validators", height=str(height - 1), per_page="100")["validators"]
        validators = {v["address"].lower(): int(v["voting_power"]) for v in signed_by}
    txs = block["data"]["txs"] or []
    tx = decode_oracle_tx_or_none(base64.b64decode(txs[0])) if txs else None
    if tx is None:
        raise CliError(f"block {height} carries no oracle tx (vote extensions start one height after they are enabled)")
    by_id = {m["id"]: m for m in markets}
    index = MarketIndex(list(by_id))
    flags = {1: "absent", 2: "commit", 3: "nil"}
    votes = []
    for v in tx.votes:
        decoded = decode_vote_extension_or_none(v.vote_extension, index) if v.block_id_flag == 2 else None
        prices = {}
        if decoded is not None:
            for pos, price in zip(decoded[0].tolist(), decoded[1].tolist()):
                m = by_id[int(index.ids[pos])]
                prices[m["pair"]] = {"price": str(price), "usd": format_scaled(price, m["exponent"])}
        pruned = is_pruned(v)
        votes.append({"validator": v.validator_address.hex().upper(), "power": validators.get(v.validator_address.hex(), 0),
                      "flag": "pruned" if pruned else flags.get(v.block_id_flag, str(v.block_id_flag)),
                      "valid_extension": decoded is not None or v.block_id_flag != 2, "prices": prices})
    updates = {by_id[u.market_id]["pair"]: {"price": str(u.price), "usd": format_scaled(u.price, by_id[u.market_id]["exponent"]),
                                            "reporters": u.reporters, "reported_power": str(u.reported_power)}
               for u in tx.updates}
    out = {"height": height, "votes_of_height": height - 1, "round": tx.round, "votes": votes, "medians": updates}
    lines = [f"block {height}: votes of height {height - 1}, round {tx.round}"]
    for v in votes:
        shown = ", ".join(f"{p} {q['usd']}" for p, q in v["prices"].items()) or "(no prices)"
        lines.append(f"  {v['validator']}  power {v['power']}  {v['flag']:6s}  {shown}")
    lines.append("medians: " + (", ".join(f"{p} {u['usd']} ({u['reporters']} validators)" for p, u in updates.items())
                                or "(none reached 2/3 of stake)"))
    emit(obj, out, "\n".join(lines))
