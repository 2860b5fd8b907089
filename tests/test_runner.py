import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import fakes
from evalkit.cli import main

TESTS = Path(__file__).resolve().parent


def run_cli(args: list[str]) -> int:
    return main(["run", "--no-progress", *args])


def only_run_dir(output: Path) -> Path:
    runs = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def kill_run_when(args: list[str], output: Path, pattern: str, lines: int) -> Path:
    """Run `evalkit run ARGS` (with the fake backend) in a child process and SIGKILL it once the
    samples file matching OUTPUT/PATTERN holds `lines` lines; returns that file."""
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import fakes; fakes.register(); "
              f"from evalkit.cli import main; sys.exit(main(['run', '--no-progress', *{args!r}]))")
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            found = list(output.glob(pattern))
            if found and len(found[0].read_text().splitlines()) >= lines:
                return found[0]
            assert child.poll() is None, "the run finished before it could be killed; slow the fake down"
            time.sleep(0.02)
        raise AssertionError(f"no {pattern} with {lines} lines under {output} within 60 s")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def comparable_samples(run: Path) -> list[dict]:
    """samples.jsonl without what measures time (per-sample timing, the math checker's seconds)."""
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("timing")
        record["details"].pop("seconds", None)
    return records


def results_without_invocation(run: Path) -> dict:
    """results.json less what describes the process that wrote it (wall time, request counters)."""
    results = json.loads((run / "results.json").read_text())
    results.pop("invocation", None)
    return results


def generate_units(log: list[dict]) -> Counter:
    """How many times each (task, sample, sample index) was asked of the model."""
    units: Counter = Counter()
    for entry in log:
        if entry["kind"] == "generate":
            for index in range(entry["first_index"], entry["first_index"] + entry["n"]):
                units[(entry["task"], entry["sample_id"], index)] += 1
        else:
            units[(entry["task"], entry["sample_id"], entry["continuation"])] += 1
    return units


RESUME_ARGS = ["--tasks", "mmlu,mmlu_cot", "--data", "bundled", "--samples", "3", "--temperature", "0.7",
               "--chunk-size", "4", "--seed", "7"]


def test_killed_run_resumes_to_the_same_result_without_asking_twice(tmp_path):
    straight_log, resumed_log = tmp_path / "straight.log", tmp_path / "resumed.log"
    assert run_cli(["--model", f"fake:{straight_log}", "--output", str(tmp_path / "a"), *RESUME_ARGS]) == 0
    straight = only_run_dir(tmp_path / "a")

    args = ["--model", f"fake:{resumed_log}", "--model-args", "delay=0.1", "--output", str(tmp_path / "b"), *RESUME_ARGS]
    # past mmlu (30 lines), inside mmlu_cot
    samples_file = kill_run_when(args, tmp_path / "b", "*/samples.jsonl", lines=50)
    lines_at_kill = len(samples_file.read_text().splitlines())
    assert lines_at_kill < 30 + 90
    assert not (samples_file.parent / "results.json").exists()

    assert run_cli(args) == 0  # the same command again
    resumed = only_run_dir(tmp_path / "b")
    assert comparable_samples(resumed) == comparable_samples(straight)
    # the two runs differ only in the fake's log file name (model URI), hence in "model" and "config_hash"
    resumed_results, straight_results = (json.loads((p / "results.json").read_text()) for p in (resumed, straight))
    assert resumed_results["tasks"] == straight_results["tasks"]

    asked = generate_units(fakes.logged_requests(resumed_log))
    assert max(asked.values()) == 1, [unit for unit, count in asked.items() if count > 1][:5]
    assert asked == generate_units(fakes.logged_requests(straight_log))
    assert len(asked) == 30 * 4 + 30 * 3


