"""How ``posenfs predict`` sums up a run: counts, speed, warnings and the files written."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from posenfs_cli.inference.predict_run import PredictResult
from posenfs_cli.options import PredictOptions


def show(console: Console, res: PredictResult, opts: PredictOptions) -> None:
    tally, unit = res.tally, res.unit
    rate = tally.persons / res.elapsed if res.elapsed > 0 else 0.0
    flip = "flip test on" if opts.flip else "flip test off"
    console.print(
        f"[green]done[/] {tally.frames} {unit}, [bold]{tally.persons}[/] persons "
        f"(boxes: {res.boxes}; {flip}) in {res.elapsed:.1f} s ({rate:.1f} persons/s)"
        + ("  [yellow]interrupted[/]" if tally.interrupted else "")
    )
    for line in res.warnings:
        console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    if tally.skipped:
        console.print(f"[yellow]skipped {len(tally.skipped)} unreadable {unit}[/]:")
        for reason in tally.skipped[:10]:
            console.print(f"  {escape(reason)}")
    what = f"{tally.json_files} JSON"
    if opts.overlay:
        what += f", {tally.overlays} overlay{'s' if tally.overlays != 1 else ''}"
    console.print(f"outputs: {escape(str(res.out_dir))}/ ({what})")
    for f in res.files:
        console.print(f"  {escape(str(f))}")
