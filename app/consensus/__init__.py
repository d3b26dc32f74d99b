"""consensus: what the app knows about the chain and its validators.

State (prefix 0x03):
- ``0x03 0x00`` -> ChainInfo (chain id, initial height, genesis time, vote-extension enable height)
- ``0x03 0x02 ‖ height`` -> ValidatorSet: validators(h) for h >= height until the next entry
- ``0x03 0x03 ‖ pub_key`` -> staged power of this block's MsgSetValidatorPower (empty between blocks)

The validator set is learned from InitChain and changed only by the authority's MsgSetValidatorPower, returned to
CometBFT as validator updates and effective two blocks later on both sides. The oracle plane verifies the vote
extensions of height h against validators(h). (Layout changed from a single ``0x03 0x01`` key: chains created
before it must be re-created.)
"""
