"""Model profiling: params, conv MACs (as the paper's tables count them), thop's count,
latency, throughput, memory.

Conv MACs = Σ over Conv2d/Linear of ``weight.numel() × output H×W`` (ConvTranspose2d: × input
H×W) at batch 1, counted with our
own forward hooks and attributed to the backbone or a body part by module path. Params exclude
α/β (architecture) parameters.
"""

from __future__ import annotations

import copy
import functools
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import nn

from posenfs_cli.device import ChannelsLast
from posenfs_cli.models.size import _owner, count_params

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PartNet, PoseNet


@dataclass
class ProfileReport:
    input_size: list[int]
    batch_size: int
    device: str
    params_total: int
    params_backbone: int
    params_parts: dict[str, int]
    macs_total: int
    macs_backbone: int
    macs_parts: dict[str, int]
    thop_macs: int | None = None
    latency_ms: float | None = None
    train_step_ms: float | None = None
    train_images_per_s: float | None = None
    peak_memory_mb: float | None = None
    compiled: bool = False
    compile_s: float | None = None  # first forward + first train step, minus a timed run each
    memory_kind: str = ""
    arch_params: int = 0
    paper: dict[str, Any] = field(default_factory=dict)
    # The papers' "GFLOPs": conv MACs / 2^30 with deconvs counted by output pixels (HRNet's
    # get_model_summary); equals macs_total / 2^30 when the model has no ConvTranspose2d.
    paper_gflops: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gmacs"] = self.macs_total / 1e9
        d["params_m"] = self.params_total / 1e6
        return d


class MacCount(NamedTuple):
    """Conv/linear multiply-accumulates at batch 1; ``total`` is backbone + parts."""

    total: int
    backbone: int
    parts: dict[str, int]


@torch.no_grad()
def conv_macs(
    model: PoseNet,
    input_size: list[int],
    device: torch.device | str = "cpu",
    transpose_by_output: bool = False,
) -> MacCount:
    """Conv/linear MACs at batch 1 (in total, for the backbone, per part) via forward hooks.

    A ConvTranspose2d does ``weight.numel() × input H×W`` MACs (each input pixel is spread over
    k×k outputs). ``transpose_by_output=True`` counts it by output H×W instead, as HRNet's
    ``get_model_summary`` does; that is 4× too many for a stride-2 deconv, but it is how the
    published SimpleBaseline sizes (8.9 "GFLOPs" at 256x192, Tab IV's 12.0G) were counted.
    """
    part_names = [p.name for p in cast("Iterable[PartNet]", model.parts)]
    counts: dict[str, int] = {"backbone": 0, **dict.fromkeys(part_names, 0)}
    handles = []

    def make_hook(owner: str):
        def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
            if isinstance(mod, nn.ConvTranspose2d) and not transpose_by_output:
                spatial = inp[0].shape[-1] * inp[0].shape[-2]
            elif isinstance(mod, nn.Conv2d | nn.ConvTranspose2d):
                spatial = out.shape[-1] * out.shape[-2]
            else:
                spatial = 1
            weight = cast(torch.Tensor, mod.weight)  # hooked on convs and Linear only
            counts[owner] += weight.numel() * spatial

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            handles.append(mod.register_forward_hook(make_hook(_owner(name, part_names))))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    per_part = {k: counts[k] for k in part_names}
    return MacCount(counts["backbone"] + sum(per_part.values()), counts["backbone"], per_part)


def thop_macs(model: nn.Module, input_size: list[int]) -> int | None:
    """thop's MAC count (it also counts BN/pool/activations, so it is a little higher)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # thop uses distutils
            from thop import profile
    except ImportError:
        return None
    from thop.vision.basic_hooks import count_convNd

    m = copy.deepcopy(model).cpu().eval()
    x = torch.zeros(1, 3, *input_size)
    # thop matches exact module types: count Conv2d subclasses (nas.ops.DepthwiseConv) as convs
    custom = {type(c): count_convNd for c in m.modules() if isinstance(c, nn.Conv2d)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        macs, _ = profile(m, inputs=(x,), custom_ops=custom, verbose=False)
    return int(macs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, warmup: int, runs: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_latency(
    model: nn.Module, input_size: list[int], device: torch.device, warmup: int = 3, runs: int = 10
) -> float:
    """Median forward time (s) at batch 1 in eval mode."""
    model.eval()
    x = torch.randn(1, 3, *input_size, device=device)
    with torch.inference_mode():
        return _median_time(lambda: model(x), device, warmup, runs)


def measure_train_step(
    model: nn.Module,
    input_size: list[int],
    batch_size: int,
    device: torch.device,
    warmup: int = 2,
    runs: int = 5,
) -> float:
    """Median time (s) of forward + MSE loss + backward + Adam step on random data."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-6, foreach=True)  # as the trainer
    x = torch.randn(batch_size, 3, *input_size, device=device)
    with torch.no_grad():
        target = torch.rand_like(model(x))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * (model(x) - target).square().mean()
        loss.backward()
        opt.step()

    return _median_time(step, device, warmup, runs)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024
    return rss * scale, "process peak RSS"


