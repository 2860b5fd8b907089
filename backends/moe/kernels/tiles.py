"""Tile configurations for the FP8 kernels, chosen from an explicit table instead of `@triton.autotune`.

A table is deterministic, costs nothing at first call, and works under the Triton interpreter, where
autotuning with two or more configs fails (design §4). The CUDA entries follow vLLM's and DeepSeek's
defaults for block-FP8 GEMMs on Hopper; `benchmarks/fp8_gemm.py` is where they get checked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

# One K step is one 128-wide scale group of both operands.
BLOCK_K = 128
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
INTERPRETER_MOE = GemmTiles(block_m=16, block_n=128, group_m=1, split_k=1, num_warps=4, num_stages=1)


def interpreting(device: torch.device) -> bool:
    """True when kernels run through the Triton interpreter: asked for explicitly, or on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET") == "1" or device.type == "cpu"


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def gemm_tiles(m: int, n: int, k: int, device: torch.device) -> GemmTiles:
    """Tiles for fp8_gemm of [m, k] x [n, k]^T, by M bucket.

    Small M is memory bound: a narrow BLOCK_M wastes little of the MMA, and split-K raises the
    program count so that every SM streams a part of the weight."""
    if interpreting(device):
        return INTERPRETER_GEMM
    if m <= 64:
        block_m = 16 if m <= 16 else (32 if m <= 32 else 64)
        tiles = _cdiv(m, block_m) * _cdiv(n, 64)
        k_blocks = _cdiv(k, BLOCK_K)
        split_k = max(1, min(_cdiv(TARGET_PROGRAMS, tiles), k_blocks // MIN_K_BLOCKS_PER_SPLIT))
        return GemmTiles(block_m=block_m, block_n=64, group_m=8, split_k=split_k, num_warps=4, num_stages=4)
    if m <= 256:
        return GemmTiles(block_m=64, block_n=128, group_m=8, split_k=1, num_warps=4, num_stages=4)
    return GemmTiles(block_m=128, block_n=128, group_m=8, split_k=1, num_warps=8, num_stages=3)


def moe_tiles(num_pairs: int, num_experts: int, device: torch.device) -> GemmTiles:
    """Tiles for the grouped MoE GEMMs; block_m is also the padding unit of each expert's rows.

    With few (token, expert) pairs per expert, a wide block_m would be mostly padding."""
    if interpreting(device):
        return INTERPRETER_MOE
    rows_per_expert = num_pairs / max(num_experts, 1)
    if rows_per_expert <= 16:
        return GemmTiles(block_m=16, block_n=64, group_m=1, split_k=1, num_warps=4, num_stages=4)
    if rows_per_expert <= 128:
        return GemmTiles(block_m=64, block_n=128, group_m=1, split_k=1, num_warps=4, num_stages=4)
    return GemmTiles(block_m=128, block_n=128, group_m=1, split_k=1, num_warps=8, num_stages=3)
