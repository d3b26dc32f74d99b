"""subaccounts: USDC balances and perpetual positions of each subaccount, and the collateral checks on them.

This package currently holds only the pure risk math (``logic.py``): the (net collateral, initial margin,
maintenance margin) triple of an account, its ordering by riskiness, and the collateralization check an
update (fill, order, transfer, withdrawal) must pass. It owns no state yet; the keeper builds on this API.

Units: quote quantums (1e-6 USDC) for net collateral and margin requirements.
"""
