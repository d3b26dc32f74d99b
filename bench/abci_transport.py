"""Server CPU per CheckTx for the two out-of-process ABCI transports CometBFT v0.38 offers.

Why this exists: CometBFT's gRPC ABCI client has no flush timer, so the Go
kvstore behind gRPC outruns the same kvstore behind the socket protocol on this
machine (`localnet_tps.py --apps kvstore-socket,kvstore-grpc`). Whether perpd
should serve gRPC instead depends on what a Python gRPC server costs per call.
This measures it against our asyncio socket server (node/abci/server.py) with
the app taken out: both answer every CheckTx with a constant response, and only
the server process's CPU is counted.

  socket: a client shaped like CometBFT's mempool connection (each CheckTx
          followed by a Flush, up to --inflight pairs outstanding)
  grpc:   grpc.aio server from the v0.38 `service ABCI` (stubs generated into a
          temporary folder with grpcio-tools), --inflight concurrent unary calls

    .venv/bin/python bench/abci_transport.py [--calls 5000] [--inflight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "gen"))

from tendermint.abci import types_pb2 as abci  # noqa: E402

from node.abci.framing import decode_frames, frame  # noqa: E402
from node.procutil import stat_fields  # noqa: E402

TX = b"t" * 219  # the localnet benchmark's transfer size


def cpu_seconds(pid: int) -> float:
    fields = stat_fields(pid)
    assert fields is not None, f"server process {pid} is gone"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generate_grpc_stubs(out: pathlib.Path) -> pathlib.Path:
    """types_pb2_grpc.py for tendermint/abci/types.proto of the pinned CometBFT module."""
    import grpc_tools
    from grpc_tools import protoc

    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    version = next(line.split(":=")[1].strip() for line in (ROOT / "Makefile").read_text().splitlines()
                   if line.startswith("COMETBFT_VERSION"))
    gogo_version = next(line.split(":=")[1].strip() for line in (ROOT / "Makefile").read_text().splitlines()
                        if line.startswith("GOGOPROTO_VERSION"))
    cmt = gen.go_module_dir("github.com/cometbft/cometbft", version)
    gogo = gen.go_module_dir("github.com/cosmos/gogoproto", gogo_version)
    bundled = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{cmt / 'proto'}", f"-I{gogo}", f"-I{bundled}", f"--grpc_python_out={out}",
            "tendermint/abci/types.proto"]
    if protoc.main(args) != 0:
        sys.exit("protoc (grpc) failed")
    return out / "tendermint" / "abci" / "types_pb2_grpc.py"


def load_stubs(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location("abci_grpc", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class ConstHandler:
    """The app taken out: every request gets a constant answer."""

    def handle(self, req: abci.Request) -> abci.Response:
        if req.WhichOneof("value") == "flush":
            return abci.Response(flush=abci.ResponseFlush())
        return abci.Response(check_tx=abci.ResponseCheckTx(code=0, gas_wanted=1))

    def on_consensus_lost(self) -> None:
        pass


async def serve_socket(address: str) -> None:
    from node.abci.server import AbciServer

    server = AbciServer(ConstHandler(), address)  # type: ignore[arg-type]
    await server.start()
    await asyncio.Event().wait()


async def serve_grpc(address: str, stubs_path: pathlib.Path) -> None:
    import grpc

    stubs = load_stubs(stubs_path)

    class Servicer(stubs.ABCIServicer):
        async def Echo(self, request, context):  # noqa: N802 -- gRPC method name
            return abci.ResponseEcho(message=request.message)

        async def CheckTx(self, request, context):  # noqa: N802 -- gRPC method name
            return abci.ResponseCheckTx(code=0, gas_wanted=1)

    server = grpc.aio.server()
    stubs.add_ABCIServicer_to_server(Servicer(), server)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


async def load_socket(path: str, calls: int, inflight: int) -> float:
    reader, writer = await asyncio.open_unix_connection(path)
    pair = (frame(abci.Request(check_tx=abci.RequestCheckTx(tx=TX)).SerializeToString())
            + frame(abci.Request(flush=abci.RequestFlush()).SerializeToString()))
    sent = answered = 0
    buf = bytearray()
    t0 = time.perf_counter()
    while answered < 2 * calls:
        while sent < calls and sent - answered // 2 < inflight:
            writer.write(pair)
            sent += 1
        await writer.drain()
        buf += await reader.read(1 << 16)
        frames, used = decode_frames(buf)
        del buf[:used]
        answered += len(frames)
    writer.close()
    return time.perf_counter() - t0


async def load_grpc(address: str, stubs_path: pathlib.Path, calls: int, inflight: int) -> float:
    import grpc

    stubs = load_stubs(stubs_path)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = stubs.ABCIStub(channel)
        await stub.Echo(abci.RequestEcho(message="ready"), wait_for_ready=True)
        req = abci.RequestCheckTx(tx=TX)

        async def worker(n: int) -> None:
            for _ in range(n):
                await stub.CheckTx(req)

        t0 = time.perf_counter()
        share = [calls // inflight + (1 if i < calls % inflight else 0) for i in range(inflight)]
        await asyncio.gather(*(worker(n) for n in share))
        return time.perf_counter() - t0


def measure(kind: str, work: pathlib.Path, stubs_path: pathlib.Path, calls: int, inflight: int, port: int) -> dict:
    address = f"unix://{work / 'abci.sock'}" if kind == "socket" else f"127.0.0.1:{port}"
    cmd = [sys.executable, __file__, "--serve", kind, "--address", address, "--stubs", str(stubs_path)]
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 20
        if kind == "socket":
            while not (work / "abci.sock").exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("socket server did not start")
                time.sleep(0.05)
            warm = asyncio.run(load_socket(str(work / "abci.sock"), 500, inflight))
            c0 = cpu_seconds(proc.pid)
            wall = asyncio.run(load_socket(str(work / "abci.sock"), calls, inflight))
        else:
            warm = asyncio.run(load_grpc(address, stubs_path, 500, inflight))
            c0 = cpu_seconds(proc.pid)
            wall = asyncio.run(load_grpc(address, stubs_path, calls, inflight))
        cpu = cpu_seconds(proc.pid) - c0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    del warm
    return {"cpu_us": 1e6 * cpu / calls, "wall_us": 1e6 * wall / calls}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--inflight", type=int, default=8)
    ap.add_argument("--port", type=int, default=29555)
    ap.add_argument("--serve", choices=("socket", "grpc"))
    ap.add_argument("--address")
    ap.add_argument("--stubs")
    ns = ap.parse_args()
    if ns.serve == "socket":
        asyncio.run(serve_socket(ns.address))
        return
    if ns.serve == "grpc":
        asyncio.run(serve_grpc(ns.address, pathlib.Path(ns.stubs)))
        return
    import grpc

    with tempfile.TemporaryDirectory(prefix="perpd-transport-") as tmp:
        work = pathlib.Path(tmp)
        stubs_path = generate_grpc_stubs(work)
        res = {kind: measure(kind, work, stubs_path, ns.calls, ns.inflight, ns.port) for kind in ("socket", "grpc")}
    print(f"python {sys.version.split()[0]}, grpcio {grpc.__version__}, {os.cpu_count()} cores; "
          f"{ns.calls} CheckTx of {len(TX)} B, {ns.inflight} in flight, constant answers (no app)")
    for kind, r in res.items():
        print(f"{kind:6s} server CPU {r['cpu_us']:6.1f} us per CheckTx   (wall {r['wall_us']:6.1f} us per call, "
              f"client included)")
    print(f"ratio grpc/socket server CPU: {res['grpc']['cpu_us'] / res['socket']['cpu_us']:.1f}x")


if __name__ == "__main__":
    main()
