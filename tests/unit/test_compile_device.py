"""--compile and the CUDA-only switches, on CPU: decisions, eager == compiled, no recompiles."""

from __future__ import annotations

import copy

import pytest
import torch

from posenfs_cli.config import ModelConfig
from posenfs_cli.data.layouts import MPII
from posenfs_cli.device import (
    PAYBACK_STEPS,
    GraphedForward,
    autocast,
    maybe_compile,
    resolve_compile,
    to_device,
    tune_backend,
)
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.nas.fabric import CNF, FabricSpec

CPU = torch.device("cpu")


def test_compile_modes():
    cuda = torch.device("cuda")
    # auto: only a CUDA training run long enough to win the compile time back
    assert resolve_compile("auto", cuda, "train", PAYBACK_STEPS) is True
    assert resolve_compile("auto", cuda, "train", PAYBACK_STEPS - 1) is False
    assert resolve_compile("auto", cuda, "train") is False  # length unknown
    assert resolve_compile("auto", cuda, "infer", 10**9) is False
    assert resolve_compile("auto", CPU, "train", 10**9) is False
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


class _LastOut(torch.nn.Module):
    def __init__(self, cnf: CNF):
        super().__init__()
        self.cnf = cnf

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.cnf(feats)[0]


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_compiled_matches_eager_on_a_tiny_cnf(backend):
    """Compiled CNF == eager within 1e-5: the frozen inductor forward (what eval/predict run,
    compiled once) and, with the AOT-autograd graphs a compiled train step uses, the gradients
    of weights and α/β.
    (Inductor's backward is the same graphs code-generated; compiling it takes minutes here.)"""
    torch.manual_seed(0)
    spec = FabricSpec(4, 2, 4, 1, 1, ("zero", "skip", "dil_conv_3x3", "avg_pool_3x3"), 4)
    eager = _LastOut(CNF(spec))
    with torch.no_grad():
        for p in eager.parameters():
            p.normal_(0, 0.5) if p.dim() < 2 else None
    compiled = copy.deepcopy(eager)
    feats = [torch.randn(2, 4 * 2**s, 8 // 2**s, 8 // 2**s) for s in range(4)]
    if backend == "inductor":  # eval/predict's path: inductor with frozen weights
        dynamo = pytest.importorskip("torch._dynamo")
        dynamo.reset()
        assert maybe_compile(compiled, "on", CPU, "infer")
        eager.eval(), compiled.eval()
        with torch.no_grad():
            for _ in range(2):
                assert torch.allclose(compiled(feats), eager(feats), atol=1e-5, rtol=1e-5)
        assert dynamo.utils.counters["stats"]["unique_graphs"] == 1
        return
    assert maybe_compile(compiled, "on", CPU, backend=backend)
    out_e, out_c = eager(feats), compiled(feats)
    assert torch.allclose(out_c, out_e, atol=1e-5, rtol=1e-5)
    out_e.square().sum().backward()
    out_c.square().sum().backward()
    # relative to the largest gradient: a conv bias before a batch-stat BN has an exactly-zero
    # gradient, which both sides only reach up to rounding noise
    scale = max(float(p.grad.abs().max()) for p in eager.parameters())
    for (n, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5 * scale, rtol=1e-4), n


def test_no_recompilation_while_searching():
    """Sync search steps (α/β in the Adam step) and an eval forward: no recompile per step."""
    dynamo = pytest.importorskip("torch._dynamo")
    dynamo.reset()
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="fabric", channels=1, parts=3), MPII, False)
    assert maybe_compile(model, "on", CPU, backend="aot_eager")
    x = torch.randn(2, 3, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    graphs = []
    for _ in range(4):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        graphs.append(dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs[-1] == graphs[0], f"recompiled while training: {graphs}"
    assert all(p.grad is not None for p in model.arch_parameters())
    model.eval()
    with torch.no_grad():
        model(x), model(x)
    assert dynamo.utils.counters["stats"]["unique_graphs"] <= graphs[0] * 2  # one eval graph
    assert "_orig_mod" not in "".join(model.state_dict())  # checkpoints keep their keys
