"""Tile configurations for the FP8 kernels, chosen from an explicit table instead of `@triton.autotune`.

A table is deterministic, costs nothing at first call, and works under the Triton interpreter, where
autotuning with two or more configs fails (design §4). The CUDA entries follow vLLM's and DeepSeek's
defaults for block-FP8 GEMMs on Hopper; `benchmarks/fp8_gemm.py` is where they get checked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
import triton
from evalkit.backends.moe.quant import ceil_div

# One K step is one 128-wide scale group of both operands.
BLOCK_K = 128
# Rows of a weight that share one scale (the checkpoint's block size along N).
SCALE_BLOCK_N = 128
# Enough programs to cover an H100's 132 SMs; small-M GEMMs split K to get there.
TARGET_PROGRAMS = 132
# Split-K pays a reduction pass; below this many K blocks per split it stops paying for itself.
MIN_K_BLOCKS_PER_SPLIT = 4


@dataclass(frozen=True)
class GemmTiles:
    block_m: int
    block_n: int
    group_m: int = 8
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3


# The interpreter's cost is per program and K step, not per element: the biggest tiles are the cheapest.
INTERPRETER_GEMM = GemmTiles(block_m=128, block_n=128, group_m=1, split_k=1, num_warps=4, num_stages=1)
# Grouped MoE tiles pad every expert's rows to block_m, so the interpreter gets a small block_m there.
INTERPRETER_MOE = GemmTiles(block_m=16, block_n=128, num_warps=4, num_stages=1)


def interpreting(device: torch.device) -> bool:
    """True when kernels run through the Triton interpreter: asked for explicitly, or on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET") == "1" or device.type == "cpu"


def gemm_tiles(m: int, n: int, k: int, device: torch.device) -> GemmTiles:
    """Tiles for fp8_gemm of [m, k] x [n, k]^T, by M bucket, then split-K until the grid fills the GPU.

    Small M is memory bound: a narrow BLOCK_M wastes little of the MMA, and splitting K lets every SM
    stream a part of the weight (N=2112 in 64-wide tiles is only 33 programs for 132 SMs)."""
    if interpreting(device):
        return INTERPRETER_GEMM
    if m <= 64:
        tiles = GemmTiles(block_m=max(16, triton.next_power_of_2(m)), block_n=64, num_warps=4, num_stages=4)
    elif m <= 256:
        tiles = GemmTiles(block_m=64, block_n=128, num_warps=4, num_stages=4)
    else:
        tiles = GemmTiles(block_m=128, block_n=128, num_warps=8, num_stages=3)
    programs = ceil_div(m, tiles.block_m) * ceil_div(n, tiles.block_n)
    split_k = min(ceil_div(TARGET_PROGRAMS, programs), ceil_div(k, BLOCK_K) // MIN_K_BLOCKS_PER_SPLIT)
    return replace(tiles, split_k=max(1, split_k))


def moe_tiles(num_pairs: int, num_experts: int, device: torch.device) -> GemmTiles:
    """Tiles for the grouped MoE GEMMs; block_m is also the padding unit of each expert's rows, and
    group_m and split_k do not apply (programs follow the expert-sorted blocks).

    With few (token, expert) pairs per expert, a wide block_m would be mostly padding."""
    if interpreting(device):
        return INTERPRETER_MOE
    rows_per_expert = num_pairs / max(num_experts, 1)
    if rows_per_expert <= 16:
        return GemmTiles(block_m=16, block_n=64, num_warps=4, num_stages=4)
    if rows_per_expert <= 128:
        return GemmTiles(block_m=64, block_n=128, num_warps=4, num_stages=4)
    return GemmTiles(block_m=128, block_n=128, num_warps=8, num_stages=3)
