"""Run one replica in its own process: `python -m tests.replica_main BLOCKS.json DBDIR` prints app hashes.

Used by the determinism harness with different PYTHONHASHSEED values.
"""

import json
import pathlib
import sys

from tests.helpers import Replica


def main() -> None:
    spec = json.loads(pathlib.Path(sys.argv[1]).read_text())
    r = Replica(pathlib.Path(sys.argv[2]))
    hashes = [r.init_chain(spec["app_state"]).hex()]
    for txs in spec["blocks"]:
        res = r.block([bytes.fromhex(t) for t in txs])
        hashes.append(res.app_hash.hex())
    r.close()
    json.dump({"hashes": hashes}, sys.stdout)


if __name__ == "__main__":
    main()
