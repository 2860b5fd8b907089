"""The plain-torch `ref` DeepSeek-V3 model against transformers' DeepseekV3ForCausalLM on the same
random weights, the checkpoint loader's errors, and block-FP8 dequantization."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from evalkit.backends.moe.checkpoint import load_checkpoint
from evalkit.backends.moe.model import Gate, ModelArgs
from evalkit.backends.moe.quant import weight_dequant

from evalkit.errors import BackendError

VOCAB = 128


def tiny_config(q_lora_rank: int | None) -> transformers.DeepseekV3Config:
    return transformers.DeepseekV3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        first_k_dense_replace=1,
        num_attention_heads=4,
        q_lora_rank=q_lora_rank,
        kv_lora_rank=16,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        n_shared_experts=1,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        max_position_embeddings=64,
        # mscale != mscale_all_dim so both the cos/sin magnitude and the softmax scale are exercised;
        # original length 16 puts the YaRN ramp inside the 4 rope pairs.
        rope_scaling={
            "type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 16,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 0.8,
        },
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )


def tiny_hf_model(q_lora_rank: int | None, seed: int = 0) -> transformers.DeepseekV3ForCausalLM:
    torch.manual_seed(seed)
    model = transformers.DeepseekV3ForCausalLM(tiny_config(q_lora_rank)).eval()
    with torch.no_grad():
        # Larger-than-init weights so routing scores and logits are well separated (no near-ties).
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(torch.randn_like(param) / param.shape[-1] ** 0.5)
        for layer in model.model.layers[1:]:
            layer.mlp.gate.weight.mul_(3.0)
            # Comparable to the score spread, so the bias really changes selections.
            layer.mlp.gate.e_score_correction_bias.copy_(0.2 * torch.randn(8))
    return model


@pytest.fixture(scope="module", params=[32, None], ids=["q_lora", "no_q_lora"])
def pair(request, tmp_path_factory):
    hf = tiny_hf_model(request.param)
    directory = tmp_path_factory.mktemp("ckpt")
    hf.save_pretrained(directory)
    return hf, load_checkpoint(directory), directory


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_logits_match_transformers(pair):
    hf, ours, _ = pair
    tokens = torch.randint(0, VOCAB, (4, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(tokens).logits
    got = ours(tokens)
    err = rel_l2(got, want)
    assert err <= 1e-4, f"rel L2 {err:.2e}"


def test_greedy_tokens_match_transformers(pair):
    hf, ours, _ = pair
    prompt = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(2))
    ours_seq, hf_seq = prompt, prompt
    for _ in range(32):
        ours_seq = torch.cat([ours_seq, ours(ours_seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
        with torch.no_grad():
            hf_next = hf(hf_seq).logits[:, -1].argmax(-1, keepdim=True)
        hf_seq = torch.cat([hf_seq, hf_next], dim=1)
    assert torch.equal(ours_seq, hf_seq)


def test_router_matches_transformers(pair):
    hf, ours, _ = pair
    hf_gate, gate = hf.model.layers[2].mlp.gate, ours.layers[2].ffn.gate
    assert isinstance(gate, Gate)
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, hf_weights, hf_idx = hf_gate(x)
    weights, idx = gate(x)
    hf_idx, order = hf_idx.sort(-1)
    idx, mine = idx.sort(-1)
    assert torch.equal(idx, hf_idx)
    torch.testing.assert_close(weights.gather(1, mine), hf_weights.gather(1, order), rtol=0, atol=1e-6)
    # The bias must have steered some selections, or this test could not see it being misused.
    gate.bias.zero_()
    try:
        assert not torch.equal(gate(x)[1].sort(-1).values, idx)
    finally:
        gate.bias.copy_(hf_gate.e_score_correction_bias)


def test_left_padding_matches_unpadded(pair):
    _, ours, _ = pair
    tokens = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(4))
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), tokens], dim=1)
    pad_mask = torch.arange(17)[None] >= 5
    positions = (torch.arange(17)[None] - 5).clamp(min=0)
    got = ours(padded, positions, pad_mask)[:, 5:]
    assert rel_l2(got, ours(tokens)) <= 1e-5


def test_mtp_layers_are_skipped(pair, tmp_path):
    _, _, directory = pair
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / "model.safetensors")
    # An extra layer past num_hidden_layers, as the Hub's layer-61 MTP weights are stored.
    tensors.update({k.replace("layers.2.", "layers.3."): v.clone() for k, v in tensors.items() if "layers.2." in k})
    tensors["model.layers.3.eh_proj.weight"] = torch.zeros(64, 128)
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    model = load_checkpoint(tmp_path)
    assert len(model.layers) == 3


def test_sharded_checkpoint_loads(pair, tmp_path):
    _, ours, directory = pair
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, tmp_path / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    sharded, single = load_checkpoint(tmp_path).state_dict(), ours.state_dict()
    assert sharded.keys() == single.keys()
    assert all(torch.equal(sharded[k], single[k]) for k in single)


def test_loader_errors(pair, tmp_path):
    _, _, directory = pair
    from safetensors.torch import load_file, save_file

    with pytest.raises(BackendError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(BackendError, match="config.json is missing"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(BackendError, match="neither model.safetensors"):
        load_checkpoint(tmp_path)
    tensors = load_file(directory / "model.safetensors")
    del tensors["model.layers.2.mlp.gate.e_score_correction_bias"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(BackendError, match=r"model\.safetensors lacks 1 tensors.*layers\.2\.ffn\.gate\.bias") as err:
        load_checkpoint(tmp_path)
    assert "\n" not in str(err.value)


def naive_dequant(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    out = torch.empty(weight.shape)
    for r in range(weight.shape[0]):
        for c in range(weight.shape[1]):
            out[r, c] = weight[r, c].float() * scale_inv[r // block[0], c // block[1]]
    return out


@pytest.mark.parametrize("shape, block", [((160, 256), (128, 128)), ((10, 7), (4, 3)), ((8, 8), (8, 8))])
def test_weight_dequant_matches_naive_loop(shape, block):
    gen = torch.Generator().manual_seed(5)
    weight = (torch.randn(shape, generator=gen) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    grid = (-(-shape[0] // block[0]), -(-shape[1] // block[1]))
    scale_inv = torch.rand(grid, generator=gen) + 0.01
    got = weight_dequant(weight, scale_inv, block)
    assert torch.equal(got, naive_dequant(weight, scale_inv, block))


def test_weight_dequant_rejects_mismatched_grid():
    weight = torch.zeros(160, 256, dtype=torch.float8_e4m3fn)
    # 160 rows in 128-row blocks need a 2-row grid; a grid that disagrees must fail loudly, not be reinterpreted.
    with pytest.raises(ValueError, match="expected"):
        weight_dequant(weight, torch.ones(3, 2), (128, 128))


def test_fp8_checkpoint_dequantizes_at_load(pair, tmp_path):
    """A weight stored as F8_E4M3 + weight_scale_inv loads as its dequantized value."""
    _, ours, directory = pair
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / "model.safetensors")
    name = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight"  # 24 rows: a partial 16-row edge block
    block = (16, 32)
    weight = tensors[name]
    grid = (-(-weight.shape[0] // block[0]), -(-weight.shape[1] // block[1]))
    scale_inv = torch.rand(grid) + 0.5
    expanded = scale_inv.repeat_interleave(block[0], 0)[: weight.shape[0]].repeat_interleave(block[1], 1)
    tensors[name] = (weight / expanded[:, : weight.shape[1]]).to(torch.float8_e4m3fn)
    tensors[name + "_scale_inv"] = scale_inv
    save_file(tensors, tmp_path / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match="quantization_config"):
        load_checkpoint(tmp_path)
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": list(block)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_checkpoint(tmp_path).layers[1].attn.wkv_a.weight
    assert torch.equal(loaded, weight_dequant(tensors[name], scale_inv, block))
    assert rel_l2(loaded, ours.layers[1].attn.wkv_a.weight) < 0.1


def test_model_args_read_legacy_rope_scaling():
    config = tiny_config(32).to_dict()
    legacy = {k: v for k, v in config.items() if k != "rope_parameters"}
    legacy["rope_scaling"] = {k: v for k, v in config["rope_parameters"].items() if k != "rope_theta"}
    legacy["rope_theta"] = config["rope_parameters"]["rope_theta"]
    assert ModelArgs.from_hf_config(legacy) == ModelArgs.from_hf_config(config)
    assert ModelArgs.from_hf_config(config).rope_factor == 4.0
