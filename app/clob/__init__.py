"""clob: order books, matching, fills and trading fees.

This package currently holds only the pure money math (``logic.py``): fill value at a price in subticks,
oracle price -> subticks, trading fees, fee-tier selection, tick/lot alignment. It owns no state yet; the
order book and its keeper build on this API.

Units: subticks (price unit: quote quantums = subticks × base quantums × 10^quantum_conversion_exponent),
base quantums, quote quantums (1e-6 USDC), ppm (1e6 = 100 %).
"""
