"""Prediction speed: persons/s end to end (crop + forward + decode + inverse affine), as JSON lines.

    python benchmarks/predict_speed.py                     # Tab II recipe, 2 CPU threads
    python benchmarks/predict_speed.py --persons 32 --batch-sizes 1 8 32 --runs 5

The model is randomly initialised (speed does not depend on the weights). One line per
(flip, batch size): batch 1 is the latency-bound single-person case, batch 16 the throughput
of crowded images, folders and videos (crops share forwards). Timings are medians after a
warm-up, in channels_last (the predictor's default on CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from posenfs_cli.config import load_recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.device import select_device
from posenfs_cli.inference.predictor import Predictor
from posenfs_cli.models.build import build_from_recipe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "src" / "posenfs_cli" / "recipes" / "mpii" / "mbv2_p3_h1_c10_256.yaml"


def person_boxes(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``n`` person-shaped (1:2) boxes at random places in the image, xyxy."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.3, 0.9, n) * height
    w = h * rng.uniform(0.35, 0.6, n)
    x1 = rng.uniform(0, 1, n) * (width - w)
    y1 = rng.uniform(0, 1, n) * (height - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=DEFAULT)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--persons", type=int, default=16, help="boxes per timed call")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    recipe = load_recipe(args.recipe)
    model = build_from_recipe(recipe, load_pretrained=False)
    layout = get_layout(recipe.data.keypoints)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    boxes = person_boxes(args.persons, 640, 480)
    scores = np.ones(args.persons)
    for flip in (False, True):
        for bs in args.batch_sizes:
            pred = Predictor(
                model,
                layout,
                recipe.data.input_size,
                device,
                flip=flip,
                batch_size=bs,
                channels_last=args.channels_last,
            )
            pred.predict_boxes(image, boxes, scores)  # warm-up
            times = []
            for _ in range(args.runs):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                pred.predict_boxes(image, boxes, scores)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            row = {
                "recipe": recipe.name,
                "device": str(device),
                "threads": torch.get_num_threads() if device.type == "cpu" else None,
                "input": list(recipe.data.input_size),
                "flip": flip,
                "batch_size": bs,
                "persons": args.persons,
                "channels_last": args.channels_last,
                "ms_per_person": round(t / args.persons * 1e3, 2),
                "persons_per_s": round(args.persons / t, 2),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
