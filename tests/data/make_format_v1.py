"""How the format-1 fixtures in this folder were made (kept for the record; do not rerun).

The files were written by posenfs 0.1.0 (commit 7ddeb07, before checkpoints and genotype JSON
carried a ``format_version``) with::

    PYTHONPATH=/path/to/posenfs-0.1.0/src python tests/data/make_format_v1.py tests/data

They are the oldest files posenfs promises to read. Rerunning this script with newer code
writes newer files, which would defeat the test (tests/unit/test_format_stability.py): leave
the committed ones alone.

What it writes:

- ``format_v1.safetensors``: a tiny, pruned model (Fabric backbone with C=1, three MPII parts
  with C=1, 32x32 input) with random weights, BN statistics and α/β; one op of the ``head``
  part and one input slot are physically pruned, so rebuilding needs the pruning record.
- ``format_v1_genotype.json``: the genotype of that model, as ``save_genotype`` writes it.
- ``format_v1_io.safetensors``: a fixed input (``input``, [1, 3, 32, 32]) and the model's
  eval-mode output for it (``output``, [1, 16, 8, 8]).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from posenfs_cli.config import recipe_from_dict
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_from_recipe
from posenfs_cli.models.prune import prune_model
from posenfs_cli.nas.genotype import model_genotype, save_genotype

RECIPE = {
    "name": "format_v1",
    "model": {
        "backbone": "fabric",
        "fabric": {
            "layers": 6,
            "channels": 1,
            "hidden": 1,
            "kept": 3,
            "ops": ["zero", "skip", "avg_pool_3x3", "max_pool_3x3"],
        },
        "parts": 3,
        "layers": 6,
        "cut": 3,
        "hidden": 1,
        "channels": 1,
        "vector_dim": 4,
        "ops": ["zero", "skip", "sep_conv_3x3", "dil_conv_3x3"],
    },
    "data": {"dataset": "synthetic", "keypoints": "mpii", "input_size": [32, 32]},
}


def randomise(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".alpha") or name.endswith(".beta"):
                p.copy_(torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        head = dict(model.cnfs())["head"]
        ops = list(head.spec.ops)
        head.alpha[:, ops.index("dil_conv_3x3")] = -30.0  # pruned op
        last = head.cells[-1]
        last.beta[2] = -30.0  # a pruned input slot (if it is not already the same source)


def main(out: Path) -> None:
    torch.manual_seed(0)
    recipe = recipe_from_dict(RECIPE)
    model = build_from_recipe(recipe, load_pretrained=False)
    randomise(model)
    model.eval()
    pruned, report = prune_model(model, recipe, threshold=0.001, input_size=[32, 32])
    pruned.eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = pruned(x)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "format_v1.safetensors", pruned, recipe, epoch=3, metrics={"pckh": 0.5})
    save_genotype(out / "format_v1_genotype.json", model_genotype(pruned, "mpii"))
    save_file(
        {"input": x.contiguous(), "output": y.contiguous()}, str(out / "format_v1_io.safetensors")
    )
    print(report.specs, tuple(y.shape), f"params {report.params_before} -> {report.params_after}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data"))
