"""Generate Python protobuf modules at setup time.

CometBFT's ABCI protos are compiled from the exact module version in the Go
module cache (``go mod download``); they are never copied into this repo.
Our own protos live in ``proto/``. Output goes to a sys.path root (``gen/``)
because generated modules import each other absolutely.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys

import grpc_tools
from grpc_tools import protoc

COMETBFT_PROTOS = [
    "tendermint/abci/types.proto",
    "tendermint/crypto/proof.proto",
    "tendermint/crypto/keys.proto",
    "tendermint/types/params.proto",
    "tendermint/types/validator.proto",
    "tendermint/types/types.proto",
    "tendermint/types/canonical.proto",
    "tendermint/version/types.proto",
]


def go_module_dir(module: str, version: str) -> pathlib.Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        check=True, capture_output=True, text=True,
    ).stdout
    info = json.loads(out)
    if "Dir" not in info:
        sys.exit(f"go mod download {module}@{version} failed: {info.get('Error')}")
    return pathlib.Path(info["Dir"])


def run_protoc(includes: list[pathlib.Path], out: pathlib.Path, files: list[str]) -> None:
    args = ["protoc", *[f"-I{p}" for p in includes], f"--python_out={out}", *files]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed: {' '.join(args)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cometbft", required=True)
    ap.add_argument("--gogoproto", required=True)
    ns = ap.parse_args()
    out = pathlib.Path(ns.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cmt = go_module_dir("github.com/cometbft/cometbft", ns.cometbft)
    gogo = go_module_dir("github.com/cosmos/gogoproto", ns.gogoproto)
    bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    run_protoc([cmt / "proto", gogo, bundled], out, [*COMETBFT_PROTOS, "gogoproto/gogo.proto"])
    repo_proto = pathlib.Path(__file__).resolve().parent.parent / "proto"
    ours = sorted(str(p.relative_to(repo_proto)) for p in repo_proto.rglob("*.proto"))
    run_protoc([repo_proto, bundled], out, ours)
    # Make every generated folder an importable package.
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    (out / "__init__.py").unlink()
    print(f"generated {len(list(out.rglob('*_pb2.py')))} modules into {out}")


if __name__ == "__main__":
    main()
