"""The fake OpenAI server and the fault proxy, driven by the official `openai` client: what the `openai:`
backend's tests and benchmark rely on them to do."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai_servers import Server, fake_openai_server, fault_proxy

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is two plus two?"}]


def client(server: Server, **options: Any) -> openai.OpenAI:
    # no client retries, so that every fault the proxy injects reaches the test
    return openai.OpenAI(base_url=server.url, api_key=options.pop("api_key", "x"), max_retries=0, **options)


def chat(server: Server, **request: Any) -> Any:
    request.setdefault("messages", MESSAGES)
    return client(server).chat.completions.create(model="fake-model", **request)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with fake_openai_server() as running:
        yield running


def test_chat_completion_is_a_valid_response(server: Server) -> None:
    response = chat(server, temperature=0)
    assert response.object == "chat.completion" and response.model == "fake-model"
    [choice] = response.choices
    assert choice.index == 0 and choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert 5 <= len(choice.message.content.split()) <= 40
    assert response.usage.prompt_tokens == 8  # whitespace words of both messages
    assert response.usage.completion_tokens == len(choice.message.content.split())
    [model] = client(server).models.list().data
    assert model.id == "fake-model" and model.model_extra["root"] == "/fake/checkpoint"


def test_same_request_same_text_and_greedy_ignores_the_seed(server: Server) -> None:
    first = chat(server, temperature=0, seed=1).choices[0].message.content
    assert chat(server, temperature=0, seed=1).choices[0].message.content == first
    assert chat(server, temperature=0, seed=2).choices[0].message.content == first
    assert chat(server, temperature=0.7, seed=3).choices[0].message.content == chat(server, temperature=0.7, seed=3).choices[0].message.content


def test_seeds_change_sampled_text(server: Server) -> None:
    texts = {chat(server, temperature=1.0, seed=seed).choices[0].message.content for seed in range(4)}
    assert len(texts) == 4
    greedy = chat(server, temperature=0).choices[0].message.content
    assert greedy not in texts


def test_n_choices_use_consecutive_seeds(server: Server) -> None:
    choices = chat(server, n=3, temperature=0.8, seed=10).choices
    assert [choice.index for choice in choices] == [0, 1, 2]
    assert len({choice.message.content for choice in choices}) == 3
    for offset, choice in enumerate(choices):  # choice i of seed s is choice 0 of seed s + i
        assert chat(server, temperature=0.8, seed=10 + offset).choices[0].message.content == choice.message.content


def test_ignore_n_answers_one_choice() -> None:
    with fake_openai_server("--ignore-n") as ignoring:
        assert len(chat(ignoring, n=4, temperature=1.0).choices) == 1


def test_max_tokens_truncates_with_finish_reason_length(server: Server) -> None:
    full = chat(server, temperature=0).choices[0].message.content
    response = chat(server, temperature=0, max_tokens=3)
    assert response.choices[0].message.content == " ".join(full.split()[:3])
    assert response.choices[0].finish_reason == "length" and response.usage.completion_tokens == 3
    newer = chat(server, temperature=0, max_completion_tokens=4).choices[0]
    assert newer.message.content == " ".join(full.split()[:4]) and newer.finish_reason == "length"
    assert chat(server, temperature=0, max_tokens=40).choices[0].finish_reason == "stop"


def test_stop_strings_cut_the_text(server: Server) -> None:
    full = chat(server, temperature=0).choices[0].message.content
    stop = " " + full.split()[2]
    choice = chat(server, temperature=0, stop=[stop, "never appears"]).choices[0]
    assert choice.message.content == full[:full.index(stop)] and choice.finish_reason == "stop"
    # a stop string that would only complete after max_tokens does not stop the text
    late = chat(server, temperature=0, stop=stop, max_tokens=1).choices[0]
    assert late.message.content == full.split()[0] and late.finish_reason == "length"


def test_reasoning_content_is_readable() -> None:
    with fake_openai_server("--reasoning") as reasoning:
        message = chat(reasoning, temperature=0).choices[0].message
        assert message.content and message.content == chat(reasoning, temperature=0).choices[0].message.content
        thought = getattr(message, "reasoning_content", None) or message.model_extra["reasoning_content"]
        assert isinstance(thought, str) and thought and thought != message.content


def score(server: Server, prompt: str, max_tokens: int) -> Any:
    return client(server).completions.create(model="fake-model", prompt=prompt, echo=True, logprobs=1,
                                             max_tokens=max_tokens, temperature=0)


@pytest.mark.parametrize("prompt", ["Question: 2+2?\nAnswer: 4", "  leading space and trailing\n", "one"])
def test_echo_logprobs_cover_the_prompt(server: Server, prompt: str) -> None:
    response = score(server, prompt, max_tokens=0)
    assert response.object == "text_completion"
    choice = response.choices[0]
    logprobs = choice.logprobs
    assert choice.text == prompt and "".join(logprobs.tokens) == prompt
    assert logprobs.text_offset == [len("".join(logprobs.tokens[:i])) for i in range(len(logprobs.tokens))]
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    for token, logprob, top in zip(logprobs.tokens[1:], logprobs.token_logprobs[1:], logprobs.top_logprobs[1:]):
        [(best, best_logprob)] = top.items()
        assert logprob < 0 and best_logprob >= logprob and (best == token) == (best_logprob == logprob)
    if prompt.endswith("\n"):
        assert logprobs.tokens[-1] == "\n"  # trailing whitespace is a token of its own


def test_echo_logprobs_depend_only_on_the_preceding_text(server: Server) -> None:
    context = "The capital of France is"
    a, b = (score(server, context + continuation, max_tokens=0).choices[0].logprobs for continuation in (" Paris", " Rome"))
    assert a.tokens[:-1] == b.tokens[:-1] and a.token_logprobs[:-1] == b.token_logprobs[:-1]
    assert a.tokens[-1] == " Paris" and a.text_offset[-1] == len(context)
    assert score(server, context, max_tokens=0).choices[0].logprobs.token_logprobs == a.token_logprobs[:-1]
    one_more = score(server, context, max_tokens=1).choices[0]
    assert one_more.text.startswith(context) and len(one_more.logprobs.tokens) == len(a.tokens)
    assert one_more.logprobs.text_offset[-1] == len(context)


def test_greedy_tokens_are_about_half(server: Server) -> None:
    # both kinds must be common, or a backend's is_greedy would only ever be tested one way
    logprobs = score(server, " ".join(f"w{i}" for i in range(200)), max_tokens=0).choices[0].logprobs
    greedy = sum(top == {token: logprob}
                 for token, logprob, top in zip(logprobs.tokens[1:], logprobs.token_logprobs[1:], logprobs.top_logprobs[1:]))
    assert 60 < greedy < 140


def test_no_logprobs_ignores_echo_and_logprobs() -> None:
    with fake_openai_server("--no-logprobs") as plain:
        choice = score(plain, "The capital of France is", max_tokens=5).choices[0]
        assert choice.logprobs is None and not choice.text.startswith("The capital")
        assert len(choice.text.split()) == 5 and choice.finish_reason == "length"


def test_require_key() -> None:
    with fake_openai_server("--require-key", "sekret") as guarded:
        with pytest.raises(openai.AuthenticationError) as caught:
            client(guarded, api_key="wrong").models.list()
        assert caught.value.status_code == 401 and "invalid api key" in str(caught.value)
        assert client(guarded, api_key="sekret").models.list().data[0].id == "fake-model"
        assert guarded.stats()["authorization_seen"] is True


def raw(server: Server, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(server.url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_errors_are_openai_shaped(server: Server) -> None:
    status, body = raw(server, "/chat/completions", b"{not json")
    assert status == 400 and "not JSON" in body["error"]["message"]
    status, body = raw(server, "/embeddings", b"{}")
    assert status == 404 and body["error"]["message"]
    status, body = raw(server, "/chat/completions", b'{"messages": []}')
    assert status == 400 and "messages" in body["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client(server).completions.create(model="fake-model", prompt="x", max_tokens=-1)


def test_stats_count_requests_per_path() -> None:
    with fake_openai_server() as running:
        chat(running)
        chat(running)
        client(running).models.list()
        stats = running.stats()
        assert stats["requests"]["/v1/chat/completions"] == 2 and stats["requests"]["/v1/models"] == 1
        assert stats["authorization_seen"] is True


def test_proxy_with_rate_zero_is_transparent(server: Server) -> None:
    before = server.stats()["requests"].get("/v1/chat/completions", 0)
    with fault_proxy(server.url, "--rate", "0.0") as proxy:
        for seed in range(3):
            through = chat(proxy, temperature=1.0, seed=seed, n=2)
            direct = chat(server, temperature=1.0, seed=seed, n=2)
            assert through.choices == direct.choices and through.usage == direct.usage
        assert score(proxy, "a b c", 0).choices[0].logprobs == score(server, "a b c", 0).choices[0].logprobs
        assert proxy.stats() == {"forwarded": 4, "injected": {"429": 0, "500": 0, "drop": 0, "stall": 0}}
    assert server.stats()["requests"]["/v1/chat/completions"] == before + 6


def test_proxy_429_carries_retry_after(server: Server) -> None:
    with fault_proxy(server.url, "--rate", "1.0", "--faults", "429", "--retry-after", "2") as proxy:
        for _ in range(3):
            with pytest.raises(openai.RateLimitError) as caught:
                chat(proxy)
            assert caught.value.response.headers["retry-after"] == "2"
        assert proxy.stats() == {"forwarded": 0, "injected": {"429": 3, "500": 0, "drop": 0, "stall": 0}}


def test_proxy_500_and_drop(server: Server) -> None:
    with fault_proxy(server.url, "--rate", "1.0", "--faults", "500") as proxy, pytest.raises(openai.InternalServerError):
        chat(proxy)
    with fault_proxy(server.url, "--rate", "1.0", "--faults", "drop") as proxy:
        for _ in range(2):
            with pytest.raises(openai.APIConnectionError) as caught:
                chat(proxy)
            assert not isinstance(caught.value, openai.APITimeoutError)
        assert proxy.stats()["injected"]["drop"] == 2


def test_proxy_stall_is_a_timeout(server: Server) -> None:
    with fault_proxy(server.url, "--rate", "1.0", "--faults", "stall", "--stall-seconds", "3") as proxy:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client(proxy, timeout=0.5).chat.completions.create(model="fake-model", messages=MESSAGES)
        assert time.monotonic() - started < 2
        assert proxy.stats()["injected"]["stall"] == 1


def test_proxy_stats_add_up(server: Server) -> None:
    before = server.stats()["requests"].get("/v1/chat/completions", 0)
    with fault_proxy(server.url, "--rate", "0.5", "--seed", "3", "--faults", "429,500") as proxy:
        failures = 0
        for _ in range(30):
            try:
                chat(proxy)
            except (openai.RateLimitError, openai.InternalServerError):
                failures += 1
        stats = proxy.stats()
    injected = stats["injected"]["429"] + stats["injected"]["500"]
    assert injected == failures and stats["forwarded"] == 30 - failures and 0 < failures < 30
    assert server.stats()["requests"]["/v1/chat/completions"] == before + stats["forwarded"]


def test_a_server_that_dies_before_ready_is_reported_with_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="(?s)exited with status 2.*unrecognized arguments: --bogus"), \
            fake_openai_server("--bogus"):
        pass
