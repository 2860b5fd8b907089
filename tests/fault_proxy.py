"""An HTTP proxy that injects the faults an API client must survive: 429 with Retry-After, 500, a
dropped connection and a stalled one.

    python tests/fault_proxy.py --upstream http://127.0.0.1:PORT --port 0 --rate 0.2 --faults 429,drop

Each request, with probability --rate (from a seeded generator), gets one fault drawn uniformly from
--faults; the others are forwarded to --upstream and the response relayed. GET /__proxy_stats counts
both. Once bound it prints one line, `listening on http://HOST:PORT/v1`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from fake_openai_server import (
    MAX_HEADER_BYTES,
    HTTPError,
    Request,
    error_body,
    read_request,
    render_response,
)

FAULTS = ("429", "500", "drop", "stall")
# hop-by-hop headers describe one connection, so they are not relayed; the lengths are recomputed
NOT_RELAYED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "te",
               "trailer", "upgrade"}


@dataclass
class Upstream:
    """Idle keep-alive connections to the upstream, reused so that 64 concurrent clients do not cost a
    TCP handshake per request."""

    host: str
    port: int
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    async def forward(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [f"{name}: {value}" for name, value in request.headers.items() if name not in NOT_RELAYED]
        head = [f"{request.method} {request.path} HTTP/1.1", f"Host: {self.host}:{self.port}", *headers,
                f"Content-Length: {len(request.body)}"]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body
        # a pooled connection may have been closed by the upstream while idle; only a fresh one failing is an error
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, message)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES)
        try:
            return await self._exchange(reader, writer, message)
        except BaseException:
            writer.close()
            raise

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        message: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        writer.write(message)
        await writer.drain()
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:] if line)]
        lowered = {name.lower(): value.lower() for name, value in headers}
        if "chunked" in lowered.get("transfer-encoding", ""):
            body = await self._read_chunked(reader)
        elif "content-length" in lowered:
            body = await reader.readexactly(int(lowered["content-length"]))
        else:  # the body runs to the end of the connection
            body = await reader.read()
            lowered["connection"] = "close"
        if lowered.get("connection") == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, [(name, value) for name, value in headers if name.lower() not in NOT_RELAYED], body

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, which we do not relay
            pass
        return b"".join(chunks)


class FaultProxy:
    def __init__(self, upstream: Upstream, rate: float, faults: list[str], seed: int, retry_after: str,
                 stall_seconds: float) -> None:
        self.upstream = upstream
        self.rate = rate
        self.faults = faults
        self.random = random.Random(seed)
        self.retry_after = retry_after
        self.stall_seconds = stall_seconds
        self.forwarded = 0
        self.injected = {fault: 0 for fault in FAULTS}

    def draw(self) -> str | None:
        # both numbers are drawn every time, so that request k's roll depends only on the seed and k: with one
        # seed, a higher --rate faults a superset of the same requests
        roll, fault = self.random.random(), self.random.choice(self.faults)
        return fault if roll < self.rate else None

    async def answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must end."""
        if request.path == "/__proxy_stats":
            body = json.dumps({"forwarded": self.forwarded, "injected": self.injected}).encode()
            writer.write(render_response(200, body, request.keep_alive))
            return request.keep_alive
        fault = self.draw()
        if fault is not None:
            self.injected[fault] += 1
        if fault == "429":
            body = error_body("Rate limit reached (injected by fault_proxy)", "rate_limit_exceeded")
            writer.write(render_response(429, body, request.keep_alive, {"Retry-After": self.retry_after}))
            return request.keep_alive
        if fault == "500":
            body = error_body("The server had an error while processing your request (injected by fault_proxy)", "server_error")
            writer.write(render_response(500, body, request.keep_alive))
            return request.keep_alive
        if fault == "drop":
            # linger 0 makes close() send RST, which the client sees as a connection reset
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "stall":
            await asyncio.sleep(self.stall_seconds)
            return False
        try:
            status, headers, body = await self.upstream.forward(request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            body = error_body(f"fault_proxy could not reach the upstream: {error!r}", "server_error")
            writer.write(render_response(502, body, False))
            return False
        self.forwarded += 1
        head = [f"HTTP/1.1 {status} {status_phrase(status)}", *(f"{name}: {value}" for name, value in headers),
                f"Content-Length: {len(body)}"]
        if not request.keep_alive:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return request.keep_alive

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await read_request(reader)
                except HTTPError as error:
                    writer.write(render_response(error.status, error_body(str(error)), False))
                    await writer.drain()
                    return
                if request is None or not await self.answer(request, writer):
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


async def serve(args: argparse.Namespace) -> None:
    upstream_url = urlsplit(args.upstream)
    upstream = Upstream(upstream_url.hostname or "127.0.0.1", upstream_url.port or 80)
    proxy = FaultProxy(upstream, args.rate, args.faults, args.seed, args.retry_after, args.stall_seconds)
    listener = await asyncio.start_server(proxy.handle, args.host, args.port, limit=MAX_HEADER_BYTES, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    print(f"listening on http://{args.host}:{port}/v1", flush=True)
    async with listener:
        await listener.serve_forever()


def fault_list(text: str) -> list[str]:
    faults = [fault.strip() for fault in text.split(",") if fault.strip()]
    unknown = set(faults) - set(FAULTS)
    if not faults or unknown:
        raise argparse.ArgumentTypeError(f"faults are a comma-separated subset of {','.join(FAULTS)}, got {text!r}")
    return faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="the server to forward to, e.g. http://127.0.0.1:8000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed once bound)")
    parser.add_argument("--rate", type=float, default=0.2, help="probability that a request gets a fault")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", type=fault_list, default=list(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--retry-after", default="1", help="Retry-After header value on injected 429s (seconds)")
    parser.add_argument("--stall-seconds", type=float, default=30.0, help="how long a stalled request hangs before the close")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
