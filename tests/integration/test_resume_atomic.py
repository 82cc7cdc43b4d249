"""A kill at any point of the end-of-epoch save sequence, then --resume: bit-identical results.

The save sequence writes, in order: the metrics line, ``last``, ``best`` (when improved), the
genotype and the training state. We record that sequence in an uninterrupted run, then for each
write of epoch 2 simulate a kill (an exception nothing catches) either just before it or in the
middle of it (temp file written but never renamed / half a metrics line), resume in a fresh
Trainer like ``--resume`` does, and compare every file with the uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from posenfs_cli import atomic as atomic_mod
from posenfs_cli.config import load_recipe
from posenfs_cli.engine import run as runfiles
from posenfs_cli.engine import trainer as trainer_mod
from posenfs_cli.engine.trainer import Trainer, TrainOptions
from posenfs_cli.errors import PosenfsError
from tests.conftest import RECIPES

SETS = [
    "data.synthetic.train_images=8",
    "data.synthetic.val_images=4",
    "train.epochs=2",
    "train.batch_size=4",
    "eval.batch_size=4",
    "eval.flip=false",
    "train.val_every=10",  # validate at the last epoch only: epoch 2 writes best too
    "data.workers=0",
]
TIMING = {"time_s", "train_time_s", "images_per_s"}


class Killed(BaseException):
    """Stands for SIGKILL: no ``except Exception`` in the code under test can swallow it."""


class Writes:
    """Wraps the trainer's writers; records them and kills at write number ``kill_at``."""

    def __init__(self, monkeypatch, kill_at: int | None = None, torn: bool = False):
        self.calls: list[str] = []
        self.kill_at = kill_at
        self.torn = torn
        for name in ("save_checkpoint", "save_genotype", "save_state"):
            monkeypatch.setattr(trainer_mod, name, self._wrap(name, getattr(trainer_mod, name)))
        orig_append = runfiles.RunFiles.append_metrics
        monkeypatch.setattr(
            runfiles.RunFiles, "append_metrics", self._wrap("metrics", orig_append, torn_line=True)
        )
        self._replace = atomic_mod.os.replace
        monkeypatch.setattr(atomic_mod.os, "replace", self._maybe_torn_replace)
        self._tearing = False

    def _wrap(self, name, fn, torn_line: bool = False):
        def wrapper(*args, **kwargs):
            i = len(self.calls)
            label = name
            if name == "save_checkpoint":
                label = Path(args[0]).name
            self.calls.append(label)
            if i == self.kill_at:
                if not self.torn:
                    raise Killed(f"before {label}")
                if torn_line:  # half a JSON line, no newline: what a kill mid-write leaves
                    files, row = args
                    with open(files.path / runfiles.METRICS, "a") as f:
                        f.write(json.dumps(row)[:25])
                    raise Killed("mid metrics line")
                self._tearing = True
            return fn(*args, **kwargs)

        return wrapper

    def _maybe_torn_replace(self, src, dst):
        if self._tearing:  # the temp file is complete, the rename never happens
            self._tearing = False
            # a real kill runs no cleanup: keep the temp file under another process's name
            src = Path(src)
            os.link(src, src.with_name(src.name.rsplit(".tmp-", 1)[0] + ".tmp-99999"))
            raise Killed(f"before renaming {src}")
        return self._replace(src, dst)


def _trainer(run: Path, resume: bool) -> Trainer:
    recipe = (
        load_recipe(run / runfiles.CONFIG)
        if resume
        else load_recipe(RECIPES / "synthetic/tiny.yaml", SETS)
    )
    t = Trainer(recipe, TrainOptions("search", run, torch.device("cpu"), resume=resume))
    t.opts.progress = False
    t.setup()
    return t


