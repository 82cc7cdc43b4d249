"""End-of-epoch save cost: one JSON line per recipe with the time and bytes of each write.

    python benchmarks/save_speed.py
    python benchmarks/save_speed.py --recipes recipes/mpii/hrnet_p5_h1_c16_256.yaml --runs 5

Since the training state holds the weights too (the resume commit point), an epoch writes the
weights twice (``last`` and ``last.train``); this shows what that costs next to an epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from posenfs_cli.config import load_recipe
from posenfs_cli.engine.checkpoint import save_checkpoint, state_tensors
from posenfs_cli.engine.state import save_state
from posenfs_cli.engine.strategies import make_strategy
from posenfs_cli.engine.trainer import rng_state
from posenfs_cli.models.build import build_from_recipe
from posenfs_cli.nas.genotype import model_genotype

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = [
    ROOT / "recipes/mpii/mbv2_p3_h1_c10_256.yaml",
    ROOT / "recipes/mpii/hrnet_p5_h1_c16_256.yaml",
]


def _median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(path: Path, runs: int) -> dict:
    recipe = load_recipe(path)
    model = build_from_recipe(recipe, load_pretrained=False)
    strategy = make_strategy("sync", model, recipe.train, lambda m, b: torch.zeros(()))
    for p in model.parameters():  # Adam moments exist after the first step
        p.grad = torch.zeros_like(p)
    for opt in strategy.optimizers.values():
        opt.step()

    def payload() -> dict:
        return {
            "epoch": 1,
            "model": state_tensors(model),
            "genotype": model_genotype(model, recipe.data.keypoints).to_json(),
            "optim": strategy.state_dict(),
            "rng": rng_state(),
            "best": None,
            "best_epoch": None,
        }

    with tempfile.TemporaryDirectory() as tmp:
        last, state = Path(tmp) / "last.safetensors", Path(tmp) / "last.train.safetensors"
        t_last = _median_s(lambda: save_checkpoint(last, model, recipe, 1, {}), runs)
        t_state = _median_s(lambda: save_state(state, payload()), runs)
        return {
            "recipe": path.stem,
            "last_s": round(t_last, 4),
            "last_mb": round(last.stat().st_size / 2**20, 2),
            "train_state_s": round(t_state, 4),
            "train_state_mb": round(state.stat().st_size / 2**20, 2),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for path in args.recipes:
        print(json.dumps(measure(path, args.runs)), flush=True)


if __name__ == "__main__":
    main()
