"""How close evalkit's `openai:` backend comes to the throughput an API server allows, and what it costs.

Sends --requests distinct chat requests through one `backend.generate` call to the fake OpenAI server
(tests/fake_openai_server.py), which answers every request after exactly --latency seconds. With
--concurrency requests in flight the server cannot be faster than concurrency / latency requests per
second: that is the baseline, named `ideal`, and the ratio to it says how much of the server's capacity
the backend's scheduling, HTTP client and parsing lose (target >= 0.95). Two reference rows bound what
is reachable: `slot limit`, since each of the concurrency slots serves its ceil(requests/concurrency)
requests one after another, and a bare asyncio HTTP/1.1 client on keep-alive connections, which shows
what this machine and server allow with no client library at all. Harness CPU per request is this
process's user + system time over the timed call; the server's is reported beside it, not included.

    python benchmarks/http_backend.py --requests 2000 --concurrency 64 --latency 0.2
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from evalkit.backend import GenerateRequest, load_backend

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the server launchers live with the tests, which are not a package
from openai_servers import fake_openai_server

KEY_ENV, KEY = "EVALKIT_BENCH_KEY", "bench-key"


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def chat_requests(count: int, label: str) -> list[GenerateRequest]:
    return [GenerateRequest(prompt=None, messages=({"role": "user", "content": f"{label} {i}"},), max_tokens=64,
                            temperature=0.0) for i in range(count)]


def bare_client_seconds(url: str, requests: int, concurrency: int) -> float:
    """Wall time of as many chat requests through a bare asyncio HTTP/1.1 client, one keep-alive
    connection per slot: the reference for what no client library costs."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/chat/completions"
    pending = iter(range(requests))

    async def slot() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        for i in pending:
            body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": f"bare {i}"}],
                               "max_tokens": 64, "temperature": 0.0}).encode()
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {KEY}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the fake server answered {head.splitlines()[0]!r}")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
        writer.close()

    async def all_slots() -> None:
        await asyncio.gather(*(slot() for _ in range(concurrency)))

    started = time.perf_counter()
    asyncio.run(all_slots())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the fake server takes per request")
    parser.add_argument("--json", metavar="PATH", help="write the figures here")
    args = parser.parse_args()

    os.environ[KEY_ENV] = KEY  # the server checks it, so a backend that drops the key fails loudly
    with fake_openai_server("--latency", str(args.latency), "--require-key", KEY) as server:
        backend = load_backend("openai:fake-model", base_url=server.url, max_concurrency=args.concurrency,
                               api_key_env=KEY_ENV)
        # one full round first, so that the timed call starts with its connections open
        backend.generate(chat_requests(min(args.concurrency, args.requests), "warm-up"))
        requests = chat_requests(args.requests, "question")
        gc.freeze()  # as `evalkit run` does once its plan is built
        server_cpu_before, cpu_before = process_cpu_seconds(server.process.pid), own_cpu_seconds()
        started = time.perf_counter()
        results = backend.generate(requests)
        wall_s = time.perf_counter() - started
        cpu_s = own_cpu_seconds() - cpu_before
        server_cpu_after = process_cpu_seconds(server.process.pid)
        bare_s = bare_client_seconds(server.url, args.requests, args.concurrency)

    finish_reasons = Counter(completions[0].finish_reason for completions in results)
    server_cpu_s = None if server_cpu_before is None or server_cpu_after is None else server_cpu_after - server_cpu_before
    ideal_rps = args.concurrency / args.latency
    rps = args.requests / wall_s
    figures = {
        "requests": args.requests, "concurrency": args.concurrency, "latency_s": args.latency, "wall_s": wall_s,
        "requests_per_s": rps, "ideal_requests_per_s": ideal_rps, "ratio_to_ideal": rps / ideal_rps,
        "harness_cpu_ms_per_request": 1e3 * cpu_s / args.requests,
        "server_cpu_ms_per_request": None if server_cpu_s is None else 1e3 * server_cpu_s / args.requests,
        "finish_reasons": dict(finish_reasons),
        "bare_client_requests_per_s": args.requests / bare_s,
        "slot_limit_requests_per_s": args.requests / (math.ceil(args.requests / args.concurrency) * args.latency),
    }

    print(f"openai: backend -> fake server: {args.requests:,} chat requests, concurrency {args.concurrency}, "
          f"server latency {args.latency * 1e3:g} ms")
    print(f"{'':30}{'wall s':>9}{'req/s':>9}{'x ideal':>9}")
    slot_limit_s = math.ceil(args.requests / args.concurrency) * args.latency
    for label, seconds in (("ideal (baseline)", args.requests / ideal_rps), ("slot limit", slot_limit_s),
                           ("bare asyncio client", bare_s), ("evalkit openai: backend", wall_s)):
        print(f"{label:30}{seconds:9.2f}{args.requests / seconds:9.1f}{args.requests / seconds / ideal_rps:9.3f}")
    print(f"harness CPU: {figures['harness_cpu_ms_per_request']:.3f} ms/request"
          + ("" if server_cpu_s is None else f"; server CPU (excluded): {figures['server_cpu_ms_per_request']:.3f} ms/request"))
    print("finish reasons: " + ", ".join(f"{reason} {count:,}" for reason, count in sorted(finish_reasons.items())))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
