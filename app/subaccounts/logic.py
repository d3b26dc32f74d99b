"""Pure subaccount risk math: the Risk triple, its ordering, and the collateral check of an update.

State owned: none (plain ints in, frozen values out). The keeper computes a subaccount's Risk after
settling funding (sum over positions of ``app.perpetuals.logic.net_collateral`` and
``margin_requirements``, plus the USDC balance as net collateral) and calls :func:`check_update` with the
risk before and after the update.

Units: quote quantums (1e-6 USDC) for NC (net collateral, signed), IMR and MMR (initial / maintenance
margin requirement, >= 0). No division happens here: risk ratios NC/MMR are compared by
cross-multiplication, exactly.

Sources: github.com/dydxprotocol/v4-chain ``protocol/lib/margin/risk.go`` and
``protocol/x/subaccounts/lib/updates.go`` (IsValidStateTransitionForUndercollateralizedSubaccount), with the
caller in ``protocol/x/subaccounts/keeper/subaccount.go`` (internalCanUpdateSubaccountsWithLeverage).
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class Risk(NamedTuple):
    """Net collateral and margin requirements of a position or a whole subaccount (quote quantums). A NamedTuple
    (immutable, compared by value) rather than a frozen dataclass: every collateral check builds two or three."""

    net_collateral_quote_quantums: int
    initial_margin_quote_quantums: int
    maintenance_margin_quote_quantums: int

    def add(self, other: Risk) -> Risk:
        """Field-wise sum (a subaccount's Risk is the sum over its positions and its USDC balance).

        Mirrors dYdX lib/margin/risk.go Risk.AddInPlace (returns a new value instead of mutating).
        """
        return Risk(
            self.net_collateral_quote_quantums + other.net_collateral_quote_quantums,
            self.initial_margin_quote_quantums + other.initial_margin_quote_quantums,
            self.maintenance_margin_quote_quantums + other.maintenance_margin_quote_quantums,
        )

    def is_initial_collateralized(self) -> bool:
        """NC >= IMR. Mirrors dYdX Risk.IsInitialCollateralized."""
        return self.net_collateral_quote_quantums >= self.initial_margin_quote_quantums

    def is_maintenance_collateralized(self) -> bool:
        """NC >= MMR. Mirrors dYdX Risk.IsMaintenanceCollateralized."""
        return self.net_collateral_quote_quantums >= self.maintenance_margin_quote_quantums

    def is_liquidatable(self) -> bool:
        """MMR > 0 and NC < MMR: NC == MMR is safe, and an account without positions (MMR 0) never is.

        Mirrors dYdX Risk.IsLiquidatable.
        """
        return (
            self.maintenance_margin_quote_quantums > 0
            and self.net_collateral_quote_quantums < self.maintenance_margin_quote_quantums
        )


ZERO_RISK = Risk(0, 0, 0)


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def risk_cmp(a: Risk, b: Risk) -> int:
    """Compare riskiness: 1 if ``a`` is riskier than ``b``, -1 if less risky, 0 if equally risky.

    Riskier = lower NC/MMR, compared exactly as sign(b.NC × a.MMR - a.NC × b.MMR) (a zero MMR makes a
    product 0, so an MMR-0 account with NC > 0 ranks safer than any MMR>0 account, with NC < 0 riskier).
    Only when the two products are equal: if both MMR are 0 the lower NC is riskier, otherwise the higher
    MMR is riskier (e.g. NC 0 / MMR 0 ranks safer than every account with MMR > 0, even one with negative
    NC, since both products are 0; and 100/50 ranks safer than 200/100). The tests hold the full table
    from dYdX's risk_test.go.
    Mirrors dYdX protocol/lib/margin/risk.go Risk.Cmp (the current version, with the tie-break; earlier
    releases returned 0 on equal products).
    """
    a_nc, a_mmr = a.net_collateral_quote_quantums, a.maintenance_margin_quote_quantums
    b_nc, b_mmr = b.net_collateral_quote_quantums, b.maintenance_margin_quote_quantums
    result = _sign(b_nc * a_mmr - a_nc * b_mmr)
    if result != 0:
        return result
    if a_mmr == 0 and b_mmr == 0:
        return _sign(b_nc - a_nc)
    return _sign(a_mmr - b_mmr)


class CollateralCheck(enum.Enum):
    """Outcome of the collateral check of one subaccount update (dYdX satypes.UpdateResult subset)."""

    SUCCESS = "success"
    NEWLY_UNDERCOLLATERALIZED = "newly_undercollateralized"
    STILL_UNDERCOLLATERALIZED = "still_undercollateralized"


def check_undercollateralized_transition(old: Risk, new: Risk) -> CollateralCheck:
    """Whether an update that leaves the account below initial margin may still happen.

    Call only when ``new`` is not initially collateralized. The failure kind is NEWLY_UNDERCOLLATERALIZED if
    ``old`` met initial margin (IMR <= NC), else STILL_UNDERCOLLATERALIZED. In order:
    1. MMR_new > MMR_old fails;
    2. if either MMR is 0: succeed only if both are 0 and NC_new > NC_old;
    3. fails if ``new`` is riskier than ``old`` (risk_cmp(new, old) > 0);
    4. otherwise SUCCESS (a less-or-equally risky transition is allowed).
    Mirrors dYdX x/subaccounts/lib/updates.go IsValidStateTransitionForUndercollateralizedSubaccount.
    """
    failure = (
        CollateralCheck.NEWLY_UNDERCOLLATERALIZED
        if old.is_initial_collateralized()
        else CollateralCheck.STILL_UNDERCOLLATERALIZED
    )
    old_mmr, new_mmr = old.maintenance_margin_quote_quantums, new.maintenance_margin_quote_quantums
    if new_mmr > old_mmr:
        return failure
    if new_mmr == 0 or old_mmr == 0:
        if new_mmr == 0 and old_mmr == 0 and new.net_collateral_quote_quantums > old.net_collateral_quote_quantums:
            return CollateralCheck.SUCCESS
        return failure
    if risk_cmp(new, old) > 0:
        return failure
    return CollateralCheck.SUCCESS


def check_update(old: Risk, new: Risk) -> CollateralCheck:
    """Collateral check of one settled subaccount update (fill, order placement, transfer, deposit).

    SUCCESS if the account meets initial margin after the update (NC_new >= IMR_new); otherwise the verdict
    of :func:`check_undercollateralized_transition` on the risk before and after. Both risks must be
    computed after funding settlement, at the same oracle prices (and, for a fill, with the open interest
    the fill would cause).
    Mirrors dYdX x/subaccounts/keeper/subaccount.go internalCanUpdateSubaccountsWithLeverage (steps 5-6 of
    reference §2.4; isolated-market, withdrawal-gating and updatability checks belong to the keeper).
    """
    if new.is_initial_collateralized():
        return CollateralCheck.SUCCESS
    return check_undercollateralized_transition(old, new)


def check_withdrawal(new: Risk) -> bool:
    """Withdrawals and transfers out must leave the account initially collateralized: NC_new >= IMR_new.

    Chain rule (DESIGN §6, "withdrawals must leave initial margin"). For a strictly positive amount this
    is exactly what :func:`check_update` decides too (NC falls with MMR unchanged, so an account left below
    initial margin is always riskier than before); stating it outright keeps the rule independent of the
    riskiness ordering. A zero amount is refused before any check.
    """
    return new.is_initial_collateralized()
