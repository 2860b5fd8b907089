"""The pure-torch block-FP8 quantizers every other path is checked against, on hand-computed cases."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from evalkit.backends.moe import quant  # noqa: E402


def test_act_quant_scale_is_amax_over_448_and_ties_round_to_even() -> None:
    x = torch.zeros(1, 128)
    x[0, :5] = torch.tensor([448.0, 1.0625, 1.1875, -1.0, 0.0])
    values, scale = quant.act_quant(x)
    assert scale.tolist() == [[1.0]]
    # 1.0625 lies halfway between fp8 codes 1.0 and 1.125: ties go to the even code.
    assert values.float()[0, :5].tolist() == [448.0, 1.0, 1.25, -1.0, 0.0]


def test_act_quant_floors_the_amax_at_1e4() -> None:
    """DeepSeek's reference once clamped amax the wrong way (min instead of max): tiny groups then got
    tiny scales, and all-zero groups a zero scale. The floor is a floor."""
    x = torch.zeros(2, 256)
    x[0, :128] = 1e-6  # group 0 tiny, group 1 all zero
    x[1, 128:] = torch.linspace(-2, 2, 128)
    values, scale = quant.act_quant(x)
    floor = torch.tensor(1e-4) / 448
    assert scale[0].tolist() == [floor.item(), floor.item()]
    assert scale[1, 1].item() == (torch.tensor(2.0) / 448).item()
    assert torch.isfinite(quant.act_dequant(values, scale)).all()
    assert values.float()[0, 128:].eq(0).all()


def test_act_quant_saturates_at_448_explicitly() -> None:
    x = torch.full((1, 128), 3.0)
    x[0, 0] = 6.0
    values, scale = quant.act_quant(x)
    assert values.float().abs().max().item() == 448.0
    assert quant.act_dequant(values, scale)[0, 0].item() == pytest.approx(6.0)


def test_ue8m0_rounds_scales_up_to_a_power_of_two() -> None:
    just_above = torch.nextafter(torch.tensor(2.0**-10), torch.tensor(1.0))
    scales = torch.stack([torch.tensor(2.0**-10), just_above, torch.tensor(0.3), torch.tensor(3.0)])
    assert quant.round_scale_ue8m0(scales).tolist() == [2.0**-10, 2.0**-9, 0.5, 4.0]
    x = torch.zeros(1, 128)
    x[0, 0] = just_above * 448
    values, scale = quant.act_quant(x, scale_fmt="ue8m0")
    assert scale.item() == 2.0**-9
    assert values.float()[0, 0].item() == 224.0
    with pytest.raises(ValueError, match="unknown activation scale format"):
        quant.act_quant(x, scale_fmt="e5m2")


def test_act_quant_needs_whole_groups() -> None:
    with pytest.raises(ValueError, match="not a multiple of the quantization block 128"):
        quant.act_quant(torch.ones(2, 200))


def test_weight_quant_edge_block_scale_comes_from_its_own_rows() -> None:
    weight = torch.full((160, 256), 100.0)
    weight[128:, :128] = 7.0  # the partial row block: 32 valid rows
    weight[:, 128:] = 0.0  # an all-zero column of blocks
    values, scale_inv = quant.weight_quant(weight, (128, 128))
    assert tuple(scale_inv.shape) == (2, 2)
    assert scale_inv[1, 0].item() == (torch.tensor(7.0) / 448).item()
    assert scale_inv[0, 0].item() == (torch.tensor(100.0) / 448).item()
    assert scale_inv[:, 1].tolist() == [1.0, 1.0]
    assert torch.equal(quant.weight_dequant(values, scale_inv, (128, 128)), weight)


def test_weight_round_trip_error_is_within_half_an_fp8_step() -> None:
    weight = torch.randn(300, 384, generator=torch.Generator().manual_seed(0))
    values, scale_inv = quant.weight_quant(weight, (128, 128))
    error = (quant.weight_dequant(values, scale_inv, (128, 128)) - weight).abs()
    # e4m3 has 3 mantissa bits: relative rounding error at most 2^-4 of the value (normals).
    assert (error <= weight.abs() * 2**-4 + scale_inv.max() * 2**-9).all()


def naive_block_gemm(a, a_scale, w, w_scale, block):
    """The kernels' formula, literally: per K block, scale products times the fp8 dot product."""
    m, k = a.shape
    n = w.shape[0]
    out = torch.zeros(m, n, dtype=torch.float64)
    for kb in range(k // block[1]):
        cols = slice(kb * block[1], (kb + 1) * block[1])
        dot = a[:, cols].double() @ w[:, cols].double().T
        w_rows = w_scale[torch.arange(n) // block[0], kb].double()
        out += a_scale[:, kb, None].double() * w_rows[None, :] * dot
    return out


def test_block_fp8_matmul_is_the_kernel_formula() -> None:
    generator = torch.Generator().manual_seed(1)
    a, a_scale = quant.act_quant(torch.randn(5, 256, generator=generator))
    w, w_scale = quant.weight_quant(torch.randn(160, 256, generator=generator), (128, 128))
    got = quant.block_fp8_matmul(a, a_scale, w, w_scale, (128, 128))
    want = naive_block_gemm(a, a_scale, w, w_scale, (128, 128))
    assert ((got.double() - want).norm() / want.norm()).item() < 1e-6
    with pytest.raises(ValueError, match="inner dimensions differ"):
        quant.block_fp8_matmul(a, a_scale, w[:, :128], w_scale[:, :1], (128, 128))
