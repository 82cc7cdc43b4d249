"""Separate vs fused part execution (``model.parts_exec``): times and op counts per forward.

    python benchmarks/parts_exec.py                      # Tab II model and P=8, 2 CPU threads
    python benchmarks/parts_exec.py --device cuda --runs 50

One JSON line per recipe and mode: forward bs1 of the folded inference copy (what eval/predict
run), train step (weights, Adam) at ``--batch-size``, medians after warm-up with the modes taking
turns, channels_last; and
the operators one forward dispatches, from torch.profiler: ``aten_ops`` (every aten event, nested
ones included, as benchmarks/model_speed.py counts), ``top_level_ops`` (aten ops called from
Python, each at least one kernel launch on a GPU unless it is a view) and, on CUDA, ``kernels``.
Counted for the inference forward and for a training-mode forward (BatchNorm writes back its
running statistics there). Op counts are exact; times on a shared machine are not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from posenfs_cli.config import load_recipe
from posenfs_cli.device import ChannelsLast, select_device, tune_backend
from posenfs_cli.models.build import build_from_recipe
from posenfs_cli.models.fold import inference_model

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [
    ROOT / "src" / "posenfs_cli" / "recipes" / "mpii" / f"{name}.yaml"
    for name in ("mbv2_p3_h1_c10_256", "mbv2_p8_h1_c10_256")
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def medians_ms(fns: dict[str, Callable[[], object]], device: torch.device, runs: int) -> dict:
    """Median ms per function after one warm-up call each; the functions take turns, so a
    load spike on a shared machine hits every mode alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(runs + 1):
        for k, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if r >= 1:
                times[k].append(time.perf_counter() - t0)
    return {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()}


def op_counts(fn: Callable[[], object], device: torch.device) -> dict[str, int]:
    """Operators (and CUDA kernels) one call of ``fn`` dispatches."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    events = prof.events()
    aten = [e for e in events if e.name.startswith("aten::")]
    top = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    out = {"aten_ops": len(aten), "top_level_ops": len(top)}
    if device.type == "cuda":
        out["kernels"] = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return out


def measure(path: Path, modes: list[str], device: torch.device, args) -> list[dict]:
    rows, fwd, steps = {}, {}, {}
    b = args.batch_size
    for mode in modes:
        recipe = load_recipe(path, [f"model.parts_exec={mode}"])
        size = list(recipe.data.input_size)
        torch.manual_seed(0)  # the same weights in every mode
        model = build_from_recipe(recipe, load_pretrained=False).to(device)
        x1 = torch.randn(1, 3, *size, device=device)
        xb = torch.randn(b, 3, *size, device=device)
        row: dict = {"recipe": recipe.name, "parts_exec": mode, "device": str(device)}
        fold = inference_model(model, device, True, "off")
        with torch.inference_mode():
            row["forward_ops"] = op_counts(lambda f=fold, x=x1: f(x), device)
            target = torch.rand_like(model.eval()(xb))
        net = ChannelsLast(model).train()
        with torch.no_grad():
            row["train_forward_ops"] = op_counts(lambda n=net, x=x1: n(x), device)
        for p in model.arch_parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-6)

        def step(net=net, opt=opt, xb=xb, target=target) -> None:
            opt.zero_grad(set_to_none=True)
            (0.5 * (net(xb) - target).square().mean()).backward()
            opt.step()

        fwd[mode] = lambda f=fold, x=x1: f(x)
        steps[mode] = step
        rows[mode] = row
    if args.counts_only:
        return list(rows.values())
    with torch.inference_mode():
        for mode, ms in medians_ms(fwd, device, args.runs).items():
            rows[mode]["forward_bs1_ms"] = ms
    for mode, ms in medians_ms(steps, device, args.runs).items():
        rows[mode][f"train_step_bs{b}_ms"] = ms
    for row in rows.values():
        row["threads"] = torch.get_num_threads() if device.type == "cpu" else None
    return list(rows.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", type=Path, default=RECIPES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--modes", nargs="*", default=["separate", "fused"])
    ap.add_argument("--counts-only", action="store_true", help="op counts, no timings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    tune_backend(device)
    for path in args.recipes:
        for row in measure(path, args.modes, device, args):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
