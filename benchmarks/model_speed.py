"""Model speed: one JSON line per recipe with forward (bs1) and train-step (bs8) timings.

    python benchmarks/model_speed.py                       # every paper recipe, 2 CPU threads
    python benchmarks/model_speed.py --runs 5 \
        --recipes src/posenfs_cli/recipes/mpii/mbv2_p3_h1_c10_256.yaml

Timings are medians after warm-up, in channels_last (faster on this CPU, see --no-channels-last).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from posenfs_cli.config import load_recipe
from posenfs_cli.device import select_device
from posenfs_cli.models.build import build_from_recipe
from posenfs_cli.profiling import ChannelsLast, measure_latency, measure_train_step

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = sorted((ROOT / "src" / "posenfs_cli" / "recipes" / "mpii").glob("*.yaml")) + sorted(
    (ROOT / "src" / "posenfs_cli" / "recipes" / "coco").glob("*.yaml")
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    for path in args.recipes:
        recipe = load_recipe(path)
        model = build_from_recipe(recipe, load_pretrained=False).to(device)
        runner = ChannelsLast(model) if args.channels_last else model
        size = list(recipe.data.input_size)
        fwd = measure_latency(runner, size, device, warmup=2, runs=args.runs)
        step = measure_train_step(runner, size, args.batch_size, device, warmup=1, runs=args.runs)
        row = {
            "recipe": recipe.name,
            "device": str(device),
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "input": size,
            "channels_last": args.channels_last,
            "forward_bs1_ms": round(fwd * 1e3, 2),
            f"train_step_bs{args.batch_size}_ms": round(step * 1e3, 1),
            "train_images_per_s": round(args.batch_size / step, 2),
        }
        print(json.dumps(row), flush=True)
        del model, runner
    sys.stdout.flush()


if __name__ == "__main__":
    main()
