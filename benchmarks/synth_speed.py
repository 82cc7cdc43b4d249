"""Synthetic-people generation speed on one core: one JSON line per style.

    python benchmarks/synth_speed.py                  # 256x256, 300 images per style
    python benchmarks/synth_speed.py --size 128 --images 500

"images_per_s" covers drawing a scene and rendering it (what the in-memory dataset does per
image); "with_jpeg_per_s" adds JPEG encoding (what `posenfs data synth` does). The target is
>= 200 images/s at 256x256 (DESIGN §13).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import cv2

from posenfs_cli.data.synthetic import SynthSplit, generate_scene, render_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core, as the target says
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    for style, people in (("mpii", 1), ("coco", 3)):
        split = SynthSplit(style, "train", args.seed, args.images, args.size, people)
        for i in range(5):  # warm-up
            render_scene(generate_scene(split, i))
        t0 = time.perf_counter()
        scene_s = render_s = 0.0
        for i in range(args.images):
            a = time.perf_counter()
            scene = generate_scene(split, i)
            b = time.perf_counter()
            img = render_scene(scene)
            scene_s += b - a
            render_s += time.perf_counter() - b
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in range(min(args.images, 100)):
            cv2.imencode(
                ".jpg", render_scene(generate_scene(split, i)), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
        jpeg_rate = min(args.images, 100) / (time.perf_counter() - t1)
        print(
            json.dumps(
                {
                    "case": f"synth-{style}",
                    "size": args.size,
                    "max_people": people,
                    "images": args.images,
                    "seconds": round(total, 3),
                    "images_per_s": round(args.images / total, 1),
                    "scene_ms": round(1000 * scene_s / args.images, 3),
                    "render_ms": round(1000 * render_s / args.images, 3),
                    "with_jpeg_per_s": round(jpeg_rate, 1),
                    "image_shape": list(img.shape),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
