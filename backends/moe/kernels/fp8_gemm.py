"""Block-scaled FP8 GEMM (W8A8, DeepSeek-V3 format) in Triton.

out[m, n] = sum over K blocks kb of a_scale[m, kb] * w_scale[n // 128, kb] * (a[m, kb] . w[n, kb]).
BLOCK_K is 128, so every K step is one scale group: its fp8 x fp8 dot goes into a fresh fp32 partial
that is scaled and added to an fp32 accumulator. Besides applying the scales, this bounds the run of
the tensor cores' reduced-precision FP8 accumulation to 128 products (DeepSeek-V3 report §3.3).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from evalkit.backends.moe.kernels.tiles import (
    BLOCK_K,
    SCALE_BLOCK_N,
    GemmTiles,
    gemm_tiles,
    interpreting,
)
from evalkit.backends.moe.quant import FP8


@triton.jit
def block_scaled_dot(
    a_ptrs, w_ptrs, a_scale_ptrs, w_scale_ptrs, mask_m, mask_n, first_kb, last_kb,
    stride_ak, stride_wk, stride_ask, stride_wsk,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The fp32 [BLOCK_M, BLOCK_N] sum over K blocks [first_kb, last_kb) of scaled fp8 dots.

    a_ptrs point at a [BLOCK_M, BLOCK_K] tile; w_ptrs at a [BLOCK_K, BLOCK_N] tile with K along rows
    (K-major, as FP8 MMAs want their B operand); the scale pointers at K block 0 of each row and column."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(first_kb, last_kb):
        a = tl.load(a_ptrs + kb * BLOCK_K * stride_ak, mask=mask_m[:, None], other=0.0)
        w = tl.load(w_ptrs + kb * BLOCK_K * stride_wk, mask=mask_n[None, :], other=0.0)
        a_scale = tl.load(a_scale_ptrs + kb * stride_ask, mask=mask_m, other=0.0)
        w_scale = tl.load(w_scale_ptrs + kb * stride_wsk, mask=mask_n, other=0.0)
        acc += tl.dot(a, w) * a_scale[:, None] * w_scale[None, :]
    return acc


@triton.jit
def _fp8_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, c_ptr,
    M, N, K, k_blocks_per_split,
    stride_am, stride_ak, stride_asm, stride_ask,
    stride_wn, stride_wk, stride_wsn, stride_wsk,
    stride_cs, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SCALE_BLOCK_N: tl.constexpr,
):
    # Grouped order: GROUP_M consecutive programs share a column of w tiles, which then stays in L2.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    group_size = GROUP_M * num_pid_n
    first_pid_m = (pid // group_size) * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (pid % group_size) % group_rows
    pid_n = (pid % group_size) // group_rows
    split = tl.program_id(1)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    first_kb = split * k_blocks_per_split
    acc = block_scaled_dot(
        a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak,
        w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn,
        a_scale_ptr + offs_m * stride_asm,
        w_scale_ptr + (offs_n // SCALE_BLOCK_N) * stride_wsn,
        mask_m, mask_n, first_kb, tl.minimum(first_kb + k_blocks_per_split, tl.cdiv(K, BLOCK_K)),
        stride_ak, stride_wk, stride_ask, stride_wsk, BLOCK_M, BLOCK_N, BLOCK_K,
    )

    c_ptrs = c_ptr + split * stride_cs + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _check_inputs(a: torch.Tensor, a_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor) -> None:
    if a.dtype != FP8 or w.dtype != FP8:
        raise ValueError(f"fp8_gemm takes float8_e4m3fn operands, got {a.dtype} and {w.dtype}")
    if w.dim() != 2 or a.shape[-1] != w.shape[1]:
        raise ValueError(f"inner dimensions differ: activations {tuple(a.shape)}, weight {tuple(w.shape)}")
    k = w.shape[1]
    if k == 0 or k % BLOCK_K:
        raise ValueError(f"K = {k} is not a positive multiple of the {BLOCK_K}-wide scale block")
    if tuple(a_scale.shape) != (*a.shape[:-1], k // BLOCK_K):
        raise ValueError(f"activation scales {tuple(a_scale.shape)} do not match activations {tuple(a.shape)}")
    expected = (triton.cdiv(w.shape[0], SCALE_BLOCK_N), k // BLOCK_K)
    if tuple(w_scale.shape) != expected:
        raise ValueError(f"weight scales {tuple(w_scale.shape)} do not match weight {tuple(w.shape)}: expected {expected}")


def fp8_gemm(
    a: torch.Tensor,
    a_scale: torch.Tensor,
    w: torch.Tensor,
    w_scale: torch.Tensor,
    out_dtype: torch.dtype = torch.float32,
    tiles: GemmTiles | None = None,
) -> torch.Tensor:
    """a fp8 [..., K] with a_scale fp32 [..., K/128]; w fp8 [N, K] with w_scale fp32 [ceil(N/128), K/128].

    Returns [..., N] in out_dtype. `tiles` overrides the table in `tiles.py` (tests use it to run
    split-K under the interpreter). Split-K programs write fp32 partials that torch then sums, which
    keeps the result deterministic; the interpreter also gets fp32 out, as its bf16 stores truncate."""
    _check_inputs(a, a_scale, w, w_scale)
    lead = a.shape[:-1]
    a2 = a.reshape(-1, a.shape[-1])
    a_scale2 = a_scale.reshape(-1, a_scale.shape[-1]).float()
    w_scale = w_scale.float()
    m, k = a2.shape
    n = w.shape[0]
    if tiles is None:
        tiles = gemm_tiles(m, n, k, a.device)
    k_blocks = k // BLOCK_K
    split_k = min(tiles.split_k, k_blocks)
    k_blocks_per_split = triton.cdiv(k_blocks, split_k)
    split_k = triton.cdiv(k_blocks, k_blocks_per_split)
    stores_out_dtype = split_k == 1 and not interpreting(a.device)
    partial = torch.empty((split_k, m, n), dtype=out_dtype if stores_out_dtype else torch.float32, device=a.device)
    if m and n:
        grid = (triton.cdiv(m, tiles.block_m) * triton.cdiv(n, tiles.block_n), split_k)
        _fp8_gemm_kernel[grid](
            a2, a_scale2, w, w_scale, partial,
            m, n, k, k_blocks_per_split,
            a2.stride(0), a2.stride(1), a_scale2.stride(0), a_scale2.stride(1),
            w.stride(0), w.stride(1), w_scale.stride(0), w_scale.stride(1),
            partial.stride(0), partial.stride(1), partial.stride(2),
            BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_K=BLOCK_K,
            GROUP_M=tiles.group_m, SCALE_BLOCK_N=SCALE_BLOCK_N,
            num_warps=tiles.num_warps, num_stages=tiles.num_stages,
        )
    out = partial.sum(0) if split_k > 1 else partial[0]
    return out.to(out_dtype).reshape(*lead, n)
