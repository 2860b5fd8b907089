"""Gate a candidate run against a baseline run: fail CI on a regression that is both real and large.

Per task and metric that both runs report, on the samples both runs scored, the gate measures the
paired difference candidate − baseline. Pairing matters: two checkpoints agree on most problems, so the
difference of two accuracies is far less noisy than each accuracy alone, and an unpaired comparison would
miss most real drops.

- Binary per-problem values (greedy accuracy, maj@k): exact McNemar test, a binomial on the discordant
  problems (those one run gets right and the other wrong).
- Anything else (avg@k, pass@k, partial credit): sign-flip permutation test on the per-problem
  differences. Under "same model quality" each problem's (baseline, candidate) pair is exchangeable, so
  each difference is as likely to have either sign: the test uses exactly that symmetry, holds its level at
  any number of problems (unlike a t-test or a bootstrap p-value, which are approximate on 30 AIME
  problems with lumpy avg@k values), and on binary values it is McNemar's test again.
- The confidence interval of the difference is a paired percentile bootstrap over problems, at
  1 − 2·alpha, so that its upper end is the one-sided bound the test works with.

A (task, metric) regresses when its drop is significant at `alpha` (one-sided) AND larger than `max_drop`
points, or when the candidate is below a floor. The gate cannot compare (exit 2) runs that measured
different things: another protocol, other data, a task missing from the candidate, no shared samples.
"""
from __future__ import annotations

import math
import os
import tomllib
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from evalkit.errors import UserError
from evalkit.metrics import per_problem_values
from evalkit.protocol import differences, run_protocol
from evalkit.rundir import CONFIG, RESULTS, RunDir

DEFAULT_RULES_TOML = """\
# evalkit gate rules. A task's metric regresses when the candidate's drop against the baseline, on the
# samples both runs scored, is statistically significant at `alpha` (one-sided) AND larger than
# `max_drop` points, or when the candidate's value is below a floor.
max_drop = 1.0   # points: the largest drop tolerated even when it is significant
alpha = 0.05     # one-sided significance level of the paired test for a drop
ignore = []      # tasks that are not gated, e.g. ["livecodebench"]

# Absolute minimum values in points (percent), per task and metric (names as in results.json):
# [floors.mmlu]
# accuracy = 60.0

# Per-task overrides of max_drop and alpha (small tasks such as AIME need a wider max_drop):
# [tasks.aime24]
# max_drop = 5.0
# alpha = 0.10
"""

ALL_METRICS = "(all)"  # the metric column of a finding about a whole task

# Monte Carlo draws of the sign-flip test and of the bootstrap. Fixed seeds make the verdict a function of
# the two runs alone: re-running a CI job cannot flip it.
N_FLIPS = 10_000
N_BOOTSTRAP = 2_000
SEED = 0
# Upper bound on the random draws held at once (float64 entries: 32 MiB).
_MAX_DRAWS = 1 << 22

Status = Literal["pass", "regression", "cannot compare", "ignored"]


@dataclass(frozen=True)
class TaskRule:
    """Per-task overrides; None keeps the global value."""

    max_drop: float | None = None
    alpha: float | None = None


@dataclass(frozen=True)
class Rules:
    """When a drop is a regression. `max_drop` and `floors` are in points (percent); see DEFAULT_RULES_TOML.

    The defaults: a drop regresses when it is significant at alpha 0.05 (one-sided) and larger than 1 point;
    no floors, no ignored tasks, no per-task overrides."""

    max_drop: float = 1.0
    alpha: float = 0.05
    floors: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    tasks: Mapping[str, TaskRule] = field(default_factory=dict)

    def threshold(self, task: str) -> tuple[float, float]:
        """(max_drop, alpha) for `task`, overrides applied."""
        rule = self.tasks.get(task, TaskRule())
        return (self.max_drop if rule.max_drop is None else rule.max_drop,
                self.alpha if rule.alpha is None else rule.alpha)


