"""MPRNet (Zamir et al., CVPR 2021), deblurring configuration, as a supervised baseline.

Module names and nesting follow the authors' release so that its state_dict loads strictly:
three stages (stage 1 on four patches, stage 2 on two halves, stage 3 at full resolution)
linked by supervised attention modules (SAM) and cross-stage feature fusion. As in the
release, one PReLU is shared by every block: the state_dict lists it 55 times but it holds a
single parameter, hence 20,127,073 parameters for 316 keys.

Patches of a stage are stacked along the batch dimension rather than looped over; every
operation is per sample (channel attention pools per patch), so the result is the same.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fdem.errors import InputError
from fdem.nets.checkpoints import mismatch_report, read_weights, shapes

__all__ = ["MPRNet", "load_mprnet"]

MULTIPLE = 8  # stage-1 patches are H/2 × W/2 and their U-Net halves them twice


def conv(c_in: int, c_out: int, size: int, bias: bool = False) -> nn.Conv2d:
    """'Same'-padded convolution, bias-free by default like the whole release."""
    return nn.Conv2d(c_in, c_out, size, padding=size // 2, bias=bias)


class CALayer(nn.Module):
    """Channel attention: global average, squeeze by ``reduction``, excite, rescale channels."""

    def __init__(self, channels: int, reduction: int, bias: bool):
        super().__init__()
        squeezed = channels // reduction
        self.conv_du = nn.Sequential(
            conv(channels, squeezed, 1, bias), nn.ReLU(inplace=True), conv(squeezed, channels, 1, bias), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class CAB(nn.Module):
    """Channel attention block: conv-act-conv, channel attention, residual."""

    def __init__(self, channels: int, size: int, reduction: int, bias: bool, act: nn.Module):
        super().__init__()
        self.CA = CALayer(channels, reduction, bias)
        self.body = nn.Sequential(conv(channels, channels, size, bias), act, conv(channels, channels, size, bias))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.CA(self.body(x))


def cabs(n: int, channels: int, size: int, reduction: int, bias: bool, act: nn.Module) -> list[CAB]:
    """``n`` channel attention blocks of the same width."""
    return [CAB(channels, size, reduction, bias, act) for _ in range(n)]


class SAM(nn.Module):
    """Supervised attention: predicts the stage image and gates the features passed on with it."""

    def __init__(self, channels: int, size: int, bias: bool):
        super().__init__()
        self.conv1 = conv(channels, channels, size, bias)
        self.conv2 = conv(channels, 3, size, bias)
        self.conv3 = conv(3, channels, size, bias)

    def forward(self, feats: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        restored = image + self.conv2(feats)
        gated = self.conv1(feats) * torch.sigmoid(self.conv3(restored))
        return feats + gated, restored


class DownSample(nn.Module):
    """Bilinear ×½ then a 1×1 convolution widening by ``extra`` channels."""

    def __init__(self, channels: int, extra: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False), conv(channels, channels + extra, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.down(x)


class UpSample(nn.Module):
    """Bilinear ×2 then a 1×1 convolution narrowing from ``channels + extra`` to ``channels``."""

    def __init__(self, channels: int, extra: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), conv(channels + extra, channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.up(x)


class Encoder(nn.Module):
    """Three-level U-Net encoder; with ``csff`` it adds the previous stage's features per level."""

    def __init__(self, n_feat: int, size: int, reduction: int, act: nn.Module, bias: bool, extra: int, csff: bool):
        super().__init__()
        widths = [n_feat + i * extra for i in range(3)]
        for level, width in enumerate(widths, 1):
            setattr(self, f"encoder_level{level}", nn.Sequential(*cabs(2, width, size, reduction, bias, act)))
        self.down12 = DownSample(widths[0], extra)
        self.down23 = DownSample(widths[1], extra)
        if csff:
            for kind in ("enc", "dec"):
                for level, width in enumerate(widths, 1):
                    setattr(self, f"csff_{kind}{level}", conv(width, width, 1, bias))
        self.csff = csff

    def forward(self, x: Tensor, prev_enc: list[Tensor] | None = None, prev_dec: list[Tensor] | None = None) -> list[Tensor]:
        outs = []
        for level in (1, 2, 3):
            if level > 1:
                x = getattr(self, f"down{level - 1}{level}")(x)
            x = getattr(self, f"encoder_level{level}")(x)
            if self.csff:
                i = level - 1
                x = x + getattr(self, f"csff_enc{level}")(prev_enc[i]) + getattr(self, f"csff_dec{level}")(prev_dec[i])
            outs.append(x)
        return outs


