"""The environment a bug report needs: versions, accelerator, device, threads — one block.

:func:`gather` collects it (never raising: a broken or missing package is reported as such);
``posenfs env`` and ``posenfs --version --verbose`` only print :func:`format_report` of it.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

from posenfs_cli import __version__

NOT_INSTALLED = "not installed"

# Third-party packages reported as "name: version": (label, distribution names to try).
PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("numpy", ("numpy",)),
    ("safetensors", ("safetensors",)),
    ("pycocotools", ("pycocotools",)),
    ("scipy", ("scipy",)),
    ("thop", ("thop",)),
    ("PyYAML", ("PyYAML",)),
    ("typer", ("typer",)),
    ("rich", ("rich",)),
    ("onnx", ("onnx",)),
    ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
)

# Environment variables that change what posenfs does or sees; reported only when set.
ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTORCH_CUDA_ALLOC_CONF",
    "WORLD_SIZE",
    "LOCAL_RANK",
)


def _safe(fn: Callable[[], str]) -> str:
    """``fn()``, or a short description of why it failed: a report must never crash."""
    try:
        return fn()
    except Exception as exc:  # any failure is information for the report, not a crash
        return f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"


def dist_version(*names: str) -> str:
    """The installed version of the first distribution found among ``names``."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return NOT_INSTALLED


def _posenfs() -> str:
    return f"{__version__} ({Path(__file__).resolve().parent})"


def _python() -> str:
    impl = platform.python_implementation()
    return f"{platform.python_version()} ({impl}, {sys.executable})"


def _torch() -> str:
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    return f"{torch.__version__} ({build})"


def _cuda() -> str:
    """CUDA as torch sees it: the version torch was built with and the GPUs it finds."""
    if not torch.version.cuda:
        return "none (torch built without CUDA)"
    if not torch.cuda.is_available():
        return f"{torch.version.cuda} (built with it; no GPU visible)"
    n = torch.cuda.device_count()
    return f"{torch.version.cuda}, {n} GPU{'s' if n != 1 else ''} visible"


def _cudnn() -> str | None:
    if not torch.version.cuda or not torch.backends.cudnn.is_available():
        return None
    v = torch.backends.cudnn.version()
    if v is None:
        return None
    # 90100 -> 9.1.0 (cuDNN >= 9: M*10000 + m*100 + p); 8902 -> 8.9.2 (M*1000 + m*100 + p)
    major, rest = (v // 10000, v % 10000) if v >= 10000 else (v // 1000, v % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _cudnn_text() -> str:
    return _cudnn() or "none"


def _gpu(index: int) -> str:
    props = torch.cuda.get_device_properties(index)
    gib = props.total_memory / 1024**3
    return f"{props.name}, {gib:.1f} GiB, compute capability {props.major}.{props.minor}"


def _device(spec: str) -> str:
    from posenfs_cli.device import select_device
    from posenfs_cli.errors import PosenfsError

    try:
        dev = select_device(spec)
    except PosenfsError as exc:
        return f"none: {exc}"
    how = "auto-selected" if spec.strip().lower() == "auto" else f"--device {spec}"
    if dev.type != "cuda":
        return f"{dev} ({how})"
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({how}): {_gpu(index)}"


def _threads() -> str:
    cpus = os.cpu_count()
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS / Windows
        usable = None
    cpu_text = f"{cpus} CPUs" + (f" ({usable} usable)" if usable is not None else "")
    return (
        f"torch {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} "
        f"inter-op; {cpu_text}"
    )


def _opencv() -> str:
    import cv2

    return str(cv2.__version__)


def _env_vars() -> str | None:
    found = [f"{k}={os.environ[k]}" for k in ENV_VARS if k in os.environ]
    return " ".join(found) if found else None


def gather(device: str = "auto") -> list[tuple[str, str]]:
    """(label, value) rows, in print order; ``device`` is the ``--device`` spec to resolve."""
    rows: list[tuple[str, str | None]] = [
        ("posenfs", _safe(_posenfs)),
        ("Python", _safe(_python)),
        ("platform", _safe(platform.platform)),
        ("torch", _safe(_torch)),
        ("CUDA", _safe(_cuda)),
        ("cuDNN", _safe(_cudnn_text) if torch.version.cuda else None),
    ]
    if torch.version.cuda and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            rows.append((f"GPU {i}", _safe(functools.partial(_gpu, i))))
    rows += [
        ("device", _safe(lambda: _device(device))),
        ("threads", _safe(_threads)),
        ("OpenCV", _safe(_opencv)),
    ]
    rows += [(label, _safe(functools.partial(dist_version, *names))) for label, names in PACKAGES]
    rows.append(("env", _env_vars()))
    return [(k, v) for k, v in rows if v is not None]


def format_report(rows: list[tuple[str, str]]) -> str:
    """Plain ``label: value`` lines, aligned, to paste into a bug report as they are."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows)
