"""`evalkit run --shard I/N` and `evalkit merge`: N shards merged equal the single-process run."""
import json
from pathlib import Path

import pytest

import fakes
from evalkit.cli import main
from test_runner import (comparable_samples, generate_units, kill_run_when, only_run_dir, results_without_invocation,
                         run_cli)

GENERATE = ["--tasks", "mmlu_cot,aime24", "--data", "bundled", "--samples", "4", "--temperature", "0.7", "--seed", "3",
            "--chunk-size", "8"]
MMLU = ["--tasks", "mmlu", "--data", "bundled"]


def run_shards(args: list[str], output: Path, count: int) -> list[Path]:
    for index in range(count):
        assert run_cli([*args, "--output", str(output), "--shard", f"{index}/{count}"]) == 0
    return [next(output.glob(f"*_shard{index}of{count}")) for index in range(count)]


def assert_same_run(merged: Path, single: Path) -> None:
    assert merged.name == single.name
    assert comparable_samples(merged) == comparable_samples(single)
    assert results_without_invocation(merged) == results_without_invocation(single)
    merged_config, single_config = (json.loads((p / "config.json").read_text()) for p in (merged, single))
    assert merged_config["config_hash"] == single_config["config_hash"]
    assert merged_config["tasks"] == single_config["tasks"] and "shard" not in merged_config
    assert (merged / "report.html").exists()


@pytest.mark.parametrize("args, count", [(GENERATE, 4), (MMLU, 4), ([*GENERATE, "--limit", "10"], 8)],
                         ids=["generate-k4", "mmlu", "task-smaller-than-shards"])
def test_shards_merged_equal_the_single_run(tmp_path, args, count):
    model = ["--model", f"fake:{tmp_path / 'log'}"]
    assert run_cli([*model, *args, "--output", str(tmp_path / "single")]) == 0
    single = only_run_dir(tmp_path / "single")
    shards = run_shards([*model, *args], tmp_path / "shards", count)

    configs = [json.loads((shard / "config.json").read_text()) for shard in shards]
    assert [c["shard"] for c in configs] == [{"index": i, "count": count} for i in range(count)]
    assert {c["config_hash"] for c in configs} == {json.loads((single / "config.json").read_text())["config_hash"]}
    assert sum(len(comparable_samples(shard)) for shard in shards) == len(comparable_samples(single))

    assert main(["merge", *map(str, reversed(shards))]) == 0  # any order of arguments
    merged = tmp_path / "shards" / single.name
    assert_same_run(merged, single)
    config = json.loads((merged / "config.json").read_text())
    assert config["merged_from"] == [str(shard.resolve()) for shard in shards]
    assert config["started_at"] == min(c["started_at"] for c in configs)
    assert config["finished_at"] == max(c["finished_at"] for c in configs)

    before = {name: (merged / name).read_bytes() for name in ("samples.jsonl", "results.json", "config.json")}
    assert main(["merge", *map(str, shards), "--output", str(tmp_path / "shards")]) == 0
    assert {name: (merged / name).read_bytes() for name in before} == before


def test_a_shard_only_aggregates_its_own_samples(tmp_path):
    shards = run_shards(["--model", f"fake:{tmp_path / 'log'}", *MMLU, "--limit", "10"], tmp_path, 3)
    results = [json.loads((shard / "results.json").read_text())["tasks"]["mmlu"] for shard in shards]
    assert [r["n_samples"] for r in results] == [4, 3, 3]


def test_merge_carries_failed_request_records_as_they_are(tmp_path):
    shards = run_shards(["--model", f"fake:{tmp_path / 'log'}", "--tasks", "mmlu_cot", "--data", "bundled", "--limit", "6"],
                        tmp_path, 2)
    samples = shards[1] / "samples.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    records[0].update(completion=None, finish_reason="error", answer=None, score=None, outcome="error",
                      details={"error": "HTTP 503 after 3 retries"})
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["merge", *map(str, shards)]) == 0
    merged = tmp_path / shards[0].name.removesuffix("_shard0of2")
    assert comparable_samples(merged)[1] == {k: v for k, v in records[0].items() if k != "timing"}  # position 1: shard 1, first
    assert json.loads((merged / "results.json").read_text())["tasks"]["mmlu_cot"]["n_errors"] == 1


@pytest.fixture
def four_shards(tmp_path) -> list[Path]:
    return run_shards(["--model", f"fake:{tmp_path / 'log'}", *MMLU, "--limit", "8"], tmp_path / "runs", 4)


