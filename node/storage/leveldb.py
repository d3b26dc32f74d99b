"""Committed state in LevelDB (plyvel).

One write batch per Commit, written with ``sync=True``, carrying the block's
write-set together with the height and app hash, so the store is always at a
block boundary: either all of block H is on disk or none of it.

Key layout: app state keys as ``app/store.py`` defines them (module prefix
byte >= 0x01); commit metadata under the reserved prefix 0x00.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import plyvel

META_HEIGHT = b"\x00height"
META_APP_HASH = b"\x00app_hash"


class LevelDBStore:
    """Committed state with a read cache: committed values change only in :meth:`commit`, which updates the cache
    with the block's writes after the batch is on disk, so a cached value (or a cached absence) is always the
    committed one. Bounded by ``cache_entries``; when full it starts over (a miss costs one LevelDB read)."""

    def __init__(self, path: str | pathlib.Path, cache_entries: int = 1 << 18) -> None:
        pathlib.Path(path).mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = plyvel.DB(self.path, create_if_missing=True)
        self._cache: dict[bytes, bytes | None] = {}
        self._cache_entries = cache_entries
        raw = self._db.get(META_HEIGHT)
        self._height = int.from_bytes(raw, "big") if raw else 0
        self._app_hash = self._db.get(META_APP_HASH) or b""

    def get(self, key: bytes) -> bytes | None:
        cache = self._cache
        if key in cache:
            return cache[key]
        value = self._db.get(key)
        if len(cache) >= self._cache_entries:
            cache.clear()
        cache[key] = value
        return value

    def iterate(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        # Metadata keys (0x00...) sort before every app key; callers never start below 0x01.
        if end is None:
            return self._db.iterator(start=start)
        return self._db.iterator(start=start, stop=end)

    def last_height(self) -> int:
        return self._height

    def last_app_hash(self) -> bytes:
        return self._app_hash

    def commit(self, writes: list[tuple[bytes, bytes | None]], height: int, app_hash: bytes) -> None:
        if height != self._height + 1 and self._height != 0:
            raise RuntimeError(f"commit of height {height} on top of {self._height}")
        with self._db.write_batch(transaction=True, sync=True) as batch:  # all of block H or nothing
            for key, value in writes:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            batch.put(META_HEIGHT, height.to_bytes(8, "big"))
            batch.put(META_APP_HASH, app_hash)
        cache = self._cache
        for key, value in (*writes, (META_HEIGHT, height.to_bytes(8, "big")), (META_APP_HASH, app_hash)):
            if key in cache:  # only keys already cached: the cache stays bounded by reads
                cache[key] = value
        self._height = height
        self._app_hash = app_hash

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
