"""How ``posenfs eval`` shows an evaluation: what is evaluated, then the model-zoo row."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from posenfs_cli.engine.evaluate import EvalJob, EvalResult


def show_start(console: Console, job: EvalJob) -> None:
    for note in job.notes:
        console.print(f"[dim]note:[/] {escape(note)}", soft_wrap=True)
    flip = "on" if job.opts.flip else "off"
    console.print(
        f"evaluating [bold]{escape(str(job.checkpoint))}[/] on {len(job.dataset)} persons "
        f"({escape(job.source)}, flip {flip}) on {job.device}"
    )


def show_result(console: Console, res: EvalResult) -> None:
    console.print()
    console.print(res.table, markup=False, soft_wrap=True)
    if res.metrics["main"] == "pckh":
        console.print("(Mean@0.11 is what HRNet's code prints as 'Mean@0.1'.)", style="dim")
    if res.skipped_images:
        share = 100.0 * res.skipped_images / res.persons
        console.print(
            f"[yellow]warning: {res.skipped_images} unreadable image(s) skipped[/] ({share:.1f}% "
            "of the persons, scored as misses)",
            soft_wrap=True,
        )
    bad = int(res.metrics.get("non_finite_keypoints", 0))
    if bad:
        console.print(
            f"[yellow]warning: {bad} predicted keypoint(s) were not finite (NaN/inf model "
            "output)[/]; scored as misses",
            soft_wrap=True,
        )
    console.print(f"[bold green]done.[/] results in [bold]{res.run_dir}[/]")
    for f in res.files:
        console.print(f"  {f}")