@dataclass(frozen=True)
class PairedDelta:
    """candidate − baseline on the shared samples, as fractions (the renderers show points)."""

    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_drop: float          # one-sided: evidence that the candidate is worse
    p_two_sided: float
    test: str
    n_shared: int
    n_baseline_only: int   # samples dropped because the other run lacks them
    n_candidate_only: int


@dataclass(frozen=True)
class Check:
    """One gate finding: a compared (task, metric), a floor, or a reason the gate cannot compare."""

    task: str
    metric: str
    status: Status
    reasons: tuple[str, ...] = ()
    paired: PairedDelta | None = None
    candidate_value: float | None = None  # the candidate's full-run value (results.json), for floors


@dataclass(frozen=True)
class GateReport:
    baseline: str
    candidate: str
    rules: Rules
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """0 pass, 1 regression, 2 cannot compare. A partial comparison wins over a regression: the
        runs must be fixed before the gate can vouch for anything."""
        statuses = {check.status for check in self.checks}
        if "cannot compare" in statuses:
            return 2
        return 1 if "regression" in statuses else 0

    @property
    def verdict(self) -> str:
        return {0: "PASS", 1: "REGRESSION", 2: "CANNOT COMPARE"}[self.exit_code]


# ---------------------------------------------------------------------------------------------- rules

_RULE_KEYS = {"max_drop", "alpha", "floors", "ignore", "tasks"}
_TASK_KEYS = {"max_drop", "alpha"}


def load_rules(path: Path) -> Rules:
    """Read a rules TOML file (format: DEFAULT_RULES_TOML); missing keys take the defaults."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"rules file {path} does not exist; pass --rules PATH to a TOML file or leave it out for the defaults") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"rules file {path} is not valid TOML ({error}); fix it (see the README for the format)") from None
    return parse_rules(data, str(path))


def parse_rules(data: Mapping[str, Any], source: str = "rules") -> Rules:
    """Rules from parsed TOML, each mistake reported as one line naming `source` and the key."""
    _known_keys(data, _RULE_KEYS, source, "")
    thresholds: dict[str, float] = {}
    if "max_drop" in data:
        thresholds["max_drop"] = _points(data["max_drop"], source, "max_drop")
    if "alpha" in data:
        thresholds["alpha"] = _alpha(data["alpha"], source, "alpha")
    ignore = data.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(name, str) for name in ignore):
        raise UserError(f"{source}: ignore must be a list of task names, e.g. ignore = [\"livecodebench\"]")
    floors: dict[str, dict[str, float]] = {}
    for task, by_metric in _table(data.get("floors", {}), source, "floors").items():
        floors[task] = {metric: _points(value, source, f"floors.{task}.{metric}")
                        for metric, value in _table(by_metric, source, f"floors.{task}").items()}
    tasks: dict[str, TaskRule] = {}
    for task, override in _table(data.get("tasks", {}), source, "tasks").items():
        override = _table(override, source, f"tasks.{task}")
        _known_keys(override, _TASK_KEYS, source, f"tasks.{task}.")
        tasks[task] = TaskRule(
            max_drop=_points(override["max_drop"], source, f"tasks.{task}.max_drop") if "max_drop" in override else None,
            alpha=_alpha(override["alpha"], source, f"tasks.{task}.alpha") if "alpha" in override else None,
        )
    return Rules(**thresholds, floors=floors, ignore=frozenset(ignore), tasks=tasks)


def _known_keys(table: Mapping[str, Any], allowed: set[str], source: str, prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UserError(f"{source}: unknown key {prefix}{unknown[0]}; allowed: {', '.join(prefix + k for k in sorted(allowed))}")


def _table(value: Any, source: str, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{source}: {key} must be a table ([{key}] with key = value lines)")
    return value


def _points(value: Any, source: str, key: str) -> float:
    # bool is an int to Python, never a number of points to a user
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise UserError(f"{source}: {key} must be a number of points between 0 and 100, got {value!r}")
    return float(value)


def _alpha(value: Any, source: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 0.5:
        raise UserError(f"{source}: {key} must be a significance level in (0, 0.5), e.g. 0.05; got {value!r}")
    return float(value)


DEFAULT_RULES = parse_rules(tomllib.loads(DEFAULT_RULES_TOML), "DEFAULT_RULES_TOML")


# ---------------------------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class TaskScores:
    """A task's k scores and extracted answers per sample id, in sample-index order."""

    scores: Mapping[str, Sequence[float]]
    answers: Mapping[str, Sequence[str | None]]


