"""``selfdeblur``: neural blind deconvolution with two untrained generators (Ren et al., CVPR 2020).

Per image, a DIP encoder–decoder (:class:`fdem.nets.dip.SkipGenerator`) maps fixed noise to a sharp
image of size ``(H+k−1, W+k−1)`` and an MLP (:class:`fdem.nets.dip.KernelMLP`) maps fixed noise to a
softmax kernel; both are fitted jointly so that the *valid* convolution of the two reproduces the
observation (MSE for the first ``ssim_after`` iterations, then ``1 − SSIM``). As in the authors'
code: Adam (``lr_image`` / ``lr_kernel``), both rates halved at ``milestones``; uniform ``[0, 0.1)``
input noise, the image input perturbed each iteration by Gaussian noise of std ``reg_noise_std``;
colour images are processed on the Y channel of YCbCr (BT.601) and recombined with the observed
Cb/Cr. The networks run in training mode throughout; the result is the last iteration's output.

Conventions of this project: the returned kernel is a true-convolution kernel (the network's
output is flipped before PyTorch's correlation), re-centred by its centre of mass, and the image
window cut from the generated image is shifted by the same offset (bilinear), so that the
restored image lines up with a sharp image blurred by a centred kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fdem.errors import InputError
from fdem.kernel_ops import center_of_mass, check_kernel_size, recenter
from fdem.nets.dip import KernelMLP, SkipGenerator, min_input_size
from fdem.physics import check_kernel_fits
from fdem.restorer_base import ConfigRestorer, Restoration

_RGB_TO_Y = (0.299, 0.587, 0.114)  # ITU-R BT.601, full range (JPEG / OpenCV YCrCb)


@dataclass(frozen=True)
class SelfDeblurConfig:
    """Everything that shapes one run besides the image, the kernel size and the seed."""

    iters: int = 5000
    lr_image: float = 1e-2
    lr_kernel: float = 1e-4
    ssim_after: int = 1000
    milestones: tuple[int, ...] = (2000, 3000, 4000)
    lr_gamma: float = 0.5
    reg_noise_std: float = 1e-3
    input_depth: int = 8
    channels: int = 128
    skip_channels: int = 16
    scales: int = 5
    nonlocal_scales: int = 3
    kernel_input: int = 200
    kernel_hidden: int = 1000

    def check(self) -> None:
        """Raise :class:`InputError` naming the first out-of-range setting."""
        positive_int = ("iters", "input_depth", "channels", "skip_channels", "scales", "kernel_input", "kernel_hidden")
        for name in positive_int:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"selfdeblur: {name} must be an integer >= 1, got {value!r}")
        rules = {
            "lr_image": self.lr_image > 0, "lr_kernel": self.lr_kernel > 0, "ssim_after": self.ssim_after >= 0,
            "lr_gamma": 0 < self.lr_gamma <= 1, "reg_noise_std": self.reg_noise_std >= 0,
            "nonlocal_scales": 0 <= self.nonlocal_scales <= self.scales,
            "milestones": all(isinstance(m, int) and m > 0 for m in self.milestones),
        }
        for name, ok in rules.items():
            if not ok:
                raise InputError(f"selfdeblur: bad {name} = {getattr(self, name)!r}")


# --- colour ---------------------------------------------------------------------------------------


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """BT.601 full-range YCbCr of ``(B, 3, H, W)`` RGB in ``[0, 1]`` (chroma centred on 0.5)."""
    r, g, b = rgb.unbind(1)
    y = _RGB_TO_Y[0] * r + _RGB_TO_Y[1] * g + _RGB_TO_Y[2] * b
    return torch.stack([y, (b - y) * 0.564 + 0.5, (r - y) * 0.713 + 0.5], dim=1)


def ycbcr_to_rgb(ycc: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    y, cb, cr = ycc.unbind(1)
    r = y + (cr - 0.5) / 0.713
    b = y + (cb - 0.5) / 0.564
    g = (y - _RGB_TO_Y[0] * r - _RGB_TO_Y[2] * b) / _RGB_TO_Y[1]
    return torch.stack([r, g, b], dim=1)


# --- losses ---------------------------------------------------------------------------------------


def _gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    t = torch.arange(size, device=like.device, dtype=like.dtype) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(like.shape[1], 1, size, size)


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM (Gaussian window, zero "same" padding as in the authors' loss), differentiable."""
    w = _gaussian_window(window, sigma, a)

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, w, padding=window // 2, groups=a.shape[1])

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    index = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.mean()


