"""Top-down prediction over an image, a folder, a video or a webcam, written as it goes.

Boxes come from a COCO-results detections file, OpenCV's HOG people detector or the whole
image. Frames are buffered until a batch of crops is full, so folders and videos share forward
passes across images. :func:`prepare` checks everything before work starts; :meth:`PredictJob.run`
predicts and writes, and reports progress through callbacks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posenfs_cli.data.jsonio import write_json
from posenfs_cli.errors import PosenfsError, folder_out
from posenfs_cli.inference.detectors import BoxesFile, WholeImage, make_detector
from posenfs_cli.inference.writer import Tally, Writer
from posenfs_cli.options import PredictOptions


def check_options(opts: PredictOptions) -> None:
    """Option mistakes that need no file read: refused before a checkpoint is looked up, a
    detections file or a model is read, or anything is written."""
    import math

    if opts.batch_size < 1:
        raise PosenfsError("--batch-size must be >= 1")
    if not (math.isfinite(opts.box_thr) and 0.0 <= opts.box_thr <= 1.0):
        raise PosenfsError(
            f"--box-thr must be a number in [0, 1] (box scores are probabilities), "
            f"got {opts.box_thr:g}"
        )
    if not math.isfinite(opts.kpt_thr):
        raise PosenfsError(f"--kpt-thr must be a finite number, got {opts.kpt_thr:g}")
    if opts.out is not None:
        folder_out(opts.out)


def box_source(opts: PredictOptions) -> Any:
    """The one box source the options ask for (they exclude each other)."""
    flags = (("--boxes", opts.boxes), ("--detector", opts.detector))
    given = [n for n, on in (*flags, ("--whole-image", opts.whole_image)) if on]
    if len(given) > 1:
        raise PosenfsError(f"{' and '.join(given)} exclude each other: choose one box source")
    if opts.image_ids is not None and opts.boxes is None:
        raise PosenfsError("--image-ids only applies with --boxes")
    if opts.coco_results is not None:
        if opts.boxes is None:
            raise PosenfsError(
                "--coco-results needs --boxes: COCO results name each person's image_id"
            )
        if opts.coco_results.is_dir():
            raise PosenfsError(f"--coco-results {opts.coco_results} is a folder; give a file")
    if opts.boxes is not None:
        return BoxesFile(opts.boxes, opts.box_thr, opts.image_ids)
    if opts.detector is not None:
        return make_detector(opts.detector, opts.box_thr)
    return WholeImage()


@dataclass
class PredictResult:
    src: str
    out_dir: Path
    files: list[Path]  # the stream JSON / video / COCO results (per-image JSON not listed)
    tally: Tally
    elapsed: float
    unit: str  # "images" or "frames"
    boxes: str  # the box source's name
    warnings: list[str] = field(default_factory=list)


@dataclass
class PredictJob:
    src: str
    opts: PredictOptions
    source: Any
    boxes: Any
    predictor: Any
    out_dir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return "frames" if self.source.is_stream else "images"

    def run(
        self,
        on_progress: Callable[[int, int], None] | None = None,
        on_skip: Callable[[str], None] | None = None,
    ) -> PredictResult:
        """Predict every frame; ``on_progress(frames, persons so far)``, ``on_skip(reason)``."""
        tally = Tally()
        writer = Writer(self.opts, self.source, self.predictor.layout, self.out_dir, tally)
        buffer: list[tuple[Any, np.ndarray, np.ndarray]] = []
        t0 = time.perf_counter()

        def flush() -> None:
            n = len(buffer)
            if buffer:
                results = self.predictor.predict_many(
                    [f.image for f, _, _ in buffer],
                    [b for _, b, _ in buffer],
                    [s for *_, s in buffer],
                )
                for (frame, _, _), instances in zip(buffer, results, strict=True):
                    if isinstance(self.boxes, BoxesFile):
                        for inst in instances:
                            inst.image_id = self.boxes.image_id(frame)
                    writer.write(frame, instances)
                buffer.clear()
            if on_progress is not None:
                on_progress(n, tally.persons)

        try:
            for frame in self.source:
                if frame.image is None:
                    tally.skipped.append(frame.error or frame.name)
                    if on_skip is not None:
                        on_skip(f"{frame.error}")
                    if on_progress is not None:
                        on_progress(1, tally.persons)
                    continue
                b, s = self.boxes.boxes(frame.image, frame)
                buffer.append((frame, b, s))
                if sum(len(x[1]) for x in buffer) >= self.opts.batch_size or len(buffer) >= 64:
                    flush()
            flush()
        except KeyboardInterrupt:  # the normal way to stop a webcam: keep what was done
            tally.interrupted = True
            buffer.clear()
        finally:
            writer.close()
        return self._finish(tally, writer.files, time.perf_counter() - t0)

    def _finish(self, tally: Tally, files: list[Path], elapsed: float) -> PredictResult:
        if tally.frames == 0:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()  # only if empty: leave no empty run folder behind
            raise PosenfsError(
                f"no readable {self.unit} in {self.src} ({len(tally.skipped)} skipped: "
                f"{tally.skipped[0] if tally.skipped else 'empty'})"
            )
        if self.opts.coco_results is not None:
            from posenfs_cli.inference.predictor import coco_results

            results = coco_results(tally.instances, self.predictor)
            files.append(write_json(self.opts.coco_results, results))
        res = PredictResult(
            self.src, self.out_dir, files, tally, elapsed, self.unit, self.boxes.name
        )
        res.warnings = warnings(self.opts, self.source, self.boxes, tally, self.unit)
        return res


def prepare(src: str, checkpoint: Path, opts: PredictOptions) -> PredictJob:
    """Open the source, the box source and the model; fail before any file is written."""
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.run import folder_name, new_run_dir
    from posenfs_cli.inference.predictor import Predictor
    from posenfs_cli.inference.sources import Frame, ImageFiles, open_source

    check_options(opts)
    dev = select_device(opts.device)
    source = open_source(src, opts.max_frames)
    boxes = box_source(opts)
    if isinstance(boxes, BoxesFile) and isinstance(source, ImageFiles):
        for i, p in enumerate(source.paths):
            boxes.image_id(Frame(i, p.stem, None, p))  # fail fast on unmatched names
    predictor = Predictor.from_checkpoint(
        checkpoint, dev, flip=opts.flip, batch_size=opts.batch_size, compile=opts.compile
    )
    layout = predictor.layout
    if opts.coco_results is not None and len(layout.sigmas) != layout.num_joints:
        raise PosenfsError(
            f"--coco-results needs a checkpoint with COCO-style keypoints (coco or crowdpose: "
            f"OKS sigmas); {checkpoint} predicts {layout.name} keypoints"
        )
    out_dir = (
        Path(opts.out)
        if opts.out is not None
        else new_run_dir("runs", "predict", folder_name(source.name, "images"))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    if boxes.name == "whole image" and not opts.whole_image:
        notes.append("no --boxes/--detector: each image is taken as one person crop")
    return PredictJob(src, opts, source, boxes, predictor, out_dir, notes)


def warnings(opts: PredictOptions, source: Any, boxes: Any, tally: Tally, unit: str) -> list[str]:
    """What the user should know about the run (one line each)."""
    out = []
    videos = getattr(source, "videos", [])
    if videos:
        names = ", ".join(p.name for p in videos[:5]) + (" ..." if len(videos) > 5 else "")
        out.append(
            f"{len(videos)} video file(s) in the folder were not processed ({names}); "
            "give each video as SRC to get its keypoints"
        )
    if isinstance(boxes, BoxesFile):
        thr = f"--box-thr {opts.box_thr:g}"
        below = (
            f"; {boxes.below_frames} of them only have boxes scored below {thr} "
            f"({boxes.below_thr} box(es))"
            if boxes.below_frames
            else ""
        )
        if tally.frames and boxes.matched_frames == 0 and boxes.below_frames:
            out.append(
                f"no detection in {boxes.path} for the {tally.frames} {unit} reached {thr}: "
                f"{boxes.below_thr} box(es) scored below it, 0 persons; lower --box-thr to "
                "keep them"
            )
        elif tally.frames and boxes.matched_frames == 0:
            out.append(
                f"no detection in {boxes.path} matches any of the {tally.frames} {unit} "
                "(image_id from the COCO file name or --image-ids): 0 persons"
            )
        elif boxes.matched_frames < tally.frames:
            out.append(
                f"{tally.frames - boxes.matched_frames} of {tally.frames} {unit} have no "
                f"detection in {boxes.path}{below}"
            )
        if boxes.clipped:
            out.append(f"{boxes.clipped} box(es) reached outside their image: clipped")
        if boxes.dropped:
            out.append(f"{boxes.dropped} box(es) of zero size or outside their image: skipped")
    if tally.non_finite:
        out.append(
            f"{tally.non_finite} keypoint(s) were not finite (NaN/inf model output; broken "
            "weights?): written as null"
        )
    if opts.overlay and tally.persons and tally.max_score < opts.kpt_thr:
        best = f"{tally.max_score:.3f}" if np.isfinite(tally.max_score) else "none finite"
        out.append(
            f"no keypoint reached --kpt-thr {opts.kpt_thr:g} (highest score {best}): the "
            "overlays show no skeleton; lower --kpt-thr to see them"
        )
    return out
