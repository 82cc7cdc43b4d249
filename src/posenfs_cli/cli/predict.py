"""``posenfs predict``: keypoints for images, folders, videos and webcams (top-down).

Boxes come from a COCO-results detections file (``--boxes``), OpenCV's built-in HOG people
detector (``--detector hog``) or the whole image (default); see inference/predict_run.py.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from posenfs_cli.cli.common import (
    LATEST,
    O_DEVICE,
    checkpoint_or_latest,
    console,
    resolve_device_option,
    user_errors,
)
from posenfs_cli.options import PredictOptions
from posenfs_cli.views.progress import PredictBar


def predict_command(
    ctx: typer.Context,
    src: str = typer.Argument(
        ..., help="An image, a folder of images, a video file, or webcam[:id]."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        "-c",
        help="A posenfs .safetensors checkpoint.",
        show_default=LATEST,
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
    box_thr: float = typer.Option(
        0.3, "--box-thr", help="Drop boxes scored below this (a score in [0, 1])."
    ),
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
    device: str | None = O_DEVICE,
    max_frames: int | None = typer.Option(
        None, "--max-frames", help="Stop after N images/frames (videos, webcams, folders)."
    ),
    coco_results: Path | None = typer.Option(
        None,
        "--coco-results",
        help="With --boxes and a COCO/CrowdPose-keypoints checkpoint: also write one COCO "
        "keypoint-results JSON for all inputs (rescored and OKS-NMS'd as `posenfs eval` does; "
        "pycocotools reads it).",
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
    params = locals()
    opts = PredictOptions(**{f.name: params[f.name] for f in fields(PredictOptions)})
    opts.device = resolve_device_option(ctx, device)
    _predict(src, checkpoint, opts)


@user_errors
def _predict(src: str, checkpoint: Path | None, opts: PredictOptions) -> None:
    from posenfs_cli import api
    from posenfs_cli.inference.predict_run import check_options
    from posenfs_cli.views.predict import show

    check_options(opts)  # option mistakes first: no "using <newest checkpoint>" line before them
    checkpoint = checkpoint_or_latest(checkpoint)
    bar = PredictBar(console)
    try:
        res = api.predict(
            src,
            checkpoint,
            options=opts,
            on_start=bar.start,
            on_progress=bar.advance,
            on_skip=bar.skipped,
        )
    finally:
        bar.stop()
    show(console, res, opts)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
