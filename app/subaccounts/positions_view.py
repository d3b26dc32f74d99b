"""Struct-of-arrays view of every subaccount's positions, for the end-of-block risk pass (the risk issue).

Not a source of truth: a cache of committed subaccounts, rebuilt from the store (:func:`PositionsView.rebuild`) and
refreshed for exactly the subaccounts a block wrote (:meth:`PositionsView.refresh`), so its cost per block is
O(changes) and the replica that restarts every block (rebuilding it) agrees with the others.

Layout (numpy, integer dtypes only):
- per subaccount row: ``quote`` (int64 quote quantums);
- per position entry: ``entry_row`` (int64 row), ``entry_perp`` (int64 perpetual id), ``entry_size`` (int64 base
  quantums; 0 = a free slot). A subaccount's entries are found through ``row_entries`` (row -> entry indices), and
  freed slots are reused.

Screening (:meth:`screen`) is vectorized and *conservative*: it over-selects subaccounts that might be below
maintenance margin, using per-perpetual integer prices scaled so every product fits in int64, with the rounding
error bounded and charged against the account; every candidate must then be confirmed exactly with Python integers
(``app/subaccounts/keeper.compute_risk``) before anything happens to it. No float is involved.
"""

from __future__ import annotations

import numpy as np

from app.lib.math import ONE_MILLION, Rounding, div_round
from app.store import CommittedReader, prefix_end
from app.subaccounts import keys
from app.subaccounts.state import SubaccountId, SubaccountState, decode_subaccount

_INITIAL = 1024
# Positions are screened in "lots" of 10^shift base quantums, chosen per perpetual so that a lot's value in quote
# quantums is below 2^31; sizes in lots are kept below 2^31 by the exact path (larger ones are always candidates).
_LOT_VALUE_LIMIT = 1 << 31


class PositionsView:
    def __init__(self) -> None:
        self.rows: dict[SubaccountId, int] = {}
        self.ids: list[SubaccountId] = []
        self.quote = np.zeros(_INITIAL, dtype=np.int64)
        self.entry_row = np.zeros(_INITIAL, dtype=np.int64)
        self.entry_perp = np.zeros(_INITIAL, dtype=np.int64)
        self.entry_size = np.zeros(_INITIAL, dtype=np.int64)
        self.row_entries: list[list[int]] = []
        self._free: list[int] = []
        self._n_entries = 0

    # --- maintenance -----------------------------------------------------------------------------------------------
    @classmethod
    def rebuild(cls, store: CommittedReader) -> PositionsView:
        view = cls()
        n = len(keys.SUBACCOUNT_PREFIX)
        for key, raw in store.iterate(keys.SUBACCOUNT_PREFIX, prefix_end(keys.SUBACCOUNT_PREFIX)):
            view.set(SubaccountId(key[n:n + 20], key[n + 20]), decode_subaccount(raw))
        return view

    def refresh(self, write_set: list[tuple[bytes, bytes | None]]) -> int:
        """Apply a committed block's writes (its sorted write-set); returns how many subaccounts changed."""
        n = len(keys.SUBACCOUNT_PREFIX)
        changed = 0
        for key, value in write_set:
            if key.startswith(keys.SUBACCOUNT_PREFIX) and len(key) == n + 21:
                sid = SubaccountId(key[n:n + 20], key[n + 20])
                self.set(sid, SubaccountState() if value is None else decode_subaccount(value))
                changed += 1
        return changed

    def set(self, sid: SubaccountId, sub: SubaccountState) -> None:
        row = self.rows.get(sid)
        if row is None:
            row = len(self.ids)
            self.rows[sid] = row
            self.ids.append(sid)
            self.row_entries.append([])
            if row >= len(self.quote):
                self.quote = np.concatenate([self.quote, np.zeros(len(self.quote), dtype=np.int64)])
        self.quote[row] = sub.quote_balance_quote_quantums
        for e in self.row_entries[row]:
            self.entry_size[e] = 0
            self._free.append(e)
        entries = []
        for pid, p in sorted(sub.positions.items()):
            e = self._slot()
            self.entry_row[e] = row
            self.entry_perp[e] = pid
            self.entry_size[e] = p.size_base_quantums
            entries.append(e)
        self.row_entries[row] = entries

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._n_entries >= len(self.entry_size):
            grow = len(self.entry_size)
            for name in ("entry_row", "entry_perp", "entry_size"):
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(grow, dtype=np.int64)]))
        self._n_entries += 1
        return self._n_entries - 1



