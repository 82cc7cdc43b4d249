"""The training loop shared by ``posenfs search`` and ``posenfs train``.

Epochs × batches with the recipe's schedule; a strategy decides what one step updates. Each
epoch ends with (optional) validation, one ``metrics.jsonl`` line, the genotype, and atomic
checkpoints: ``last``, ``best`` and ``last.train`` (optimisers, epoch, RNG states). Data order
and augmentation are functions of (seed, epoch, index), so ``--resume`` after a crash continues
bit-identically on CPU.

``last.train.safetensors`` is the commit point: it is written last, by one atomic rename, and
holds everything a resume reads (weights, genotype, optimisers, RNG, epoch, command and
strategy). Whatever an interrupted save wrote before it (metrics line, ``last``, ``best``,
genotype) belongs to an epoch the resume redoes and rewrites, so a kill at any point of the
save sequence can never pair weights of one epoch with optimiser/RNG state of another.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.utils.data import DistributedSampler, Subset

from posenfs_cli.config import Recipe
from posenfs_cli.data.build import build_dataset, build_loader
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.device import maybe_compile, tune_backend
from posenfs_cli.engine import run as runfiles
from posenfs_cli.engine.checkpoint import (
    load_weights,
    read_checkpoint,
    save_checkpoint,
    state_tensors,
)
from posenfs_cli.engine.distributed import (
    DistInfo,
    all_reduce_mean,
    broadcast_buffers,
    fault_point,
    gather_objects,
)
from posenfs_cli.engine.state import (
    check_resume_kind,
    load_state,
    resume_kind,
    save_state,
    state_metadata,
)
from posenfs_cli.engine.strategies import STRATEGIES, Strategy, make_strategy
from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.evaluator import Predictions, predict, score
from posenfs_cli.models.build import build_model
from posenfs_cli.models.loss import pose_loss
from posenfs_cli.models.posenet import PoseNet
from posenfs_cli.nas.genotype import (
    Genotype,
    apply_genotype,
    check_genotype_layout,
    model_genotype,
    prune_specs,
    save_genotype,
)
from posenfs_cli.validation import validate


class NonFiniteLoss(PosenfsError):
    pass


@dataclass
class TrainOptions:
    command: str  # "search" | "train"
    run_dir: Path
    device: torch.device
    dist: DistInfo = DistInfo()
    resume: bool = False
    genotype: Genotype | None = None  # train: fixed architecture
    from_checkpoint: Path | None = None  # train: architecture (and structure) of a checkpoint
    progress: bool = True
    console: Console | None = None


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA when supported (fp16 otherwise); off on CPU unless asked for."""
    if mode in ("off", "none", "false"):
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if mode not in ("auto", "on", "true"):
        raise PosenfsError(f"train.amp must be auto, bf16, fp16 or off; got {mode!r}")
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_heldout(n: int, seed: int) -> tuple[list[int], list[int]]:
    """DARTS: a seeded half of train for weights, the other half held out for α/β."""
    perm = np.random.default_rng(seed).permutation(n).tolist()
    half = n // 2
    return sorted(perm[half:]), sorted(perm[:half])


def check_command(recipe: Recipe, command: str) -> None:
    """``search`` needs α/β: a baseline head (``model.head`` ≠ cnf) has none."""
    head = recipe.model.head
    if command == "search" and head != "cnf":
        raise PosenfsError(
            f"model.head={head} has no architecture (α/β) to search; train it instead: "
            f"posenfs train --recipe <the same recipe>"
        )


