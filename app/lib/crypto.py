"""ed25519 verification with a bounded memo (pure function, so the memo can never change a result)."""

from __future__ import annotations

import nacl.exceptions
import nacl.signing


def verify_ed25519(pub_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(pub_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(pub_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


class SignatureMemo:
    """Remembers verification results so a vote extension is checked once per node, not once per ABCI call."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self._max = max_entries
        self._results: dict[tuple[bytes, bytes, bytes], bool] = {}

    def verify(self, pub_key: bytes, message: bytes, signature: bytes) -> bool:
        key = (pub_key, message, signature)
        hit = self._results.get(key)
        if hit is None:
            hit = verify_ed25519(pub_key, message, signature)
            if len(self._results) >= self._max:
                del self._results[next(iter(self._results))]  # oldest first (dicts keep insertion order)
            self._results[key] = hit
        return hit
