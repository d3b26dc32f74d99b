"""The reference market maker (a client process over RPC): ``runner.run`` quotes, ``quotes`` is its pure math.

``python -m node.mm --key mm --home .localnet ...`` runs it with the options of ``perpd mm run``; the localnet
starts it that way (node/localnet.py), so it does not depend on the CLI being installed.
"""
