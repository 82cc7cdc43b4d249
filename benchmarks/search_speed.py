"""Search/train throughput: images/s of real training steps (data loading included).

    python benchmarks/search_speed.py                      # Tab II recipe on synthetic data, 256²
    python benchmarks/search_speed.py --strategies sync darts1 --steps 10

Builds the full Trainer (model, strategy, synthetic data loader with workers) and times
``--steps`` optimisation steps after ``--warmup`` steps; prints one JSON line per strategy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from posenfs_cli.config import load_recipe
from posenfs_cli.device import select_device
from posenfs_cli.engine.trainer import Trainer, TrainOptions

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--recipe", default=str(ROOT / "src/posenfs_cli/recipes/mpii/mbv2_p3_h1_c10_256.yaml")
    )
    ap.add_argument("--strategies", nargs="*", default=["sync"])
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    n_images = (args.steps + args.warmup + 1) * args.batch_size * 2
    for strategy in args.strategies:
        recipe = load_recipe(
            args.recipe,
            [
                "data.dataset=synthetic",
                "data.root=null",
                f"data.workers={args.workers}",
                f"data.synthetic.train_images={n_images}",
                "data.synthetic.val_images=8",
                f"train.batch_size={args.batch_size}",
                f"train.strategy={strategy}",
            ],
        )
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(recipe, TrainOptions("search", Path(tmp), device, progress=False))
            trainer.setup()
            loader = trainer._loader(trainer.weight_idx, 0, 0, shuffle=True)
            held = (
                iter(trainer._loader(trainer.arch_idx, 0, 1, shuffle=True))
                if trainer.strategy.needs_heldout
                else None
            )
            it = iter(loader)
            times = []
            for i in range(args.warmup + args.steps):
                t0 = time.perf_counter()
                batch = next(it)
                trainer.strategy.step(batch, next(held) if held is not None else None)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
        total = sum(times)
        print(
            json.dumps(
                {
                    "recipe": recipe.name,
                    "strategy": strategy,
                    "device": str(device),
                    "threads": args.threads if device.type == "cpu" else None,
                    "input": list(recipe.data.input_size),
                    "batch_size": args.batch_size,
                    "amp": str(trainer.amp),
                    "channels_last": trainer.channels_last,
                    "step_s": round(total / len(times), 3),
                    "images_per_s": round(args.batch_size * len(times) / total, 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
