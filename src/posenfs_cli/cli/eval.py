"""``posenfs eval``: standard metrics for a checkpoint (MPII PCKh, COCO AP via pycocotools)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from posenfs_cli.cli.common import (
    checkpoint_or_latest,
    console,
    resolve_device_option,
    user_errors,
)
from posenfs_cli.config import apply_overrides
from posenfs_cli.errors import PosenfsError

COCO_COLUMNS = ["AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"]


def markdown_table(metrics: dict[str, Any], name: str) -> str:
    """The model-zoo row users compare with (HRNet/mmpose column names)."""
    if metrics.get("main") == "pckh":
        cols = metrics["pckh_columns"]
        names = list(cols)
        values = [f"{cols[n]:.2f}" for n in names]
    else:
        names = COCO_COLUMNS
        values = [f"{metrics[n.lower()]:.3f}" for n in names]
    head = "| model | " + " | ".join(names) + " |"
    sep = "|---|" + "---:|" * len(names)
    row = f"| {name} | " + " | ".join(values) + " |"
    return "\n".join([head, sep, row])


def eval_command(
    ctx: typer.Context,
    checkpoint: Path | None = typer.Argument(
        None,
        help="A posenfs .safetensors checkpoint [default: the newest "
        "runs/search|train/*/best.safetensors].",
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="mpii | coco | synthetic [default: the checkpoint's]."
    ),
    data_root: str | None = typer.Option(None, "--data-root", help="Dataset folder."),
    split: str | None = typer.Option(None, "--split", help="Split name (valid, val2017, ...)."),
    ann_file: Path | None = typer.Option(
        None, "--ann-file", help="An annotation JSON in any folder (with --image-dir)."
    ),
    image_dir: Path | None = typer.Option(None, "--image-dir", help="Images for --ann-file."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Flip test (one batched forward)."),
    flip_shift: bool = typer.Option(
        True, "--flip-shift/--no-flip-shift", help="Shift the flipped map one pixel (HRNet)."
    ),
    boxes: Path | None = typer.Option(
        None, "--boxes", help="COCO: person detections (results JSON) instead of GT boxes."
    ),
    box_thr: float = typer.Option(0.0, "--box-thr", help="COCO: minimum detection score."),
    head_boxes: Path | None = typer.Option(
        None,
        "--head-boxes",
        help="MPII with --ann-file: head boxes for PCKh (gt_valid.mat, or a JSON list of "
        "[x1, y1, x2, y2] per record).",
    ),
    batch_size: int = typer.Option(32, "--batch-size", "-b"),
    workers: int = typer.Option(2, "--workers", "-j"),
    sets: list[str] = typer.Option([], "--set", help="Override a data/eval key: key.path=value."),
    name: str | None = typer.Option(None, "--name", help="Run name under runs/eval/."),
    project: Path = typer.Option(Path("runs"), "--project"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda[:N]."),
    compile: str | None = typer.Option(
        None,
        "--compile",
        help="auto | on | off: torch.compile the model (auto: off; compiling takes minutes).",
    ),
) -> None:
    """Evaluate a checkpoint: PCKh (MPII, as the official code) or COCO keypoint AP.

    Examples:
      posenfs eval   (the newest search/train run's best checkpoint)
      posenfs eval runs/search/exp/best.safetensors
      posenfs eval best.safetensors --dataset mpii --data-root data/mpii --split valid
      posenfs eval best.safetensors --dataset coco --data-root data/coco --boxes dets.json
      posenfs eval best.safetensors --ann-file valid.json --image-dir images \\
        --head-boxes gt_valid.mat
    """
    _eval(
        ctx,
        checkpoint,
        dataset,
        data_root,
        split,
        ann_file,
        image_dir,
        flip,
        flip_shift,
        boxes,
        box_thr,
        head_boxes,
        batch_size,
        workers,
        sets,
        name,
        project,
        device,
        compile,
    )


def _data_config(ckpt, dataset, data_root, split, boxes, box_thr, workers, sets, compile=None):
    rec = ckpt.recipe
    over = [f"data.workers={workers}"] + ([f"eval.compile={compile}"] if compile else [])
    if dataset:
        over.append(f"data.dataset={dataset}")
        if dataset in ("mpii", "coco"):
            over.append("data.root=null")
    if data_root:
        over.append(f"data.root={data_root}")
    if split:
        over.append(f"data.val_split={split}")
    if boxes is not None:
        over += ["data.use_gt_boxes=false", f"data.boxes={boxes}", f"data.box_threshold={box_thr}"]
    rec = apply_overrides(rec, over + list(sets))
    kind = rec.data.dataset
    if kind in ("mpii", "coco") and kind != ckpt.recipe.data.keypoints:
        raise PosenfsError(
            f"{ckpt.path} was trained on {ckpt.recipe.data.keypoints} keypoints "
            f"({ckpt.recipe.data.keypoints.upper()} layout); it cannot be evaluated on {kind}"
        )
    return rec


@user_errors
def _eval(
    ctx,
    checkpoint,
    dataset,
    data_root,
    split,
    ann_file,
    image_dir,
    flip,
    flip_shift,
    boxes,
    box_thr,
    head_boxes,
    batch_size,
    workers,
    sets,
    name,
    project,
    device,
    compile=None,
) -> None:
    from posenfs_cli.data.build import build_eval_dataset, build_loader
    from posenfs_cli.data.layouts import get_layout
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.checkpoint import build_from_checkpoint, read_checkpoint
    from posenfs_cli.engine.run import new_run_dir
    from posenfs_cli.evaluation.evaluator import json_safe, predict, score, unreadable_count
    from posenfs_cli.evaluation.pckh import save_pred_mat
    from posenfs_cli.models.fold import inference_model

    checkpoint = checkpoint_or_latest(checkpoint, project)
    dev = select_device(resolve_device_option(ctx, device))
    ckpt = read_checkpoint(checkpoint)
    rec = _data_config(ckpt, dataset, data_root, split, boxes, box_thr, workers, sets, compile)
    layout = get_layout(rec.data.keypoints)
    ds = build_eval_dataset(rec.data, ann_file, image_dir, head_boxes)
    kind = layout.name if ann_file is not None else rec.data.dataset
    model, _ = build_from_checkpoint(ckpt, dev)
    model = inference_model(model, dev, channels_last=True, compile=rec.eval.compile)
    loader = build_loader(ds, batch_size, shuffle=False, workers=workers, seed=0)
    for note in getattr(ds, "notes", []):
        console.print(f"[dim]note:[/] {escape(note)}", soft_wrap=True)
    source = f"{kind}: {ann_file}" if ann_file is not None else kind
    console.print(
        f"evaluating [bold]{escape(str(checkpoint))}[/] on {len(ds)} persons "
        f"({escape(source)}, flip {'on' if flip else 'off'}) on {dev}"
    )
    with Progress(
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("eval", total=len(ds))
        preds = predict(
            model,
            loader,
            dev,
            layout,
            flip=flip,
            flip_shift=flip_shift,
            channels_last=True,
            on_batch=lambda n: progress.advance(task, n),
        )
    # unreadable images come back as placeholders flagged valid=False (counted in any worker)
    skipped = unreadable_count(preds, ds)
    metrics = score(
        preds, layout, ds, rec.eval.keypoint_score_threshold, rec.eval.oks_nms_threshold
    )
    if "main" not in metrics:
        raise PosenfsError(
            "no metric for this data: PCKh needs MPII head boxes (annot/gt_valid.mat or a "
            "per-record headbox), COCO AP needs a COCO annotation file"
        )
    run_dir = new_run_dir(project, "eval", name)  # only once there is something to write
    files = []
    if "coco_results" in metrics:
        res = run_dir / "keypoints_results.json"
        res.write_text(json.dumps(metrics.pop("coco_results"), allow_nan=False))
        files.append(res)
    else:
        files.append(save_pred_mat(run_dir / "pred.mat", preds.coords))
    table = markdown_table(metrics, Path(checkpoint).stem)
    (run_dir / "results.md").write_text(table + "\n")
    summary = {
        "checkpoint": str(checkpoint),
        "dataset": kind,
        **({"ann_file": str(ann_file), "image_dir": str(image_dir)} if ann_file else {}),
        **({"head_boxes": str(head_boxes)} if head_boxes else {}),
        "persons": len(preds),
        "skipped_images": skipped,
        "flip": flip,
        **{k: v for k, v in metrics.items() if k != "main"},
    }
    text = json.dumps(json_safe(summary), indent=2, allow_nan=False)
    (run_dir / "metrics.json").write_text(text + "\n")
    files += [run_dir / "results.md", run_dir / "metrics.json"]
    console.print()
    console.print(table, markup=False, soft_wrap=True)
    if metrics["main"] == "pckh":
        console.print("(Mean@0.11 is what HRNet's code prints as 'Mean@0.1'.)", style="dim")
    if skipped:
        share = 100.0 * skipped / len(preds)
        console.print(
            f"[yellow]warning: {skipped} unreadable image(s) skipped[/] ({share:.1f}% of the "
            "persons, scored as misses)",
            soft_wrap=True,
        )
    bad = int(metrics.get("non_finite_keypoints", 0))
    if bad:
        console.print(
            f"[yellow]warning: {bad} predicted keypoint(s) were not finite (NaN/inf model "
            "output)[/]; scored as misses",
            soft_wrap=True,
        )
    console.print(f"[bold green]done.[/] results in [bold]{run_dir}[/]")
    for f in files:
        console.print(f"  {f}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
