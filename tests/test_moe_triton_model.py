"""The tiny FP8 model through the Triton kernels (interpreted on CPU, compiled on CUDA) against the
torch emulation of the same W8A8 math, layer by layer with teacher forcing: each layer gets the
emulation's own input, since across layers a 1e-7 difference flips FP8 activation codes and the
two drift apart chaotically (moe-fp8.md §7)."""
from __future__ import annotations


import pytest
import torch

from evalkit.backends.moe.checkpoint import load_checkpoint
from evalkit.backends.moe.model import MoE, Transformer
from evalkit.backends.moe.tiny import write_tiny_checkpoint

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Interpreted fp8 dots are exact; compiled ones accumulate in reduced precision within a K block.
TOLERANCE = 2e-3 if DEVICE == "cuda" else 1e-5


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Transformer, Transformer]:
    directory = write_tiny_checkpoint(tmp_path_factory.mktemp("moe") / "fp8")
    emulate = load_checkpoint(directory, device=DEVICE, precision="emulate")
    triton = load_checkpoint(directory, device=DEVICE, precision="triton")
    return emulate, triton


def test_triton_path_keeps_fp8_codes_and_packs_the_experts(models: tuple[Transformer, Transformer]) -> None:
    emulate, triton = models
    assert triton.layers[1].attn.wkv_a.weight.dtype == torch.float8_e4m3fn
    assert emulate.layers[1].attn.wkv_a.weight.dtype == torch.float32
    moe = triton.layers[1].ffn
    assert isinstance(moe, MoE) and moe.packed is not None
    w13, w13_scale, w2, w2_scale = moe.packed
    assert tuple(w13.shape) == (8, 256, 256) and tuple(w13_scale.shape) == (8, 2, 2)
    assert tuple(w2.shape) == (8, 256, 128) and tuple(w2_scale.shape) == (8, 2, 1)


def test_each_layer_matches_the_emulation_when_teacher_forced(models: tuple[Transformer, Transformer]) -> None:
    emulate, triton = models
    tokens = torch.randint(0, emulate.args.vocab_size, (1, 16), generator=torch.Generator().manual_seed(3))
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    def record(_module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        inputs.append(args[0])
        outputs.append(out)

    hooks = [layer.register_forward_hook(record) for layer in emulate.layers]
    try:
        emulate(tokens.to(DEVICE))
    finally:
        for hook in hooks:
            hook.remove()

    rotation = triton.rotation(torch.arange(16, device=DEVICE)[None])
    allowed = torch.ones(16, 16, dtype=torch.bool, device=DEVICE).tril()[None]
    errors = []
    with torch.no_grad():
        for layer, x, want in zip(triton.layers, inputs, outputs):
            # The layer's own contribution, not the residual stream it adds to, so errors are not diluted.
            got, expected = layer(x, rotation, allowed) - x, want - x
            errors.append(((got - expected).norm() / expected.norm()).item())
    assert len(errors) == 4
    print(f"per-layer rel L2, triton vs emulate ({DEVICE}): " + ", ".join(f"{e:.1e}" for e in errors))
    assert max(errors) <= TOLERANCE, f"per-layer rel L2 {errors}"
