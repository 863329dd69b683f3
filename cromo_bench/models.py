"""Backbones (REFERENCE.md section 2.1) and the Encoder (backbone + projector).

- `resnet18`: CIFAR ResNet-18, 3x3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2], 8*width-d features
  (512 at the standard width 64). The second norm of every BasicBlock starts at zero (zero-init residual).
- `resnet50`: the reference's TinyImageNet variant, Bottleneck [3, 4, 6, 3], 7x7 stride-2 stem, no max-pool,
  32*width-d features (2048 at width 64), no zero-init.
Norm: BatchNorm or GroupNorm (32 groups, 64 in Bottlenecks, fewer when a narrow width needs it), optional
weight standardisation (filters minus their mean over their standard deviation + 1e-5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cromo_bench.config import RunConfig


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardisation."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight  # (O, I, k, k)
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        std = w.std(dim=(1, 2, 3), keepdim=True) + 1e-5
        return F.conv2d(x, (w - mean) / std, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Layers:
    """Builds convs and norms with one normalisation setting."""

    def __init__(self, norm: str, ws: bool, groups: int = 32) -> None:
        self.norm, self.ws, self.groups = norm, ws, groups

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
        cls = WSConv2d if self.ws else nn.Conv2d
        return cls(cin, cout, k, stride=stride, padding=padding, bias=False)

    def bn(self, c: int, groups: int | None = None) -> nn.Module:
        if self.norm == "gn":
            g = min(groups or self.groups, c)
            while c % g:
                g -= 1
            return nn.GroupNorm(g, c)
        return nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, L: Layers, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = L.conv(cin, cout, 3, stride, 1), L.bn(cout)
        self.conv2, self.bn2 = L.conv(cout, cout, 3, 1, 1), L.bn(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(L.conv(cin, cout, 1, stride), L.bn(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, L: Layers, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = L.conv(cin, width, 1), L.bn(width, 64)
        self.conv2, self.bn2 = L.conv(width, width, 3, stride, 1), L.bn(width, 64)
        self.conv3, self.bn3 = L.conv(width, cout, 1), L.bn(cout, 64)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(L.conv(cin, cout, 1, stride), L.bn(cout, 64))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet trunk without max-pool and without the fc layer; returns pooled features (N, feat_dim)."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...], width: int,
                 L: Layers, stem: str) -> None:
        super().__init__()
        if stem == "cifar":
            self.stem = nn.Sequential(L.conv(3, width, 3, 1, 1), L.bn(width), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(L.conv(3, width, 7, 2, 3), L.bn(width), nn.ReLU(inplace=True))
        stages, cin = [], width
        for i, depth in enumerate(depths):
            w = width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(L, cin, w, (1 if i == 0 else 2) if j == 0 else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feat_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # zero-init residual, BasicBlocks only (as the reference)
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        h = self.stages(self.stem(x))  # (N, C, h, w)
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)  # (N, feat_dim)


def build_backbone(cfg: RunConfig) -> tuple[nn.Module, int]:
    """The backbone named by cfg.backbone at cfg.width, with cfg.norm and weight standardisation."""
    L = Layers(cfg.norm, cfg.weight_standardization)
    if cfg.backbone == "resnet18":
        net = ResNet(BasicBlock, (2, 2, 2, 2), cfg.width, L, stem="cifar")
    elif cfg.backbone == "resnet50":
        net = ResNet(Bottleneck, (3, 4, 6, 3), cfg.width, L, stem="imagenet")
    else:
        from cromo_bench.errors import CromoError

        raise CromoError(f"unknown backbone '{cfg.backbone}'; choose resnet18 or resnet50")
    return net, net.feat_dim


class Encoder(nn.Module):
    """Backbone + projector. `forward` returns projector outputs z (N, D); `features` the backbone's."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # (N, F)

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.backbone(x))  # (N, D)
