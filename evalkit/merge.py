"""`evalkit merge`: join the shards of a run (`evalkit run --shard I/N`) into the run directory the
unsharded command writes, with the same samples.jsonl and results.json.

Shard I holds, for every task, the samples at plan positions p with p % N == I, in plan order, so
position p is local position p // N of shard p % N. All shards share the unsharded run's config_hash,
which names the merged directory.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from evalkit.errors import UserError
from evalkit.report import write_report
from evalkit.rundir import CONFIG, RESULTS, RunDir
from evalkit.runner import run_name, shard_suffix, write_results
from evalkit.task import get_task


@dataclasses.dataclass(frozen=True)
class Shard:
    """A finished shard directory and what its config.json says about it."""

    path: Path
    index: int
    count: int
    config: dict[str, Any]


def read_shard(path: Path) -> Shard:
    """The shard at `path`; a UserError when it is not a finished shard."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise UserError(f"{path} is not a run directory (no {CONFIG}); pass the directories `evalkit run --shard I/N` wrote")
    config = RunDir(path).read_json(CONFIG)
    shard = config.get("shard")
    if not shard:
        raise UserError(f"{path} is not a shard (its {CONFIG} has no shard); pass the directories "
                        f"`evalkit run --shard I/N` wrote")
    if config.get("finished_at") is None:
        raise UserError(f"shard {path} is unfinished; run its command (--shard {shard['index']}/{shard['count']}) again "
                        f"to finish it, then merge")
    return Shard(path, int(shard["index"]), int(shard["count"]), config)


def merge(paths: Sequence[Path], output: Path | None = None) -> Path:
    """Merge the N shard directories of one run into OUTPUT/<the unsharded run's name> (OUTPUT defaults to
    the parent of the first path given); returns that directory. Merging again rewrites the same result."""
    if not paths:
        raise UserError("no shard directories given; pass all N directories `evalkit run --shard I/N` wrote")
    shards = _check_complete([read_shard(path) for path in paths])
    first = shards[0].config
    tasks = first["tasks"]
    records = _interleave(shards, tasks)
    config = {key: value for key, value in first.items() if key != "shard"}
    config.update(
        merged_from=[str(shard.path.resolve()) for shard in shards],
        started_at=min((shard.config["started_at"] for shard in shards), key=datetime.fromisoformat),
        finished_at=max((shard.config["finished_at"] for shard in shards), key=datetime.fromisoformat),
    )
    parent = Path(output if output is not None else Path(paths[0]).parent)
    rundir = RunDir(parent / run_name(config["model"]["uri"], list(tasks), config["config_hash"]))
    rundir.lock()
    try:
        rundir.rewrite_samples(records)
        write_results(rundir, [(get_task(name), spec["generation"]["samples"]) for name, spec in tasks.items()],
                      records, config, _merged_invocation(shards))
        rundir.write_json(CONFIG, config)
        write_report(rundir.path)
    finally:
        rundir.unlock()
    return rundir.path


def _merged_invocation(shards: Sequence[Shard]) -> dict[str, Any] | None:
    """The shards' request counters added up (retries, failures, per endpoint), and the longest shard's
    wall time: what the merged run reports as its invocation."""
    invocations = [RunDir(shard.path).read_json(RESULTS).get("invocation") for shard in shards]
    invocations = [invocation for invocation in invocations if invocation]
    if not invocations:
        return None
    merged: dict[str, Any] = {"wall_seconds": max(invocation.get("wall_seconds", 0.0) for invocation in invocations)}
    backends = [invocation["backend"] for invocation in invocations if invocation.get("backend")]
    if backends:
        merged["backend"] = _add_counters(backends)
    return merged


def _add_counters(values: Sequence[Any]) -> Any:
    """Numbers added, dicts added key by key; anything else kept when the shards agree on it, else None."""
    if all(isinstance(value, dict) for value in values):
        keys = dict.fromkeys(key for value in values for key in value)
        return {key: _add_counters([value[key] for value in values if key in value]) for key in keys}
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        return sum(values)
    return values[0] if all(value == values[0] for value in values) else None


def _check_complete(shards: list[Shard]) -> list[Shard]:
    """The shards in index order, once they are shown to be all N shards of one run. The odd one out
    is named against the most common configuration and split, which the others are taken to be."""
    config_hash = Counter(shard.config["config_hash"] for shard in shards).most_common(1)[0][0]
    same_run = [shard for shard in shards if shard.config["config_hash"] == config_hash]
    count = Counter(shard.count for shard in same_run).most_common(1)[0][0]
    first = next(shard for shard in same_run if shard.count == count)
    by_index: dict[int, Shard] = {}
    for shard in shards:
        if shard.config["config_hash"] != first.config["config_hash"]:
            raise UserError(f"{shard.path} is a shard of another run (config_hash {shard.config['config_hash'][:12]}, "
                            f"not {first.config['config_hash'][:12]} as {first.path}); merge only shards of one command")
        if shard.count != first.count:
            raise UserError(f"{shard.path} is shard {shard.index}/{shard.count} but {first.path} is of a {first.count}-way "
                            f"split; merge shards of one --shard I/N split")
        if shard.index in by_index:
            raise UserError(f"{shard.path} and {by_index[shard.index].path} are both shard {shard.index}/{shard.count}; "
                            f"pass each shard once")
        by_index[shard.index] = shard
    missing = [index for index in range(first.count) if index not in by_index]
    if missing:
        base = run_name(first.config["model"]["uri"], list(first.config["tasks"]), first.config["config_hash"])
        expected = first.path.parent / (base + shard_suffix(missing[0], first.count))
        raise UserError(f"shard {missing[0]}/{first.count} is missing: pass {expected} too (run the command with "
                        f"--shard {missing[0]}/{first.count} to write it)")
    return [by_index[index] for index in range(first.count)]


def _interleave(shards: Sequence[Shard], tasks: dict[str, Any]) -> list[dict[str, Any]]:
    """Every shard's records back in unsharded plan order: tasks in config order, then plan position,
    then sample index. Each record is carried as the shard wrote it."""
    count = len(shards)
    per_shard = [_samples_by_task(RunDir(shard.path).read_samples()) for shard in shards]
    records: list[dict[str, Any]] = []
    for task, spec in tasks.items():
        n_samples = spec["n_samples"]
        for shard, samples in zip(shards, per_shard):
            expected = len(range(shard.index, n_samples, count))
            if len(samples.get(task, [])) != expected:
                raise UserError(f"shard {shard.path} has {len(samples.get(task, []))} samples of task {task}, not "
                                f"{expected}; run its command again to complete it, then merge")
        for position in range(n_samples):
            records += per_shard[position % count][task][position // count]
    return records


def _samples_by_task(records: Sequence[dict[str, Any]]) -> dict[str, list[list[dict[str, Any]]]]:
    """task -> the shard's samples in the order it ran them, each sample's records by sample index."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for record in records:
        grouped.setdefault(record["task"], {}).setdefault(record["sample_id"], []).append(record)
    return {task: [sorted(group, key=lambda r: r["sample_index"]) for group in samples.values()]
            for task, samples in grouped.items()}
