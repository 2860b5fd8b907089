"""The regression gate: its error rates on simulated run pairs, the exact tests it rests on, its rules,
the comparisons it refuses, its outputs, and load_run on a real run."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.errors import UserError
from evalkit.gate import (
    DEFAULT_RULES,
    DEFAULT_RULES_TOML,
    GateReport,
    RunData,
    Rules,
    TaskRule,
    TaskScores,
    compare_runs,
    gate,
    load_rules,
    mcnemar,
    paired_bootstrap_ci,
    paired_delta,
    render_junit,
    render_markdown,
    render_table,
    sign_flip,
    write_step_summary,
)
from evalkit.metrics import bootstrap_ci, per_problem_values, resolve_metric_names
from evalkit.rundir import RunDir

SIMULATIONS = 200
ITEMS = 500
ALPHA = DEFAULT_RULES.alpha
# A false-positive rate measured on 200 simulations may exceed alpha by sampling error alone.
FALSE_POSITIVE_BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


# ---------------------------------------------------------------------------------------------- in-memory runs

def sim_run(name: str, outcomes: np.ndarray, *, task: str = "sim", temperature: float = 0.0,
            metrics: tuple[str, ...] = ("accuracy", "avg@k"), sha256: str = "0" * 64,
            ids: list[str] | None = None) -> RunData:
    """A run of one task as the gate reads it from disk: `outcomes` is problems × k scores."""
    k = outcomes.shape[1]
    ids = ids or [f"q{i}" for i in range(outcomes.shape[0])]
    scores = {s: outcomes[i].tolist() for i, s in enumerate(ids)}
    answers = {s: [str(v) for v in outcomes[i]] for i, s in enumerate(ids)}
    names = resolve_metric_names(metrics, k)
    if k == 1:  # one figure, one name, as results.json writes it
        names = names[:1]
    values = {m: {"value": float(np.mean(per_problem_values(m, list(scores.values()), list(answers.values()))))} for m in names}
    spec = {"request_kind": "generate", "benchmark": "SIM", "shots": 0, "chain_of_thought": True,
            "generation": {"temperature": temperature, "top_p": 1.0, "max_tokens": 1024, "samples": k},
            "data_source": {"kind": "local", "path": f"/{name}/data", "files": {"sim/test.jsonl": sha256}},
            "prompt_sha256": "p" * 64}
    return RunData(name, {"tasks": {task: spec}}, {task: {"metrics": values, "n_per_sample": k}},
                   {task: TaskScores(scores, answers)})


def merge(*runs: RunData) -> RunData:
    """One run holding the tasks of several single-task runs."""
    return RunData(runs[0].name, {"tasks": {t: s for r in runs for t, s in r.config["tasks"].items()}},
                   {t: e for r in runs for t, e in r.results.items()}, {t: s for r in runs for t, s in r.scores.items()})


def run_pair(rng: np.random.Generator, *, agreement: float, drop: float = 0.0, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and candidate outcomes (ITEMS × k) of two models of the same quality, then a true drop.

    Each item has a difficulty p ~ Beta(1.75, 0.75) (mean accuracy 70%, spread as in real benchmarks). Each
    sample of the candidate repeats the baseline's outcome with probability `agreement` and is otherwise a
    fresh Bernoulli(p) draw, so both runs have the same accuracy on every item, correlated as two close
    checkpoints are (agreement 0: independent given p, as two sampled runs). A drop then turns correct
    candidate samples wrong with probability drop / accuracy: `drop` less accuracy in expectation."""
    p = rng.beta(1.75, 0.75, ITEMS)[:, None]
    baseline = rng.random((ITEMS, k)) < p
    candidate = np.where(rng.random((ITEMS, k)) < agreement, baseline, rng.random((ITEMS, k)) < p)
    if drop:
        candidate &= rng.random((ITEMS, k)) >= drop / candidate.mean()
    return baseline.astype(float), candidate.astype(float)


