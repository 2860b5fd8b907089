"""The runner: plan -> request cache -> backend -> score -> aggregate -> run directory.

A run is defined by its config hash (model, backend identity, tasks with their resolved settings,
data provenance, prompt hash, seed, limit); its directory is named after it, so starting the same
command again finds the same directory and continues: samples already in samples.jsonl are
skipped, answers in the request cache are reused, and only the rest goes to the backend.
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import itertools
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from tqdm import tqdm

import evalkit
from evalkit.backend import (
    Backend,
    Completion,
    GenerateRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    SampleRef,
    load_backend,
    require_support,
)
from evalkit.cache import NoCache, RequestCache, generate_key, loglikelihood_key
from evalkit.errors import BackendError, UserError
from evalkit.report import write_report
from evalkit.results import task_results, usage_totals
from evalkit.rundir import CONFIG, RESULTS, RunDir
from evalkit.task import (
    DataSpec,
    GenerationSettings,
    Preset,
    Prompt,
    Sample,
    SampleSet,
    Score,
    Task,
    get_preset,
    get_task,
)

log = logging.getLogger("evalkit")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What the user asked for. Unset generation fields fall back to the preset, then the task."""

    model: str
    tasks: tuple[str, ...] = ()
    model_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    preset: str | None = None
    limit: int | None = None
    samples: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int = 0
    data: DataSpec = DataSpec("hf")
    output: Path = Path("runs")
    cache: Path | None = None
    use_cache: bool = True
    chunk_size: int = 64
    score_workers: int | None = None  # None: one per CPU core (at most 8), for tasks with parallel_scoring
    progress: bool = True
    shard: tuple[int, int] | None = None  # (index, count): run only plan positions p with p % count == index


@dataclasses.dataclass(frozen=True)
class TaskPlan:
    task: Task
    settings: GenerationSettings
    sample_set: SampleSet
    samples: list[Sample]
    prompts: list[Prompt]
    prompt_sha256: str


