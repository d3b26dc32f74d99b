"""Helpers of the tests written for mutation testing (tests/test_mutation_*.py): an in-memory committed store and a
replica over it, so those tests need no LevelDB and no temporary directory (fast, and safe in mutmut's forked
workers)."""

from __future__ import annotations

import bisect

import pytest

from app import errors
from app.application import Application
from tests.helpers import Replica


class MemStore:
    """CommitStore in memory (the interface of node/storage/leveldb.LevelDBStore)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._height = 0
        self._app_hash = b""

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, start: bytes, end: bytes | None):
        i = bisect.bisect_left(self._keys, start)
        j = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
        for key in self._keys[i:j]:
            yield key, self._data[key]

    def last_height(self) -> int:
        return self._height

    def last_app_hash(self) -> bytes:
        return self._app_hash

    def commit(self, writes, height: int, app_hash: bytes) -> None:
        for key, value in writes:
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value
        self._height = height
        self._app_hash = app_hash

    def close(self) -> None:
        pass


class MemReplica(Replica):
    """tests.helpers.Replica over a MemStore; ``restart`` makes a new Application over the same committed state."""

    def __init__(self) -> None:  # no path, no LevelDB
        self.path = None
        self.store = MemStore()
        self.app = Application(self.store)

    def restart(self) -> None:
        self.app = Application(self.store)


class Empty:
    """An empty committed store (for unit tests of one keeper over a BranchStore)."""

    def get(self, key):
        return None

    def iterate(self, start, end):
        return iter(())


def refused(fn, *args, **kwargs) -> errors.AppError:
    """The AppError ``fn(*args, **kwargs)`` raises (the test fails if it raises none)."""
    with pytest.raises(errors.AppError) as info:
        fn(*args, **kwargs)
    return info.value


def mem_exchange(state: dict | None = None) -> MemReplica:
    """An in-memory chain at height 1 with the exchange genesis of tests/exchange_helpers.py (or ``state``)."""
    from tests.attack_helpers import app_state

    r = MemReplica()
    r.init_chain(app_state() if state is None else state)
    r.block([])
    return r
