"""Dynamic 1x128 activation quantization to float8_e4m3fn (DeepSeek-V3 `act_quant`), as a Triton kernel.

Semantics are those of `quant.act_quant`: per token and per 128 channels, s = max(amax, 1e-4) / 448
(optionally rounded up to a power of two, "ue8m0") and q = fp8(clamp(x / s, +-448)).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from evalkit.backends.moe.kernels.tiles import interpreting
from evalkit.backends.moe.quant import AMAX_FLOOR, FP8, FP8_MAX

_AMAX_FLOOR = tl.constexpr(AMAX_FLOOR)
_FP8_MAX = tl.constexpr(FP8_MAX)


@triton.jit
def _round_to_e4m3_grid(y):
    """Rounds fp32 values in [-448, 448] to the nearest e4m3 value, ties to even, staying in fp32.

    The interpreter's fp32->fp8 cast rounds wrongly (design §4: the mantissa carry lands in the wrong
    place, 1.97 becomes 1.0), but casts exactly representable values exactly; rounding here first makes
    the kernel's codes the same on CPU and GPU. Adding 2^23 * ulp forces fp32's own round-to-nearest-even
    onto multiples of ulp, where ulp is the e4m3 spacing at |y| (2^-9 throughout the subnormal range)."""
    bits = y.to(tl.int32, bitcast=True)
    magnitude = tl.abs(y)
    exponent = ((bits >> 23) & 0xFF) - 127
    exponent = tl.maximum(exponent, -6)
    # 2^(exponent - 3 + 23): e4m3 keeps 3 mantissa bits.
    shifter = ((exponent + 20 + 127) << 23).to(tl.float32, bitcast=True)
    rounded = (magnitude + shifter) - shifter
    # The sign goes back on as a bit, so that -0.0 and values rounding to zero keep torch's code.
    return (rounded.to(tl.int32, bitcast=True) | (bits & -0x80000000)).to(tl.float32, bitcast=True)


@triton.jit
def _act_quant_kernel(x_ptr, y_ptr, s_ptr, BLOCK: tl.constexpr, UE8M0: tl.constexpr):
    group = tl.program_id(0)
    offsets = group * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x)), _AMAX_FLOOR)
    # div_rn: '/' compiles to an approximate division on CUDA, and the scales must match torch bit for bit.
    scale = tl.div_rn(amax, _FP8_MAX)
    if UE8M0:
        # Next power of two at or above scale, from the bits: exact, unlike exp2(ceil(log2(s))) in fp32.
        bits = scale.to(tl.int32, bitcast=True)
        scale = ((bits + 0x7FFFFF) & 0x7F800000).to(tl.float32, bitcast=True)
    y = tl.minimum(tl.maximum(tl.div_rn(x, scale), -_FP8_MAX), _FP8_MAX)
    tl.store(y_ptr + offsets, _round_to_e4m3_grid(y).to(y_ptr.dtype.element_ty))
    tl.store(s_ptr + group, scale)


def act_quant(x: torch.Tensor, block: int = 128, scale_fmt: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., K] fp32 or bf16 -> (float8_e4m3fn [..., K], fp32 scales [..., K / block]).

    One program per (token, group) keeps the amax reduction inside a program, so there is no second
    pass; the interpreter gets fp32 input because it mishandles bf16 (design §4)."""
    if x.shape[-1] % block:
        raise ValueError(f"activation width {x.shape[-1]} is not a multiple of the quantization block {block}")
    if scale_fmt not in (None, "ue8m0"):
        raise ValueError(f"unknown activation scale format {scale_fmt!r}; use None or 'ue8m0'")
    if x.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"act_quant takes fp32 or bf16 activations, not {x.dtype}")
    if interpreting(x.device):
        x = x.float()
    x = x.contiguous()
    values = torch.empty(x.shape, dtype=FP8, device=x.device)
    scales = torch.empty((*x.shape[:-1], x.shape[-1] // block), dtype=torch.float32, device=x.device)
    if scales.numel():
        _act_quant_kernel[(scales.numel(),)](x, values, scales, BLOCK=block, UE8M0=scale_fmt == "ue8m0")
    return values, scales
