"""Triton kernels for block-FP8 (W8A8) DeepSeek-V3 inference. Importing this package imports triton,
so the rest of `evalkit.backends.moe` imports it lazily; without CUDA, set TRITON_INTERPRET=1 first."""
from evalkit.backends.moe.kernels.act_quant import act_quant
from evalkit.backends.moe.kernels.fp8_gemm import fp8_gemm
from evalkit.backends.moe.kernels.fused_moe import fused_moe

__all__ = ["act_quant", "fp8_gemm", "fused_moe"]
