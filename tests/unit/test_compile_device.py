"""--compile and the CUDA-only switches, on CPU: decisions, eager == compiled, no recompiles."""

from __future__ import annotations

import copy

import pytest
import torch

from posenfs_cli.config import ModelConfig
from posenfs_cli.data.keypoints import MPII
from posenfs_cli.device import (
    GraphedForward,
    autocast,
    maybe_compile,
    resolve_compile,
    to_device,
    tune_backend,
)
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model

CPU = torch.device("cpu")


def test_compile_modes():
    assert resolve_compile("auto", torch.device("cuda")) is True
    assert resolve_compile("auto", CPU) is False
    assert resolve_compile("on", CPU) is True and resolve_compile("off", CPU) is False
    with pytest.raises(PosenfsError, match="--compile"):
        resolve_compile("fast", CPU)


def test_cuda_switches_are_noops_on_cpu():
    tune_backend(CPU)
    x = torch.randn(2, 3, 4, 4)
    y = to_device(x, CPU, channels_last=True)
    assert torch.equal(x, y) and y.is_contiguous(memory_format=torch.channels_last)
    with autocast(CPU):
        assert torch.mm(x[0, 0], x[0, 0]).dtype == torch.float32
    net = torch.nn.Conv2d(3, 2, 1)
    graphed = GraphedForward(net)
    with torch.no_grad():
        assert torch.equal(graphed(x), net(x))


def _tiny():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="fabric", channels=1, parts=3)
    return build_model(cfg, MPII, load_pretrained=False)


def test_compiled_matches_eager_and_does_not_recompile_on_arch_updates():
    dynamo = pytest.importorskip("torch._dynamo")
    dynamo.reset()
    eager = _tiny()
    compiled = copy.deepcopy(eager)
    assert maybe_compile(compiled, "on", CPU)
    x = torch.randn(2, 3, 32, 32)
    opt = torch.optim.Adam(compiled.parameters(), lr=1e-2)  # α/β included, as sync search
    frames = []
    for step in range(4):
        out_c = compiled(x)
        if step == 0:
            out_e = eager(x)
            assert torch.allclose(out_c, out_e, atol=1e-5, rtol=1e-5)
        opt.zero_grad()
        out_c.square().mean().backward()
        opt.step()
        frames.append(dynamo.utils.counters["stats"]["unique_graphs"])
    assert frames[-1] == frames[1], f"recompiled while training: {frames}"
    assert all(p.grad is not None for p in compiled.arch_parameters())
    assert "_orig_mod" not in "".join(compiled.state_dict())  # checkpoints keep their keys
