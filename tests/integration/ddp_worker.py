"""Run by tests/integration/test_ddp.py under torchrun (2 processes, gloo on CPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from posenfs_cli.config import load_recipe
from posenfs_cli.engine.distributed import cleanup, init_distributed
from posenfs_cli.engine.trainer import Trainer, TrainOptions

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    info, device = init_distributed("cpu")
    recipe = load_recipe(
        REPO / "src/posenfs_cli/recipes/synthetic/tiny.yaml",
        [
            "data.synthetic.train_images=16",
            "data.synthetic.val_images=8",
            "train.epochs=1",
            "train.batch_size=4",
            "data.workers=0",
        ],
    )
    # each rank is given its own folder: only rank 0 may create anything
    trainer = Trainer(
        recipe, TrainOptions("search", out / f"run{info.rank}", device, dist=info, progress=False)
    )
    trainer.fit()
    torch.save(
        {k: v.clone() for k, v in trainer.model.state_dict().items()},
        out / f"weights{info.rank}.pt",
    )
    cleanup()


if __name__ == "__main__":
    main()
