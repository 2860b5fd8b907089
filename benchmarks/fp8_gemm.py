"""Block-FP8 GEMM speed on DeepSeek-V3's shapes: our Triton `fp8_gemm` against blockwise
`torch._scaled_mm` (cuBLAS, 1x128 x 128x128 scales) and bf16 `torch.matmul`, plus `act_quant` alone.

Every row is checked in the same run: ours against the torch emulation (`quant.block_fp8_matmul`) and,
through calc_diff, against the unquantized product; `_scaled_mm` against ours, since wrong scale
layouts give silently wrong results there (PyTorch PR #166752). Times are do_bench medians (L2 flushed).
GB/s counts A + B + scales + C, as DeepGEMM does; %roof is the share of min(peak FLOPS, HBM BW x intensity).

    python benchmarks/fp8_gemm.py [--quick] [--json report.json]
"""
from __future__ import annotations

import argparse
import functools
import json
import sys

import torch
import triton
import triton.testing
from evalkit.backends.moe import quant
from evalkit.backends.moe.kernels import act_quant, fp8_gemm

SHAPES_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
SIZES_M = [1, 8, 64, 128, 1024, 4096]
QUICK_NK = [(2112, 7168), (7168, 2048)]
QUICK_M = [1, 64, 4096]

# Dense peaks from NVIDIA's datasheets: (FP8 TFLOPS, BF16 TFLOPS, HBM TB/s). Checked in order.
PEAKS = [
    ("H200", (1979.0, 989.0, 4.8)),
    ("H100 PCIe", (1513.0, 756.0, 2.0)),
    ("H100", (1979.0, 989.0, 3.35)),
]


def device_peaks(name: str) -> tuple[float, float, float] | None:
    return next((peaks for key, peaks in PEAKS if key in name), None)


def calc_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return (1 - 2 * (x * y).sum() / (x * x + y * y).sum()).item()


def rel_l2(x: torch.Tensor, y: torch.Tensor) -> float:
    return ((x.float() - y.float()).norm() / y.float().norm()).item()


def median_us(fn) -> float:
    return triton.testing.do_bench(fn, return_mode="median") * 1e3


