"""Model speed: one JSON line per recipe (and mode) with forward, train- and search-step timings.

    python benchmarks/model_speed.py                       # every paper recipe, 2 CPU threads
    python benchmarks/model_speed.py --recipes recipes/mpii/mbv2_p3_h1_c10_256.yaml --runs 10
    python benchmarks/model_speed.py --device cuda --compile both

Per recipe and mode (eager / compiled): forward bs1 of the model as it is (``forward_raw``) and of
the folded inference copy eval/predict use (``forward_bs1``), train step (weights only, Adam) and
search step (sync: α/β in the same Adam step) at ``--batch-size``, the share of profiled time
spent in convolution kernels (train step) and, on CPU, the train step's profiled milliseconds in
convolution / BatchNorm / activation kernels and in everything else, operator/kernel counts
per forward, peak memory, and compile time (first calls minus steady-state calls). Medians after
warm-up, channels_last.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from posenfs_cli.config import load_recipe
from posenfs_cli.device import ChannelsLast, maybe_compile, select_device, tune_backend
from posenfs_cli.models.build import build_from_recipe
from posenfs_cli.models.fold import inference_model
from posenfs_cli.profiling import peak_memory_mb

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = sorted((ROOT / "src" / "posenfs_cli" / "recipes" / "mpii").glob("*.yaml")) + sorted(
    (ROOT / "src" / "posenfs_cli" / "recipes" / "coco").glob("*.yaml")
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, runs: int) -> tuple[float, float]:
    """(first call s, median of ``runs`` later calls s)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - t0
    fn()  # warm-up
    times = []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def step_fn(model, x, target, arch: bool):
    for p in model.model.arch_parameters():
        p.requires_grad_(arch)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-6, foreach=True)  # as the trainer (strategies._adam)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (0.5 * (model(x) - target).square().mean()).backward()
        opt.step()

    return step


KERNEL_KINDS = {
    "conv": ("convolution",),
    "batch_norm": ("batch_norm",),
    "activation": ("threshold", "hardtanh", "relu", "clamp"),
}


def kernel_ms(events) -> dict[str, float]:
    """Self time (ms) of convolution, BatchNorm and activation kernels (forward + backward),
    and of everything else: the first three are the work the model's layers must do whatever
    the framework around them, so their sum is the floor for the step on this machine."""
    out = dict.fromkeys([*KERNEL_KINDS, "other"], 0.0)
    for e in events:
        if not e.key.startswith("aten::"):
            continue
        kind = next((k for k, keys in KERNEL_KINDS.items() if any(t in e.key for t in keys)), None)
        out[kind or "other"] += e.self_cpu_time_total / 1e3
    return {k: round(v, 1) for k, v in out.items()}


def profile_counts(fn, device) -> dict[str, float]:
    """Conv share of profiled time and op / kernel counts for one call of ``fn``."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    events = prof.key_averages()
    if device.type == "cuda":
        total = sum(e.self_device_time_total for e in events)
        conv = sum(e.self_device_time_total for e in events if "conv" in e.key.lower())
        kernels = sum(
            e.count for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
        )
    else:
        total = sum(e.self_cpu_time_total for e in events)
        conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key)
        kernels = sum(e.count for e in events if e.key.startswith("aten::"))
    row = {"conv_share": round(conv / max(total, 1e-9), 3), "launches": int(kernels)}
    if device.type == "cpu":
        row["kernel_ms"] = kernel_ms(events)
    return row


def measure(recipe, device, args, compiled: bool) -> dict:
    size = list(recipe.data.input_size)
    mode = "on" if compiled else "off"
    torch.manual_seed(0)
    model = build_from_recipe(recipe, load_pretrained=False).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    x1 = torch.randn(1, 3, *size, device=device)
    xb = torch.randn(args.batch_size, 3, *size, device=device)
    row: dict = {"recipe": recipe.name, "device": str(device), "compiled": compiled}
    with torch.inference_mode():
        raw = ChannelsLast(copy.deepcopy(model)).eval()
        maybe_compile(raw, mode, device, "infer")
        fold = inference_model(model, device, True, mode)
        f_raw, raw_s = timed(lambda: raw(x1), device, args.runs)
        f_fold, fold_s = timed(lambda: fold(x1), device, args.runs)
        fwd_prof = profile_counts(lambda: fold(x1), device)
    with torch.no_grad():
        target = torch.rand_like(model.eval()(xb))
    row["forward_raw_bs1_ms"] = round(raw_s * 1e3, 2)
    row["forward_bs1_ms"] = round(fold_s * 1e3, 2)
    row["launches_per_forward"] = fwd_prof["launches"]
    net = ChannelsLast(model).train()
    maybe_compile(net, mode, device, "train")
    train = step_fn(net, xb, target, arch=False)
    f_train, train_s = timed(train, device, args.runs)
    search = step_fn(net, xb, target, arch=True)
    f_search, search_s = timed(search, device, args.runs)
    b = args.batch_size
    row[f"train_step_bs{b}_ms"] = round(train_s * 1e3, 1)
    row[f"search_step_bs{b}_ms"] = round(search_s * 1e3, 1)
    train_prof = profile_counts(train, device)
    row["train_conv_share"] = train_prof["conv_share"]
    if "kernel_ms" in train_prof:  # CPU: where a train step's profiled time goes
        row["train_kernel_ms"] = train_prof["kernel_ms"]
    row["peak_memory_mb"], row["memory_kind"] = peak_memory_mb(device)
    row["peak_memory_mb"] = round(row["peak_memory_mb"], 1)
    if compiled:
        row["compile_s"] = {
            "forward": round(f_fold - fold_s, 1),
            "train": round(f_train - train_s, 1),
            "search": round(f_search - search_s, 1),
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--compile", choices=["off", "on", "both"], default="off")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    tune_backend(device)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    for path in args.recipes:
        recipe = load_recipe(path)
        for compiled in modes:
            row = measure(recipe, device, args, compiled)
            row["threads"] = torch.get_num_threads() if device.type == "cpu" else None
            print(json.dumps(row), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
