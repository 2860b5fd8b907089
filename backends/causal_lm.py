"""Generation and log-likelihood scoring for any causal LM behind a tokenizer.

A backend that runs a model in-process (hf:, moe:) supplies a tokenizer and `ForwardPasses` (batched
forwards over left-padded token ids with a decode cache); `CausalLM` turns them into the Backend
protocol's `generate` and `loglikelihood`. Generation is its own batched loop, not a library's
`generate`, so that every completion draws from its own seeded generator: completion j of a request
is seeded with `seed + j` whatever else shares its batch, which keeps resumed and re-batched runs
reproducible.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence

import torch

from evalkit.backend import Completion, FinishReason, GenerateRequest, Loglikelihood, LoglikelihoodRequest
from evalkit.errors import BackendError, UserError

log = logging.getLogger(__name__)

ChatTemplateStatus = Literal["applied", "disabled", "absent"]


class ForwardPasses(Protocol):
    """Batched forward passes of one model. Rows are left-padded: `mask` [B, T] is 1 on real tokens."""

    device: str

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, Any]:
        """Runs the prompts; returns fp32 logits of each row's last position [B, V] and a decode state
        with room for `max_new_tokens` more tokens per row."""
        ...

    def decode(self, state: Any, next_ids: torch.Tensor) -> torch.Tensor:
        """Appends one token per row ([B]) to the state; returns the fp32 logits after it [B, V]."""
        ...

    def keep_rows(self, state: Any, rows: torch.Tensor) -> Any:
        """The state restricted to `rows` (indices into its current batch), in that order."""
        ...

    def score(self, input_ids: torch.Tensor, mask: torch.Tensor, span: int) -> torch.Tensor:
        """fp32 logits of the last `span` positions [B, span, V], without a cache."""
        ...


@dataclass
class _Row:
    """One completion being decoded: a prompt copy with its own generator and stopping state."""

    request: int
    index: int
    prompt: list[int]
    budget: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    generator: torch.Generator
    tokens: list[int] = field(default_factory=list)
    finish: FinishReason | None = None
    hit_eos: bool = False


@dataclass
class _ScoreRow:
    """One forward row of a loglikelihood batch; `targets` maps request index -> continuation ids,
    all read from the last len(ids) positions of the row (several requests when they share it)."""

    inputs: list[int]
    targets: dict[int, list[int]]


@dataclass
class CausalLM:
    """A tokenizer (transformers' API) plus forward passes, answering generate and loglikelihood requests."""

    tokenizer: Any
    passes: ForwardPasses
    batch_size: int
    max_length: int | None
    chat_template_status: ChatTemplateStatus
    eos_ids: frozenset[int]
    name: str

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def render(self, request: GenerateRequest) -> str:
        """The exact text sent to the model for `request`."""
        if request.messages is not None:
            if self.chat_template_status == "applied":
                return self.tokenizer.apply_chat_template(
                    [dict(m) for m in request.messages], add_generation_prompt=True, tokenize=False
                )
            return "\n\n".join(m["content"] for m in request.messages)
        if request.prompt is None:
            raise BackendError("generate request has neither prompt nor messages; the task must set one")
        return request.prompt

    def encode_prompt(self, request: GenerateRequest) -> list[int]:
        text = self.render(request)
        # A rendered chat template already carries its special tokens (BOS, role markers).
        templated = request.messages is not None and self.chat_template_status == "applied"
        return self.tokenizer(text, add_special_tokens=not templated)["input_ids"]

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[Completion]]:
        rows: list[_Row] = []
        for i, request in enumerate(requests):
            prompt = self.encode_prompt(request)
            room = request.max_tokens
            if self.max_length is not None:
                room = min(room, self.max_length - len(prompt))
            base_seed = 0 if request.seed is None else request.seed
            for j in range(request.n):
                generator = torch.Generator(device=self.passes.device).manual_seed(base_seed + j)
                rows.append(
                    _Row(i, j, prompt, max(room, 0), request.temperature, request.top_p, request.stop, generator)
                )
        # Longest first: similar lengths share a batch (little padding) and an out-of-memory shows at once.
        order = sorted(rows, key=lambda r: -len(r.prompt))
        for start in range(0, len(order), self.batch_size):
            self._decode_batch([r for r in order[start : start + self.batch_size] if r.budget > 0])

        results: list[list[Completion]] = [[] for _ in requests]
        for row in rows:
            results[row.request].append(self._completion(row))
        return results

    def _decode_batch(self, batch: list[_Row]) -> None:
        if not batch:
            return
        width = max(len(r.prompt) for r in batch)
        input_ids = torch.tensor([[self.pad_id] * (width - len(r.prompt)) + r.prompt for r in batch])
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in batch])
        device = self.passes.device
        logits, state = self.passes.prefill(input_ids.to(device), mask.to(device), max(r.budget for r in batch))
        active = batch
        while True:
            greedy = logits.argmax(-1).tolist()
            next_tokens = [
                greedy[k] if row.temperature <= 0 else self._sample(row, logits[k]) for k, row in enumerate(active)
            ]
            keep = []
            for k, (row, token) in enumerate(zip(active, next_tokens)):
                self._advance(row, token)
                if row.finish is None:
                    keep.append(k)
            if not keep:
                return
            if len(keep) < len(active):
                state = self.passes.keep_rows(state, torch.tensor(keep, device=device))
                active = [active[k] for k in keep]
                next_tokens = [next_tokens[k] for k in keep]
            logits = self.passes.decode(state, torch.tensor(next_tokens, device=device))

    @staticmethod
    def _sample(row: _Row, logits: torch.Tensor) -> int:
        probs = torch.softmax(logits / row.temperature, dim=-1)
        if row.top_p < 1.0:
            sorted_probs, sorted_ids = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p: a token stays if the mass before it is below top_p.
            keep = (sorted_probs.cumsum(-1) - sorted_probs) < row.top_p
            keep[0] = True
            sorted_probs = sorted_probs * keep
            choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=row.generator)
            return int(sorted_ids[choice])
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _advance(self, row: _Row, token: int) -> None:
        if token in self.eos_ids:
            row.finish, row.hit_eos = "stop", True
            return
        row.tokens.append(token)
        if row.stop and self._stop_in_tail(row):
            row.finish = "stop"
        elif len(row.tokens) >= row.budget:
            row.finish = "length"

    def _stop_in_tail(self, row: _Row) -> bool:
        # A stop string first completed by the newest token lies within the last 4 tokens per character
        # (a token holds at least one byte), so decoding that tail avoids re-decoding long outputs each step.
        window = 4 * max(len(s) for s in row.stop) + 4
        tail = self.tokenizer.decode(row.tokens[-window:], skip_special_tokens=True)
        return any(s in tail for s in row.stop)

    def _completion(self, row: _Row) -> Completion:
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        finish = row.finish or "length"
        hits = [i for i in (text.find(s) for s in row.stop) if i >= 0]
        if hits:
            text, finish = text[: min(hits)], "stop"
        # The EOS token is not in the text but was generated, so it counts.
        generated = len(row.tokens) + row.hit_eos
        return Completion(text, finish, prompt_tokens=len(row.prompt), completion_tokens=generated)

    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        rows = self._score_rows(requests)
        results: list[Loglikelihood | None] = [None] * len(requests)
        order = sorted(rows, key=lambda r: -len(r.inputs))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for i, value in self._score_batch(batch).items():
                results[i] = value
        return results  # type: ignore[return-value]  # every index is filled by exactly one row

    def _score_rows(self, requests: Sequence[LoglikelihoodRequest]) -> list[_ScoreRow]:
        rows: list[_ScoreRow] = []
        shared: dict[tuple[int, ...], _ScoreRow] = {}
        # MMLU asks 4 continuations of each long context: tokenize each context once per call.
        context_tokens: dict[str, list[int]] = {}
        truncated = 0
        for i, request in enumerate(requests):
            context, continuation = self._split_tokens(request, context_tokens)
            if self.max_length is not None and len(context) + len(continuation) > self.max_length:
                keep = self.max_length - len(continuation)
                if keep < 1:
                    raise BackendError(
                        f"loglikelihood continuation of {len(continuation)} tokens does not fit the context "
                        f"length {self.max_length}; raise max_length or shorten the continuation"
                    )
                context = context[-keep:]
                truncated += 1
            if len(continuation) == 1:
                # MMLU-style choices: one row for the shared context, every choice read off its last position.
                key = tuple(context)
                if key not in shared:
                    shared[key] = _ScoreRow(context, {})
                    rows.append(shared[key])
                shared[key].targets[i] = continuation
            else:
                rows.append(_ScoreRow(context + continuation[:-1], {i: continuation}))
        if truncated:
            log.warning(
                "%s backend: cut %d loglikelihood context(s) from the left to fit max_length=%d",
                self.name,
                truncated,
                self.max_length,
            )
        return rows

    def _split_tokens(self, request: LoglikelihoodRequest,
                      context_tokens: dict[str, list[int]]) -> tuple[list[int], list[int]]:
        if not request.continuation:
            raise BackendError("loglikelihood request has an empty continuation; the task must give a non-empty one")
        if request.context not in context_tokens:
            context_tokens[request.context] = self.tokenizer(request.context)["input_ids"]
        context = context_tokens[request.context]
        whole = self.tokenizer(request.context + request.continuation)["input_ids"]
        # Tokenizing together keeps merges across the boundary as the model saw them in training.
        if len(whole) > len(context) and whole[: len(context)] == context:
            continuation = whole[len(context) :]
        else:
            continuation = self.tokenizer(request.continuation, add_special_tokens=False)["input_ids"]
        if not context or not continuation:
            raise BackendError(
                f"loglikelihood request {request.context[-40:]!r} + {request.continuation!r} tokenizes to an empty "
                f"context or continuation; give a context the tokenizer maps to at least one token"
            )
        return context, continuation

    def _score_batch(self, batch: list[_ScoreRow]) -> dict[int, Loglikelihood]:
        # Left padding lines up every row's continuation at the right edge, so only the last
        # `span` positions need logits.
        width = max(len(r.inputs) for r in batch)
        span = max(len(t) for r in batch for t in r.targets.values())
        input_ids = torch.tensor([[self.pad_id] * (width - len(r.inputs)) + r.inputs for r in batch])
        mask = torch.tensor([[0] * (width - len(r.inputs)) + [1] * len(r.inputs) for r in batch])
        device = self.passes.device
        logits = self.passes.score(input_ids.to(device), mask.to(device), span)
        logprobs = torch.log_softmax(logits, dim=-1)
        greedy = logprobs.argmax(-1)
        results: dict[int, Loglikelihood] = {}
        for k, row in enumerate(batch):
            for i, target in row.targets.items():
                where = torch.arange(span - len(target), span, device=device)
                ids = torch.tensor(target, device=device)
                total = float(logprobs[k, where, ids].sum())
                results[i] = Loglikelihood(total, bool((greedy[k, where] == ids).all()))
        return results


