"""`openai:MODEL` — a model served behind an OpenAI-compatible API (vLLM, SGLang, transformers serve, a
hosted API), reached with the official `openai` client.

Requests run on one asyncio loop in a background thread, at most `max_concurrency` in flight (as
many workers, each request built a loop turn after the one before), spread over one or more base
URLs by least outstanding requests. 429, 5xx, dropped connections and timeouts are retried with
exponential backoff and full jitter (at least the server's Retry-After); an endpoint that keeps
failing is taken out for a cool-down and its requests go to the others. Any other 4xx stops the run
with the server's message. A request that still fails after `max_retries` comes back as
a completion with finish_reason "error", which the runner records, does not score, and asks again
when the same command is run again.

Chat prompts go to /v1/chat/completions, raw prompts to /v1/completions (`api=auto`); log-likelihoods
are read from /v1/completions with `echo` and `logprobs`, which is probed before any work starts.
The API key is read from the environment variable named by `api_key_env` and never leaves this
object: not in identity, describe(), logs, or error messages (they are redacted).
"""
from __future__ import annotations

import asyncio
import atexit
import dataclasses
import functools
import logging
import os
import random
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from evalkit.backend import Completion, GenerateRequest, Loglikelihood, LoglikelihoodRequest
from evalkit.errors import BackendError, UserError

from .options import positive_int_option, reject_unknown_options

log = logging.getLogger("evalkit")

KNOWN_OPTIONS = ("base_url", "api_key_env", "max_concurrency", "timeout", "max_retries", "api", "tag")
API_MODES = ("auto", "chat", "completions")
DEFAULT_MAX_CONCURRENCY = 32
DEFAULT_TIMEOUT = 600.0  # seconds for one request: a long chain of thought at a few tokens/s takes minutes
DEFAULT_MAX_RETRIES = 8
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
EJECT_AFTER = 3  # consecutive failures before an endpoint is taken out
EJECT_SECONDS = 5.0  # first cool-down; doubles with each ejection in a row, up to EJECT_CAP
EJECT_CAP = 120.0
SDK_TELEMETRY_HEADERS = ("X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch",
                         "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Async")
# The client adds these to each request unless the request removes them; its retry count is always 0 here.
SDK_PER_REQUEST_HEADERS = ("X-Stainless-Retry-Count", "X-Stainless-Read-Timeout")
PROBE_TEXT = "The capital of France is Paris."
MODEL_LIST_RETRIES = 3  # start-up requests (model listing, probe): a dead server should say so within seconds

T = TypeVar("T")
R = TypeVar("R")


class RequestFailed(Exception):
    """A request that exhausted its retries; `reason` is safe to record (no key), `last` the kind of
    the last failure (429, 5xx, connection, timeout)."""

    def __init__(self, reason: str, last: str):
        super().__init__(reason)
        self.reason = reason
        self.last = last


