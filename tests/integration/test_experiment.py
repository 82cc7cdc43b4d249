"""`posenfs experiment`: killed and resumed, summary.md equal to the runs' own metrics.jsonl."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import posenfs_cli
from posenfs_cli.cli.app import app
from posenfs_cli.engine.experiment import KILL_ENV, experiment_from_args, parse_seeds, plan_runs
from posenfs_cli.errors import PosenfsError

runner = CliRunner()
SRC = Path(posenfs_cli.__file__).resolve().parents[1]

TINY = {
    "model": {"backbone": "mobilenet_v2", "parts": 3, "hidden": 1, "channels": 4},
    "data": {
        "dataset": "synthetic",
        "keypoints": "mpii",
        "input_size": [64, 64],
        "sigma": 1.0,
        "workers": 0,
        "synthetic": {"train_images": 8, "val_images": 4, "seed": 0},
    },
    "train": {"epochs": 1, "batch_size": 4, "lr": 0.001, "lr_steps": [100]},
    "eval": {"flip": False},
}


def write_recipes(tmp_path: Path) -> tuple[Path, Path]:
    cnf = tmp_path / "cnf.yaml"
    cnf.write_text(yaml.safe_dump({"name": "cnf", **TINY}))
    bn = dict(
        TINY, model={**TINY["model"], "head": "branchnet", "branchnet": {"width": 8, "depth": 1}}
    )
    branch = tmp_path / "branch.yaml"
    branch.write_text(yaml.safe_dump({"name": "branch", **bn}))
    return cnf, branch


def posenfs(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None):
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env.update(PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "posenfs_cli", "--device", "cpu", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def metrics(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln]


@pytest.mark.slow
def test_experiment_killed_resumed_and_summary_equals_metrics(tmp_path):
    cnf, branch = write_recipes(tmp_path)
    args = ["experiment", str(cnf), str(branch), "--seeds", "0,1", "--name", "t"]
    args += ["--no-progress", "--threads", "1", "--project", str(tmp_path / "runs")]
    root = tmp_path / "runs" / "experiment" / "t"

    # 1) SIGKILL right after the 2nd epoch's checkpoints: cnf-s0 finished, cnf-s1 not marked
    first = posenfs(args, tmp_path, {KILL_ENV: "2"})
    assert first.returncode == -9, first.stdout + first.stderr
    assert (root / "cnf-s0" / "done.json").is_file()
    assert (root / "cnf-s1" / "last.train.safetensors").is_file()
    assert not (root / "cnf-s1" / "done.json").exists()
    assert not (root / "branch-s0").exists() and not (root / "summary.md").exists()
    s0_before = (root / "cnf-s0" / "metrics.jsonl").read_text()
    s0_mtime = (root / "cnf-s0" / "last.safetensors").stat().st_mtime_ns
    s1_before = (root / "cnf-s1" / "metrics.jsonl").read_text()

    # 2) the same command continues: s0 kept, s1 resumed (nothing left to train), branch runs
    second = posenfs(args, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 run(s) trained, 1 resumed, 1 kept from before" in second.stdout
    assert (root / "cnf-s0" / "metrics.jsonl").read_text() == s0_before
    assert (root / "cnf-s0" / "last.safetensors").stat().st_mtime_ns == s0_mtime
    assert "resumed" not in (root / "cnf-s0" / "log.txt").read_text()
    assert "resumed after epoch 1" in (root / "cnf-s1" / "log.txt").read_text()
    assert (root / "cnf-s1" / "metrics.jsonl").read_text() == s1_before
    for run in ("cnf-s0", "cnf-s1", "branch-s0", "branch-s1"):
        assert (root / run / "done.json").is_file()
    assert (root / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = json.loads((root / "cnf-s0" / "done.json").read_text())
    assert done["command"] == "search"
    assert json.loads((root / "branch-s0" / "done.json").read_text())["command"] == "train"

    # 3) summary.md numbers = each run's own metrics.jsonl
    md = (root / "summary.md").read_text()
    rows = {
        cells[0]: cells[1:]
        for line in md.splitlines()
        if line.startswith("| ") and not line.startswith("| run")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    summary = json.loads((root / "summary.json").read_text())
    for name in ("cnf", "branch"):
        per_seed = []
        for seed in (0, 1):
            run = root / f"{name}-s{seed}"
            m = metrics(run)
            best = max(m, key=lambda r: r["pckh"])
            wall = sum(r["time_s"] for r in m)
            ips = statistics.fmean(r["images_per_s"] for r in m)
            got = summary["groups"][name]["runs"][str(seed)]
            assert got["pckh"] == best["pckh"] and got["pckh@0.1"] == best["pckh@0.1"]
            assert got["wall_time_s"] == pytest.approx(wall, rel=1e-12)
            assert got["images_per_s"] == pytest.approx(ips, rel=1e-12)
            cells = rows[f"{name}-s{seed}"]
            # best epoch, PCKh@0.5, PCKh@0.1, params, GMACs, GFLOPs, wall time, images/s
            assert cells[0] == str(best["epoch"])
            assert cells[1] == f"{best['pckh']:.2f}" and cells[2] == f"{best['pckh@0.1']:.2f}"
            assert cells[6] == f"{wall:.1f}" and cells[7] == f"{ips:.1f}"
            sizes = json.loads((run / "done.json").read_text())  # the run's final model
            assert cells[3] == f"{sizes['params'] / 1e6:.3f}"
            per_seed.append((best["pckh"], best["pckh@0.1"], wall, ips))
        cells = rows[name]
        # command, n, PCKh@0.5, PCKh@0.1, params, GMACs, GFLOPs, wall time, images/s
        assert cells[0] == ("search" if name == "cnf" else "train") and cells[1] == "2"
        for col, idx, fmt in (
            (2, 0, "{:.2f}"),
            (3, 1, "{:.2f}"),
            (7, 2, "{:.1f}"),
            (8, 3, "{:.1f}"),
        ):
            vals = [p[idx] for p in per_seed]
            want = f"{fmt.format(statistics.fmean(vals))} ± {fmt.format(statistics.stdev(vals))}"
            assert cells[col] == want, (name, col, cells)


def write_experiment(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "data,msg",
    [
        ({"runs": [{"name": "a", "recipe": "synthetic/tiny", "sets": []}]}, "unknown key sets"),
        ({"runs": [{"name": "a"}]}, "has no recipe"),
        ({"runs": []}, "needs a non-empty 'runs' list"),
        (
            {"recipe": "synthetic/tiny", "runs": [{"name": "a"}, {"name": "a"}]},
            "two runs are named 'a'",
        ),
        (
            {
                "recipe": "synthetic/tiny",
                "runs": [{"command": "search", "set": ["model.head=deconv"]}],
            },
            "model.head=deconv has no architecture",
        ),
        (
            {"recipe": "synthetic/tiny", "runs": [{"set": ["train.nope=1"]}]},
            "unknown key train.nope",
        ),
        (
            {"recipe": "synthetic/tiny", "runs": [{"command": "prune"}]},
            "command must be search or train",
        ),
    ],
)
def test_bad_experiment_is_one_line_and_writes_nothing(tmp_path, data, msg):
    exp = write_experiment(tmp_path, data)
    result = runner.invoke(app, ["experiment", str(exp), "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and msg in lines[0], result.output
    assert not (tmp_path / "runs").exists()


def test_a_run_folder_made_with_another_config_is_not_mixed_in(tmp_path):
    cnf, _ = write_recipes(tmp_path)
    run = tmp_path / "runs" / "experiment" / "exp" / "cnf-s0"
    run.mkdir(parents=True)
    (run / "done.json").write_text("{}")
    (run / "config.yaml").write_text("name: something else\n")
    result = runner.invoke(app, ["experiment", str(cnf), "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "another configuration" in result.output


def test_seeds_parsing():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3-5") == [3, 4, 5]
    for bad in ("", "a", "1,1"):
        with pytest.raises(PosenfsError):
            parse_seeds(bad)


SHIPPED = ["strategies", "parts", "vector_dim", "cnf_vs_branchnet"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_ablation_experiments_plan(name):
    exp = experiment_from_args([f"experiments/{name}"], None, None, [])
    assert exp.seeds == [0, 1, 2] and exp.estimated_cpu_time
    planned = plan_runs(exp)
    assert len(planned) == 3 * len(exp.runs)
    assert all(r.recipe.data.dataset == "synthetic" for r in planned)
    assert {r.recipe.train.seed for r in planned} == {0, 1, 2}


def test_cnf_vs_branchnet_at_equal_params():
    from posenfs_cli.models.build import build_from_recipe
    from posenfs_cli.models.size import count_params

    planned = plan_runs(experiment_from_args(["experiments/cnf_vs_branchnet"], [0], None, []))
    sizes = {
        r.spec.name: count_params(build_from_recipe(r.recipe, load_pretrained=False)).total
        for r in planned
    }
    assert planned[1].recipe.model.head == "branchnet" and planned[1].command == "train"
    assert abs(sizes["branchnet"] - sizes["cnf"]) / sizes["cnf"] < 0.005


def test_run_states(tmp_path):
    from posenfs_cli.engine.experiment import run_state

    run = tmp_path / "a-s0"
    assert run_state(run) == "new"
    run.mkdir()
    (run / "config.yaml").write_text("name: a\n")  # killed during the first epoch
    assert run_state(run) == "partial"
    (run / "last.safetensors").write_bytes(b"")
    (run / "last.train.safetensors").write_bytes(b"")
    assert run_state(run) == "resume"
    (run / "done.json").write_text("{}")
    assert run_state(run) == "done"
