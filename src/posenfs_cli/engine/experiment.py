"""Experiments: several recipes (or variants of one) × seeds, resumable, summarised.

An experiment is either a list of recipes (one run each) or a YAML file::

    name: parts                  # folder name under <project>/experiment/
    description: P=1 vs 3 vs 5 on the synthetic quick recipe
    estimated_cpu_time: 3 h      # informational
    seeds: [0, 1, 2]
    recipe: synthetic/quick      # default recipe of every run
    set: [train.epochs=10]       # overrides for every run
    runs:
      - name: p1
        set: [model.parts=1]
      - name: branchnet
        recipe: synthetic/quick
        command: train           # default: search for model.head=cnf, train otherwise
        set: [model.head=branchnet]

Run ``r`` with seed ``s`` goes to ``<project>/experiment/<name>/<r>-s<s>/`` (a normal run
folder, ``train.seed = s``). Running the same experiment again continues it: a run with
``done.json`` is skipped, a run with a checkpoint is resumed through the trainer's ``--resume``
machinery (bit-identical on CPU), a run folder without any finished epoch starts over. Then
``summary.md`` / ``summary.json`` (mean ± std over seeds) and ``curves.png`` are written. The
accuracy, wall time and images/s numbers come from each run's own ``metrics.jsonl``; params and
GFLOPs from its final model (``done.json``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import yaml
from rich.console import Console

from posenfs_cli.config import (
    SEED_MAX,
    ConfigError,
    Recipe,
    apply_overrides,
    check_seed,
    load_recipe,
    recipe_to_yaml,
)
from posenfs_cli.engine import run as runfiles
from posenfs_cli.errors import PosenfsError

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PoseNet

DONE = "done.json"
SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
CURVES_PNG = "curves.png"
PLAN = "experiment.yaml"
COMMANDS = ("search", "train")
# Fault injection for tests: SIGKILL this process after this many epochs (checkpoints written).
KILL_ENV = "POSENFS_FAULT_KILL_AFTER_EPOCHS"


@dataclass
class RunSpec:
    name: str
    recipe: str
    overrides: list[str] = field(default_factory=list)
    command: str | None = None  # None: search for a CNF head, train for a baseline head


@dataclass
class Experiment:
    name: str
    seeds: list[int]
    runs: list[RunSpec]
    description: str = ""
    estimated_cpu_time: str = ""


@dataclass
class PlannedRun:
    spec: RunSpec
    seed: int
    recipe: Recipe
    command: str

    @property
    def folder(self) -> str:
        return f"{self.spec.name}-s{self.seed}"


# Every seed is one whole run: a longer list is a typo (0-4294967295), not an experiment.
MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; '0-4' -> [0, 1, 2, 3, 4]; each in [0, 2**63 - 1]."""
    ranges: list[tuple[int, int]] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if "-" in part[1:]:
                first, last = part.split("-", 1) if part[0] != "-" else (part, part)
                ranges.append((int(first), int(last)))
            else:
                ranges.append((int(part), int(part)))
    except ValueError as exc:
        raise PosenfsError(f"--seeds {text!r} must look like 0,1,2 or 0-4") from exc
    for lo, hi in ranges:
        for seed in (lo, hi):
            if not 0 <= seed <= SEED_MAX:
                raise PosenfsError(
                    f"--seeds {text!r}: a seed must be an integer in [0, {SEED_MAX}], got {seed}"
                )
    count = sum(max(0, hi - lo + 1) for lo, hi in ranges)
    if count > MAX_SEEDS:
        raise PosenfsError(
            f"--seeds {text!r} lists {count} seeds (one run each); at most {MAX_SEEDS}"
        )
    seeds = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    if not seeds:
        raise PosenfsError(f"--seeds {text!r} lists no seed")
    if len(set(seeds)) != len(seeds):
        raise PosenfsError(f"--seeds {text!r} repeats a seed")
    return seeds


def _resolve_path(text: str) -> Path:
    # The one place recipes are looked up by name (shared with `posenfs search/train`).
    from posenfs_cli.engine.train_run import resolve_recipe_path

    return resolve_recipe_path(text)


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PosenfsError(f"{where} must be a list of key.path=value strings")
    return list(value)


def is_experiment_file(path: Path) -> bool:
    """A YAML mapping with a ``runs`` list (a recipe never has one)."""
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "runs" in data


