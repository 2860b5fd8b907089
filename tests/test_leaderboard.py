"""The leaderboard: the curated reference table, real replayed runs beside it, protocol-mismatch and
contamination marks in every format, bad input, and the page as a browser renders it."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from browser import open_page, screenshot
from evalkit.cli import main
from evalkit.errors import UserError
from evalkit.leaderboard import (BENCHMARKS, CONTAMINATED, MISMATCH, REFERENCE_COLUMNS, Contamination, build_leaderboard,
                                 default_references, headline_metric, load_references, render, write_leaderboard)
from evalkit.protocol import Protocol, differences
from evalkit.task import DataSpec, get_task

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "runs" / "leaderboard-demo"  # gitignored; `evalkit leaderboard runs/leaderboard-demo` reads it
LCB_ENV = ("EVALKIT_LCB_SINCE", "EVALKIT_LCB_UNTIL", "EVALKIT_LCB_MODEL_CUTOFF", "EVALKIT_LCB_RELEASE", "EVALKIT_LCB_COMPARE")
R1_WINDOW = ("2024-08-01", "2025-01-31")


# --- runs made the way the task tests make them: replayed outputs through the command line ---------


def _bundled(task: str) -> tuple[Any, Any]:
    definition = get_task(task)
    return definition, definition.load_samples(DataSpec("bundled"))


def _replay_records() -> list[dict[str, Any]]:
    """Outputs for the bundled samples: about two thirds right, so scores and CIs are not degenerate."""
    records: list[dict[str, Any]] = []
    mmlu, mmlu_set = _bundled("mmlu")
    for number, sample in enumerate(mmlu_set.samples):
        continuations = mmlu.build_prompt(sample, mmlu_set).continuations
        liked = continuations["ABCD".index(sample.target)] if number % 3 else continuations[0]
        records.append({"task": "mmlu", "sample_id": sample.id, "loglikelihoods": [
            {"continuation": c, "logprob": -0.3 if c == liked else -2.0, "is_greedy": c == liked} for c in continuations]})
    for number, sample in enumerate(_bundled("mmlu_cot")[1].samples):
        wrong = "ABCD"[("ABCD".index(sample.target) + 1) % 4]
        records.append({"task": "mmlu_cot", "sample_id": sample.id, "completions": [
            f"Let me think.\nAnswer: {sample.target if (number + i) % 3 else wrong}" for i in range(4)]})
    for task in ("aime24", "math500"):
        for number, sample in enumerate(_bundled(task)[1].samples):
            records.append({"task": task, "sample_id": sample.id, "completions": [
                f"So the answer is $\\boxed{{{sample.target if (number + i) % 2 else '7777'}}}$." for i in range(4)]})
    for number, sample in enumerate(_bundled("humaneval")[1].samples):
        records.append({"task": "humaneval", "sample_id": sample.id,
                        "completions": [sample.target if number % 2 == 0 else "    return None\n"]})
    for question_id, program in LCB_ANSWERS.items():
        records.append({"task": "livecodebench", "sample_id": question_id,
                        "completions": [f"```python\n{text}```" for text in program]})
    return records


def _lcb_row(question_id: str, day: str, tests: list[tuple[str, str]]) -> dict[str, str]:
    cases = json.dumps([{"input": i, "output": o, "testtype": "stdin"} for i, o in tests])
    return {"question_title": question_id, "question_content": f"Print the sum of the two numbers ({question_id}).",
            "platform": "atcoder", "question_id": question_id, "contest_id": "c1", "contest_date": f"{day}T00:00:00",
            "starter_code": "", "difficulty": "easy", "public_test_cases": cases, "private_test_cases": cases, "metadata": "{}"}


# Three problems in the R1 window; the model cutoff (2024-10-31) makes the first one contaminated.
LCB_ROWS = [_lcb_row("lcb_sep", "2024-09-10", [("1 2\n", "3\n")]), _lcb_row("lcb_dec", "2024-12-01", [("2 2\n", "4\n")]),
            _lcb_row("lcb_jan", "2025-01-15", [("5 5\n", "10\n")])]
SUM, DIFFERENCE = "a, b = map(int, input().split())\nprint(a + b)\n", "a, b = map(int, input().split())\nprint(a - b)\n"
LCB_ANSWERS = {"lcb_sep": [SUM, SUM], "lcb_dec": [SUM, DIFFERENCE], "lcb_jan": [DIFFERENCE, DIFFERENCE]}

# Each run as a user would start it: 5-shot MMLU, the R1 protocol on mmlu_cot/aime24/math500, greedy
# HumanEval, LiveCodeBench in the R1 window with a model cutoff.
RUNS = {
    "mmlu": ["--tasks", "mmlu", "--data", "bundled"],
    "r1": ["--tasks", "mmlu_cot,aime24,math500", "--data", "bundled", "--samples", "4", "--temperature", "0.6",
           "--top-p", "0.95", "--max-tokens", "32768"],
    "humaneval": ["--tasks", "humaneval", "--data", "bundled", "--score-workers", "2"],
    "livecodebench": ["--tasks", "livecodebench", "--samples", "2", "--since", R1_WINDOW[0], "--until", R1_WINDOW[1],
                      "--model-cutoff", "2024-10-31", "--score-workers", "2"],
}


def make_demo_runs(output: Path) -> dict[str, Path]:
    """Replay runs of mmlu, mmlu_cot, aime24, math500, humaneval and livecodebench into `output` (run
    directories side by side, as `evalkit run --output` writes them). Starting it again finds them done."""
    inputs = output / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    replay = inputs / "demo-model.jsonl"
    replay.write_text("".join(json.dumps(record) + "\n" for record in _replay_records()))
    (inputs / "livecodebench").mkdir(exist_ok=True)
    (inputs / "livecodebench" / "problems.jsonl").write_text("".join(json.dumps(row) + "\n" for row in LCB_ROWS))
    made = {}
    with pytest.MonkeyPatch.context() as patch:  # the CLI passes the LCB flags on through the environment
        for variable in LCB_ENV:
            patch.delenv(variable, raising=False)
        for name, args in RUNS.items():
            data = ["--data-dir", str(inputs)] if name == "livecodebench" else []
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = main(["run", "--no-progress", "--model", f"replay:{replay}", *args, *data, "--output", str(output)])
            assert code == 0, name
            made[name] = Path(printed.getvalue().rsplit("run directory: ", 1)[1].splitlines()[0].strip())
    return made


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_demo_runs(tmp_path_factory.mktemp("leaderboard") / "runs")


@pytest.fixture(scope="module")
def r1_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference table cut down to the figures DeepSeek measured for the R1 paper's Table 4 (its o1-1217
    figures are OpenAI's, sampling settings unknown)."""
    rows = list(csv.DictReader(default_references().open(encoding="utf-8")))
    path = tmp_path_factory.mktemp("refs") / "r1.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, REFERENCE_COLUMNS)
        writer.writeheader()
        writer.writerows(row for row in rows if row["source"].startswith("DeepSeek-R1 paper")
                         and row["model"] != "OpenAI-o1-1217")
    return path


