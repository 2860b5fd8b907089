"""LiveCodeBench: data decoding (and refusing hostile pickles), prompts, extraction, date windows,
lcb_runner's comparison rules, sandboxed scoring, and replayed runs through the command line."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import pytest

from evalkit.cli import main
from evalkit.errors import DataError, UserError
from evalkit.task import DataSpec, Sample, get_task
from evalkit.tasks import livecodebench as lcb

ENV = ("EVALKIT_LCB_RELEASE", "EVALKIT_LCB_SINCE", "EVALKIT_LCB_UNTIL", "EVALKIT_LCB_MODEL_CUTOFF",
       "EVALKIT_LCB_COMPARE", "EVALKIT_LCB_TIMEOUT")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def _compressed(tests: list[dict[str, str]]) -> str:
    """The hub's encoding of large private test sets: base64(zlib(pickle(json text)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def _tests(testtype: str, *pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"input": i, "output": o, "testtype": testtype} for i, o in pairs]


def _row(question_id: str, contest_date: str, platform: str, difficulty: str, public: list[dict[str, str]],
         private: str, starter_code: str = "", func_name: str | None = None) -> dict[str, str]:
    return {
        "question_title": f"Title of {question_id}",
        "question_content": f"Solve {question_id}.",
        "platform": platform,
        "question_id": question_id,
        "contest_id": "c1",
        "contest_date": contest_date,
        "starter_code": starter_code,
        "difficulty": difficulty,
        "public_test_cases": json.dumps(public),
        "private_test_cases": private,
        "metadata": json.dumps({"func_name": func_name} if func_name else {}),
    }


STARTER = "class Solution:\n    def sumPair(self, nums: List[int], k: int) -> int:\n        "

# Three problems in the hub's schema, one per kind of row: stdin with compressed private tests,
# functional with compressed private tests, stdin with plain-JSON private tests.
ROWS = [
    _row("p_sum", "2024-09-07T00:00:00", "atcoder", "easy", _tests("stdin", ("1 2\n", "3\n")),
         _compressed(_tests("stdin", ("-5 5\n", "0\n"), ("1000000000 1000000000\n", "2000000000\n")))),
    _row("p_pair", "2025-01-31T19:30:00", "leetcode", "medium", _tests("functional", ("[1, 2, 3]\n2", "8")),
         _compressed(_tests("functional", ("[4, 4]\n0", "8"), ("[]\n7", "7"))), STARTER, "sumPair"),
    _row("p_avg", "2023-06-10T00:00:00", "codeforces", "hard", _tests("stdin", ("3\n1 2 4\n", "2.333333\n")),
         json.dumps(_tests("stdin", ("2\n1 2\n", "1.500000\n")))),
]

PROGRAMS = {
    "p_sum": {"correct": "a, b = map(int, input().split())\nprint(a + b)\n",
              "wrong": "a, b = map(int, input().split())\nprint(a - b)\n"},
    "p_pair": {"correct": "class Solution:\n    def sumPair(self, nums, k):\n        return sum(nums) + k\n",
               "wrong": "class Solution:\n    def sumPair(self, nums, k):\n        return sum(nums)\n"},
    "p_avg": {"correct": "n = int(input())\na = list(map(int, input().split()))\nprint(f'{sum(a)/n:.6f}')\n",
              "nine_digits": "n = int(input())\na = list(map(int, input().split()))\nprint(f'{sum(a)/n:.9f}')\n",
              "wrong": "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a)//n)\n"},
}