def test_more_samples_later_asks_only_for_the_new_indices(tmp_path):
    log = tmp_path / "log"
    base = ["--model", f"fake:{log}", "--tasks", "mmlu_cot", "--data", "bundled", "--temperature", "0.6",
            "--output", str(tmp_path / "runs"), "--limit", "5"]
    assert run_cli([*base, "--samples", "2"]) == 0
    assert run_cli([*base, "--samples", "4"]) == 0
    asked = generate_units(fakes.logged_requests(log))
    assert len(asked) == 5 * 4 and max(asked.values()) == 1
    run4 = [p for p in (tmp_path / "runs").iterdir() if "_" in p.name and (p / "results.json").exists()]
    results = [json.loads((p / "results.json").read_text())["tasks"]["mmlu_cot"] for p in run4]
    assert sorted(r["n_per_sample"] for r in results) == [2, 4]
    four = next(r for r in results if r["n_per_sample"] == 4)
    assert {"accuracy", "avg@4", "maj@4"} <= set(four["metrics"])


def test_rerunning_a_finished_run_asks_nothing(tmp_path):
    log = tmp_path / "log"
    args = ["--model", f"fake:{log}", "--tasks", "mmlu", "--data", "bundled", "--output", str(tmp_path)]
    assert run_cli(args) == 0
    first = len(fakes.logged_requests(log))
    assert run_cli(args) == 0
    assert len(fakes.logged_requests(log)) == first == 30 * 4


def test_backend_returning_fewer_samples_is_an_error_not_an_average(tmp_path, capsys):
    args = ["--model", f"fake:{tmp_path / 'log'}", "--model-args", "short=true", "--tasks", "mmlu_cot", "--data", "bundled",
            "--samples", "4", "--temperature", "1", "--output", str(tmp_path)]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert "returned 3 completions for a request of n=4" in err and len(err.strip().splitlines()) == 1


def test_generate_only_backend_refuses_loglikelihood_task_before_any_work(tmp_path, capsys):
    log = tmp_path / "log"
    args = ["--model", f"fake:{log}", "--model-args", "supports=generate", "--tasks", "mmlu_cot,mmlu", "--data", "bundled",
            "--output", str(tmp_path)]
    assert run_cli(args) == 2
    assert "task 'mmlu' needs loglikelihood requests" in capsys.readouterr().err
    assert not log.exists()


def test_replay_of_a_run_reproduces_it_without_a_model(tmp_path):
    args = ["--tasks", "mmlu,mmlu_cot", "--data", "bundled", "--samples", "2", "--temperature", "0.5"]
    assert run_cli(["--model", f"fake:{tmp_path / 'log'}", "--output", str(tmp_path / "a"), *args]) == 0
    original = only_run_dir(tmp_path / "a")
    assert run_cli(["--model", f"replay:{original / 'samples.jsonl'}", "--output", str(tmp_path / "b"), *args]) == 0
    replayed = only_run_dir(tmp_path / "b")
    a, b = (json.loads((p / "results.json").read_text()) for p in (original, replayed))
    assert a["tasks"] == b["tasks"]
    strip = lambda records: [{k: v for k, v in r.items() if k != "prompt"} for r in records]  # noqa: E731
    assert strip(comparable_samples(original)) == strip(comparable_samples(replayed))


