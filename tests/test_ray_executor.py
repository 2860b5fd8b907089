"""`evalkit run --executor ray` on a local Ray instance: the shards as Ray tasks, merged, equal the
single-process run, also when a worker running a shard is killed.

Ray workers are fresh processes, so the model is `hf:` on a tiny checkpoint (the test-only `fake:`
backend exists only in this process). batch_size=1 because a batch's padding changes the floats, and
shards batch other samples together than the single run does."""
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from evalkit.backends.hf_tiny import write_tiny_checkpoint
from evalkit.cli import main
from test_runner import comparable_samples, only_run_dir, results_without_invocation

ARGS = ["--model-args", "batch_size=1", "--tasks", "mmlu,mmlu_cot", "--data", "bundled", "--limit", "8",
        "--samples", "2", "--temperature", "0.7", "--max-tokens", "8", "--chunk-size", "1", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="module")
def single(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("single")
    assert main(["run", "--model", f"hf:{checkpoint}", *ARGS, "--output", str(output)]) == 0
    return only_run_dir(output)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def assert_same_run(merged: Path, single: Path) -> None:
    assert merged.name == single.name
    assert comparable_samples(merged) == comparable_samples(single)
    assert results_without_invocation(merged) == results_without_invocation(single)


def test_ray_run_equals_the_single_run(checkpoint, single, local_ray, tmp_path):
    assert main(["run", "--model", f"hf:{checkpoint}", *ARGS, "--output", str(tmp_path), "--executor", "ray"]) == 0
    assert_same_run(tmp_path / single.name, single)
    shards = sorted(tmp_path.glob(f"{single.name}_shard*of2"))  # one shard per CPU Ray sees
    assert len(shards) == 2
    assert json.loads((tmp_path / single.name / "config.json").read_text())["merged_from"] == [str(s.resolve()) for s in shards]


def holder_of(lock: Path) -> int | None:
    """The process that has `lock` open: the Ray worker running that shard."""
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == str(lock):
                return int(fd.parts[2])
        except OSError:
            continue
    return None


def test_killed_ray_worker_is_retried_and_the_result_is_the_same(checkpoint, single, local_ray, tmp_path):
    outcome: list[int] = []
    driver = threading.Thread(target=lambda: outcome.append(main([
        "run", "--model", f"hf:{checkpoint}", *ARGS, "--output", str(tmp_path), "--executor", "ray", "--ray-shards", "3"])))
    driver.start()
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and driver.is_alive():
        for samples in tmp_path.glob("*_shard*of3/samples.jsonl"):
            written = samples.read_text().split("\n")[:-1]  # complete lines only
            if len(written) >= 2 and not (samples.parent / "results.json").exists():
                victim = holder_of(samples.parent / ".lock")
                if victim is not None:
                    killed_shard = samples.parent
                    break
        time.sleep(0.05)
    assert victim is not None and victim != os.getpid(), "no shard was caught mid-run"
    os.kill(victim, signal.SIGKILL)
    driver.join(timeout=300)
    assert outcome == [0]
    assert (killed_shard / "results.json").exists()
    # The retry resumed: what the killed worker wrote is kept as it was (a rerun would have cached timings).
    assert set(written) <= set((killed_shard / "samples.jsonl").read_text().splitlines())
    assert_same_run(tmp_path / single.name, single)


def test_ray_flags_are_checked_before_ray_starts(checkpoint, tmp_path, capsys, monkeypatch):
    common = ["run", "--model", f"hf:{checkpoint}", *ARGS, "--output", str(tmp_path)]
    for extra, message in [(["--executor", "ray", "--ray-shards", "0"], "--ray-shards must be at least 1"),
                           (["--executor", "ray", "--ray-shards", "9"], "the largest task has 8 samples"),
                           (["--executor", "ray", "--shard", "0/2"], "--shard and --executor ray do not combine"),
                           (["--ray-shards", "2"], "--ray-shards needs --executor ray")]:
        assert main([*common, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main([*common, "--executor", "ray"]) == 2
    assert "pip install 'evalkit[ray]'" in capsys.readouterr().err


def test_a_shard_scoring_in_a_process_pool_asks_ray_for_its_scoring_cpus(checkpoint, local_ray, tmp_path):
    # math500 scores in a process pool: each shard asks for min(4, the 2 CPUs Ray has), so one shard runs.
    assert main(["run", "--model", f"hf:{checkpoint}", "--tasks", "math500", "--data", "bundled", "--limit", "4",
                 "--max-tokens", "4", "--no-progress", "--output", str(tmp_path), "--executor", "ray"]) == 0
    assert len(list(tmp_path.glob("*_shard*of1"))) == 1 and not list(tmp_path.glob("*_shard*of2"))
    # with --score-workers 1 a shard needs one CPU: one shard per CPU
    assert main(["run", "--model", f"hf:{checkpoint}", "--tasks", "math500", "--data", "bundled", "--limit", "4",
                 "--max-tokens", "4", "--no-progress", "--output", str(tmp_path / "one"), "--executor", "ray",
                 "--score-workers", "1"]) == 0
    assert len(list((tmp_path / "one").glob("*_shard*of2"))) == 2
