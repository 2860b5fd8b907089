"""How a quantized projection is computed, by precision path.

- `ref`: the weight dequantized once at load, activations as they are (W8A16 for an FP8 checkpoint).
- `emulate`: `ref` plus the 1x128 activation quantization round trip, in torch: the exact math of
  the W8A8 kernels (products of FP8 codes, fp32 accumulation), the CPU stand-in for `triton`.
- `triton`: FP8 codes and block scales through the Triton kernels (a GPU, or the interpreter in tests).

Layers whose checkpoint weight was not FP8 (router, embeddings, head, any BF16 layer) always run `ref`.
`kernels/` (and so triton) is imported only when the triton path runs.
"""
from __future__ import annotations

from types import ModuleType
from typing import Literal

import torch
import torch.nn.functional as F

from . import quant

Precision = Literal["ref", "emulate", "triton"]
PRECISIONS: tuple[Precision, ...] = ("ref", "emulate", "triton")


def kernels() -> ModuleType:
    from . import kernels as module

    return module


def seen_input(x: torch.Tensor, precision: Precision, quantized: bool, block: int) -> torch.Tensor:
    """The activations a quantized GEMM effectively multiplies: x after the act-quant round trip."""
    if precision == "ref" or not quantized:
        return x
    values, scale = quant.act_quant(x, block)
    return quant.act_dequant(values, scale, block).to(x.dtype)


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale_inv: torch.Tensor | None,
    block: tuple[int, int],
    precision: Precision,
) -> torch.Tensor:
    """x [..., K] @ weight.T. `weight` holds FP8 codes on the triton path and dequantized values otherwise;
    `scale_inv` is None for a layer that was never quantized."""
    if scale_inv is None or precision == "ref":
        return F.linear(x, weight)
    if precision == "emulate":
        # fp32 products, as the kernel accumulates; only the output takes the model dtype.
        return F.linear(seen_input(x.float(), precision, True, block[1]), weight.float()).to(x.dtype)
    ops = kernels()
    values, scale = ops.act_quant(x, block[1])
    return ops.fp8_gemm(values, scale, weight, scale_inv).to(x.dtype)
