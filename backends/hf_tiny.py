"""A tiny random Llama checkpoint, written offline, for tests and smoke runs of the hf backend.

Its weights are random, so its outputs are nonsense; what matters is that it is a real
transformers checkpoint (config, safetensors weights, fast tokenizer, chat template) that loads
through `AutoModelForCausalLM`/`AutoTokenizer` in a second or two and is byte-identical for a seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as transformers_logging

CORPUS = Path(__file__).parent / "data" / "tiny_corpus.txt"

TINY_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 16384,
        "tie_word_embeddings": False,
    },
}

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_tiny_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, *ROLE_TOKENS],
        # Seeding the full byte alphabet means any text encodes, not just the corpus's characters.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(CORPUS)], trainer)
    bos_id = tokenizer.token_to_id(BOS)
    # Raw prompts get a BOS like most real checkpoints, so the backend's special-token handling is exercised.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
    )


def write_tiny_checkpoint(
    path: str | Path, *, seed: int = 0, vocab_size: int = 512, preset: str = "tiny"
) -> Path:
    """Write a tiny random Llama and its tokenizer to `path`; the same seed writes the same bytes."""
    if preset not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r}; known presets: {', '.join(TINY_PRESETS)}")
    path = Path(path)
    tokenizer = train_tiny_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_PRESETS[preset],
    )
    # A private RNG stream keeps the weights a function of `seed` alone and leaves the caller's RNG alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    transformers_logging.disable_progress_bar()  # a one-shard write needs no progress bar
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
