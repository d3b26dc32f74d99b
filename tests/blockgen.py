"""Seeded random blocks for the determinism harness and fuzzing (test-side randomness only)."""

from __future__ import annotations

import random

from perpchain.v1 import tx_pb2

from app.lib.encoding import encode_proto
from node.client.txbuilder import msg_set_validator_power, sign_tx
from tests.helpers import ADDRS, CHAIN_ID, GENESIS_TIME_NS, KEYS, ONE_USDC, VALIDATOR_KEYS, send_tx


def replica_exchange_app_state(base: dict) -> dict:
    """``base`` (the oracle genesis) plus BTC, ETH (cross) and SOL (isolated) perpetuals, and 50 000 USDC deposited
    into subaccount 0 of accounts 1..5 (harness prices hover around 1e9 price units: orders are placed there)."""
    from tests.exchange_helpers import PAIRS, PERPETUALS, TIERS

    state = dict(base)
    state["perpetuals"] = {"liquidity_tiers": TIERS, "perpetuals": PERPETUALS}
    state["clob"] = {"clob_pairs": PAIRS}
    state["subaccounts"] = {"deposits": [{"owner": ADDRS[i], "number": 0, "amount_quote_quantums": str(50_000 * ONE_USDC)}
                                         for i in range(1, 6)]}
    return state


def random_order_tx(rng: random.Random, height: int, account: int, nonce: int, live: list) -> bytes:
    """A batch of random order actions: resting, crossing, IOC/FOK/post-only/market/reduce-only placements with
    short or long lifetimes, cancels (of live and unknown orders), batch cancels, cancel-replaces, bad actions."""
    from tests.exchange_helpers import orders_tx

    actions = []
    for _ in range(rng.choice([1, 1, 1, 2, 5, 20])):
        pair = rng.choice([0, 0, 1, 2])
        kind = rng.random()
        if kind < 0.6:
            cid = rng.randrange(1, 60)
            mid = 10**9 + height * 10**6
            subticks = (mid + rng.randrange(-20, 21) * 10**6) // 10**6 * 10**6
            quantums = rng.choice([1, 2, 5, 30, 100, 20_000]) * 10**6
            tif = rng.choice([0, 0, 1, 2, 3])
            p = tx_pb2.PlaceOrder(subaccount_number=rng.choice([0, 0, 0, 1]), client_id=cid, clob_pair_id=pair,
                                  side=rng.choice([1, 2]), quantums=quantums, subticks=subticks,
                                  good_til_block=height + rng.randrange(0, 8), time_in_force=tif,
                                  reduce_only=rng.random() < 0.1)
            r = rng.random()
            if r < 0.1:
                p.subticks, p.time_in_force, p.market_slippage_ppm = 0, 1, rng.choice([1_000, 50_000])
            elif r < 0.15 and tif in (0, 2):
                p.good_til_block, p.good_til_block_time_ns = 0, GENESIS_TIME_NS + (height + rng.randrange(1, 6)) * 500_000_000
            elif r < 0.18:
                p.subticks += 1  # off tick
            live.append((account, p.subaccount_number, pair, cid, 64 if p.good_til_block_time_ns else 0))
            actions.append(tx_pb2.OrderAction(place=p))
        elif kind < 0.85 and live:
            a, n, pr, cid, flags = rng.choice(live) if rng.random() < 0.8 else (account, 0, pair, 999, 0)
            if a != account:
                a, n = account, 0
            oid = tx_pb2.OrderId(subaccount_number=n, client_id=cid, clob_pair_id=pr, order_flags=flags)
            if rng.random() < 0.3:
                place = tx_pb2.PlaceOrder(subaccount_number=n, client_id=rng.randrange(60, 120), clob_pair_id=pr,
                                          side=rng.choice([1, 2]), quantums=10**6, subticks=(10**9 + height * 10**6),
                                          good_til_block=height + 3, time_in_force=2)
                actions.append(tx_pb2.OrderAction(cancel_replace=tx_pb2.CancelReplace(order_id=oid, place=place)))
            else:
                actions.append(tx_pb2.OrderAction(cancel=tx_pb2.CancelOrder(order_id=oid)))
        else:
            actions.append(tx_pb2.OrderAction(batch_cancel=tx_pb2.BatchCancel(clob_pair_id=pair)))
    return orders_tx(account, nonce, actions)