class RequestRefused(BackendError):
    """The server answered 4xx (not 429): retrying cannot help."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Endpoint:
    url: str
    client: Any
    outstanding: int = 0
    requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "failures": self.failures, "ejections": self.ejections}


class OpenAIBackend:
    """A model behind one or more OpenAI-compatible endpoints serving the same weights."""

    cacheable = True
    # How the model is reached, not what it answers: a run continues unchanged through other endpoints.
    transport_options = frozenset({"base_url", "api_key_env", "max_concurrency", "timeout", "max_retries"})

    def __init__(self, model: str, **options: Any):
        reject_unknown_options(options, KNOWN_OPTIONS, "openai")
        try:
            import openai
        except ImportError:
            raise UserError("the openai: backend needs the openai client: pip install 'evalkit[openai]'") from None
        self._openai = openai
        self.model = model
        urls = options.get("base_url") or os.environ.get("OPENAI_BASE_URL")
        if not urls:
            raise UserError("openai: backend needs a server: pass --base-url URL[,URL...] or set OPENAI_BASE_URL")
        self.base_urls = [url.strip().rstrip("/") for url in str(urls).split(",") if url.strip()]
        for url in self.base_urls:
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise UserError(f"--base-url {url!r} is not an http(s) URL; write e.g. http://localhost:8000/v1")
        self.api_key_env = str(options.get("api_key_env", "OPENAI_API_KEY"))
        # Servers started without --api-key (vLLM, SGLang) accept any key; the client insists on one.
        self._api_key = os.environ.get(self.api_key_env) or "EMPTY"
        self.max_concurrency = positive_int_option(options.get("max_concurrency", DEFAULT_MAX_CONCURRENCY), "openai", "max_concurrency")
        self.max_retries = _non_negative_int(options.get("max_retries", DEFAULT_MAX_RETRIES), "max_retries")
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise UserError(f"openai option timeout={timeout!r} must be a positive number of seconds")
        self.timeout = float(timeout)
        self.api = str(options.get("api", "auto"))
        if self.api not in API_MODES:
            raise UserError(f"openai option api={self.api!r} must be one of {', '.join(API_MODES)}")
        self.tag = options.get("tag")
        self._retries: Counter[str] = Counter()
        self._sent = 0
        self._failed = 0
        self._n_honoured: bool | None = None
        self._request_options = {"headers": {name: openai.Omit() for name in SDK_PER_REQUEST_HEADERS}}
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self._turn = asyncio.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="evalkit-openai", daemon=True)
        self._thread.start()
        # The runner never closes backends: close the connections before the interpreter tears the loop down.
        atexit.register(self.close)
        self._endpoints = self._call(self._open_endpoints())
        self.root = self._call(self._served_root())
        # A tag names the checkpoint instead of the server's root, which may then be unknown.
        checkpoint = f"tag={self.tag}" if self.tag is not None else (f"root={self.root}" if self.root else None)
        self.identity = ";".join([f"openai:{model}", f"api={self.api}", *([checkpoint] if checkpoint else [])])

    # -- the Backend protocol ----------------------------------------------------------------------

    @property
    def supports(self) -> frozenset[str]:
        return frozenset({"generate"} if self._loglikelihood_problem else {"generate", "loglikelihood"})

    @property
    def unsupported_reason(self) -> dict[str, str]:
        problem = self._loglikelihood_problem
        return {"loglikelihood": problem} if problem else {}

    @functools.cached_property
    def _loglikelihood_problem(self) -> str | None:
        """Why the server cannot score log-likelihoods (None: it can), probed once, on first need."""
        problem = self._call(self._probe_loglikelihood())
        if problem:
            log.info("openai: %s cannot score log-likelihoods: %s", self.model, problem)
        return problem

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[Completion]]:
        return self._call(self._map(self._generate_one, requests))

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        return self._call(self._map(self._loglikelihood_one, requests))

    def render(self, request: GenerateRequest) -> dict[str, Any]:
        """What is sent for `request`: which API, the prompt, and the sampling settings."""
        api = self._api_for(request)
        body: dict[str, Any] = {"api": api}
        if api == "chat":
            body["messages"] = self._messages(request)
        else:
            body["prompt"] = request.prompt
        body.update(temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_tokens,
                    seed=request.seed, stop=list(request.stop))
        return body

    def describe(self) -> dict[str, Any]:
        return {
            "scheme": "openai",
            "model": self.model,
            "root": self.root,
            "tag": self.tag,
            "base_urls": [_without_credentials(url) for url in self.base_urls],
            "api_key_env": self.api_key_env,
            "api": self.api,
            "api_rule": {"auto": "chat prompts -> /v1/chat/completions, raw prompts -> /v1/completions",
                         "chat": "every prompt -> /v1/chat/completions (a raw prompt is one user message)",
                         "completions": "raw prompts -> /v1/completions; chat prompts are refused"}[self.api],
            "max_concurrency": self.max_concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def stats(self) -> dict[str, Any]:
        """Counters of this process's requests: what a run reports next to its results."""
        return {
            "requests_sent": self._sent,
            "retries": sum(self._retries.values()),
            "retries_by_reason": dict(sorted(self._retries.items())),
            "failed": self._failed,
            # Learned from the server's replies: True when it returned n choices for n > 1.
            "n_per_request": self._n_honoured,
            "endpoints": {_without_credentials(e.url): e.stats() for e in self._endpoints},
        }

    def cancel(self) -> None:
        """Abandon every request in flight: the generate() and loglikelihood() calls waiting on them
        raise at once (the run is stopping)."""
        def cancel_all() -> None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
        self._loop.call_soon_threadsafe(cancel_all)

    def close(self) -> None:
        atexit.unregister(self.close)
        if self._loop.is_running():
            self._call(_close_clients(self._endpoints))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # -- requests ----------------------------------------------------------------------------------

    def _call(self, coroutine: Awaitable[T]) -> T:
        """Run a coroutine on the backend's loop from any thread (the runner may ask from several)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open_endpoints(self) -> list[Endpoint]:
        # The client's own retries are off: retrying here lets a failed attempt move to another endpoint.
        # Its telemetry headers describe this machine to the server and take a fifth of its CPU per request.
        without_telemetry = {name: self._openai.Omit() for name in SDK_TELEMETRY_HEADERS}
        return [Endpoint(url, self._openai.AsyncOpenAI(base_url=url, api_key=self._api_key, max_retries=0,
                                                       timeout=self.timeout, default_headers=without_telemetry,
                                                       http_client=self._http_client()))
                for url in self.base_urls]

    def _http_client(self) -> Any:
        """The client's aiohttp transport (`openai[aiohttp]`): half the CPU per request of its default
        httpx transport, which at 64 requests in flight is what limits throughput on a small machine."""
        try:
            return self._openai.DefaultAioHttpClient(timeout=self.timeout)
        except (AttributeError, RuntimeError):
            log.info("openai: the aiohttp transport is not installed (pip install 'openai[aiohttp]'); using httpx")
            return None

    async def _served_root(self) -> str | None:
        """The checkpoint behind the model name, as vLLM reports it in /v1/models (`root`): part of the
        identity, so that cached answers of one checkpoint are never served for another of the same name.
        Endpoints that cannot be reached are skipped (the others serve the run), but when none answers it is
        an error rather than a silently different identity."""
        roots, unreachable = set(), []
        for endpoint in self._endpoints:
            url = _without_credentials(endpoint.url)
            try:
                listing = await self._send("/models", pinned=endpoint, retries=min(self.max_retries, MODEL_LIST_RETRIES))
            except RequestRefused as refusal:
                if refusal.status in (401, 403):
                    raise
                log.info("openai: %s has no /models (%s); the identity names only the model", url, refusal.status)
                continue
            except RequestFailed as failure:
                log.warning("openai: cannot list the models at %s (%s)", url, failure.reason)
                unreachable.append(f"{url} ({failure.reason})")
                continue
            entries = listing.get("data") if isinstance(listing, dict) else None
            served = {entry["id"]: entry.get("root") for entry in entries or [] if isinstance(entry, dict) and "id" in entry}
            if served and self.model not in served:
                raise BackendError(f"the server at {url} does not serve model {self.model!r}; "
                                   f"it serves: {', '.join(sorted(served))}")
            roots.add(served.get(self.model))
        if len(unreachable) == len(self._endpoints) and self.tag is None:
            raise BackendError(f"cannot reach the server at {'; '.join(unreachable)} to list its models; start it, "
                               f"fix --base-url, or pass --model-args tag=NAME to name the checkpoint yourself")
        roots.discard(None)
        if len(roots) > 1:
            raise BackendError(f"the endpoints serve different checkpoints as {self.model!r} ({', '.join(sorted(roots))}); "
                               f"give --base-url servers of one model")
        return roots.pop() if roots else None

    def _api_for(self, request: GenerateRequest) -> str:
        if self.api == "completions" or (self.api == "auto" and request.messages is None):
            if request.prompt is None:
                raise UserError("openai option api=completions cannot send a chat prompt (no chat template here); "
                                "use api=auto or api=chat")
            return "completions"
        return "chat"

    @staticmethod
    def _messages(request: GenerateRequest) -> list[dict[str, Any]]:
        """The chat messages sent: the request's, or a raw prompt as one user message (api=chat)."""
        if request.messages is not None:
            return [dict(m) for m in request.messages]
        return [{"role": "user", "content": request.prompt}]

    async def _generate_one(self, request: GenerateRequest) -> list[Completion]:
        if request.n == 1 or self._n_honoured is False:
            return await self._completions_one_by_one(request, request.n)
        try:
            completions = await self._ask(request, request.n, request.seed)
        except RequestFailed as failure:
            return [_failed(failure)] * request.n
        if len(completions) == request.n:
            self._n_honoured = True
            return completions
        if self._n_honoured is None:
            log.info("openai: the server returned %d choice(s) for n=%d; asking one request per sample index",
                     len(completions), request.n)
        self._n_honoured = False
        rest = await self._completions_one_by_one(dataclasses.replace(request, n=request.n - 1, seed=_shift(request.seed, 1)),
                                                  request.n - 1)
        return completions[:1] + rest

    async def _completions_one_by_one(self, request: GenerateRequest, n: int) -> list[Completion]:
        if n == 1:  # the common case, without a task per completion
            return [await self._one_completion(request, request.seed)]
        return list(await asyncio.gather(*(self._one_completion(request, _shift(request.seed, j)) for j in range(n))))

    async def _one_completion(self, request: GenerateRequest, seed: int | None) -> Completion:
        try:
            return (await self._ask(request, 1, seed))[0]
        except RequestFailed as failure:
            return _failed(failure)

    async def _ask(self, request: GenerateRequest, n: int, seed: int | None) -> list[Completion]:
        api = self._api_for(request)
        common: dict[str, Any] = {"model": self.model, "temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.top_p < 1.0:
            common["top_p"] = request.top_p
        if n > 1:
            common["n"] = n
        if seed is not None:
            common["seed"] = seed
        if request.stop:
            common["stop"] = list(request.stop)
        if api == "chat":
            reply = await self._post("/chat/completions", {**common, "messages": self._messages(request)})
            texts = [(_field(c, "message").get("content") or "", _reasoning(_field(c, "message")), c.get("finish_reason"))
                     for c in _choices(reply)]
        else:
            reply = await self._post("/completions", {**common, "prompt": request.prompt})
            texts = [(c.get("text") or "", None, c.get("finish_reason")) for c in _choices(reply)]
        if not texts:
            raise BackendError(f"the server returned no choices for a request to {self.model!r}; it is broken")
        usage = reply.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        # Servers report one completion-token total for all n choices; each choice gets its share.
        total = usage.get("completion_tokens")
        completion_tokens = round(total / len(texts)) if total is not None else None
        return [Completion(text, "length" if finish == "length" else "stop", reasoning, prompt_tokens, completion_tokens)
                for text, reasoning, finish in texts]

    async def _loglikelihood_one(self, request: LoglikelihoodRequest) -> Loglikelihood:
        if not request.continuation:
            raise BackendError("loglikelihood request has an empty continuation; the task must give a non-empty one")
        text = request.context + request.continuation
        try:
            reply = await self._post("/completions", self._echo_body(text))
        except RequestFailed as failure:
            return Loglikelihood(float("nan"), False, error=failure.reason)
        choices = _choices(reply)
        return _continuation_loglikelihood(choices[0].get("logprobs") if choices else None, len(request.context), len(text))

    def _echo_body(self, text: str) -> dict[str, Any]:
        # max_tokens=1: servers that refuse max_tokens=0 with echo accept it; the generated token is skipped.
        return {"model": self.model, "prompt": text, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0.0}

    async def _probe_loglikelihood(self) -> str | None:
        """Why this server cannot score log-likelihoods, or None when it can (one tiny echo request)."""
        try:
            reply = await self._send("/completions", self._echo_body(PROBE_TEXT), retries=min(self.max_retries, MODEL_LIST_RETRIES))
        except RequestFailed as failure:
            if failure.last == "5xx":  # some servers crash on echo: that is a missing feature, not a dead server
                return f"/v1/completions with echo and logprobs fails ({failure.reason})"
            raise BackendError(f"openai: the server does not answer ({failure.reason}); start it or fix --base-url") from None
        except RequestRefused as refusal:
            if refusal.status in (401, 403):
                raise
            return f"/v1/completions with echo and logprobs is refused: {refusal}"
        choices = _choices(reply) if isinstance(reply, dict) else []
        logprobs = (choices[0].get("logprobs") if choices else None) or {}
        if len(logprobs.get("text_offset") or ()) < 2 or not logprobs.get("token_logprobs"):
            return "/v1/completions ignores echo and logprobs (no prompt logprobs in the reply); serve the model with vLLM"
        return None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON body and return the JSON reply."""
        reply = await self._send(path, body)
        if not isinstance(reply, dict):
            raise BackendError(f"the server answered {path} with {type(reply).__name__}, not a JSON object; "
                               f"is --base-url an OpenAI-compatible /v1 endpoint?")
        return reply

    async def _send(self, path: str, body: dict[str, Any] | None = None, pinned: Endpoint | None = None,
                    retries: int | None = None) -> Any:
        """GET `path` (POST `body` there) under the base URL and return the JSON reply, with retries over the
        endpoints (or on `pinned` alone). Raises RequestFailed when retries run out and RequestRefused for a
        request the server refuses (4xx other than 429, 501).

        The client's generic get/post skip its per-call parameter transforms and response models, which
        cost more CPU than the HTTP exchange itself, and an absolute URL skips its URL merging; auth,
        timeouts and error mapping are the client's as usual (benchmarks/http_backend.py)."""
        openai = self._openai
        retries = self.max_retries if retries is None else retries
        reason, retry_after = "no attempt", None
        for attempt in range(retries + 1):
            if attempt:
                self._retries[reason] += 1
                await asyncio.sleep(self._backoff(attempt, retry_after))
            retry_after = None
            async with self._slots:
                await self._take_turn()
                endpoint = pinned or await self._pick_endpoint()
                endpoint.outstanding += 1
                endpoint.requests += 1
                self._sent += 1
                try:
                    url = endpoint.url + path
                    if body is None:
                        result = await endpoint.client.get(url, cast_to=object, options=self._request_options)
                    else:
                        result = await endpoint.client.post(url, body=body, cast_to=object, options=self._request_options)
                except openai.APITimeoutError:
                    reason = "timeout"
                except openai.APIConnectionError:
                    reason = "connection"
                except openai.RateLimitError as error:
                    reason = "429"
                    retry_after = _retry_after(error.response)
                except openai.APIStatusError as error:
                    if error.status_code < 500 or error.status_code == 501:
                        fix = f"check the key in ${self.api_key_env}" if error.status_code in (401, 403) else \
                            "fix the request settings or the server"
                        raise RequestRefused(self._rejected(endpoint, error, fix), error.status_code) from None
                    reason = "5xx"
                    retry_after = _retry_after(error.response)
                else:
                    endpoint.consecutive_failures = 0
                    return result
                finally:
                    endpoint.outstanding -= 1
                self._endpoint_failed(endpoint)
        self._failed += 1
        raise RequestFailed(f"{reason} after {retries} retries", reason)

    async def _map(self, ask: Callable[[R], Awaitable[T]], requests: Sequence[R]) -> list[T]:
        """`ask` for every request, by as many workers as requests may be in flight: a coroutine per
        request would start thousands at once, and the first would be sent only after all had run."""
        results: list[Any] = [None] * len(requests)
        queue = iter(enumerate(requests))

        async def worker() -> None:
            for index, request in queue:
                results[index] = await ask(request)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.max_concurrency, len(requests)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            raise
        return results

    async def _take_turn(self) -> None:
        """Wait until this request may be built: one at a time, each a loop turn after the one before.
        Below Python 3.12 aiohttp writes a request's body from a task that first runs a loop turn later,
        so requests that became ready together (on a burst of replies) were all built before the first
        went out; against a fixed-latency server their replies came back together and the burst renewed
        itself every round (benchmarks/http_backend.py: 0.90 of the ideal throughput without turns)."""
        async with self._turn:
            await asyncio.sleep(0)

    async def _pick_endpoint(self) -> Endpoint:
        """The healthy endpoint with the fewest requests in flight; when all are out, wait for the first back."""
        while True:
            now = time.monotonic()
            healthy = [e for e in self._endpoints if e.ejected_until <= now]
            if healthy:
                return min(healthy, key=lambda e: e.outstanding)
            await asyncio.sleep(min(e.ejected_until for e in self._endpoints) - now)

    def _endpoint_failed(self, endpoint: Endpoint) -> None:
        endpoint.failures += 1
        endpoint.consecutive_failures += 1
        if endpoint.consecutive_failures >= EJECT_AFTER and len(self._endpoints) > 1:
            cool_down = min(EJECT_CAP, EJECT_SECONDS * 2 ** endpoint.ejections)
            endpoint.ejections += 1
            endpoint.ejected_until = time.monotonic() + cool_down
            endpoint.consecutive_failures = 0
            log.warning("openai: %s failed %d times in a row; sending its requests elsewhere for %.0f s",
                        _without_credentials(endpoint.url), EJECT_AFTER, cool_down)

    @staticmethod
    def _backoff(attempt: int, retry_after: float | None) -> float:
        jittered = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
        return max(jittered, retry_after or 0.0)

    def _rejected(self, endpoint: Endpoint, error: Any, fix: str) -> str:
        message = _error_message(error)
        return (f"the server at {_without_credentials(endpoint.url)} refused a request for {self.model!r} "
                f"({error.status_code}: {self._redact(message)}); {fix}")

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key != "EMPTY" else text


def _continuation_loglikelihood(logprobs: dict[str, Any] | None, context_chars: int, text_chars: int) -> Loglikelihood:
    """Sum the logprobs of the echoed tokens that end past the context. A token that straddles the
    boundary counts for the continuation: the server tokenized context and continuation together."""
    logprobs = logprobs or {}
    offsets = list(logprobs.get("text_offset") or [])
    token_logprobs = list(logprobs.get("token_logprobs") or [])
    top = list(logprobs.get("top_logprobs") or [])
    if not offsets or len(token_logprobs) != len(offsets):
        raise BackendError("the server's /v1/completions reply has no prompt logprobs (echo+logprobs); "
                           "serve the model with vLLM or drop log-likelihood tasks")
    total, greedy, counted = 0.0, True, 0
    for i, start in enumerate(offsets):
        if start >= text_chars:
            break  # the generated token that max_tokens=1 asked for
        end = offsets[i + 1] if i + 1 < len(offsets) else text_chars
        if end <= context_chars:
            continue
        value = token_logprobs[i]
        if value is None:
            raise BackendError("the continuation starts at the first token, which has no logprob; give a non-empty context")
        total += value
        counted += 1
        alternatives = top[i] if i < len(top) and top[i] else {}
        greedy = greedy and all(value >= other - 1e-6 for other in alternatives.values())
    if not counted:
        raise BackendError("the server's echoed tokens cover none of the continuation; check the served tokenizer")
    return Loglikelihood(total, greedy)


async def _close_clients(endpoints: list[Endpoint]) -> None:
    for endpoint in endpoints:
        await endpoint.client.close()


def _failed(failure: RequestFailed) -> Completion:
    return Completion("", "error", error=failure.reason)


def _shift(seed: int | None, offset: int) -> int | None:
    return None if seed is None else seed + offset


def _choices(reply: dict[str, Any]) -> list[dict[str, Any]]:
    choices = [c for c in reply.get("choices") or [] if isinstance(c, dict)]
    return sorted(choices, key=lambda c: c.get("index", 0))


def _field(choice: dict[str, Any], name: str) -> dict[str, Any]:
    value = choice.get(name)
    return value if isinstance(value, dict) else {}


def _reasoning(message: dict[str, Any]) -> str | None:
    """The chain of thought that DeepSeek's API (`reasoning_content`) and vLLM's reasoning parsers
    (`reasoning_content`, newer `reasoning`) return beside the answer."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return min(float(value), BACKOFF_CAP * 4) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the exponential backoff stands in


def _error_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if message:
            return str(message).splitlines()[0]
    return str(getattr(error, "message", error)).splitlines()[0]


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"openai option {name}={value!r} must be a non-negative integer")
    return value