def test_replay_missing_entry_is_a_clear_error(tmp_path, capsys):
    replay = tmp_path / "outputs.jsonl"
    replay.write_text(json.dumps({"task": "mmlu_cot", "sample_id": "nope/0", "completion": "Answer: A"}) + "\n")
    code = run_cli(["--model", f"replay:{replay}", "--tasks", "mmlu_cot", "--data", "bundled", "--output", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "replay file" in err and "has no completion 0 for task 'mmlu_cot'" in err
    assert len(err.splitlines()) == 1


def test_rescore_recomputes_results_from_samples_only(tmp_path):
    assert run_cli(["--model", f"fake:{tmp_path / 'log'}", "--tasks", "mmlu_cot", "--data", "bundled",
                    "--output", str(tmp_path)]) == 0
    run = only_run_dir(tmp_path)
    before = json.loads((run / "results.json").read_text())
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    records[0]["completion"] = f"Answer: {records[0]['target']}"
    records[1]["completion"] = "no answer here"
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["rescore", str(run)]) == 0
    after = json.loads((run / "results.json").read_text())
    rescored = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert rescored[0]["score"] == 1.0 and rescored[1]["outcome"] == "no_answer"
    expected = sum(r["score"] for r in rescored) / len(rescored)
    assert after["tasks"]["mmlu_cot"]["metrics"]["accuracy"]["value"] == pytest.approx(expected)
    assert after["config_hash"] == before["config_hash"]


def test_run_directory_contract(tmp_path):
    assert run_cli(["--model", f"fake:{tmp_path / 'log'}", "--tasks", "mmlu,mmlu_cot", "--data", "bundled",
                    "--limit", "12", "--output", str(tmp_path)]) == 0
    run = only_run_dir(tmp_path)
    config = json.loads((run / "config.json").read_text())
    for key in ("model", "tasks", "seed", "limit", "data", "evalkit_version", "git", "python", "packages",
                "started_at", "finished_at", "config_hash", "backend"):
        assert key in config, key
    mmlu = config["tasks"]["mmlu"]
    assert mmlu["data_source"]["kind"] == "bundled" and len(mmlu["data_source"]["sha256"]) == 64
    assert len(mmlu["prompt_sha256"]) == 64 and mmlu["n_samples"] == 12
    assert config["tasks"]["mmlu_cot"]["generation"]["max_tokens"] == 4096
    results = json.loads((run / "results.json").read_text())
    accuracy = results["tasks"]["mmlu"]["metrics"]["accuracy"]
    assert set(accuracy) == {"value", "stderr", "ci_low", "ci_high", "n"} and accuracy["n"] == 12
    assert set(results["tasks"]["mmlu"]["breakdown"]) == {"subject", "category"}
    assert list(results["tasks"]["mmlu_cot"]["metrics"]) == ["accuracy"]  # avg@1 and maj@1 would repeat it
    assert results["model"] == f"fake:{tmp_path / 'log'}" and results["config_hash"] == config["config_hash"]
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 24
    ll = records[0]
    assert ll["task"] == "mmlu" and [c["continuation"] for c in ll["loglikelihoods"]] == [" A", " B", " C", " D"]
    gen = records[12]
    assert gen["task"] == "mmlu_cot" and gen["completion"].startswith("Let me think") and gen["answer"] in "ABCD"
    for record in records:
        assert {"prompt", "target", "score", "outcome", "answer", "timing", "sample_index"} <= set(record)


@pytest.mark.parametrize("args, message", [
    (["--model", "fake:x", "--tasks", "nosuchtask"], "unknown task 'nosuchtask'"),
    (["--model", "warp:x", "--tasks", "mmlu"], "unknown model scheme 'warp'"),
    (["--model", "no-scheme", "--tasks", "mmlu"], "is not a model URI"),
    (["--model", "hf:/nonexistent/checkpoint", "--tasks", "mmlu"], "/nonexistent/checkpoint"),
    (["--model", "fake:x", "--tasks", "mmlu", "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
    (["--model", "fake:x", "--tasks", "mmlu", "--model-args", "oops"], "not KEY=VALUE"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    assert run_cli([*args, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_corrupt_data_file_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu" / "test.jsonl").write_text('{"subject": "anatomy", "index": 0\n')
    (tmp_path / "mmlu" / "dev.jsonl").write_text("")
    assert run_cli(["--model", "fake:x", "--tasks", "mmlu", "--data-dir", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "test.jsonl" in err and len(err.splitlines()) == 1


def test_cli_subprocess_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "evalkit.cli", "run", "--model", "hf:/no/such/dir", "--tasks", "mmlu",
                             "--output", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "/no/such/dir" in result.stderr


def test_backend_crash_keeps_finished_chunks_and_resumes(tmp_path, capsys):
    log = tmp_path / "log"
    common = ["--tasks", "mmlu_cot", "--data", "bundled", "--chunk-size", "5", "--output", str(tmp_path / "runs")]
    assert run_cli(["--model", f"fake:{log}", "--model-args", "fail_after=2", *common]) == 1
    err = capsys.readouterr().err.strip()
    assert "RuntimeError: CUDA error: an illegal memory access" in err and "run the same command again" in err
    assert len(err.splitlines()) == 1
    run = only_run_dir(tmp_path / "runs")
    assert len((run / "samples.jsonl").read_text().splitlines()) == 10  # two chunks finished before the crash
    # The cache lets a different configuration (no failure injected) reuse the 10 answers.
    assert run_cli(["--model", f"fake:{log}", *common]) == 0
    assert len(generate_units(fakes.logged_requests(log))) == 30 and max(generate_units(fakes.logged_requests(log)).values()) == 1


def test_half_written_last_line_is_dropped_and_redone(tmp_path):
    log = tmp_path / "log"
    args = ["--model", f"fake:{log}", "--tasks", "mmlu_cot", "--data", "bundled", "--output", str(tmp_path / "runs"),
            "--no-cache"]
    assert run_cli(args) == 0
    run = only_run_dir(tmp_path / "runs")
    complete = (run / "samples.jsonl").read_text()
    lines = complete.splitlines(keepends=True)
    (run / "samples.jsonl").write_text("".join(lines[:7]) + lines[7][:25])  # killed while writing line 8
    (run / "results.json").unlink()
    assert run_cli(args) == 0
    assert (run / "samples.jsonl").read_text() != "" and comparable_samples(run) == [
        {k: v for k, v in json.loads(line).items() if k != "timing"} for line in complete.splitlines()]
    assert len(fakes.logged_requests(log)) == 30 + 23  # with --no-cache, only the 23 missing samples are asked again


def test_second_process_on_the_same_run_is_refused(tmp_path, capsys):
    from evalkit.rundir import RunDir

    args = ["--model", f"fake:{tmp_path / 'log'}", "--tasks", "mmlu_cot", "--data", "bundled", "--output", str(tmp_path)]
    assert run_cli(args) == 0
    holder = RunDir(only_run_dir(tmp_path))
    holder.lock()
    try:
        assert run_cli(args) == 2
        assert "in use by another evalkit process" in capsys.readouterr().err
    finally:
        holder.unlock()


def test_scoring_in_a_worker_pool_gives_the_same_records(tmp_path):
    common = ["--model", f"fake:{tmp_path / 'log'}", "--tasks", "mmlu_cot_pooled", "--data", "bundled", "--samples", "2",
              "--temperature", "0.8", "--chunk-size", "16"]
    assert run_cli([*common, "--output", str(tmp_path / "a"), "--score-workers", "1"]) == 0
    assert run_cli([*common, "--output", str(tmp_path / "b"), "--score-workers", "2"]) == 0
    alone, pooled = comparable_samples(only_run_dir(tmp_path / "a")), comparable_samples(only_run_dir(tmp_path / "b"))
    assert {r["details"].pop("pid") for r in alone} == {os.getpid()}
    assert os.getpid() not in {r["details"].pop("pid") for r in pooled}
    assert alone == pooled


def test_concurrent_backend_gets_several_chunks_at_once_and_the_same_run(tmp_path):
    args = ["--tasks", "mmlu,mmlu_cot", "--data", "bundled", "--samples", "2", "--temperature", "0.7", "--chunk-size", "4"]
    serial_log, concurrent_log = tmp_path / "serial.log", tmp_path / "concurrent.log"
    assert run_cli(["--model", f"fake:{serial_log}", "--output", str(tmp_path / "a"), *args]) == 0
    assert run_cli(["--model", f"fake:{concurrent_log}", "--model-args", "delay=0.02,concurrency=16",
                    "--output", str(tmp_path / "b"), *args]) == 0
    serial, concurrent = only_run_dir(tmp_path / "a"), only_run_dir(tmp_path / "b")
    # 16 requests at once over chunks of 4: the runner keeps 2 * 16 / 4 = 8 chunks in flight.
    assert max(entry["overlapping"] for entry in fakes.logged_requests(concurrent_log)) > 1
    assert max(entry["overlapping"] for entry in fakes.logged_requests(serial_log)) == 1
    assert comparable_samples(concurrent) == comparable_samples(serial)  # written in plan order all the same
    results = [json.loads((run / "results.json").read_text())["tasks"] for run in (serial, concurrent)]
    assert results[0] == results[1]
    assert generate_units(fakes.logged_requests(concurrent_log)) == generate_units(fakes.logged_requests(serial_log))