def resolve_settings(task: Task, preset: Preset | None, options: RunOptions) -> GenerationSettings:
    settings = task.generation
    if preset is not None:
        settings = dataclasses.replace(settings, **preset.settings_for(task.name))
    overrides = {
        "samples": options.samples,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "max_tokens": options.max_tokens,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if task.request_kind == "loglikelihood" and settings.samples != 1:
        # One scoring of the choices is the whole answer; k copies would only shrink the stderr falsely.
        log.warning("task %s is scored by loglikelihood: --samples %d does not apply to it (k=1)", task.name, settings.samples)
        settings = dataclasses.replace(settings, samples=1)
    if settings.samples < 1:
        raise UserError(f"--samples must be at least 1, got {settings.samples}")
    if settings.max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, got {settings.max_tokens}")
    if not 0.0 < settings.top_p <= 1.0:
        raise UserError(f"--top-p must be in (0, 1], got {settings.top_p}")
    if settings.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {settings.temperature}")
    return settings


def plan_task(task: Task, settings: GenerationSettings, options: RunOptions, sample_set: SampleSet | None = None) -> TaskPlan:
    """Samples, prompts and prompt hash of one task; `sample_set` skips loading data already loaded."""
    sample_set = sample_set or task.load_samples(options.data)
    if options.limit is not None and options.limit < 1:
        raise UserError(f"--limit must be at least 1, got {options.limit}")
    samples = sample_set.samples[: options.limit] if options.limit else list(sample_set.samples)
    if not samples:
        raise UserError(f"task {task.name} has no samples in {dict(sample_set.source)}; check the data source")
    if len({sample.id for sample in samples}) != len(samples):
        raise UserError(f"task {task.name} has duplicate sample ids in {dict(sample_set.source)}; fix the data")
    prompts = [task.build_prompt(sample, sample_set) for sample in samples]
    if task.request_kind == "loglikelihood" and any(not p.text or not p.continuations for p in prompts):
        raise UserError(f"task {task.name} built a loglikelihood prompt without context or continuations; fix the task")
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(json.dumps([prompt.as_record(), list(prompt.continuations)], ensure_ascii=False).encode())
    return TaskPlan(task, settings, sample_set, samples, prompts, digest.hexdigest())


def shard_plans(plans: Sequence[TaskPlan], index: int, count: int) -> list[TaskPlan]:
    """Shard `index` of `count`: the samples at plan positions p with p % count == index, with all their
    completions. A task with no sample in this shard is left out of it."""
    if not 0 <= index < count:
        raise UserError(f"--shard {index}/{count} is out of range; write --shard I/N with 0 <= I < N")
    largest = max(len(plan.samples) for plan in plans)
    if count > largest:
        raise UserError(f"--shard {index}/{count}: the largest task has {largest} samples, so some shards would be "
                        f"empty; use at most {largest} shards")
    return [dataclasses.replace(plan, samples=plan.samples[index::count], prompts=plan.prompts[index::count])
            for plan in plans if len(plan.samples) > index]


def shard_suffix(index: int, count: int) -> str:
    """What a shard's directory name adds to the unsharded run's name."""
    return f"_shard{index}of{count}"


def sample_seed(run_seed: int, task: str, sample_id: str) -> int:
    """Seed of completion 0 of a sample; completion i uses this + i. It depends on the sample, not on
    its position, so --limit and resume never change which seed a completion gets."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}/{task}/{sample_id}".encode()).digest()[:4], "big")


def run(options: RunOptions, backend: Backend | None = None) -> Path:
    """Run (or continue) an evaluation; returns the run directory."""
    preset = get_preset(options.preset) if options.preset else None
    names = options.tasks or (preset.tasks if preset else ())
    if not names:
        raise UserError("no tasks given; pass --tasks a,b or --preset NAME (see `evalkit list`)")
    tasks = [get_task(name) for name in names]
    if len(set(names)) != len(names):
        raise UserError(f"--tasks names a task twice: {','.join(names)}")
    backend = backend or load_backend(options.model, **options.model_args)
    for task in tasks:
        require_support(backend, task.request_kind, task.name)
    plans: list[TaskPlan] = []
    for task in tasks:
        settings = resolve_settings(task, preset, options)
        if settings.samples > 1 and settings.temperature == 0 and task.request_kind == "generate":
            log.warning("task %s: %d samples at temperature 0 are %d copies of the greedy answer; pass --temperature",
                        task.name, settings.samples, settings.samples)
        loaded = next((p.sample_set for p in plans if p.task.load_samples is task.load_samples), None)
        plans.append(plan_task(task, settings, options, loaded))

    definition = _run_definition(options, backend, plans)
    config_hash = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    name = run_name(options.model, names, config_hash)
    if options.shard is not None:
        # Hashed before sharding, so that every shard and the merged run share one config_hash.
        plans = shard_plans(plans, *options.shard)
        name += shard_suffix(*options.shard)
        definition = {**definition, "shard": {"index": options.shard[0], "count": options.shard[1]}}
    rundir = RunDir(options.output / name)
    rundir.lock()
    cache = _open_cache(options, backend)
    wall_started = time.perf_counter()
    try:
        recorded = rundir.read_samples(repair=True)
        # Requests that failed for good last time are asked again; their records are replaced.
        existing = [record for record in recorded if record["outcome"] != "error"]
        started = rundir.read_json(CONFIG)["started_at"] if (rundir.path / CONFIG).exists() else _now()
        config = {**definition, **_provenance(), "config_hash": config_hash, "command": sys.argv,
                  "backend": backend.describe(), "started_at": started, "finished_at": None}
        rundir.write_json(CONFIG, config)
        if existing:
            log.info("resuming %s: %d sample records already done", rundir.path, len(existing))
        done = {(r["task"], r["sample_id"], r["sample_index"]) for r in existing}
        records = list(existing)
        # The plan, the data and the model live for the whole run: frozen, the cyclic collector stops
        # walking them again and again, each time stalling every thread (an HTTP backend's event loop too).
        # Unfrozen at the end, so that a process running many runs (a notebook, a Ray worker) can free them.
        gc.freeze()
        with _Scoring(options.score_workers) as scoring:
            for plan in plans:
                records += _Execution(plan, backend, cache, rundir, scoring, options).run(done)
        invocation = {"wall_seconds": round(time.perf_counter() - wall_started, 3),
                      **({"backend": backend.stats()} if hasattr(backend, "stats") else {})}
        _finish(rundir, plans, config, records, changed=len(records) > len(existing),
                dropped=len(recorded) - len(existing), invocation=invocation)
    finally:
        gc.unfreeze()
        cache.close()
        rundir.unlock()
    return rundir.path


def _finish(rundir: RunDir, plans: Sequence[TaskPlan], config: dict[str, Any], records: list[dict[str, Any]],
            changed: bool, dropped: int, invocation: Mapping[str, Any]) -> None:
    """Put samples.jsonl in plan order (so that a resumed run's file equals an uninterrupted one's) and
    without the `dropped` failed records that were asked again, aggregate, stamp the end time, and
    write the report unless a finished run's report is already there."""
    order = {(plan.task.name, sample.id): (t, s) for t, plan in enumerate(plans) for s, sample in enumerate(plan.samples)}
    positions = [(*order[(r["task"], r["sample_id"])], r["sample_index"]) for r in records]
    if positions != sorted(positions) or dropped:
        records = [record for _, record in sorted(zip(positions, records), key=lambda pair: pair[0])]
        rundir.rewrite_samples(records)
    write_results(rundir, [(plan.task, plan.settings.samples) for plan in plans], records, config, invocation)
    rundir.write_json(CONFIG, {**config, "finished_at": _now()})
    if changed or not (rundir.path / "report.html").exists():
        write_report(rundir.path)


def write_results(rundir: RunDir, tasks: Sequence[tuple[Task, int]], records: Sequence[Mapping[str, Any]],
                  config: Mapping[str, Any], invocation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """results.json. `invocation` (wall time, the backend's request counters) describes the process
    that wrote it, not the results: it is the one part that differs between equal runs."""
    per_task = {task.name: task_results(task, [r for r in records if r["task"] == task.name], k) for task, k in tasks}
    results = {
        "tasks": per_task,
        "model": config["model"]["uri"],
        "config_hash": config["config_hash"],
        "usage": usage_totals(per_task.values()),
        **({"invocation": dict(invocation)} if invocation else {}),
    }
    rundir.write_json(RESULTS, results)
    return results


def rescore(path: Path) -> dict[str, Any]:
    """Score a finished run's recorded outputs again with the current scorers (a fixed extractor, a
    better math checker) and rewrite samples.jsonl and results.json. The model is not called."""
    rundir = RunDir(path)
    config = rundir.read_json(CONFIG)
    rundir.lock()
    try:
        records = rundir.read_samples()
        tasks = [(get_task(name), spec["generation"]["samples"]) for name, spec in config["tasks"].items()]
        for task, _ in tasks:
            # A failed request has no output to score; it stays an error until the run is continued.
            mine = [r for r in records if r["task"] == task.name and r["outcome"] != "error"]
            for record in mine:
                sample = Sample(record["sample_id"], None, record["target"], record["metadata"])
                score = task.scorer(sample, _recorded_output(record))
                record.update(answer=score.answer, score=score.value, outcome=score.outcome, details=dict(score.details))
        rundir.rewrite_samples(records)
        previous = rundir.read_json(RESULTS).get("invocation") if (rundir.path / RESULTS).exists() else None
        results = write_results(rundir, tasks, records, config, previous)
        write_report(rundir.path)
        return results
    finally:
        rundir.unlock()


def _recorded_output(record: Mapping[str, Any]) -> Any:
    if record.get("loglikelihoods") is not None:
        return [Loglikelihood(entry["logprob"], entry["is_greedy"]) for entry in record["loglikelihoods"]]
    return record["completion"]


def _run_definition(options: RunOptions, backend: Backend, plans: Sequence[TaskPlan]) -> dict[str, Any]:
    """Everything that decides a run's outputs; its hash names the run directory."""
    return {
        # Options that only say how to reach the model (endpoints, concurrency) leave the run unchanged.
        "model": {"uri": options.model, "identity": backend.identity,
                  "options": {key: value for key, value in sorted(options.model_args.items())
                              if key not in getattr(backend, "transport_options", ())}},
        "seed": options.seed,
        "limit": options.limit,
        "preset": options.preset,
        "data": {"kind": options.data.kind, "path": str(options.data.path) if options.data.path else None},
        "tasks": {
            plan.task.name: {
                "request_kind": plan.task.request_kind,
                "benchmark": plan.task.benchmark,
                "shots": plan.task.shots,
                "chain_of_thought": plan.task.chain_of_thought,
                "generation": dataclasses.asdict(plan.settings),
                "metrics": list(plan.task.metrics),
                "breakdown_keys": list(plan.task.breakdown_keys),
                "n_samples": len(plan.samples),
                "data_source": dict(plan.sample_set.source),
                "prompt_sha256": plan.prompt_sha256,
            }
            for plan in plans
        },
    }


def _provenance() -> dict[str, Any]:
    source_dir = Path(evalkit.__file__).resolve().parent.parent
    return {
        "evalkit_version": evalkit.__version__,
        "git": _git_state(source_dir),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _package_version(name) for name in ("torch", "transformers", "tokenizers", "datasets", "numpy")},
    }


def _git_state(directory: Path) -> dict[str, Any] | None:
    try:
        sha = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"sha": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return None


def _package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_name(model: str, tasks: Sequence[str], config_hash: str) -> str:
    """The run directory's name: what a person can read of model and tasks, then the config hash."""
    location = model.partition(":")[2].rstrip("/")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(location).name or location)[:40] or "model"
    task_part = "+".join(tasks) if len(tasks) <= 3 else f"{len(tasks)}tasks"
    return f"{slug}_{task_part}_{config_hash[:12]}"