def _snapshot(run: Path) -> dict:
    out: dict = {}
    for name in (runfiles.LAST, runfiles.BEST, runfiles.TRAIN_STATE):
        tensors = load_file(str(run / name))
        with safe_open(str(run / name), framework="pt") as f:
            meta = f.metadata()
        meta = {k: v for k, v in meta.items() if k != "metrics"}  # holds timings
        out[name] = (tensors, meta)
    out["genotypes"] = {p.name: p.read_text() for p in sorted((run / "genotypes").iterdir())}
    rows = runfiles.read_metrics(run)
    out["metrics"] = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    out["files"] = sorted(p.name for p in run.rglob("*") if p.name != runfiles.LOG)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a["files"] == b["files"]  # no stray temp files either
    assert a["metrics"] == b["metrics"]
    assert a["genotypes"] == b["genotypes"]
    for name in (runfiles.LAST, runfiles.BEST, runfiles.TRAIN_STATE):
        (ta, ma), (tb, mb) = a[name], b[name]
        assert ma == mb, name
        assert ta.keys() == tb.keys(), name
        for k in ta:
            assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), f"{name}:{k}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    mp = pytest.MonkeyPatch()
    try:
        writes = Writes(mp)
        _trainer(run, resume=False).fit()
    finally:
        mp.undo()
    calls = writes.calls
    # the second epoch's writes start after the first training state
    first_commit = calls.index("save_state")
    return _snapshot(run), calls, list(range(first_commit + 1, len(calls)))


# epoch 2 writes: metrics, last, best, genotype, state (k indexes them; checked below)
@pytest.mark.parametrize("torn", [False, True], ids=["before", "torn"])
@pytest.mark.parametrize("k", range(5), ids=["metrics", "last", "best", "genotype", "state"])
def test_kill_during_save_then_resume_is_bit_identical(tmp_path, monkeypatch, reference, k, torn):
    snap, calls, epoch2 = reference
    assert [calls[i] for i in epoch2] == [
        "metrics",
        runfiles.LAST,
        runfiles.BEST,
        "save_genotype",
        "save_state",
    ]
    at = epoch2[k]
    run = tmp_path / "run"
    with monkeypatch.context() as mp:
        Writes(mp, kill_at=at, torn=torn)
        with pytest.raises(Killed):
            _trainer(run, resume=False).fit()
    if torn and calls[at] != "metrics":
        assert any(".tmp-" in p.name for p in run.rglob("*")), "no temp file was left to clean"
    resumed = _trainer(run, resume=True)
    assert resumed.start_epoch == 1  # the state of epoch 2 was never committed
    resumed.fit()
    _assert_same(snap, _snapshot(run))


def test_kill_before_the_first_commit_is_not_resumable(tmp_path, monkeypatch, reference):
    _, calls, _ = reference
    run = tmp_path / "run"
    with monkeypatch.context() as mp:
        Writes(mp, kill_at=calls.index("save_state"))
        with pytest.raises(Killed):
            _trainer(run, resume=False).fit()
    with pytest.raises(PosenfsError, match="not a resumable run folder"):
        runfiles.check_run_dir(run)


def test_legacy_state_with_a_mismatched_last_is_refused(tmp_path, reference):
    """A state written before weights lived inside it: the epoch check refuses a torn pair."""
    from posenfs_cli.engine.state import load_state, save_state, state_metadata

    run = tmp_path / "run"
    t = _trainer(run, resume=False)
    t.cfg.epochs = 1
    t.fit()
    state = load_state(run / runfiles.TRAIN_STATE)
    meta = state_metadata(run / runfiles.TRAIN_STATE)
    del state["model"], state["genotype"]
    state["epoch"] = 0  # as if last.safetensors (epoch 1) was written, the state not yet
    save_state(
        run / runfiles.TRAIN_STATE,
        state,
        {k: v for k, v in meta.items() if k != "posenfs_train_state"},
    )
    with pytest.raises(PosenfsError, match="is from epoch 1 but last.train.safetensors from"):
        _trainer(run, resume=True)
