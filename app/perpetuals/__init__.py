"""perpetuals: perpetual markets, their liquidity tiers, open interest and funding index.

This package currently holds only the pure money math (``logic.py``): base <-> quote
conversion at an oracle price, per-position margin requirements with the liquidity
tier's OI-scaled initial margin fraction, funding settlement, liquidity-tier
validation. It owns no state yet; the keeper (perpetuals, tiers, open interest,
funding index) is built on top of exactly this API.

Units (dYdX v4 exactly, see /work/shared/reference/dydx-v4-mechanics.md §1):
- quote quantum = 1e-6 USDC (quote atomic resolution -6);
- base quantum = 10^atomic_resolution coins of the perpetual;
- oracle price: integer ``price`` with ``price_exponent``; USD per coin = price × 10^price_exponent;
- ppm: 1_000_000 = 100 %;
- funding index: 1e-6 quote quantums per base quantum.
"""
