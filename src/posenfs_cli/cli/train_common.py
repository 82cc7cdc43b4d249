"""What ``posenfs search`` and ``posenfs train`` share: flags -> recipe, the run, the summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from posenfs_cli.cli.common import console, fail, resolve_device_option
from posenfs_cli.config import (
    Recipe,
    apply_overrides,
    find_recipe,
    load_recipe,
    parse_input_size,
    validate_recipe,
)
from posenfs_cli.engine import run as runfiles
from posenfs_cli.errors import PosenfsError

if TYPE_CHECKING:  # typing only: the CLI imports torch-heavy modules lazily
    from posenfs_cli.nas.genotype import Genotype

DEFAULT_RECIPE = "synthetic/quick"
# With no --recipe, --dataset picks the paper's setting for that dataset (Tab II / Tab VII).
DATASET_RECIPES = {
    "synthetic": DEFAULT_RECIPE,
    "mpii": "mpii/mbv2_p3_h1_c10_256",
    "coco": "coco/mbv2_p3_h1_c16_nozero_384x288",
}


def resolve_recipe_path(text: str) -> Path:
    """A path, or a shipped recipe name (``synthetic/quick`` or ``mpii/mbv2_p3_h1_c10_256``)."""
    if Path(text).is_dir():
        raise PosenfsError(f"--recipe {text} is a folder; give a recipe YAML file or name")
    return find_recipe(text)


def flag_overrides(**flags: Any) -> list[str]:
    """Map CLI flags onto recipe keys; None means 'not given'."""
    keys = {
        "dataset": "data.dataset",
        "data_root": "data.root",
        "keypoints": "data.keypoints",
        "strategy": "train.strategy",
        "epochs": "train.epochs",
        "batch_size": "train.batch_size",
        "lr": "train.lr",
        "arch_lr": "train.arch_lr",
        "arch_lr_decay": "train.arch_lr_decay",
        "parts": "model.parts",
        "backbone": "model.backbone",
        "workers": "data.workers",
        "seed": "train.seed",
        "val_every": "train.val_every",
        "grad_clip": "train.grad_clip",
        "amp": "train.amp",
        "pretrained": "model.pretrained",
        "compile": "train.compile",
    }
    out = []
    for name, value in flags.items():
        if value is None:
            continue
        if name == "input_size":
            h, w = parse_input_size(value)
            out.append(f"data.input_size=[{h},{w}]")
            continue
        if name == "pretrained" and str(value).strip().lower() in ("none", "null", ""):
            value = "null"
        v = str(value).lower() if isinstance(value, bool) else value
        out.append(f"{keys[name]}={v}")
    return out


def default_recipe(dataset: str | None) -> str:
    return DATASET_RECIPES.get((dataset or "synthetic").lower(), DEFAULT_RECIPE)


def build_recipe(recipe: str | None, flags: dict[str, Any], sets: list[str]) -> Recipe:
    rec = load_recipe(resolve_recipe_path(recipe or default_recipe(flags.get("dataset"))))
    rec = apply_overrides(rec, flag_overrides(**flags) + list(sets))
    if rec.data.dataset == "coco" and rec.data.keypoints != "coco":
        rec = apply_overrides(rec, ["data.keypoints=coco"])
    if rec.data.dataset == "mpii" and rec.data.keypoints != "mpii":
        rec = apply_overrides(rec, ["data.keypoints=mpii"])
    return validate_recipe(rec)


def summary_table(
    recipe: Recipe, command: str, strategy: str, run_dir: Path, device: str, world: int
) -> Table:
    m, d, t = recipe.model, recipe.data, recipe.train
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan")
    table.add_column()
    bb = (
        m.backbone
        if m.backbone != "fabric"
        else (
            f"fabric L={m.fabric.layers} C={m.fabric.channels} H={m.fabric.hidden} "
            f"kept={m.fabric.kept}"
        )
    )
    table.add_row("command", Text(f"{command} ({strategy}), recipe {recipe.name}"))
    if m.head == "branchnet":
        head = f"Branchnet W={m.branchnet.width} D={m.branchnet.depth}"
    elif m.head == "deconv":
        head = f"deconv {m.deconv.layers}x{m.deconv.channels}"
    else:
        head = f"H={m.hidden}, C={m.channels}, L={m.layers} cut {m.cut}"
    table.add_row("model", Text(f"{bb}; P={m.parts}, {head}, d={m.vector_dim}"))
    root = f" at {d.root}" if d.root else " (in memory)"
    table.add_row(
        "data",
        Text(
            f"{d.dataset} ({d.keypoints}){root}, input {d.input_size[0]}x"
            f"{d.input_size[1]}, {d.workers} workers"
        ),
    )
    sched = f"x{t.lr_factor} at {t.lr_steps}" if t.lr_steps else "constant"
    table.add_row(
        "train",
        Text(
            f"{t.epochs} epochs, batch {t.batch_size}"
            f"{f' x {world} ranks' if world > 1 else ''}, Adam lr {t.lr} ({sched})"
        ),
    )
    table.add_row("device", Text(device))
    table.add_row("run folder", Text(str(run_dir)))
    return table


def final_table(history: list[dict[str, Any]], best_epoch: int | None) -> Table | None:
    rows = [r for r in history if "pckh_columns" in r or "ap" in r]
    if not rows:
        return None
    best = next((r for r in rows if r["epoch"] == best_epoch), rows[-1])
    table = Table(title=f"validation (best epoch {best['epoch']})", title_justify="left")
    if "pckh_columns" in best:
        cols = {k.replace(" (HRNet-compatible)", "*"): v for k, v in best["pckh_columns"].items()}
        table.caption = "* Mean@0.11: what HRNet's code prints as 'Mean@0.1'"
        for name in cols:
            table.add_column(name, justify="right")
        table.add_row(*[f"{v:.2f}" for v in cols.values()])
    else:
        names = ["ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl"]
        for n in names:
            table.add_column(n.upper(), justify="right")
        table.add_row(*[f"{best.get(n, float('nan')):.3f}" for n in names])
    return table


def run_training(
    ctx: typer.Context,
    command: str,
    recipe: Recipe | None,
    resume: Path | None,
    name: str | None,
    project: Path,
    exist_ok: bool,
    device: str | None,
    progress: bool,
    genotype: Genotype | None = None,
    from_checkpoint: Path | None = None,
) -> None:
    from posenfs_cli.engine import distributed
    from posenfs_cli.engine.trainer import check_command

    run_dir: Path | None = None
    if resume is not None:
        run_dir = resume = runfiles.check_run_dir(resume)
        recipe = load_recipe(run_dir / runfiles.CONFIG)
    assert recipe is not None
    check_command(recipe, command)  # before a run folder exists
    timeout = recipe.train.dist_timeout_s  # also the collective timeout of the group
    try:
        with distributed.session(resolve_device_option(ctx, device), timeout) as (dist, dev):
            if resume is None:
                # one folder for the whole job: after an elastic restart, the one it started
                folder, again = distributed.shared_run_dir(
                    dist,
                    lambda: runfiles.pick_run_dir(project, command, name, exist_ok),
                    command,
                )
                run_dir = Path(folder)
                if again and (run_dir / runfiles.TRAIN_STATE).is_file():
                    resume = run_dir
                    recipe = load_recipe(run_dir / runfiles.CONFIG)
            assert run_dir is not None  # set by --resume or by shared_run_dir above
            _train(command, recipe, run_dir, resume, dev, dist, progress, genotype, from_checkpoint)
    except distributed.RankFailed as exc:
        if not exc.report:
            raise typer.Exit(exc.exit_code) from None
        if exc.details and run_dir is not None and run_dir.is_dir():
            runfiles.RunFiles(run_dir).log(exc.details)
        fail(str(exc), exc.exit_code)


def _train(
    command: str,
    recipe: Recipe,
    run_dir: Path,
    resume: Path | None,
    dev: Any,
    dist: Any,
    progress: bool,
    genotype: Genotype | None,
    from_checkpoint: Path | None,
) -> None:
    from posenfs_cli.engine.trainer import Trainer, TrainOptions

    strategy = recipe.train.strategy if command == "search" else "fixed architecture"
    opts = TrainOptions(
        command=command,
        run_dir=run_dir,
        device=dev,
        dist=dist,
        resume=resume is not None,
        genotype=genotype,
        from_checkpoint=from_checkpoint,
        progress=progress,
        console=console,
    )
    trainer = Trainer(recipe, opts)
    try:
        trainer.setup()
        if dist.is_main:
            console.print(
                summary_table(trainer.recipe, command, strategy, run_dir, str(dev), dist.world_size)
            )
            if resume is not None:
                console.print(f"resuming after epoch {trainer.start_epoch}")
        trainer.fit()
        if dist.is_main:
            table = final_table(trainer.history, trainer.best_epoch)
            if table is not None:
                console.print(table)
            console.print(f"[bold green]done.[/] results in [bold]{escape(str(run_dir))}[/]")
            for f in (runfiles.BEST, runfiles.LAST, runfiles.METRICS, "genotypes/"):
                if (run_dir / f).exists():
                    console.print(f"  {escape(str(run_dir / f))}")
    finally:
        trainer.close()


# Options shared by `search` and `train` (Typer reads these OptionInfo defaults per command).
O_RECIPE = typer.Option(
    None,
    "--recipe",
    "-r",
    help=f"Recipe YAML or shipped name (e.g. synthetic/tiny) [default: {DEFAULT_RECIPE}; "
    "with --dataset mpii or coco, the paper's MobileNetV2 recipe for it].",
)
O_DATASET = typer.Option(None, "--dataset", help="synthetic | mpii | coco.")
O_DATA_ROOT = typer.Option(None, "--data-root", help="Dataset folder (see README: data layouts).")
O_EPOCHS = typer.Option(None, "--epochs", help="Number of epochs.")
O_BATCH = typer.Option(None, "--batch-size", "-b", help="Batch size (per process).")
O_LR = typer.Option(None, "--lr", help="Weight learning rate (Adam).")
O_INPUT = typer.Option(None, "--input-size", help="N or HxW, e.g. 256 or 384x288.")
O_PARTS = typer.Option(None, "--parts", help="1 | 3 | 5 | 8 | random | custom.")
O_BACKBONE = typer.Option(None, "--backbone", help="mobilenet_v2 | resnet50 | hrnet_w32 | fabric.")
O_WORKERS = typer.Option(None, "--workers", "-j", help="Data-loading worker processes.")
O_SEED = typer.Option(None, "--seed", help="Seed (data order, augmentation, random arch).")
O_VAL_EVERY = typer.Option(None, "--val-every", help="Validate every N epochs.")
O_GRAD_CLIP = typer.Option(None, "--grad-clip", help="Clip the gradient norm (0: off).")
O_AMP = typer.Option(None, "--amp", help="auto | bf16 | fp16 | off (auto: bf16 on CUDA).")
O_PRETRAINED = typer.Option(
    None,
    "--pretrained",
    help="Backbone initialisation: imagenet (downloaded once, see README), a weights file, "
    "or none [default: the recipe's].",
)
O_COMPILE = typer.Option(
    None,
    "--compile",
    help="auto | on | off: torch.compile the model (auto: CUDA runs of >= 5000 steps).",
)
O_SET = typer.Option([], "--set", help="Override any recipe key: key.path=value (repeatable).")
O_NAME = typer.Option(None, "--name", help="Run name (auto-incremented if it exists).")
O_PROJECT = typer.Option(Path("runs"), "--project", help="Parent folder of run folders.")
O_EXIST_OK = typer.Option(False, "--exist-ok", help="Reuse runs/<cmd>/<name> if it exists.")
O_RESUME = typer.Option(None, "--resume", help="Continue the run in this folder exactly.")
O_DEVICE = typer.Option(None, "--device", help="auto | cpu | cuda[:N].")
O_PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")
