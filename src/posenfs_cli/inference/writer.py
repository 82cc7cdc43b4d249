"""Writing predictions: one JSON per image (and overlays), or one JSON (and video) per stream.

Files are written as results arrive, each complete or not at all, and a :class:`Tally` counts
what was written for the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posenfs_cli.data.jsonio import write_json
from posenfs_cli.data.layouts import KeypointLayout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.options import PredictOptions
from posenfs_cli.vis.draw import draw_instances


@dataclass
class Tally:
    frames: int = 0
    persons: int = 0
    skipped: list[str] = field(default_factory=list)
    json_files: int = 0
    overlays: int = 0
    interrupted: bool = False
    max_score: float = float("-inf")  # highest finite keypoint score seen
    non_finite: int = 0  # keypoints written as null (NaN/inf model output)
    instances: list[Any] = field(default_factory=list)  # kept for --coco-results


def unique_stem(path: Path | None, name: str, used: set[str]) -> str:
    """Output stem for an image; files that share a stem (a.jpg, a.png) keep their suffix."""
    stem = name if path is None else path.stem
    if stem in used and path is not None:
        stem = path.name.replace(".", "_")
    used.add(stem)
    return stem


class Writer:
    """Writes per-image JSON/overlays as results arrive, or collects a video's frames."""

    def __init__(
        self,
        opts: PredictOptions,
        source: Any,
        layout: KeypointLayout,
        out_dir: Path,
        tally: Tally,
    ):
        self.opts = opts
        self.source = source
        self.layout = layout
        self.out_dir = out_dir
        self.tally = tally
        self.used: set[str] = set()
        self.frames: list[dict[str, Any]] = []
        self.video: cv2.VideoWriter | None = None
        self.files: list[Path] = []

    def write(self, frame: Any, instances: list[Any]) -> None:
        self.tally.frames += 1
        self.tally.persons += len(instances)
        for inst in instances:
            self.tally.non_finite += inst.non_finite
            finite = np.asarray(inst.keypoint_scores, np.float64)
            finite = finite[np.isfinite(finite)]
            if finite.size:
                self.tally.max_score = max(self.tally.max_score, float(finite.max()))
        if self.opts.coco_results is not None:
            self.tally.instances.extend(instances)
        records = [inst.to_dict() for inst in instances]
        if self.source.is_stream:
            self.frames.append({"frame_id": frame.index, "instances": records})
            if self.opts.overlay:
                self._video_frame(
                    draw_instances(frame.image, instances, self.layout, self.opts.kpt_thr)
                )
            return
        stem = unique_stem(frame.path, frame.name, self.used)
        path = self.out_dir / f"{stem}.json"
        write_json(path, records)
        self.tally.json_files += 1
        if self.opts.overlay:
            img = draw_instances(frame.image, instances, self.layout, self.opts.kpt_thr)
            ov = self.out_dir / f"{stem}_overlay.jpg"
            if not cv2.imwrite(str(ov), img):
                raise PosenfsError(f"cannot write {ov}")
            self.tally.overlays += 1

    def _video_frame(self, img: np.ndarray) -> None:
        if self.video is None:
            path = self.out_dir / f"{self.source.name}_overlay.mp4"
            h, w = img.shape[:2]
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            self.video = cv2.VideoWriter(str(path), fourcc, float(self.source.fps), (w, h))
            if not self.video.isOpened():
                raise PosenfsError(f"cannot open {path} for writing (mp4v codec unavailable)")
            self.files.append(path)
        self.video.write(img)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
            self.video = None
            self.tally.overlays = 1
        if self.source.is_stream and self.tally.frames:
            path = self.out_dir / f"{self.source.name}.json"
            write_json(path, self.frames)
            self.tally.json_files = 1
            self.files.insert(0, path)
