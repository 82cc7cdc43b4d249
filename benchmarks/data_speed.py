"""Data-loader speed: samples/s through build_loader (2 workers by default), one JSON line each.

    python benchmarks/data_speed.py                          # synthetic mpii/coco, 256x256
    python benchmarks/data_speed.py --input-size 128 --workers 0 --batches 20

Cases: in-memory synthetic MPII and COCO style (training augmentation on), and the real
samples in ../shared/data (MPII and COCO, repeated to fill the batches) when present.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from posenfs_cli.config import DataConfig, SyntheticConfig
from posenfs_cli.data.build import build_dataset, build_loader
from posenfs_cli.data.coco import COCODataset
from posenfs_cli.data.mpii import MPIIDataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def measure(ds: Dataset, batch: int, workers: int, batches: int) -> dict:
    loader = build_loader(ds, batch, shuffle=True, workers=workers, seed=0, drop_last=True)
    it = iter(loader)
    # start-up (worker fork) and the prefetch queue (4 batches per worker) are not counted
    for _ in range(1 + 8 * max(workers, 0)):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
    n = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        try:
            x = next(it)[0]
        except StopIteration:
            it = iter(loader)
            x = next(it)[0]
        n += x.shape[0]
    dt = time.perf_counter() - t0
    return {"samples": n, "seconds": round(dt, 3), "samples_per_s": round(n / dt, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--input-size", type=int, default=256)
    args = ap.parse_args()
    size = [args.input_size, args.input_size]
    cases: list[tuple[str, Dataset]] = []
    for style in ("mpii", "coco"):
        cfg = DataConfig(
            dataset="synthetic",
            keypoints=style,
            input_size=size,
            synthetic=SyntheticConfig(train_images=2000, val_images=10),
        )
        cases.append((f"synthetic-{style}", build_dataset(cfg, "train", train=True)))
    if (SHARED / "mpii" / "test_mpii.json").is_file():
        ds = MPIIDataset.from_files(
            SHARED / "mpii" / "test_mpii.json", SHARED / "mpii", input_size=size, train=True
        )
        cases.append(("mpii-shared-samples", ConcatDataset([ds] * 200)))
    if (SHARED / "coco" / "test_coco.json").is_file():
        ds = COCODataset.from_files(
            SHARED / "coco" / "test_coco.json", SHARED / "coco", input_size=size, train=True
        )
        cases.append(("coco-shared-samples", ConcatDataset([ds] * 100)))
    for name, ds in cases:
        res = measure(ds, args.batch_size, args.workers, args.batches)
        row = {
            "case": name,
            "input_size": size,
            "workers": args.workers,
            "batch_size": args.batch_size,
            **res,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
