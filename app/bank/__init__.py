"""bank: USDC balances.

State (prefix 0x01):
- ``0x01 0x00 || address(20)`` -> Balance (quote quantums, 1e-6 USDC, uint64)
- ``0x01 0x01`` -> Balance: total supply
- ``0x01 0x02`` -> BankParams (authority address for admin actions)

Invariants: Σ balances == supply (checked at genesis, on export and in
tests); every block's balance changes sum to zero (checked per block from the
write-set, O(changes)); no balance exceeds uint64.
"""