# --- one image ------------------------------------------------------------------------------------


def valid_blur(image: Tensor, kernel: Tensor) -> Tensor:
    """Valid true convolution of a ``(1, 1, H+k−1, W+k−1)`` image with a ``(1, 1, k, k)`` kernel: ``(H, W)``.

    Pixel ``i`` is ``Σ_j k[j]·image[i + (k−1) − j]``, so with ``image`` the circular padding of ``x`` by
    ``(k−1) − k//2`` before (and ``k//2`` after) it equals :func:`fdem.physics.blur` ``(x, k)``.
    """
    return F.conv2d(image, kernel.flip(-2, -1))


def _seeded_nets(kernel_size: int, cfg: SelfDeblurConfig, seed: int, device: torch.device):
    """Both generators, initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image_net = SkipGenerator(cfg.input_depth, 1, cfg.channels, cfg.skip_channels, cfg.scales, cfg.nonlocal_scales)
        kernel_net = KernelMLP(kernel_size, cfg.kernel_input, cfg.kernel_hidden)
    return image_net.to(device), kernel_net.to(device)


class _Problem:
    """One image's generators, inputs, optimiser and schedule; :meth:`step` runs one iteration."""

    def __init__(self, target: Tensor, kernel_size: int, cfg: SelfDeblurConfig, seed: int):
        device = target.device
        h, w = target.shape[-2:]
        self.target, self.cfg = target, cfg
        self.image_net, self.kernel_net = _seeded_nets(kernel_size, cfg, seed, device)
        cpu = torch.Generator().manual_seed(seed)
        padded = (h + kernel_size - 1, w + kernel_size - 1)
        self.image_input = (0.1 * torch.rand((1, cfg.input_depth, *padded), generator=cpu)).to(device)
        self.kernel_input = (0.1 * torch.rand((cfg.kernel_input,), generator=cpu)).to(device)
        self.noise = torch.Generator(device=device).manual_seed(seed + 1)
        self.optimizer = torch.optim.Adam(
            [{"params": self.image_net.parameters(), "lr": cfg.lr_image},
             {"params": self.kernel_net.parameters(), "lr": cfg.lr_kernel}]
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(cfg.milestones), cfg.lr_gamma)
        self.image = self.kernel = None

    def step(self, t: int) -> Tensor:
        """One Adam step at iteration ``t``; returns the (detached) loss."""
        z = self.image_input
        if self.cfg.reg_noise_std > 0:
            z = z + self.cfg.reg_noise_std * torch.randn(z.shape, generator=self.noise, device=z.device, dtype=z.dtype)
        self.optimizer.zero_grad(set_to_none=True)
        image, kernel = self.image_net(z), self.kernel_net(self.kernel_input)
        reblurred = valid_blur(image, kernel)
        if t < self.cfg.ssim_after:
            loss = F.mse_loss(reblurred, self.target)
        else:
            loss = 1 - ssim(reblurred, self.target)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.image, self.kernel = image.detach(), kernel.detach()
        return loss.detach()


def _shift_matrix(start: Tensor, size: int, full: int) -> Tensor:
    """``(size, full)`` bilinear sampling matrix of rows ``start + i`` (``start`` a float tensor)."""
    grid = torch.arange(full, device=start.device, dtype=start.dtype)
    rows = start + torch.arange(size, device=start.device, dtype=start.dtype)
    return (1 - (grid[None, :] - rows[:, None]).abs()).clamp_min(0)


