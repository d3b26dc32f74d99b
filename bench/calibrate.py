"""Two fixed yardsticks of this machine's speed at the moment of a run, printed beside a benchmark's figures.

This VM's single-thread speed drifts by up to ~2x from hour to hour (docs/benchmarks.md), so rows measured at
different times compare only after scaling by these: a pure-Python loop (CPython's interpreter and integer work,
which is what the app spends its time on) and one ed25519 verification with pynacl (what every tx costs a node).
Best of several repeats, so a busy moment lengthens them less than it lengthens the benchmark.
"""

from __future__ import annotations

import hashlib
import timeit

import nacl.bindings
import nacl.signing


def yardsticks() -> tuple[float, float]:
    """(µs per ``sum(range(1000))``, µs per ed25519 verification of a 200-byte message), best of 5 repeats."""
    loop = min(timeit.repeat("sum(range(1000))", repeat=5, number=2_000)) / 2_000
    key = nacl.signing.SigningKey(hashlib.sha256(b"perpchain-bench-yardstick").digest())
    signed = bytes(key.sign(b"x" * 200))
    pub = bytes(key.verify_key)
    verify = min(timeit.repeat(lambda: nacl.bindings.crypto_sign_open(signed, pub), repeat=5, number=200)) / 200
    return loop * 1e6, verify * 1e6


def speed_line() -> str:
    loop_us, verify_us = yardsticks()
    return (f"machine speed now: sum(range(1000)) {loop_us:.1f} us, ed25519 verify (pynacl) {verify_us:.0f} us "
            "(best of 5; compare rows of different runs only after scaling by these)")


if __name__ == "__main__":
    print(speed_line())
