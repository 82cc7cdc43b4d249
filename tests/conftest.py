"""Shared fixtures and paths: repo paths, the real samples in ../shared/data (helpers that are
not fixtures are in ``tests/helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "src" / "posenfs_cli" / "recipes"
SHARED_DATA = REPO.parent / "shared" / "data"

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"real samples not found at {SHARED_DATA} (the read-only ../shared/data folder)",
)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _no_weight_downloads(monkeypatch, tmp_path_factory):
    """No test may reach the internet for ImageNet weights: an empty torch hub cache and an
    empty local mirror folder make any unplanned `model.pretrained: imagenet` fail at once."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("TORCH_HOME", str(base / "torch_home"))
    monkeypatch.setenv("POSENFS_WEIGHTS_URL", str(base / "no_weights_mirror"))


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP stalls on a busy 2-core machine.

    Opt in per module: ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
