"""``posenfs export``: a checkpoint to ONNX (heatmaps out), checked against PyTorch."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.markup import escape

from posenfs_cli.cli.common import O_CHECKPOINT, checkpoint_or_latest, console, fail, user_errors
from posenfs_cli.errors import PosenfsError

FORMATS = ("onnx",)


def export_command(
    checkpoint: Path | None = O_CHECKPOINT,
    fmt: str = typer.Option("onnx", "--format", "-f", help="Export format (onnx)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output file (default: the checkpoint's path with .onnx)."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    batch: str = typer.Option(
        "dynamic", "--batch", help="'dynamic' (any batch at run time) or a fixed batch size."
    ),
    atol: float = typer.Option(
        1e-4, "--atol", help="Fail when ONNX Runtime and PyTorch differ by more than this."
    ),
) -> None:
    """Export the network to ONNX (N×3×H×W normalised RGB in, or BGR for a checkpoint imported
    from the authors' code; N×K×H/4×W/4 heatmaps out) and check it with ONNX Runtime against
    PyTorch on a random input.

    Cropping and decoding are not part of the graph; the file's metadata records the input
    normalisation, keypoint names and flip pairs.

    Examples:
      posenfs export   (the newest search/train run's best checkpoint)
      posenfs export runs/train/exp/best.safetensors
      posenfs export best.safetensors --out model.onnx --opset 17 --batch 1
    """
    _export(checkpoint, fmt, out, opset, batch, atol)


@user_errors
def _export(
    checkpoint: Path | None, fmt: str, out: Path | None, opset: int, batch: str, atol: float
):
    from posenfs_cli.data.layouts import get_layout
    from posenfs_cli.engine.checkpoint import build_from_checkpoint
    from posenfs_cli.inference.export import export_and_check, parse_batch

    # option mistakes first: no "using <newest checkpoint>" line before them, nothing written
    if fmt.lower() not in FORMATS:
        raise PosenfsError(f"--format {fmt!r}: supported formats are {', '.join(FORMATS)}")
    if not 9 <= opset <= 23:
        raise PosenfsError(f"--opset {opset}: choose an opset between 9 and 23 (17 is a safe one)")
    if not (math.isfinite(atol) and atol >= 0):
        raise PosenfsError(f"--atol must be a finite number >= 0, got {atol:g}")
    if out is not None and out.is_dir():
        raise PosenfsError(f"--out {out} is a folder; give an .onnx file name")
    static = parse_batch(batch)
    checkpoint = checkpoint_or_latest(checkpoint)
    model, ckpt = build_from_checkpoint(checkpoint, "cpu")
    input_format = ckpt.input_format  # refuses an unknown channel order before writing
    target = out if out is not None else Path(checkpoint).with_suffix(".onnx")
    size = list(ckpt.recipe.data.input_size)
    with console.status(f"exporting to ONNX (opset {opset}) and checking ...", spinner="dots"):
        layout = get_layout(ckpt.recipe.data.keypoints)
        rep = export_and_check(model, size, target, opset, static, layout, input_format)
    console.print(
        f"ONNX Runtime vs PyTorch on a random batch of {rep.check_batch}: "
        f"max abs diff [bold]{rep.max_abs_diff:.2e}[/] (tolerance {atol:.0e})"
    )
    if not rep.max_abs_diff <= atol:
        fail(
            f"exported model differs from PyTorch by {rep.max_abs_diff:.3g} > {atol:g} "
            f"({rep.path} kept for inspection; try another --opset)",
            code=1,
        )
    console.print(
        f"[green]exported[/] {escape(str(rep.path))} ({rep.size_mb:.1f} MiB, opset {rep.opset}, "
        f"batch {rep.batch}) in {rep.seconds:.1f} s\n"
        f"  input  'input' {rep.input_shape} float32, {rep.input_format.upper()}, "
        "ImageNet-normalised\n"
        f"  output 'heatmaps' {rep.output_shape}; decode with argmax + quarter offset + "
        "inverse crop affine",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
