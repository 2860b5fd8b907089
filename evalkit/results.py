"""From scored sample records to results.json: metrics with uncertainty, per-group breakdowns."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

from evalkit import metrics
from evalkit.errors import UserError
from evalkit.task import Task


def task_results(task: Task, records: Sequence[Mapping[str, Any]], k: int) -> dict[str, Any]:
    """Aggregate one task's sample records (k per sample) into its results.json entry.

    Every sample must have exactly the k completions asked for: a short count is an error, never an
    average over fewer. A sample with a failed request (outcome "error") is left out of the metrics and
    counted in n_errors / n_samples_with_errors: a request that failed is not a wrong answer."""
    by_sample: dict[str, dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for record in records:
        by_sample[record["sample_id"]][record["sample_index"]] = record
    short = [sample_id for sample_id, got in by_sample.items() if sorted(got) != list(range(k))]
    if short:
        got = sorted(by_sample[short[0]])
        raise UserError(
            f"task {task.name}: {len(short)} samples do not have exactly {k} completions "
            f"(e.g. {short[0]!r} has indices {got}); run the same command again to complete them"
        )
    failed = {s for s, got in by_sample.items() if any(r["outcome"] == "error" for r in got.values())}
    sample_ids = [s for s in by_sample if s not in failed]
    scores = [[by_sample[s][i]["score"] for i in range(k)] for s in sample_ids]
    answers = [[by_sample[s][i]["answer"] for i in range(k)] for s in sample_ids]
    # With every sample failed there is no figure to give: none, rather than 0%.
    names = _distinct_metrics(metrics.resolve_metric_names(task.metrics, k), k) if sample_ids else []
    result: dict[str, Any] = {
        "metrics": {name: metrics.compute_metric(name, scores, answers).as_dict() for name in names},
        "breakdown": {},
        "n_samples": len(sample_ids),
        "n_per_sample": k,
        "outcomes": dict(sorted(Counter(record["outcome"] for record in records).items())),
        "n_truncated": sum(1 for record in records if record.get("finish_reason") == "length"),
        "n_errors": sum(1 for record in records if record["outcome"] == "error"),
        "n_samples_with_errors": len(failed),
        "usage": usage_totals(records),
    }
    for key in task.breakdown_keys:
        groups = [str(by_sample[s][0]["metadata"].get(key)) for s in sample_ids]
        per_metric = {name: metrics.breakdown(name, scores, answers, groups) for name in names}
        result["breakdown"][key] = {
            group: {name: per_metric[name][group] for name in names} for group in sorted(set(groups))
        }
    return result


def usage_totals(entries: Iterable[Mapping[str, Any]]) -> dict[str, int | None]:
    """Token totals over the records (or task results) that report usage; None when none does (e.g.
    log-likelihood tasks)."""
    entries = list(entries)
    totals: dict[str, int | None] = {}
    for field in ("prompt_tokens", "completion_tokens"):
        values = [(entry.get("usage") or {}).get(field) for entry in entries]
        known = [value for value in values if value is not None]
        totals[field] = sum(known) if known else None
    return totals


def _distinct_metrics(names: list[str], k: int) -> list[str]:
    """With one sample per problem, accuracy, avg@1, maj@1 and pass@1 are the same number: keep the
    first of them, so that a table does not list one figure under four names."""
    if k > 1:
        return names
    same = {"accuracy", "avg@1", "maj@1", "pass@1"}
    first = next((name for name in names if name in same), None)
    return [name for name in names if name not in same or name == first]
