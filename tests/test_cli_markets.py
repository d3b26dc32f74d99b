"""`perpd tx markets`: the authority's market administration through the CLI, in process against a Replica (the
FakeNode of tests/test_cli_exchange.py)."""

from __future__ import annotations

import json

from tests.helpers import KEYS
from tests.test_cli_exchange import chain, ok, ok_json, one_error_line  # noqa: F401 -- fixtures and helpers


def test_authority_pauses_reopens_and_changes_tiers(chain, capsys, tmp_path):  # noqa: F811
    node, home = chain
    from node.client.keys import Keyring

    Keyring(home / "keys").import_hex("authority", bytes(KEYS[0]).hex())
    out = ok_json(capsys, home, "tx", "markets", "set-status", "--market", "BTC-USD", "--status", "paused",
                  "--from", "authority")
    assert out["code"] == 0
    perps = node.query_json("/perpetuals/list")["perpetuals"]
    assert perps[0]["clob_pair"]["status"] == "paused"
    # anyone else is refused by the chain (code 13)
    assert "13" in one_error_line(capsys, home, "tx", "markets", "set-status", "--market", "BTC-USD", "--status",
                                  "active", "--from", "alice")
    # a new tier: IM 10 %, MF 50 %, impact 5,000 USDC, OI scaling between 1 M and 2 M USDC
    assert ok_json(capsys, home, "tx", "markets", "upsert-tier", "--id", "7", "--name", "Mid", "--initial-margin",
                   "0.1", "--maintenance-fraction", "0.5", "--impact-notional", "5000", "--oi-lower-cap", "1000000",
                   "--oi-upper-cap", "2000000", "--from", "authority")["code"] == 0
    assert ok_json(capsys, home, "tx", "markets", "update-perpetual", "--market", "ETH-USD", "--tier", "7",
                   "--from", "authority")["code"] == 0
    tier = node.query_json("/perpetuals/list")["perpetuals"][1]["liquidity_tier"]
    assert tier == {"id": 7, "name": "Mid", "initial_margin_ppm": 100_000, "maintenance_fraction_ppm": 500_000,
                    "open_interest_lower_cap_quote_quantums": "1000000000000",
                    "open_interest_upper_cap_quote_quantums": "2000000000000"}
    tiers = tmp_path / "tiers.json"
    tiers.write_text(json.dumps([{"name": "1", "maker_fee_ppm": 0, "taker_fee_ppm": 300}]))
    assert ok_json(capsys, home, "tx", "markets", "set-fee-tiers", str(tiers), "--from", "authority")["code"] == 0
    assert node.query_json("/clob/params")["fee_tiers"][0]["taker_fee_ppm"] == 300
    assert "nothing to change" in one_error_line(capsys, home, "tx", "markets", "update-perpetual", "--market",
                                                 "ETH-USD", "--from", "authority")


def test_authority_sets_equity_tiers_and_the_params_show_them(chain, capsys, tmp_path):  # noqa: F811
    node, home = chain
    from node.client.keys import Keyring

    Keyring(home / "keys").import_hex("authority", bytes(KEYS[0]).hex())
    text = ok(capsys, home, "query", "clob", "params")  # the dYdX mainnet defaults, in USDC
    assert "open short-term orders per subaccount (equity tiers, all markets):" in text
    assert "100000" in text and "1000" in text and "200" in text
    tiers = tmp_path / "equity.json"
    tiers.write_text(json.dumps({"short_term_order_equity_tiers": [
        {"usd_tnc_required_quote_quantums": "0", "limit": 3},
        {"usd_tnc_required_quote_quantums": "5000000", "limit": 7}]}))
    assert ok_json(capsys, home, "tx", "markets", "set-equity-tiers", str(tiers), "--from", "authority")["code"] == 0
    params = node.query_json("/clob/params")
    assert params["short_term_order_equity_tiers"] == [{"usd_tnc_required_quote_quantums": "0", "limit": 3},
                                                      {"usd_tnc_required_quote_quantums": "5000000", "limit": 7}]
    assert params["stateful_order_equity_tiers"] == []
    text = ok(capsys, home, "query", "clob", "params")
    assert "open long-term orders per subaccount: no equity-tier cap" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["5", "7"] in rows and ["0", "3"] in rows  # USDC, orders
    # the chain refuses descending requirements (720) and the CLI says so in one line
    tiers.write_text(json.dumps({"stateful_order_equity_tiers": [
        {"usd_tnc_required_quote_quantums": "9", "limit": 1}, {"usd_tnc_required_quote_quantums": "8", "limit": 1}]}))
    assert "720" in one_error_line(capsys, home, "tx", "markets", "set-equity-tiers", str(tiers), "--from",
                                   "authority")
    tiers.write_text(json.dumps({"authority": "x", "short_term_order_equity_tiers": []}))
    assert "'authority' comes from --from" in one_error_line(capsys, home, "tx", "markets", "set-equity-tiers",
                                                             str(tiers), "--from", "authority")
    tiers.write_text(json.dumps([1, 2]))
    assert "an object with short_term_order_equity_tiers" in one_error_line(
        capsys, home, "tx", "markets", "set-equity-tiers", str(tiers), "--from", "authority")


