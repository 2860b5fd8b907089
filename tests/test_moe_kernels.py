"""The block-FP8 Triton kernels (act_quant, fp8_gemm, fused_moe) against the pure-torch numerics of
`evalkit.backends.moe.quant`.

Without CUDA they run through the Triton interpreter (conftest sets TRITON_INTERPRET=1 before this
module imports them), where fp8 dots are exact and tolerances are tight; on CUDA the same cases run
compiled, with the looser GPU tolerances of design §7. Shapes stay small: the interpreter costs
milliseconds per program and K step.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from evalkit.backends.moe import quant
from evalkit.backends.moe.kernels import act_quant, fp8_gemm, fused_moe
from evalkit.backends.moe.kernels.tiles import GemmTiles

BLOCK = (128, 128)


@pytest.fixture(params=["cuda"] if torch.cuda.is_available() else ["cpu"])
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


def assert_matches(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Interpreted fp8 dots are exact, so only fp32 summation order separates kernel and reference;
    compiled ones accumulate FP8 products in reduced precision within each 128-wide K block."""
    assert out.shape == ref.shape
    rel = ((out.float() - ref).norm() / ref.norm()).item()
    if out.device.type == "cuda":
        assert rel <= 2e-3
        assert (out.float() - ref).abs().max().item() <= 1e-2 * ref.abs().max().item()
    else:
        assert rel <= 1e-5


def calc_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """DeepGEMM's test metric, about half the squared relative error."""
    x, y = x.double(), y.double()
    return (1 - 2 * (x * y).sum() / (x * x + y * y).sum()).item()


def quantized_gemm_inputs(m: int, n: int, k: int, device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=generator)
    w = torch.randn(n, k, generator=generator)
    a, a_scale = quant.act_quant(x)
    wq, w_scale = quant.weight_quant(w, BLOCK)
    return x, w, *(t.to(device) for t in (a, a_scale, wq, w_scale))


# ---------------------------------------------------------------- fp8_gemm

@pytest.mark.parametrize(
    "m, n, k",
    [(1, 576, 512), (1, 160, 128), (16, 576, 128), (16, 160, 512),
     (16, 256, 256), (128, 160, 128), (128, 576, 512), (128, 256, 512)],
)
def test_gemm_matches_block_fp8_matmul(device: torch.device, m: int, n: int, k: int) -> None:
    _, _, a, a_scale, w, w_scale = quantized_gemm_inputs(m, n, k, device)
    out = fp8_gemm(a, a_scale, w, w_scale)
    assert out.dtype == torch.float32
    assert_matches(out, quant.block_fp8_matmul(a, a_scale, w, w_scale, BLOCK))


@pytest.mark.parametrize(
    "tiles",
    [GemmTiles(block_m=16, block_n=64, group_m=1, split_k=2), GemmTiles(block_m=16, block_n=64, group_m=2, split_k=3)],
    ids=["split2", "split3-grouped"],
)
def test_gemm_split_k_and_grouped_order(device: torch.device, tiles: GemmTiles) -> None:
    # 5 K blocks split unevenly; 40 rows and 160 columns leave partial tiles and a partial M group.
    _, _, a, a_scale, w, w_scale = quantized_gemm_inputs(40, 160, 640, device)
    out = fp8_gemm(a, a_scale, w, w_scale, tiles=tiles)
    assert_matches(out, quant.block_fp8_matmul(a, a_scale, w, w_scale, BLOCK))


def test_gemm_leading_dims_and_bf16_out(device: torch.device) -> None:
    _, _, a, a_scale, w, w_scale = quantized_gemm_inputs(6, 160, 256, device)
    ref = quant.block_fp8_matmul(a, a_scale, w, w_scale, BLOCK).view(2, 3, 160)
    out = fp8_gemm(a.view(2, 3, 256), a_scale.view(2, 3, 2), w, w_scale)
    assert_matches(out, ref)
    out_bf16 = fp8_gemm(a.view(2, 3, 256), a_scale.view(2, 3, 2), w, w_scale, out_dtype=torch.bfloat16)
    assert out_bf16.dtype == torch.bfloat16
    assert torch.equal(out_bf16, out.to(torch.bfloat16))


def test_gemm_close_to_unquantized_product(device: torch.device) -> None:
    x, w, a, a_scale, wq, w_scale = quantized_gemm_inputs(16, 576, 512, device, seed=1)
    assert calc_diff(fp8_gemm(a, a_scale, wq, w_scale).cpu(), x @ w.T) < 1e-3