def _write_jsonl(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _write_jsonl(root / "livecodebench" / "problems.jsonl", ROWS)
    # Solution files beside the problems are not problems.
    (root / "livecodebench" / "problems_solutions.json").write_text(json.dumps(PROGRAMS))
    return root


def _load(root: Path) -> dict[str, Sample]:
    return {sample.id: sample for sample in lcb.load_samples(DataSpec("local", root)).samples}


def _fenced(program: str) -> str:
    return f"Here is my solution.\n\n```python\n{program}```\n\nIt reads the input and prints the answer."


# --- data --------------------------------------------------------------------------------------


def test_loader_decodes_compressed_and_plain_private_tests_after_the_public_ones(data_dir: Path) -> None:
    sample_set = lcb.load_samples(DataSpec("local", data_dir))
    samples = {sample.id: sample for sample in sample_set.samples}
    assert list(samples) == ["p_sum", "p_pair", "p_avg"]
    assert [(t.input, t.output, t.kind) for t in lcb._tests_for(samples["p_sum"])] == [
        ("1 2\n", "3\n", "public"), ("-5 5\n", "0\n", "private"), ("1000000000 1000000000\n", "2000000000\n", "private")]
    assert [(t.input, t.output) for t in lcb._tests_for(samples["p_pair"])] == [("[1, 2, 3]\n2", "8"), ("[4, 4]\n0", "8"), ("[]\n7", "7")]
    assert [t.kind for t in lcb._tests_for(samples["p_avg"])] == ["public", "private"]
    meta = samples["p_pair"].metadata
    assert (meta["testtype"], meta["func_name"], meta["platform"], meta["difficulty"]) == ("functional", "sumPair", "leetcode", "medium")
    assert samples["p_sum"].metadata["testtype"] == "stdin" and samples["p_sum"].metadata["func_name"] is None
    file_sha = hashlib.sha256((data_dir / "livecodebench" / "problems.jsonl").read_bytes()).hexdigest()
    assert sample_set.source["files"] == {"livecodebench/problems.jsonl": file_sha}
    assert (sample_set.source["release"], sample_set.source["compare"], sample_set.source["timeout_s"]) == ("release_latest", "official", 6.0)
    # Tests stay out of the sample: samples.jsonl holds k records per problem.
    assert "1000000000" not in json.dumps(samples["p_sum"].metadata) + json.dumps(samples["p_sum"].target)


class _Pwn:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_names_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "lcb_pwned"
    hostile = base64.b64encode(zlib.compress(pickle.dumps(_Pwn(marker)))).decode()
    # The payload is live: unpickled the ordinary way, it runs the command.
    pickle.loads(zlib.decompress(base64.b64decode(hostile)))
    assert marker.exists()
    marker.unlink()
    root = tmp_path / "data"
    _write_jsonl(root / "livecodebench" / "test.jsonl", [ROWS[0], {**ROWS[2], "question_id": "evil_1", "private_test_cases": hostile}])
    with pytest.raises(DataError, match=r"test\.jsonl:2: private_test_cases of evil_1: refusing to unpickle (posix|os)\.system"):
        lcb.load_samples(DataSpec("local", root))
    assert not marker.exists()


@pytest.mark.parametrize("private, message", [
    ("not json, not base64!", "neither JSON nor base64/zlib/pickle"),
    (base64.b64encode(zlib.compress(pickle.dumps([1, 2]))).decode(), "unpickles to list"),
    (json.dumps([{"input": "1\n"}]), "private test 0 of p_sum needs string input and output"),
])
def test_malformed_private_tests_name_the_row_and_the_problem(tmp_path: Path, private: str, message: str) -> None:
    root = tmp_path / "data"
    _write_jsonl(root / "livecodebench" / "a.jsonl", [{**ROWS[0], "private_test_cases": private}])
    with pytest.raises(DataError, match=rf"a\.jsonl:1: .*{message}"):
        lcb.load_samples(DataSpec("local", root))


def test_local_copies_of_the_hub_files_follow_the_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    _write_jsonl(root / "livecodebench" / "test.jsonl", [ROWS[0]])
    _write_jsonl(root / "livecodebench" / "test2.jsonl", [ROWS[1]])
    _write_jsonl(root / "livecodebench" / "extra.jsonl", [ROWS[2]])
    assert list(_load(root)) == ["p_avg", "p_sum", "p_pair"]  # extra.jsonl, test.jsonl, test2.jsonl
    monkeypatch.setenv("EVALKIT_LCB_RELEASE", "release_v1")
    sample_set = lcb.load_samples(DataSpec("local", root))
    assert [s.id for s in sample_set.samples] == ["p_avg", "p_sum"]
    assert sorted(sample_set.source["files"]) == ["livecodebench/extra.jsonl", "livecodebench/test.jsonl"]
    monkeypatch.setenv("EVALKIT_LCB_RELEASE", "release_v9")
    with pytest.raises(UserError, match="release_v9"):
        lcb.load_samples(DataSpec("local", root))


def test_a_duplicate_question_id_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_jsonl(root / "livecodebench" / "a.jsonl", [ROWS[0], ROWS[0]])
    with pytest.raises(DataError, match=r"a\.jsonl:2: a second row for p_sum \(the first is at .*a\.jsonl:1\)"):
        lcb.load_samples(DataSpec("local", root))


def test_the_hub_unreachable_is_a_data_error_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(*args: Any, **kwargs: Any) -> str:
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DataError, match=r"cannot load livecodebench/code_generation_lite file test\.jsonl .*no network.*"
                                        r"pass --data-dir DIR with livecodebench/\*\.jsonl, or --data bundled"):
        lcb.load_samples(DataSpec("hf"))


def test_hub_files_are_read_like_local_ones_with_an_unpinned_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import huggingface_hub

    files = {"test.jsonl": [ROWS[0]], "test2.jsonl": [ROWS[1]]}
    for name, rows in files.items():
        _write_jsonl(tmp_path / name, rows)
    asked = []

    def download(repo_id: str, filename: str, repo_type: str, revision: str) -> str:
        asked.append((repo_id, filename, repo_type, revision))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setenv("EVALKIT_LCB_RELEASE", "release_v2")
    with caplog.at_level("WARNING", logger="evalkit"):
        sample_set = lcb.load_samples(DataSpec("hf"))
    assert asked == [("livecodebench/code_generation_lite", name, "dataset", "main") for name in files]
    assert [s.id for s in sample_set.samples] == ["p_sum", "p_pair"]
    assert sample_set.source["dataset"] == "livecodebench/code_generation_lite" and sorted(sample_set.source["files"]) == sorted(files)
    assert "not a pinned commit" in caplog.text


# --- dates ---------------------------------------------------------------------------------------


