"""Run the 2-process tiny search K times under torchrun; print JSON with clean exits and timings.

    python benchmarks/ddp_stress.py            # K=30
    python benchmarks/ddp_stress.py -k 10 --epochs 1

Each run is ``torchrun --nproc_per_node 2 -m posenfs_cli search --recipe synthetic/tiny
--epochs 1`` (gloo on CPU) in a fresh temporary project. Per run: the exit code, the startup time
(launch until rank 0 prints its run summary: interpreters, torch import, rendezvous, process
group, model and data set up) and the shutdown time (rank 0's final "done." line until torchrun
has exited: final barrier, group teardown, process exit). Non-zero exits keep their last stderr
lines in the JSON so a failure can be read.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(epochs: int, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with tempfile.TemporaryDirectory(prefix="ddp_stress_") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "posenfs_cli",
            "search",
            "--recipe",
            "synthetic/tiny",
            "--epochs",
            str(epochs),
            "--project",
            tmp,
            "--no-progress",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        marks: dict[str, float] = {}
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
        reader.start()
        for line in proc.stdout:
            now = time.perf_counter()
            if line.startswith("run folder") and "startup" not in marks:
                marks["startup"] = now
            if line.startswith("done."):
                marks["done"] = now
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        end = time.perf_counter()
        reader.join(timeout=5)
    row = {"rc": rc, "total_s": round(end - t0, 2)}
    if "startup" in marks:
        row["startup_s"] = round(marks["startup"] - t0, 2)
    if "done" in marks:
        row["shutdown_s"] = round(end - marks["done"], 2)
    if rc != 0:
        keep = ("rror", "terminate", "Fatal", "exitcode", "Signal")
        row["stderr"] = [ln.rstrip() for ln in err if any(k in ln for k in keep)][-8:]
    return row


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", type=int, default=30, help="number of runs (default 30)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run before kill")
    args = ap.parse_args()
    runs = []
    for i in range(args.k):
        runs.append(one_run(args.epochs, args.timeout))
        print(f"run {i + 1}/{args.k}: {runs[-1]}", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "runs": args.k,
                "clean_exits": sum(r["rc"] == 0 for r in runs),
                "exit_codes": sorted({r["rc"] for r in runs}),
                "startup_s": _stats([r["startup_s"] for r in runs if "startup_s" in r]),
                "shutdown_s": _stats([r["shutdown_s"] for r in runs if "shutdown_s" in r]),
                "total_s": _stats([r["total_s"] for r in runs]),
                "cpu_count": os.cpu_count(),
                "failures": [r for r in runs if r["rc"] != 0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