def test_gemm_rejects_bad_inputs(device: torch.device) -> None:
    _, _, a, a_scale, w, w_scale = quantized_gemm_inputs(4, 160, 256, device)
    with pytest.raises(ValueError, match="positive multiple of the 128"):
        fp8_gemm(a[:, :192], a_scale, w[:, :192], w_scale)
    with pytest.raises(ValueError, match="weight scales"):
        fp8_gemm(a, a_scale, w, w_scale[:1])
    with pytest.raises(ValueError, match="activation scales"):
        fp8_gemm(a, a_scale[:, :1], w, w_scale)
    with pytest.raises(ValueError, match="inner dimensions"):
        fp8_gemm(a, a_scale, w[:, :128], w_scale)
    with pytest.raises(ValueError, match="float8_e4m3fn"):
        fp8_gemm(a.float(), a_scale, w, w_scale)


# ---------------------------------------------------------------- act_quant

def assert_same_quantization(x: torch.Tensor, scale_fmt: str | None = None) -> None:
    """Scales bit-equal and fp8 codes identical to torch's. The kernel rounds to the e4m3 grid in fp32
    before its cast, so this holds under the interpreter too, whose own fp32->fp8 cast is wrong."""
    values, scales = act_quant(x, scale_fmt=scale_fmt)
    ref_values, ref_scales = quant.act_quant(x.cpu(), scale_fmt=scale_fmt)
    assert values.dtype == quant.FP8 and scales.dtype == torch.float32
    assert torch.equal(scales.cpu(), ref_scales)
    assert torch.equal(values.cpu().view(torch.uint8), ref_values.view(torch.uint8))


@pytest.mark.parametrize("scale_fmt", [None, "ue8m0"])
def test_act_quant_matches_torch(device: torch.device, scale_fmt: str | None) -> None:
    generator = torch.Generator().manual_seed(2)
    # Rows from 1e-6 to 1e3 in magnitude, so both fp8 subnormals and normals are hit.
    x = torch.randn(2, 4, 256, generator=generator) * torch.logspace(-6, 3, 8).view(2, 4, 1)
    x[0, 0] = 0.0
    assert_same_quantization(x.to(device), scale_fmt)


def test_act_quant_ue8m0_rounds_up_just_above_a_power_of_two(device: torch.device) -> None:
    """amax / 448 one ulp above 2^-10 must give 2^-9: a scale below amax / 448 would saturate amax."""
    amax = torch.nextafter(torch.tensor(448 * 2.0 ** -10), torch.tensor(1.0))
    x = torch.zeros(1, 128)
    x[0, 3] = amax
    values, scales = act_quant(x.to(device), scale_fmt="ue8m0")
    assert (amax / quant.FP8_MAX).item() > 2.0 ** -10
    assert scales.item() == 2.0 ** -9
    assert values.float().cpu()[0, 3].item() == 224.0


def test_act_quant_rounds_ties_to_even(device: torch.device) -> None:
    # amax 448 makes the scale exactly 1, so these fp32 values are the codes' own midpoints.
    ties = torch.tensor([1.0625, 1.1875, -1.0625, 2 ** -10, 3 * 2 ** -10, 0.01171875, 240.0, 432.0])
    x = torch.cat([torch.tensor([448.0]), ties, torch.linspace(-448, 448, 119)]).view(1, 128)
    assert_same_quantization(x.to(device))
    values, _ = act_quant(x.to(device))
    assert values.float().cpu()[0, 1:9].tolist() == [1.0, 1.25, -1.0, 0.0, 2 ** -8, 0.01171875, 240.0, 448.0]


