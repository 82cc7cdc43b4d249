"""ResNet-50 (bottleneck v1.5: the stride sits on the 3x3 conv) without the classifier.

Module names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...), which timm's ``resnet50`` shares, so both load with an identity
map; ``fc.*`` is dropped. Outputs ``layer1..layer4`` at strides 4, 8, 16, 32 with 256, 512,
1024, 2048 channels. 23,508,032 parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from torch import Tensor, nn

from posenfs_cli.models.backbones import register_pretrainable
from posenfs_cli.models.backbones.pretrained import identity_map, load_pretrained, prefix_matcher

EXPANSION = 4
_LAYERS = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # (planes, blocks, stride)
UNUSED = prefix_matcher("fc")


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4), plus a projected or identity shortcut."""

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        cout = planes * EXPANSION
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        y: Tensor = self.relu(out + shortcut)
        return y


def make_bottleneck_layer(
    cin: int, planes: int, blocks: int, stride: int = 1, bn_momentum: float = 0.1
) -> nn.Sequential:
    """``blocks`` bottlenecks; the first projects the shortcut when shape or stride changes."""
    cout = planes * EXPANSION
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False),
            nn.BatchNorm2d(cout, momentum=bn_momentum),
        )
    layers = [Bottleneck(cin, planes, stride, downsample, bn_momentum)]
    layers += [Bottleneck(cout, planes, bn_momentum=bn_momentum) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet50Backbone(nn.Module):
    """ResNet-50 stem + layer1..layer4; ``forward`` returns the four layer outputs."""

    def __init__(self, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, blocks, stride) in enumerate(_LAYERS, start=1):
            self.add_module(
                f"layer{i}", make_bottleneck_layer(cin, planes, blocks, stride, bn_momentum)
            )
            cin = planes * EXPANSION
        self.out_channels: list[int] = [planes * EXPANSION for planes, _, _ in _LAYERS]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        layers = cast("tuple[nn.Module, ...]", (self.layer1, self.layer2, self.layer3, self.layer4))
        for layer in layers:
            x = layer(x)
            outs.append(x)
        return outs


def load_weights(model: ResNet50Backbone, path: str | Path) -> None:
    """Load torchvision/timm ``resnet50`` weights (identical names; ``fc`` is dropped)."""
    load_pretrained(model, path, identity_map, UNUSED, source_name="ResNet-50")


build = register_pretrainable("resnet50", ResNet50Backbone, load_weights)