def static_profile(
    model: PoseNet,
    input_size: list[int],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    paper: dict[str, Any] | None = None,
) -> ProfileReport:
    """Counts only (params, conv MACs, thop): fast, no timing."""
    device = torch.device(device)
    model = model.to(device)
    params = count_params(model)
    macs = conv_macs(model, input_size, device)
    paper_macs = macs.total
    if any(isinstance(m, nn.ConvTranspose2d) for m in model.modules()):
        paper_macs = conv_macs(model, input_size, device, transpose_by_output=True).total
    return ProfileReport(
        input_size=list(input_size),
        batch_size=batch_size,
        device=str(device),
        params_total=params.total,
        params_backbone=params.backbone,
        params_parts=params.parts,
        macs_total=macs.total,
        macs_backbone=macs.backbone,
        macs_parts=macs.parts,
        thop_macs=thop_macs(model, input_size),
        arch_params=params.arch,
        paper=dict(paper or {}),
        paper_gflops=paper_macs / 2**30,
    )


def time_model(
    report: ProfileReport,
    model: nn.Module,
    runs: int = 10,
    channels_last: bool = True,
    compile: str | bool = "off",
) -> ProfileReport:
    """Fill in latency (bs1, the folded inference copy eval/predict run), train-step
    time/throughput and peak memory. Both run on copies: the caller's model is untouched."""
    from posenfs_cli.device import maybe_compile
    from posenfs_cli.models.fold import inference_model

    device = torch.device(report.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    size = report.input_size
    infer = inference_model(model, device, channels_last, compile)
    train = copy.deepcopy(model)
    train = ChannelsLast(train) if channels_last else train
    report.compiled = maybe_compile(train, compile, device, "train")
    first = time.perf_counter()
    report.latency_ms = measure_latency(infer, size, device, warmup=1, runs=1) * 1e3
    first = time.perf_counter() - first
    report.latency_ms = measure_latency(infer, size, device, runs=runs) * 1e3
    t0 = time.perf_counter()
    step = measure_train_step(train, size, report.batch_size, device, warmup=0, runs=1)
    first += time.perf_counter() - t0
    step = measure_train_step(
        train, size, report.batch_size, device, warmup=1, runs=max(3, runs // 3)
    )
    if report.compiled:
        report.compile_s = first - 2 * report.latency_ms / 1e3 - 3 * step
    report.train_step_ms = step * 1e3
    report.train_images_per_s = report.batch_size / step
    report.peak_memory_mb, report.memory_kind = peak_memory_mb(device)
    return report


@torch.inference_mode()
def part_latencies(
    models: list[PoseNet], size: list[int], device: torch.device, runs: int = 10
) -> list[dict[str, float]]:
    """Best-of-``runs`` bs-1 forward time (ms) per model: whole, backbone, each part on its pyramid.

    The models are timed interleaved (a, b, a, b ...) so load from other processes hits them
    alike and the before/after comparison stays fair.
    """
    x = torch.randn(1, 3, *size, device=device)
    jobs: list[dict[str, Any]] = []
    for m in models:
        m.eval()
        pyramid = m.backbone(x)
        fns: dict[str, Callable[[], Any]] = {
            "total": functools.partial(m, x),
            "backbone": functools.partial(m.backbone, x),
        }
        for part in cast("Iterable[PartNet]", m.parts):
            fns[part.name] = functools.partial(part, pyramid)
        jobs.append(fns)
    times: list[dict[str, list[float]]] = [{k: [] for k in fns} for fns in jobs]
    for i in range(runs + 2):  # two warm-up rounds
        for fns, acc in zip(jobs, times, strict=True):
            for k, fn in fns.items():
                _sync(device)
                t0 = time.perf_counter()
                fn()
                _sync(device)
                t = time.perf_counter() - t0
                if i >= 2:
                    acc[k].append(t)
    return [{k: min(v) * 1e3 for k, v in acc.items()} for acc in times]
