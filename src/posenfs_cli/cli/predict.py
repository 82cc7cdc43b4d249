"""``posenfs predict``: keypoints for images, folders, videos and webcams (top-down).

Boxes come from a COCO-results detections file (``--boxes``), OpenCV's built-in HOG people
detector (``--detector hog``) or the whole image (default). Frames are buffered until a batch of
crops is full, so folders and videos share forward passes across images.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from posenfs_cli.cli.common import (
    checkpoint_or_latest,
    console,
    resolve_device_option,
    user_errors,
)
from posenfs_cli.data.layouts import KeypointLayout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.vis.draw import draw_instances


@dataclass
class Options:
    src: str
    checkpoint: Path | None
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
    coco_results: Path | None = None
    compile: str = "auto"


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


def predict_command(
    ctx: typer.Context,
    src: str = typer.Argument(
        ..., help="An image, a folder of images, a video file, or webcam[:id]."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        "-c",
        help="A posenfs .safetensors checkpoint [default: the newest "
        "runs/search|train/*/best.safetensors].",
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
    coco_results: Path | None = typer.Option(
        None,
        "--coco-results",
        help="With --boxes: also write one COCO keypoint-results JSON for all inputs "
        "(rescored and OKS-NMS'd as `posenfs eval` does; pycocotools reads it).",
    ),
    compile: str = typer.Option(
        "auto",
        "--compile",
        help="auto | on | off: torch.compile the model (auto: off; compiling takes minutes).",
    ),
) -> None:
    """Predict keypoints of every person and write one JSON per image (a single JSON for a
    video), optionally with overlays.

    Each JSON is a list of {bbox: x1 y1 x2 y2, bbox_score, keypoints: K pairs x y,
    keypoint_scores: K floats} in original image pixels (plus image_id with --boxes; NaN/inf
    model output is written as null); a video gets one list of {frame_id, instances}.

    Examples:
      posenfs predict photo.jpg --overlay   (the newest search/train run's best checkpoint)
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
        coco_results,
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

    checkpoint = checkpoint_or_latest(opts.checkpoint)
    if opts.batch_size < 1:
        raise PosenfsError("--batch-size must be >= 1")
    dev = select_device(opts.device)
    source = open_source(opts.src, opts.max_frames)
    box_source = _box_source(opts)
    if isinstance(box_source, BoxesFile) and isinstance(source, ImageFiles):
        for i, p in enumerate(source.paths):
            box_source.image_id(Frame(i, p.stem, None, p))  # fail fast on unmatched names
    predictor = Predictor.from_checkpoint(
        checkpoint, dev, flip=opts.flip, batch_size=opts.batch_size, compile=opts.compile
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
            if isinstance(box_source, BoxesFile):
                for inst in instances:
                    inst.image_id = box_source.image_id(frame)
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
        with contextlib.suppress(OSError):
            out_dir.rmdir()  # only if empty: leave no empty run folder behind
        raise PosenfsError(
            f"no readable {unit} in {opts.src} ({len(tally.skipped)} skipped: "
            f"{tally.skipped[0] if tally.skipped else 'empty'})"
        )
    if opts.coco_results is not None:
        from posenfs_cli.inference.predictor import coco_results

        writer.files.append(
            _write_json(opts.coco_results, coco_results(tally.instances, predictor))
        )
    _summary(opts, source, box_source, tally, out_dir, elapsed, writer.files)


def _write_json(path: Path, data: Any) -> Path:
    """Valid JSON (no bare NaN), written to a temporary name first: never half a file."""
    text = json.dumps(data, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


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
        stem = _unique_stem(frame.path, frame.name, self.used)
        path = self.out_dir / f"{stem}.json"
        _write_json(path, records)
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
            _write_json(path, self.frames)
            self.tally.json_files = 1
            self.files.insert(0, path)


def _summary(
    opts: Options,
    source: Any,
    box_source: Any,
    tally: Tally,
    out_dir: Path,
    elapsed: float,
    files: list[Path],
) -> None:
    from posenfs_cli.inference.detectors import BoxesFile

    unit = "frames" if source.is_stream else "images"
    rate = tally.persons / elapsed if elapsed > 0 else 0.0
    flip = "flip test on" if opts.flip else "flip test off"
    console.print(
        f"[green]done[/] {tally.frames} {unit}, [bold]{tally.persons}[/] persons "
        f"(boxes: {box_source.name}; {flip}) in {elapsed:.1f} s ({rate:.1f} persons/s)"
        + ("  [yellow]interrupted[/]" if tally.interrupted else "")
    )
    for line in _warnings(opts, source, box_source, tally, unit, BoxesFile):
        console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    if tally.skipped:
        console.print(f"[yellow]skipped {len(tally.skipped)} unreadable {unit}[/]:")
        for reason in tally.skipped[:10]:
            console.print(f"  {escape(reason)}")
    what = f"{tally.json_files} JSON"
    if opts.overlay:
        what += f", {tally.overlays} overlay{'s' if tally.overlays != 1 else ''}"
    console.print(f"outputs: {escape(str(out_dir))}/ ({what})")
    for f in files:
        console.print(f"  {escape(str(f))}")


def _warnings(opts, source, box_source, tally, unit, boxes_file_cls) -> list[str]:
    """What the user should know about the run (one line each)."""
    out = []
    videos = getattr(source, "videos", [])
    if videos:
        names = ", ".join(p.name for p in videos[:5]) + (" ..." if len(videos) > 5 else "")
        out.append(
            f"{len(videos)} video file(s) in the folder were not processed ({names}); "
            "give each video as SRC to get its keypoints"
        )
    if isinstance(box_source, boxes_file_cls):
        if tally.frames and box_source.matched_frames == 0:
            out.append(
                f"no detection in {box_source.path} matches any of the {tally.frames} {unit} "
                "(image_id from the COCO file name or --image-ids): 0 persons"
            )
        elif box_source.matched_frames < tally.frames:
            out.append(
                f"{tally.frames - box_source.matched_frames} of {tally.frames} {unit} have no "
                f"detection in {box_source.path}"
            )
        if box_source.clipped:
            out.append(f"{box_source.clipped} box(es) reached outside their image: clipped")
        if box_source.dropped:
            out.append(f"{box_source.dropped} box(es) of zero size or outside their image: skipped")
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


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