def _figure(board: Any, label_start: str, benchmark: str, source_start: str = "") -> Any:
    (found,) = [f for e in board.entries if e.label.startswith(label_start) and e.detail.startswith(source_start)
                for f in e.cell(benchmark) if f.unit != "percentile"]
    return found


# --- the curated reference table ----------------------------------------------------------------


MODELS = {"GPT-4o-0513", "GPT-4-0314", "GPT-4-Turbo-0409", "Claude-3.5-Sonnet-1022", "Claude-3.5-Sonnet-0620",
          "DeepSeek-V3", "DeepSeek-V3-Base", "DeepSeek-R1", "OpenAI-o1-mini", "OpenAI-o1-1217"}


def test_reference_table_follows_the_schema_with_exact_names_and_sources() -> None:
    text = default_references().read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(csv.reader(io.StringIO(text)).__next__()) == REFERENCE_COLUMNS
    assert {row["model"] for row in rows} == MODELS
    assert {row["benchmark"] for row in rows} <= set(BENCHMARKS)
    for row in rows:
        assert row["unit"] in ("percent", "rating", "percentile") and float(row["value"]) >= 0, row
        assert ("arXiv " in row["source"] or "github.com/" in row["source"]) and row["locator"], row
        assert row["value"] == row["value"].strip() and row["value"] not in ("-", "not reported"), row
    entries = load_references()
    figures = [(entry.label, figure) for entry in entries for figure in entry.figures]
    assert len(figures) == len(rows) == 49
    assert all(isinstance(figure.protocol, Protocol) for _, figure in figures)