@dataclass(frozen=True)
class RunData:
    """What the gate reads from a run directory."""

    name: str
    config: Mapping[str, Any]
    results: Mapping[str, Any]   # results.json "tasks"
    scores: Mapping[str, TaskScores]


def read_run(path: Path) -> RunData:
    """config.json, results.json and the per-sample scores of samples.jsonl of a finished run."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory; pass a run directory written by `evalkit run` (runs/<run>)")
    rundir = RunDir(path)
    config, results = rundir.read_json(CONFIG), rundir.read_json(RESULTS)
    tasks = results.get("tasks")
    if (not isinstance(tasks, dict) or not isinstance(config.get("tasks"), dict)
            or not all(isinstance(entry, dict) and isinstance(entry.get("metrics"), dict) for entry in tasks.values())):
        raise UserError(f"{path}: {RESULTS} or {CONFIG} has no \"tasks\" table; re-run `evalkit rescore {path}` to rewrite it")
    if not rundir.samples_path.exists():
        raise UserError(f"{rundir.samples_path} does not exist; the gate needs per-sample scores: copy the whole run directory")
    by_task: dict[str, dict[str, dict[int, tuple[float, str | None]]]] = {}
    for number, record in enumerate(rundir.read_samples(), start=1):
        if record.get("outcome") == "error":
            raise UserError(f"{rundir.samples_path}:{number} is a request that failed ({record.get('details', {}).get('error')}); "
                            f"run the run's command again to retry the failed requests before gating on it")
        try:
            task, sample_id, index = record["task"], str(record["sample_id"]), int(record["sample_index"])
            if task in tasks:
                by_task.setdefault(task, {}).setdefault(sample_id, {})[index] = (float(record["score"]), record.get("answer"))
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{rundir.samples_path}:{number} lacks task, sample_id, sample_index or score ({error!r}); "
                            f"re-run `evalkit rescore {path}`") from None
    scores: dict[str, TaskScores] = {}
    for task, entry in tasks.items():
        k = int(entry.get("n_per_sample", 1))
        samples = by_task.get(task, {})
        short = next((sample_id for sample_id, got in samples.items() if not set(range(k)) <= set(got)), None)
        if short is not None:
            raise UserError(f"{rundir.samples_path}: task {task} sample {short!r} has fewer than {k} completions; "
                            f"finish the run (run its command again) before gating on it")
        scores[task] = TaskScores(
            scores={s: [got[i][0] for i in range(k)] for s, got in samples.items()},
            answers={s: [got[i][1] for i in range(k)] for s, got in samples.items()},
        )
    return RunData(name=str(path), config=config, results=tasks, scores=scores)


# ---------------------------------------------------------------------------------------------- statistics

def mcnemar(losses: int, wins: int) -> tuple[float, float]:
    """Exact McNemar test: (one-sided p for a drop, two-sided p).

    `losses`: problems the baseline gets right and the candidate wrong; `wins`: the reverse. Under no
    change each discordant problem is a fair coin, so losses ~ Binomial(losses + wins, 1/2)."""
    n = losses + wins
    if n == 0:
        return 1.0, 1.0
    # Exact integers: comb(n, i) stays exact for any n, and one division at the end rounds once.
    term, upper, lower = 1, 0, 0
    for i in range(n + 1):
        if i >= losses:
            upper += term
        if i <= losses:
            lower += term
        term = term * (n - i) // (i + 1)
    total = 1 << n
    p_drop = upper / total
    return p_drop, min(1.0, 2 * min(upper, lower) / total)


def sign_flip(differences: np.ndarray, n_flips: int = N_FLIPS, seed: int = SEED) -> tuple[float, float]:
    """Monte Carlo sign-flip test of the mean of paired differences: (one-sided p for a drop, two-sided p).

    Problems with the same difference are flipped as a group (how many of them flip is binomial), which is
    the same distribution as flipping each one and costs per distinct value rather than per problem."""
    values, counts = np.unique(differences[differences != 0], return_counts=True)
    if values.size == 0:
        return 1.0, 1.0
    observed = float(values @ counts)
    # Sums of the same values in another order may differ in the last bits: ties count as ties.
    tolerance = 1e-9 * max(1.0, float(np.abs(values) @ counts))
    rng = np.random.default_rng(seed)
    at_most = beyond = 0
    rows_per_chunk = max(1, _MAX_DRAWS // values.size)
    for start in range(0, n_flips, rows_per_chunk):
        rows = min(rows_per_chunk, n_flips - start)
        flipped = rng.binomial(counts, 0.5, size=(rows, values.size))
        totals = (counts - 2 * flipped) @ values
        at_most += int(np.count_nonzero(totals <= observed + tolerance))
        beyond += int(np.count_nonzero(np.abs(totals) >= abs(observed) - tolerance))
    # The observed signs are one of the equally likely arrangements: counting them keeps p valid (never 0).
    return (at_most + 1) / (n_flips + 1), (beyond + 1) / (n_flips + 1)


def paired_bootstrap_ci(differences: np.ndarray, confidence: float, n_resamples: int = N_BOOTSTRAP,
                        seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean difference, resampling problems (each carries its pair).

    Drawn as multinomial counts over the distinct differences: the same distribution as resampling
    problems with replacement (metrics.bootstrap_ci), at a cost per distinct value instead of per problem."""
    size = differences.size
    if size < 2:
        return (math.nan, math.nan)
    values, counts = np.unique(differences, return_counts=True)
    rng = np.random.default_rng(seed)
    means = rng.multinomial(size, counts / size, size=n_resamples) @ values / size
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def paired_delta(baseline: np.ndarray, candidate: np.ndarray, alpha: float,
                 n_baseline_only: int = 0, n_candidate_only: int = 0) -> PairedDelta:
    """The paired comparison of per-problem values (same problems, same order)."""
    differences = candidate - baseline
    binary = np.isin(baseline, (0.0, 1.0)).all() and np.isin(candidate, (0.0, 1.0)).all()
    if binary:
        p_drop, p_two = mcnemar(int(np.count_nonzero(differences < 0)), int(np.count_nonzero(differences > 0)))
    else:
        p_drop, p_two = sign_flip(differences)
    confidence = 1 - 2 * alpha
    ci_low, ci_high = paired_bootstrap_ci(differences, confidence)
    return PairedDelta(
        baseline=float(baseline.mean()), candidate=float(candidate.mean()), delta=float(differences.mean()),
        ci_low=ci_low, ci_high=ci_high, confidence=confidence, p_drop=p_drop, p_two_sided=p_two,
        test="McNemar exact" if binary else "sign-flip", n_shared=int(baseline.size),
        n_baseline_only=n_baseline_only, n_candidate_only=n_candidate_only,
    )