class Trainer:
    def __init__(self, recipe: Recipe, opts: TrainOptions):
        validate(recipe)
        check_command(recipe, opts.command)
        self.recipe = recipe
        self.opts = opts
        self.cfg = recipe.train
        self.device = opts.device
        self.dist = opts.dist
        self.main = opts.dist.is_main
        self.console = opts.console or Console(emoji=False)
        self.files = runfiles.RunFiles(opts.run_dir) if self.main else None
        if opts.command == "search" and self.cfg.strategy not in STRATEGIES:
            raise PosenfsError(
                f"unknown strategy {self.cfg.strategy!r} (choose from {', '.join(STRATEGIES)})"
            )
        from posenfs_cli.nas.sparsity import check_sparsity

        check_sparsity(self.cfg.sparsity, self.cfg.sparsity_weight)
        self.layout = get_layout(recipe.data.keypoints)
        self.amp = amp_dtype(self.cfg.amp, self.device)
        self.channels_last = self.cfg.channels_last in ("auto", "on", "true")
        self.start_epoch = 0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []

    # --- logging ----------------------------------------------------------------------
    def log(self, text: str, style: str | None = None) -> None:
        if not self.main:
            return
        self.console.print(text, style=style, highlight=False)
        if self.files is not None:
            from rich.text import Text

            self.files.log(Text.from_markup(text).plain)

    # --- setup ------------------------------------------------------------------------
    def _build_model(self) -> PoseNet:
        rec = self.recipe
        prune = None
        if self.opts.from_checkpoint is not None:
            ckpt = read_checkpoint(self.opts.from_checkpoint)
            if ckpt.recipe.data.keypoints != rec.data.keypoints:
                raise PosenfsError(
                    f"--from {self.opts.from_checkpoint}: trained on {ckpt.recipe.data.keypoints}"
                    f" keypoints, this run uses {rec.data.keypoints}"
                )
            rec.model = ckpt.recipe.model  # the checkpoint's structure is the architecture
            prune = prune_specs(ckpt.genotype)
            self.opts.genotype = ckpt.genotype
        elif self.opts.genotype is not None:
            check_genotype_layout(self.opts.genotype, rec.data.keypoints)
            prune = prune_specs(self.opts.genotype)
        model = build_model(
            rec.model, self.layout, prune=prune, load_pretrained=not self.opts.resume
        )
        report = getattr(model.backbone, "pretrained_report", None)
        if report is not None:  # a pretrained load is never silent
            from rich.markup import escape

            for line in report.lines():
                self.log(escape(line))
        if self.opts.genotype is not None:
            apply_genotype(model, self.opts.genotype)
        return model

    def _datasets(self) -> None:
        data = self.recipe.data
        self.train_set = build_dataset(data, "train", train=True)
        self.train_set.seed = self.cfg.seed  # augmentation = f(seed, epoch, index)
        self.val_set = build_dataset(data, "val", train=False)
        self.weight_idx = list(range(len(self.train_set)))
        self.arch_idx: list[int] = []
        if self.strategy.needs_heldout:
            self.weight_idx, self.arch_idx = split_heldout(len(self.train_set), self.cfg.seed)
            if not self.arch_idx:
                raise PosenfsError("darts needs at least 2 training images (half is held out)")
        if len(self.weight_idx) < 1:
            raise PosenfsError("the training set is empty")

    def _loader(self, indices: list[int], epoch: int, salt: int, shuffle: bool, dataset=None):
        ds = Subset(dataset or self.train_set, indices)
        sampler: DistributedSampler[Any] | None = None
        if self.dist.enabled:
            sampler = DistributedSampler(
                ds,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                shuffle=shuffle,
                seed=self.cfg.seed + salt,
            )
            sampler.set_epoch(epoch)
        # a fresh loader per epoch: its generator (order, worker seeds) depends on the epoch only
        return build_loader(
            ds,
            self.cfg.batch_size,
            shuffle=shuffle,
            workers=self.recipe.data.workers,
            seed=(self.cfg.seed * 1_000_003 + epoch * 7919 + salt) % 2**62,
            sampler=sampler,
            drop_last=shuffle and len(ds) > self.cfg.batch_size,
        )

    def _val_loader(self):
        ds = self.val_set
        sampler: DistributedSampler[Any] | None = None
        if self.dist.enabled:
            sampler = DistributedSampler(
                ds, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=False
            )
        return build_loader(
            ds,
            self.recipe.eval.batch_size,
            shuffle=False,
            workers=self.recipe.data.workers,
            seed=0,
            sampler=sampler,
        )

    def loss_fn(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, target, weight, _ = batch
        x = images.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = (
            torch.autocast(self.device.type, dtype=self.amp)
            if self.amp is not None
            else contextlib.nullcontext()
        )
        with ctx:
            pred = model(x)
        return pose_loss(pred.float(), target.to(self.device), weight.to(self.device))

    @property
    def strategy_name(self) -> str:
        return self.cfg.strategy if self.opts.command == "search" else "fixed"

    def setup(self) -> None:
        seed_everything(self.cfg.seed)
        resume_state = None
        if self.opts.resume:
            resume_state = self._read_resume_state()
            # the run's own (possibly pruned) structure and α/β, not the recipe's defaults
            self.opts.genotype = resume_state["genotype"]
            self.opts.from_checkpoint = None
        self.model = self._build_model().to(self.device)
        if self.channels_last:
            # Module.to(memory_format=...) is documented and works; torch's overloads omit it
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        tune_backend(self.device)
        name = self.strategy_name
        if name in ("random", "fixed"):  # freeze before DDP sees the parameters
            for p in self.model.arch_parameters():
                p.requires_grad_(False)
        net: nn.Module = self.model
        if self.dist.enabled:
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.net = net
        self.strategy: Strategy = make_strategy(name, net, self.cfg, self.loss_fn)
        if self.amp == torch.float16:
            self.strategy.scaler = torch.amp.GradScaler("cuda")
        from posenfs_cli.nas.sparsity import sparsity_penalty

        if self.cfg.sparsity != "none" and self.strategy.trains_arch:
            self.strategy.extra_loss = lambda: sparsity_penalty(
                self.model, self.cfg.sparsity, self.cfg.sparsity_weight
            )
        self._datasets()
        # in place, so DDP and the strategies call the compiled forward; auto weighs the run length
        steps = self.cfg.epochs * -(-len(self.weight_idx) // self.cfg.batch_size)
        self.compiled = maybe_compile(self.model, self.cfg.compile, self.device, "train", steps)
        if resume_state is not None:
            self._resume(resume_state)
        elif self.files is not None:  # inputs validated: only now does the folder appear
            removed = self.files.start(self.recipe)
            if removed:
                self.log(
                    f"[yellow]--exist-ok: removed the previous run's {len(removed)} result "
                    f"file(s) from {escape(str(self.opts.run_dir))}[/]"
                )

    def _read_resume_state(self) -> dict[str, Any]:
        """The committed state of the run; refuses a run of another command or strategy."""
        path = self.opts.run_dir / runfiles.TRAIN_STATE
        meta = state_metadata(path)
        check_resume_kind(path.parent, meta, self.opts.command, self.strategy_name)
        state = load_state(path)
        if "model" not in state:  # written before weights lived in the state: pair check
            ckpt = read_checkpoint(self.opts.run_dir / runfiles.LAST)
            if ckpt.epoch != int(state["epoch"]):
                raise PosenfsError(
                    f"--resume {self.opts.run_dir}: {runfiles.LAST} is from epoch {ckpt.epoch} "
                    f"but {runfiles.TRAIN_STATE} from epoch {state['epoch']} (a save was "
                    "interrupted); cannot continue exactly"
                )
            state["model"] = ckpt.tensors
            state["genotype"] = ckpt.genotype
        else:
            state["genotype"] = Genotype.from_json(
                state.get("genotype"), f"{path} (genotype)", allow_empty=True
            )
        return state

    def _resume(self, state: dict[str, Any]) -> None:
        load_weights(self.model, state["model"], self.opts.run_dir / runfiles.TRAIN_STATE)
        try:
            self.strategy.load_state_dict(state["optim"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise PosenfsError(
                f"--resume {self.opts.run_dir}: the optimiser state does not fit this run "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from exc
        self.start_epoch = int(state["epoch"])
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        set_rng_state(state["rng"])
        if self.files is not None:
            runfiles.remove_stale_temps(self.opts.run_dir)
            self.files.truncate_metrics(self.start_epoch)
            self.files.log(f"resumed after epoch {self.start_epoch}")

    def close(self) -> None:
        """Drop the DDP wrapper and the strategy (they hold the process group) and the loaders."""
        for name in ("strategy", "net", "train_set", "val_set"):
            self.__dict__.pop(name, None)

    # --- loop -------------------------------------------------------------------------
    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
            disable=not (self.main and self.opts.progress),
        )

    def train_epoch(self, epoch: int, progress: Progress) -> dict[str, float]:
        self.net.train()
        self.train_set.set_epoch(epoch)  # fresh augmentation each epoch, reproducible on resume
        loader = self._loader(self.weight_idx, epoch, 0, shuffle=True)
        arch_iter = None
        if self.strategy.needs_heldout:
            arch_iter = iter(self._loader(self.arch_idx, epoch, 1, shuffle=True))
        task = progress.add_task(f"epoch {epoch + 1}/{self.cfg.epochs}", total=len(loader), info="")
        total, count, seen, skipped, visible = 0.0, 0, 0, 0, 0.0
        t0 = time.perf_counter()
        for step, batch in enumerate(loader):
            arch_batch = None
            if arch_iter is not None:
                try:
                    arch_batch = next(arch_iter)
                except StopIteration:
                    arch_iter = iter(self._loader(self.arch_idx, epoch, 1 + step, shuffle=True))
                    arch_batch = next(arch_iter)
            fault_point(self.dist, epoch + 1, step + 1)  # test-only hook; no-op unless set
            loss = float(self.strategy.step(batch, arch_batch))
            if not math.isfinite(loss):
                raise NonFiniteLoss(
                    f"loss became {loss} at epoch {epoch + 1}, step {step + 1}; stopped. The last "
                    f"good checkpoint is {self.opts.run_dir / runfiles.LAST} (try a lower --lr or "
                    "--set train.grad_clip=1.0)"
                )
            n = batch[0].shape[0]
            skipped += int((~batch[3]["valid"]).sum())  # unreadable images replaced in workers
            visible += float(batch[2].sum())
            total += loss * n
            count += n
            seen += n
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=1, info=f"loss {total / count:.3e}  {rate:.1f} img/s")
        elapsed = time.perf_counter() - t0
        mean = all_reduce_mean(torch.tensor([total / max(count, 1), visible], dtype=torch.float64))
        out = {
            "train_loss": float(mean[0]),
            "train_time_s": elapsed,
            "images_per_s": seen * self.dist.world_size / max(elapsed, 1e-9),
        }
        if float(mean[1]) == 0.0:  # summed over ranks: no labelled joint anywhere
            self.log(
                f"[yellow]epoch {epoch + 1}: no training crop had a visible joint, so the loss "
                "is 0 and nothing was learned (are the keypoints outside their boxes/crops?)[/]"
            )
        if skipped:
            out["skipped_images"] = skipped
            self.log(
                f"[yellow]epoch {epoch + 1}: {skipped} unreadable image(s) were replaced by "
                "the next readable record[/]"
            )
        return out

    def validate(self) -> dict[str, Any]:
        loader = self._val_loader()
        preds = predict(
            self.model,
            loader,
            self.device,
            self.layout,
            flip=self.recipe.eval.flip,
            flip_shift=self.recipe.eval.flip_shift,
            amp_dtype=self.amp,
            channels_last=self.channels_last,
        )
        if self.dist.enabled:
            preds = Predictions.concat(gather_objects(preds))
        if not self.main:
            return {}
        metrics = score(
            preds,
            self.layout,
            self.val_set,
            self.recipe.eval.keypoint_score_threshold,
            self.recipe.eval.oks_nms_threshold,
        )
        metrics.pop("coco_results", None)
        return metrics

    def _arch_stats(self) -> dict[str, float]:
        from posenfs_cli.nas.sparsity import arch_entropy

        return {k: float(v) for k, v in arch_entropy(self.model).items()}

    def _save(self, epoch: int, row: dict[str, Any], is_best: bool) -> None:
        if self.files is None:
            return
        run = self.opts.run_dir
        metrics = {k: v for k, v in row.items() if not isinstance(v, dict)}
        save_checkpoint(run / runfiles.LAST, self.model, self.recipe, epoch, metrics)
        if is_best:
            save_checkpoint(run / runfiles.BEST, self.model, self.recipe, epoch, metrics)
        save_genotype(
            run / "genotypes" / f"epoch_{epoch:03d}.json",
            model_genotype(self.model, self.recipe.data.keypoints),
        )
        # the commit point, last: one file, one rename (see the module docstring)
        save_state(
            run / runfiles.TRAIN_STATE,
            {
                "epoch": epoch,
                "model": state_tensors(self.model),
                "genotype": model_genotype(self.model, self.recipe.data.keypoints).to_json(),
                "optim": self.strategy.state_dict(),
                "rng": rng_state(),
                "best": self.best,
                "best_epoch": self.best_epoch,
            },
            metadata=resume_kind(self.opts.command, self.strategy_name, epoch),
        )

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        if not hasattr(self, "model"):
            self.setup()
        epochs = self.cfg.epochs
        if self.start_epoch >= epochs:
            self.log(f"nothing to do: the run already finished {self.start_epoch} epochs")
            return {}
        last_row: dict[str, Any] = {}
        with self._progress() as progress:
            for epoch in range(self.start_epoch, epochs):
                lrs = self.strategy.set_epoch(epoch)
                t0 = time.perf_counter()
                row: dict[str, Any] = {"epoch": epoch + 1}
                row.update(self.train_epoch(epoch, progress))
                broadcast_buffers(self.model)  # one set of BN statistics for val and checkpoints
                do_val = (epoch + 1) % max(1, self.cfg.val_every) == 0 or epoch + 1 == epochs
                metrics = self.validate() if do_val else {}
                row.update({k: v for k, v in metrics.items() if k != "main"})
                row.update(lrs)
                row.update(self._arch_stats())
                row["time_s"] = time.perf_counter() - t0
                main = metrics.get("main")
                is_best = False
                if main is not None and (self.best is None or metrics[main] > self.best):
                    self.best, self.best_epoch, is_best = float(metrics[main]), epoch + 1, True
                elif main is None and self.best is None and epoch + 1 == epochs:
                    is_best = True  # no metric at all: best = last
                if self.files is not None:
                    self.files.append_metrics(row)
                self._save(epoch + 1, row, is_best)
                self.history.append(row)
                last_row = row
                self._epoch_line(row, main)
                if on_epoch is not None:
                    on_epoch(row)
        return last_row

    def _epoch_line(self, row: dict[str, Any], main: str | None) -> None:
        text = (
            f"epoch {row['epoch']}/{self.cfg.epochs}  loss {row['train_loss']:.4e}  "
            f"{row['images_per_s']:.1f} img/s"
        )
        if "val_loss" in row:
            text += f"  val_loss {row['val_loss']:.4e}"
        if main == "pckh":
            text += f"  PCKh@0.5 {row['pckh']:.2f}  @0.1 {row['pckh@0.1']:.2f}"
        elif main == "ap":
            text += f"  AP {row['ap']:.4f}"
        self.log(text)
