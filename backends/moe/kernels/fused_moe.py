"""Routed-expert MoE layer in block FP8 (W8A8): two grouped GEMMs over tokens sorted by expert.

Layout and alignment follow vLLM's `fused_moe`: the flattened (token, k) pairs are sorted by expert
on the host, each expert's run is padded to a multiple of BLOCK_M with a sentinel, and every M block
of the grouped GEMM then reads a single expert's weight. The down GEMM multiplies in the routing
weight, so the layer output is one sum over k.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from evalkit.backends.moe.kernels.act_quant import act_quant
from evalkit.backends.moe.kernels.fp8_gemm import block_scaled_dot
from evalkit.backends.moe.kernels.tiles import (
    BLOCK_K,
    SCALE_BLOCK_N,
    GemmTiles,
    moe_tiles,
)
from evalkit.backends.moe.quant import FP8


@triton.jit
def _grouped_fp8_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, c_ptr, sorted_pairs_ptr, block_expert_ptr, routing_weight_ptr,
    N, K, num_pairs, pairs_per_a_row,
    stride_am, stride_ak, stride_asm, stride_ask,
    stride_we, stride_wn, stride_wk, stride_wse, stride_wsn, stride_wsk,
    stride_cm, stride_cn,
    MUL_ROUTING_WEIGHT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SCALE_BLOCK_N: tl.constexpr,
):
    """c[pair] = a[pair // pairs_per_a_row] @ w[expert]^T for the BLOCK_M sorted pairs of this program."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    pairs = tl.load(sorted_pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    mask_m = pairs < num_pairs
    rows = pairs // pairs_per_a_row
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_n = offs_n < N

    acc = block_scaled_dot(
        a_ptr + rows[:, None] * stride_am + offs_k[None, :] * stride_ak,
        w_ptr + expert * stride_we + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn,
        a_scale_ptr + rows * stride_asm,
        w_scale_ptr + expert * stride_wse + (offs_n // SCALE_BLOCK_N) * stride_wsn,
        mask_m, mask_n, 0, tl.cdiv(K, BLOCK_K),
        stride_ak, stride_wk, stride_ask, stride_wsk, BLOCK_M, BLOCK_N, BLOCK_K,
    )
    if MUL_ROUTING_WEIGHT:
        acc *= tl.load(routing_weight_ptr + pairs, mask=mask_m, other=0.0)[:, None]

    c_ptrs = c_ptr + pairs[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc, mask=mask_m[:, None] & mask_n[None, :])


@dataclass(frozen=True)
class _Alignment:
    """The sorted pair order: `sorted_pairs` holds flat (token * top_k + k) indices, expert by expert,
    each expert's run padded to block_m with the sentinel num_pairs; `block_expert` names the expert
    of every block_m-row block. Experts without pairs get no block."""

    sorted_pairs: torch.Tensor
    block_expert: torch.Tensor


def _align_by_expert(topk_ids: torch.Tensor, num_experts: int, block_m: int) -> _Alignment:
    flat = topk_ids.flatten()
    num_pairs = flat.numel()
    counts = torch.bincount(flat, minlength=num_experts)
    padded_counts = (counts + block_m - 1) // block_m * block_m
    padded_starts = torch.cumsum(padded_counts, 0) - padded_counts
    starts = torch.cumsum(counts, 0) - counts
    order = torch.argsort(flat, stable=True)
    expert_of_sorted = flat[order]
    rank_in_expert = torch.arange(num_pairs, device=flat.device) - starts[expert_of_sorted]
    total = int(padded_counts.sum())
    sorted_pairs = torch.full((total,), num_pairs, dtype=torch.int64, device=flat.device)
    sorted_pairs[padded_starts[expert_of_sorted] + rank_in_expert] = order
    block_expert = torch.repeat_interleave(torch.arange(num_experts, device=flat.device), padded_counts // block_m)
    return _Alignment(sorted_pairs=sorted_pairs, block_expert=block_expert)


def _grouped_gemm(
    a: torch.Tensor,
    a_scale: torch.Tensor,
    w: torch.Tensor,
    w_scale: torch.Tensor,
    alignment: _Alignment,
    num_pairs: int,
    pairs_per_a_row: int,
    tiles: GemmTiles,
    routing_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """fp32 [num_pairs, N]: row p is a[p // pairs_per_a_row] times its expert's weight."""
    n, k = w.shape[1], w.shape[2]
    out = torch.empty((num_pairs, n), dtype=torch.float32, device=a.device)
    grid = (alignment.block_expert.numel(), triton.cdiv(n, tiles.block_n))
    _grouped_fp8_gemm_kernel[grid](
        a, a_scale, w, w_scale, out, alignment.sorted_pairs, alignment.block_expert,
        routing_weight if routing_weight is not None else out,
        n, k, num_pairs, pairs_per_a_row,
        a.stride(0), a.stride(1), a_scale.stride(0), a_scale.stride(1),
        w.stride(0), w.stride(1), w.stride(2), w_scale.stride(0), w_scale.stride(1), w_scale.stride(2),
        out.stride(0), out.stride(1),
        MUL_ROUTING_WEIGHT=routing_weight is not None,
        BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_K=BLOCK_K, SCALE_BLOCK_N=SCALE_BLOCK_N,
        num_warps=tiles.num_warps, num_stages=tiles.num_stages,
    )
    return out


def _check_inputs(
    x: torch.Tensor,
    w13: torch.Tensor,
    w13_scale: torch.Tensor,
    w2: torch.Tensor,
    w2_scale: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
) -> None:
    if x.dim() != 2 or w13.dim() != 3 or w2.dim() != 3 or topk_ids.dim() != 2:
        raise ValueError(f"expected x [T, H], w13 [E, 2I, H], w2 [E, H, I], topk_ids [T, top_k]; got "
                         f"{tuple(x.shape)}, {tuple(w13.shape)}, {tuple(w2.shape)}, {tuple(topk_ids.shape)}")
    if w13.dtype != FP8 or w2.dtype != FP8:
        raise ValueError(f"expert weights must be float8_e4m3fn, got {w13.dtype} and {w2.dtype}")
    tokens, hidden = x.shape
    experts, two_inter, _ = w13.shape
    inter = two_inter // 2
    if hidden % BLOCK_K or two_inter % (2 * BLOCK_K):
        raise ValueError(f"hidden size {hidden} and intermediate size (w13 rows / 2 of {two_inter}) "
                         f"must be multiples of {BLOCK_K}")
    shapes = {
        "w13": (tuple(w13.shape), (experts, 2 * inter, hidden)),
        "w13_scale": (tuple(w13_scale.shape), (experts, 2 * inter // BLOCK_K, hidden // BLOCK_K)),
        "w2": (tuple(w2.shape), (experts, hidden, inter)),
        "w2_scale": (tuple(w2_scale.shape), (experts, triton.cdiv(hidden, SCALE_BLOCK_N), inter // BLOCK_K)),
        "topk_ids": (tuple(topk_ids.shape[:1]), (tokens,)),
        "topk_weights": (tuple(topk_weights.shape), tuple(topk_ids.shape)),
    }
    for name, (got, want) in shapes.items():
        if got != want:
            raise ValueError(f"{name} has shape {got}, expected {want}")
    if topk_ids.numel() and not (0 <= int(topk_ids.min()) and int(topk_ids.max()) < experts):
        raise ValueError(f"topk_ids must lie in [0, {experts})")


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor,
    w13_scale: torch.Tensor,
    w2: torch.Tensor,
    w2_scale: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
) -> torch.Tensor:
    """fp32 [T, H] = sum_k topk_weights[t, k] * down_e(silu(gate_e(x_t)) * up_e(x_t)), e = topk_ids[t, k].

    x [T, H] fp32/bf16; w13 fp8 [E, 2I, H] is gate_proj stacked on up_proj, with w13_scale
    [E, 2I/128, H/128]; w2 fp8 [E, H, I] with w2_scale [E, ceil(H/128), I/128]; topk_weights fp32 and
    topk_ids int64, both [T, top_k]. Both GEMM inputs are quantized 1x128, as the checkpoint expects."""
    _check_inputs(x, w13, w13_scale, w2, w2_scale, topk_weights, topk_ids)
    tokens, hidden = x.shape
    top_k = topk_ids.shape[1]
    num_pairs = tokens * top_k
    if num_pairs == 0:
        return torch.zeros((tokens, hidden), dtype=torch.float32, device=x.device)
    inter = w13.shape[1] // 2
    tiles = moe_tiles(num_pairs, w13.shape[0], x.device)
    alignment = _align_by_expert(topk_ids.to(torch.int64), w13.shape[0], tiles.block_m)

    xq, x_scale = act_quant(x)
    gate_up = _grouped_gemm(xq, x_scale, w13, w13_scale.float(), alignment, num_pairs, top_k, tiles)
    hq, h_scale = act_quant(F.silu(gate_up[:, :inter]) * gate_up[:, inter:])
    down = _grouped_gemm(
        hq, h_scale, w2, w2_scale.float(), alignment, num_pairs, 1, tiles,
        routing_weight=topk_weights.float().contiguous().flatten(),
    )
    return down.view(tokens, top_k, hidden).sum(1)
