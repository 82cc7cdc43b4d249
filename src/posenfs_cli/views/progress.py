"""Progress bars that start once a job knows its size (after its opening lines)."""

from __future__ import annotations

from typing import Any

from rich import progress as rp
from rich.console import Console
from rich.progress import Progress

from posenfs_cli.views.evaluate import show_start


class EvalBar:
    """The progress bar, started once the data is known (after the 'evaluating' line)."""

    progress: Progress | None = None

    def __init__(self, console: Console):
        self.console = console

    def start(self, job: Any) -> None:
        show_start(self.console, job)
        columns = (
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("eta"),
            rp.TimeRemainingColumn(),
        )
        self.progress = Progress(rp.TextColumn("[bold]eval"), *columns, console=self.console)
        self.progress.start()
        self.task = self.progress.add_task("eval", total=len(job.dataset))

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class PredictBar:
    """The progress bar, started once the source is open (off for a single image)."""

    progress: Progress | None = None

    def __init__(self, console: Console):
        self.console = console

    def start(self, job: Any) -> None:
        for note in job.notes:
            self.console.print(f"[dim]{note}[/]")
        columns = (rp.TextColumn("{task.fields[persons]} persons"), rp.TimeElapsedColumn())
        self.progress = Progress(
            rp.TextColumn("[bold]predict[/] {task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            *columns,
            rp.TimeRemainingColumn(),
            console=self.console,
            disable=job.source.kind == "image",
            transient=False,
        )
        self.progress.start()
        what = f"{job.source.name} ({job.unit})"
        self.task = self.progress.add_task(what, total=job.source.total, persons=0)

    def advance(self, n: int, persons: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n, persons=persons)

    def skipped(self, reason: str) -> None:
        if self.progress is not None:
            self.progress.console.print(f"[yellow]warning:[/] {reason}; skipped")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