@dataclass(frozen=True)
class ChatTemplate:
    """A tokenizer's chat template and whether chat prompts are rendered with it."""

    text: str | None
    status: ChatTemplateStatus

    @classmethod
    def of(cls, tokenizer: Any, use: bool) -> ChatTemplate:
        text = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
        return cls(text, "absent" if not text else ("applied" if use else "disabled"))

    @property
    def identity(self) -> str:
        return f"chat_template={'on' if self.status == 'applied' else 'off'}"

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.text.encode()).hexdigest() if self.text else None
        return {"chat_template": self.status, "chat_template_sha256": digest}


class CausalLMBackend:
    """What in-process backends (hf:, moe:) share: the Backend protocol's requests answered by `self.lm`."""

    supports = frozenset({"generate", "loglikelihood"})
    cacheable = True
    lm: CausalLM
    tokenizer: Any
    batch_size: int
    max_length: int | None
    chat_template: ChatTemplate

    def _language_model(self, passes: ForwardPasses, generation_eos: int | Sequence[int] | None, name: str) -> CausalLM:
        """`self.lm` over `passes`, once the tokenizer, batch size, context length and template are set."""
        return CausalLM(
            tokenizer=self.tokenizer,
            passes=passes,
            batch_size=self.batch_size,
            max_length=self.max_length,
            chat_template_status=self.chat_template.status,
            eos_ids=eos_token_ids(self.tokenizer, generation_eos),
            name=name,
        )

    def render(self, request: GenerateRequest) -> str:
        """The exact text sent to the model for `request`."""
        return self.lm.render(request)

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[Completion]]:
        return self.lm.generate(requests)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        return self.lm.loglikelihood(requests)


def eos_token_ids(tokenizer: Any, generation_eos: int | Sequence[int] | None = None) -> frozenset[int]:
    """The tokenizer's EOS plus any the generation config lists (chat models often add an end-of-turn id)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if isinstance(generation_eos, int):
        ids.add(generation_eos)
    elif isinstance(generation_eos, (list, tuple)):
        ids.update(generation_eos)
    return frozenset(ids)


def device_option(options: dict[str, Any], backend: str) -> str:
    """The `device` option, default cuda when torch sees a GPU; errors name the option and the fix."""
    device = str(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"{backend} option device={device!r} is not a torch device ({exc}); use cpu or cuda") from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"{backend} option device={device!r} but torch sees no CUDA device; use device=cpu")
    return device
