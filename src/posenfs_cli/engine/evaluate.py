"""Evaluate a checkpoint: data choice, loader, flip-test inference, scoring and the run files.

Two steps so a caller can show progress between them: :func:`prepare` builds the model and the
data (and fails before any folder exists); :meth:`EvalJob.run` predicts, scores and writes
``pred.mat`` or ``keypoints_results.json``, ``results.md`` and ``metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from posenfs_cli.config import Recipe, apply_overrides, set_values
from posenfs_cli.data.layouts import LAYOUTS
from posenfs_cli.errors import PosenfsError
from posenfs_cli.options import EvalOptions

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


def eval_recipe(ckpt: Any, opts: EvalOptions) -> Recipe:
    """The checkpoint's recipe with the evaluation's data choices (typed) and --set strings."""
    values: dict[str, Any] = {"data.workers": opts.workers}
    if opts.compile:
        values["eval.compile"] = opts.compile
    if opts.dataset:
        values["data.dataset"] = opts.dataset
        if opts.dataset in LAYOUTS:
            values["data.root"] = None  # the checkpoint's root belongs to its own dataset
    if opts.data_root:
        values["data.root"] = opts.data_root
    if opts.split:
        values["data.val_split"] = opts.split
    if opts.boxes is not None:
        values.update(
            {
                "data.use_gt_boxes": False,
                "data.boxes": str(opts.boxes),
                "data.box_threshold": float(opts.box_thr),
            }
        )
    others = [s for s in opts.sets if not s.strip().startswith(("data.", "eval."))]
    if others:  # the model is the checkpoint's and nothing trains
        raise PosenfsError(
            f"eval --set takes data.* and eval.* keys only; {', '.join(others)} would be ignored"
        )
    rec = apply_overrides(set_values(ckpt.recipe, values), list(opts.sets))
    kind = rec.data.dataset
    if opts.split and opts.ann_file is not None:
        raise PosenfsError("--split picks a file under --data-root; with --ann-file it is unused")
    if opts.split and kind == "synthetic" and not rec.data.root:
        raise PosenfsError(
            "--split picks a file under --data-root; the built-in synthetic data (no "
            "--data-root) has one validation set"
        )
    if kind in LAYOUTS and kind != ckpt.recipe.data.keypoints:
        raise PosenfsError(
            f"{ckpt.path} was trained on {ckpt.recipe.data.keypoints} keypoints "
            f"({ckpt.recipe.data.keypoints.upper()} layout); it cannot be evaluated on {kind}"
        )
    return rec


@dataclass
class EvalResult:
    """What an evaluation measured and wrote."""

    checkpoint: Path
    dataset: str
    metrics: dict[str, Any]  # as in metrics.json, plus "main": "pckh" | "ap"
    table: str  # the markdown row of results.md
    run_dir: Path
    files: list[Path]
    persons: int
    skipped_images: int

    @property
    def main(self) -> float:
        """The headline number: PCKh Mean (MPII) or AP (COCO)."""
        if self.metrics["main"] == "pckh":
            return float(self.metrics["pckh"])
        return float(self.metrics["ap"])


@dataclass
class EvalJob:
    checkpoint: Path
    opts: EvalOptions
    recipe: Recipe
    device: torch.device
    model: Any
    dataset: Any
    loader: Any
    layout: Any
    kind: str  # dataset name, or the layout for an ann_file
    source: str  # shown to the user: "mpii" or "mpii: path/valid.json"
    notes: list[str] = field(default_factory=list)

    def run(self, on_batch: Callable[[int], None] | None = None) -> EvalResult:
        from posenfs_cli.evaluation.evaluator import predict, score, unreadable_count

        o = self.opts
        preds = predict(
            self.model,
            self.loader,
            self.device,
            self.layout,
            flip=o.flip,
            flip_shift=o.flip_shift,
            channels_last=True,
            on_batch=on_batch,
        )
        # unreadable images come back as placeholders flagged valid=False (counted in any worker)
        skipped = unreadable_count(preds, self.dataset)
        ev = self.recipe.eval
        metrics = score(
            preds, self.layout, self.dataset, ev.keypoint_score_threshold, ev.oks_nms_threshold
        )
        if "main" not in metrics:
            raise PosenfsError(
                "no metric for this data: PCKh needs MPII head boxes (annot/gt_valid.mat or a "
                "per-record headbox), COCO AP needs a COCO annotation file"
            )
        return self._write(preds, metrics, skipped)

    def _sources(self) -> dict[str, Any]:
        """The files that were scored, so that a metrics.json can be traced back to its data."""
        o, data = self.opts, self.recipe.data
        out: dict[str, Any] = {}
        if o.ann_file:
            out.update(ann_file=str(o.ann_file), image_dir=str(o.image_dir))
        elif data.root:
            out.update(data_root=str(data.root), split=data.val_split)
        if o.head_boxes:
            out["head_boxes"] = str(o.head_boxes)
        if data.boxes and not data.use_gt_boxes:
            out.update(boxes=str(data.boxes), box_threshold=data.box_threshold)
        return out

    def _write(self, preds: Any, metrics: dict[str, Any], skipped: int) -> EvalResult:
        from posenfs_cli.data.jsonio import json_safe
        from posenfs_cli.engine.run import new_run_dir
        from posenfs_cli.evaluation.pckh import save_pred_mat

        o = self.opts
        run_dir = new_run_dir(o.project, "eval", o.name)  # only once there is something to write
        files = []
        if "coco_results" in metrics:
            res = run_dir / "keypoints_results.json"
            res.write_text(json.dumps(metrics.pop("coco_results"), allow_nan=False))
            files.append(res)
        else:
            files.append(save_pred_mat(run_dir / "pred.mat", preds.coords))
        table = markdown_table(metrics, Path(self.checkpoint).stem)
        (run_dir / "results.md").write_text(table + "\n")
        summary = {
            "checkpoint": str(self.checkpoint),
            "dataset": self.kind,
            **self._sources(),
            "persons": len(preds),
            "skipped_images": skipped,
            "flip": o.flip,
            **{k: v for k, v in metrics.items() if k != "main"},
        }
        text = json.dumps(json_safe(summary), indent=2, allow_nan=False)
        (run_dir / "metrics.json").write_text(text + "\n")
        files += [run_dir / "results.md", run_dir / "metrics.json"]
        return EvalResult(
            self.checkpoint, self.kind, metrics, table, run_dir, files, len(preds), skipped
        )


def prepare(checkpoint: Path, opts: EvalOptions) -> EvalJob:
    """Model and data for ``checkpoint``; every mistake is raised before anything is written."""
    from posenfs_cli.data.build import build_eval_dataset, build_loader
    from posenfs_cli.data.layouts import get_layout
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.checkpoint import build_from_checkpoint, read_checkpoint
    from posenfs_cli.engine.run import pick_run_dir
    from posenfs_cli.models.fold import inference_model

    pick_run_dir(opts.project, "eval", opts.name)  # a bad --name/--project fails before the work
    dev = select_device(opts.device)
    ckpt = read_checkpoint(checkpoint)
    rec = eval_recipe(ckpt, opts)
    layout = get_layout(rec.data.keypoints)
    ds = build_eval_dataset(
        rec.data, opts.ann_file, opts.image_dir, opts.head_boxes, ckpt.input_format
    )
    kind = layout.name if opts.ann_file is not None else rec.data.dataset
    model, _ = build_from_checkpoint(ckpt, dev)
    model = inference_model(model, dev, channels_last=True, compile=rec.eval.compile)
    loader = build_loader(ds, opts.batch_size, shuffle=False, workers=opts.workers, seed=0)
    source = f"{kind}: {opts.ann_file}" if opts.ann_file is not None else kind
    notes = list(getattr(ds, "notes", []))
    return EvalJob(checkpoint, opts, rec, dev, model, ds, loader, layout, kind, source, notes)