def test_gpt4_and_gpt4o_are_separate_rows_under_different_protocols() -> None:
    board = build_leaderboard([])
    gpt4o = _figure(board, "GPT-4o-0513", "MMLU", "DeepSeek-R1")
    gpt4 = _figure(board, "GPT-4-0314", "MMLU")
    assert (gpt4o.value, gpt4.value) == (87.2, 86.4)
    assert (gpt4.protocol.shots, gpt4.protocol.chain_of_thought) == (5, False)
    assert (gpt4o.protocol.shots, gpt4o.protocol.chain_of_thought, gpt4o.protocol.temperature) == (0, True, 0.6)
    assert "5-shot vs 0-shot" in differences(gpt4.protocol, gpt4o.protocol)
    assert "Table 2" in gpt4.locator and "2303.08774" in gpt4.source and "Table 4" in gpt4o.locator
    # Nothing that is GPT-4o's is filed under GPT-4: the GPT-4 row has no AIME, MATH-500 or Codeforces figure.
    (gpt4_entry,) = [e for e in board.entries if e.label == "GPT-4-0314"]
    assert {f.benchmark for f in gpt4_entry.figures} == {"MMLU", "HumanEval"}


@pytest.mark.parametrize("benchmark, value", [("MMLU", 90.8), ("AIME 2024", 79.8), ("MATH-500", 97.3), ("LiveCodeBench", 65.9),
                                              ("Codeforces", 2029)])
def test_deepseek_r1_figures_are_table_4s(benchmark: str, value: float) -> None:
    figure = _figure(build_leaderboard([]), "DeepSeek-R1", benchmark)
    assert figure.value == value and figure.locator.startswith("Table 4") and "2501.12948" in figure.source
    assert figure.protocol.chain_of_thought and figure.protocol.temperature == 0.6
    if benchmark == "LiveCodeBench":
        assert figure.protocol.window == R1_WINDOW


@pytest.mark.parametrize("broken, message", [
    (lambda line: line.replace(",true,", ",maybe,", 1), "chain_of_thought must be true or false"),
    (lambda line: line.split(",0.6,")[0], "the row does not have the header's 15 cells"),
    (lambda line: line.replace(",percent,", ",points,", 1), "unit must be one of percent, rating, percentile"),
])
def test_a_bad_reference_row_is_named_with_its_line(tmp_path: Path, broken: Any, message: str) -> None:
    lines = default_references().read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "refs.csv"
    bad.write_text("\n".join([lines[0], lines[1], broken(lines[2])]) + "\n")
    with pytest.raises(UserError, match=rf"refs\.csv:3: {message}"):
        load_references(bad)


# --- runs beside the references -----------------------------------------------------------------


