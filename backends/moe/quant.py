"""Block-FP8 quantization in plain torch: the numerics every other path is checked against.

Weights: float8_e4m3fn values with one fp32 multiplier (`scale_inv`) per block of the weight
(128x128 in DeepSeek-V3), W ~= q * scale_inv. Activations: quantized per token and per 128
channels ("1x128"), s = max(amax, 1e-4) / 448 and q = fp8(clamp(x / s, +-448)).
`block_fp8_matmul` is the GEMM the kernels compute, written as a dequantize-then-multiply.
"""
from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
# DeepSeek's floor on an activation group's amax: an all-zero group gets a finite scale.
AMAX_FLOOR = 1e-4
ACT_BLOCK = 128


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def round_scale_ue8m0(scale: torch.Tensor) -> torch.Tensor:
    """Rounds each scale up to a power of two, as DeepSeek-V3.1's `scale_fmt: ue8m0` asks.

    From the float's exponent bits, not exp2(ceil(log2(s))): log2 of a value a few ulps above a power
    of two rounds to that exact integer, which would round the scale *down* and saturate the amax."""
    mantissa, exponent = torch.frexp(scale)  # scale = mantissa * 2^exponent, mantissa in [0.5, 1)
    return torch.ldexp(torch.ones_like(scale), exponent - (mantissa == 0.5).to(exponent.dtype))


def act_quant(
    x: torch.Tensor, block: int = ACT_BLOCK, scale_fmt: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., K] -> (fp8 values [..., K], fp32 scales [..., K / block]); K must be a multiple of block."""
    if x.shape[-1] % block:
        raise ValueError(f"activation width {x.shape[-1]} is not a multiple of the quantization block {block}")
    groups = x.float().unflatten(-1, (-1, block))
    # Floor, not ceiling: clamping amax *down* to 1e-4 was a bug in DeepSeek's reference (fixed in 82f6008).
    scale = groups.abs().amax(dim=-1).clamp(min=AMAX_FLOOR) / FP8_MAX
    if scale_fmt == "ue8m0":
        scale = round_scale_ue8m0(scale)
    elif scale_fmt is not None:
        raise ValueError(f"unknown activation scale format {scale_fmt!r}; use None or 'ue8m0'")
    # The explicit clamp keeps saturation independent of torch's cast rules.
    values = (groups / scale[..., None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return values.flatten(-2), scale


def act_dequant(values: torch.Tensor, scale: torch.Tensor, block: int = ACT_BLOCK) -> torch.Tensor:
    """The fp32 activations an `act_quant` result stands for."""
    return (values.float().unflatten(-1, (-1, block)) * scale[..., None]).flatten(-2)


def weight_quant(weight: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [R, C] -> (fp8 [R, C], fp32 scale_inv [ceil(R/br), ceil(C/bc)]).

    Edge blocks may be partial; their scale comes from their valid elements only. An all-zero block
    gets scale 1 (its values are exact zeros either way)."""
    rows, cols = weight.shape
    block_rows, block_cols = block
    grid = (ceil_div(rows, block_rows), ceil_div(cols, block_cols))
    padded = weight.new_zeros(grid[0] * block_rows, grid[1] * block_cols, dtype=torch.float32)
    padded[:rows, :cols] = weight.float()
    tiles = padded.view(grid[0], block_rows, grid[1], block_cols)
    amax = tiles.abs().amax(dim=(1, 3))
    scale_inv = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    values = (tiles / scale_inv[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return values.view(padded.shape)[:rows, :cols].contiguous(), scale_inv


def weight_dequant(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """fp32 weight from an fp8 weight [R, C] and per-block multipliers [ceil(R/br), ceil(C/bc)].

    Edge blocks may be partial (e.g. V3's 576-row kv_a_proj with 128-row blocks): each scale is
    expanded to a full block and cropped, never inferred from R / scale rows."""
    rows, cols = weight.shape
    block_rows, block_cols = block
    grid = (ceil_div(rows, block_rows), ceil_div(cols, block_cols))
    if tuple(scale_inv.shape) != grid:
        raise ValueError(
            f"scale_inv shape {tuple(scale_inv.shape)} does not match weight {(rows, cols)} "
            f"in {block_rows}x{block_cols} blocks (expected {grid})"
        )
    scale = scale_inv.float().repeat_interleave(block_rows, 0)[:rows].repeat_interleave(block_cols, 1)[:, :cols]
    return weight.float() * scale


def block_fp8_matmul(
    a: torch.Tensor, a_scale: torch.Tensor, w: torch.Tensor, w_scale_inv: torch.Tensor, block: tuple[int, int]
) -> torch.Tensor:
    """out[m, n] = sum over K blocks of a_scale[m, kb] * w_scale_inv[n // bn, kb] * (q_a[m, kb] . q_w[n, kb]).

    a [M, K] fp8 with a_scale [M, K / bk]; w [N, K] fp8 with w_scale_inv [ceil(N / bn), K / bk].
    This is the `emulate` model of the W8A8 kernels: fp32 throughout, products of fp8 codes exact."""
    if a.shape[-1] != w.shape[-1]:
        raise ValueError(f"inner dimensions differ: activations {tuple(a.shape)}, weight {tuple(w.shape)}")
    if block[1] != a.shape[-1] // a_scale.shape[-1]:
        raise ValueError(f"activation scales {tuple(a_scale.shape)} do not match the weight's K block {block[1]}")
    return act_dequant(a, a_scale, block[1]) @ weight_dequant(w, w_scale_inv, block).T
