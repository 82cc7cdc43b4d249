"""Exact resume after SIGKILL, and DDP with 2 gloo processes on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import metrics, tiny_search_args, torchrun_cmd

pytestmark = pytest.mark.slow  # each test runs whole CLI trainings in subprocesses

SETS = [
    "--set",
    "data.synthetic.train_images=24",
    "--set",
    "data.synthetic.val_images=8",
    "--set",
    "data.workers=0",
]


def cli(project: Path, *args: str) -> list[str]:
    return [sys.executable, *tiny_search_args(project), *SETS, *args]


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(
        cli(tmp_path, "--epochs", "4", "--name", "full"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert full.returncode == 0, full.stdout + full.stderr
    proc = subprocess.Popen(
        cli(tmp_path, "--epochs", "4", "--name", "killed"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = tmp_path / "search" / "killed" / "last.train.safetensors"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the run never wrote its first checkpoint"
    done = len(metrics(tmp_path / "search" / "killed"))
    assert done < 4, "killed too late to test resuming"
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "posenfs_cli",
            "--device",
            "cpu",
            "search",
            "--resume",
            str(tmp_path / "search" / "killed"),
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming after epoch" in resumed.stdout
    a = load_file(str(tmp_path / "search" / "full" / "last.safetensors"))
    b = load_file(str(tmp_path / "search" / "killed" / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(tmp_path / "search" / "full") == metrics(tmp_path / "search" / "killed")


def test_ddp_two_processes_gloo(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run(
        torchrun_cmd(str(worker), str(tmp_path)),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "weights0.pt")
    w1 = torch.load(tmp_path / "weights1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert (tmp_path / "run0" / "last.safetensors").is_file()
    assert (tmp_path / "run0" / "metrics.jsonl").is_file()
    assert not (tmp_path / "run1").exists()  # rank 1 wrote nothing
    rows = (tmp_path / "run0" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "pckh" in json.loads(rows[0])
