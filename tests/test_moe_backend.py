"""The bundled moe: backend on tiny random checkpoints written by `evalkit moe init`: the FP8 file
format, the latent-cache decode path against full forwards, hf: vs moe: on the same weights, the
W8A8 emulation against the reference, and the backend's errors."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors import safe_open  # noqa: E402

from evalkit.backend import GenerateRequest, LoglikelihoodRequest, load_backend  # noqa: E402
from evalkit.backends.moe.checkpoint import load_checkpoint  # noqa: E402
from evalkit.backends.moe.model import Transformer, set_precision  # noqa: E402
from evalkit.backends.moe.tiny import write_tiny_checkpoint  # noqa: E402
from evalkit.cli import main  # noqa: E402
from evalkit.errors import BackendError, UserError  # noqa: E402
from test_hf_backend import PROMPTS  # noqa: E402



@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("moe")
    assert main(["moe", "init", str(root / "fp8")]) == 0
    return {"fp8": root / "fp8", "float32": write_tiny_checkpoint(root / "float32", weights="float32")}


@pytest.fixture(scope="module")
def model(checkpoints: dict[str, Path]) -> Transformer:
    return load_checkpoint(checkpoints["fp8"])


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_writer_stores_block_fp8_in_the_hub_layout(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    directory = checkpoints["fp8"]
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["DeepseekV3ForCausalLM"]
    assert config["quantization_config"]["weight_block_size"] == [128, 128]
    with safe_open(directory / "model.safetensors", framework="pt") as handle:
        names = set(handle.keys())
        kv_a = handle.get_tensor("model.layers.1.self_attn.kv_a_proj_with_mqa.weight")
        kv_a_scale = handle.get_tensor("model.layers.1.self_attn.kv_a_proj_with_mqa.weight_scale_inv")
        assert kv_a.dtype == torch.float8_e4m3fn and tuple(kv_a.shape) == (160, 256)
        # 160 rows in 128-row blocks: one full and one partial row block.
        assert kv_a_scale.dtype == torch.float32 and tuple(kv_a_scale.shape) == (2, 2)
        assert handle.get_tensor("model.layers.1.mlp.gate.weight").dtype == torch.bfloat16
        assert handle.get_tensor("model.layers.1.mlp.gate.e_score_correction_bias").dtype == torch.float32
        assert handle.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
        expert = handle.get_tensor("model.layers.3.mlp.experts.7.down_proj.weight")
        assert expert.dtype == torch.float8_e4m3fn and tuple(expert.shape) == (256, 128)
    assert not any(name.startswith("model.layers.4.") for name in names)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in directory.iterdir()}

    again = write_tiny_checkpoint(tmp_path / "again")
    digest = [hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for d in (directory, again)]
    assert digest[0] == digest[1]


def test_fp8_and_float32_exports_hold_the_same_model(checkpoints: dict[str, Path], model: Transformer) -> None:
    exported = load_checkpoint(checkpoints["float32"]).state_dict()
    assert exported.keys() == model.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in model.state_dict().items())


def test_quantize_at_load_reproduces_the_fp8_checkpoint(checkpoints: dict[str, Path], model: Transformer) -> None:
    quantized = load_checkpoint(checkpoints["float32"], quantize=True)
    layer, original = quantized.layers[1].attn.wkv_a, model.layers[1].attn.wkv_a
    assert layer.scale_inv is not None and tuple(layer.scale_inv.shape) == (2, 2)
    torch.testing.assert_close(layer.weight, original.weight, rtol=1e-6, atol=0)
    torch.testing.assert_close(layer.scale_inv, original.scale_inv, rtol=1e-6, atol=0)


def test_latent_cache_decode_matches_full_forward(model: Transformer) -> None:
    """Prefill (naive attention) then one token at a time (absorbed attention over the latent cache),
    with a left-padded row, against one full forward over the whole sequence."""
    tokens = torch.randint(0, model.args.vocab_size, (2, 14), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[0, :3] = False
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    want = model(tokens, positions, mask)

    prompt = 6
    cache = model.new_cache(2, 8)  # smaller than needed: the cache must grow
    got = [model(tokens[:, :prompt], positions[:, :prompt], mask[:, :prompt], cache)]
    for t in range(prompt, 14):
        got.append(model(tokens[:, t : t + 1], positions[:, t : t + 1], None, cache))
    got_logits = torch.cat(got, dim=1)
    assert cache.length == 14
    # Row 0's padded queries attend to nothing real; compare real positions only.
    assert rel_l2(got_logits[mask], want[mask]) <= 1e-5


def test_absorbed_attention_matches_naive_under_w8a8_emulation(model: Transformer) -> None:
    """The cache holds the latent as kv_b_proj's quantized GEMM sees it, so absorbed decode does the
    naive path's math. Checked on one attention layer: through a whole FP8 model a 1e-7 difference
    flips activation codes downstream (moe-fp8.md §7), which says nothing about the attention."""
    attn = model.layers[1].attn
    set_precision(model, "emulate")
    attn.wo.precision = "ref"  # keep wo's own activation quantization out of the comparison
    try:
        x = torch.randn(1, 10, model.args.dim, generator=torch.Generator().manual_seed(1))
        rotation = model.rotation(torch.arange(10)[None])
        causal = torch.ones(10, 10, dtype=torch.bool).tril()[None]
        want = attn(x, rotation, causal)
        cache = model.new_cache(1, 10)
        got = [attn(x[:, :4], rotation[:, :4], causal[:, :4, :4], cache, 1)]
        cache.length = 4
        for t in range(4, 10):
            got.append(attn(x[:, t : t + 1], rotation[:, t : t + 1], causal[:, t : t + 1, : t + 1], cache, 1))
            cache.length = t + 1
        assert rel_l2(torch.cat(got, dim=1), want) <= 1e-5
        attn.wkv_b.precision = "ref"
        cache_ref = model.new_cache(1, 10)
        attn(x[:, :4], rotation[:, :4], causal[:, :4, :4], cache_ref, 1)
        # Under emulation the cached latent really is the quantized one, not the raw latent.
        assert not torch.equal(cache_ref.rows[1][:, :4, :128], cache.rows[1][:, :4, :128])
    finally:
        set_precision(model, "ref")


def test_absorbed_attention_is_used_for_decode(model: Transformer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    attn = type(model.layers[0].attn)
    for name in ("_naive", "_absorbed"):
        original = getattr(attn, name)
        monkeypatch.setattr(attn, name, lambda self, *a, _o=original, _n=name: calls.append(_n) or _o(self, *a))
    cache = model.new_cache(1, 4)
    model(torch.tensor([[5, 6, 7]]), cache=cache)
    model(torch.tensor([[8]]), torch.tensor([[3]]), None, cache)
    n_layers = model.args.n_layers
    assert calls == ["_naive"] * n_layers + ["_absorbed"] * n_layers


def naive_greedy(backend, prompt: str, max_tokens: int) -> list[int]:
    """Full forward over the whole sequence each step: no cache, no padding."""
    ids = backend.tokenizer(prompt)["input_ids"]
    new: list[int] = []
    for _ in range(max_tokens):
        token = int(backend.model(torch.tensor([ids + new]))[0, -1].argmax())
        if token in backend.lm.eos_ids:
            break
        new.append(token)
    return new


def test_batched_greedy_generation_matches_naive_loop(checkpoints: dict[str, Path]) -> None:
    backend = load_backend("moe:" + str(checkpoints["fp8"]), batch_size=3)
    # Different budgets in one batch: rows that finish early are dropped from the cache mid-decode.
    budgets = (5, 24, 12)
    completions = backend.generate(
        [GenerateRequest(prompt=p, messages=None, max_tokens=n) for p, n in zip(PROMPTS, budgets)]
    )
    for (completion,), prompt, budget in zip(completions, PROMPTS, budgets):
        want = naive_greedy(backend, prompt, budget)
        assert completion.text == backend.tokenizer.decode(want, skip_special_tokens=True)
        assert completion.completion_tokens == len(want)


def test_sampling_is_seeded_per_completion(checkpoints: dict[str, Path]) -> None:
    backend = load_backend("moe:" + str(checkpoints["fp8"]))
    request = GenerateRequest(prompt=PROMPTS[0], messages=None, n=3, temperature=1.0, top_p=0.9, seed=11,
                              max_tokens=12)
    together = [c.text for c in backend.generate([request])[0]]
    alone = backend.generate([GenerateRequest(prompt=PROMPTS[0], messages=None, temperature=1.0, top_p=0.9,
                                              seed=12, max_tokens=12)])[0][0].text
    assert alone == together[1]
    assert len(set(together)) == 3


def test_loglikelihood_matches_full_forward(checkpoints: dict[str, Path]) -> None:
    backend = load_backend("moe:" + str(checkpoints["fp8"]), batch_size=2)
    pairs = [("Question: 2 + 2 =", " 4"), ("Good bread needs", " flour, water, salt and time."), ("The keeper", " A")]
    results = backend.loglikelihood([LoglikelihoodRequest(c, x) for c, x in pairs])
    for result, (context, continuation) in zip(results, pairs):
        ctx = backend.tokenizer(context)["input_ids"]
        cont = backend.tokenizer(context + continuation)["input_ids"][len(ctx) :]
        logprobs = torch.log_softmax(backend.model(torch.tensor([ctx + cont]))[0], -1)[len(ctx) - 1 : -1]
        want = float(logprobs[torch.arange(len(cont)), torch.tensor(cont)].sum())
        assert result.logprob == pytest.approx(want, abs=1e-4)
        assert result.is_greedy == bool((logprobs.argmax(-1) == torch.tensor(cont)).all())


def test_hf_and_moe_runs_agree_on_the_same_checkpoint(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """transformers' DeepseekV3ForCausalLM and ours on the float32 export: same MMLU choices, same greedy text."""
    samples = {}
    for scheme in ("hf", "moe"):
        output = tmp_path / scheme
        code = main(["run", "--no-progress", "--model", f"{scheme}:{checkpoints['float32']}", "--tasks",
                     "mmlu,math500", "--data", "bundled", "--limit", "6", "--max-tokens", "24", "--output",
                     str(output)])
        assert code == 0
        (run,) = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
        samples[scheme] = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples["hf"]) == len(samples["moe"]) == 12
    for hf, moe in zip(samples["hf"], samples["moe"]):
        assert (hf["task"], hf["sample_id"], hf["answer"], hf["completion"]) == (
            moe["task"], moe["sample_id"], moe["answer"], moe["completion"])
        for a, b in zip(hf["loglikelihoods"] or [], moe["loglikelihoods"] or []):
            assert a["logprob"] == pytest.approx(b["logprob"], abs=1e-4)
    assert any(s["completion"] for s in samples["moe"])