def _open_cache(options: RunOptions, backend: Backend) -> RequestCache | NoCache:
    if not options.use_cache or not backend.cacheable:
        return NoCache()
    path = options.cache or Path(os.environ.get("EVALKIT_CACHE", options.output / ".cache" / "requests.sqlite"))
    return RequestCache(Path(path))


def _contiguous_runs(indices: Sequence[int]) -> Iterator[tuple[int, int]]:
    """[0,1,2,5,6] -> (0,3), (5,2): (first, count) pairs."""
    start = None
    for position, index in enumerate(indices):
        if start is None:
            start, count = index, 1
        elif index == indices[position - 1] + 1:
            count += 1
        else:
            yield start, count
            start, count = index, 1
    if start is not None:
        yield start, count


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _score_one(job: tuple[Any, Sample, Any]) -> Score:
    scorer, sample, output = job
    return scorer(sample, output)


class _Scoring:
    """Scores in this process, or, for tasks that ask for it, in a worker pool started on first use."""

    def __init__(self, workers: int | None):
        self.workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "_Scoring":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def score(self, task: Task, jobs: Sequence[tuple[Sample, Any]]) -> list[Score]:
        work = [(task.scorer, sample, output) for sample, output in jobs]
        if not task.parallel_scoring or self.workers < 2 or len(work) < 2:
            return [_score_one(job) for job in work]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        return list(self._pool.map(_score_one, work, chunksize=max(1, len(work) // (4 * self.workers))))


@dataclasses.dataclass
class _Answer:
    """One (sample, sample index) answered by the backend or the cache, waiting to be scored.
    `error` set: the request failed for good; the record says so and is not scored."""

    sample: Sample
    index: int
    prompt_sent: Any
    output: Any
    fields: dict[str, Any]
    seconds: float
    cached: bool
    error: str | None = None


@dataclasses.dataclass
class _Chunk:
    """A chunk whose cached answers are known: `asks` go to the backend, `finish(replies, seconds)`
    caches the fresh answers and returns every answer of the chunk."""

    asks: list[Any]
    finish: Callable[[list[Any], float], list[_Answer]]


class _Execution:
    """Runs one task's missing work in chunks; each chunk is asked, cached, scored and appended.

    A backend that runs many requests at once (`max_concurrency`, e.g. an HTTP server) gets several
    chunks in flight from worker threads, so that one slow completion never idles the rest; the cache,
    scoring and the run directory stay on this thread."""

    def __init__(self, plan: TaskPlan, backend: Backend, cache: RequestCache | NoCache, rundir: RunDir,
                 scoring: _Scoring, options: RunOptions):
        self.plan, self.backend, self.cache, self.rundir = plan, backend, cache, rundir
        self.scoring, self.options = scoring, options
        self.name = plan.task.name

    def run(self, done: set[tuple[str, str, int]]) -> list[dict[str, Any]]:
        """Ask for, score and append everything of this task not in `done`; returns the new records."""
        k = self.plan.settings.samples
        units_done = sum(1 for s in self.plan.samples for i in range(k) if (self.name, s.id, i) in done)
        total = len(self.plan.samples) * k
        with tqdm(total=total, initial=units_done, desc=self.name, unit="sample", disable=not self.options.progress,
                  dynamic_ncols=True, file=sys.stderr) as bar:
            if self.plan.task.request_kind == "generate":
                work: Sequence[Any] = self._generate_requests(done)
                prepare, ask = self._prepare_generate, self.backend.generate
            else:
                work = [(s, p) for s, p in zip(self.plan.samples, self.plan.prompts) if (self.name, s.id, 0) not in done]
                prepare, ask = self._prepare_loglikelihood, self.backend.loglikelihood
            written: list[dict[str, Any]] = []
            for answers in self._pipeline(map(prepare, _chunks(work, self.options.chunk_size)), ask):
                records = self._write(answers)
                written += records
                bar.update(len(records))
        return written

    def _pipeline(self, chunks: Iterator[_Chunk], ask: Callable[[list[Any]], list[Any]]) -> Iterator[list[_Answer]]:
        window = _chunks_in_flight(self.backend, self.options.chunk_size)
        if window == 1:
            for chunk in chunks:
                yield chunk.finish(*_timed(ask, chunk.asks))
            return
        pool = ThreadPoolExecutor(max_workers=window, thread_name_prefix="evalkit-ask")
        in_flight: dict[Future[tuple[list[Any], float]], _Chunk] = {}
        try:
            for chunk in itertools.islice(chunks, window):
                in_flight[pool.submit(_timed, ask, chunk.asks)] = chunk
            while in_flight:
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield in_flight.pop(future).finish(*future.result())
                    for chunk in itertools.islice(chunks, 1):
                        in_flight[pool.submit(_timed, ask, chunk.asks)] = chunk
        except BaseException:
            # Stopping (Ctrl-C, a failed chunk): abandon the other chunks' requests rather than wait for
            # answers nobody will record (a long chain of thought takes minutes).
            cancel = getattr(self.backend, "cancel", None)
            if cancel is not None:
                cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _generate_requests(self, done: set[tuple[str, str, int]]) -> list[tuple[Sample, GenerateRequest]]:
        settings = self.plan.settings
        work = []
        for sample, prompt in zip(self.plan.samples, self.plan.prompts):
            missing = [i for i in range(settings.samples) if (self.name, sample.id, i) not in done]
            base_seed = sample_seed(self.options.seed, self.name, sample.id)
            for first, count in _contiguous_runs(missing):
                work.append((sample, GenerateRequest(
                    prompt=prompt.text, messages=prompt.messages, n=count, temperature=settings.temperature,
                    top_p=settings.top_p, max_tokens=settings.max_tokens, stop=settings.stop,
                    seed=base_seed + first, ref=SampleRef(self.name, sample.id, first))))
        return work

    def _prepare_generate(self, chunk: Sequence[tuple[Sample, GenerateRequest]]) -> _Chunk:
        identity = self.backend.identity
        keys = {(r, j): generate_key(identity, request, j) for r, (_, request) in enumerate(chunk) for j in range(request.n)}
        found = self.cache.get_many(keys.values())
        asks: list[tuple[int, int, GenerateRequest]] = []
        for r, (_, request) in enumerate(chunk):
            uncached = [j for j in range(request.n) if keys[(r, j)] not in found]
            for offset, count in _contiguous_runs(uncached):
                asks.append((r, offset, _sub_request(request, offset, count)))

        def finish(replies: list[list[Completion]], elapsed: float) -> list[_Answer]:
            if len(replies) != len(asks):
                raise BackendError(f"backend {identity} answered {len(replies)} of {len(asks)} generate requests; it is broken")
            fresh: dict[tuple[int, int], Completion] = {}
            for (r, offset, ask), completions in zip(asks, replies):
                if len(completions) != ask.n:
                    raise BackendError(
                        f"backend {identity} returned {len(completions)} completions for a request of n={ask.n} "
                        f"(task {self.name}, sample {ask.ref.sample_id}); evalkit never averages over fewer samples than asked"
                    )
                for j, completion in enumerate(completions):
                    fresh[(r, offset + j)] = completion
            # A failed request is never cached: the next run asks for it again.
            self.cache.put_many({keys[key]: vars(c) for key, c in fresh.items() if c.finish_reason != "error"})
            seconds_each = elapsed / len(fresh) if fresh else 0.0
            render = getattr(self.backend, "render", None)
            answers = []
            for r, (sample, request) in enumerate(chunk):
                prompt_sent = render(request) if render else Prompt(request.prompt, request.messages).as_record()
                for j in range(request.n):
                    completion = fresh.get((r, j)) or Completion(**found[keys[(r, j)]])
                    answers.append(_Answer(
                        sample, request.ref.first_index + j, prompt_sent, completion.text,
                        {"completion": completion.text, "finish_reason": completion.finish_reason,
                         "reasoning": completion.reasoning, "loglikelihoods": None,
                         "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}},
                        seconds_each if (r, j) in fresh else 0.0, (r, j) not in fresh, completion.error))
            return answers

        return _Chunk([ask for _, _, ask in asks], finish)

    def _prepare_loglikelihood(self, chunk: Sequence[tuple[Sample, Prompt]]) -> _Chunk:
        identity = self.backend.identity
        requests = [[LoglikelihoodRequest(prompt.text, continuation, SampleRef(self.name, sample.id))
                     for continuation in prompt.continuations] for sample, prompt in chunk]
        keys = [[loglikelihood_key(identity, request) for request in row] for row in requests]
        found = self.cache.get_many(key for row in keys for key in row)
        asks = [(s, c) for s, row in enumerate(keys) for c, key in enumerate(row) if key not in found]

        def finish(replies: list[Loglikelihood], elapsed: float) -> list[_Answer]:
            if len(replies) != len(asks):
                raise BackendError(f"backend {identity} answered {len(replies)} of {len(asks)} loglikelihood requests; it is broken")
            fresh = dict(zip(asks, replies))
            self.cache.put_many({keys[s][c]: vars(reply) for (s, c), reply in fresh.items() if reply.error is None})
            seconds_each = elapsed / len(asks) if asks else 0.0
            answers = []
            for s, (sample, prompt) in enumerate(chunk):
                values = [fresh.get((s, c)) or Loglikelihood(**found[keys[s][c]]) for c in range(len(prompt.continuations))]
                asked = sum(1 for c in range(len(values)) if (s, c) in fresh)
                error = next((v.error for v in values if v.error is not None), None)
                answers.append(_Answer(
                    sample, 0, prompt.text, values,
                    {"completion": None, "finish_reason": "error" if error else None, "reasoning": None,
                     "loglikelihoods": [{"continuation": cont, "logprob": v.logprob, "is_greedy": v.is_greedy}
                                        for cont, v in zip(prompt.continuations, values)],
                     "usage": None},
                    seconds_each * asked, asked == 0, error))
            return answers

        return _Chunk([requests[s][c] for s, c in asks], finish)

    def _write(self, answers: Sequence[_Answer]) -> list[dict[str, Any]]:
        scores = iter(self.scoring.score(self.plan.task, [(a.sample, a.output) for a in answers if a.error is None]))
        records = [sample_record(self.name, a, None if a.error is not None else next(scores)) for a in answers]
        self.rundir.append_samples(records)
        return records


def _chunks_in_flight(backend: Backend, chunk_size: int) -> int:
    """One chunk at a time for in-process backends; for one that runs `max_concurrency` requests at
    once, enough chunks to queue twice that, so the server never waits on a chunk's slowest request."""
    concurrency = getattr(backend, "max_concurrency", 1)
    return 1 if concurrency <= 1 else max(2, math.ceil(2 * concurrency / chunk_size))


def _timed(ask: Callable[[list[Any]], list[Any]], asks: list[Any]) -> tuple[list[Any], float]:
    if not asks:
        return [], 0.0
    started = time.perf_counter()
    replies = ask(asks)
    return replies, time.perf_counter() - started


def sample_record(task: str, answer: _Answer, score: Score | None) -> dict[str, Any]:
    """The samples.jsonl record of an answer; `score` None for a failed request (outcome "error")."""
    return {
        "task": task,
        "sample_id": answer.sample.id,
        "sample_index": answer.index,
        "prompt": answer.prompt_sent,
        **answer.fields,
        "answer": score.answer if score else None,
        "target": answer.sample.target,
        "score": score.value if score else None,
        "outcome": score.outcome if score else "error",
        "details": dict(score.details) if score else {"error": answer.error},
        "metadata": dict(answer.sample.metadata),
        "timing": {"seconds": round(answer.seconds, 6), "cached": answer.cached},
    }


def _sub_request(request: GenerateRequest, offset: int, count: int) -> GenerateRequest:
    """Completions offset..offset+count-1 of `request`, as a request of its own with the same seeds."""
    if offset == 0 and count == request.n:
        return request
    return dataclasses.replace(
        request, n=count, seed=None if request.seed is None else request.seed + offset,
        ref=dataclasses.replace(request.ref, first_index=request.ref.first_index + offset),
    )
