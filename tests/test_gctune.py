"""node/gctune.py: a node collects its young generation every GEN0_THRESHOLD allocations and never rescans the
objects that existed when it was tuned (its loaded state)."""

from __future__ import annotations

import gc

from node import gctune


def test_tune_sets_thresholds_and_freezes_existing_objects():
    before = gc.get_threshold()
    try:
        sentinel = [object() for _ in range(10)]
        gctune.tune()
        assert gc.get_threshold() == (gctune.GEN0_THRESHOLD, gctune.GEN1_THRESHOLD, gctune.GEN2_THRESHOLD)
        assert gctune.GEN0_THRESHOLD > 700  # fewer young collections than CPython's default
        assert gc.get_freeze_count() >= len(sentinel)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