def regression_rate(*, agreement: float, drop: float = 0.0, k: int = 1, temperature: float = 0.0, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(SIMULATIONS):
        baseline, candidate = run_pair(rng, agreement=agreement, drop=drop, k=k)
        report = compare_runs(sim_run("b", baseline, temperature=temperature), sim_run("c", candidate, temperature=temperature))
        assert {c.status for c in report.checks} <= {"pass", "regression"}, render_table(report)
        flagged += report.exit_code == 1
    return flagged / SIMULATIONS


# ---------------------------------------------------------------------------------------------- acceptance

@pytest.mark.parametrize("agreement", [0.0, 0.8], ids=["independent", "correlated"])
def test_same_quality_runs_regress_at_most_at_the_significance_rate(agreement: float) -> None:
    # agreement 0: the runs disagree on 30% of items (item-level correlation 0.29); 0.8: on 6% (0.86).
    rate = regression_rate(agreement=agreement)
    assert rate <= FALSE_POSITIVE_BOUND, rate


def test_a_three_point_drop_on_500_items_is_caught_80_percent_of_the_time() -> None:
    """Assumed: the checkpoints agree on 97% of items when nothing changed (greedy decoding of two close
    checkpoints; item-level correlation 0.93), 94% with the drop. The default rules need about that:
    with 2000 simulations, power is 85% here, 78% at agreement 0.85, 71% at 0.8 (the runs disagree on 9%
    of items), 59% at 0.7, and 31% for independent runs (sampled k=1 runs: 32% of items differ)."""
    power = regression_rate(agreement=0.9, drop=0.03)
    assert power >= 0.80, power


def test_avg_at_4_uses_the_sign_flip_test_and_keeps_its_level() -> None:
    rng = np.random.default_rng(1)
    baseline, candidate = run_pair(rng, agreement=0.0, k=4)
    report = compare_runs(sim_run("b", baseline, temperature=0.6), sim_run("c", candidate, temperature=0.6))
    assert {(c.metric, c.paired.test) for c in report.checks if c.paired} == {("accuracy", "sign-flip"), ("avg@4", "sign-flip")}
    rate = regression_rate(agreement=0.0, k=4, temperature=0.6, seed=2)
    assert rate <= FALSE_POSITIVE_BOUND, rate


# ---------------------------------------------------------------------------------------------- the tests

def test_mcnemar_is_the_exact_binomial_on_discordant_pairs() -> None:
    # 8 problems lost, 2 gained: P(X >= 8) for X ~ Binomial(10, 1/2) = (45 + 10 + 1) / 1024.
    assert mcnemar(8, 2) == (56 / 1024, 112 / 1024)
    assert mcnemar(2, 8) == (1 - 11 / 1024, 112 / 1024)
    assert mcnemar(5, 5) == (638 / 1024, 1.0)
    assert mcnemar(0, 0) == (1.0, 1.0)
    baseline = np.array([1.0] * 8 + [0.0] * 2 + [1.0] * 20)
    candidate = np.array([0.0] * 8 + [1.0] * 2 + [1.0] * 20)
    paired = paired_delta(baseline, candidate, alpha=0.05)
    assert (paired.test, paired.p_drop, paired.delta, paired.n_shared) == ("McNemar exact", 56 / 1024, -0.2, 30)


def test_sign_flip_on_binary_differences_is_mcnemar() -> None:
    differences = np.array([-1.0] * 14 + [1.0] * 5 + [0.0] * 40)
    exact = mcnemar(14, 5)
    p_drop, p_two = sign_flip(differences)
    assert abs(p_drop - exact[0]) < 0.006 and abs(p_two - exact[1]) < 0.01, (p_drop, p_two, exact)


def test_paired_bootstrap_matches_resampling_problems() -> None:
    differences = np.random.default_rng(3).choice([-1.0, -0.5, 0.0, 0.25, 1.0], size=300, p=[0.1, 0.1, 0.6, 0.1, 0.1])
    ours = paired_bootstrap_ci(differences, 0.9, n_resamples=20_000)
    reference = bootstrap_ci(differences, 0.9, n_resamples=20_000)
    assert ours == pytest.approx(reference, abs=0.004)
    assert ours[0] < differences.mean() < ours[1]


# ---------------------------------------------------------------------------------------------- rules

def drop_pair(lost: int, gained: int = 0, items: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Greedy outcomes where the candidate loses `lost` items the baseline had and gains `gained`."""
    baseline = np.zeros((items, 1))
    baseline[: items // 2] = 1.0
    candidate = baseline.copy()
    candidate[:lost] = 0.0
    candidate[items // 2: items // 2 + gained] = 1.0
    return baseline, candidate


def test_a_significant_drop_within_max_drop_passes_and_a_larger_one_regresses() -> None:
    # 2 items lost, 0 gained on 200: p = 1/4, not significant; 6 lost: p = 1/64 and 3 points.
    assert compare_runs(sim_run("b", drop_pair(2)[0]), sim_run("c", drop_pair(2)[1])).exit_code == 0
    report = compare_runs(sim_run("b", drop_pair(6)[0]), sim_run("c", drop_pair(6)[1]))
    assert report.exit_code == 1 and report.verdict == "REGRESSION"
    (check,) = report.checks
    assert check.paired.delta == pytest.approx(-0.03) and check.paired.p_drop == pytest.approx(1 / 64)
    assert "drop of 3.00 points > max_drop 1" in check.reasons[0]
    # the same drop inside a wider max_drop passes
    assert compare_runs(sim_run("b", drop_pair(6)[0]), sim_run("c", drop_pair(6)[1]), Rules(max_drop=3.5)).exit_code == 0


def test_per_task_overrides_apply_to_their_task_only(tmp_path: Path) -> None:
    baseline = merge(sim_run("b", drop_pair(6)[0], task="aime"), sim_run("b", drop_pair(6)[0], task="mmlu"))
    candidate = merge(sim_run("c", drop_pair(6)[1], task="aime"), sim_run("c", drop_pair(6)[1], task="mmlu"))
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text("max_drop = 1.0\n[tasks.aime]\nmax_drop = 5.0\n")
    rules = load_rules(rules_file)
    assert rules.tasks == {"aime": TaskRule(max_drop=5.0)} and rules.threshold("mmlu") == (1.0, 0.05)
    statuses = {c.task: c.status for c in compare_runs(baseline, candidate, rules).checks}
    assert statuses == {"aime": "pass", "mmlu": "regression"}
    # a stricter alpha makes the same drop (p = 1/64) not significant
    rules_file.write_text("[tasks.mmlu]\nalpha = 0.01\n")
    statuses = {c.task: c.status for c in compare_runs(baseline, candidate, load_rules(rules_file)).checks}
    assert statuses == {"aime": "regression", "mmlu": "pass"}


def test_floors_are_absolute_minimums_of_the_candidate() -> None:
    baseline, candidate = drop_pair(0)  # both at 50.00 points, no drop at all
    rules = Rules(floors={"sim": {"accuracy": 55.0}})
    report = compare_runs(sim_run("b", baseline), sim_run("c", candidate), rules)
    (check,) = report.checks
    assert report.exit_code == 1 and check.reasons == ("50.00 is below the floor 55",)
    assert compare_runs(sim_run("b", baseline), sim_run("c", candidate), Rules(floors={"sim": {"accuracy": 50.0}})).exit_code == 0
    missing = compare_runs(sim_run("b", baseline), sim_run("c", candidate), Rules(floors={"sim": {"maj@4": 10.0}}))
    assert missing.exit_code == 2 and "candidate has no sim maj@4" in render_table(missing)


def test_ignored_tasks_are_skipped_even_when_missing() -> None:
    baseline = merge(sim_run("b", drop_pair(0)[0]), sim_run("b", drop_pair(40)[0], task="lcb"))
    candidate = sim_run("c", drop_pair(0)[1])
    assert compare_runs(baseline, candidate).exit_code == 2
    report = compare_runs(baseline, candidate, Rules(ignore=frozenset({"lcb"})))
    assert report.exit_code == 0
    assert [(c.task, c.status) for c in report.checks] == [("sim", "pass"), ("lcb", "ignored")]


def test_default_rules_are_the_documented_toml(tmp_path: Path) -> None:
    assert DEFAULT_RULES == Rules()
    (tmp_path / "rules.toml").write_text(DEFAULT_RULES_TOML)
    assert load_rules(tmp_path / "rules.toml") == Rules()
    uncommented = re.sub(r"^# (\[|accuracy|max_drop = 5|alpha = 0.10)", r"\1", DEFAULT_RULES_TOML, flags=re.M)
    (tmp_path / "rules.toml").write_text(uncommented)
    rules = load_rules(tmp_path / "rules.toml")
    assert rules.floors == {"mmlu": {"accuracy": 60.0}} and rules.threshold("aime24") == (5.0, 0.10)


@pytest.mark.parametrize("text, complaint", [
    ("max_dorp = 2\n", "unknown key max_dorp"),
    ("alpha = 0.7\n", "alpha must be a significance level"),
    ("max_drop = '1'\n", "max_drop must be a number of points"),
    ("ignore = 'lcb'\n", "ignore must be a list of task names"),
    ("[floors]\nmmlu = 60\n", "floors.mmlu must be a table"),
    ("[tasks.mmlu]\nfloor = 60\n", "unknown key tasks.mmlu.floor"),
    ("max_drop = \n", "is not valid TOML"),
])
def test_bad_rules_file_is_one_line_naming_the_file(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(complaint)) as error:
        load_rules(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UserError, match="does not exist"):
        load_rules(tmp_path / "absent.toml")


# ---------------------------------------------------------------------------------------------- cannot compare

def test_only_shared_samples_are_compared_and_the_rest_counted() -> None:
    baseline, candidate = drop_pair(0)
    ids = [f"q{i}" for i in range(200)]
    candidate_ids = ids[50:] + [f"new{i}" for i in range(10)]
    report = compare_runs(sim_run("b", baseline, ids=ids), sim_run("c", np.vstack([candidate[50:], np.ones((10, 1))]), ids=candidate_ids))
    (check,) = report.checks
    assert (check.paired.n_shared, check.paired.n_baseline_only, check.paired.n_candidate_only) == (150, 50, 10)
    assert check.paired.baseline == pytest.approx(50 / 150)
    disjoint = compare_runs(sim_run("b", baseline, ids=ids), sim_run("c", candidate, ids=[f"x{i}" for i in range(200)]))
    assert disjoint.exit_code == 2 and "no shared samples" in disjoint.checks[0].reasons[0]


def test_other_k_of_avg_is_compared_but_of_maj_is_not() -> None:
    base8, cand8 = run_pair(np.random.default_rng(4), agreement=0.0, k=8)
    base4 = base8[:, :4]
    metrics = ("accuracy", "avg@k", "maj@k")
    report = compare_runs(sim_run("b", base4, temperature=0.6, metrics=metrics), sim_run("c", cand8, temperature=0.6, metrics=metrics))
    assert [(c.metric, c.status) for c in report.checks] == [
        ("accuracy", "pass"), ("avg@4→avg@8", "pass"), ("maj@4→maj@8", "cannot compare")]
    assert report.checks[2].reasons == ("different protocol: maj@4 vs maj@8",)
    hotter = compare_runs(sim_run("b", base4, temperature=0.6), sim_run("c", base4, temperature=1.0))
    assert hotter.exit_code == 2 and "temperature 0.6 vs 1.0" in hotter.checks[0].reasons[0]


# ---------------------------------------------------------------------------------------------- outputs

def mixed_report() -> GateReport:
    baseline = merge(sim_run("b", drop_pair(6)[0], task="mmlu"), sim_run("b", drop_pair(0)[0], task="math500"),
                     sim_run("b", drop_pair(0)[0], task="aime24"), sim_run("b", drop_pair(0)[0], task="lcb"))
    candidate = merge(sim_run("c", drop_pair(6)[1], task="mmlu"), sim_run("c", drop_pair(0)[1], task="math500"),
                      sim_run("c", drop_pair(0)[1], task="aime24", sha256="f" * 64))
    return compare_runs(baseline, candidate, Rules(ignore=frozenset({"lcb"})))


def test_report_lists_each_finding_on_one_line() -> None:
    report = mixed_report()
    assert report.exit_code == 2 and report.verdict == "CANNOT COMPARE"
    table = render_table(report)
    assert "regression: mmlu accuracy: drop of 3.00 points" in table
    assert f"cannot compare: aime24: different data: sim/test.jsonl sha256 {'0' * 12} vs {'f' * 12}" in table
    assert "ignored: lcb: ignored by the rules" in table
    assert table.rstrip().endswith("gate: CANNOT COMPARE (exit 2)")


def test_junit_xml_has_a_failure_per_regression_and_an_error_per_cannot_compare() -> None:
    root = ElementTree.fromstring(render_junit(mixed_report()))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("4", "1", "1", "1")
    cases = {(case.get("classname"), case.get("name")): case for case in suite.iter("testcase")}
    assert "drop of 3.00 points" in cases[("mmlu", "accuracy")].find("failure").get("message")
    assert "different data" in cases[("aime24", "(all)")].find("error").get("message")
    assert cases[("lcb", "(all)")].find("skipped") is not None
    assert cases[("math500", "accuracy")].find("failure") is None and cases[("math500", "accuracy")].find("error") is None


def test_markdown_is_appended_to_the_github_step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = mixed_report()
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert write_step_summary(report) is None
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert write_step_summary(report) == summary
    text = summary.read_text()
    assert text.startswith("# earlier step\n### evalkit gate: CANNOT COMPARE")
    assert "| mmlu | accuracy | 50.00 | 47.00 | -3.00 |" in text and "**regression**" in text
    assert text == "# earlier step\n" + render_markdown(report) + "\n"


# ---------------------------------------------------------------------------------------------- real run directories

def evalkit_run(output: Path, *args: str) -> Path:
    assert main(["run", "--no-progress", "--data", "bundled", "--output", str(output), *args]) == 0
    (run,) = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A greedy baseline (mmlu, mmlu_cot), its replay, a replay that answers 8 right mmlu_cot items wrong,
    and a sampled run of mmlu_cot."""
    root = tmp_path_factory.mktemp("gate_runs")
    baseline = evalkit_run(root / "baseline", "--model", f"fake:{root / 'log'}", "--tasks", "mmlu,mmlu_cot")
    records = RunDir(baseline).read_samples()
    (root / "same.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    worse, lost = [], 0
    for record in records:
        if record["task"] == "mmlu_cot" and record["score"] == 1.0 and lost < 8:
            wrong = next(letter for letter in "ABCD" if letter != record["target"])
            record = {**record, "completion": f"Let me think.\nAnswer: {wrong}"}
            lost += 1
        worse.append(record)
    assert lost == 8
    (root / "worse.jsonl").write_text("".join(json.dumps(r) + "\n" for r in worse))
    return {
        "baseline": baseline,
        "same": evalkit_run(root / "same", "--model", f"replay:{root / 'same.jsonl'}", "--tasks", "mmlu,mmlu_cot"),
        "worse": evalkit_run(root / "worse", "--model", f"replay:{root / 'worse.jsonl'}", "--tasks", "mmlu,mmlu_cot"),
        "sampled": evalkit_run(root / "sampled", "--model", f"fake:{root / 'log'}", "--tasks", "mmlu,mmlu_cot",
                               "--samples", "64", "--temperature", "0.6", "--limit", "6"),
        "mmlu_only": evalkit_run(root / "mmlu_only", "--model", f"fake:{root / 'log'}", "--tasks", "mmlu"),
    }


def test_replayed_run_passes_and_a_worse_replay_regresses(runs: dict[str, Path]) -> None:
    assert gate(runs["baseline"], runs["same"]).exit_code == 0
    report = gate(runs["baseline"], runs["worse"])
    assert report.exit_code == 1
    statuses = {(c.task, c.metric): c.status for c in report.checks}
    assert statuses == {("mmlu", "accuracy"): "pass", ("mmlu_cot", "accuracy"): "regression"}
    (check,) = [c for c in report.checks if c.status == "regression"]
    assert check.paired.delta == pytest.approx(-8 / 30) and check.paired.p_drop == 2.0 ** -8


def test_greedy_against_sampled_avg_at_64_cannot_be_compared(runs: dict[str, Path]) -> None:
    report = gate(runs["baseline"], runs["sampled"])
    assert report.exit_code == 2
    assert "cannot compare: mmlu_cot accuracy: different protocol: greedy accuracy vs pass@1 over samples" in render_table(report)
    # mmlu (loglikelihood) ignores the sampling settings and is compared on the 6 shared samples
    (mmlu,) = [c for c in report.checks if c.task == "mmlu"]
    assert (mmlu.status, mmlu.paired.n_shared, mmlu.paired.n_baseline_only) == ("pass", 6, 24)


def test_other_data_and_a_missing_task_cannot_be_compared(runs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(runs["same"], other)
    config = json.loads((other / "config.json").read_text())
    original = config["tasks"]["mmlu"]["data_source"]["sha256"]
    config["tasks"]["mmlu"]["data_source"]["sha256"] = "e" * 64
    (other / "config.json").write_text(json.dumps(config))
    report = gate(runs["baseline"], other)
    assert report.exit_code == 2
    assert [(c.task, c.reasons) for c in report.checks if c.status == "cannot compare"] == [
        ("mmlu", (f"different data: sha256 {original[:12]} vs {'e' * 12}",))]
    missing = gate(runs["baseline"], runs["mmlu_only"])
    assert missing.exit_code == 2 and "cannot compare: mmlu_cot: missing from the candidate run" in render_table(missing)
    assert gate(runs["baseline"], runs["mmlu_only"], Rules(ignore=frozenset({"mmlu_cot"}))).exit_code == 0


def test_bad_run_directories_are_one_line_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a directory"):
        gate(runs["baseline"], tmp_path / "nowhere")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(runs["same"], corrupt)
    (corrupt / "results.json").write_text("{not json")
    with pytest.raises(UserError, match=re.escape(f"{corrupt / 'results.json'} is not valid JSON")):
        gate(runs["baseline"], corrupt)
    (corrupt / "results.json").write_text("{}")
    with pytest.raises(UserError, match="no \"tasks\" table"):
        gate(runs["baseline"], corrupt)
    (corrupt / "results.json").write_text((runs["same"] / "results.json").read_text())
    (corrupt / "samples.jsonl").unlink()
    with pytest.raises(UserError, match="needs per-sample scores"):
        gate(runs["baseline"], corrupt)


def test_a_run_with_failed_requests_is_not_gated_on(runs: dict[str, Path], tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    shutil.copytree(runs["same"], failed)
    records = [json.loads(line) for line in (failed / "samples.jsonl").read_text().splitlines()]
    records[3].update(outcome="error", score=None, answer=None, details={"error": "5xx after 8 retries"})
    (failed / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(UserError, match=r"samples.jsonl:4 is a request that failed \(5xx after 8 retries\); run"):
        gate(runs["baseline"], failed)


def test_load_run_gives_one_row_per_record_and_per_metric(runs: dict[str, Path]) -> None:
    pandas = pytest.importorskip("pandas")
    import evalkit

    frames = evalkit.load_run(runs["sampled"])
    assert frames.samples.shape[0] == 6 + 6 * 64  # loglikelihood mmlu: one record per sample
    assert list(frames.samples.columns) == [
        "task", "sample_id", "sample_index", "score", "outcome", "answer", "target", "finish_reason", "seconds", "cached",
        "prompt_tokens", "completion_tokens", "metadata.subject", "metadata.category"]
    assert list(frames.metrics.columns) == ["task", "metric", "value", "stderr", "ci_low", "ci_high", "n", "k"]
    assert frames.metrics[["task", "metric", "k"]].values.tolist() == [
        ["mmlu", "accuracy", 1], ["mmlu_cot", "accuracy", 64], ["mmlu_cot", "avg@64", 64], ["mmlu_cot", "maj@64", 64]]
    cot = frames.samples[frames.samples.task == "mmlu_cot"]
    assert cot.groupby("sample_id").size().eq(64).all() and pandas.api.types.is_float_dtype(cot.score)
    assert frames.config["tasks"]["mmlu_cot"]["generation"]["samples"] == 64


def test_importing_evalkit_does_not_import_pandas() -> None:
    code = "import evalkit, sys; assert 'pandas' not in sys.modules; assert callable(evalkit.load_run)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gate_command_line_exit_codes_and_junit(tmp_path):
    """The CLI path: a run against itself passes (exit 0) and writes JUnit; a different protocol exits 2."""
    import xml.etree.ElementTree as ET

    from evalkit.cli import main

    def run(output, *extra):
        replay = tmp_path / "replay.jsonl"
        replay.write_text("".join(json.dumps({"task": "mmlu_cot", "sample_id": sid, "completions": ["Answer: A"] * 2}) + "\n"
                                  for sid in _bundled_mmlu_ids()))
        assert main(["run", "--no-progress", "--model", f"replay:{replay}", "--tasks", "mmlu_cot", "--data", "bundled",
                     "--output", str(output), *extra]) == 0
        (path,) = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return path

    greedy = run(tmp_path / "greedy")
    sampled = run(tmp_path / "sampled", "--samples", "2", "--temperature", "0.6")
    junit = tmp_path / "gate.xml"
    assert main(["gate", "--baseline", str(greedy), "--candidate", str(greedy), "--junit", str(junit)]) == 0
    assert ET.parse(junit).getroot().iter("testcase")
    assert main(["gate", "--baseline", str(greedy), "--candidate", str(sampled)]) == 2


def _bundled_mmlu_ids():
    from evalkit.task import DataSpec, get_task

    return [sample.id for sample in get_task("mmlu_cot").load_samples(DataSpec("bundled")).samples]
