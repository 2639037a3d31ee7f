"""The ADM ("guided-diffusion") score UNet, laid out so the public checkpoints load strictly.

Two layouts matter here: the FFHQ-256 image prior (`ffhq_10m.pt`, used by DPS, ΠGDM and
Fast EM) and the 64×64 grayscale kernel prior of Blind-DPS. Module names and nesting follow
the original exactly (`input_blocks.N.M...`, `in_layers.2`, `qkv`, `proj_out`, ...) because the
state_dict keys are derived from them. The forward has no data-dependent Python branching, so
it works with `torch.compile`, channels_last and bf16 autocast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fdem.errors import InputError

__all__ = [
    "ADMConfig",
    "ADMUNet",
    "NAMED_CONFIGS",
    "build_unet",
    "qkv_attention",
    "timestep_embedding",
]


@dataclass(frozen=True)
class ADMConfig:
    """Hyper-parameters of an ADM UNet (guided-diffusion names where they exist).

    `attention_resolutions` are feature-map sizes (16 means "attend at 16×16"), not downsample
    factors. `out_channels` is the number of channels of the ε prediction (default: `in_channels`);
    with `learn_sigma` the network returns twice as many, the second half being the variance
    interpolation values v. `num_head_channels > 0` fixes the head width, otherwise `num_heads`
    fixes the head count. `use_new_attention_order=False` is the legacy QKV channel layout that
    the public checkpoints use.
    """

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 128
    out_channels: int | None = None
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (16,)
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_heads: int = 4
    num_head_channels: int = 64
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    conv_resample: bool = True
    learn_sigma: bool = True
    dropout: float = 0.0
    use_new_attention_order: bool = False

    def __post_init__(self) -> None:
        # YAML gives lists; keep the frozen config hashable.
        for name in ("attention_resolutions", "channel_mult"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise InputError(f"channel_mult must be a non-empty tuple of positive ints, got {self.channel_mult}")
        if self.num_res_blocks < 1 or self.model_channels < 1 or self.in_channels < 1:
            raise InputError("num_res_blocks, model_channels and in_channels must be positive")
        for mult in self.channel_mult:
            width = mult * self.model_channels
            if width % 32:
                raise InputError(f"every level width must be a multiple of 32 (GroupNorm32), got {width}")
        if self.num_head_channels <= 0 and self.num_heads <= 0:
            raise InputError("set num_head_channels > 0 or num_heads > 0")

    @property
    def prediction_channels(self) -> int:
        """Channels of the ε prediction (before the learned-variance channels)."""
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def total_out_channels(self) -> int:
        """Channels the network returns: ε, plus v when `learn_sigma`."""
        return self.prediction_channels * (2 if self.learn_sigma else 1)

    def heads_for(self, channels: int) -> int:
        """Number of attention heads at a level with `channels` channels."""
        if self.num_head_channels > 0:
            if channels % self.num_head_channels:
                raise InputError(f"{channels} channels are not divisible by num_head_channels={self.num_head_channels}")
            return channels // self.num_head_channels
        if channels % self.num_heads:
            raise InputError(f"{channels} channels are not divisible by num_heads={self.num_heads}")
        return self.num_heads


SMALL64 = ADMConfig(
    image_size=64,
    model_channels=32,
    channel_mult=(1, 2, 2, 2),
    num_res_blocks=1,
    attention_resolutions=(16,),
    num_head_channels=32,
)

NAMED_CONFIGS: dict[str, ADMConfig] = {
    # ffhq_10m.pt (DPS / ΠGDM / Fast EM image prior): 93,563,910 parameters.
    "ffhq256": ADMConfig(),
    # Blind-DPS kernel prior, 64×64 grayscale, 1 → 2 channels: 17,057,474 parameters.
    "kernel64": ADMConfig(
        image_size=64,
        in_channels=1,
        model_channels=64,
        channel_mult=(1, 2, 3, 4),
        attention_resolutions=(16,),
    ),
    # The public ImageNet 256×256 unconditional ADM (`256x256_diffusion_uncond.pt`, the general-photo
    # prior of DPS/DDRM/DiffPIR): 552,814,086 parameters, 566 tensors.
    "imagenet256": ADMConfig(
        model_channels=256,
        num_res_blocks=2,
        attention_resolutions=(32, 16, 8),
    ),
    # The natural-image prior shipped with fdem (`prior_small64.pt`) and the CPU speed grid's UNet: 1,915,590 parameters.
    "small64": SMALL64,
    # The kernel prior shipped with fdem (`kernel_prior_small64.pt`): small64 on 1-channel kernels.
    "kernel-small64": replace(SMALL64, in_channels=1),
    # The 32×32 kernel prior (`kernel_prior_small32.pt`): the same network on 32×32 kernels, attention at 8×8.
    "kernel-small32": replace(SMALL64, in_channels=1, image_size=32, attention_resolutions=(8,)),
}


def build_unet(cfg: str | ADMConfig | dict) -> ADMUNet:
    """Build an ADM UNet from a named config, an `ADMConfig`, or a dict of `ADMConfig` fields."""
    if isinstance(cfg, str):
        if cfg not in NAMED_CONFIGS:
            raise InputError(f"unknown UNet config {cfg!r}; valid names: {', '.join(sorted(NAMED_CONFIGS))}")
        cfg = NAMED_CONFIGS[cfg]
    elif isinstance(cfg, dict):
        valid = {f.name for f in dataclasses.fields(ADMConfig)}
        unknown = sorted(set(cfg) - valid)
        if unknown:
            raise InputError(f"unknown ADMConfig fields {unknown}; valid fields: {', '.join(sorted(valid))}")
        cfg = ADMConfig(**cfg)
    elif not isinstance(cfg, ADMConfig):
        raise InputError(f"expected a config name, ADMConfig or dict, got {type(cfg).__name__}")
    return ADMUNet(cfg)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: [cos(t·f), sin(t·f)], f geometric."""
    half = dim // 2
    freqs = torch.exp(
        torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(max_period) / half)
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def qkv_attention(qkv: Tensor, num_heads: int, legacy: bool = True) -> Tensor:
    """Multi-head self-attention on a packed (B, 3·heads·d, L) tensor, returning (B, heads·d, L).

    Legacy order packs channels head by head as [q_h, k_h, v_h]; the new order packs
    [q (all heads), k, v]. Both use softmax(QKᵀ/√d)V via SDPA.
    """
    b, width, length = qkv.shape
    d = width // (3 * num_heads)
    if legacy:
        q, k, v = qkv.reshape(b, num_heads, 3 * d, length).split(d, dim=2)
    else:
        q, k, v = (part.reshape(b, num_heads, d, length) for part in qkv.chunk(3, dim=1))
    out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
    return out.transpose(-1, -2).reshape(b, num_heads * d, length)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups, computed in float32 and cast back (as in the original)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


