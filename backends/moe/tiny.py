"""Tiny random DeepSeek-V3-architecture checkpoints in the real Hugging Face format, written offline.

`write_tiny_checkpoint` writes config.json (Hub-style keys, YaRN, quantization_config), safetensors
weights with the Hub's tensor names (projections as F8_E4M3 plus `weight_scale_inv` in 128x128
blocks, the 160-row kv_a_proj giving a partial edge block; router, norms, embeddings and head in
BF16/FP32 as DeepSeek ships them) and a byte-level BPE tokenizer with a chat template. With
`weights="float32"` it writes the same model's dequantized weights instead, which transformers can
load for cross-checks. The outputs are nonsense: the point is a real checkpoint in seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from evalkit.cache import user_cache_dir

from .checkpoint import SCALE_SUFFIX, SINGLE_FILE, hf_to_local
from .model import ModelArgs
from .quant import weight_dequant, weight_quant

WeightFormat = Literal["fp8", "float32", "bfloat16"]
WEIGHT_FORMATS: tuple[WeightFormat, ...] = ("fp8", "float32", "bfloat16")
BLOCK = (128, 128)
INITIALIZER_RANGE = 0.02
# Bump when the writer's output changes, so `moe:tiny` caches of an older layout are not reused.
TINY_FORMAT_VERSION = 2

TINY_PRESETS: dict[str, dict[str, Any]] = {
    # moe-fp8.md §7: every K a multiple of 128, kv_a_proj 160 rows (a partial block), 3 routed layers.
    "tiny": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "q_lora_rank": 128,
        "kv_lora_rank": 128,
        "qk_nope_head_dim": 64,
        "qk_rope_head_dim": 32,
        "v_head_dim": 64,
        "intermediate_size": 512,
        "moe_intermediate_size": 128,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "n_shared_experts": 1,
        "n_group": 4,
        "topk_group": 2,
        "routed_scaling_factor": 2.5,
        # A 4096-token context keeps smoke runs of long-generation tasks (MATH-500 asks for 32k tokens,
        # which a random model fills) to minutes; YaRN still stretches a 1024-token pretraining length 4x.
        "max_position_embeddings": 4096,
        "rope_scaling": {
            "type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 1024,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
    },
}


def tiny_config(preset: str, vocab_size: int, special_ids: dict[str, int], weights: WeightFormat) -> dict[str, Any]:
    if preset not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r}; known presets: {', '.join(TINY_PRESETS)}")
    config: dict[str, Any] = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": vocab_size,
        **TINY_PRESETS[preset],
        "hidden_act": "silu",
        "scoring_func": "sigmoid",
        "topk_method": "noaux_tc",
        "norm_topk_prob": True,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "initializer_range": INITIALIZER_RANGE,
        "tie_word_embeddings": False,
        "num_nextn_predict_layers": 0,
        "torch_dtype": "float32" if weights == "float32" else "bfloat16",
        **special_ids,
    }
    if weights == "fp8":
        config["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": list(BLOCK),
        }
    return config


def hub_tensor_names(args: ModelArgs) -> list[str]:
    """Every tensor name of a DeepseekV3 checkpoint for `args`, as the Hub stores them (no MTP layers)."""
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    mlp = ("gate_proj", "up_proj", "down_proj")
    for i in range(args.n_layers):
        layer = f"model.layers.{i}."
        attn = ["q_proj"] if args.q_lora_rank is None else ["q_a_proj", "q_a_layernorm", "q_b_proj"]
        attn += ["kv_a_proj_with_mqa", "kv_a_layernorm", "kv_b_proj", "o_proj"]
        names += [layer + f"self_attn.{part}.weight" for part in attn]
        names += [layer + "input_layernorm.weight", layer + "post_attention_layernorm.weight"]
        if i < args.n_dense_layers:
            names += [layer + f"mlp.{p}.weight" for p in mlp]
            continue
        names += [layer + "mlp.gate.weight", layer + "mlp.gate.e_score_correction_bias"]
        owners = [f"experts.{e}" for e in range(args.n_routed_experts)] + ["shared_experts"]
        names += [layer + f"mlp.{owner}.{p}.weight" for owner in owners for p in mlp]
    return names


def _random_tensors(args: ModelArgs, seed: int) -> dict[str, torch.Tensor]:
    """fp32 weights by Hub name, drawn as transformers initializes DeepseekV3 (normal, std
    INITIALIZER_RANGE), so each layer adds a modest update to the residual stream as in a trained
    model. Norm weights and the router's correction bias are perturbed away from their neutral
    values (1 and 0) so that a loader which drops them cannot pass unnoticed."""
    from .model import Transformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device("meta"):
            shapes = {name: tuple(t.shape) for name, t in Transformer(args).state_dict().items()}
        tensors = {}
        for name in hub_tensor_names(args):
            local = hf_to_local(name, args.n_layers)
            assert local is not None
            shape = shapes[local]
            if name.endswith("norm.weight"):
                tensors[name] = 1 + 0.1 * torch.randn(shape)
            elif name.endswith("e_score_correction_bias"):
                # About the spread of the router's sigmoid scores: it changes some selections, not all.
                tensors[name] = 0.01 * torch.randn(shape)
            else:
                tensors[name] = INITIALIZER_RANGE * torch.randn(shape)
    return tensors


def _is_projection(name: str) -> bool:
    return name.endswith("_proj.weight") or name.endswith("_proj_with_mqa.weight")


def write_tiny_checkpoint(
    path: str | Path, *, preset: str = "tiny", seed: int = 0, weights: WeightFormat = "fp8", vocab_size: int = 1000
) -> Path:
    """Writes a random checkpoint to `path`; the same arguments write the same bytes.

    weights="fp8" stores projections as block FP8; "float32"/"bfloat16" store the values that FP8
    checkpoint dequantizes to (bit-identical in float32), so all three hold the same model."""
    from evalkit.backends.hf_tiny import train_tiny_tokenizer
    from transformers.utils import logging as transformers_logging

    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    path = Path(path)
    tokenizer = train_tiny_tokenizer(vocab_size)
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = tiny_config(preset, len(tokenizer), special, weights)
    args = ModelArgs.from_hf_config(config)
    stored: dict[str, torch.Tensor] = {}
    for name, tensor in _random_tensors(args, seed).items():
        if name.endswith("e_score_correction_bias"):
            stored[name] = tensor  # fp32 in every format, as DeepSeek ships it
            continue
        if _is_projection(name):
            codes, scale_inv = weight_quant(tensor, BLOCK)
            if weights == "fp8":
                stored[name], stored[name + SCALE_SUFFIX] = codes, scale_inv
                continue
            tensor = weight_dequant(codes, scale_inv, BLOCK)
        else:
            # DeepSeek ships the other unquantized tensors in bf16; every format holds those values.
            tensor = tensor.to(torch.bfloat16)
        stored[name] = tensor.to(torch.float32 if weights == "float32" else torch.bfloat16).contiguous()
    path.mkdir(parents=True, exist_ok=True)
    save_file(stored, path / SINGLE_FILE, metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {"bos_token_id": special["bos_token_id"], "eos_token_id": special["eos_token_id"]}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    transformers_logging.disable_progress_bar()
    tokenizer.save_pretrained(path)
    return path


def cached_tiny_checkpoint(preset: str = "tiny") -> Path:
    """The `moe:tiny` checkpoint: written once into the user cache directory, then reused."""
    target = user_cache_dir() / "models" / f"moe-{preset}-v{TINY_FORMAT_VERSION}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place, so a crash or a concurrent run never leaves half a checkpoint.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write_tiny_checkpoint(staging, preset=preset)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
