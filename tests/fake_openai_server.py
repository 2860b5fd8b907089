"""A stand-in OpenAI-compatible server for tests and benchmarks of the `openai:` backend.

    python tests/fake_openai_server.py --port 0 --latency 0.2

Answers GET /v1/models, POST /v1/chat/completions and POST /v1/completions (including echo + logprobs,
which log-likelihood scoring relies on) with deterministic text derived from a hash of the request, so
that a test can predict an answer by asking twice and a run is reproducible. GET /stats (outside /v1)
counts requests per path and names the request headers seen. Once bound it prints one line,
`listening on http://HOST:PORT/v1`.

Pure asyncio with hand-rolled HTTP/1.1 (keep-alive, Content-Length bodies): the benchmark drives it at
hundreds of requests per second on two cores, where the server's CPU must stay out of the harness's way.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import selectors
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

# Plain lower-case words without punctuation, so that one word is one `\s*\S+` token and one "token".
VOCAB = (
    "the of and to in is that it for was on are as with be at by this had not but from or have an they "
    "which one you were all we when there can more if out so said what up its about into than them only "
    "other new some could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down should because "
    "each just those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year off come "
    "since against go came right used take three states himself few house use during without again place "
    "around however home small found thought went say part once general high upon school every don does got "
    "united left number course war until always away something fact though water less public put think "
    "almost hand enough far took head yet government system better set told nothing night end why called "
    "didn eyes find going look asked later knew point next program city business give group toward young "
    "let room president side social given present several order national possible rather second face per"
).split()

TOKEN = re.compile(r"\s*\S+|\s+")  # the second branch catches only trailing whitespace
MAX_HEADER_BYTES = 64 * 1024


class HTTPError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    keep_alive: bool


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a keep-alive connection, or None once the client has closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise HTTPError(431, "request headers too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise HTTPError(400, f"malformed request line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        raise HTTPError(411, "send the body with Content-Length; chunked request bodies are not supported")
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise HTTPError(400, f"bad Content-Length {headers['content-length']!r}") from None
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return Request(method, target.split("?", 1)[0], headers, body, keep_alive)


def render_response(status: int, body: bytes, keep_alive: bool, extra_headers: dict[str, str] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def error_body(message: str, error_type: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": error_type, "param": None, "code": None}}).encode()


def _digest(length: int, *parts: Any) -> bytes:
    # shake_256 gives as many bytes as there are words to pick, from one hash of the whole request key
    return hashlib.shake_256(json.dumps(parts, sort_keys=True).encode()).digest(length)


def _int_hash(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")


def sampled_words(prompt_key: Any, temperature: float, seed: int | None, index: int, salt: str = "") -> list[str]:
    """5..40 words that depend only on the prompt and on how this choice was sampled. Greedy decoding
    (temperature 0) has one answer, so seed and choice index are ignored there; with a seed, choice i is
    drawn with seed + i, which is what lets a client ask for choices one at a time or together."""
    if temperature == 0:
        key: tuple[Any, ...] = (prompt_key, 0.0, salt)
    elif seed is not None:
        key = (prompt_key, temperature, seed + index, salt)
    else:
        key = (prompt_key, temperature, None, index, salt)
    digest = _digest(41, *key)
    return [VOCAB[b % len(VOCAB)] for b in digest[1:1 + 5 + digest[0] % 36]]


def finish(text: str, token_ends: list[int], max_tokens: int | None, stops: list[str]) -> tuple[str, str]:
    """Cut generated `text` (whose tokens end at `token_ends`) where a model would have stopped: at the
    first stop string if it is complete within max_tokens tokens, else after max_tokens tokens."""
    limit = len(text) if max_tokens is None or max_tokens >= len(token_ends) else (
        token_ends[max_tokens - 1] if max_tokens > 0 else 0)
    hits = [(position, stop) for stop in stops if stop and (position := text.find(stop)) >= 0]
    if hits:
        position, stop = min(hits)
        if position + len(stop) <= limit:
            return text[:position], "stop"
    return text[:limit], ("stop" if limit == len(text) else "length")


def _ends(pieces: list[str]) -> list[int]:
    ends: list[int] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    return ends


def token_logprob(before: str, token: str) -> tuple[float, str, float]:
    """(logprob of `token` after `before`, the most likely token there, its logprob). About half of the
    time the actual token is the most likely one, so log-likelihood tasks see both greedy and not."""
    number = _int_hash(before, token)
    logprob = -(number % 1000) / 100 - 0.01
    if (number >> 20) & 1:
        return logprob, token, logprob
    word = token.lstrip()
    other = VOCAB[(number >> 24) % len(VOCAB)]
    if other == word:
        other = VOCAB[((number >> 24) + 1) % len(VOCAB)]
    return logprob, token[:len(token) - len(word)] + other, logprob / 2  # half of a negative is higher


def logprobs_block(text: str, tokens: list[str], start: int, first_unscored: bool) -> dict[str, Any]:
    """The legacy-completions logprobs object for `tokens`, which begin at character `start` of `text`."""
    offsets = _ends(tokens)
    offsets = [start + end - len(token) for end, token in zip(offsets, tokens)]
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    for position, (token, offset) in enumerate(zip(tokens, offsets)):
        if position == 0 and first_unscored:
            token_logprobs.append(None)  # nothing precedes the first prompt token to condition it on
            top_logprobs.append(None)
            continue
        logprob, top, top_logprob = token_logprob(text[:offset], token)
        token_logprobs.append(logprob)
        top_logprobs.append({top: top_logprob})
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": offsets}


@dataclass
class FakeModel:
    model: str
    root: str
    ignore_n: bool
    reasoning: bool
    logprobs: bool
    stats: dict[str, int] = field(default_factory=dict)
    authorization_seen: bool = False
    header_names_seen: set[str] = field(default_factory=set)
    served: int = 0

    def _common(self, body: dict[str, Any]) -> tuple[int, float, int | None, int | None, list[str]]:
        n = 1 if self.ignore_n else body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            raise HTTPError(400, f"n must be a positive integer, got {n!r}")
        temperature = body.get("temperature")
        temperature = 1.0 if temperature is None else float(temperature)  # OpenAI's default
        seed = body.get("seed")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 0):
            raise HTTPError(400, f"max_tokens must be a non-negative integer, got {max_tokens!r}")
        stops = body.get("stop") or []
        return n, temperature, seed, max_tokens, [stops] if isinstance(stops, str) else list(stops)

    def _envelope(self, kind: str, choices: list[dict[str, Any]], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        self.served += 1
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        return {"id": f"{prefix}-{self.served}", "object": kind, "created": int(time.time()), "model": self.model,
                "choices": choices, "system_fingerprint": None,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                            "owned_by": "evalkit-fake", "root": self.root}]}

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise HTTPError(400, "messages must be a non-empty list of message objects")
        n, temperature, seed, max_tokens, stops = self._common(body)
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        for index in range(n):
            words = sampled_words(messages, temperature, seed, index)
            pieces = [words[0]] + [" " + word for word in words[1:]]
            text, reason = finish("".join(pieces), _ends(pieces), max_tokens, stops)
            completion_tokens += len(text.split())
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if self.reasoning:
                # reasoning is billed like DeepSeek's API does, but kept outside max_tokens so that
                # truncation tests only have to reason about the content
                thought = "Let me think. " + " ".join(sampled_words(messages, temperature, seed, index, "reasoning"))
                message["reasoning_content"] = thought
                completion_tokens += len(thought.split())
            choices.append({"index": index, "message": message, "finish_reason": reason, "logprobs": None})
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        return self._envelope("chat.completion", choices, prompt_tokens, completion_tokens)

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise HTTPError(400, "prompt must be a string")
        n, temperature, seed, max_tokens, stops = self._common(body)
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            max_tokens = 16  # the legacy endpoint's default
        top_k = body.get("logprobs") if self.logprobs else None
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
            raise HTTPError(400, f"logprobs must be a non-negative integer, got {top_k!r}")
        echo = bool(body.get("echo")) and self.logprobs
        prompt_pieces = TOKEN.findall(prompt)
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        for index in range(n):
            pieces = [" " + word for word in sampled_words(prompt, temperature, seed, index)]
            generated, reason = finish("".join(pieces), _ends(pieces), max_tokens, stops)
            generated_pieces = TOKEN.findall(generated)
            completion_tokens += len(generated_pieces)
            text = prompt + generated if echo else generated
            logprobs = None
            if top_k is not None:
                # prompt and generation are tokenized apart, as a real server tokenizes the prompt once
                tokens = prompt_pieces + generated_pieces if echo else generated_pieces
                logprobs = logprobs_block(prompt + generated, tokens, 0 if echo else len(prompt), first_unscored=echo)
            choices.append({"index": index, "text": text, "finish_reason": reason, "logprobs": logprobs})
        return self._envelope("text_completion", choices, len(prompt.split()), completion_tokens)


class FakeServer:
    def __init__(self, model: FakeModel, latency: float, require_key: str | None, latency_paths: frozenset[str]) -> None:
        self.model = model
        self.latency = latency
        self.latency_paths = latency_paths
        self.expected_authorization = f"Bearer {require_key}" if require_key is not None else None

    def route(self, request: Request) -> tuple[int, dict[str, Any]]:
        model = self.model
        model.stats[request.path] = model.stats.get(request.path, 0) + 1
        authorization = request.headers.get("authorization")
        model.authorization_seen |= authorization is not None
        if request.path == "/stats":  # a test hook, not part of the API, so it needs no key
            return 200, {"requests": model.stats, "authorization_seen": model.authorization_seen,
                         "header_names": sorted(model.header_names_seen)}
        model.header_names_seen.update(request.headers)
        if self.expected_authorization is not None and authorization != self.expected_authorization:
            raise HTTPError(401, "invalid api key")
        if request.method == "GET" and request.path == "/v1/models":
            return 200, model.models()
        handler = {"/v1/chat/completions": model.chat, "/v1/completions": model.complete}.get(request.path)
        if handler is None or request.method != "POST":
            raise HTTPError(404, f"no route {request.method} {request.path}")
        try:
            body = json.loads(request.body)
        except ValueError as error:
            raise HTTPError(400, f"request body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "request body must be a JSON object")
        try:
            return 200, handler(body)
        except (TypeError, ValueError) as error:  # a field of the wrong type, e.g. "seed": "1"
            raise HTTPError(400, f"invalid request: {error}") from None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request: Request | None = None
                try:
                    request = await read_request(reader)
                    if request is None:
                        return
                    # The latency is the server's whole time on a request, its own work included.
                    due = asyncio.get_running_loop().time() + self.latency
                    status, payload = self.route(request)
                    keep_alive, body = request.keep_alive, json.dumps(payload).encode()
                except HTTPError as error:
                    # a request we could not parse leaves the stream at an unknown position
                    keep_alive = request is not None and request.keep_alive
                    status, body = error.status, error_body(str(error), error.error_type)
                if request is not None and self.latency and request.path in self.latency_paths:
                    await asyncio.sleep(due - asyncio.get_running_loop().time())
                writer.write(render_response(status, body, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away mid-request; nothing to answer
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    model = FakeModel(args.model, args.root, args.ignore_n, args.reasoning, not args.no_logprobs)
    server = FakeServer(model, args.latency, args.require_key, frozenset(args.latency_on.split(",")))
    listener = await asyncio.start_server(server.handle, args.host, args.port, limit=MAX_HEADER_BYTES, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    print(f"listening on http://{args.host}:{port}/v1", flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed once bound)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds a generation request takes")
    parser.add_argument("--latency-on", default="/v1/chat/completions,/v1/completions", metavar="PATHS",
                        help="comma-separated paths that take --latency; the others (models, stats) answer at once")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--root", default="/fake/checkpoint", help="the `root` GET /v1/models reports")
    parser.add_argument("--ignore-n", action="store_true", help="answer one choice whatever `n` asks for")
    parser.add_argument("--reasoning", action="store_true", help="add reasoning_content to chat messages")
    parser.add_argument("--no-logprobs", action="store_true", help="ignore echo and logprobs, like servers without them")
    parser.add_argument("--require-key", metavar="KEY", help="answer 401 unless `Authorization: Bearer KEY`")
    args = parser.parse_args()
    # select() takes its timeout in microseconds; epoll rounds it up to the next millisecond, which
    # made a 200 ms latency 200.7 ms on average.
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as runner:
        try:
            runner.run(serve(args))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
