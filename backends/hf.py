"""Hugging Face transformers backend: `hf:/path/to/checkpoint` or `hf:org/name`.

The model is loaded with transformers; decoding and scoring are `causal_lm.CausalLM`'s (seeded per
completion), over forward passes that use the model's own KV cache.
"""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from evalkit.errors import BackendError, UserError

from .causal_lm import (
    CausalLMBackend,
    ChatTemplate,
    device_option,
)
from .options import flag_option, positive_int_option, reject_unknown_options

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}
DEFAULT_BATCH_SIZE = 16
KNOWN_OPTIONS = ("dtype", "device", "batch_size", "chat_template", "max_length", "trust_remote_code")

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)
FULL_HASH_LIMIT = 256 * 1024 * 1024
EDGE_BYTES = 4 * 1024 * 1024
CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def checkpoint_fingerprint(directory: Path) -> str:
    """First 16 hex digits of a sha256 over the files that decide a checkpoint's outputs.

    Config and tokenizer files are always hashed whole. Weight files (*.safetensors, *.bin and
    their index) are hashed whole when together they are under 256 MiB; above that, each weight
    file contributes its size plus its first and last 4 MiB, which tells apart any two real
    checkpoints while keeping start-up fast for multi-GB models."""
    small = [directory / name for name in CONFIG_FILES + TOKENIZER_FILES if (directory / name).is_file()]
    weights = sorted(p for p in directory.iterdir() if p.is_file() and _is_weight_file(p.name))
    sample_weights = sum(p.stat().st_size for p in weights) >= FULL_HASH_LIMIT
    digest = hashlib.sha256()
    for path in small + weights:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with path.open("rb") as handle:
            if sample_weights and path in weights and size > 2 * EDGE_BYTES:
                digest.update(handle.read(EDGE_BYTES))
                handle.seek(size - EDGE_BYTES)
                digest.update(handle.read(EDGE_BYTES))
            else:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def _is_weight_file(name: str) -> bool:
    return name.endswith((".safetensors", ".index.json")) or (
        name.endswith(".bin") and name.startswith(("pytorch_model", "model"))
    )


class HFForwardPasses:
    """`ForwardPasses` over a transformers causal LM: its own KV cache, explicit positions for left padding."""

    def __init__(self, model: Any, device: str) -> None:
        self.model = model
        self.device = device
        # Projecting only the needed positions onto the vocabulary saves B*L*V floats per forward.
        self._can_slice_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache: Any, keep: int, use_cache: bool = True) -> Any:
        return self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=use_cache,
            **({"logits_to_keep": keep} if self._can_slice_logits else {}),
        )

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, Any]:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(input_ids, mask, positions, None, 1)
        return out.logits[:, -1, :].float(), [out.past_key_values, mask]

    def decode(self, state: Any, next_ids: torch.Tensor) -> torch.Tensor:
        cache, mask = state
        mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=-1)
        positions = mask.sum(-1, keepdim=True) - 1
        out = self._forward(next_ids.unsqueeze(-1), mask, positions, cache, 1)
        state[:] = [out.past_key_values, mask]
        return out.logits[:, -1, :].float()

    def keep_rows(self, state: Any, rows: torch.Tensor) -> Any:
        cache, mask = state
        cache.batch_select_indices(rows)
        return [cache, mask[rows]]

    def score(self, input_ids: torch.Tensor, mask: torch.Tensor, span: int) -> torch.Tensor:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(input_ids, mask, positions, None, span, use_cache=False)
        return out.logits[:, -span:, :].float()


class HFBackend(CausalLMBackend):
    """A causal LM loaded with transformers, answering generate and loglikelihood requests."""

    def __init__(self, location: str, **options: Any) -> None:
        reject_unknown_options(options, KNOWN_OPTIONS, "hf")
        self.location = location
        self.device = device_option(options, "hf")
        # float32 on CPU because CPU half-precision kernels are slow or missing; on GPU the checkpoint's own dtype.
        dtype_name = options.get("dtype") or ("float32" if self.device == "cpu" else "auto")
        if dtype_name not in DTYPES:
            raise UserError(f"hf option dtype={dtype_name!r} is not one of {', '.join(DTYPES)}")
        self.batch_size = positive_int_option(options.get("batch_size", DEFAULT_BATCH_SIZE), "hf", "batch_size")
        use_template = flag_option(options.get("chat_template", True), "hf", "chat_template")
        trust_remote_code = flag_option(options.get("trust_remote_code", False), "hf", "trust_remote_code")
        requested_max = options.get("max_length")
        if requested_max is not None:
            requested_max = positive_int_option(requested_max, "hf", "max_length")
        local = self._local_checkpoint(location)
        source = str(local) if local is not None else location
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                source, dtype=DTYPES[dtype_name], trust_remote_code=trust_remote_code
            )
        except Exception as exc:  # transformers raises many types (OSError, ValueError, HTTP errors, ...)
            reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
            raise BackendError(f"cannot load hf model {location!r}: {reason}; check the path or hub id") from exc
        self.model.to(self.device).eval()

        self.resolved = source
        if local is not None:
            self.fingerprint = checkpoint_fingerprint(local)
        else:
            self.fingerprint = getattr(self.model.config, "_commit_hash", None) or location
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.max_length = requested_max or _config_context_length(self.model.config)
        self.chat_template = ChatTemplate.of(self.tokenizer, use_template)
        generation_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        self.lm = self._language_model(HFForwardPasses(self.model, self.device), generation_eos, "hf")

        identity = f"hf:{self.resolved}@{self.fingerprint};dtype={self.dtype}"
        identity += f";{self.chat_template.identity}"
        if requested_max is not None:
            identity += f";max_length={requested_max}"
        self.identity = identity

    @staticmethod
    def _local_checkpoint(location: str) -> Path | None:
        """The checkpoint directory, None for a hub id; BackendError for a path that is not a checkpoint."""
        path = Path(location).expanduser()
        looks_like_path = location.startswith(("/", ".", "~")) or "\\" in location or location.count("/") > 1
        if not path.exists():
            if looks_like_path:
                raise BackendError(
                    f"hf checkpoint {location!r} does not exist; pass a directory holding config.json and the "
                    f"weights (hf:/path/to/checkpoint) or a hub id (hf:org/name)"
                )
            return None
        if not (path / "config.json").is_file():
            raise BackendError(
                f"hf checkpoint {location!r} has no config.json; pass the directory that holds config.json, "
                f"the tokenizer files and the weights"
            )
        return path.resolve()

    def describe(self) -> dict[str, Any]:
        return {
            "uri": f"hf:{self.location}",
            "identity": self.identity,
            "path": self.resolved,
            "fingerprint": self.fingerprint,
            "dtype": self.dtype,
            "device": self.device,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            **self.chat_template.describe(),
            "model_class": type(self.model).__name__,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }


def _config_context_length(config: Any) -> int | None:
    for key in CONTEXT_LENGTH_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