def load_experiment(path: str | Path) -> Experiment:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise PosenfsError(f"experiment {p} is not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not data["runs"]:
        raise PosenfsError(f"experiment {p} needs a non-empty 'runs' list")
    known = {"name", "description", "estimated_cpu_time", "seeds", "recipe", "set", "runs"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PosenfsError(f"experiment {p}: unknown key {unknown[0]} (known: {sorted(known)})")
    default_recipe = data.get("recipe")
    common = _str_list(data.get("set"), f"experiment {p}: set")
    runs = []
    for i, entry in enumerate(data["runs"]):
        where = f"experiment {p}: runs[{i}]"
        if not isinstance(entry, dict):
            raise PosenfsError(f"{where} must be a mapping with name, recipe, set, command")
        bad = sorted(set(entry) - {"name", "recipe", "set", "command"})
        if bad:
            raise PosenfsError(f"{where}: unknown key {bad[0]} (known: command, name, recipe, set)")
        recipe = entry.get("recipe", default_recipe)
        if not recipe:
            raise PosenfsError(f"{where} has no recipe (and the experiment sets no default)")
        name = str(entry.get("name") or Path(str(recipe)).stem)
        beside = p.parent / str(recipe)
        if not Path(str(recipe)).is_absolute() and beside.is_file():
            recipe = str(beside)  # a recipe path relative to the experiment file
        runs.append(
            RunSpec(
                name=name,
                recipe=str(recipe),
                overrides=common + _str_list(entry.get("set"), f"{where}.set"),
                command=entry.get("command"),
            )
        )
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise PosenfsError(f"experiment {p}: seeds must be a list of integers")
    for seed in seeds:
        try:
            check_seed(seed, "seeds")
        except ConfigError as exc:
            raise PosenfsError(f"experiment {p}: {exc}") from exc
    return Experiment(
        name=str(data.get("name") or p.stem),
        seeds=list(seeds),
        runs=runs,
        description=str(data.get("description") or ""),
        estimated_cpu_time=str(data.get("estimated_cpu_time") or ""),
    )


def experiment_from_args(
    sources: list[str], seeds: list[int] | None, name: str | None, overrides: list[str]
) -> Experiment:
    """One experiment file, or recipes (paths or names under recipes/), one run each."""
    if not sources:
        raise PosenfsError("give recipes (paths or names under recipes/) or one experiment YAML")
    paths = [_resolve_path(s) for s in sources]
    files = [p for p in paths if is_experiment_file(p)]
    if files:
        if len(paths) > 1:
            raise PosenfsError(
                f"{files[0]} is an experiment file: give it alone (not with other recipes)"
            )
        exp = load_experiment(files[0])
        for r in exp.runs:
            r.overrides = r.overrides + list(overrides)
    else:
        runs = [RunSpec(p.stem, str(p), list(overrides)) for p in paths]
        exp = Experiment(name=name or "exp", seeds=[0], runs=runs)
    if name is not None:
        exp.name = runfiles.check_run_name(name)
    else:
        runfiles.check_run_name(exp.name, "the experiment name")
    for r in exp.runs:
        runfiles.check_run_name(r.name, "run name")
    if seeds is not None:
        exp.seeds = seeds
    names = [r.name for r in exp.runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PosenfsError(f"two runs are named {dup[0]!r}; give each run its own name")
    return exp


def _normalise(rec: Recipe) -> Recipe:
    from posenfs_cli.engine.train_run import own_layout

    return own_layout(rec)  # as `posenfs search/train` do


def plan_runs(exp: Experiment) -> list[PlannedRun]:
    """Every (run, seed) with its resolved recipe; all user mistakes surface here, first."""
    from posenfs_cli.engine.trainer import check_command
    from posenfs_cli.models.backbones import backbone_names
    from posenfs_cli.models.build import validate_model_config
    from posenfs_cli.validation import validate

    planned = []
    for spec in exp.runs:
        base = load_recipe(_resolve_path(spec.recipe))
        try:
            rec = apply_overrides(base, spec.overrides)
        except ConfigError as exc:
            raise PosenfsError(f"run {spec.name}: {exc}") from exc
        command = spec.command or ("search" if rec.model.head == "cnf" else "train")
        if command not in COMMANDS:
            raise PosenfsError(f"run {spec.name}: command must be search or train, not {command}")
        check_command(rec, command)
        validate_model_config(rec.model)
        if rec.model.backbone != "fabric" and rec.model.backbone not in backbone_names():
            raise PosenfsError(f"run {spec.name}: unknown backbone {rec.model.backbone!r}")
        if rec.train.epochs < 1 or rec.train.batch_size < 1:
            raise PosenfsError(f"run {spec.name}: epochs and batch size must be >= 1")
        for seed in exp.seeds:
            seeded = _normalise(apply_overrides(rec, [f"train.seed={seed}"]))
            seeded.name = spec.name
            try:  # the rules search/train check, before the experiment's folder exists
                validate(seeded)
            except ConfigError as exc:
                raise PosenfsError(f"run {spec.name}: {exc}") from exc
            planned.append(PlannedRun(spec, seed, seeded, command))
    return planned


# --- one run -----------------------------------------------------------------------------
def run_state(run_dir: Path) -> str:
    """'done', 'resume' (a finished epoch to continue from), 'partial' (none) or 'new'."""
    if (run_dir / DONE).is_file():
        return "done"
    if all((run_dir / f).is_file() for f in (runfiles.CONFIG, runfiles.TRAIN_STATE, runfiles.LAST)):
        return "resume"
    return "partial" if run_dir.exists() else "new"


def _check_same_config(run_dir: Path, recipe: Recipe) -> None:
    cfg = run_dir / runfiles.CONFIG
    if not cfg.is_file():
        return
    try:  # read through today's schema: a key added since (at its default) is no difference
        same = recipe_to_yaml(load_recipe(cfg)) == recipe_to_yaml(recipe)
    except ConfigError:
        same = False
    if not same:
        raise PosenfsError(
            f"{run_dir} was started with another configuration than this experiment now asks "
            "for; give the experiment another --name (or delete that folder)"
        )


def model_sizes(model: torch.nn.Module, input_size: list[int]) -> dict[str, Any]:
    """Params (no α/β), conv MACs / 1e9, and the papers' GFLOPs (MACs / 2^30, deconvs by output)."""
    from posenfs_cli.models.size import count_params
    from posenfs_cli.profiling import conv_macs

    model = getattr(model, "module", model)
    device = next(model.parameters()).device
    size = list(input_size)
    macs = conv_macs(cast("PoseNet", model), size, device).total
    paper = conv_macs(cast("PoseNet", model), size, device, transpose_by_output=True).total
    return {
        "params": count_params(cast("PoseNet", model)).total,
        "gmacs": macs / 1e9,
        "gflops_paper": paper / 2**30,
        "input_size": size,
    }


class _KillSwitch:
    """Fault injection (tests): SIGKILL after N epochs, once their checkpoints are on disk."""

    def __init__(self) -> None:
        raw = os.environ.get(KILL_ENV)
        self.left = int(raw) if raw else None

    def __call__(self, _row: dict[str, Any]) -> None:
        if self.left is None:
            return
        self.left -= 1
        if self.left <= 0:
            os.kill(os.getpid(), signal.SIGKILL)


def train_one(
    run: PlannedRun,
    run_dir: Path,
    device: torch.device,
    resume: bool,
    progress: bool,
    console: Console,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    from posenfs_cli.engine.trainer import Trainer, TrainOptions

    if resume:
        _check_same_config(run_dir, run.recipe)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    opts = TrainOptions(
        command=run.command,
        run_dir=run_dir,
        device=device,
        resume=resume,
        progress=progress,
        console=console,
    )
    trainer = Trainer(run.recipe, opts)
    trainer.setup()
    trainer.fit(on_epoch=on_epoch)
    done = {
        "run": run.spec.name,
        "seed": run.seed,
        "command": run.command,
        "recipe": run.spec.recipe,
        "overrides": run.spec.overrides,
        "resumed": resume,
        "session_wall_s": time.perf_counter() - t0,
        **model_sizes(trainer.model, run.recipe.data.input_size),
    }
    (run_dir / DONE).write_text(json.dumps(done, indent=2) + "\n")
    return done


# --- summary -----------------------------------------------------------------------------
def run_numbers(run_dir: Path) -> dict[str, Any]:
    """One run's summary numbers, from its own metrics.jsonl (and done.json for sizes).

    Accuracy is the best validation epoch's (the epoch of ``best.safetensors``: the first
    maximum of PCKh@0.5 or AP); wall time is the sum of the epochs' ``time_s`` (train + val),
    images/s the mean of the epochs' training throughput.
    """
    rows = runfiles.read_metrics(run_dir)
    main = next((k for k in ("pckh", "ap") if any(k in r for r in rows)), None)
    out: dict[str, Any] = {"epochs": rows[-1].get("epoch", len(rows))}
    if main is not None:
        scored = [r for r in rows if main in r]
        best = scored[0]
        for r in scored[1:]:
            if r[main] > best[main]:
                best = r
        out["best_epoch"] = best["epoch"]
        keys = ("pckh", "pckh@0.1") if main == "pckh" else ("ap", "ap50", "ap75")
        out.update({k: best[k] for k in keys if k in best})
    out["wall_time_s"] = sum(float(r.get("time_s", 0.0)) for r in rows)
    ips = [float(r["images_per_s"]) for r in rows if "images_per_s" in r]
    out["images_per_s"] = sum(ips) / len(ips) if ips else math.nan
    done = json.loads((run_dir / DONE).read_text()) if (run_dir / DONE).is_file() else {}
    for k in ("params", "gmacs", "gflops_paper"):
        if k in done:
            out[k] = done[k]
    return out


COLUMNS = [
    # key, header, format
    ("pckh", "PCKh@0.5", "{:.2f}"),
    ("pckh@0.1", "PCKh@0.1", "{:.2f}"),
    ("ap", "AP", "{:.4f}"),
    ("ap50", "AP50", "{:.4f}"),
    ("params", "params (M)", "{:.3f}"),
    ("gmacs", "GMACs", "{:.3f}"),
    ("gflops_paper", "GFLOPs (paper unit)", "{:.3f}"),
    ("wall_time_s", "wall time (s)", "{:.1f}"),
    ("images_per_s", "images/s", "{:.1f}"),
]
_SCALE = {"params": 1e-6}


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n-1); None for a single seed, which has no spread
    to report (a 0 would read as a measured one)."""
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else None)


def summarise(exp: Experiment, root: Path, planned: list[PlannedRun]) -> dict[str, Any]:
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for run in planned:
        groups.setdefault(run.spec.name, []).append((run.seed, run_numbers(root / run.folder)))
    table = {}
    for name, items in groups.items():
        stats: dict[str, Any] = {}
        for key, _, _ in COLUMNS:
            vals = [nums[key] for _, nums in items if isinstance(nums.get(key), int | float)]
            if len(vals) == len(items):
                m, s = mean_std([float(v) for v in vals])
                stats[key] = {"mean": m, "std": s}
        table[name] = {"seeds": [s for s, _ in items], "stats": stats, "runs": dict(items)}
    return {"name": exp.name, "description": exp.description, "groups": table}


def _cell(key: str, value: float, fmt: str) -> str:
    return fmt.format(value * _SCALE.get(key, 1.0))


def _mean_std_cell(key: str, st: dict[str, Any] | None, fmt: str) -> str:
    if st is None:
        return "-"
    if st["std"] is None:
        return _cell(key, st["mean"], fmt)
    return f"{_cell(key, st['mean'], fmt)} ± {_cell(key, st['std'], fmt)}"


def render_summary_md(exp: Experiment, summary: dict[str, Any], planned: list[PlannedRun]) -> str:
    groups = summary["groups"]
    keys = [(k, h, f) for k, h, f in COLUMNS if any(k in g["stats"] for g in groups.values())]
    lines = [f"# Experiment {exp.name}", ""]
    if exp.description:
        lines += [exp.description, ""]
    seeds = ", ".join(str(s) for s in exp.seeds)
    lines += [
        f"Seeds: {seeds}. "
        + ("Mean ± sample std over seeds. " if len(exp.seeds) > 1 else "One seed: no spread. ")
        + "Accuracy: the best validation epoch of "
        "each run (its best.safetensors); wall time: sum of the epochs' time_s (train + val); "
        "images/s: mean training throughput; all from each run's metrics.jsonl. GMACs: conv MACs "
        "/ 1e9; GFLOPs (paper unit): conv MACs / 2^30 (deconvs by output pixels).",
        "",
        "| run | command | n | " + " | ".join(h for _, h, _ in keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    commands = {r.spec.name: r.command for r in planned}
    for name, g in groups.items():
        cells = []
        for k, _, f in keys:
            st = g["stats"].get(k)
            cells.append(_mean_std_cell(k, st, f))
        lines.append(
            f"| {name} | {commands[name]} | {len(g['seeds'])} | " + " | ".join(cells) + " |"
        )
    lines += ["", "## Per run", ""]
    lines += [
        "| run folder | best epoch | " + " | ".join(h for _, h, _ in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for name, g in groups.items():
        for seed, nums in g["runs"].items():
            cells = [
                _cell(k, nums[k], f) if isinstance(nums.get(k), int | float) else "-"
                for k, _, f in keys
            ]
            lines.append(
                f"| {name}-s{seed} | {nums.get('best_epoch', '-')} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def write_curves(root: Path, planned: list[PlannedRun]) -> Path | None:
    """Mean-over-seeds curves of every run on one PNG (vis/curves.py)."""
    import cv2

    from posenfs_cli.vis.curves import plot_curves

    by_name: dict[str, list[list[dict[str, Any]]]] = {}
    for run in planned:
        by_name.setdefault(run.spec.name, []).append(runfiles.read_metrics(root / run.folder))
    series = []
    for name, all_rows in by_name.items():
        n = min(len(rows) for rows in all_rows)
        mean_rows = []
        for i in range(n):
            row: dict[str, Any] = {"epoch": all_rows[0][i].get("epoch", i + 1)}
            for key in ("train_loss", "val_loss", "pckh", "pckh@0.1", "ap"):
                vals = [r[i].get(key) for r in all_rows]
                if all(isinstance(v, int | float) for v in vals):
                    row[key] = statistics.fmean(cast("list[float]", vals))
            mean_rows.append(row)
        series.append((f"{name} (mean of {len(all_rows)})", mean_rows))
    keys = ("train_loss", "val_loss", "pckh", "pckh@0.1", "ap")
    try:
        img = plot_curves(series, keys)
    except PosenfsError:
        return None
    out = root / CURVES_PNG
    cv2.imwrite(str(out), img)
    return out


# --- the experiment ------------------------------------------------------------------------
@dataclass
class ExperimentResult:
    root: Path
    ran: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    summary_md: Path | None = None
    curves_png: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def run_experiment(
    exp: Experiment,
    project: Path,
    device: torch.device,
    progress: bool = True,
    console: Console | None = None,
    announce: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Run (or continue) every run × seed, then write summary.md, summary.json and curves.png."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise PosenfsError(
            "posenfs experiment runs its runs one after another in one process; start it "
            "without torchrun (use torchrun with posenfs search/train for one big run)"
        )
    console = console or Console(emoji=False)
    say = announce or (lambda _text: None)
    planned = plan_runs(exp)  # every user mistake before anything is written
    root = Path(project) / "experiment" / exp.name
    for run in planned:
        if run_state(root / run.folder) in ("done", "resume"):
            _check_same_config(root / run.folder, run.recipe)
    root.mkdir(parents=True, exist_ok=True)
    (root / PLAN).write_text(
        yaml.safe_dump(
            {
                **{k: v for k, v in asdict(exp).items() if k != "runs"},
                "runs": [asdict(r) for r in exp.runs],
            },
            sort_keys=False,
        )
    )
    result = ExperimentResult(root=root)
    kill = _KillSwitch()
    for i, run in enumerate(planned, 1):
        run_dir = root / run.folder
        state = run_state(run_dir)
        tag = f"[{i}/{len(planned)}] {run.folder} ({run.command})"
        if state == "done":
            say(f"{tag}: finished earlier, kept")
            result.skipped.append(run.folder)
            continue
        if state == "partial":
            say(f"{tag}: no finished epoch in the old folder, starting over")
            shutil.rmtree(run_dir)
            result.restarted.append(run.folder)
        say(f"{tag}: {'resuming' if state == 'resume' else 'starting'}")
        train_one(run, run_dir, device, state == "resume", progress, console, on_epoch=kill)
        (result.resumed if state == "resume" else result.ran).append(run.folder)
    result.summary = summarise(exp, root, planned)
    (root / SUMMARY_JSON).write_text(json.dumps(result.summary, indent=2) + "\n")
    result.summary_md = root / SUMMARY_MD
    result.summary_md.write_text(render_summary_md(exp, result.summary, planned))
    result.curves_png = write_curves(root, planned)
    return result