class Decoder(nn.Module):
    """Three-level U-Net decoder; skip connections pass through a CAB before being added."""

    def __init__(self, n_feat: int, size: int, reduction: int, act: nn.Module, bias: bool, extra: int):
        super().__init__()
        widths = [n_feat + i * extra for i in range(3)]
        for level, width in enumerate(widths, 1):
            setattr(self, f"decoder_level{level}", nn.Sequential(*cabs(2, width, size, reduction, bias, act)))
        self.skip_attn1 = CAB(widths[0], size, reduction, bias, act)
        self.skip_attn2 = CAB(widths[1], size, reduction, bias, act)
        self.up21 = UpSample(widths[0], extra)
        self.up32 = UpSample(widths[1], extra)

    def forward(self, enc: list[Tensor]) -> list[Tensor]:
        dec3 = self.decoder_level3(enc[2])
        dec2 = self.decoder_level2(self.up32(dec3) + self.skip_attn2(enc[1]))
        dec1 = self.decoder_level1(self.up21(dec2) + self.skip_attn1(enc[0]))
        return [dec1, dec2, dec3]


class ORB(nn.Module):
    """Original-resolution block: ``num_cab`` CABs and a convolution, with a residual."""

    def __init__(self, channels: int, size: int, reduction: int, act: nn.Module, bias: bool, num_cab: int):
        super().__init__()
        self.body = nn.Sequential(*cabs(num_cab, channels, size, reduction, bias, act), conv(channels, channels, size))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ORSNet(nn.Module):
    """Stage 3: three ORBs at full resolution, each followed by fusion of stage-2 U-Net features."""

    def __init__(self, n_feat: int, extra_ors: int, size: int, reduction: int, act: nn.Module, bias: bool, extra: int, num_cab: int):
        super().__init__()
        width = n_feat + extra_ors
        for i in (1, 2, 3):
            setattr(self, f"orb{i}", ORB(width, size, reduction, act, bias, num_cab))
        self.up_enc1 = UpSample(n_feat, extra)
        self.up_dec1 = UpSample(n_feat, extra)
        self.up_enc2 = nn.Sequential(UpSample(n_feat + extra, extra), UpSample(n_feat, extra))
        self.up_dec2 = nn.Sequential(UpSample(n_feat + extra, extra), UpSample(n_feat, extra))
        for kind in ("enc", "dec"):
            for i in (1, 2, 3):
                setattr(self, f"conv_{kind}{i}", conv(n_feat, width, 1, bias))

    def forward(self, x: Tensor, enc: list[Tensor], dec: list[Tensor]) -> Tensor:
        x = self.orb1(x) + self.conv_enc1(enc[0]) + self.conv_dec1(dec[0])
        x = self.orb2(x) + self.conv_enc2(self.up_enc1(enc[1])) + self.conv_dec2(self.up_dec1(dec[1]))
        x = self.orb3(x) + self.conv_enc3(self.up_enc2(enc[2])) + self.conv_dec3(self.up_dec2(dec[2]))
        return x


def split(x: Tensor, dim: int) -> Tensor:
    """Halve ``x`` along ``dim`` and stack the halves on the batch dimension (first half first)."""
    return torch.cat(x.chunk(2, dim=dim), dim=0)


def merge(x: Tensor, dim: int) -> Tensor:
    """Inverse of :func:`split`."""
    return torch.cat(x.chunk(2, dim=0), dim=dim)


