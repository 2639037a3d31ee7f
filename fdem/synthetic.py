"""Seeded synthetic blur problems ``y = k ⊛ x + σn`` for the tools, benchmarks and tests.

Everything here is deterministic: the same arguments give the same tensors, on any machine
(CPU generators). The pieces compose:

* sharp images: :func:`bundled_images` (the built-in photographs, held-out ones first, cycled),
  :func:`held_out_crops` (centre crops of the held-out photographs, each repeated) or
  :func:`random_images`;
* kernels: :func:`camera_shake` (the camera-shake generator of :mod:`fdem.kernels_gen`);
* :func:`blur_problems` blurs and adds seeded noise; :func:`synthetic_batch` does all three the way
  ``fdem speed`` does (kernel side ``min(33, S//2 rounded up to odd)``, noise seed ``seed + 1``).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from fdem.errors import InputError

SIGMA = 10 / 255  # the noise level of the synthetic problems (the paper's σ = 10/255)
IMAGE_SOURCES = ("bundled", "random")


@lru_cache(maxsize=4)
def _photos(size: int) -> tuple[Tensor, ...]:
    """The bundled photographs at ``size``, the held-out ones first."""
    from fdem.imageio import HELD_OUT_IMAGES, default_images

    return tuple(image for _, image in sorted(default_images(size), key=lambda item: item[0] not in HELD_OUT_IMAGES))


def bundled_images(count: int, size: int) -> Tensor:
    """``(count, 3, size, size)``: the built-in photographs (held-out ones first), cycled."""
    photos = _photos(size)
    return torch.stack([photos[b % len(photos)] for b in range(count)])


def random_images(count: int, size: int, seed: int = 0) -> Tensor:
    """``(count, 3, size, size)`` uniform noise images drawn from ``seed``."""
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def held_out_crops(size: int, per_image: int = 1) -> Tensor:
    """Central ``size × size`` crops of the held-out photographs (never seen by the shipped
    priors) at 256², each repeated ``per_image`` times: ``(3·per_image, 3, size, size)``."""
    from fdem.imageio import HELD_OUT_IMAGES, center_crop, default_images

    crops = [center_crop(image, size) for name, image in default_images(size=256) if name in HELD_OUT_IMAGES]
    return torch.stack([crop for crop in crops for _ in range(per_image)])


def camera_shake(count: int, size: int, seed: int = 0) -> Tensor:
    """``(count, 1, size, size)`` seeded camera-shake kernels (sum 1)."""
    from fdem.kernels_gen import make_generator

    return make_generator("camera-shake", size).sample(count, seed)


def blur_problems(images: Tensor, kernels: Tensor, sigma: float = SIGMA, noise_seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, k, y)``: the sharp ``images``, their ``kernels`` and ``y = k ⊛ x + σn`` (circular blur,
    Gaussian noise drawn from ``noise_seed``, not clipped)."""
    from fdem.physics import add_noise, blur

    if images.dim() != 4 or kernels.dim() != 4 or kernels.shape[0] not in (1, images.shape[0]):
        raise InputError(f"images must be (B, C, H, W) and kernels (B or 1, 1, k, k), got {tuple(images.shape)} "
                         f"and {tuple(kernels.shape)}")
    y = add_noise(blur(images, kernels), sigma, generator=torch.Generator().manual_seed(noise_seed))
    return images, kernels, y


def default_kernel_size(image_size: int) -> int:
    """``min(33, S//2 rounded up to odd)``: 33×33 kernels from 64×64 images up."""
    return min(33, (image_size // 2) | 1)


def synthetic_batch(batch: int, size: int, kernel_size: int | None = None, sigma: float = SIGMA, seed: int = 0,
                    images: str = "bundled") -> tuple[Tensor, Tensor, Tensor]:
    """``(x, k, y)`` of ``batch`` seeded problems: ``images`` (``bundled`` photographs or ``random``
    ones drawn from ``seed``), camera-shake kernels of ``kernel_size`` (default
    :func:`default_kernel_size`) drawn from ``seed``, noise from ``seed + 1``."""
    if images not in IMAGE_SOURCES:
        raise InputError(f"images must be {' or '.join(IMAGE_SOURCES)}, got {images!r}")
    if batch < 1 or size < 1:
        raise InputError(f"batch and size must be >= 1, got {batch} and {size}")
    x = bundled_images(batch, size) if images == "bundled" else random_images(batch, size, seed)
    kernels = camera_shake(batch, kernel_size or default_kernel_size(size), seed)
    return blur_problems(x, kernels, sigma, seed + 1)
