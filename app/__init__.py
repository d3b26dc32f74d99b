"""perpchain's deterministic state machine.

Pure Python, integer arithmetic only: no I/O, no clock, no randomness, no
floats, no set iteration, no true division. Everything here must produce the
same bytes on every validator; ``tests/test_determinism_guard.py`` enforces
the forbidden constructs and import-linter enforces that ``app`` never imports
``node``.
"""