def screening_table(perp_params: dict[int, tuple[int, int, int, int, int]]) -> dict[int, tuple[int, int, int, int]]:
    """Per perpetual (atomic_resolution, price, price_exponent, initial_margin_ppm, maintenance_fraction_ppm) ->
    (lot shift, lot value floor, lot value ceil, maintenance ppm ceil), quote quantums.

    A lot is 10^shift base quantums with the smallest shift whose value is >= 10^6 quote quantums (so the lot
    value's own rounding is below 1e-6 of it); a base quantum is worth price × 10^k quote quantums with
    k = price_exponent + atomic_resolution + 6 (dYdX BaseToQuoteQuantums)."""
    out = {}
    for pid, (atomic_resolution, price, exponent, im_ppm, mf_ppm) in perp_params.items():
        k = exponent + atomic_resolution + 6
        shift = 0
        while shift < 18 and (price * 10 ** (k + shift) if k + shift >= 0 else
                              div_round(price, 10 ** abs(k + shift), Rounding.FLOOR)) < ONE_MILLION:
            shift += 1
        e = k + shift
        lo = price * 10**e if e >= 0 else div_round(price, 10 ** abs(e), Rounding.FLOOR)
        hi = price * 10**e if e >= 0 else div_round(price, 10 ** abs(e), Rounding.CEIL)
        mm_ppm_hi = div_round(im_ppm * mf_ppm, ONE_MILLION, Rounding.CEIL)
        out[pid] = (shift, lo, hi, mm_ppm_hi)
    return out


def screen(view: PositionsView, table: dict[int, tuple[int, int, int, int]]) -> list[SubaccountId]:
    """Vectorized, conservative screen: every subaccount whose TNC might be below its maintenance requirement.

    Per position: a lower bound of its value (long: ⌊size / lot⌋ × lot value floor; short: −⌈|size| / lot⌉ × lot
    value ceil) and an upper bound of its requirement ((⌊notional bound ÷ 1e6⌋ + 1) × maintenance ppm ceil + 1 ≥
    dYdX's double-ceiled MMR). Flags rows with requirement > 0 and TNC lower bound < requirement upper bound, plus
    every row holding a position beyond 2^31 lots (outside the proven int64 bound). Candidates must be confirmed
    exactly (``keeper.compute_risk``); the screen only decides what to look at.
    """
    n_rows = len(view.ids)
    n = view._n_entries
    if n_rows == 0:
        return []
    used = view.entry_size[:n] != 0
    rows = view.entry_row[:n][used]
    perp = view.entry_perp[:n][used]
    size = view.entry_size[:n][used]
    if len(perp) == 0:
        return []
    width = int(perp.max()) + 1
    shift, lo, hi, mm = (np.zeros(width, dtype=np.int64) for _ in range(4))
    for pid, (s_, l_, h_, m_) in table.items():
        if pid < width:
            shift[pid], lo[pid], hi[pid], mm[pid] = s_, l_, h_, m_
    lot = np.array([10**i for i in range(19)], dtype=np.int64)[shift[perp]]
    long = size > 0
    lots_down = np.floor_divide(np.abs(size), lot)
    lots_up = np.floor_divide(np.abs(size) + lot - 1, lot)
    big = lots_up >= (1 << 31)
    lots_down = np.where(big, 0, lots_down)
    lots_up = np.where(big, 0, lots_up)
    value_lo = np.where(long, lots_down * lo[perp], -(lots_up * hi[perp]))
    notional_hi = lots_up * hi[perp]
    mmr_hi = (np.floor_divide(notional_hi, ONE_MILLION) + 1) * mm[perp] + 1
    tnc_lo = view.quote[:n_rows].copy()
    np.add.at(tnc_lo, rows, value_lo)
    mmr_rows = np.zeros(n_rows, dtype=np.int64)
    np.add.at(mmr_rows, rows, mmr_hi)
    flagged = (mmr_rows > 0) & (tnc_lo < mmr_rows)
    flagged[rows[big]] = True
    return [view.ids[i] for i in np.flatnonzero(flagged).tolist()]
