"""The openai: backend against real servers on this machine: `transformers serve` on the tiny test
checkpoint (greedy completions equal to hf:, and the same results through a fault-injecting proxy),
and tests/fake_openai_server.py for what transformers serve lacks (prompt logprobs, n, reasoning
fields, API keys)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from openai_servers import fake_openai_server, fault_proxy, free_port, serve
from test_runner import comparable_samples, only_run_dir, results_without_invocation, run_cli

from evalkit.backend import GenerateRequest, LoglikelihoodRequest, load_backend
from evalkit.cli import main as cli_main

SECRET = "sk-evalkit-test-5f1d0c9a7e3b"


def math_data(root: Path, n: int = 20) -> Path:
    """A local MATH-500 file of `n` problems: the bundled ones, then variants of them."""
    bundled = Path(__file__).resolve().parent.parent / "tasks" / "data" / "math500_sample.jsonl"
    rows = [json.loads(line) for line in bundled.read_text().splitlines()]
    out = []
    for i in range(n):
        row = dict(rows[i % len(rows)])
        if i >= len(rows):
            row["unique_id"] = f"variant/{i}.json"
            row["problem"] = f"{row['problem']} (Variant {i}.)"
        out.append(row)
    (root / "math500").mkdir(parents=True, exist_ok=True)
    (root / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    return root


def outputs(run: Path) -> dict:
    return {(r["sample_id"], r["sample_index"]): (r["completion"], r["finish_reason"], r["answer"], r["score"])
            for r in comparable_samples(run)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from evalkit.backends.hf_tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="module")
def transformers_server(checkpoint, tmp_path_factory):
    """`transformers serve` on the tiny checkpoint, CPU, float32: a real OpenAI-compatible server."""
    executable = shutil.which("transformers", path=str(Path(sys.executable).parent))
    assert executable, "the transformers CLI is missing: pip install 'transformers[serving]'"
    port = free_port()
    hub = tmp_path_factory.mktemp("hub")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub), "OMP_NUM_THREADS": "1"}
    command = [executable, "serve", str(checkpoint), "--port", str(port), "--host", "127.0.0.1",
               "--device", "cpu", "--dtype", "float32"]
    with serve(command, r"Uvicorn running on", timeout=120, url=f"http://127.0.0.1:{port}/v1", env=env) as server:
        yield server


@pytest.mark.slow
def test_served_model_gives_the_same_greedy_completions_as_hf(transformers_server, checkpoint, tmp_path):
    data = math_data(tmp_path / "data")
    common = ["--tasks", "math500", "--data-dir", str(data), "--max-tokens", "24"]
    assert run_cli(["--model", f"openai:{checkpoint}", "--base-url", transformers_server.url,
                    "--output", str(tmp_path / "served"), *common]) == 0
    assert run_cli(["--model", f"hf:{checkpoint}", "--model-args", "dtype=float32",
                    "--output", str(tmp_path / "local"), *common]) == 0
    served, local = only_run_dir(tmp_path / "served"), only_run_dir(tmp_path / "local")
    assert len(outputs(served)) == 20
    assert outputs(served) == outputs(local)
    record = comparable_samples(served)[0]
    # The same chat prompt went out, through the chat API, and the server's token counts match hf's.
    assert record["prompt"]["api"] == "chat" and record["prompt"]["messages"][0]["role"] == "user"
    assert [r["usage"] for r in comparable_samples(served)] == [r["usage"] for r in comparable_samples(local)]
    results = json.loads((served / "results.json").read_text())
    local_results = json.loads((local / "results.json").read_text())
    assert results["tasks"]["math500"]["usage"] == local_results["tasks"]["math500"]["usage"]
    assert results["tasks"]["math500"]["n_truncated"] == local_results["tasks"]["math500"]["n_truncated"]
    assert results["invocation"]["wall_seconds"] > 0 and results["invocation"]["backend"]["failed"] == 0


@pytest.mark.slow
def test_faults_are_retried_to_the_same_results(transformers_server, checkpoint, tmp_path, capsys):
    data = math_data(tmp_path / "data")
    common = ["--model", f"openai:{checkpoint}", "--model-args", "timeout=3", "--tasks", "math500",
              "--data-dir", str(data), "--max-tokens", "16"]
    assert run_cli([*common, "--base-url", transformers_server.url, "--output", str(tmp_path / "clean")]) == 0
    with fault_proxy(transformers_server.url, "--rate", "0.2", "--seed", "3", "--faults", "429,500,drop,stall",
                     "--retry-after", "1", "--stall-seconds", "30") as proxy:
        assert run_cli([*common, "--base-url", proxy.url, "--output", str(tmp_path / "faulty")]) == 0
        injected = proxy.stats()["injected"]
    clean, faulty = only_run_dir(tmp_path / "clean"), only_run_dir(tmp_path / "faulty")
    assert comparable_samples(faulty) == comparable_samples(clean)
    assert results_without_invocation(faulty) == results_without_invocation(clean)
    backend = json.loads((faulty / "results.json").read_text())["invocation"]["backend"]
    assert sum(injected.values()) >= 1 and backend["failed"] == 0
    assert backend["retries"] == sum(injected.values())
    by_reason = backend["retries_by_reason"]
    assert by_reason.get("429", 0) == injected["429"] and by_reason.get("5xx", 0) == injected["500"]
    assert by_reason.get("timeout", 0) == injected["stall"] and by_reason.get("connection", 0) == injected["drop"]
    assert f"{backend['retries']} retried" in capsys.readouterr().out


@pytest.mark.slow
def test_a_dead_endpoint_is_set_aside_and_the_other_serves_everything(transformers_server, checkpoint, tmp_path):
    data = math_data(tmp_path / "data")
    common = ["--model", f"openai:{checkpoint}", "--tasks", "math500", "--data-dir", str(data), "--max-tokens", "16",
              "--max-concurrency", "4"]
    assert run_cli([*common, "--base-url", transformers_server.url, "--output", str(tmp_path / "clean")]) == 0
    with fault_proxy(transformers_server.url, "--rate", "1.0", "--faults", "500") as dead:
        assert run_cli([*common, "--base-url", f"{dead.url},{transformers_server.url}",
                        "--output", str(tmp_path / "two")]) == 0
        assert dead.stats()["forwarded"] == 0
    two = only_run_dir(tmp_path / "two")
    assert comparable_samples(two) == comparable_samples(only_run_dir(tmp_path / "clean"))
    endpoints = json.loads((two / "results.json").read_text())["invocation"]["backend"]["endpoints"]
    dead_stats, live_stats = endpoints[dead.url], endpoints[transformers_server.url]
    assert dead_stats["ejections"] >= 1 and dead_stats["failures"] == dead_stats["requests"]
    # (a keep-alive connection the server closed may cost the live one a retry, never a sample)
    assert live_stats["requests"] - live_stats["failures"] >= 20


@pytest.mark.slow
def test_a_server_without_prompt_logprobs_is_refused_before_any_work(transformers_server, checkpoint, tmp_path, capsys):
    assert run_cli(["--model", f"openai:{checkpoint}", "--base-url", transformers_server.url, "--tasks", "math500,mmlu",
                    "--data", "bundled", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "task 'mmlu' needs loglikelihood requests" in err and "ignores echo and logprobs" in err
    assert not any(tmp_path.glob("*/samples.jsonl"))


# -- the fake server: what transformers serve does not offer -------------------------------------------


def test_failed_requests_are_errors_not_wrong_answers_and_are_retried_on_rerun(tmp_path, capsys):
    with fake_openai_server() as server:
        common = ["--model", "openai:fake-model", "--model-args", "max_retries=0", "--tasks", "math500",
                  "--data", "bundled", "--max-tokens", "64", "--output", str(tmp_path / "out")]
        # Seed 5 lets the model listing and the start-up probe through, then fails about half the requests.
        with fault_proxy(server.url, "--rate", "0.5", "--seed", "5", "--faults", "500") as proxy:
            assert run_cli([*common, "--base-url", proxy.url]) == 1
        run = only_run_dir(tmp_path / "out")
        records = comparable_samples(run)
        failed = [r for r in records if r["outcome"] == "error"]
        assert len(records) == 13 and 0 < len(failed) < 13
        assert f"{len(failed)} request(s) failed after retries" in capsys.readouterr().err
        assert all(r["score"] is None and r["details"]["error"] == "5xx after 0 retries" for r in failed)
        task = json.loads((run / "results.json").read_text())["tasks"]["math500"]
        assert task["n_errors"] == len(failed) and task["n_samples"] == 13 - len(failed)
        assert task["metrics"]["avg@1"]["n"] == 13 - len(failed)  # failures are left out, not counted wrong
        # The same command with the server back: only the failed requests are asked, and the run is whole.
        before = server.stats()["requests"]["/v1/chat/completions"]
        assert run_cli([*common, "--base-url", server.url]) == 0
        assert server.stats()["requests"]["/v1/chat/completions"] - before == len(failed)
        assert only_run_dir(tmp_path / "out") == run
        assert run_cli([*common, "--base-url", server.url, "--output", str(tmp_path / "clean")]) == 0
    assert comparable_samples(run) == comparable_samples(only_run_dir(tmp_path / "clean"))
    assert results_without_invocation(run) == results_without_invocation(only_run_dir(tmp_path / "clean"))


def test_every_request_failing_gives_no_figure_rather_than_zero(tmp_path):
    from evalkit.backend import Completion
    from evalkit.results import task_results
    from evalkit.task import get_task

    record = {"sample_id": "a", "sample_index": 0, "outcome": "error", "score": None, "answer": None,
              "finish_reason": Completion("", "error").finish_reason, "usage": None, "metadata": {}}
    result = task_results(get_task("math500"), [record], 1)
    assert result["metrics"] == {} and result["n_errors"] == 1 and result["n_samples"] == 0


def test_api_key_reaches_the_server_and_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVALKIT_TEST_KEY", SECRET)
    with fake_openai_server("--require-key", SECRET) as server:
        assert run_cli(["--model", "openai:fake-model", "--base-url", server.url, "--api-key-env", "EVALKIT_TEST_KEY",
                        "--tasks", "math500,mmlu", "--data", "bundled", "--limit", "4", "--output", str(tmp_path / "out"),
                        "--cache", str(tmp_path / "cache" / "requests.sqlite")]) == 0
        assert server.stats()["authorization_seen"]
        # A wrong key fails fast with the server's message, never echoing the key that was sent.
        monkeypatch.setenv("EVALKIT_TEST_KEY", SECRET + "-wrong")
        assert run_cli(["--model", "openai:fake-model", "--base-url", server.url, "--api-key-env", "EVALKIT_TEST_KEY",
                        "--tasks", "math500", "--data", "bundled", "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "401" in captured.err and "EVALKIT_TEST_KEY" in captured.err
    assert SECRET not in captured.out + captured.err
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "requests.sqlite" for p in files) and any(p.name == "samples.jsonl" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    config = json.loads((only_run_dir(tmp_path / "out") / "config.json").read_text())
    assert config["backend"]["api_key_env"] == "EVALKIT_TEST_KEY"


def test_loglikelihood_from_echoed_prompt_logprobs(tmp_path):
    import openai

    with fake_openai_server() as server:
        backend = load_backend("openai:fake-model", base_url=server.url)
        assert "loglikelihood" in backend.supports
        context, continuation = "Question: what is two plus two?\nAnswer:", " four apples"
        [value] = backend.loglikelihood([LoglikelihoodRequest(context, continuation)])
        reply = openai.OpenAI(base_url=server.url, api_key="x").completions.create(
            model="fake-model", prompt=context + continuation, echo=True, logprobs=1, max_tokens=0)
        logprobs = reply.choices[0].logprobs
        mine = [i for i, offset in enumerate(logprobs.text_offset) if offset >= len(context)]
        assert [logprobs.tokens[i] for i in mine] == [" four", " apples"]
        assert value.logprob == pytest.approx(sum(logprobs.token_logprobs[i] for i in mine))
        greedy = all(max(logprobs.top_logprobs[i].values()) <= logprobs.token_logprobs[i] for i in mine)
        assert value.is_greedy == greedy
        backend.close()
        # Through the runner: MMLU is scored, and a second run is served from the cache.
        args = ["--model", "openai:fake-model", "--base-url", server.url, "--tasks", "mmlu", "--data", "bundled",
                "--output", str(tmp_path)]
        assert run_cli(args) == 0
        asked = server.stats()["requests"]["/v1/completions"]
        assert run_cli(args) == 0 and server.stats()["requests"]["/v1/completions"] == asked + 1  # the probe only
    records = comparable_samples(only_run_dir(tmp_path))
    assert len(records) == 30 and all(len(r["loglikelihoods"]) == 4 for r in records)


@pytest.mark.parametrize("server_flags, requests_per_sample", [((), 1), (("--ignore-n",), 4)])
def test_samples_use_n_where_the_server_honours_it(tmp_path, server_flags, requests_per_sample):
    with fake_openai_server(*server_flags) as server:
        assert run_cli(["--model", "openai:fake-model", "--base-url", server.url, "--tasks", "aime24", "--data", "bundled",
                        "--limit", "3", "--samples", "4", "--temperature", "0.8", "--output", str(tmp_path)]) == 0
        asked = server.stats()["requests"]["/v1/chat/completions"]
    assert asked == 3 * requests_per_sample
    records = comparable_samples(only_run_dir(tmp_path))
    assert len(records) == 12 and len({r["completion"] for r in records}) == 12
    results = json.loads((only_run_dir(tmp_path) / "results.json").read_text())
    assert results["invocation"]["backend"]["n_per_request"] is (not server_flags)


def test_reasoning_is_kept_apart_and_truncation_is_counted(tmp_path):
    with fake_openai_server("--reasoning") as server:
        assert run_cli(["--model", "openai:fake-model", "--base-url", server.url, "--tasks", "math500", "--data", "bundled",
                        "--max-tokens", "12", "--output", str(tmp_path)]) == 0
    run = only_run_dir(tmp_path)
    records = comparable_samples(run)
    assert all(r["reasoning"] and r["reasoning"] not in r["completion"] for r in records)
    truncated = sum(r["finish_reason"] == "length" for r in records)
    assert 0 < truncated < len(records)
    results = json.loads((run / "results.json").read_text())
    assert results["tasks"]["math500"]["n_truncated"] == truncated
    # token usage per sample, per task and for the run
    completion_tokens = sum(r["usage"]["completion_tokens"] for r in records)
    assert results["tasks"]["math500"]["usage"]["completion_tokens"] == completion_tokens
    assert results["usage"] == results["tasks"]["math500"]["usage"]


def test_generate_runs_concurrently_and_keeps_order(tmp_path):
    with fake_openai_server("--latency", "0.2") as server:
        backend = load_backend("openai:fake-model", base_url=server.url, max_concurrency=16)
        requests = [GenerateRequest(None, ({"role": "user", "content": f"question {i}"},), max_tokens=64) for i in range(64)]
        import time

        started = time.perf_counter()
        replies = backend.generate(requests)
        elapsed = time.perf_counter() - started
        again = backend.generate(requests[::-1])
        backend.close()
    # 64 requests of 0.2 s, 16 at a time: 4 rounds, not 64.
    assert elapsed < 64 * 0.2 / 4
    assert [r[0].text for r in replies] == [r[0].text for r in again[::-1]]


def test_a_large_batch_runs_on_as_many_coroutines_as_requests_in_flight():
    # One coroutine per request started all of them before the first request went out.
    import asyncio
    import threading

    async def tasks_alive() -> int:
        return len(asyncio.all_tasks()) - 1  # less this one

    with fake_openai_server("--latency", "0.01") as server:
        backend = load_backend("openai:fake-model", base_url=server.url, max_concurrency=4)
        requests = [GenerateRequest(None, ({"role": "user", "content": f"question {i}"},), max_tokens=8) for i in range(300)]
        counts: list[int] = []
        generating = threading.Thread(target=backend.generate, args=(requests,))
        generating.start()
        while generating.is_alive():
            counts.append(asyncio.run_coroutine_threadsafe(tasks_alive(), backend._loop).result())
        generating.join()
        backend.close()
    # the 4 workers, the call that awaits them, and at most one body-writing task (aiohttp) per request in flight
    assert len(counts) > 10 and max(counts) <= 4 + 1 + 4


def test_only_the_request_headers_an_api_needs_are_sent(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with fake_openai_server() as server:
        backend = load_backend("openai:fake-model", base_url=server.url)
        backend.generate([GenerateRequest(None, ({"role": "user", "content": "hi"},), max_tokens=4)])
        backend.close()
        seen = set(server.stats()["header_names"])
    assert {"authorization", "content-type"} <= seen
    # the client's telemetry: this machine's OS, architecture and Python, which cost CPU on every request
    assert not seen & {"x-stainless-lang", "x-stainless-package-version", "x-stainless-os", "x-stainless-arch",
                       "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-async",
                       "x-stainless-retry-count", "x-stainless-read-timeout"}


@pytest.mark.parametrize("options, message", [
    ({}, "pass --base-url"),
    ({"base_url": "localhost:8000"}, "is not an http(s) URL"),
    ({"base_url": "http://127.0.0.1:9/v1", "max_concurrency": 0}, "max_concurrency=0"),
    ({"base_url": "http://127.0.0.1:9/v1", "api": "both"}, "api='both'"),
    ({"base_url": "http://127.0.0.1:9/v1", "timeout": "soon"}, "timeout='soon'"),
    ({"base_url": "http://127.0.0.1:9/v1", "temperature": 1}, "unknown openai backend option"),
    ({"base_url": "http://127.0.0.1:9/v1"}, "cannot reach the server at http://127.0.0.1:9/v1"),
])
def test_bad_options_and_unreachable_servers_are_one_line_errors(monkeypatch, options, message):
    from evalkit.errors import UserError

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_backend("openai:m", **options)


def test_a_model_the_server_does_not_serve_is_named(tmp_path):
    from evalkit.errors import BackendError

    with fake_openai_server("--model", "served-model") as server:
        with pytest.raises(BackendError, match="does not serve model 'other'; it serves: served-model"):
            load_backend("openai:other", base_url=server.url)
        backend = load_backend("openai:served-model", base_url=server.url)
        assert backend.identity == "openai:served-model;api=auto;root=/fake/checkpoint"
        backend.close()


def test_served_flags_apply_to_openai_models_only(tmp_path, capsys):
    assert run_cli(["--model", "fake:x", "--base-url", "http://h/v1", "--tasks", "mmlu", "--output", str(tmp_path)]) == 2
    assert "--base-url applies to openai:MODEL models only" in capsys.readouterr().err


def test_merged_shards_add_up_their_request_counters(tmp_path):
    with fake_openai_server() as server, fault_proxy(server.url, "--rate", "0.3", "--seed", "1", "--faults", "500") as proxy:
        common = ["--model", "openai:fake-model", "--base-url", proxy.url, "--tasks", "math500", "--data", "bundled",
                  "--output", str(tmp_path)]
        for index in range(2):
            assert run_cli([*common, "--shard", f"{index}/2"]) == 0
        injected = proxy.stats()["injected"]["500"]
    shards = sorted(tmp_path.glob("*_shard*of2"))
    counters = [json.loads((shard / "results.json").read_text())["invocation"]["backend"] for shard in shards]
    assert cli_main(["merge", *map(str, shards)]) == 0
    merged = json.loads((only_run_dir_named(tmp_path, "fake-model_math500_") / "results.json").read_text())
    backend = merged["invocation"]["backend"]
    assert backend["retries"] == sum(c["retries"] for c in counters) == injected > 0
    assert backend["requests_sent"] == sum(c["requests_sent"] for c in counters)
    assert backend["endpoints"][proxy.url]["failures"] == injected


def only_run_dir_named(output: Path, prefix: str) -> Path:
    [run] = [p for p in output.iterdir() if p.name.startswith(prefix) and "_shard" not in p.name]
    return run


def test_a_failed_model_listing_is_retried_not_a_different_identity(tmp_path):
    with fake_openai_server() as server:
        clean = load_backend("openai:fake-model", base_url=server.url)
        # Seed 1 fails the first request through the proxy: the model listing.
        with fault_proxy(server.url, "--rate", "0.5", "--seed", "1", "--faults", "500") as proxy:
            flaky = load_backend("openai:fake-model", base_url=proxy.url)
            assert proxy.stats()["injected"]["500"] >= 1
        assert flaky.identity == clean.identity == "openai:fake-model;api=auto;root=/fake/checkpoint"
        assert flaky.stats()["retries_by_reason"]["5xx"] >= 1
        clean.close()
        flaky.close()


def test_ctrl_c_stops_at_once_with_requests_in_flight(tmp_path):
    import signal
    import subprocess
    import time

    with fake_openai_server("--latency", "60", "--latency-on", "/v1/chat/completions") as server:
        command = [sys.executable, "-m", "evalkit.cli", "run", "--no-progress", "--model", "openai:fake-model",
                   "--base-url", server.url, "--tasks", "math500", "--data", "bundled", "--chunk-size", "2",
                   "--output", str(tmp_path)]
        child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while server.stats()["requests"].get("/v1/chat/completions", 0) < 8 and time.time() < deadline:
            time.sleep(0.05)
        started = time.perf_counter()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    # Requests answer after 60 s: stopping within seconds means they were abandoned, not awaited.
    assert time.perf_counter() - started < 10
    assert child.returncode == 130 and "interrupted" in err