def scaled_mm_b_scales(w_scale: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Candidate B-scale layouts for blockwise _scaled_mm with B = w.T: [K/128, N/128] K-contiguous,
    plain, then with the K-block stride padded to a multiple of 4, as a view and as the full padded
    tensor (PR #166752's layout); which one a torch build wants has changed between versions."""
    k_blocks = w_scale.shape[1]
    padded = w_scale.new_zeros(w_scale.shape[0], -(-k_blocks // 4) * 4)
    padded[:, :k_blocks] = w_scale
    return [("plain", w_scale.t()), ("padded-view", padded[:, :k_blocks].t()), ("padded", padded.t())]


def time_scaled_mm(a, a_scale, w, w_scale, expected: torch.Tensor) -> tuple[float | None, str]:
    """Median µs of the first layout that runs and agrees with our kernel, or None and why not."""
    a_scale_col_major = a_scale.t().contiguous().t()
    reasons = []
    for layout, b_scale in scaled_mm_b_scales(w_scale):
        run = functools.partial(
            torch._scaled_mm, a, w.t(), scale_a=a_scale_col_major, scale_b=b_scale, out_dtype=torch.bfloat16
        )
        try:
            out = run()
        except (RuntimeError, ValueError) as error:
            reasons.append(f"{layout}: {str(error).splitlines()[0][:80]}")
            continue
        if rel_l2(out, expected) > 1e-2:
            reasons.append(f"{layout}: wrong result (rel {rel_l2(out, expected):.2e})")
            continue
        return median_us(run), layout
    return None, "; ".join(reasons)


def bench_one(m: int, n: int, k: int, peaks: tuple[float, float, float] | None) -> dict:
    generator = torch.Generator(device="cuda").manual_seed(m * 7 + n * 13 + k)
    x = torch.randn(m, k, device="cuda", generator=generator)
    w = torch.randn(n, k, device="cuda", generator=generator)
    x_bf16, w_bf16 = x.to(torch.bfloat16), w.to(torch.bfloat16)
    wq, w_scale = quant.weight_quant(w, (128, 128))
    a, a_scale = act_quant(x_bf16)

    ours = fp8_gemm(a, a_scale, wq, w_scale, out_dtype=torch.bfloat16)
    emulated = quant.block_fp8_matmul(a, a_scale, wq, w_scale, (128, 128))
    row = {
        "m": m, "n": n, "k": k,
        "rel_vs_emulate": rel_l2(ours, emulated),
        "calc_diff_vs_fp32": calc_diff(ours, x @ w.T),
    }
    row["ok"] = row["rel_vs_emulate"] <= 2e-3 and row["calc_diff_vs_fp32"] < 1e-3
    del emulated

    row["ours_us"] = median_us(lambda: fp8_gemm(a, a_scale, wq, w_scale, out_dtype=torch.bfloat16))
    row["act_quant_us"] = median_us(lambda: act_quant(x_bf16))
    row["scaled_mm_us"], row["scaled_mm_note"] = time_scaled_mm(a, a_scale, wq, w_scale, ours)
    row["bf16_us"] = median_us(lambda: torch.matmul(x_bf16, w_bf16.t()))

    flops = 2 * m * n * k
    fp8_bytes = m * k + n * k + 4 * (m * k // 128 + triton.cdiv(n, 128) * (k // 128)) + 2 * m * n
    row["tflops"] = flops / row["ours_us"] / 1e6
    row["gbps"] = fp8_bytes / row["ours_us"] / 1e3
    row["act_quant_gbps"] = (2 * m * k + m * k + 4 * m * k // 128) / row["act_quant_us"] / 1e3
    row["x_scaled_mm"] = row["scaled_mm_us"] / row["ours_us"] if row["scaled_mm_us"] else None
    row["x_bf16"] = row["bf16_us"] / row["ours_us"]
    if peaks is not None:
        fp8_tflops, bf16_tflops, tbps = peaks
        bf16_bytes = 2 * (m * k + n * k + m * n)
        row["pct_roofline"] = 100 * row["tflops"] / min(fp8_tflops, tbps * flops / fp8_bytes)
        row["bf16_pct_roofline"] = 100 * flops / row["bf16_us"] / 1e6 / min(bf16_tflops, tbps * flops / bf16_bytes)
    return row


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 N x K shapes and M in {1, 64, 4096}")
    parser.add_argument("--json", metavar="PATH", help="write the rows and the device name here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/fp8_gemm.py needs a CUDA GPU (an H100 or H200); none is available here")
        return 2

    name = torch.cuda.get_device_name()
    peaks = device_peaks(name)
    print(f"device: {name}; peaks (FP8 TFLOPS, BF16 TFLOPS, TB/s): {peaks or 'unknown, no %roof'}")
    header = (f"{'M':>5} {'N':>6} {'K':>6} | {'ours us':>9} {'TFLOPS':>7} {'GB/s':>6} {'%roof':>6} | "
              f"{'aq us':>8} {'aq GB/s':>7} | {'smm us':>9} {'x smm':>6} | {'bf16 us':>9} {'x bf16':>6} | check")
    print(header)
    print("-" * len(header))
    rows = []
    for n, k in QUICK_NK if args.quick else SHAPES_NK:
        for m in QUICK_M if args.quick else SIZES_M:
            row = bench_one(m, n, k, peaks)
            rows.append(row)
            check = "ok" if row["ok"] else f"FAIL rel {row['rel_vs_emulate']:.1e} diff {row['calc_diff_vs_fp32']:.1e}"
            smm_note = "" if row["scaled_mm_us"] else f" (scaled_mm n/a: {row['scaled_mm_note']})"
            print(f"{m:>5} {n:>6} {k:>6} | {row['ours_us']:>9.1f} {row['tflops']:>7.1f} {row['gbps']:>6.0f} "
                  f"{fmt(row.get('pct_roofline'), '>6.1f')} | {row['act_quant_us']:>8.1f} {row['act_quant_gbps']:>7.0f} | "
                  f"{fmt(row['scaled_mm_us'], '>9.1f')} {fmt(row['x_scaled_mm'], '>6.2f')} | "
                  f"{row['bf16_us']:>9.1f} {row['x_bf16']:>6.2f} | {check}{smm_note}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"device": name, "peaks": peaks, "rows": rows}, handle, indent=1)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
