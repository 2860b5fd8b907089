"""A deterministic fake backend that logs every request it answers, for runner tests.

`fake:LOGFILE` answers generate requests with "... Answer: X" where X depends only on the prompt and
that completion's seed, and loglikelihood requests with a value that depends only on the text; each
answered request is appended to LOGFILE (fsynced) so that a test can count what the model was asked,
even across a killed process.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from evalkit.backend import Completion, GenerateRequest, Loglikelihood, LoglikelihoodRequest, register_backend


def _number(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:8], 16)


class FakeBackend:
    cacheable = True

    def __init__(self, location: str, delay: float = 0.0, supports: str = "generate+loglikelihood", short: bool = False,
                 fail_after: int = -1, concurrency: int = 1):
        self.log_path = Path(location)
        self.delay = delay
        self.short = short
        self.calls_left = fail_after  # raise on the call after this many (negative: never)
        self.supports = frozenset(supports.split("+"))
        self.identity = f"fake:v1;short={short}"
        # Requests it runs at once, as an HTTP backend declares it; each logged call notes how many
        # calls were in progress, so a test can see the runner overlap them.
        self.max_concurrency = concurrency
        self._calls_in_progress = 0
        self._lock = threading.Lock()

    def _enter(self) -> int:
        with self._lock:
            self._calls_in_progress += 1
            return self._calls_in_progress

    def _leave(self) -> None:
        with self._lock:
            self._calls_in_progress -= 1

    def _log(self, entries: list[dict[str, Any]]) -> None:
        with open(self.log_path, "a") as handle:
            handle.write("".join(json.dumps(e) + "\n" for e in entries))
            handle.flush()
            os.fsync(handle.fileno())

    def _maybe_fail(self) -> None:
        if self.calls_left == 0:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail on a second line")
        self.calls_left -= 1

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[Completion]]:
        self._maybe_fail()
        overlapping = self._enter()
        time.sleep(self.delay)
        self._leave()
        results = []
        for request in requests:
            n = request.n - 1 if self.short and request.n > 1 else request.n
            texts = []
            for j in range(n):
                seed = None if request.temperature == 0 else request.seed + j
                letter = "ABCD"[_number(request.prompt, request.messages, seed) % 4]
                texts.append(Completion(f"Let me think.\nAnswer: {letter}", "stop", None, 10, 5))
            results.append(texts)
        self._log([{"kind": "generate", "task": r.ref.task, "sample_id": r.ref.sample_id,
                    "first_index": r.ref.first_index, "n": r.n, "overlapping": overlapping} for r in requests])
        return results

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        self._maybe_fail()
        overlapping = self._enter()
        time.sleep(self.delay)
        self._leave()
        results = [Loglikelihood(-(_number(r.context, r.continuation) % 1000) / 100, False) for r in requests]
        self._log([{"kind": "loglikelihood", "task": r.ref.task, "sample_id": r.ref.sample_id,
                    "continuation": r.continuation, "overlapping": overlapping} for r in requests])
        return results

    def describe(self) -> dict[str, Any]:
        return {"scheme": "fake", "log": str(self.log_path)}


def register() -> None:
    register_backend("fake", FakeBackend)


def logged_requests(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score_with_pid(sample: Any, output: Any) -> Any:
    """mmlu_cot's scorer, noting which process scored (to see the worker pool at work)."""
    from evalkit.tasks.mmlu import score_cot

    score = score_cot(sample, output)
    return dataclasses.replace(score, details={**score.details, "pid": os.getpid()})


def register_pooled_task() -> None:
    from evalkit.task import get_task, register_task

    register_task(dataclasses.replace(get_task("mmlu_cot"), name="mmlu_cot_pooled", scorer=score_with_pid,
                                      parallel_scoring=True))