def merge_error(args: list[str], capsys) -> str:
    assert main(["merge", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_merge_refuses_a_shard_of_another_configuration(tmp_path, four_shards, capsys):
    other = run_shards(["--model", f"fake:{tmp_path / 'log'}", *MMLU, "--limit", "8", "--seed", "1"], tmp_path / "other", 4)
    err = merge_error([*map(str, four_shards[:3]), str(other[3])], capsys)
    assert str(other[3]) in err and "another run" in err


def test_merge_refuses_a_missing_shard(four_shards, capsys):
    err = merge_error([str(four_shards[0]), str(four_shards[1]), str(four_shards[3])], capsys)
    assert "shard 2/4 is missing" in err and str(four_shards[2]) in err


def test_merge_refuses_a_duplicated_shard(four_shards, capsys):
    err = merge_error([*map(str, four_shards), str(four_shards[1])], capsys)
    assert "both shard 1/4" in err and str(four_shards[1]) in err


def test_merge_refuses_shards_of_another_split(tmp_path, four_shards, capsys):
    two = run_shards(["--model", f"fake:{tmp_path / 'log'}", *MMLU, "--limit", "8"], tmp_path / "two", 2)
    err = merge_error([*map(str, four_shards), str(two[0])], capsys)
    assert str(two[0]) in err and "4-way split" in err


def test_merge_refuses_an_unfinished_shard(four_shards, capsys):
    config_path = four_shards[2] / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "finished_at": None}))
    err = merge_error(list(map(str, four_shards)), capsys)
    assert f"shard {four_shards[2]} is unfinished" in err


def test_merge_refuses_a_directory_that_is_not_a_shard(tmp_path, four_shards, capsys):
    assert run_cli(["--model", f"fake:{tmp_path / 'log'}", *MMLU, "--limit", "8", "--output", str(tmp_path / "whole")]) == 0
    whole = only_run_dir(tmp_path / "whole")
    err = merge_error([*map(str, four_shards[:3]), str(whole)], capsys)
    assert f"{whole} is not a shard" in err
    err = merge_error([*map(str, four_shards[:3]), str(tmp_path)], capsys)
    assert f"{tmp_path} is not a run directory" in err


@pytest.mark.parametrize("shard, message", [("4/4", "0 <= I < N"), ("1", "not I/N"), ("a/b", "not I/N"), ("-1/2", "0 <= I < N"),
                                            ("0/31", "the largest task has 30 samples")])
def test_bad_shard_flag_is_one_line_exit_2(tmp_path, capsys, shard, message):
    assert run_cli(["--model", f"fake:{tmp_path / 'log'}", *MMLU, "--output", str(tmp_path), f"--shard={shard}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--shard" in err and message in err and len(err.splitlines()) == 1


def test_killed_shard_resumes_and_merges_to_the_single_run(tmp_path, capsys):
    log = tmp_path / "log"
    args = ["--model", f"fake:{log}", "--model-args", "delay=0.1", *GENERATE, "--chunk-size", "2"]
    assert run_cli([*args, "--output", str(tmp_path / "single")]) == 0
    single = only_run_dir(tmp_path / "single")
    asked_by_single = generate_units(fakes.logged_requests(log))
    output = tmp_path / "shards"
    assert run_cli([*args, "--output", str(output), "--shard", "0/3"]) == 0
    assert run_cli([*args, "--output", str(output), "--shard", "2/3"]) == 0

    shard_args = [*args, "--output", str(output), "--shard", "1/3"]
    # one chunk of mmlu_cot done, 4 more to go
    samples_file = kill_run_when(shard_args, output, "*_shard1of3/samples.jsonl", lines=8)
    shards = [only_shard(output, f"{index}of3") for index in range(3)]
    assert len(samples_file.read_text().splitlines()) < 40 and not (shards[1] / "results.json").exists()
    err = merge_error(list(map(str, shards)), capsys)
    assert f"shard {shards[1]} is unfinished" in err

    assert run_cli(shard_args) == 0  # the same command again
    asked = generate_units(fakes.logged_requests(log))
    asked.subtract(asked_by_single)
    assert set(asked.values()) == {1}  # every unit asked once by the shards: none twice, none skipped
    assert main(["merge", *map(str, shards)]) == 0
    assert_same_run(output / single.name, single)


def only_shard(output: Path, suffix: str) -> Path:
    found = list(output.glob(f"*_shard{suffix}"))
    assert len(found) == 1, found
    return found[0]