# ---------------------------------------------------------------------------------------------- the gate

def gate(baseline: Path, candidate: Path, rules: Rules | None = None) -> GateReport:
    """Compare the candidate run directory against the baseline run directory under `rules`."""
    return compare_runs(read_run(baseline), read_run(candidate), DEFAULT_RULES if rules is None else rules)


def compare_runs(baseline: RunData, candidate: RunData, rules: Rules = DEFAULT_RULES) -> GateReport:
    """The gate on runs already read (read_run), or built in memory by simulations."""
    checks: list[Check] = []
    notes: list[str] = []
    for task in baseline.results:
        if task in rules.ignore:
            checks.append(Check(task, ALL_METRICS, "ignored", ("ignored by the rules",)))
        elif task not in candidate.results:
            checks.append(Check(task, ALL_METRICS, "cannot compare", ("missing from the candidate run",)))
        else:
            task_checks, task_notes = _compare_task(task, baseline, candidate, rules)
            checks.extend(task_checks)
            notes.extend(task_notes)
    for task in candidate.results:
        if task not in baseline.results:
            if task in rules.ignore:
                checks.append(Check(task, ALL_METRICS, "ignored", ("ignored by the rules",)))
            else:
                notes.append(f"{task}: only in the candidate run, nothing to compare it with (floors still apply)")
    checks.extend(_leftover_floors(checks, candidate, rules))
    return GateReport(baseline.name, candidate.name, rules, tuple(checks), tuple(notes))


