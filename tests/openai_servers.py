"""Start HTTP servers in subprocesses for tests and benchmarks, and always clean them up.

    with fake_openai_server("--latency", "0.2") as server:
        client = openai.OpenAI(base_url=server.url, api_key="x")
    with fake_openai_server() as upstream, fault_proxy(upstream.url, "--rate", "0.2") as proxy:
        ...

`serve` is the general form, e.g. for `transformers serve`, which cannot bind port 0 and print the
port it got: pick one with `free_port()` and wait for the server with `poll_path`.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

TESTS = Path(__file__).resolve().parent
LISTENING = re.compile(r"listening on (?P<url>https?://\S+)")


@dataclass
class Server:
    url: str  # the base URL clients use, e.g. http://127.0.0.1:PORT/v1
    process: subprocess.Popen[str]
    stats_path: str | None = None  # absolute path on the same host, e.g. /stats

    def stats(self) -> dict[str, Any]:
        if self.stats_path is None:
            raise RuntimeError(f"the server at {self.url} has no stats endpoint")
        parts = urlsplit(self.url)
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}{self.stats_path}", timeout=10) as response:
            return json.load(response)


class _Drain:
    """Reads a pipe to its end in a thread: a server that logs every request would otherwise block once
    the pipe buffer fills. Keeps the tail for error messages and the first line matching a pattern."""

    def __init__(self, stream: IO[str], pattern: re.Pattern[str] | None) -> None:
        self.tail: deque[str] = deque(maxlen=200)
        self.pattern = pattern
        self.match: re.Match[str] | None = None
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream: IO[str]) -> None:
        for line in stream:
            self.tail.append(line)
            if self.match is None and self.pattern is not None:
                self.match = self.pattern.search(line)

    def text(self) -> str:
        return "".join(self.tail)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now, for servers that cannot bind port 0 (racy, but fine on a test machine)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _poll(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serve(command: list[str], ready_pattern: str | re.Pattern[str] | None = LISTENING, timeout: float = 30.0, *,
          url: str | None = None, poll_path: str | None = None, stats_path: str | None = None,
          env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run `command` until the block exits. The server is ready once a line of its stdout or stderr
    matches `ready_pattern` (whose `url` group, if any, is the base URL; else give `url`) and, with
    `poll_path`, once GET url + poll_path answers 200. Raises with the server's output if it exits or
    times out before that."""
    pattern = re.compile(ready_pattern) if isinstance(ready_pattern, str) else ready_pattern
    if pattern is None and poll_path is None:
        raise ValueError("give a ready_pattern or a poll_path, or the server is never known to be ready")
    if url is None and (pattern is None or "url" not in pattern.groupindex):
        raise ValueError("give url=, or a ready_pattern with a `url` group that captures it")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, bufsize=1, env=env)
    assert process.stdout is not None and process.stderr is not None
    drains = (_Drain(process.stdout, pattern), _Drain(process.stderr, pattern))
    deadline = time.monotonic() + timeout

    def fail(reason: str) -> RuntimeError:
        _stop(process)
        for drain in drains:
            drain.thread.join(timeout=1)
        return RuntimeError(f"{reason}: {' '.join(command)}\n--- stdout ---\n{drains[0].text()}"
                            f"--- stderr ---\n{drains[1].text()}")

    try:
        while pattern is not None:
            match = next((drain.match for drain in drains if drain.match), None)
            if match is not None:
                url = url or match["url"]
                break
            if process.poll() is not None:
                raise fail(f"server exited with status {process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise fail(f"server not ready after {timeout:g} s")
            time.sleep(0.02)
        assert url is not None
        while poll_path is not None and not _poll(url.rstrip("/") + poll_path):
            if process.poll() is not None:
                raise fail(f"server exited with status {process.returncode} before {poll_path} answered")
            if time.monotonic() > deadline:
                raise fail(f"{url.rstrip('/') + poll_path} did not answer 200 within {timeout:g} s")
            time.sleep(0.2)
        yield Server(url, process, stats_path)
    finally:
        _stop(process)
        for drain in drains:
            drain.thread.join(timeout=5)
        process.stdout.close()
        process.stderr.close()


@contextmanager
def fake_openai_server(*flags: str) -> Iterator[Server]:
    """tests/fake_openai_server.py on a free port; flags as on its command line."""
    command = [sys.executable, str(TESTS / "fake_openai_server.py"), "--port", "0", *flags]
    with serve(command, stats_path="/stats") as server:
        yield server


@contextmanager
def fault_proxy(upstream_url: str, *flags: str) -> Iterator[Server]:
    """tests/fault_proxy.py in front of `upstream_url` on a free port; flags as on its command line."""
    command = [sys.executable, str(TESTS / "fault_proxy.py"), "--upstream", upstream_url, "--port", "0", *flags]
    with serve(command, stats_path="/__proxy_stats") as server:
        yield server
