"""ONNX export of a pose model (heatmaps out) with a numerical check against PyTorch.

The exported graph is the folded inference copy (``models.fold``: eval BatchNorm folded into the
convolutions, α/β into constants); ``check_onnx`` compares it with the unfolded model.
Only the network is exported: [N, 3, H, W] normalised RGB in, [N, K, H/4, W/4] heatmaps out.
Cropping and decoding stay in Python (``inference.predictor``), so any runtime gets the same
keypoints by running the same small pre/post-processing. The legacy TorchScript exporter is used
(``dynamo=False``): the torch.export-based one needs ``onnxscript``, an extra dependency, and
gives nothing more for a static conv net.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from posenfs_cli.data.layouts import KeypointLayout
from posenfs_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.fold import fold_for_inference

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PoseNet

INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"


class ExportablePoseNet(nn.Module):
    """PoseNet with its part merge written as Gather (or a one-hot 1x1 conv when joints repeat).

    ``index_add`` exports to ScatterND, which ONNX defines as wrong for repeated indices (and the
    exporter warns either way); a gather/conv is exact and exports cleanly.
    """

    gather_index: torch.Tensor  # buffers (register_buffer below)
    merge_weight: torch.Tensor

    def __init__(self, model: PoseNet):
        super().__init__()
        self.model = model
        index = [int(i) for i in model.merge_index.tolist()]
        k = int(model.num_joints)
        self.mode = "identity" if model.identity_merge else "gather"
        if self.mode == "gather" and sorted(index) != list(range(k)):
            self.mode = "conv"
        pos = torch.tensor([index.index(j) for j in range(k)] if self.mode == "gather" else [])
        self.register_buffer("gather_index", pos.long(), persistent=False)
        onehot = torch.zeros(k, len(index), 1, 1)
        onehot[torch.tensor(index), torch.arange(len(index))] = 1.0
        self.register_buffer("merge_weight", onehot, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = self.model.backbone(x)
        maps = [part(pyramid) for part in self.model.parts]
        stacked = maps[0] if len(maps) == 1 else torch.cat(maps, dim=1)
        if self.mode == "identity":
            return stacked
        if self.mode == "gather":
            return stacked.index_select(1, self.gather_index)
        return nn.functional.conv2d(stacked, self.merge_weight.to(stacked.dtype))


def exportable(model: nn.Module) -> nn.Module:
    """The module to trace: PoseNets get the ONNX-friendly merge, anything else as is."""
    if all(hasattr(model, a) for a in ("backbone", "parts", "merge_index", "identity_merge")):
        return ExportablePoseNet(cast("PoseNet", model)).eval()  # PoseNet's attributes (above)
    return model.eval()


@dataclass
class ExportReport:
    path: Path
    opset: int
    batch: str
    input_shape: list[int | str]
    output_shape: list[int | str]
    max_abs_diff: float
    check_batch: int
    seconds: float
    input_format: str = "rgb"  # channel order of 'input' (bgr: imported from the authors' code)

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20


def parse_batch(text: str | int) -> int | None:
    """``dynamic`` -> None, else a positive static batch size."""
    if str(text).strip().lower() == "dynamic":
        return None
    try:
        n = int(text)
    except ValueError:
        raise PosenfsError(f"--batch {text!r}: expected 'dynamic' or a positive integer") from None
    if n < 1:
        raise PosenfsError(f"--batch {text!r}: expected 'dynamic' or a positive integer")
    return n


def _require(module: str):
    """Import an optional export dependency or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise PosenfsError(
            f"ONNX export needs {module}: pip install 'posenfs[export]' (onnx, onnxruntime)"
        ) from None


def onnx_metadata(
    input_size: list[int], layout: KeypointLayout | None, input_format: str = "rgb"
) -> dict[str, str]:
    """What the exported file says about how to feed it and read its output."""
    meta = {
        "input_format": f"{input_format}, ImageNet-normalised: (x/255 - mean) / std",
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "input_size_hw": json.dumps([int(input_size[0]), int(input_size[1])]),
        "decode": "argmax + quarter offset, heatmap px -> image via inverse crop affine",
    }
    if layout is not None:
        meta["keypoints"] = layout.name
        meta["keypoint_names"] = json.dumps(list(layout.names))
        meta["flip_pairs"] = json.dumps([list(p) for p in layout.flip_pairs])
    return meta


def export_onnx(
    model: nn.Module, input_size: list[int], out: Path, opset: int, batch: int | None, meta: dict
) -> Path:
    """Write ``model`` to ONNX (``batch`` None: dynamic) with ``meta`` as its metadata."""
    onnx = _require("onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the same folded copy eval/predict run: eval BN and α/β baked into the convs
    net = exportable(fold_for_inference(model.cpu()))
    h, w = int(input_size[0]), int(input_size[1])
    x = torch.randn(batch or 1, 3, h, w)
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            net,
            (x,),
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    proto = onnx.load(str(out))
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


def check_onnx(
    model: nn.Module, path: str | Path, input_size: list[int], batch: int = 2, seed: int = 0
) -> tuple[float, list[int]]:
    """(max |ONNX Runtime - PyTorch|, ONNX output shape) on a random input of ``batch`` images."""
    ort = _require("onnxruntime")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, int(input_size[0]), int(input_size[1]), generator=gen)
    with torch.inference_mode():
        ref = model.cpu().eval()(x)
    if isinstance(ref, list | tuple):
        ref = ref[-1]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    if got.shape != tuple(ref.shape):
        raise PosenfsError(f"ONNX output shape {got.shape} != PyTorch {tuple(ref.shape)}")
    return float(np.abs(got - ref.numpy()).max()), list(got.shape)


def export_and_check(
    model: nn.Module,
    input_size: list[int],
    out: str | Path,
    opset: int = 17,
    batch: int | None = None,
    layout: KeypointLayout | None = None,
    input_format: str = "rgb",
) -> ExportReport:
    """Export, then compare with PyTorch (batch 2 for a dynamic export: proves the axis is free).
    ``input_format`` is the channel order the model reads, written into the file's metadata."""
    t0 = time.perf_counter()
    meta = onnx_metadata(input_size, layout, input_format)
    path = export_onnx(model, input_size, Path(out), opset, batch, meta)
    check_batch = batch or 2
    diff, shape = check_onnx(model, path, input_size, check_batch)
    n: int | str = batch or "batch"
    return ExportReport(
        path=path,
        opset=opset,
        batch="dynamic" if batch is None else str(batch),
        input_shape=[n, 3, int(input_size[0]), int(input_size[1])],
        output_shape=[n, *shape[1:]],
        max_abs_diff=diff,
        check_batch=check_batch,
        seconds=time.perf_counter() - t0,
        input_format=input_format,
    )


__all__ = [
    "ExportReport",
    "ExportablePoseNet",
    "check_onnx",
    "export_and_check",
    "export_onnx",
    "exportable",
    "onnx_metadata",
    "parse_batch",
]
