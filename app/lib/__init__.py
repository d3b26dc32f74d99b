"""Small deterministic helpers shared by every module (math, encoding, addresses)."""
