"""Backends: how the harness talks to a model.

A backend answers batches of generate and loglikelihood requests. It is chosen by a model URI
`scheme:rest` (`hf:/path/to/checkpoint`, `replay:outputs.jsonl`, ...) through a registry of
factories; `load_backend` resolves one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence, runtime_checkable

from evalkit.errors import BackendError, UserError
from evalkit.task import Message, RequestKind

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class SampleRef:
    """Where a request comes from. Backends that replay recorded outputs use it; it is never part
    of a cache key."""

    task: str
    sample_id: str
    first_index: int = 0


@dataclass(frozen=True)
class GenerateRequest:
    """Ask for `n` completions of a prompt (raw `prompt` text or chat `messages`).

    Seeding: completion j of the request is drawn with seed `seed + j`, so that completion i of a
    sample gets the same seed whether it was asked for alone or with its siblings (resume-safe)."""

    prompt: str | None
    messages: tuple[Message, ...] | None
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 2048
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ref: SampleRef | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Completion:
    """One completion. finish_reason "error" (with `error` saying why) is a request that failed for
    good: the runner records it, never scores or caches it, and asks again on the next run."""

    text: str
    finish_reason: FinishReason = "stop"
    reasoning: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str
    ref: SampleRef | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Loglikelihood:
    """Sum of log-probs of the continuation's tokens given the context, and whether greedy decoding
    from the context would have produced exactly the continuation. `error` set: the request failed
    for good (as for Completion)."""

    logprob: float
    is_greedy: bool
    error: str | None = None


@runtime_checkable
class Backend(Protocol):
    """What every model backend provides.

    `identity` names the model and every setting that changes its outputs (weights fingerprint,
    dtype, chat template); it is part of the request-cache key. `supports` lists the request kinds
    it answers. `cacheable` is False for backends whose answers are free (replay).
    `describe()` returns what config.json records about it.

    Optional: `render(request)` (the exact prompt sent, recorded per sample), `stats()` (counters of
    this process's requests, written to results.json), `max_concurrency` (requests the backend runs at
    once: the runner keeps that many busy), `unsupported_reason` ({kind: why}, for error messages),
    `transport_options` (option names that only say how to reach the model: not part of a run's
    definition), `cancel()` (abandon the requests in flight when the run stops)."""

    identity: str
    supports: frozenset[RequestKind]
    cacheable: bool

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[Completion]]: ...

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]: ...

    def describe(self) -> dict[str, Any]: ...


BackendFactory = Callable[..., Backend]

# Built-in schemes resolve lazily (module, class) so that `import evalkit` never imports torch or transformers.
_BUILTIN: dict[str, tuple[str, str]] = {
    "hf": ("evalkit.backends.hf", "HFBackend"),
    "moe": ("evalkit.backends.moe.backend", "MoEBackend"),
    "openai": ("evalkit.backends.openai", "OpenAIBackend"),
    "replay": ("evalkit.backends.replay", "ReplayBackend"),
}
_FACTORIES: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Register `factory(rest, **options)` for model URIs `scheme:rest`."""
    _FACTORIES[scheme] = factory


def backend_schemes() -> list[str]:
    return sorted(set(_BUILTIN) | set(_FACTORIES))


def split_model_uri(uri: str) -> tuple[str, str]:
    scheme, sep, rest = uri.partition(":")
    if not sep or not scheme or not rest:
        raise UserError(
            f"model {uri!r} is not a model URI; write SCHEME:LOCATION, e.g. hf:/path/to/checkpoint "
            f"(schemes: {', '.join(backend_schemes())})"
        )
    return scheme, rest


def load_backend(uri: str, **options: Any) -> Backend:
    scheme, rest = split_model_uri(uri)
    if scheme in _FACTORIES:
        factory = _FACTORIES[scheme]
    elif scheme in _BUILTIN:
        module, name = _BUILTIN[scheme]
        factory = getattr(importlib.import_module(module), name)
    else:
        raise UserError(
            f"unknown model scheme {scheme!r} in {uri!r}; known schemes: {', '.join(backend_schemes())}"
        )
    return factory(rest, **options)


def require_support(backend: Backend, kind: RequestKind, task_name: str) -> None:
    if kind not in backend.supports:
        reason = getattr(backend, "unsupported_reason", {}).get(kind)
        raise BackendError(
            f"task {task_name!r} needs {kind} requests but backend {backend.identity!r} only supports "
            f"{', '.join(sorted(backend.supports))}{f' ({reason})' if reason else ''}; "
            f"drop the task or use a backend that supports {kind}"
        )


def parse_model_args(text: str | None) -> dict[str, Any]:
    """Parse `key=value,key=value` into a dict; values become bool/int/float where they look like one."""
    options: dict[str, Any] = {}
    if not text:
        return options
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--model-args item {item!r} is not KEY=VALUE; write e.g. --model-args dtype=float32,batch_size=8")
        options[key.strip()] = _parse_scalar(value.strip())
    return options


def _parse_scalar(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value

