"""consensus: what the app knows about the chain and its validators.

State (prefix 0x03):
- ``0x03 0x00`` -> ChainInfo (chain id, initial height, genesis time)
- ``0x03 0x01`` -> ValidatorSet (address, ed25519 pub key, power), sorted by address

The validator set is learned from InitChain (and from the app's own
validator updates, none yet). The oracle plane verifies vote-extension
signatures against it.
"""