def _compare_task(task: str, baseline: RunData, candidate: RunData, rules: Rules) -> tuple[list[Check], list[str]]:
    base_spec, cand_spec = baseline.config["tasks"].get(task, {}), candidate.config["tasks"].get(task, {})
    data = _data_differences(base_spec.get("data_source", {}), cand_spec.get("data_source", {}))
    if data:
        return [Check(task, ALL_METRICS, "cannot compare", (f"different data: {'; '.join(data)}",))], []
    base_scores, cand_scores = baseline.scores[task], candidate.scores[task]
    shared = [s for s in base_scores.scores if s in cand_scores.scores]
    if not shared:
        return [Check(task, ALL_METRICS, "cannot compare", ("no shared samples (different sample ids in the two runs)",))], []
    notes = []
    if base_spec.get("prompt_sha256") != cand_spec.get("prompt_sha256"):
        notes.append(f"{task}: the prompts differ (prompt_sha256); the difference includes the prompt change")
    dropped = (len(base_scores.scores) - len(shared), len(cand_scores.scores) - len(shared))
    max_drop, alpha = rules.threshold(task)
    checks = []
    candidate_metrics = list(candidate.results[task]["metrics"])
    for base_metric, cand_metric in _metric_pairs(list(baseline.results[task]["metrics"]), candidate_metrics):
        if cand_metric is None:
            checks.append(Check(task, base_metric, "cannot compare",
                                (f"the candidate has no counterpart of {base_metric} (it has {', '.join(candidate_metrics)})",)))
            continue
        label = base_metric if base_metric == cand_metric else f"{base_metric}→{cand_metric}"
        mismatch = differences(run_protocol(baseline.config, task, base_metric), run_protocol(candidate.config, task, cand_metric))
        mismatch += _sampling_differences(base_spec, cand_spec)
        if mismatch:
            checks.append(Check(task, label, "cannot compare", (f"different protocol: {'; '.join(mismatch)}",)))
            continue
        paired = paired_delta(_values(base_metric, base_scores, shared), _values(cand_metric, cand_scores, shared),
                              alpha, *dropped)
        reasons = []
        if paired.p_drop <= alpha and -100 * paired.delta > max_drop:
            reasons.append(f"drop of {-100 * paired.delta:.2f} points > max_drop {max_drop:g}, "
                           f"significant (p={paired.p_drop:.3g} ≤ alpha {alpha:g})")
        value = _metric_value(candidate, task, cand_metric)
        reasons.extend(_floor_failures(rules, task, cand_metric, value))
        checks.append(Check(task, label, "regression" if reasons else "pass", tuple(reasons), paired, value))
    return checks, notes


