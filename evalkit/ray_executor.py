"""`evalkit run --executor ray`: the run split into shards (the `--shard I/N` mechanism), each shard a
Ray task writing its own shard directory under --output, then merged into the run directory that
`evalkit run` without --executor writes.

`ray.init()` without an address starts a local Ray instance; with RAY_ADDRESS set it joins that
cluster, and then --output (and the request cache, a --data-dir and the checkpoint) must be on storage
every node can read, because each node writes its shard there and the driver merges from there.

A shard whose worker dies is retried by Ray; the retry resumes from what the shard's run directory
and the request cache already hold, as a restarted `evalkit run` does.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from evalkit.backend import split_model_uri
from evalkit.errors import UserError
from evalkit.merge import merge
from evalkit.runner import RunOptions, run
from evalkit.task import get_preset, get_task

# Backends that run the model inside the worker process, so that a shard wants a GPU of its own.
LOCAL_SCHEMES = frozenset({"hf", "moe"})
# CPUs a shard asks for when a task scores in a process pool (code runs, the math checker): its
# scoring workers, so that shards on one node do not oversubscribe it.
SCORING_CPUS = 4
# Retries of a shard whose worker process died (a crash of the node, the OOM killer); an exception
# raised by the run itself is not retried, since it would fail again the same way.
MAX_RETRIES = 3


def run_on_ray(options: RunOptions, shards: int | None = None) -> Path:
    """Run `options` as `shards` Ray tasks (default: one per GPU Ray sees for hf:/moe: models when it
    sees any, else one per shard's worth of CPUs, at most the largest task's sample count) and merge
    them; returns the merged run directory. A shard asks Ray for the CPUs it scores with: its
    --score-workers, else SCORING_CPUS when a task scores in a process pool, else 1."""
    ray = _import_ray()
    if shards is not None and shards < 1:
        raise UserError(f"--ray-shards must be at least 1, got {shards}")
    largest, pooled = _plan_shape(options)
    if shards is not None and shards > largest:
        raise UserError(f"--ray-shards {shards}: the largest task has {largest} samples, so some shards would be empty; "
                        f"use at most {largest}")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init()  # joins $RAY_ADDRESS when it is set, else starts a local instance
    try:
        resources = ray.cluster_resources()
        on_gpu = split_model_uri(options.model)[0] in LOCAL_SCHEMES and resources.get("GPU", 0) >= 1
        cpus = max(1, min(options.score_workers or (SCORING_CPUS if pooled else 1), int(resources.get("CPU", 1))))
        options = dataclasses.replace(options, score_workers=cpus)
        default = int(resources.get("GPU", 1)) if on_gpu else int(resources.get("CPU", 1)) // cpus
        count = shards or max(1, min(default, largest))
        task = ray.remote(_run_shard).options(num_cpus=cpus, num_gpus=1 if on_gpu else 0, max_retries=MAX_RETRIES)
        environment = {name: value for name, value in os.environ.items() if name.startswith("EVALKIT_")}
        pending = [task.remote(dataclasses.replace(options, shard=(index, count), progress=False), os.getcwd(),
                               environment, list(sys.argv))
                   for index in range(count)]
        try:
            paths = ray.get(pending)
        except ray.exceptions.RayTaskError as error:
            # The shard's own exception, so that a UserError still prints as one line and exits 2.
            raise error.cause from None
        return merge([Path(path) for path in paths], options.output)
    finally:
        if started_here:
            ray.shutdown()


def _run_shard(options: RunOptions, cwd: str, environment: dict[str, str], command: list[str]) -> str:
    """One shard, in a Ray worker. The worker starts in Ray's own directory and, on another node,
    without the driver's environment: take both from the driver, so that relative paths (model URI,
    --output, --data-dir) and the EVALKIT_* task options mean the same there, and config.json records the
    user's command rather than the worker's."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    os.environ.update(environment)
    worker_argv = sys.argv
    sys.argv = command
    try:
        return str(run(options))
    finally:
        sys.argv = worker_argv


def _plan_shape(options: RunOptions) -> tuple[int, bool]:
    """The sample count (after --limit) of the run's largest task (more shards would leave some empty),
    and whether any task scores in a process pool."""
    preset = get_preset(options.preset) if options.preset else None
    names = options.tasks or (preset.tasks if preset else ())
    if not names:
        raise UserError("no tasks given; pass --tasks a,b or --preset NAME (see `evalkit list`)")
    tasks = [get_task(name) for name in names]
    loaded: dict[Any, int] = {}
    for task in tasks:
        if task.load_samples not in loaded:
            samples = task.load_samples(options.data).samples
            loaded[task.load_samples] = len(samples[: options.limit] if options.limit else samples)
    return max(loaded.values()), any(task.parallel_scoring for task in tasks)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'evalkit[ray]'") from None
    return ray
