"""The bundled MoE backend: `moe:/path/to/checkpoint`, or `moe:tiny` for a tiny random model.

The checkpoint is a Hugging Face DeepseekV3 directory (FP8 block-scaled or BF16/FP32 weights); the
model is `model.Transformer`, decoding runs on its latent KV cache (naive prefill, absorbed decode)
and `causal_lm.CausalLM` does the batching, seeded sampling, stop strings and scoring.
Options (`--model-args`): precision=ref|emulate|triton, dtype=float32|bfloat16, device, batch_size,
max_length, chat_template=true|false, quantize=true (FP8 at load for a BF16/FP32 checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evalkit.errors import BackendError, UserError

from ..causal_lm import (
    CausalLMBackend,
    ChatTemplate,
    device_option,
)
from ..hf import checkpoint_fingerprint
from ..options import flag_option, positive_int_option, reject_unknown_options
from .checkpoint import load_checkpoint
from .model import LatentCache, Transformer
from .ops import PRECISIONS
from .tiny import TINY_PRESETS, cached_tiny_checkpoint

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
KNOWN_OPTIONS = ("precision", "dtype", "device", "batch_size", "max_length", "chat_template", "quantize")
DEFAULT_BATCH_SIZE = 16
# Decode caches start this many positions past the prompt and double when a row needs more.
INITIAL_DECODE_ROOM = 256


@dataclass
class _DecodeState:
    cache: LatentCache
    next_positions: torch.Tensor


class MoEForwardPasses:
    """`ForwardPasses` over `model.Transformer` with its latent cache."""

    def __init__(self, model: Transformer, device: str) -> None:
        self.model = model
        self.device = device

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, Any]:
        batch, width = input_ids.shape
        cache = self.model.new_cache(batch, width + min(max_new_tokens, INITIAL_DECODE_ROOM))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids, positions, mask.bool(), cache, keep=1)[:, -1]
        return logits, _DecodeState(cache, mask.sum(-1))

    def decode(self, state: _DecodeState, next_ids: torch.Tensor) -> torch.Tensor:
        logits = self.model(next_ids[:, None], state.next_positions[:, None], None, state.cache, keep=1)[:, -1]
        state.next_positions = state.next_positions + 1
        return logits

    def keep_rows(self, state: _DecodeState, rows: torch.Tensor) -> _DecodeState:
        state.cache.keep_rows(rows)
        return _DecodeState(state.cache, state.next_positions[rows])

    def score(self, input_ids: torch.Tensor, mask: torch.Tensor, span: int) -> torch.Tensor:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids, positions, mask.bool(), keep=span)


class MoEBackend(CausalLMBackend):
    """The bundled DeepSeek-V3-architecture model, answering generate and loglikelihood requests."""

    def __init__(self, location: str, **options: Any) -> None:
        from transformers import AutoTokenizer

        reject_unknown_options(options, KNOWN_OPTIONS, "moe")
        self.location = location
        self.device = device_option(options, "moe")
        on_gpu = self.device.startswith("cuda")
        self.precision = options.get("precision") or ("triton" if on_gpu else "ref")
        if self.precision not in PRECISIONS:
            raise UserError(f"moe option precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        dtype_name = options.get("dtype") or ("bfloat16" if on_gpu else "float32")
        if dtype_name not in DTYPES:
            raise UserError(f"moe option dtype={dtype_name!r} is not one of {', '.join(DTYPES)}")
        self.dtype = dtype_name
        self.batch_size = positive_int_option(options.get("batch_size", DEFAULT_BATCH_SIZE), "moe", "batch_size")
        use_template = flag_option(options.get("chat_template", True), "moe", "chat_template")
        self.quantize = flag_option(options.get("quantize", False), "moe", "quantize")
        requested_max = options.get("max_length")
        if requested_max is not None:
            requested_max = positive_int_option(requested_max, "moe", "max_length")

        self.path = self._checkpoint_directory(location)
        self.model = load_checkpoint(self.path, DTYPES[dtype_name], self.device, self.precision, self.quantize)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        except Exception as exc:  # transformers raises many types (OSError, ValueError, ...)
            reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
            raise BackendError(
                f"cannot load the tokenizer of moe checkpoint {self.path}: {reason}; "
                "the directory needs tokenizer.json / tokenizer_config.json"
            ) from exc
        self.fingerprint = checkpoint_fingerprint(self.path)
        self.max_length = requested_max or self.model.args.max_seq_len
        self.chat_template = ChatTemplate.of(self.tokenizer, use_template)
        self.lm = self._language_model(MoEForwardPasses(self.model, self.device), _generation_eos(self.path), "moe")
        identity = f"moe:{self.path}@{self.fingerprint};precision={self.precision};dtype={self.dtype}"
        identity += f";{self.chat_template.identity}"
        if self.quantize:
            identity += ";quantize=fp8"
        if requested_max is not None:
            identity += f";max_length={requested_max}"
        self.identity = identity

    @staticmethod
    def _checkpoint_directory(location: str) -> Path:
        if location in TINY_PRESETS:
            return cached_tiny_checkpoint(location)
        path = Path(location).expanduser()
        if not path.is_dir():
            raise BackendError(
                f"moe checkpoint {location!r} does not exist; pass a DeepseekV3 checkpoint directory "
                f"(moe:/path/to/checkpoint) or a tiny preset ({', '.join(f'moe:{p}' for p in TINY_PRESETS)})"
            )
        return path.resolve()

    def describe(self) -> dict[str, Any]:
        args = self.model.args
        quantized = sum(1 for m in self.model.modules() if getattr(m, "scale_inv", None) is not None)
        return {
            "uri": f"moe:{self.location}",
            "identity": self.identity,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "precision": self.precision,
            "dtype": self.dtype,
            "device": self.device,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "quantized_projections": quantized,
            "quantize_at_load": self.quantize,
            **self.chat_template.describe(),
            "layers": args.n_layers,
            "routed_experts": args.n_routed_experts,
            "experts_per_token": args.n_activated_experts,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "torch_version": torch.__version__,
        }


def _generation_eos(path: Path) -> Any:
    file = path / "generation_config.json"
    return json.loads(file.read_text()).get("eos_token_id") if file.is_file() else None