def _metric_pairs(base_metrics: list[str], cand_metrics: list[str]) -> list[tuple[str, str | None]]:
    """Each baseline metric with the candidate metric it is compared with: the same name, else the same
    aggregation at another k (avg@4 and avg@64 estimate the same number; protocol.differences rejects
    maj@4 against maj@64), else None."""
    pairs: list[tuple[str, str | None]] = []
    for metric in base_metrics:
        if metric in cand_metrics:
            pairs.append((metric, metric))
            continue
        kind = metric.partition("@")[0]
        pairs.append((metric, next((m for m in cand_metrics if "@" in m and m.partition("@")[0] == kind), None)))
    return pairs


def _sampling_differences(base_spec: Mapping[str, Any], cand_spec: Mapping[str, Any]) -> list[str]:
    """Sampled at another temperature or top-p: protocol.differences only separates greedy from sampled,
    but pass@1 at T=0.6 and at T=1.0 are different numbers for the same checkpoint."""
    if base_spec.get("request_kind") != "generate" or cand_spec.get("request_kind") != "generate":
        return []
    base, cand = base_spec.get("generation", {}), cand_spec.get("generation", {})
    if not base.get("temperature") or not cand.get("temperature"):
        return []  # greedy on either side: protocol.differences already speaks to it
    return [f"{key} {base.get(key)} vs {cand.get(key)}" for key in ("temperature", "top_p") if base.get(key) != cand.get(key)]


def _data_differences(base: Mapping[str, Any], cand: Mapping[str, Any]) -> list[str]:
    """What differs in two data sources, ignoring where the files sit (CI and laptops use other paths)."""
    found = []
    for key in sorted((set(base) | set(cand)) - {"path"}):
        a, b = base.get(key), cand.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            found.extend(f"{name} sha256 {_short(a.get(name))} vs {_short(b.get(name))}"
                         for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name))
        else:
            found.append(f"{key} {_short(a)} vs {_short(b)}")
    return found


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if isinstance(value, str) and len(text) == 64 else text  # a sha256 is known by its prefix


def _values(metric: str, scores: TaskScores, shared: Sequence[str]) -> np.ndarray:
    return np.asarray(per_problem_values(metric, [scores.scores[s] for s in shared], [scores.answers[s] for s in shared]))


def _metric_value(run: RunData, task: str, metric: str) -> float | None:
    value = run.results.get(task, {}).get("metrics", {}).get(metric, {}).get("value")
    return None if value is None else float(value)


def _floor_failures(rules: Rules, task: str, metric: str, value: float | None) -> list[str]:
    floor = rules.floors.get(task, {}).get(metric)
    if floor is None or value is None or 100 * value >= floor:
        return []
    return [f"{100 * value:.2f} is below the floor {floor:g}"]


def _leftover_floors(checks: Sequence[Check], candidate: RunData, rules: Rules) -> list[Check]:
    """Floors not already applied to a compared metric: a floor needs only the candidate."""
    applied = {(c.task, c.metric.rpartition("→")[2]) for c in checks if c.paired is not None}
    found = []
    for task, by_metric in rules.floors.items():
        for metric in by_metric:
            if (task, metric) in applied or task in rules.ignore:
                continue
            value = _metric_value(candidate, task, metric)
            if value is None:
                found.append(Check(task, metric, "cannot compare", (f"a floor is set but the candidate has no {task} {metric}",)))
            else:
                failures = _floor_failures(rules, task, metric, value)
                found.append(Check(task, metric, "regression" if failures else "pass", tuple(failures), None, value))
    return found


# ---------------------------------------------------------------------------------------------- output

_HEADER = ("task", "metric", "baseline", "candidate", "delta", "CI", "p(drop)", "test", "shared", "dropped", "verdict")


def _points_text(value: float | None, sign: str = "") -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:{sign}.2f}"