def test_headline_metric_is_the_r1_style_pass_at_1() -> None:
    generate = {"request_kind": "generate"}
    assert headline_metric({"request_kind": "loglikelihood"}, {"accuracy": {}}, 1) == "accuracy"
    assert headline_metric(generate, {"accuracy": {}, "avg@4": {}, "maj@4": {}}, 4) == "avg@4"
    assert headline_metric(generate, {"pass@1": {}, "pass@5": {}}, 10) == "pass@1"
    assert headline_metric(generate, {"avg@1": {}, "maj@1": {}}, 1) == "avg@1"
    assert headline_metric(generate, {"maj@4": {}}, 4) is None


def test_run_values_and_cis_come_from_results_json(runs: dict[str, Path]) -> None:
    board = build_leaderboard(list(runs.values()))
    results = json.loads((runs["r1"] / "results.json").read_text())["tasks"]["aime24"]["metrics"]["avg@4"]
    figure = _figure(board, "demo-model.jsonl · " + runs["r1"].name, "AIME 2024")
    assert figure.value == pytest.approx(100 * results["value"])
    assert figure.ci == pytest.approx((100 * results["ci_low"], 100 * results["ci_high"]))
    assert figure.protocol.metric == "avg@4" and figure.task == "aime24"
    assert [e.kind for e in board.entries[:4]] == ["run"] * 4
    assert board.benchmarks == ["MMLU", "AIME 2024", "MATH-500", "HumanEval", "LiveCodeBench", "Codeforces"]


def test_a_run_with_failed_requests_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    shutil.copytree(runs["r1"], failed)
    results = json.loads((failed / "results.json").read_text())
    results["tasks"]["aime24"]["n_errors"] = 2
    (failed / "results.json").write_text(json.dumps(results))
    with pytest.raises(UserError, match="task aime24 has 2 failed request\\(s\\); run the run's command again"):
        build_leaderboard([failed])


def test_a_five_shot_greedy_run_is_flagged_against_the_r1_figures_in_every_format(runs: dict[str, Path]) -> None:
    board = build_leaderboard([runs["mmlu"]])
    (run,) = board.runs
    (mmlu,) = run.figures
    named = {name for mismatch in board.mismatches(mmlu) for entry, _ in mismatch.references for name in [entry.label]}
    assert {"GPT-4o-0513", "DeepSeek-R1", "Claude-3.5-Sonnet-1022"} <= named
    # GPT-4 and DeepSeek-V3-Base were measured 5-shot without reasoning, like this run: not flagged.
    assert not {"GPT-4-0314", "DeepSeek-V3-Base"} & named
    why = board.mismatch_text(run, mmlu)
    assert "5-shot vs 0-shot" in why and "direct answer vs chain of thought" in why
    assert "greedy accuracy vs pass@1 over samples" in why
    page = render(board, "html")
    assert f'class="mismatch" href="#mis1" title="{run.label}' in page and "5-shot vs 0-shot" in page
    markdown = render(board, "md")
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| **{run.label}")]
    assert f"{MISMATCH} (m1)" in row and "- m1: " in markdown
    (line,) = [r for r in csv.DictReader(io.StringIO(render(board, "csv"))) if r["kind"] == "run"]
    assert "5-shot vs 0-shot" in line["protocol_mismatch"]


def test_a_run_under_the_r1_protocol_is_not_flagged_against_r1_figures(runs: dict[str, Path], r1_only: Path) -> None:
    board = build_leaderboard([runs["r1"], runs["livecodebench"], runs["mmlu"]], references=r1_only)
    by_task = {f.task: (e, f) for e in board.runs for f in e.figures}
    for task in ("mmlu_cot", "aime24", "math500", "livecodebench"):
        assert board.mismatches(by_task[task][1]) == [], task
    assert board.mismatches(by_task["mmlu"][1])
    page, markdown = render(board, "html"), render(board, "md")
    assert page.count('<a class="mismatch"') == 1 and markdown.count(f"{MISMATCH} (m") == 1
    flagged = [r for r in csv.DictReader(io.StringIO(render(board, "csv"))) if r["protocol_mismatch"]]
    assert [r["task"] for r in flagged] == ["mmlu"]
    # In the charts, reference bars no run was measured like are hatched; here every R1 MMLU figure has the
    # mmlu_cot run beside it, so none is.
    assert 'class="bar reference unmatched"' not in page.split('data-benchmark="MMLU"><h3>')[1].split("</figure>")[0]