def test_act_quant_bf16_input(device: torch.device) -> None:
    x = torch.randn(3, 384, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    assert_same_quantization(x.to(device))


def test_act_quant_amax_floor_is_a_floor(device: torch.device) -> None:
    """Regression for DeepSeek's wrong-way clamp, min(amax, 1e-4): a tiny or all-zero group must get
    scale 1e-4 / 448, and a normal group amax / 448, not the other way round."""
    x = torch.zeros(3, 128)
    x[1, 5] = 3e-7
    x[2, 7] = 2.0
    values, scales = act_quant(x.to(device))
    floor = torch.tensor(quant.AMAX_FLOOR) / quant.FP8_MAX
    amax = torch.tensor(2.0) / quant.FP8_MAX
    assert scales.cpu().flatten().tolist() == [floor.item(), floor.item(), amax.item()]
    assert values.float().cpu()[1, 5].item() == pytest.approx(3e-7 / floor.item(), rel=0.07)
    assert values.float().cpu()[2, 7].item() == quant.FP8_MAX


def test_act_quant_rejects_bad_inputs(device: torch.device) -> None:
    with pytest.raises(ValueError, match="multiple of the quantization block"):
        act_quant(torch.zeros(2, 100, device=device))
    with pytest.raises(ValueError, match="scale format"):
        act_quant(torch.zeros(2, 128, device=device), scale_fmt="e8m0")


# ---------------------------------------------------------------- fused_moe

TOKENS, EXPERTS, TOP_K, HIDDEN, INTER = 16, 8, 2, 256, 128


def quantize_experts(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [quant.weight_quant(w, BLOCK) for w in weights]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


@pytest.fixture(scope="module")
def experts() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(4)
    w13, w13_scale = quantize_experts(torch.randn(EXPERTS, 2 * INTER, HIDDEN, generator=generator) * 0.05)
    w2, w2_scale = quantize_experts(torch.randn(EXPERTS, HIDDEN, INTER, generator=generator) * 0.05)
    return w13, w13_scale, w2, w2_scale


def reference_moe(x, w13, w13_scale, w2, w2_scale, topk_weights, topk_ids) -> torch.Tensor:
    """The W8A8 layer in quant.py's terms: both GEMM inputs go through the 1x128 quantization round trip."""
    inter = w13.shape[1] // 2
    x = quant.act_dequant(*quant.act_quant(x))
    out = torch.zeros_like(x)
    for expert in range(w13.shape[0]):
        tokens, slots = torch.nonzero(topk_ids == expert, as_tuple=True)
        if tokens.numel() == 0:
            continue
        gate_up = x[tokens] @ quant.weight_dequant(w13[expert], w13_scale[expert], BLOCK).T
        h = quant.act_dequant(*quant.act_quant(F.silu(gate_up[:, :inter]) * gate_up[:, inter:]))
        down = h @ quant.weight_dequant(w2[expert], w2_scale[expert], BLOCK).T
        out.index_add_(0, tokens, down * topk_weights[tokens, slots, None])
    return out


def uniform_routing(generator: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randperm(EXPERTS, generator=generator)[:TOP_K] for _ in range(TOKENS)])


@pytest.mark.parametrize(
    "routing",
    [
        uniform_routing,
        lambda g: torch.zeros(TOKENS, 1, dtype=torch.int64),
        lambda g: torch.tensor([1, 5])[torch.randint(0, 2, (TOKENS, TOP_K), generator=g)],
    ],
    ids=["uniform", "one-expert", "empty-experts"],
)
def test_fused_moe_matches_reference(device: torch.device, experts, routing) -> None:
    generator = torch.Generator().manual_seed(5)
    topk_ids = routing(generator)
    topk_weights = torch.rand(topk_ids.shape, generator=generator)
    x = torch.randn(TOKENS, HIDDEN, generator=generator)
    ref = reference_moe(x, *experts, topk_weights, topk_ids)
    out = fused_moe(*(t.to(device) for t in (x, *experts, topk_weights, topk_ids)))
    assert out.dtype == torch.float32
    assert_matches(out, ref)


def test_fused_moe_without_tokens(device: torch.device, experts) -> None:
    out = fused_moe(
        torch.zeros(0, HIDDEN, device=device), *(t.to(device) for t in experts),
        torch.zeros(0, TOP_K, device=device), torch.zeros(0, TOP_K, dtype=torch.int64, device=device),
    )
    assert out.shape == (0, HIDDEN) and out.dtype == torch.float32


def test_fused_moe_rejects_bad_inputs(device: torch.device, experts) -> None:
    w13, w13_scale, w2, w2_scale = (t.to(device) for t in experts)
    x = torch.zeros(2, HIDDEN, device=device)
    weights = torch.ones(2, TOP_K, device=device)
    ids = torch.zeros(2, TOP_K, dtype=torch.int64, device=device)
    with pytest.raises(ValueError, match="multiples of 128"):
        fused_moe(x, w13[:, :192], w13_scale, w2, w2_scale, weights, ids)
    with pytest.raises(ValueError, match="w2 has shape"):
        fused_moe(x, w13, w13_scale, w2[:, :128], w2_scale, weights, ids)
    with pytest.raises(ValueError, match="topk_weights has shape"):
        fused_moe(x, w13, w13_scale, w2, w2_scale, weights[:, :1], ids)
    with pytest.raises(ValueError, match=r"topk_ids must lie in \[0, 8\)"):
        fused_moe(x, w13, w13_scale, w2, w2_scale, weights, ids + EXPERTS)
