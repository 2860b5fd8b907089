"""Greedy decode speed of the bundled MoE model against transformers' DeepseekV3ForCausalLM, same weights, same run.

Writes the tiny random checkpoint twice (FP8, and the float32 export that holds the same values, which
transformers can load on CPU), then for each batch size times greedy decoding of NEW tokens after a
PROMPT-token prompt:
  ours          evalkit's model (precision ref: weights dequantized once at load) with its latent KV
                cache: naive prefill, absorbed decode
  transformers  DeepseekV3ForCausalLM.generate (greedy, EOS disabled) on the float32 export
Both start from the same prompt ids, and the script checks that they produce the same tokens.
tokens/s counts generated tokens over the whole call (prefill included); the median of --repeats runs.

The default prompt, 512 tokens, is the size of an MMLU 5-shot prompt (MATH-500 / AIME / HumanEval prompts
are 100-300 tokens); decode cost grows with it for transformers, which re-expands the whole latent cache
through kv_b_proj at every step, and little for the absorbed path. Pass --prompt 32 for the short case.

    python benchmarks/moe_decode.py [--batch-sizes 1,8] [--prompt 512] [--new 128] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import transformers

from evalkit.backends.moe.backend import MoEForwardPasses
from evalkit.backends.moe.checkpoint import load_checkpoint
from evalkit.backends.moe.tiny import write_tiny_checkpoint


def ours_greedy(passes: MoEForwardPasses, prompt: torch.Tensor, new: int) -> torch.Tensor:
    mask = torch.ones_like(prompt)
    logits, state = passes.prefill(prompt, mask, new)
    tokens = [logits.argmax(-1)]
    for _ in range(new - 1):
        tokens.append(passes.decode(state, tokens[-1]).argmax(-1))
    return torch.stack(tokens, dim=1)


def transformers_greedy(model: transformers.PreTrainedModel, prompt: torch.Tensor, new: int) -> torch.Tensor:
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[:, prompt.shape[1] :]


def median_seconds(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    fn()  # warm-up: first-call allocations and lazy initialisation
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens per row")
    parser.add_argument("--new", type=int, default=128, help="generated tokens per row")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        fp8 = write_tiny_checkpoint(Path(tmp) / "fp8")
        export = write_tiny_checkpoint(Path(tmp) / "float32", weights="float32")
        ours = MoEForwardPasses(load_checkpoint(fp8), "cpu")
        reference = transformers.AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()

    vocab = ours.model.args.vocab_size
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads; "
          f"tiny model {sum(p.numel() for p in ours.model.parameters()) / 1e6:.2f}M parameters; "
          f"prompt {args.prompt}, {args.new} new tokens, median of {args.repeats}")
    print(f"{'batch':>5}  {'ours tok/s':>11}  {'transformers tok/s':>18}  {'ratio':>6}  same tokens")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        prompt = torch.randint(0, vocab, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            ours_s, ours_tokens = median_seconds(lambda: ours_greedy(ours, prompt, args.new), args.repeats)
            ref_s, ref_tokens = median_seconds(lambda: transformers_greedy(reference, prompt, args.new), args.repeats)
        generated = batch * args.new
        same = torch.equal(ours_tokens, ref_tokens)
        agree = (ours_tokens == ref_tokens).float().mean().item()
        print(f"{batch:>5}  {generated / ours_s:>11.0f}  {generated / ref_s:>18.0f}  {ref_s / ours_s:>5.2f}x  "
              f"{'yes' if same else f'no ({agree:.1%} of positions)'}")


if __name__ == "__main__":
    main()