class MPRNet(nn.Module):
    """Three-stage multi-patch restoration network (defaults: the released deblurring model)."""

    def __init__(
        self,
        n_feat: int = 96,
        scale_unetfeats: int = 48,
        scale_orsnetfeats: int = 32,
        num_cab: int = 8,
        kernel_size: int = 3,
        reduction: int = 4,
        bias: bool = False,
    ):
        super().__init__()
        k, r, extra = kernel_size, reduction, scale_unetfeats
        act = nn.PReLU()  # one instance shared everywhere, as released
        for i in (1, 2, 3):
            setattr(self, f"shallow_feat{i}", nn.Sequential(conv(3, n_feat, k, bias), CAB(n_feat, k, r, bias, act)))
        self.stage1_encoder = Encoder(n_feat, k, r, act, bias, extra, csff=False)
        self.stage1_decoder = Decoder(n_feat, k, r, act, bias, extra)
        self.stage2_encoder = Encoder(n_feat, k, r, act, bias, extra, csff=True)
        self.stage2_decoder = Decoder(n_feat, k, r, act, bias, extra)
        self.stage3_orsnet = ORSNet(n_feat, scale_orsnetfeats, k, r, act, bias, extra, num_cab)
        self.sam12 = SAM(n_feat, 1, bias)
        self.sam23 = SAM(n_feat, 1, bias)
        self.concat12 = conv(2 * n_feat, n_feat, k, bias)
        self.concat23 = conv(2 * n_feat, n_feat + scale_orsnetfeats, k, bias)
        self.tail = conv(n_feat + scale_orsnetfeats, 3, k, bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Stage outputs ``[stage3, stage2, stage1]`` for ``x`` in [0, 1]; H and W must be multiples of 8."""
        if x.shape[-2] % MULTIPLE or x.shape[-1] % MULTIPLE:
            raise ValueError(f"MPRNet needs H and W divisible by {MULTIPLE}, got {tuple(x.shape[-2:])}; use restore()")
        halves = split(x, 2)  # (2B): top, bottom
        quarters = split(halves, 3)  # (4B): left of (top, bottom), right of (top, bottom)

        # Stage 1: encode quarters, decode halves.
        feat1 = [merge(f, 3) for f in self.stage1_encoder(self.shallow_feat1(quarters))]
        res1 = self.stage1_decoder(feat1)
        sam_feats, img1 = self.sam12(res1[0], halves)

        # Stage 2: encode halves with stage-1 fusion, decode the whole image.
        x2 = self.concat12(torch.cat([self.shallow_feat2(halves), sam_feats], dim=1))
        feat2 = [merge(f, 2) for f in self.stage2_encoder(x2, feat1, res1)]
        res2 = self.stage2_decoder(feat2)
        sam_feats, img2 = self.sam23(res2[0], x)

        # Stage 3: full resolution.
        x3 = self.concat23(torch.cat([self.shallow_feat3(x), sam_feats], dim=1))
        img3 = self.tail(self.stage3_orsnet(x3, feat2, res2)) + x
        return [img3, img2, merge(img1, 2)]

    def restore(self, x: Tensor) -> Tensor:
        """Final-stage estimate for any H, W: reflect-pad to a multiple of 8, run, crop, clamp to [0, 1].

        Gradients are not disabled here; wrap the call in ``torch.no_grad()`` for plain inference.
        """
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % MULTIPLE, 0, -h % MULTIPLE), mode="reflect")
        return self(padded)[0][..., :h, :w].clamp(0, 1)


def load_mprnet(path: str | Path, device: torch.device | str | None = None, widths: dict | None = None) -> MPRNet:
    """The deblurring MPRNet from ``path``, in eval mode with frozen parameters, on ``device``.

    ``widths``: :class:`MPRNet` constructor arguments of a smaller network (default: the released
    one). Accepts a bare state_dict or one under ``"state_dict"`` (the release), keys optionally
    prefixed with ``module.``. The network is built on the meta device so a bad file costs
    nothing; loading is strict and ``weights_only``.
    """
    state, _ = read_weights(path, "MPRNet weights")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        with torch.device("meta"):
            net = MPRNet(**(widths or {}))
    except TypeError as err:
        raise InputError(f"bad MPRNet widths {widths}: {err}") from err
    problems = mismatch_report(shapes(net), state)
    if problems:
        raise InputError(f"{path} is not an MPRNet deblurring state_dict: {problems}")
    net = net.to_empty(device="cpu")
    net.load_state_dict(state, strict=True)
    return net.to(device).eval().requires_grad_(False)
