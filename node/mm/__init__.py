"""The reference market maker (a client process over RPC): ``runner.run`` quotes, ``quotes`` is its pure math.

``perpd mm run --key mm --home .localnet ...`` (node/cli/mm.py) runs it; the localnet starts it that way
(node/localnet.py, docs/localnet.md).
"""