def test_the_date_window_keeps_whole_days_at_both_ends(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # p_pair is dated 2025-01-31T19:30: lcb_runner's midnight end bound would drop it.
    monkeypatch.setenv("EVALKIT_LCB_UNTIL", "2025-01-31")
    assert list(_load(data_dir)) == ["p_sum", "p_pair", "p_avg"]
    monkeypatch.setenv("EVALKIT_LCB_UNTIL", "2025-01-30")
    assert list(_load(data_dir)) == ["p_sum", "p_avg"]
    monkeypatch.setenv("EVALKIT_LCB_SINCE", "2024-09-07")
    monkeypatch.setenv("EVALKIT_LCB_UNTIL", "2025-01-31")
    sample_set = lcb.load_samples(DataSpec("local", data_dir))
    assert [s.id for s in sample_set.samples] == ["p_sum", "p_pair"]
    assert (sample_set.source["since"], sample_set.source["until"]) == ("2024-09-07", "2025-01-31")
    monkeypatch.setenv("EVALKIT_LCB_SINCE", "2024-09-08")
    assert list(_load(data_dir)) == ["p_pair"]
    monkeypatch.setenv("EVALKIT_LCB_SINCE", "2025-02-01")
    with pytest.raises(UserError, match="since 2025-02-01 is after until 2025-01-31"):
        _load(data_dir)
    monkeypatch.setenv("EVALKIT_LCB_SINCE", "31/01/2025")
    with pytest.raises(UserError, match="EVALKIT_LCB_SINCE='31/01/2025': give a day as YYYY-MM-DD"):
        _load(data_dir)


def test_problems_up_to_the_model_cutoff_are_marked_contaminated(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert {qid: s.metadata["contaminated"] for qid, s in _load(data_dir).items()} == {
        "p_sum": "unknown", "p_pair": "unknown", "p_avg": "unknown"}
    monkeypatch.setenv("EVALKIT_LCB_MODEL_CUTOFF", "2024-09-07")  # the day of p_sum's contest counts as seen
    sample_set = lcb.load_samples(DataSpec("local", data_dir))
    assert {s.id: s.metadata["contaminated"] for s in sample_set.samples} == {"p_sum": "yes", "p_pair": "no", "p_avg": "yes"}
    assert sample_set.source["model_cutoff"] == "2024-09-07"
    monkeypatch.setenv("EVALKIT_LCB_MODEL_CUTOFF", "2024-09-06")
    assert _load(data_dir)["p_sum"].metadata["contaminated"] == "no"


@pytest.mark.parametrize("name, value, message", [
    ("EVALKIT_LCB_COMPARE", "loose", "official or tolerant"),
    ("EVALKIT_LCB_TIMEOUT", "0", "per-test time limit"),
    ("EVALKIT_LCB_TIMEOUT", "six", "per-test time limit"),
    ("EVALKIT_LCB_MODEL_CUTOFF", "2024-13-01", "YYYY-MM-DD"),
])
def test_bad_options_are_user_errors(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    assert lcb.lcb_options() == lcb.LcbOptions()
    monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=message):
        lcb.lcb_options()


# --- prompts and extraction ----------------------------------------------------------------------


def test_prompts_are_lcb_runners_generic_template(data_dir: Path) -> None:
    samples = _load(data_dir)
    stdin = lcb.build_prompt(samples["p_sum"], None).messages
    assert stdin == ({"role": "user", "content": (
        "### Question:\nSolve p_sum.\n\n"
        "### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test "
        "on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program "
        "runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n"
        "```python\n# YOUR CODE HERE\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n")},)
    functional = lcb.build_prompt(samples["p_pair"], None).messages
    assert functional == ({"role": "user", "content": (
        "### Question:\nSolve p_pair.\n\n"
        "### Format: You will use the following starter code to write the solution to the problem and enclose your "
        "code within delimiters.\n"
        f"```python\n{STARTER}\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n")},)


@pytest.mark.parametrize("completion, program", [
    ("```python\nprint(1)\n```", "print(1)"),
    ("First try:\n```python\nprint(1)\n```\nBetter:\n```\nprint(2)\nprint(3)\n```\nDone.", "print(2)\nprint(3)"),
    ("<think>maybe ```x``` here</think>\n```python\nprint(4)\n```", "print(4)"),
    ("no code at all", ""),
    ("```python\nprint(5)", ""),  # cut off before the closing fence
])
def test_extraction_takes_the_last_fenced_block(completion: str, program: str) -> None:
    assert lcb.extract_program(completion) == program


def test_a_trailing_main_guard_is_unwrapped_and_nothing_else() -> None:
    code = "def main():\n    print(1)\n\nif __name__ == \"__main__\":\n    main()\n"
    assert lcb.unwrap_main_guard(code) == "def main():\n    print(1)\nmain()"
    guarded_first = "if __name__ == '__main__':\n    print(1)\nx = 2\n"
    assert lcb.unwrap_main_guard(guarded_first) == guarded_first
    assert lcb.unwrap_main_guard("def f(:\n") == "def f(:\n"


# --- comparison ----------------------------------------------------------------------------------


@pytest.mark.parametrize("got, expected, official, tolerant", [
    ("3\n", "3\n", True, True),
    ("  3  \n\n\n", "3", True, True),  # lines stripped, trailing empty lines ignored
    ("1 2\r\n3\n", "1 2\n3\n", True, True),
    ("1  2\n", "1 2\n", True, True),  # the Decimal retry splits on any whitespace
    ("1.50\n", "1.5\n", True, True),  # equal Decimals
    ("1e2\n", "100\n", True, True),
    ("3\n4\n", "3\n", False, False),  # a line more
    ("\n3\n", "3\n", True, True),  # the whole output is stripped first
    ("3\n\n4\n", "3\n4\n", False, False),  # an empty line inside counts
    ("0.333333333\n", "0.3333333333\n", False, True),  # exact Decimal comparison rejects it
    ("2.333333333\n", "2.333333\n", False, True),
    ("0.33\n", "0.3333333\n", False, False),
    ("Yes 0.5000001\n", "Yes 0.5\n", False, True),  # tolerant: words equal as text, numbers close
    ("yes\n", "Yes\n", False, False),
    ("100000000000000001\n", "100000000000000000\n", False, False),  # integers stay exact
    ("1 2\n", "1 2 3\n", False, False),
    ("nan\n", "NaN\n", False, False),
    ("sNaN\n", "sNaN\n", True, True),  # equal text; the Decimal retry would raise on a signalling NaN
    ("sNaN 1\n", "sNaN 2\n", False, False),
])
def test_stdout_comparison_official_and_tolerant(got: str, expected: str, official: bool, tolerant: bool) -> None:
    assert lcb.stdout_matches(got, expected, "official") is official
    assert lcb.stdout_matches(got, expected, "tolerant") is tolerant


@pytest.mark.parametrize("got, expected, official, tolerant", [
    ((1, 2), [1, 2], True, True),  # a returned tuple is a list
    ([(1, 2)], [[1, 2]], False, False),  # only at the top, as lcb_runner does
    (2.0, 2, True, True),
    (0.1 + 0.2, 0.3, False, True),
    ([1.0000001, "a"], [1.0, "a"], False, True),
    ({"x": 0.30000000000000004}, {"x": 0.3}, False, True),
    (True, 1, True, True),
    ({1, 2}, [1, 2], False, False),
    (10**400, 1e300, False, False),
    ("5", 5, False, False),
])
def test_function_result_comparison_official_and_tolerant(got: Any, expected: Any, official: bool, tolerant: bool) -> None:
    assert lcb.value_matches(got, expected, "official") is official
    assert lcb.value_matches(got, expected, "tolerant") is tolerant


# --- scoring in the sandbox ----------------------------------------------------------------------


def _score(sample: Sample, program: str | None) -> Any:
    return lcb.score(sample, "no code here" if program is None else _fenced(program))


@pytest.mark.parametrize("question_id, program, outcome, failed", [
    ("p_sum", PROGRAMS["p_sum"]["correct"], "passed", None),
    ("p_sum", PROGRAMS["p_sum"]["wrong"], "wrong_answer", (0, "public")),
    ("p_sum", "a, b = map(int, input().split())\nprint(a + b if a != -5 else 1)\n", "wrong_answer", (1, "private")),
    ("p_sum", "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n\nif __name__ == '__main__':\n    main()\n",
     "passed", None),
    ("p_sum", "import sys\na, b = map(int, input().split())\nprint(a + b)\nsys.exit(3)\n", "passed", None),  # SystemExit swallowed
    ("p_sum", "a, b = map(int, sys.stdin.readline().split())\nprint(a + b)\n", "passed", None),  # lcb_runner's imports
    ("p_sum", "from dataclasses import dataclass\n@dataclass\nclass P:\n    a: int\n    b: int\n"
              "p = P(*map(int, input().split()))\nprint(p.a + p.b)\n", "passed", None),
    ("p_sum", "print(1 // 0)\n", "runtime_error", (0, "public")),
    ("p_sum", "while True:\n    pass\n", "timeout", (0, "public")),
    ("p_pair", PROGRAMS["p_pair"]["correct"], "passed", None),
    ("p_pair", PROGRAMS["p_pair"]["wrong"], "wrong_answer", (0, "public")),
    ("p_pair", "class Solution:\n    def sumPair(self, nums: List[int], k: int) -> int:\n        return (sum(nums) + k,)[0]\n",
     "passed", None),
    ("p_pair", "class Solution:\n    def sumPair(self, nums, k):\n        return nums[0] + sum(nums) + k - nums[0]\n",
     "runtime_error", (2, "private")),  # IndexError on the empty list
    ("p_pair", "class Solution:\n    def sumPair(self, nums, k):\n        while True:\n            pass\n",
     "timeout", (0, "public")),
    ("p_pair", "class Solution:\n    def sumPair(self, nums, k):\n        return sum(nums) + k\n\n"
               "if __name__ == '__main__':\n    print(Solution().sumPair(list(map(int, input().split())), 0))\n",
     "passed", None),  # the demo under the guard does not run (it would wait for stdin)
    ("p_avg", PROGRAMS["p_avg"]["nine_digits"], "wrong_answer", (0, "public")),
    ("p_avg", PROGRAMS["p_avg"]["correct"], "passed", None),
])
def test_scoring_runs_the_program_on_every_test_and_stops_at_the_first_failure(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch, question_id: str, program: str, outcome: str,
        failed: tuple[int, str] | None) -> None:
    monkeypatch.setenv("EVALKIT_LCB_TIMEOUT", "1")
    sample = _load(data_dir)[question_id]
    score = _score(sample, program)
    assert (score.outcome, score.value) == (outcome, 1.0 if outcome == "passed" else 0.0), score.details
    assert score.answer == program.rstrip("\n")
    assert score.details["isolation"] in ("bwrap", "none")
    assert (score.details["compare"], score.details["timeout_s"], score.details["n_tests"]) == ("official", 1.0, 3 if question_id != "p_avg" else 2)
    if failed is None:
        assert "failed_test" not in score.details
    else:
        assert (score.details["failed_test"], score.details["failed_test_kind"]) == failed


def test_no_code_block_is_a_fail_without_running_anything(data_dir: Path) -> None:
    score = _score(_load(data_dir)["p_sum"], None)
    assert (score.value, score.outcome, score.answer) == (0.0, "no_code", None)


def test_functional_tests_that_are_not_json_are_a_data_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_jsonl(root / "livecodebench" / "a.jsonl", [{**ROWS[1], "private_test_cases": json.dumps(
        _tests("functional", ("[1, 2]\n", "3")))}])  # a trailing newline makes an empty, non-JSON argument
    sample = _load(root)["p_pair"]
    with pytest.raises(DataError, match="private test 1 of p_pair is not JSON, one value per line"):
        _score(sample, PROGRAMS["p_pair"]["correct"])


def test_a_failure_shows_what_was_printed_and_expected_truncated(data_dir: Path) -> None:
    score = _score(_load(data_dir)["p_sum"], "print('x' * 1000)\n")
    assert score.outcome == "wrong_answer"
    assert score.details["got"] == "x" * 200 + "...(801 more chars)"
    assert score.details["expected"] == "3\n"


def test_tolerant_mode_accepts_more_digits_and_is_recorded(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_LCB_COMPARE", "tolerant")
    sample_set = lcb.load_samples(DataSpec("local", data_dir))
    assert sample_set.source["compare"] == "tolerant"
    score = _score({s.id: s for s in sample_set.samples}["p_avg"], PROGRAMS["p_avg"]["nine_digits"])
    assert (score.outcome, score.details["compare"]) == ("passed", "tolerant")


def test_a_fresh_process_reloads_the_tests_and_notices_changed_data(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = _load(data_dir)["p_pair"]
    # As after `evalkit rescore` in a new process: the sample as samples.jsonl stores it, nothing cached.
    stored = Sample(sample.id, None, sample.target, json.loads(json.dumps(sample.metadata)))
    monkeypatch.setattr(lcb, "_TESTS", {})
    assert _score(stored, PROGRAMS["p_pair"]["correct"]).outcome == "passed"
    assert len(lcb._TESTS) == 3
    monkeypatch.setattr(lcb, "_TESTS", {})
    changed = [ROWS[0], {**ROWS[1], "public_test_cases": json.dumps(_tests("functional", ("[1, 2, 3]\n2", "9")))}, ROWS[2]]
    _write_jsonl(data_dir / "livecodebench" / "problems.jsonl", changed)
    with pytest.raises(DataError, match="tests of p_pair .* the data changed since the run"):
        _score(stored, PROGRAMS["p_pair"]["correct"])


# --- the shared fixture (lcb_runner's verdicts, per SOURCE.md) -------------------------------------


@pytest.mark.shared_data
def test_the_shared_fixture_gets_the_verdicts_lcb_runner_gives(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    solutions = json.loads((shared_data / "livecodebench" / "synthetic_fixture_solutions.json").read_text())
    samples = _load(shared_data)
    assert sorted(samples) == sorted(solutions) == ["synth_func_002", "synth_stdin_001", "synth_stdin_003"]
    for question_id, programs in solutions.items():
        assert _score(samples[question_id], programs["correct"]).outcome == "passed", question_id
        assert _score(samples[question_id], programs["wrong"]).outcome == "wrong_answer", question_id
    exact_decimal = solutions["synth_stdin_003"]["correct_but_fails_exact_decimal_compare"]
    assert _score(samples["synth_stdin_003"], exact_decimal).outcome == "wrong_answer"
    monkeypatch.setenv("EVALKIT_LCB_COMPARE", "tolerant")
    tolerant = _load(shared_data)
    assert _score(tolerant["synth_stdin_003"], exact_decimal).outcome == "passed"
    for question_id, programs in solutions.items():
        assert _score(tolerant[question_id], programs["correct"]).outcome == "passed", question_id
        assert _score(tolerant[question_id], programs["wrong"]).outcome == "wrong_answer", question_id


# --- the bundled set (original problems for offline runs) ------------------------------------------


BUNDLED_PATH = Path(lcb.__file__).parent / "data" / lcb.BUNDLED_FILE

# A reference solution per bundled problem, and a wrong program with the test it first fails: the
# reference proves each problem's tests agree with its statement (the data file was written with
# brute-force oracles, not with these programs).
BUNDLED_PROGRAMS: dict[str, dict[str, Any]] = {
    "evalkit_lantern_toggles": {
        "correct": ("n, m = map(int, input().split())\n"
                    "flips = [0] * (n + 2)\n"
                    "for _ in range(m):\n"
                    "    left, right = map(int, input().split())\n"
                    "    flips[left] += 1\n"
                    "    flips[right + 1] -= 1\n"
                    "lit = running = 0\n"
                    "for i in range(1, n + 1):\n"
                    "    running += flips[i]\n"
                    "    lit += running % 2\n"
                    "print(lit)\n"),
        # Treats R_j as exclusive.
        "wrong": ("n, m = map(int, input().split())\n"
                  "flips = [0] * (n + 2)\n"
                  "for _ in range(m):\n"
                  "    left, right = map(int, input().split())\n"
                  "    flips[left] += 1\n"
                  "    flips[right] -= 1\n"
                  "lit = running = 0\n"
                  "for i in range(1, n + 1):\n"
                  "    running += flips[i]\n"
                  "    lit += running % 2\n"
                  "print(lit)\n"),
        "wrong_fails_at": (1, "public"),
    },
    "evalkit_balanced_ribbon": {
        "correct": ("input()\n"
                    "first_seen = {0: 0}\n"
                    "balance = best = 0\n"
                    "for i, square in enumerate(input().strip(), 1):\n"
                    "    balance += 1 if square == 'R' else -1\n"
                    "    best = max(best, i - first_seen.setdefault(balance, i))\n"
                    "print(best)\n"),
        # Only looks at pieces that start at the left end.
        "wrong": ("input()\n"
                  "balance = best = 0\n"
                  "for i, square in enumerate(input().strip(), 1):\n"
                  "    balance += 1 if square == 'R' else -1\n"
                  "    if balance == 0:\n"
                  "        best = i\n"
                  "print(best)\n"),
        "wrong_fails_at": (6, "private"),
    },
    "evalkit_dial_lock": {
        "correct": ("for _ in range(int(input())):\n"
                    "    input()\n"
                    "    shown, wanted = input().strip(), input().strip()\n"
                    "    steps = [abs(int(a) - int(b)) for a, b in zip(shown, wanted)]\n"
                    "    print(sum(min(step, 10 - step) for step in steps))\n"),
        # Every answer on one line.
        "wrong": ("answers = []\n"
                  "for _ in range(int(input())):\n"
                  "    input()\n"
                  "    shown, wanted = input().strip(), input().strip()\n"
                  "    steps = [abs(int(a) - int(b)) for a, b in zip(shown, wanted)]\n"
                  "    answers.append(sum(min(step, 10 - step) for step in steps))\n"
                  "print(*answers)\n"),
        "wrong_fails_at": (0, "public"),
    },
    "evalkit_courtyard_walk": {
        "correct": ("from collections import deque\n"
                    "h, w = map(int, input().split())\n"
                    "grid = [input() for _ in range(h)]\n"
                    "start = next((i, row.index('S')) for i, row in enumerate(grid) if 'S' in row)\n"
                    "steps = {start: 0}\n"
                    "queue = deque([start])\n"
                    "answer = -1\n"
                    "while queue:\n"
                    "    i, j = queue.popleft()\n"
                    "    if grid[i][j] == 'G':\n"
                    "        answer = steps[i, j]\n"
                    "        break\n"
                    "    for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):\n"
                    "        if 0 <= a < h and 0 <= b < w and grid[a][b] != '#' and (a, b) not in steps:\n"
                    "            steps[a, b] = steps[i, j] + 1\n"
                    "            queue.append((a, b))\n"
                    "print(answer)\n"),
        # Moves only down and right, so it misses paths that wind back.
        "wrong": ("h, w = map(int, input().split())\n"
                  "grid = [input() for _ in range(h)]\n"
                  "reach = [[False] * w for _ in range(h)]\n"
                  "for i in range(h):\n"
                  "    for j in range(w):\n"
                  "        if grid[i][j] == 'S':\n"
                  "            reach[i][j] = True\n"
                  "        elif grid[i][j] != '#':\n"
                  "            reach[i][j] = (i > 0 and reach[i - 1][j]) or (j > 0 and reach[i][j - 1])\n"
                  "start = next((i, row.index('S')) for i, row in enumerate(grid) if 'S' in row)\n"
                  "gate = next((i, row.index('G')) for i, row in enumerate(grid) if 'G' in row)\n"
                  "print(gate[0] - start[0] + gate[1] - start[1] if reach[gate[0]][gate[1]] else -1)\n"),
        "wrong_fails_at": (6, "private"),
    },
    "evalkit_count_peaks": {
        "correct": ("class Solution:\n"
                    "    def countPeaks(self, heights: List[int]) -> int:\n"
                    "        return sum(heights[i - 1] < heights[i] > heights[i + 1] for i in range(1, len(heights) - 1))\n"),
        # Counts an end that is higher than its one neighbour, and a lone height, as peaks.
        "wrong": ("class Solution:\n"
                  "    def countPeaks(self, heights: List[int]) -> int:\n"
                  "        padded = [-1] + heights + [-1]\n"
                  "        return sum(padded[i - 1] < padded[i] > padded[i + 1] for i in range(1, len(padded) - 1))\n"),
        "wrong_fails_at": (2, "private"),
    },
    "evalkit_spellable_words": {
        "correct": ("class Solution:\n"
                    "    def spellableWords(self, words: List[str], tiles: str) -> List[str]:\n"
                    "        have = Counter(tiles)\n"
                    "        spellable = [word for word in words if not Counter(word) - have]\n"
                    "        return sorted(spellable, key=lambda word: (-len(word), word))\n"),
        # Ignores how many tiles of a letter there are.
        "wrong": ("class Solution:\n"
                  "    def spellableWords(self, words: List[str], tiles: str) -> List[str]:\n"
                  "        spellable = [word for word in words if set(word) <= set(tiles)]\n"
                  "        return sorted(spellable, key=lambda word: (-len(word), word))\n"),
        "wrong_fails_at": (1, "public"),
    },
}


def _bundled() -> dict[str, Sample]:
    return {sample.id: sample for sample in lcb.load_samples(DataSpec("bundled")).samples}


def test_the_bundled_set_loads_with_its_file_digest_and_mixes_both_kinds() -> None:
    sample_set = lcb.load_samples(DataSpec("bundled"))
    samples = {sample.id: sample for sample in sample_set.samples}
    assert list(samples) == list(BUNDLED_PROGRAMS)
    digest = hashlib.sha256(BUNDLED_PATH.read_bytes()).hexdigest()
    assert (sample_set.source["kind"], sample_set.source["file"], sample_set.source["sha256"]) == (
        "bundled", "livecodebench_sample.jsonl", digest)
    assert sample_set.source["files"] == {"livecodebench_sample.jsonl": digest}
    assert [s.metadata["testtype"] for s in samples.values()] == ["stdin"] * 4 + ["functional"] * 2
    assert {s.metadata["difficulty"] for s in samples.values()} == {"easy", "medium"}
    assert {s.metadata["platform"] for s in samples.values()} == {"atcoder", "codeforces", "leetcode"}
    for sample in samples.values():
        tests = lcb._tests_for(sample)
        assert [t.kind for t in tests[:2]] == ["public", "public"] and 3 <= len(tests) - 2 <= 5, sample.id
        # Both sample cases are shown in the statement, as on the real platforms (LeetCode's without spaces).
        statement = "".join(sample.input["question"].split())
        assert all("".join(line.split()) in statement for t in tests[:2] for line in t.input.split("\n")), sample.id


def test_the_date_window_filters_the_bundled_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_LCB_SINCE", "2025-01-01")
    assert list(_bundled()) == ["evalkit_courtyard_walk", "evalkit_spellable_words"]
    monkeypatch.setenv("EVALKIT_LCB_SINCE", "2024-07-06")
    monkeypatch.setenv("EVALKIT_LCB_UNTIL", "2024-12-14")
    assert list(_bundled()) == ["evalkit_balanced_ribbon", "evalkit_dial_lock", "evalkit_count_peaks"]
    monkeypatch.setenv("EVALKIT_LCB_SINCE", "2025-09-01")
    monkeypatch.setenv("EVALKIT_LCB_UNTIL", "")
    with pytest.raises(DataError, match="no LiveCodeBench problems .*check the files and the date window"):
        _bundled()


@pytest.mark.parametrize("question_id", list(BUNDLED_PROGRAMS))
def test_each_bundled_problem_passes_its_reference_solution_and_fails_a_wrong_one(question_id: str) -> None:
    sample, programs = _bundled()[question_id], BUNDLED_PROGRAMS[question_id]
    score = _score(sample, programs["correct"])
    assert (score.outcome, score.details["n_tests"]) == ("passed", len(lcb._tests_for(sample))), score.details
    wrong = _score(sample, programs["wrong"])
    assert wrong.outcome == "wrong_answer", wrong.details
    assert (wrong.details["failed_test"], wrong.details["failed_test_kind"]) == programs["wrong_fails_at"]


def test_a_fresh_process_reloads_the_bundled_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = _bundled()["evalkit_spellable_words"]
    # As after `evalkit rescore` in a new process: the sample as samples.jsonl stores it, nothing cached.
    stored = Sample(sample.id, None, sample.target, json.loads(json.dumps(sample.metadata)))
    monkeypatch.setattr(lcb, "_TESTS", {})
    assert _score(stored, BUNDLED_PROGRAMS[sample.id]["correct"]).outcome == "passed"
    assert len(lcb._TESTS) == len(BUNDLED_PROGRAMS)


def test_a_replayed_run_on_the_bundled_set_through_the_command_line(tmp_path: Path) -> None:
    replay = tmp_path / "replay.jsonl"
    _write_jsonl(replay, [{"task": "livecodebench", "sample_id": qid, "completion": _fenced(programs["correct"])}
                          for qid, programs in BUNDLED_PROGRAMS.items()])
    output = tmp_path / "runs"
    code = main(["run", "--no-progress", "--model", f"replay:{replay}", "--tasks", "livecodebench", "--samples", "1",
                 "--data", "bundled", "--output", str(output)])
    assert code == 0
    (run_dir,) = [path for path in output.iterdir() if path.is_dir() and not path.name.startswith(".")]
    source = json.loads((run_dir / "config.json").read_text())["tasks"]["livecodebench"]["data_source"]
    assert (source["kind"], source["sha256"]) == ("bundled", hashlib.sha256(BUNDLED_PATH.read_bytes()).hexdigest())
    results = json.loads((run_dir / "results.json").read_text())["tasks"]["livecodebench"]
    assert (results["n_samples"], results["metrics"]["pass@1"]["value"], results["outcomes"]) == (6, 1.0, {"passed": 6})


# --- replayed runs through the command line --------------------------------------------------------


def _replayed_run(tmp_path: Path, data: Path, completions: dict[str, list[str]]) -> dict[str, Any]:
    replay = tmp_path / "replay.jsonl"
    _write_jsonl(replay, [{"task": "livecodebench", "sample_id": qid, "completions": texts} for qid, texts in completions.items()])
    output = tmp_path / "runs"
    code = main(["run", "--no-progress", "--model", f"replay:{replay}", "--tasks", "livecodebench", "--samples", "5",
                 "--data-dir", str(data), "--output", str(output), "--score-workers", "2"])
    assert code == 0
    (run_dir,) = [path for path in output.iterdir() if path.is_dir() and not path.name.startswith(".")]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tasks"]["livecodebench"]["data_source"]["model_cutoff"] == "2024-09-07"
    return json.loads((run_dir / "results.json").read_text())["tasks"]["livecodebench"]


def _check(results: dict[str, Any], ids: dict[str, str], outcomes: dict[str, int]) -> None:
    """ids maps the roles below to the fixture's question ids: easy stdin (2 of 5 right), medium
    functional (0 of 5), hard stdin (5 of 5)."""
    assert (results["n_samples"], results["n_per_sample"]) == (3, 5)
    assert list(results["metrics"]) == ["pass@1", "pass@5"]
    # pass@1 = mean of c/n = (2/5 + 0 + 1) / 3; pass@5 with n = 5 is "any correct" = 2/3.
    assert results["metrics"]["pass@1"]["value"] == pytest.approx(7 / 15)
    assert results["metrics"]["pass@5"]["value"] == pytest.approx(2 / 3)
    assert results["breakdown"]["difficulty"] == {
        "easy": {"pass@1": pytest.approx(0.4), "pass@5": 1.0},
        "hard": {"pass@1": 1.0, "pass@5": 1.0},
        "medium": {"pass@1": 0.0, "pass@5": 0.0}}
    assert {platform: values["pass@1"] for platform, values in results["breakdown"]["platform"].items()} == {
        ids["easy_platform"]: pytest.approx(0.4), ids["hard_platform"]: 1.0, "leetcode": 0.0}
    # Cutoff 2024-09-07: the easy and hard problems may have been seen; the clean subset is the functional one.
    assert results["breakdown"]["contaminated"] == {
        "no": {"pass@1": 0.0, "pass@5": 0.0}, "yes": {"pass@1": pytest.approx(0.7), "pass@5": 1.0}}
    assert results["outcomes"] == outcomes


def _completions(easy: str, medium: str, hard: str, programs: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    return {
        easy: [_fenced(programs[easy]["correct"]), _fenced(programs[easy]["wrong"]), "I cannot solve this.",
               "```python\n" + programs[easy]["correct"] + "```", _fenced(programs[easy]["wrong"])],
        medium: [_fenced(programs[medium]["wrong"])] * 4 + ["```python\nclass Solution:\n    pass\n```"],
        hard: [_fenced(programs[hard]["correct"])] * 5,
    }


def test_replayed_run_on_a_written_fixture_reports_hand_computed_pass_at_k(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_LCB_MODEL_CUTOFF", "2024-09-07")
    results = _replayed_run(tmp_path, data_dir, _completions("p_sum", "p_pair", "p_avg", PROGRAMS))
    # p_pair's "class Solution: pass" has no sumPair: a runtime error.
    _check(results, {"easy_platform": "atcoder", "hard_platform": "codeforces"},
           {"no_code": 1, "passed": 7, "runtime_error": 1, "wrong_answer": 6})


@pytest.mark.shared_data
def test_replayed_run_on_the_shared_fixture_reports_hand_computed_pass_at_k(
        tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_LCB_MODEL_CUTOFF", "2024-09-07")
    programs = json.loads((shared_data / "livecodebench" / "synthetic_fixture_solutions.json").read_text())
    results = _replayed_run(tmp_path, shared_data, _completions("synth_stdin_001", "synth_func_002", "synth_stdin_003", programs))
    _check(results, {"easy_platform": "atcoder", "hard_platform": "codeforces"},
           {"no_code": 1, "passed": 7, "runtime_error": 1, "wrong_answer": 6})


def test_command_line_window_and_cutoff_reach_the_task_and_config(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:  # recorded, so that what the CLI sets is undone after the test
        monkeypatch.setenv(name, "")
    replay = tmp_path / "replay.jsonl"
    _write_jsonl(replay, [{"task": "livecodebench", "sample_id": qid, "completion": "no code"} for qid in ("p_sum", "p_pair")])
    code = main(["run", "--no-progress", "--model", f"replay:{replay}", "--tasks", "livecodebench", "--samples", "1",
                 "--data-dir", str(data_dir), "--output", str(tmp_path / "runs"), "--since", "2024-09-07", "--until", "2025-01-31",
                 "--model-cutoff", "2024-09-07", "--lcb-compare", "tolerant"])
    assert code == 0
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")]
    source = json.loads((run_dir / "config.json").read_text())["tasks"]["livecodebench"]["data_source"]
    assert (source["until"], source["model_cutoff"], source["compare"]) == ("2025-01-31", "2024-09-07", "tolerant")
    results = json.loads((run_dir / "results.json").read_text())["tasks"]["livecodebench"]
    assert results["n_samples"] == 2 and set(results["breakdown"]["contaminated"]) == {"yes", "no"}


def test_the_task_is_registered_with_lcb_runners_defaults() -> None:
    task = get_task("livecodebench")
    assert (task.generation.temperature, task.generation.top_p, task.generation.max_tokens, task.generation.samples) == (0.2, 0.95, 2000, 10)
    assert task.metrics == ("pass@1", "pass@5") and task.parallel_scoring
    assert task.breakdown_keys == ("difficulty", "platform", "contaminated")
