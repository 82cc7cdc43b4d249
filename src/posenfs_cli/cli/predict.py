"""``posenfs predict``: keypoints for images, folders, videos and webcams (top-down).

Boxes come from a COCO-results detections file (``--boxes``), OpenCV's built-in HOG people
detector (``--detector hog``) or the whole image (default). Frames are buffered until a batch of
crops is full, so folders and videos share forward passes across images.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from posenfs_cli.cli.common import console, resolve_device_option, user_errors
from posenfs_cli.data.keypoints import KeypointLayout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.vis.draw import draw_instances


@dataclass
class Options:
    src: str
    checkpoint: Path
    boxes: Path | None
    image_ids: Path | None
    box_thr: float
    detector: str | None
    whole_image: bool
    overlay: bool
    kpt_thr: float
    flip: bool
    batch_size: int
    out: Path | None
    device: str
    max_frames: int | None
    compile: str = "auto"


@dataclass
class Tally:
    frames: int = 0
    persons: int = 0
    skipped: list[str] = field(default_factory=list)
    json_files: int = 0
    overlays: int = 0
    interrupted: bool = False


def _unique_stem(path: Path | None, name: str, used: set[str]) -> str:
    """Output stem for an image; files that share a stem (a.jpg, a.png) keep their suffix."""
    stem = name if path is None else path.stem
    if stem in used and path is not None:
        stem = path.name.replace(".", "_")
    used.add(stem)
    return stem


def _box_source(opts: Options):
    from posenfs_cli.inference.detectors import BoxesFile, WholeImage, make_detector

    given = [
        n
        for n, on in (
            ("--boxes", opts.boxes),
            ("--detector", opts.detector),
            ("--whole-image", opts.whole_image),
        )
        if on
    ]
    if len(given) > 1:
        raise PosenfsError(f"{' and '.join(given)} exclude each other: choose one box source")
    if opts.image_ids is not None and opts.boxes is None:
        raise PosenfsError("--image-ids only applies with --boxes")
    if opts.boxes is not None:
        return BoxesFile(opts.boxes, opts.box_thr, opts.image_ids)
    if opts.detector is not None:
        return make_detector(opts.detector, opts.box_thr)
    return WholeImage()


def predict_command(
    ctx: typer.Context,
    src: str = typer.Argument(
        ..., help="An image, a folder of images, a video file, or webcam[:id]."
    ),
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", "-c", help="A posenfs .safetensors checkpoint."
    ),
    boxes: Path | None = typer.Option(
        None,
        "--boxes",
        help="Person detections, COCO results JSON [{image_id, category_id, bbox xywh, score}]. "
        "Images match by COCO file name (000000000785.jpg -> 785); video frames by index.",
    ),
    image_ids: Path | None = typer.Option(
        None,
        "--image-ids",
        help="With --boxes: {file_name: image_id} JSON or a COCO annotation file.",
    ),
    box_thr: float = typer.Option(0.3, "--box-thr", help="Drop boxes scored below this."),
    detector: str | None = typer.Option(
        None, "--detector", help="Built-in person detector: hog (OpenCV, no download)."
    ),
    whole_image: bool = typer.Option(
        False, "--whole-image", help="One box = the whole image (the default box source)."
    ),
    overlay: bool = typer.Option(
        False, "--overlay", help="Also write images (<name>_overlay.jpg) / video with skeletons."
    ),
    kpt_thr: float = typer.Option(
        0.3, "--kpt-thr", help="Overlay: joints scored below this are not drawn."
    ),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Flip test (one batched forward)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Person crops per forward."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (default runs/predict/<name>, auto-numbered)."
    ),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda[:N]."),
    max_frames: int | None = typer.Option(
        None, "--max-frames", help="Stop after N images/frames (videos, webcams, folders)."
    ),
    compile: str = typer.Option(
        "auto", "--compile", help="auto | on | off: torch.compile the model (auto: CUDA only)."
    ),
) -> None:
    """Predict keypoints of every person and write one JSON per image (a single JSON for a
    video), optionally with overlays.

    Each JSON is a list of {bbox: x1 y1 x2 y2, bbox_score, keypoints: K pairs x y,
    keypoint_scores: K floats} in original image pixels; a video gets one list of
    {frame_id, instances}.

    Examples:
      posenfs predict photo.jpg -c best.safetensors --detector hog --overlay
      posenfs predict val2017/ -c best.safetensors --boxes person_detections.json
      posenfs predict clip.mp4 -c best.safetensors --detector hog --overlay --max-frames 300
      posenfs predict crops/ -c best.safetensors --whole-image
    """
    opts = Options(
        src,
        checkpoint,
        boxes,
        image_ids,
        box_thr,
        detector,
        whole_image,
        overlay,
        kpt_thr,
        flip,
        batch_size,
        out,
        resolve_device_option(ctx, device),
        max_frames,
        compile,
    )
    _predict(opts)


@user_errors
def _predict(opts: Options) -> None:
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.run import new_run_dir
    from posenfs_cli.inference.detectors import BoxesFile
    from posenfs_cli.inference.predictor import Predictor
    from posenfs_cli.inference.sources import Frame, ImageFiles, open_source

    if opts.batch_size < 1:
        raise PosenfsError("--batch-size must be >= 1")
    dev = select_device(opts.device)
    source = open_source(opts.src, opts.max_frames)
    box_source = _box_source(opts)
    if isinstance(box_source, BoxesFile) and isinstance(source, ImageFiles):
        for i, p in enumerate(source.paths):
            box_source.image_id(Frame(i, p.stem, None, p))  # fail fast on unmatched names
    predictor = Predictor.from_checkpoint(
        opts.checkpoint, dev, flip=opts.flip, batch_size=opts.batch_size, compile=opts.compile
    )
    out_dir = (
        Path(opts.out) if opts.out is not None else new_run_dir("runs", "predict", source.name)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if box_source.name == "whole image" and not opts.whole_image:
        console.print("[dim]no --boxes/--detector: each image is taken as one person crop[/]")

    tally = Tally()
    writer = _Writer(opts, source, predictor.layout, out_dir, tally)
    buffer: list[tuple[Any, np.ndarray, np.ndarray]] = []
    t0 = time.perf_counter()

    def flush() -> None:
        if not buffer:
            return
        results = predictor.predict_many(
            [f.image for f, _, _ in buffer], [b for _, b, _ in buffer], [s for _, _, s in buffer]
        )
        for (frame, _, _), instances in zip(buffer, results, strict=True):
            writer.write(frame, instances)
        buffer.clear()

    unit = "frames" if source.is_stream else "images"
    with Progress(
        TextColumn("[bold]predict[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[persons]} persons"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=source.kind == "image",
        transient=False,
    ) as progress:
        task = progress.add_task(f"{source.name} ({unit})", total=source.total, persons=0)
        try:
            for frame in source:
                if frame.image is None:
                    tally.skipped.append(frame.error or frame.name)
                    progress.console.print(f"[yellow]warning:[/] {frame.error}; skipped")
                    progress.advance(task)
                    continue
                b, s = box_source.boxes(frame.image, frame)
                buffer.append((frame, b, s))
                if sum(len(x[1]) for x in buffer) >= opts.batch_size or len(buffer) >= 64:
                    n = len(buffer)
                    flush()
                    progress.update(task, advance=n, persons=tally.persons)
            n = len(buffer)
            flush()
            progress.update(task, advance=n, persons=tally.persons)
        except KeyboardInterrupt:  # the normal way to stop a webcam: keep what was done
            tally.interrupted = True
            buffer.clear()
        finally:
            writer.close()
    elapsed = time.perf_counter() - t0
    if tally.frames == 0:
        raise PosenfsError(
            f"no readable {unit} in {opts.src} ({len(tally.skipped)} skipped: "
            f"{tally.skipped[0] if tally.skipped else 'empty'})"
        )
    _summary(opts, source, box_source.name, tally, out_dir, elapsed, writer.files)


class _Writer:
    """Writes per-image JSON/overlays as results arrive, or collects a video's frames."""

    def __init__(self, opts: Options, source: Any, layout: KeypointLayout, out_dir: Path, tally):
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
        records = [inst.to_dict() for inst in instances]
        if self.source.is_stream:
            self.frames.append({"frame_id": frame.index, "instances": records})
            if self.opts.overlay:
                self._video_frame(
                    draw_instances(frame.image, instances, self.layout, self.opts.kpt_thr)
                )
            return
        stem = _unique_stem(frame.path, frame.name, self.used)
        path = self.out_dir / f"{stem}.json"
        path.write_text(json.dumps(records))
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
            path.write_text(json.dumps(self.frames))
            self.tally.json_files = 1
            self.files.insert(0, path)


def _summary(
    opts: Options,
    source: Any,
    boxes_from: str,
    tally: Tally,
    out_dir: Path,
    elapsed: float,
    files: list[Path],
) -> None:
    unit = "frames" if source.is_stream else "images"
    rate = tally.persons / elapsed if elapsed > 0 else 0.0
    flip = "flip test on" if opts.flip else "flip test off"
    console.print(
        f"[green]done[/] {tally.frames} {unit}, [bold]{tally.persons}[/] persons "
        f"(boxes: {boxes_from}; {flip}) in {elapsed:.1f} s ({rate:.1f} persons/s)"
        + ("  [yellow]interrupted[/]" if tally.interrupted else "")
    )
    if tally.skipped:
        console.print(f"[yellow]skipped {len(tally.skipped)} unreadable {unit}[/]:")
        for reason in tally.skipped[:10]:
            console.print(f"  {reason}")
    what = f"{tally.json_files} JSON"
    if opts.overlay:
        what += f", {tally.overlays} overlay{'s' if tally.overlays != 1 else ''}"
    console.print(f"outputs: {out_dir}/ ({what})")
    for f in files:
        console.print(f"  {f}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
