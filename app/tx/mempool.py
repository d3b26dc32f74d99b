"""This node's view of its pending txs, for CheckTx (node-local, never consensus state).

Why it exists and what it may do (issue #7): CometBFT's ``/check_tx`` RPC sends the app the very same CheckTx
request the mempool sends, so anything CheckTx remembers, anyone on the RPC can make it remember. The rules that
make that harmless:

- CheckTx runs every tx against the last committed state plus this view; the view only holds, per account, the
  nonces, budget and fees promised to that account's own txs that passed CheckTx since the last commit.
- It is keyed by the tx's sha256: checking a tx again (``/check_tx`` then the mempool, or gossip after a
  ``/check_tx``) answers exactly as the first time, so a ``/check_tx`` never makes a node refuse or delay that tx.
- Balances are not reserved (a transfer is checked against the committed balance alone); only fees are, because
  every pending tx will pay its fee if it is included.
- Only a tx signed by the account's key can add to the account's entry: a third party cannot spend anyone's
  nonce, budget or fee headroom. What remains: someone holding a tx the account signed but never broadcast can,
  by ``/check_tx``, make this node refuse a *different* tx of that account with the same nonce, or count that tx's
  budget and fee, until the next block -- the same effect as broadcasting the tx it holds, which it could do anyway.
- The view is cleared at every Commit and rebuilt by CometBFT's rechecks of the txs still in the mempool, so what
  ``/check_tx`` added without the tx entering the mempool lasts at most until the next block.
- It is bounded (``max_entries``): past the bound CheckTx refuses new txs with ``mempool_full`` until the next
  block, like a full mempool.
"""

from __future__ import annotations

from app.auth.admission import Cost
from app.tx.ante import Pending

MAX_ENTRIES = 100_000  # txs; CometBFT's default mempool holds 5 000


class MempoolView:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._txs: dict[bytes, bytes] = {}  # tx digest -> signer
        self._by_signer: dict[bytes, Pending] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._txs

    def is_full(self) -> bool:
        return len(self._txs) >= self._max

    def pending_for(self, signer: bytes) -> Pending:
        return self._by_signer.get(signer) or Pending()

    def add(self, digest: bytes, signer: bytes, nonce: int, cost: Cost, fee_quote_quantums: int) -> None:
        p = self._by_signer.get(signer)
        if p is None:
            p = self._by_signer[signer] = Pending()
        p.nonces[nonce] = digest
        p.requests += cost.requests
        p.cancels += cost.cancels
        p.fee_quote_quantums += fee_quote_quantums
        self._txs[digest] = signer

    def clear(self) -> None:
        self._txs.clear()
        self._by_signer.clear()
