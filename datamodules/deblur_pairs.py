"""(blurry, sharp) pairs for supervised deblurring (MPRNet), synthesised on the fly.

A sharp crop is blurred by a ``kernels_gen`` kernel with the circular FFT blur of
:func:`fdem.physics.blur` (the benchmark's forward model) and gets Gaussian noise of a level drawn
uniformly in ``[sigma_min, sigma_max]`` (``[0, 1]`` units). Item ``i`` of an epoch is a whole batch
made from seed ``seed + epoch·num_batches + i`` (file choice, crop positions, kernels, noise), so
a run is reproducible and every epoch sees new pairs.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fdem.datamodules.images import BundledPhotosDataModule, ImageFolderDataModule, resize_short_side
from fdem.errors import InputError
from fdem.imageio import center_crop, load_image
from fdem.physics import add_noise, blur
from fdem.kernels_gen import make_generator


class ImageCache:
    """Decoded ``(3, H, W)`` images by path (short side resized to ``resize`` if given); at most
    ``capacity`` are kept (a small bundled set stays in memory, a large folder is re-read)."""

    def __init__(self, resize: int | None, capacity: int = 64):
        self.resize, self.capacity, self.images = resize, capacity, {}

    def __call__(self, path: Path) -> Tensor:
        if path in self.images:
            return self.images[path]
        img = load_image(path, channels=3)
        img = resize_short_side(img, self.resize) if self.resize else img
        if len(self.images) < self.capacity:
            self.images[path] = img
        return img


def seeded_crop(img: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """A ``size × size`` window at a position drawn from ``generator`` (small images are enlarged)."""
    img = center_crop(img, (max(size, img.shape[-2]), max(size, img.shape[-1])), upscale=True)
    h, w = img.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (), generator=generator))
    left = int(torch.randint(0, w - size + 1, (), generator=generator))
    return img[..., top : top + size, left : left + size]


class BlurPairBatches(Dataset):
    """Item ``i``: ``(blurry, sharp)``, each ``(batch_size, 3, crop, crop)``, made from seed ``seed + i``."""

    def __init__(self, files: list[Path], crop: int, kernel_generator: str, kernel_size: int, kernel_params: dict,
                 sigma_range: tuple[float, float], batch_size: int, num_batches: int, seed: int, cache: ImageCache):
        self.files, self.crop, self.cache = files, crop, cache
        self.kernels = make_generator(kernel_generator, kernel_size, **kernel_params)
        self.sigma_range, self.batch_size, self.num_batches, self.seed = sigma_range, batch_size, num_batches, seed

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        seed = self.seed + index
        g = torch.Generator().manual_seed(seed)
        picks = torch.randint(0, len(self.files), (self.batch_size,), generator=g).tolist()
        sharp = torch.stack([seeded_crop(self.cache(self.files[j]), self.crop, g) for j in picks]).contiguous()
        flips = torch.rand(2, self.batch_size, 1, 1, 1, generator=g) < 0.5
        sharp = torch.where(flips[0], sharp.flip(-1), sharp)
        sharp = torch.where(flips[1], sharp.flip(-2), sharp)
        lo, hi = self.sigma_range
        sigma = lo + (hi - lo) * torch.rand(self.batch_size, generator=g)
        kernels = self.kernels.sample(self.batch_size, seed=seed)
        return add_noise(blur(sharp, kernels), sigma, generator=g), sharp


class BlurPairsDataModule(L.LightningDataModule):
    """Random crops of the images under ``root`` (default None: scikit-image's bundled photographs
    of :class:`~fdem.datamodules.images.BundledPhotosDataModule`, the Figure-4 test images excluded),
    blurred on the fly with ``kernel_generator`` kernels of ``kernel_size`` plus Gaussian noise of
    σ uniform in ``[sigma_min, sigma_max]`` (on the 255 scale, like the paper's σ).

    The train/validation file split is the image datamodule's (``val_fraction`` of a folder; the
    bundled set validates on ``chelsea.png``, also trained on). Validation is ``val_batches`` fixed
    batches drawn with ``val_seed``. Batches come ready-made (``batch_size=None`` loaders).
    """

    def __init__(
        self,
        root: str | None = None,
        crop: int = 64,
        resize: int | None = None,
        kernel_generator: str = "camera-shake",
        kernel_size: int = 33,
        kernel_params: dict | None = None,
        sigma_min: float = 0.0,
        sigma_max: float = 20.0,
        batch_size: int = 8,
        num_batches: int = 200,
        val_batches: int = 4,
        val_fraction: float = 0.05,
        seed: int = 0,
        val_seed: int = 10_000_000,
        num_workers: int = 0,
    ):
        super().__init__()
        if not 0 <= sigma_min <= sigma_max:
            raise InputError(f"need 0 <= sigma_min <= sigma_max, got {sigma_min} and {sigma_max}")
        if kernel_size > crop:
            raise InputError(f"kernel of size {kernel_size} is larger than the crops ({crop})")
        if crop % 8:
            raise InputError(f"MPRNet needs crops that are multiples of 8, got {crop}")
        self.save_hyperparameters()
        self.cache = ImageCache(resize)

    def setup(self, stage: str | None = None) -> None:
        # Built here, not in __init__: under LightningCLI a datamodule made inside another's __init__
        # would be handed the outer one's hyper-parameters.
        h = self.hparams
        self.images = BundledPhotosDataModule() if h.root is None else ImageFolderDataModule(h.root, val_fraction=h.val_fraction, seed=h.seed)
        self.images.setup(stage)
        if not self.images.val_files:
            self.images.val_files = self.images.train_files[:1]

    def _batches(self, files: list[Path], seed: int, count: int) -> BlurPairBatches:
        h = self.hparams
        return BlurPairBatches(files, h.crop, h.kernel_generator, h.kernel_size, h.kernel_params or {},
                               (h.sigma_min / 255, h.sigma_max / 255), h.batch_size, count, seed, self.cache)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        data = self._batches(self.images.train_files, h.seed + epoch * h.num_batches, h.num_batches)
        return DataLoader(data, batch_size=None, shuffle=False, num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self._batches(self.images.val_files, h.val_seed, h.val_batches), batch_size=None,
                          num_workers=h.num_workers)
