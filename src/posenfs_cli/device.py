"""Device selection: ``auto`` picks CUDA when present, else CPU."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from posenfs_cli.errors import PosenfsError


def select_device(spec: str | None = "auto") -> torch.device:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not re.fullmatch(r"cuda(:\d+)?", spec):  # torch.device would raise a RuntimeError
            raise PosenfsError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N (N >= 0)")
        if not torch.cuda.is_available():
            raise PosenfsError(f"--device {spec}: CUDA is not available on this machine (try cpu)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PosenfsError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return dev
    raise PosenfsError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


# --- compilation ------------------------------------------------------------------------------

COMPILE_MODES = ("auto", "on", "off")


PAYBACK_STEPS = 5000  # train steps after which ``auto`` compiles on CUDA (see resolve_compile)


def resolve_compile(
    mode: str | bool | None,
    device: torch.device,
    purpose: str = "train",
    work: int | None = None,
) -> bool:
    """Whether ``--compile auto|on|off`` compiles for ``purpose`` (train or infer) on ``device``.

    ``auto`` compiles only a CUDA training run of at least ``PAYBACK_STEPS`` steps (``work``).
    Measured on the 2-core CPU (Tab II model, torch 2.13): a compiled train step was slower than
    eager (1.25 s vs 1.14 s) on top of the compile time, and for inference the folded eager copy
    (``models.fold``) already takes most of what compiling would give. On an H200 (torch 2.11)
    compiling the tiny synthetic search's train step took over 2 minutes, while an eager Tab II
    train step takes 64 ms: even halving it needs thousands of steps to win the compile time
    back, so short runs, evaluation and prediction (whose length is unknown) stay eager.
    """
    if isinstance(mode, bool):
        return mode
    mode = (mode or "auto").strip().lower()
    if mode not in COMPILE_MODES:
        raise PosenfsError(f"--compile {mode!r}: expected auto, on or off")
    if mode == "auto":
        return (
            device.type == "cuda"
            and purpose == "train"
            and work is not None
            and work >= PAYBACK_STEPS
        )
    return mode == "on"


def maybe_compile(
    model: nn.Module,
    mode: str | bool | None,
    device: torch.device,
    purpose: str = "train",
    work: int | None = None,
    **options: Any,
) -> bool:
    """Compile ``model``'s forward in place (``nn.Module.compile``: same object, same state-dict
    keys, so checkpoints, DDP and the strategies see the module they built). Returns whether it
    did. Shapes are static; α/β are parameters, so their updates never trigger a recompile.
    ``options`` go to ``torch.compile`` (e.g. ``backend="aot_eager"`` in tests)."""
    if not resolve_compile(mode, device, purpose, work):
        return False
    if purpose == "infer" and "backend" not in options and "options" not in options:
        # inference copies are frozen: inductor may fold the weights into constants and, on
        # CPU, prepack them for oneDNN (measured on the 2-core CPU: the Tab II forward gains
        # most of what compiling gives only with this)
        options["options"] = {"freezing": True}
    model.compile(dynamic=False, **options)
    return True


# --- CUDA-only speed switches (each a no-op elsewhere) ---------------------------------------


def tune_backend(device: torch.device) -> None:
    """cudnn.benchmark (fixed input sizes: pick the fastest conv algorithm once) and TF32."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Host -> device copy; pinned + non-blocking on CUDA, optionally to channels_last."""
    if device.type == "cuda" and x.device.type == "cpu" and not x.is_pinned():
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when the GPU supports it); a no-op context on CPU."""
    on = enabled and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


class GraphedForward(nn.Module):
    """Fixed-shape inference through a CUDA graph (replays recorded kernels, no launch cost).

    The graph is captured on the first call for a given input shape; other shapes and non-CUDA
    devices run the model eagerly. The output tensor is the graph's static buffer: copy it
    before the next call if you keep it (``clone_output``, default True).
    """

    def __init__(self, model: nn.Module, clone_output: bool = True):
        super().__init__()
        self.model = model
        self.clone_output = clone_output
        self._graph: torch.cuda.CUDAGraph | None = None
        self._shape: tuple[int, ...] | None = None
        self._static_in: torch.Tensor | None = None
        self._static_out: torch.Tensor | None = None

    def _capture(self, x: torch.Tensor) -> None:
        self._static_in = x.clone()
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(2):  # warm-up outside the graph (cudnn autotuning, allocations)
                self.model(self._static_in)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            self._static_out = self.model(self._static_in)
        self._graph, self._shape = graph, tuple(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda" or torch.is_grad_enabled() and x.requires_grad:
            return self.model(x)
        if self._graph is None or tuple(x.shape) != self._shape:
            self._capture(x)
        assert self._graph is not None  # _capture just set it when it was None
        assert self._static_in is not None and self._static_out is not None
        self._static_in.copy_(x)
        self._graph.replay()
        return self._static_out.clone() if self.clone_output else self._static_out


# --- memory format ----------------------------------------------------------------------


def use_channels_last(device: torch.device, mode: str | bool = "auto") -> bool:
    """channels_last pays off on CPU (1.5x here) and on CUDA with AMP; "auto" turns it on."""
    if isinstance(mode, bool):
        return mode
    return mode in ("auto", "on", "true")


class ChannelsLast(nn.Module):
    """Run a model in channels_last: convert the input once, the weights once at wrap time."""

    def __init__(self, model: nn.Module):
        super().__init__()
        # Module.to(memory_format=...) is documented and works; torch's overloads omit it
        self.model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))