def test_markdown_and_csv_carry_figures_badges_and_sources(runs: dict[str, Path]) -> None:
    board = build_leaderboard(list(runs.values()))
    markdown = render(board, "md")
    assert markdown.splitlines()[4] == "| model | " + " | ".join(board.benchmarks) + " |"
    (r1,) = [line for line in markdown.splitlines() if line.startswith("| DeepSeek-R1 |")]
    note = board.source_note(_figure(board, "DeepSeek-R1", "MMLU"))
    assert f"**90.8** `0-shot CoT · pass@1 · T=0.6 · 32k tok` [{note}]" in r1 and "**2029** rating" in r1
    assert f"\n{note}. DeepSeek-R1 paper, arXiv 2501.12948" in markdown and 'Table 4, row "MMLU (Pass@1)"' in markdown
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    assert len(rows) == 49 + 1 + 3 + 1 + 1
    (aime,) = [r for r in rows if r["task"] == "aime24"]
    assert (aime["metric"], aime["unit"], aime["protocol"]) == ("avg@4", "percent", "0-shot CoT · avg@4 · T=0.6 · 32k tok")
    assert float(aime["ci_low"]) <= float(aime["value"]) <= float(aime["ci_high"])
    (gpt4,) = [r for r in rows if r["entry"] == "GPT-4-0314" and r["benchmark"] == "MMLU"]
    assert (gpt4["value"], gpt4["protocol"], gpt4["locator"]) == ("86.4", "5-shot · accuracy", 'Table 2, row "MMLU", column GPT-4')


def test_livecodebench_shows_its_window_contamination_and_clean_score(runs: dict[str, Path]) -> None:
    board = build_leaderboard([runs["livecodebench"]])
    (lcb,) = board.runs[0].figures
    # pass@1 over 2 samples: problems 1, 1/2, 0; the clean subset (after 2024-10-31) is 1/2, 0.
    assert lcb.value == pytest.approx(50.0) and lcb.contamination.clean_value == pytest.approx(25.0)
    assert lcb.contamination.contaminated and lcb.protocol.window == R1_WINDOW
    page = render(board, "html")
    cell = page.split('<tr class="run">')[1].split('data-benchmark="LiveCodeBench">')[1].split("</td>")[0]
    assert "2024-08-01..2025-01-31" in cell and CONTAMINATED in cell and "clean subset: 25.0" in cell
    assert "on or before the model cutoff 2024-10-31" in page
    markdown = render(board, "md")
    assert f"{CONTAMINATED} (clean 25.0)" in markdown and "2024-08-01..2025-01-31" in markdown
    (row,) = [r for r in csv.DictReader(io.StringIO(render(board, "csv"))) if r["kind"] == "run"]
    assert (row["window"], row["clean_value"]) == ("2024-08-01..2025-01-31", "25.0")


@pytest.mark.parametrize("cutoff, start, expected", [("2024-10-31", "2024-08-01", True), ("2024-07-31", "2024-08-01", False),
                                                     ("2024-08-01", "2024-08-01", True), ("2024-07-31", None, True),
                                                     (None, "2024-08-01", None)])
def test_a_window_is_contaminated_when_it_starts_on_or_before_the_cutoff(cutoff: str | None, start: str | None,
                                                                         expected: bool | None) -> None:
    assert Contamination(cutoff, start, None).contaminated is expected