def align(image: Tensor, kernel: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Cut the ``shape`` window of a generated ``(1, C, H+k−1, W+k−1)`` image that lines up with a
    centred kernel, and re-centre the kernel by its centre of mass.

    With the kernel's centre at ``c = k//2`` the valid convolution places observation pixel ``i`` on
    generated pixel ``i + (k−1) − c``; a kernel whose centre of mass sits at ``c + d`` moves the
    content by ``−d``, so the window starts at ``(k−1) − c − d`` (always inside ``[0, k−1]``).
    """
    k = kernel.shape[-1]
    offset = center_of_mass(kernel)[0] - k // 2  # (row, col)
    start = (k - 1 - k // 2) - offset
    rows = _shift_matrix(start[0], shape[0], image.shape[-2])
    cols = _shift_matrix(start[1], shape[1], image.shape[-1])
    return rows @ image @ cols.T, recenter(kernel)


# --- entry points ---------------------------------------------------------------------------------


def _check_input(y: Tensor, kernel_size: int, cfg: SelfDeblurConfig) -> None:
    if y.ndim != 4 or y.shape[1] not in (1, 3):
        raise InputError(f"selfdeblur: expected images (B, 1 or 3, H, W), got shape {tuple(y.shape)}")
    check_kernel_size(kernel_size, "selfdeblur")
    check_kernel_fits((kernel_size, kernel_size), tuple(y.shape[-2:]))
    cfg.check()
    side = max(y.shape[-2:]) + kernel_size - 1
    if side < min_input_size(cfg.scales):
        raise InputError(
            f"selfdeblur: image {y.shape[-2]}x{y.shape[-1]} with a {kernel_size}x{kernel_size} kernel is too small "
            f"for a {cfg.scales}-scale generator (needs max(H, W) + k - 1 >= {min_input_size(cfg.scales)})"
        )


def selfdeblur(
    y: Tensor,
    kernel_size: int,
    iters: int = 5000,
    seed: int | Sequence[int] = 0,
    callback: Callable[[], None] | None = None,
    **options,
) -> tuple[Tensor, Tensor, Tensor]:
    """Blind deblurring of ``y (B, C, H, W)``, C ∈ {1, 3}: ``(image (B,C,H,W) in [0,1], kernel (B,1,k,k), losses (B, iters))``.

    Image ``b`` has its own networks, seeded with ``seed + b`` (or ``seed[b]``); the B problems run in
    lock step so that ``callback()`` is called once per iteration. ``options``: the other fields of
    :class:`SelfDeblurConfig` (``lr_image``, ``ssim_after``, ``channels``, …).
    """
    try:
        cfg = SelfDeblurConfig(iters=iters, **options)
    except TypeError as error:
        raise InputError(f"selfdeblur: {error}") from None
    _check_input(y, kernel_size, cfg)
    batch = y.shape[0]
    seeds = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else [int(seed) + b for b in range(batch)]
    if len(seeds) != batch:
        raise InputError(f"selfdeblur: {len(seeds)} seeds for {batch} images")
    # Fitting needs autograd even when the caller runs under no_grad or inference_mode.
    with torch.inference_mode(False), torch.enable_grad():
        ycc = rgb_to_ycbcr(y.detach().clone()) if y.shape[1] == 3 else y.detach().clone()
        problems = [_Problem(ycc[b : b + 1, :1], kernel_size, cfg, s) for b, s in enumerate(seeds)]
        losses = torch.zeros(batch, cfg.iters, device=y.device)
        for t in range(cfg.iters):
            for b, problem in enumerate(problems):
                losses[b, t] = problem.step(t)
            if callback is not None:
                callback()
    images, kernels = zip(*(align(p.image, p.kernel, tuple(y.shape[-2:])) for p in problems))
    luma, kernel = torch.cat(images), torch.cat(kernels)
    image = ycbcr_to_rgb(torch.cat([luma, ycc[:, 1:]], dim=1)) if y.shape[1] == 3 else luma
    return image.clamp(0, 1), kernel, losses


class SelfDeblurRestorer(ConfigRestorer):
    """``selfdeblur`` behind :class:`fdem.restorer_base.Restorer`; options: ``kernel_size`` and the fields
    of :class:`SelfDeblurConfig` (sigma is not used by the method)."""

    seeded = True
    config_class = SelfDeblurConfig

    def total_steps(self, size: tuple[int, int] | None = None) -> int:
        return self.cfg.iters

    def _restore(self, y: Tensor, sigma: float | Tensor, kernel: Tensor | None, seed: int | Sequence[int],
                 callback: Callable[..., None] | None) -> Restoration:
        options = {k: v for k, v in asdict(self.cfg).items() if k != "iters"}
        image, estimate, losses = selfdeblur(y, self.kernel_size, self.cfg.iters, seed, callback, **options)
        return Restoration(image, estimate, extras={"losses": losses})
