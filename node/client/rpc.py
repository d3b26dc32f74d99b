"""CometBFT JSON-RPC client (httpx)."""

from __future__ import annotations

import base64
import json
import time

import httpx


class RpcError(Exception):
    pass


class RpcClient:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._id = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, **params) -> dict:
        self._id += 1
        try:
            r = self._http.post("/", json={"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        except httpx.HTTPError as e:
            raise RpcError(f"cannot reach node at {self.url}: {e.__class__.__name__}: {e}") from None
        try:
            doc = r.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RpcError(f"{method}: node answered HTTP {r.status_code} with non-JSON body") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("error", doc.get("result")), dict):
            raise RpcError(f"{method}: {self.url} did not answer like a CometBFT JSON-RPC endpoint")
        if "error" in doc:
            err = doc["error"]
            data = err.get("data", "")
            if "tx already exists in cache" in str(data):
                raise RpcError(f"{method}: this exact tx was already received (same signed bytes; a repeated "
                               f"--nonce resends the same tx)")
            raise RpcError(f"{method}: {err.get('message')} {data}".strip())
        return doc["result"]

    def status(self) -> dict:
        return self.call("status")

    def chain_id(self) -> str:
        return self.status()["node_info"]["network"]

    def height(self) -> int:
        return int(self.status()["sync_info"]["latest_block_height"])

    def broadcast_tx_sync(self, tx: bytes) -> dict:
        return self.call("broadcast_tx_sync", tx=base64.b64encode(tx).decode())

    def broadcast_tx_async(self, tx: bytes) -> dict:
        return self.call("broadcast_tx_async", tx=base64.b64encode(tx).decode())

    def tx(self, hash_hex: str) -> dict | None:
        """The committed tx result, or None if not (yet) in a block."""
        try:
            return self.call("tx", hash=base64.b64encode(bytes.fromhex(hash_hex)).decode(), prove=False)
        except RpcError as e:
            if "not found" in str(e):
                return None
            raise

    def wait_tx(self, hash_hex: str, timeout_s: float = 30.0, poll_s: float = 0.2) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            res = self.tx(hash_hex)
            if res is not None:
                return res
            if time.monotonic() > deadline:
                raise RpcError(f"tx {hash_hex} not committed within {timeout_s:.0f}s")
            time.sleep(poll_s)

    def abci_query(self, path: str, data: bytes = b"") -> dict:
        res = self.call("abci_query", path=path, data=data.hex(), height="0", prove=False)["response"]
        return res

    def query_json(self, path: str) -> dict:
        return self.query_json_at(path)[1]

    def query_json_at(self, path: str) -> tuple[int, dict]:
        """(the committed height the node answered at, the answer): queries read the latest committed state, so
        two nodes (or two calls) compare only at the same height."""
        res = self.abci_query(path)
        if int(res.get("code", 0)) != 0:
            raise RpcError(f"query {path}: {res.get('log')}")
        try:
            return int(res.get("height") or 0), json.loads(base64.b64decode(res.get("value") or ""))
        except ValueError:  # JSONDecodeError, binascii.Error, UnicodeDecodeError
            raise RpcError(f"query {path}: the node's app did not answer JSON (is {self.url} a perpd node?)") from None

    def block(self, height: int | None = None) -> dict:
        return self.call("block") if height is None else self.call("block", height=str(height))

    def app_hash_at(self, height: int) -> str:
        """App hash after executing block ``height`` (it is in the header of block height+1)."""
        return self.block(height + 1)["block"]["header"]["app_hash"]
