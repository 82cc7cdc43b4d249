"""Helpers several test modules share: tiny model configs, random architectures, the eval CLI
runner, the torchrun command line, and the checks of a refused input (one error line, nothing
left on disk). Fixtures live in ``conftest.py``."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import torch
from typer.testing import CliRunner, Result

from posenfs_cli.config import ModelConfig

TIMING = {"time_s", "train_time_s", "images_per_s"}
"""metrics.jsonl columns that vary from run to run (left out when runs are compared)."""


def tiny_model(**kw: Any) -> ModelConfig:
    """A one-channel, three-part fabric model config; ``kw`` overrides any field."""
    return ModelConfig(**{"backbone": "fabric", "channels": 1, "parts": 3, **kw})


def randomize_arch(model: Any, seed: int = 0, scale: float = 1.0) -> Any:
    """Seeded random α/β (``scale`` × N(0, 1)), so weights differ per edge and cell."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen))
    return model


def run_eval(ckpt: Path, tmp_path: Path, *args: Any, workers: int = 0) -> Result:
    """``posenfs --device cpu eval CKPT`` writing its run under ``tmp_path/runs``."""
    from posenfs_cli.cli.app import app

    cmd = ["--device", "cpu", "eval", str(ckpt), "--workers", str(workers)]
    cmd += ["--project", str(tmp_path / "runs"), *map(str, args)]
    return CliRunner().invoke(app, cmd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_search_args(project: Path) -> list[str]:
    """``-m posenfs_cli --device cpu search`` on the tiny recipe into ``project``, no bars."""
    from tests.conftest import RECIPES

    recipe = str(RECIPES / "synthetic/tiny.yaml")
    cmd = ["-m", "posenfs_cli", "--device", "cpu", "search", "--recipe", recipe]
    return [*cmd, "--project", str(project), "--no-progress"]


def torchrun_cmd(*target: str, restarts: int | None = None) -> list[str]:
    """``torchrun`` with 2 local processes on a free port, running ``target``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    if restarts is not None:
        cmd += ["--max-restarts", str(restarts)]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    return [*cmd, *target]


def metrics(run: Path) -> list[dict[str, Any]]:
    """A run's metrics.jsonl rows without the timing columns."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def one_error_line(result: Result, needle: str = "") -> str:
    """The rule for a refused input: rc 2 through SystemExit, exactly one non-blank line of
    output in all (stdout and stderr), ``error: ...`` containing ``needle``, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines[0]
    assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def folder_listing(folder: Path) -> dict[str, bytes | None]:
    """Every path below ``folder`` with its bytes (None for a folder): equal before and after a
    refused command means nothing was written, changed or left behind."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }
