"""Fabric backbone (paper Fabric-1/2/3): a stem to stride 4, then the first ``kept`` CNF layers."""

from __future__ import annotations

from torch import Tensor, nn

from posenfs_cli.config import FabricBackboneConfig, ModelConfig
from posenfs_cli.models.backbones import register_backbone
from posenfs_cli.nas.fabric import CNF, FabricSpec, PruneSpec, scale_channels


def fabric_spec(cfg: FabricBackboneConfig) -> FabricSpec:
    return FabricSpec(
        total_layers=cfg.layers,
        first_layer=0,
        last_layer=cfg.kept,
        channels=cfg.channels,
        hidden=cfg.hidden,
        ops=tuple(cfg.ops),
        in_width=1,
    )


class FabricBackbone(nn.Module):
    def __init__(
        self, cfg: FabricBackboneConfig, bn_momentum: float = 0.1, prune: PruneSpec | None = None
    ):
        super().__init__()
        c0 = scale_channels(cfg.channels, 0)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64, momentum=bn_momentum),
            nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(64, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, c0, 1, bias=False),
        )
        spec = fabric_spec(cfg)
        widths = spec.layer_widths()
        if widths[-1] != 4:
            raise ValueError(
                f"a fabric backbone must end on a 4-scale layer; layers={cfg.layers}, "
                f"kept={cfg.kept} ends with {widths[-1]} cells"
            )
        self.cnf = CNF(spec, bn_momentum, prune)
        self.out_channels = [scale_channels(cfg.channels, s) for s in range(4)]

    def forward(self, x: Tensor) -> list[Tensor]:
        # every cell of the last kept layer is a CNF output, never pruned, so none is None
        outs: list[Tensor] = self.cnf([self.stem(x)])
        return outs


@register_backbone("fabric")
def build(cfg: ModelConfig) -> nn.Module:
    return FabricBackbone(cfg.fabric, cfg.bn_momentum)
