"""How ``posenfs profile`` shows a report: the params/MACs table and the timing line."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from posenfs_cli.engine.profile_run import ProfileJob
from posenfs_cli.profiling import ProfileReport


def _fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_g(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.4f}"


def _delta(ours: float, ref: float) -> str:
    return f"{100.0 * (ours - ref) / ref:+.2f}%"


def render(report: ProfileReport, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("", style="bold")
    table.add_column("params", justify="right")
    table.add_column("conv GMACs", justify="right")
    table.add_row("total", _fmt_int(report.params_total), _fmt_g(report.macs_total))
    table.add_row("backbone", _fmt_int(report.params_backbone), _fmt_g(report.macs_backbone))
    for name, n in report.params_parts.items():
        table.add_row(f"part {name}", _fmt_int(n), _fmt_g(report.macs_parts[name]))
    table.add_row("thop (incl. BN/pool)", "", _fmt_g(report.thop_macs))
    paper = report.paper
    if "params" in paper:
        table.add_row(
            "paper table (released code)",
            f"{paper['params']:,} ({_delta(report.params_total, paper['params'])})",
            f"{paper['gmacs']:.4f} ({_delta(report.macs_total / 1e9, paper['gmacs'])})",
        )
    if "reported_params" in paper:
        table.add_row(
            "paper as printed",
            str(paper["reported_params"]),
            f"{paper.get('reported_gflops', '-')} GFLOPs (=MACs/2^30)",
        )
        if report.paper_gflops is not None:
            table.add_row(
                "ours in the paper's unit",
                f"{report.params_total / 1e6:.2f}M",
                f"{report.paper_gflops:.2f} GFLOPs",
            )
    return table


def show_static(console: Console, job: ProfileJob) -> None:
    size = job.size
    console.print(
        render(job.report, escape(f"{job.title} — input {size[0]}x{size[1]}, {job.device}"))
    )


def show_timing(console: Console, job: ProfileJob) -> None:
    report = job.report
    if report.latency_ms is None:
        return
    console.print(
        f"forward bs1: [bold]{report.latency_ms:.1f} ms[/]   train step bs{report.batch_size}: "
        f"[bold]{report.train_step_ms:.1f} ms[/] ({report.train_images_per_s:.1f} img/s)   "
        f"peak memory: {report.peak_memory_mb:.0f} MiB ({report.memory_kind})"
        + ("   [dim]channels_last[/]" if job.opts.channels_last else "")
    )
