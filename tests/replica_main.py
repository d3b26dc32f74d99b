"""Run one replica in its own process: `python -m tests.replica_main BLOCKS.json DBDIR` prints app hashes.

Used by the determinism harness with different PYTHONHASHSEED values.
"""

import json
import pathlib
import sys

from tests.helpers import Replica
from tests.test_replicas import last_commit_from_spec


def main() -> None:
    spec = json.loads(pathlib.Path(sys.argv[1]).read_text())
    r = Replica(pathlib.Path(sys.argv[2]))
    hashes = [r.init_chain(spec["app_state"], vote_extensions_enable_height=1).hex()]
    for block in spec["blocks"]:
        res = r.block([bytes.fromhex(t) for t in block["txs"]], last_commit=last_commit_from_spec(block))
        hashes.append(res.app_hash.hex())
    r.close()
    json.dump({"hashes": hashes}, sys.stdout)


if __name__ == "__main__":
    main()
