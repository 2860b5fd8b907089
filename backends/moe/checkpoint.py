"""Load a Hugging Face DeepseekV3 checkpoint directory into `model.Transformer`.

The directory holds config.json and model.safetensors, or shards listed in
model.safetensors.index.json. Tensors are renamed from the Hub layout to the model's names
(DeepSeek's own short names), multi-token-prediction layers (index >= num_hidden_layers) are
skipped, and block-FP8 weights (F8_E4M3 plus an fp32 `weight_scale_inv`) are dequantized once at
load with the block size that config.json's quantization_config declares.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from evalkit.errors import BackendError

from .model import Linear, ModelArgs, Transformer, set_precision
from .ops import PRECISIONS, Precision
from .quant import weight_dequant, weight_quant

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SCALE_SUFFIX = "_scale_inv"

_TOP_LEVEL = {
    "model.embed_tokens.weight": "embed.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "head.weight",
}
_LAYER_PARTS = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn.wq",
    "self_attn.q_a_proj": "attn.wq_a",
    "self_attn.q_a_layernorm": "attn.q_norm",
    "self_attn.q_b_proj": "attn.wq_b",
    "self_attn.kv_a_proj_with_mqa": "attn.wkv_a",
    "self_attn.kv_a_layernorm": "attn.kv_norm",
    "self_attn.kv_b_proj": "attn.wkv_b",
    "self_attn.o_proj": "attn.wo",
    "mlp.gate": "ffn.gate",
}
_MLP_PROJ = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|e_score_correction_bias)")
_MLP_NAME = re.compile(r"mlp\.(?:(experts\.\d+|shared_experts)\.)?(gate_proj|down_proj|up_proj)")


def hf_to_local(name: str, n_layers: int) -> str | None:
    """The model's parameter name for a Hub tensor name; None for MTP layers, which are skipped.

    Raises KeyError for a name this model has no place for."""
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    match = _LAYER_NAME.fullmatch(name)
    if match is None:
        raise KeyError(name)
    layer, part, leaf = int(match[1]), match[2], match[3]
    if layer >= n_layers:
        return None
    if leaf == "e_score_correction_bias":
        if part != "mlp.gate":
            raise KeyError(name)
        return f"layers.{layer}.ffn.gate.bias"
    if part in _LAYER_PARTS:
        return f"layers.{layer}.{_LAYER_PARTS[part]}.weight"
    mlp = _MLP_NAME.fullmatch(part)
    if mlp is None:
        raise KeyError(name)
    owner = f"ffn.{mlp[1]}" if mlp[1] else "ffn"
    return f"layers.{layer}.{owner}.{_MLP_PROJ[mlp[2]]}.weight"


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise BackendError(f"{path} is missing; a DeepseekV3 checkpoint directory needs its Hugging Face config.json")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BackendError(f"{path} is not valid JSON ({err}); restore it from the original checkpoint") from None


def _weight_map(directory: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            entries = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise BackendError(
                f"{index} has no readable weight_map ({err!r}); "
                "restore it from the original checkpoint"
            ) from None
        files = {file: directory / file for file in set(entries.values())}
        for path in files.values():
            if not path.is_file():
                raise BackendError(f"{path} is listed in {index} but missing; download the missing shard")
        return {name: files[file] for name, file in entries.items()}
    single = directory / SINGLE_FILE
    if single.is_file():
        with safe_open(single, framework="pt") as handle:
            return {name: single for name in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
    raise BackendError(
        f"{directory} has neither {SINGLE_FILE} nor {INDEX_FILE}; save the checkpoint as safetensors "
        "(save_pretrained(..., safe_serialization=True))"
    )


def _block_size(config: dict[str, Any], directory: Path) -> tuple[int, int]:
    """The FP8 block shape config.json declares; never guessed from tensor shapes (§6 of moe-fp8.md)."""
    quant = config.get("quantization_config") or {}
    block = quant.get("weight_block_size")
    if quant.get("quant_method") != "fp8" or not isinstance(block, list) or len(block) != 2:
        raise BackendError(
            f"{directory / 'config.json'} has FP8 weights but no quantization_config with quant_method 'fp8' and "
            "weight_block_size [rows, cols]; add it as in DeepSeek-V3's config.json"
        )
    return int(block[0]), int(block[1])


def load_checkpoint(
    directory: str | Path,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    precision: Precision = "ref",
    quantize: bool = False,
) -> Transformer:
    """Builds the model from `directory`'s config.json and loads its weights, cast to `dtype`.

    FP8 weights are dequantized for the ref and emulate paths and kept as codes for triton.
    `quantize` turns a BF16/FP32 checkpoint's projections into block FP8 at load (128x128 blocks,
    or the config's weight_block_size), as if it had been stored that way."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    directory = Path(directory)
    if not directory.is_dir():
        raise BackendError(
            f"checkpoint directory {directory} does not exist; "
            "pass a directory holding config.json and safetensors weights"
        )
    config = _read_config(directory)
    try:
        args = ModelArgs.from_hf_config(config)
    except (KeyError, ValueError, TypeError) as err:
        raise BackendError(
            f"{directory / 'config.json'}: {err}; "
            "this backend runs DeepseekV3ForCausalLM configs"
        ) from None
    weight_map = _weight_map(directory)

    # Built on meta so a large model is never randomly initialised only to be overwritten.
    with torch.device("meta"):
        model = Transformer(args)
    expected = model.state_dict()

    handles: dict[Path, Any] = {}

    def read(name: str) -> torch.Tensor:
        path = weight_map[name]
        if path not in handles:
            handles[path] = safe_open(path, framework="pt", device="cpu")
        return handles[path].get_tensor(name)

    state: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    block: tuple[int, int] | None = None
    for name, path in weight_map.items():
        if name.endswith(SCALE_SUFFIX):
            continue  # read together with its weight
        try:
            local = hf_to_local(name, args.n_layers)
        except KeyError:
            raise BackendError(
                f"{path} holds tensor {name}, which a DeepseekV3 model has no place for; "
                "re-export the checkpoint with transformers' save_pretrained"
            ) from None
        if local is None:
            continue
        tensor = read(name)
        projection = _is_projection(model, local)
        scale_inv = None
        if tensor.dtype == torch.float8_e4m3fn:
            scale_name = name + SCALE_SUFFIX
            if scale_name not in weight_map:
                raise BackendError(
                    f"{path} holds FP8 tensor {name} without {scale_name}; "
                    "the checkpoint is incomplete, re-download it"
                )
            if not projection:
                raise BackendError(
                    f"{path} holds {name} in FP8, but only attention and MLP projections may be quantized; "
                    "re-export the checkpoint with that tensor in BF16"
                )
            block = block or _block_size(config, directory)
            scale_inv = read(scale_name).float()
        elif quantize and projection:
            block = block or _quantize_block(config)
            tensor, scale_inv = weight_quant(tensor, block)
        if scale_inv is not None:
            assert block is not None
            try:
                dense = weight_dequant(tensor, scale_inv, block)
            except ValueError as err:
                raise BackendError(
                    f"{path}: {name}: {err}; "
                    "check quantization_config.weight_block_size in config.json"
                ) from None
            scales[local] = scale_inv.to(device)
            if precision != "triton":
                tensor = dense
        want = expected.get(local)
        if want is None:
            raise BackendError(
                f"{path} holds tensor {name}, which this config has no place for; "
                "config.json does not match the weights"
            )
        if tensor.shape != want.shape:
            raise BackendError(
                f"{path}: {name} has shape {tuple(tensor.shape)}, config.json implies {tuple(want.shape)}; "
                "config.json does not match the weights"
            )
        if scale_inv is not None and precision == "triton":
            state[local] = tensor.to(device)
        else:
            # The router's correction bias stays fp32 whatever the model dtype.
            state[local] = tensor.to(device=device, dtype=want.dtype if local.endswith("gate.bias") else dtype)

    if args.tie_word_embeddings and "head.weight" not in state and "embed.weight" in state:
        state["head.weight"] = state["embed.weight"]
    missing = [name for name in expected if name not in state]
    if missing:
        source = directory / (INDEX_FILE if (directory / INDEX_FILE).is_file() else SINGLE_FILE)
        raise BackendError(
            f"{source} lacks {len(missing)} tensors config.json needs (first, as the model names it: {missing[0]}); "
            "the weights are incomplete or belong to another config, re-export the checkpoint"
        )
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    if precision == "triton" and scales and block != (128, 128):
        raise BackendError(
            f"{directory / 'config.json'}: the Triton kernels need 128x128 weight blocks, this checkpoint has "
            f"{block[0]}x{block[1]}; use precision=emulate or ref"
        )
    for local, scale_inv in scales.items():
        layer = model.get_submodule(local.removesuffix(".weight"))
        layer.scale_inv, layer.block = scale_inv, block
    set_precision(model, precision)
    return model.eval()


def _is_projection(model: Transformer, local: str) -> bool:
    """Whether a parameter is the weight of a quantizable projection (model.Linear)."""
    owner, _, leaf = local.rpartition(".")
    return leaf == "weight" and isinstance(model.get_submodule(owner), Linear)


def _quantize_block(config: dict[str, Any]) -> tuple[int, int]:
    block = (config.get("quantization_config") or {}).get("weight_block_size") or [128, 128]
    return int(block[0]), int(block[1])