def test_authority_sets_clob_limits_in_human_units(chain, capsys):  # noqa: F811
    node, home = chain
    from node.client.keys import Keyring

    Keyring(home / "keys").import_hex("authority", bytes(KEYS[0]).hex())
    assert "nothing to change" in one_error_line(capsys, home, "tx", "markets", "set-clob-limits", "--from",
                                                 "authority")
    out = ok_json(capsys, home, "tx", "markets", "set-clob-limits", "--max-stateful-window", "30d",
                  "--default-market-slippage", "0.02", "--max-market-slippage", "0.1",
                  "--max-order-actions-per-block", "1200", "--from", "authority")
    assert out["code"] == 0
    params = node.query_json("/clob/params")
    # 30 days = 2 592 000 s; 2 % = 20 000 ppm; 10 % = 100 000 ppm; the two not given keep genesis' 40 and 200
    assert (params["short_block_window"], params["max_stateful_window_ns"], params["max_open_orders_per_subaccount"],
            params["default_market_slippage_ppm"], params["max_market_slippage_ppm"],
            params["max_order_actions_per_block"]) == (40, "2592000000000000", 200, 20_000, 100_000, 1200)
    text = ok(capsys, home, "query", "clob", "params")
    assert "max_stateful_window: 30d" in text and "max_order_actions_per_block: 1200 units" in text
    # 0 is a value, not "keep": no chain bound on slippage, no block cap, no open-order cap
    assert ok_json(capsys, home, "tx", "markets", "set-clob-limits", "--max-market-slippage", "0",
                   "--max-order-actions-per-block", "0", "--max-open-orders", "0", "--short-block-window", "20",
                   "--from", "authority")["code"] == 0
    params = node.query_json("/clob/params")
    assert (params["short_block_window"], params["max_market_slippage_ppm"], params["max_order_actions_per_block"],
            params["max_open_orders_per_subaccount"]) == (20, 0, 0, 0)
    # the chain's rule, in one line: a cap below one full tx
    assert "721" in one_error_line(capsys, home, "tx", "markets", "set-clob-limits", "--max-order-actions-per-block",
                                   "399", "--from", "authority")
    assert "more than 6 decimals" in one_error_line(capsys, home, "tx", "markets", "set-clob-limits",
                                                    "--default-market-slippage", "0.0000001", "--from", "authority")
    assert "not like 90s" in one_error_line(capsys, home, "tx", "markets", "set-clob-limits",
                                            "--max-stateful-window", "95 days", "--from", "authority")
    assert "13" in one_error_line(capsys, home, "tx", "markets", "set-clob-limits", "--short-block-window", "10",
                                  "--from", "alice")


def test_clob_limits_cli_bounds(chain, capsys):  # noqa: F811
    node, home = chain
    from node.client.keys import Keyring

    Keyring(home / "keys").import_hex("authority", bytes(KEYS[0]).hex())
    # 106 751 d 23 h 47 m 17 s = 9 223 372 037 s > int64 ns (9 223 372 036.854775807 s): refused before signing
    assert "beyond the chain's int64" in one_error_line(capsys, home, "tx", "markets", "set-clob-limits",
                                                        "--max-stateful-window", "106751d23h47m17s", "--from",
                                                        "authority")
    assert node.query_json("/clob/params")["max_stateful_window_ns"] == str(95 * 86_400 * 10**9)
    assert ok_json(capsys, home, "tx", "markets", "set-clob-limits", "--max-stateful-window", "106751d23h47m16s",
                   "--from", "authority")["code"] == 0
    assert node.query_json("/clob/params")["max_stateful_window_ns"] == str(9_223_372_036 * 10**9)
    # to the nanosecond: int64's last one is accepted, the next refused
    assert "beyond the chain's int64" in one_error_line(capsys, home, "tx", "markets", "set-clob-limits",
                                                        "--max-stateful-window", "106751d23h47m16.854775808s",
                                                        "--from", "authority")
    assert ok_json(capsys, home, "tx", "markets", "set-clob-limits", "--max-stateful-window",
                   "106751d23h47m16.854775807s", "--from", "authority")["code"] == 0
    assert node.query_json("/clob/params")["max_stateful_window_ns"] == str(2**63 - 1)
    for zero in ("0.00", ".0", "00"):  # any spelling of zero: no bound
        assert ok_json(capsys, home, "tx", "markets", "set-clob-limits", "--max-market-slippage", zero,
                       "--from", "authority")["code"] == 0
        assert node.query_json("/clob/params")["max_market_slippage_ppm"] == 0
        assert ok_json(capsys, home, "tx", "markets", "set-clob-limits", "--max-market-slippage", "0.5",
                       "--from", "authority")["code"] == 0