def test_another_window_is_a_protocol_mismatch(runs: dict[str, Path], tmp_path: Path) -> None:
    moved = tmp_path / runs["livecodebench"].name
    shutil.copytree(runs["livecodebench"], moved)
    config = json.loads((moved / "config.json").read_text())
    config["tasks"]["livecodebench"]["data_source"]["since"] = "2024-10-01"
    (moved / "config.json").write_text(json.dumps(config))
    board = build_leaderboard([moved])
    assert "date window ('2024-10-01', '2025-01-31') vs ('2024-08-01', '2025-01-31')" in board.mismatch_text(
        board.runs[0], board.runs[0].figures[0])


# --- bad input -----------------------------------------------------------------------------------


def test_a_folder_of_runs_is_expanded_and_anything_else_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    assert len(build_leaderboard([runs["mmlu"].parent]).runs) == 4  # inputs/ beside the runs is not a run
    with pytest.raises(UserError, match="is not a run directory .* pass directories written by `evalkit run`"):
        build_leaderboard([tmp_path / "nowhere"])
    broken = tmp_path / "broken"
    shutil.copytree(runs["mmlu"], broken)
    (broken / "results.json").write_text('{"tasks": {"mmlu": ')
    with pytest.raises(UserError, match=r"results\.json is not valid JSON .*re-run") as caught:
        build_leaderboard([broken])
    assert "\n" not in str(caught.value)
    (broken / "results.json").write_text('{"tasks": {"mmlu": {"metrics": {}}}}')
    with pytest.raises(UserError, match="none of accuracy, avg@k, pass@1"):
        build_leaderboard([broken])
    with pytest.raises(UserError, match="unknown leaderboard format 'pdf'"):
        render(build_leaderboard([]), "pdf")  # type: ignore[arg-type]


# --- the page in a browser and the acceptance leaderboard ---------------------------------------------


def test_the_page_renders_offline_with_figures_marks_and_charts(runs: dict[str, Path], tmp_path: Path) -> None:
    output = write_leaderboard(list(runs.values()), tmp_path / "leaderboard.html")
    with open_page(output) as (page, errors):
        assert page.locator("table.board tbody tr").count() == 4 + len(load_references())
        assert page.locator("tr.run").count() == 4
        r1 = page.locator('tr.reference:has(span.name:text-is("DeepSeek-R1"))')
        assert "90.8" in r1.inner_text() and "0-shot CoT · pass@1 · T=0.6 · 32k tok" in r1.inner_text()
        assert page.locator("span.badge").count() >= 49 + 6
        assert page.locator("a.mismatch").count() >= 1 and page.locator("li[id^=mis]").count() == page.locator("a.mismatch").count()
        assert page.locator("table.board span.contam").count() == 1
        footnote = page.locator("sup.fn a").first.get_attribute("href")
        assert page.locator(footnote).inner_text().startswith(("DeepSeek-R1 paper", "GPT-4", "openai/", "DeepSeek-V3"))
        assert page.locator("figure.chart svg").count() >= 7
        assert page.locator("g.bar.run path.whisker").count() == 6
        assert page.locator("g.bar.reference.unmatched").count() >= 1
        assert page.locator("figure.chart").first.bounding_box()["width"] > 300
        shot = screenshot(page, "leaderboard")
        assert errors == [], errors
    assert shot.stat().st_size > 10_000


def test_acceptance_one_leaderboard_of_every_task_beside_the_references() -> None:
    """Writes runs/leaderboard-demo (replayed runs of mmlu, mmlu_cot, aime24, math500, humaneval and
    livecodebench) and runs/leaderboard-demo/leaderboard.{html,md,csv}, the files to look at."""
    made = make_demo_runs(DEMO)
    for suffix in ("html", "md", "csv"):
        write_leaderboard([DEMO], DEMO / f"leaderboard.{suffix}")
    tasks = {f.task for e in build_leaderboard([DEMO]).runs for f in e.figures}
    assert tasks == {"mmlu", "mmlu_cot", "aime24", "math500", "humaneval", "livecodebench"} and len(made) == 4
    assert "DeepSeek-R1" in (DEMO / "leaderboard.html").read_text()
