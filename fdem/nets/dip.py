"""The two generators of Self-Deblur (Ren et al., CVPR 2020), untrained deep priors fitted per image.

* :class:`SkipGenerator`: the deep-image-prior encoder–decoder ("skip" network) that maps a fixed
  noise tensor to the sharp image. Per scale: a strided 3×3 down path (with a dot-product
  non-local block at the coarsest scales), a 1×1 skip path, and an up path (bilinear ×2, concat,
  3×3 and 1×1 convolutions); batch norm and LeakyReLU(0.2) everywhere, reflection padding, a 1×1
  head with a sigmoid. Output size = input size for any input size (odd sizes are cropped).
* :class:`KernelMLP`: a fully connected network ``n → hidden → k²`` whose softmax output is the
  blur kernel, so the kernel is always on the simplex.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv(in_channels: int, out_channels: int, size: int, stride: int = 1) -> nn.Sequential:
    """Convolution with reflection padding ("same" size at stride 1)."""
    pad = (size - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(pad)] if pad else []
    return nn.Sequential(*layers, nn.Conv2d(in_channels, out_channels, size, stride=stride))


def _conv_bn_act(in_channels: int, out_channels: int, size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, out_channels, size, stride), nn.BatchNorm2d(out_channels),
                         nn.LeakyReLU(0.2))


class NonLocalBlock(nn.Module):
    """Dot-product non-local block (Wang et al. 2018): ``x + W(softmax-free attention(x))``.

    Keys and values are max-pooled by 2 (``ceil_mode``, so a 1-pixel map still works); the output
    projection ends with a zero-initialised batch norm, so the block starts as the identity.
    """

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 2)
        self.inner = inner
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.MaxPool2d(2, ceil_mode=True))
        self.g = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.MaxPool2d(2, ceil_mode=True))
        self.out = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        query = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        key = self.phi(x).flatten(2)  # (B, C', N)
        value = self.g(x).flatten(2).transpose(1, 2)  # (B, N, C')
        attention = query @ key / key.shape[-1]
        y = (attention @ value).transpose(1, 2).reshape(b, self.inner, h, w)
        return x + self.out(y)


class DownBlock(nn.Module):
    """One encoder scale: strided 3×3 conv, optional non-local block, 3×3 conv (each + BN + act)."""

    def __init__(self, in_channels: int, channels: int, nonlocal_block: bool):
        super().__init__()
        self.reduce = _conv_bn_act(in_channels, channels, 3, stride=2)
        self.nonlocal_block = NonLocalBlock(channels) if nonlocal_block else None
        self.refine = _conv_bn_act(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        if self.nonlocal_block is not None:
            x = self.nonlocal_block(x)
        return self.refine(x)


class UpBlock(nn.Module):
    """One decoder scale: BN of ``[skip, upsampled]``, then 3×3 and 1×1 convs (each + BN + act)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.fuse = _conv_bn_act(in_channels, channels, 3)
        self.mix = _conv_bn_act(channels, channels, 1)

    def forward(self, skip: Tensor, deeper: Tensor) -> Tensor:
        up = F.interpolate(deeper, scale_factor=2, mode="bilinear", align_corners=False)
        up = up[..., : skip.shape[-2], : skip.shape[-1]]
        return self.mix(self.fuse(self.norm(torch.cat([skip, up], dim=1))))


class SkipGenerator(nn.Module):
    """DIP encoder–decoder: ``scales`` scales of ``channels`` channels, ``skip_channels`` per skip,
    non-local blocks at the ``nonlocal_scales`` coarsest scales, sigmoid output.

    Self-Deblur's image generator is the default: 8 → 1 channels, 5 scales, 128 channels, skip 16,
    non-local blocks at the 3 coarsest scales.
    """

    def __init__(self, in_channels: int = 8, out_channels: int = 1, channels: int = 128, skip_channels: int = 16,
                 scales: int = 5, nonlocal_scales: int = 3):
        super().__init__()
        widths = [in_channels] + [channels] * scales
        self.down = nn.ModuleList(
            DownBlock(widths[i], channels, nonlocal_block=i >= scales - nonlocal_scales) for i in range(scales)
        )
        self.skip = nn.ModuleList(_conv_bn_act(widths[i], skip_channels, 1) for i in range(scales))
        self.up = nn.ModuleList(UpBlock(skip_channels + channels, channels) for _ in range(scales))
        self.head = nn.Conv2d(channels, out_channels, 1)

    @property
    def scales(self) -> int:
        return len(self.down)

    def forward(self, z: Tensor) -> Tensor:
        skips, h = [], z
        for skip, down in zip(self.skip, self.down):
            skips.append(skip(h))
            h = down(h)
        for i in reversed(range(self.scales)):
            h = self.up[i](skips[i], h)
        return torch.sigmoid(self.head(h))


def min_input_size(scales: int) -> int:
    """Smallest input side for which the coarsest feature map has ≥ 2 pixels (batch norm needs them)."""
    return 2 ** scales + 1


class KernelMLP(nn.Module):
    """Kernel generator ``z (n,) → (1, 1, k, k)``: Linear(n, hidden), ReLU6, Linear(hidden, k²), softmax."""

    def __init__(self, kernel_size: int, in_features: int = 200, hidden: int = 1000):
        super().__init__()
        self.kernel_size = kernel_size
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU6(), nn.Linear(hidden, kernel_size**2))

    def forward(self, z: Tensor) -> Tensor:
        k = self.kernel_size
        return torch.softmax(self.net(z).reshape(1, -1), dim=-1).reshape(1, 1, k, k)