def random_blocks(seed: int, n_blocks: int, max_txs: int = 12, orders: bool = False) -> list[list[bytes]]:
    rng = random.Random(seed)
    live: list = []
    used: list[tuple[int, int, int, int]] = []  # (sender, recipient, amount, nonce) of sent txs, for replays
    next_nonce = [1] * len(KEYS)
    blocks = []
    for height in range(1, n_blocks + 1):
        txs = []
        if orders:
            for _ in range(rng.randrange(6)):
                account = rng.randrange(1, 6)
                if rng.random() < 0.9:
                    txs.append(random_order_tx(rng, height, account, next_nonce[account], live))
                else:  # deposits, withdrawals and transfers between subaccounts
                    amount = rng.choice([ONE_USDC, 5_000 * ONE_USDC, 60_000 * ONE_USDC])
                    msg = rng.choice([
                        tx_pb2.Msg(deposit=tx_pb2.MsgDeposit(owner=ADDRS[account], subaccount_number=rng.choice([0, 1]),
                                                             amount_quote_quantums=amount)),
                        tx_pb2.Msg(withdraw=tx_pb2.MsgWithdraw(owner=ADDRS[account], amount_quote_quantums=amount)),
                        tx_pb2.Msg(transfer=tx_pb2.MsgTransfer(owner=ADDRS[account], recipient_owner=ADDRS[
                            rng.randrange(1, 6)], recipient_subaccount_number=1, amount_quote_quantums=amount))])
                    txs.append(sign_tx(KEYS[account], CHAIN_ID, next_nonce[account], [msg]))
                next_nonce[account] += 1
            del live[:-200]
        for _ in range(rng.randrange(max_txs + 1)):
            kind = rng.random()
            sender = rng.randrange(len(KEYS))
            recipient = rng.randrange(len(KEYS))
            if kind < 0.6:  # ordinary transfer, sometimes out of order
                nonce = next_nonce[sender] + rng.randrange(3)
                next_nonce[sender] = max(next_nonce[sender], nonce) + 1
                amount = rng.choice([1, ONE_USDC, rng.randrange(1, 10**12), 10**15])
                used.append((sender, recipient, amount, nonce))
                txs.append(send_tx(sender, recipient, amount, nonce))
            elif kind < 0.7 and used:  # replay
                txs.append(send_tx(*rng.choice(used)))
            elif kind < 0.78:  # garbage bytes
                txs.append(rng.randbytes(rng.randrange(0, 200)))
            elif kind < 0.86:  # valid tx with one flipped bit
                raw = bytearray(send_tx(sender, recipient, ONE_USDC, next_nonce[sender]))
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
                txs.append(bytes(raw))
            elif kind < 0.89:  # validator power change (key set unchanged, so votes stay verifiable); rarely not
                # signed by the authority (account 0), which must fail
                signer = 0 if rng.random() < 0.8 else sender
                validator = bytes(VALIDATOR_KEYS[rng.randrange(len(VALIDATOR_KEYS))].verify_key)
                msg = msg_set_validator_power(ADDRS[signer], validator, rng.randrange(1, 40))
                txs.append(sign_tx(KEYS[signer], CHAIN_ID, next_nonce[signer], [msg]))
                next_nonce[signer] += 1
            elif kind < 0.92:  # wrong chain
                txs.append(send_tx(sender, recipient, 1, next_nonce[sender], chain_id=CHAIN_ID + "x"))
            else:  # empty message list / signer mismatch
                body = tx_pb2.TxBody(chain_id=CHAIN_ID, signer_pub_key=bytes(KEYS[sender].verify_key), nonce=1)
                body_bytes = encode_proto(body)
                sig = KEYS[sender].sign(b"perpchain/tx/v1\x00" + body_bytes).signature
                txs.append(encode_proto(tx_pb2.Tx(body=body_bytes, signature=sig)))
        blocks.append(txs)
    return blocks
