"""Garbage-collector settings of a perpd node process (not consensus: collection never changes a result).

Block execution allocates many short-lived objects (decoded orders, subaccount states, events), almost none of them
in reference cycles. With CPython's default young-generation threshold (700 allocations) the collector runs
thousands of times per block and each older-generation pass walks every long-lived object (the book index,
caches). So a node, once its state is loaded: collects once, freezes what exists (start-up objects are never scanned
again), and collects the young generation every GEN0_THRESHOLD allocations. Measured by bench/clob_block.py.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # allocations minus deallocations between young collections (CPython default 700)
GEN1_THRESHOLD = 20  # young collections between middle ones (default 10)
GEN2_THRESHOLD = 20  # middle collections between full ones (default 10)


def tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
