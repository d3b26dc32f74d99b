"""prices: oracle markets, the stake-weighted median of validators' index prices, mark price, staleness.

State (prefix 0x04):
- ``0x04 0x00 || market_id(u32 BE)`` -> MarketParam (pair, exponent, min price change, stale window)
- ``0x04 0x01 || market_id(u32 BE)`` -> MarketPrice (oracle, mark, basis EMA, last update, reporters, stale)
- ``0x04 0x02`` -> PricesParams

Flow (see app/application.py): validators put their index prices in vote
extensions at height H-1; the proposer of H injects those signed extensions
verbatim as tx 0 together with the per-market stake-weighted medians where
more than 2/3 of voting power reported; every node recomputes and verifies
them (ProcessProposal and again in FinalizeBlock, which replay also runs);
FinalizeBlock applies them with dYdX's minimum-price-change rule, updates
the mark price and the staleness flags.

Units: prices are integers in the market's exponent (USD per coin = price ×
10^exponent, dYdX MarketPrice units); ppm = 1e-6; times are header time in ns.

Invariants: market ids and pairs are unique; an oracle price is never set
to 0 once set; a market is stale iff no median was agreed within its window.
"""