def _zeroed(module: nn.Module) -> nn.Module:
    """Zero-initialise a layer so that residual branches start as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _resample(x: Tensor, mode: str | None) -> Tensor:
    """Parameter-free 2× resampling: nearest up, average-pool down."""
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    if mode == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class Downsample(nn.Module):
    """Halve the resolution with a strided 3×3 conv (key `op`) or an average pool."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double the resolution (nearest), optionally followed by a 3×3 conv (key `conv`)."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(_resample(x, "up"))


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, optionally resampling by 2.

    With scale-shift norm the embedding modulates the second GroupNorm as norm(h)·(1+s)+b,
    otherwise it is added before it.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        dropout: float,
        scale_shift: bool,
        resample: str | None = None,
    ):
        super().__init__()
        self.scale_shift = scale_shift
        self.resample = resample
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if scale_shift else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        norm_act, conv_in = self.in_layers[:-1], self.in_layers[-1]
        # Resample between the activation and the conv, on both branches.
        h = conv_in(_resample(norm_act(x), self.resample))
        x = _resample(x, self.resample)
        e = self.emb_layers(emb).to(h.dtype)[..., None, None]
        norm, rest = self.out_layers[0], self.out_layers[1:]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = norm(h) * (1 + scale) + shift
        else:
            h = norm(h + e)
        return self.skip_connection(x) + rest(h)


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual connection (1-D convs as the original)."""

    def __init__(self, channels: int, num_heads: int, legacy: bool):
        super().__init__()
        self.num_heads = num_heads
        self.legacy = legacy
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, height, width = x.shape
        flat = x.reshape(b, c, height * width)
        h = qkv_attention(self.qkv(self.norm(flat)), self.num_heads, self.legacy)
        return (flat + self.proj_out(h)).reshape(b, c, height, width)


class EmbedSequential(nn.Sequential):
    """A sequence of layers where the residual blocks also receive the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """ADM UNet: `forward(x, t)` with x (B,C,H,W) in [-1, 1] and t (B,) timesteps.

    Returns (B, cfg.total_out_channels, H, W): ε, followed by the variance values v when
    `learn_sigma`. H and W must be divisible by 2^(len(channel_mult)−1).
    """

    def __init__(self, cfg: ADMConfig):
        super().__init__()
        self.cfg = cfg
        self.out_channels = cfg.total_out_channels
        mc = cfg.model_channels
        emb_ch = 4 * mc
        legacy = not cfg.use_new_attention_order

        def res(cin: int, cout: int, resample: str | None = None) -> ResBlock:
            return ResBlock(cin, emb_ch, cout, cfg.dropout, cfg.use_scale_shift_norm, resample)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, cfg.heads_for(ch), legacy)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))

        ch = mc * cfg.channel_mult[0]
        resolution = cfg.image_size
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if resolution in cfg.attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != last:
                down = res(ch, ch, "down") if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                skip_chans.append(ch)
                resolution //= 2

        self.middle_block = EmbedSequential(res(ch, ch), attn(ch), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), mult * mc)]
                ch = mult * mc
                if resolution in cfg.attention_resolutions:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, "up") if cfg.resblock_updown else Upsample(ch, cfg.conv_resample))
                    resolution *= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), _zeroed(nn.Conv2d(ch, self.out_channels, 3, padding=1))
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
