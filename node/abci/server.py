"""Asyncio ABCI 2.0 socket server (TCP or unix socket).

CometBFT opens four connections (query, snapshot, mempool, consensus). Each
is served by one coroutine that reads whatever bytes arrived, cuts complete
frames, answers every request in order and writes the answers back in one
write. All app work runs synchronously inside the event loop, so there is one
logical lock across connections and no ``await`` ever splits a state change.

A failure inside the app that is not an expected ``AppError`` (a bug or an
invariant violation) is fatal: we answer ``ResponseException`` (CometBFT
stops) and stop serving, with exit code 1. Never limp on with divergent state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib

from google.protobuf.message import DecodeError
from perpchain.v1 import abci_wire_pb2
from tendermint.abci import types_pb2 as abci

from app.errors import ERR_BAD_QUERY_PATH

from node.abci.framing import FramingError, decode_frames, frame
from node.abci.handler import AbciHandler

log = logging.getLogger("perpd.abci")

READ_CHUNK = 1 << 16


def _answer_undecodable_query(payload: bytes) -> abci.Response | None:
    """A ResponseQuery error for a Query whose path is not UTF-8; None if ``payload`` is not such a Query.

    CometBFT's RPC forwards ``abci_query?path=0x..`` bytes unchecked. Answering ResponseException would stop
    CometBFT (it treats any exception answer as fatal), so one anonymous HTTP request could take a node down.
    """
    wire = abci_wire_pb2.WireRequest()
    try:
        wire.ParseFromString(payload)
    except DecodeError:
        return None
    if not wire.HasField("query"):
        return None
    err = ERR_BAD_QUERY_PATH
    return abci.Response(query=abci.ResponseQuery(code=err.code, codespace=err.codespace,
                                                  log=f"{err.name}: query path is not UTF-8 text"))


class AbciServer:
    def __init__(self, handler: AbciHandler, address: str) -> None:
        self.handler = handler
        self.address = address
        self._server: asyncio.base_events.Server | None = None
        self._open = 0
        self.fatal: BaseException | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        if self.address.startswith("unix://"):
            path = self.address[len("unix://") :]
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)
            self._server = await asyncio.start_unix_server(self._serve_conn, path=path)
        elif self.address.startswith("tcp://"):
            host, port = self.address[len("tcp://") :].rsplit(":", 1)
            self._server = await asyncio.start_server(self._serve_conn, host=host, port=int(port))
        else:
            raise ValueError(f"ABCI address must be tcp://host:port or unix:///path, got {self.address!r}")
        log.info("abci: listening on %s", self.address)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._stopped.set()

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        buf = bytearray()
        try:
            while not self._stopped.is_set():
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                buf += data
                frames, used = decode_frames(buf)
                del buf[:used]
                if not frames:
                    continue
                out = bytearray()
                for payload in frames:
                    resp = self._answer(payload)
                    out += frame(resp.SerializeToString())
                    if self.fatal is not None:
                        break
                writer.write(out)
                await writer.drain()
                if self.fatal is not None:
                    self.stop()
                    break
        except FramingError as e:
            log.error("abci: framing error, closing connection: %s", e)
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            self._open -= 1
            writer.close()
            if self._open == 0 and self.fatal is None:
                log.info("abci: all connections closed; discarding uncommitted state")
                self.handler.on_consensus_lost()

    def _answer(self, payload: bytes) -> abci.Response:
        req = abci.Request()
        try:
            req.ParseFromString(payload)
        except DecodeError as e:
            answer = _answer_undecodable_query(payload)
            if answer is not None:
                return answer
            # Only CometBFT writes the other requests' string fields: this is a bug, and fatal for CometBFT.
            return abci.Response(exception=abci.ResponseException(error=f"undecodable request: {e}"))
        try:
            return self.handler.handle(req)
        except Exception as e:  # noqa: BLE001 -- node/ boundary: any app failure is fatal, by design
            log.critical("abci: fatal error in %s: %r; stopping the node", req.WhichOneof("value"), e, exc_info=True)
            self.fatal = e
            return abci.Response(exception=abci.ResponseException(error=f"fatal: {e!r}"))