def _row(check: Check) -> tuple[str, ...]:
    paired = check.paired
    if paired is None:
        return (check.task, check.metric, "-", _points_text(check.candidate_value), "-", "-", "-", "-", "-", "-", check.status)
    ci = "-" if math.isnan(paired.ci_low) else f"[{_points_text(paired.ci_low, '+')}, {_points_text(paired.ci_high, '+')}]"
    return (check.task, check.metric, _points_text(paired.baseline), _points_text(paired.candidate),
            _points_text(paired.delta, "+"), ci, f"{paired.p_drop:.3g}", paired.test, str(paired.n_shared),
            f"{paired.n_baseline_only}/{paired.n_candidate_only}", check.status)


def _findings(report: GateReport) -> list[str]:
    """One line per finding that is not a plain pass, then the notes."""
    lines = [f"{c.status}: {c.task}" + ("" if c.metric == ALL_METRICS else f" {c.metric}") + f": {'; '.join(c.reasons)}"
             for c in report.checks if c.status != "pass"]
    return lines + [f"note: {note}" for note in report.notes]


def _legend(report: GateReport) -> str:
    rules = report.rules
    overrides = "".join(f"; {task}: {max_drop:g} points at alpha {alpha:g}"
                        for task in sorted(rules.tasks) for max_drop, alpha in [rules.threshold(task)])
    return (f"Points; delta = candidate − baseline on the shared samples; CI: paired bootstrap at 1 − 2·alpha; p(drop): "
            f"one-sided; dropped: samples only in the baseline/candidate.\nRegression: p(drop) ≤ alpha and a drop larger "
            f"than max_drop ({rules.max_drop:g} points at alpha {rules.alpha:g}{overrides}), or a value below a floor.")


def render_table(report: GateReport) -> str:
    """The report for a terminal."""
    rows = [_HEADER, *(_row(check) for check in report.checks)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = [f"baseline   {report.baseline}", f"candidate  {report.candidate}", ""]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines += ["", _legend(report), *_findings(report), "", f"gate: {report.verdict} (exit {report.exit_code})"]
    return "\n".join(lines) + "\n"


def render_markdown(report: GateReport) -> str:
    """The report as GitHub-flavoured Markdown (step summaries, PR comments)."""
    lines = [f"### evalkit gate: {report.verdict}", "",
             f"baseline `{report.baseline}` · candidate `{report.candidate}`", "",
             "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for check in report.checks:
        cells = [cell.replace("|", "\\|") for cell in _row(check)]
        if check.status != "pass":
            cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _legend(report), ""]
    lines += [f"- {line}" for line in _findings(report)]
    return "\n".join(lines).rstrip() + "\n"


def render_junit(report: GateReport) -> str:
    """JUnit XML: one testcase per finding; a regression is a failure, cannot-compare an error, an
    ignored task skipped. CI systems show these without parsing evalkit's own output."""
    statuses = [check.status for check in report.checks]
    suite = ElementTree.Element("testsuite", name="evalkit gate", tests=str(len(statuses)),
                                failures=str(statuses.count("regression")), errors=str(statuses.count("cannot compare")),
                                skipped=str(statuses.count("ignored")), time="0")
    for check in report.checks:
        case = ElementTree.SubElement(suite, "testcase", classname=check.task, name=check.metric, time="0")
        message = "; ".join(check.reasons)
        detail = "  ".join(f"{h}={v}" for h, v in zip(_HEADER, _row(check)))
        if check.status == "regression":
            ElementTree.SubElement(case, "failure", message=message, type="regression").text = detail
        elif check.status == "cannot compare":
            ElementTree.SubElement(case, "error", message=message, type="cannot compare").text = detail
        elif check.status == "ignored":
            ElementTree.SubElement(case, "skipped", message=message)
        else:
            ElementTree.SubElement(case, "system-out").text = detail
    root = ElementTree.Element("testsuites")
    root.append(suite)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def write_step_summary(report: GateReport) -> Path | None:
    """Append the Markdown report to $GITHUB_STEP_SUMMARY when GitHub Actions sets it; the file written."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(render_markdown(report) + "\n")
    return Path(target)
