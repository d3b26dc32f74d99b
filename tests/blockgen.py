"""Seeded random blocks for the determinism harness and fuzzing (test-side randomness only)."""

from __future__ import annotations

import random

from perpchain.v1 import tx_pb2

from app.lib.encoding import encode_proto
from node.client.txbuilder import msg_set_validator_power, sign_tx
from tests.helpers import ADDRS, CHAIN_ID, KEYS, ONE_USDC, VALIDATOR_KEYS, send_tx


def random_blocks(seed: int, n_blocks: int, max_txs: int = 12) -> list[list[bytes]]:
    rng = random.Random(seed)
    used: list[tuple[int, int, int, int]] = []  # (sender, recipient, amount, nonce) of sent txs, for replays
    next_nonce = [1] * len(KEYS)
    blocks = []
    for _ in range(n_blocks):
        txs = []
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
