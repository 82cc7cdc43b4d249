"""model.parts_exec=fused runs the same function as separate parts, with the same parameters."""

from __future__ import annotations

import copy

import pytest
import torch

from posenfs_cli.config import ModelConfig
from posenfs_cli.data.layouts import MPII
from posenfs_cli.device import maybe_compile
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.models.fold import inference_model
from posenfs_cli.models.posenet import PartNet, PoseNet
from posenfs_cli.nas.fabric import PruneSpec

TOL = 1e-5


def _pair(parts: int = 3, hidden: int = 1) -> tuple[PoseNet, PoseNet]:
    """(separate, fused) copies of one tiny model with random α/β and running statistics."""
    torch.manual_seed(0)
    cfg = ModelConfig(channels=4, parts=parts, hidden=hidden, parts_exec="fused")
    fused = build_model(cfg, MPII, load_pretrained=False)
    with torch.no_grad():
        for p in fused.arch_parameters():
            p.normal_()
    fused.train()
    with torch.no_grad():
        fused(torch.randn(2, 3, 64, 64))
    separate = copy.deepcopy(fused)
    separate.parts_exec = "separate"
    return separate, fused


def _max_diff(a, b) -> float:
    pairs = zip(list(a), list(b), strict=True)
    return max(float((x.detach().double() - y.detach().double()).abs().max()) for x, y in pairs)


def _grads(model: PoseNet, arch: bool = False) -> list[torch.Tensor]:
    params = model.arch_parameters() if arch else list(model.parameters())
    assert all(p.grad is not None for p in params)
    return [p.grad for p in params]


@pytest.mark.parametrize("hidden", [1, 2])
@pytest.mark.parametrize("parts", [3, 5])
def test_fused_equals_separate_outputs_gradients_and_running_stats(parts, hidden):
    separate, fused = _pair(parts, hidden)
    fmt = torch.channels_last if hidden == 2 else torch.contiguous_format
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=fmt)
    out = {}
    for name, model in (("separate", separate), ("fused", fused)):
        model.train()
        y = model(x)
        y.mean().backward()
        out[name] = y.detach()
    assert _max_diff([out["separate"]], [out["fused"]]) <= TOL
    assert _max_diff(_grads(separate), _grads(fused)) <= TOL  # weights and α/β alike
    assert _max_diff(_grads(separate, arch=True), _grads(fused, arch=True)) <= TOL
    # BN running statistics (and batch counters) written back to every part's own buffers
    sd_s, sd_f = separate.state_dict(), fused.state_dict()
    assert any(k.startswith("parts.1.") and "running_var" in k for k in sd_s)
    assert _max_diff(sd_s.values(), sd_f.values()) <= TOL
    separate.eval(), fused.eval()
    with torch.no_grad():
        assert _max_diff([separate(x)], [fused(x)]) <= TOL


def test_state_dict_keys_and_checkpoints_unchanged():
    separate, fused = _pair()
    assert list(separate.state_dict()) == list(fused.state_dict())
    assert [n for n, _ in separate.named_parameters()] == [n for n, _ in fused.named_parameters()]
    fresh = build_model(ModelConfig(channels=4, parts=3, parts_exec="fused"), MPII, False)
    fresh.load_state_dict(separate.state_dict())  # a separate-mode checkpoint loads as it is
    separate.eval(), fresh.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff([separate(x)], [fresh(x)]) <= TOL


def test_folded_inference_copy_runs_fused_and_exact():
    separate, fused = _pair(parts=5, hidden=2)
    separate.eval(), fused.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = separate(x)
        inf_s, inf_f = inference_model(separate), inference_model(fused)
        net = getattr(inf_f, "model", inf_f)
        # the inference copy runs fused whatever mode the model trains in
        assert net.parts_exec == "fused" and inf_s.model.parts_exec == "fused"
        assert separate.parts_exec == "separate"  # the original is untouched
        # the frozen copy concatenates the parts' weights once, outside its state dict
        assert any(".fused_weight" in name for name, _ in net.named_buffers())
        assert not any("fused_" in k for k in net.state_dict())
        assert _max_diff([inf_f(x)], [inf_s(x)]) <= TOL
        assert _max_diff([inf_f(x)], [ref]) <= TOL


def test_compiled_fused_matches_separate_eager():
    pytest.importorskip("torch._dynamo").reset()
    separate, fused = _pair()
    assert maybe_compile(fused, "on", torch.device("cpu"), backend="aot_eager")
    x = torch.randn(2, 3, 64, 64)
    ys, yf = separate(x), fused(x)
    ys.mean().backward(), yf.mean().backward()
    assert _max_diff([ys], [yf]) <= TOL
    assert _max_diff(_grads(separate), _grads(fused)) <= TOL
    assert _max_diff(separate.buffers(), fused.buffers()) <= TOL
    assert "_orig_mod" not in "".join(fused.state_dict())


def test_unfusable_models_are_rejected_with_one_line():
    cfg = ModelConfig(channels=4, parts=3, parts_exec="fused")
    # a pruned model (e.g. `posenfs prune` of a fused search) runs its parts separately
    pruned = build_model(cfg, MPII, prune={"head": PruneSpec(ops={"skip"})}, load_pretrained=False)
    assert pruned.parts_exec == "separate"
    assert inference_model(pruned).model.parts_exec == "separate"
    with pytest.raises(PosenfsError, match="unpruned model; part 'head' is pruned") as err:
        PoseNet(pruned.backbone, list(pruned.parts), MPII.num_joints, parts_exec="fused")
    assert "\n" not in str(err.value) and "use model.parts_exec=separate" in str(err.value)
    with pytest.raises(PosenfsError, match="needs CNF parts"):
        build_model(ModelConfig(head="deconv", parts_exec="fused"), MPII, load_pretrained=False)
    with pytest.raises(PosenfsError, match="parts_exec must be separate or fused"):
        build_model(ModelConfig(channels=4, parts_exec="vmap"), MPII, load_pretrained=False)
    small, wide = (
        build_model(ModelConfig(channels=c, parts=3), MPII, load_pretrained=False) for c in (4, 6)
    )
    mixed = [small.parts[0], wide.parts[1]]
    assert all(isinstance(p, PartNet) for p in mixed)
    with pytest.raises(PosenfsError, match="parts of one structure; 'head' and 'upper_limb'"):
        PoseNet(small.backbone, mixed, MPII.num_joints, parts_exec="fused")