def test_w8a8_emulation_stays_close_to_the_reference(model: Transformer) -> None:
    """FP8 activations cost a little accuracy, not the model: moe-fp8.md §7 measured KL 1.3e-3."""
    tokens = torch.randint(0, model.args.vocab_size, (4, 32), generator=torch.Generator().manual_seed(7))
    reference = model(tokens)
    set_precision(model, "emulate")
    try:
        emulated = model(tokens)
    finally:
        set_precision(model, "ref")
    log_p, log_q = torch.log_softmax(reference, -1), torch.log_softmax(emulated, -1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()
    top1 = (reference.argmax(-1) == emulated.argmax(-1)).float().mean().item()
    assert 0 < kl <= 2e-3, f"KL {kl:.2e}"
    assert top1 >= 0.7, f"top-1 agreement {top1:.3f}"


def test_moe_tiny_is_written_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path))
    first = load_backend("moe:tiny")
    assert first.path.parent == tmp_path / "models"
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    second = load_backend("moe:tiny")
    assert second.identity == first.identity
    assert (second.path / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.path.name]


def test_identity_names_precision_and_weights(checkpoints: dict[str, Path]) -> None:
    ref = load_backend("moe:" + str(checkpoints["fp8"]))
    emulate = load_backend("moe:" + str(checkpoints["fp8"]), precision="emulate")
    assert ref.identity.endswith(";precision=ref;dtype=float32;chat_template=on")
    assert emulate.identity != ref.identity
    assert load_backend("moe:" + str(checkpoints["float32"])).fingerprint != ref.fingerprint
    described = json.loads(json.dumps(ref.describe()))
    assert described["quantized_projections"] == 4 * 5 + 3 + 3 * (9 * 3)


def test_errors_name_the_thing_and_the_fix(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist.*moe:tiny"):
        load_backend("moe:" + str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="precision='fast'.*ref, emulate, triton"):
        load_backend("moe:" + str(checkpoints["fp8"]), precision="fast")
    with pytest.raises(UserError, match="unknown moe backend option"):
        load_backend("moe:" + str(checkpoints["fp8"]), temperature=0.5)
    with pytest.raises(ValueError, match="needs FP8 codes"):
        set_precision(load_checkpoint(checkpoints["fp8"]), "triton")
    assert main(["moe", "init", str(tmp_path / "x"), "--preset", "huge"]) == 2
