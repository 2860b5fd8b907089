import os
from pathlib import Path

import pytest

import fakes

REPO = Path(__file__).resolve().parent.parent


def _interpret_triton_without_cuda() -> None:
    """Triton reads TRITON_INTERPRET when a kernel module is imported, so it must be set before any test
    imports evalkit.backends.moe.kernels; with CUDA present the kernels run compiled."""
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


_interpret_triton_without_cuda()


def shared_data_dir() -> Path | None:
    """../shared/data beside the checkout (or $EVALKIT_SHARED_DATA), when it exists."""
    path = Path(os.environ.get("EVALKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (set EVALKIT_SHARED_DATA to run the real-data tests)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _fake_backend() -> None:
    fakes.register()
    fakes.register_pooled_task()
