"""Transactions: the signed envelope, stateless checks and message routing.

Envelope: ``Tx{body, signature}``; ``body`` is a canonical ``TxBody`` (chain
id, signer ed25519 public key, nonce, memo, messages); the signature is
ed25519 over ``SIGN_DOMAIN || body``. Every message names the address that
must have signed it, which must equal the signer's address.
"""
