"""Images for training score priors: any image folder, FFHQ with its evaluation split held out,
and generated blur kernels seen as 1-channel images. Every item is a float32 (C, H, W) in [−1, 1]."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fdem.datamodules.kernels import KernelDataModule
from fdem.errors import InputError
from fdem.imageio import center_crop, list_images, load_image

CROPS = ("center", "random")
FFHQ_EVAL = range(0, 1000)  # file stems 00000–00999: the paper's test images, never trained on


def resize_short_side(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) so that min(H, W) == size (bicubic, antialiased, aspect kept, clamped to [0, 1])."""
    h, w = img.shape[-2:]
    if min(h, w) == size:
        return img
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(img[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


def rescale(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize (C, H, W) by ``factor`` (bicubic, antialiased, clamped to [0, 1]; each side at least 1 pixel)."""
    h, w = img.shape[-2:]
    new = (max(1, round(h * factor)), max(1, round(w * factor)))
    return F.interpolate(img[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


def random_rescale(img: torch.Tensor, scales: tuple[float, float]) -> torch.Tensor:
    """Resize (C, H, W) by a factor drawn uniformly from ``scales`` (bicubic, antialiased): crops of
    one size then see the scene at many zooms, from texture to whole objects."""
    return rescale(img, float(torch.empty(()).uniform_(*scales)))


def random_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """A uniformly placed size×size window (the image is enlarged first if it is smaller)."""
    img = center_crop(img, (max(size, img.shape[-2]), max(size, img.shape[-1])), upscale=True)
    h, w = img.shape[-2:]
    top = int(torch.randint(0, h - size + 1, ()))
    left = int(torch.randint(0, w - size + 1, ()))
    return img[..., top:top + size, left:left + size]


class ImageFiles(Dataset):
    """Item ``j`` is file ``j % len(files)`` cropped to ``resolution`` and mapped to [−1, 1].

    ``crop="center"``: resize the short side to ``resolution``, then take the central square.
    ``crop="random"``: a random square, after resizing the short side to ``resize`` if given.
    ``scales`` (random crops only): rescale by a random factor in that range first.
    ``repeat`` lengthens an epoch over a small folder (random crops differ each time).
    """

    def __init__(self, files: list[Path], resolution: int, crop: str, channels: int, resize: int | None, repeat: int = 1,
                 scales: tuple[float, float] | None = None):
        self.files, self.resolution, self.crop = files, resolution, crop
        self.channels, self.resize, self.repeat, self.scales = channels, resize, repeat, scales

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def __getitem__(self, index: int) -> torch.Tensor:
        img = load_image(self.files[index % len(self.files)], self.channels)
        if self.crop == "center":
            img = center_crop(resize_short_side(img, self.resolution), self.resolution)
        else:
            img = resize_short_side(img, self.resize) if self.resize else img
            img = random_rescale(img, self.scales) if self.scales else img
            img = random_crop(img, self.resolution)
        return img.contiguous() * 2 - 1


class ImageFolderDataModule(L.LightningDataModule):
    """Every image under ``root`` (recursive; RGB, RGBA or gray, read by :func:`fdem.imageio.load_image`).

    Train/val split over the sorted file list: ``val_files`` (paths relative to ``root``) if given,
    else a ``val_fraction`` drawn with ``seed``. Training uses ``crop`` (and ``repeat``), validation
    always the deterministic centre crop.
    """

    def __init__(
        self,
        root: str,
        resolution: int = 64,
        crop: str = "center",
        resize: int | None = None,
        val_fraction: float = 0.05,
        val_files: list[str] | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        channels: int = 3,
        repeat: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        if crop not in CROPS:
            raise InputError(f"unknown crop {crop!r}; valid: {', '.join(CROPS)}")
        if not 0 <= val_fraction < 1:
            raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.train_files: list[Path] = []
        self.val_files: list[Path] = []

    def split(self, files: list[Path]) -> tuple[list[Path], list[Path]]:
        """(train, val) lists of the sorted image files."""
        h, root = self.hparams, Path(self.hparams.root)
        if h.val_files is not None:
            wanted = {Path(f).as_posix() for f in h.val_files}
            missing = wanted - {f.relative_to(root).as_posix() for f in files}
            if missing:
                raise InputError(f"val_files not found under {root}: {', '.join(sorted(missing))}")
            is_val = [f.relative_to(root).as_posix() in wanted for f in files]
        else:
            order = torch.randperm(len(files), generator=torch.Generator().manual_seed(h.seed))
            chosen = set(order[: round(h.val_fraction * len(files))].tolist())
            is_val = [j in chosen for j in range(len(files))]
        return [f for f, v in zip(files, is_val) if not v], [f for f, v in zip(files, is_val) if v]

    def setup(self, stage: str | None = None) -> None:
        self.train_files, self.val_files = self.split(list_images(self.hparams.root))
        if not self.train_files:
            raise InputError(f"no training images left in {self.hparams.root} after the validation split")

    def _loader(self, data: Dataset, train: bool) -> DataLoader:
        h = self.hparams
        return DataLoader(data, batch_size=h.batch_size, shuffle=train, drop_last=train, num_workers=h.num_workers,
                          persistent_workers=h.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return self._loader(ImageFiles(self.train_files, h.resolution, h.crop, h.channels, h.resize, h.repeat), True)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return self._loader(ImageFiles(self.val_files, h.resolution, "center", h.channels, None), False)


def stem_number(path: Path) -> int | None:
    """The file stem as an integer (``01234.png`` → 1234), None if it is not a number."""
    return int(path.stem) if path.stem.isdigit() else None


class FFHQDataModule(ImageFolderDataModule):
    """FFHQ under the paper's protocol: images 00000–00999 (by file stem) are the evaluation set.

    They are never in the training set; validation uses the first ``val_count`` of them that are
    present (none present: no validation). Files whose stem is not a number are trained on.
    """

    def __init__(self, root: str, resolution: int = 256, val_count: int = 16, **kwargs):
        super().__init__(root, resolution=resolution, val_fraction=0.0, **kwargs)

    def split(self, files: list[Path]) -> tuple[list[Path], list[Path]]:
        reserved = [f for f in files if stem_number(f) in FFHQ_EVAL]
        train = [f for f in files if stem_number(f) not in FFHQ_EVAL]
        return train, sorted(reserved, key=stem_number)[: self.hparams.val_count]


def kernels_to_images(kernels: torch.Tensor) -> torch.Tensor:
    """(B, 1, k, k) kernels → images in [−1, 1]: each divided by its maximum, then x·2 − 1.

    Sum-1 normalisation undoes the scaling (Blind-DPS reads k̂ = (x + 1)/2 normalised to sum 1).
    """
    return kernels / kernels.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12) * 2 - 1


class KernelImageDataModule(KernelDataModule):
    """Generated kernels (``kernels_gen``) as 1-channel images (:func:`kernels_to_images`), for the
    Blind-DPS kernel prior; batches and seeds as in :class:`KernelDataModule`."""

    transform = staticmethod(kernels_to_images)

    def __init__(
        self,
        generator: str = "motion",
        size: int = 64,
        params: dict | None = None,
        batch_size: int = 32,
        num_batches: int = 200,
        val_count: int = 64,
        seed: int = 0,
        val_seed: int = 10_000_000,
        num_workers: int = 0,
    ):
        super().__init__(generator, size, params, batch_size, num_batches, val_count, seed, val_seed, num_workers)


# scikit-image's photographs that ship inside its wheel (no download). The three test images of
# the Figure-4 split (coffee, rocket, motorcycle) are left out, so that evaluations on them use a
# prior that never saw them; the gray textures (brick, grass, gravel) are left out because they
# swamped the samples of a short run.
BUNDLED_TRAINING_PHOTOS = (
    "astronaut.png", "camera.png", "chelsea.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "color.png",
)


class BundledPhotosDataModule(ImageFolderDataModule):
    """Random crops of the photographs bundled with scikit-image: the offline training set of the
    small natural-image prior shipped with fdem. Validation: the centre crop of ``val_file``
    (also trained on; the loss is only monitored)."""

    def __init__(self, resolution: int = 64, val_file: str = "chelsea.png", batch_size: int = 16, repeat: int = 1,
                 num_workers: int = 0, seed: int = 0):
        import skimage

        root = str(Path(skimage.__file__).parent / "data")
        super().__init__(root, resolution=resolution, crop="random", val_fraction=0.0, batch_size=batch_size,
                         num_workers=num_workers, repeat=repeat, seed=seed)
        self.hparams.update(root=root, crop="random", resize=None, channels=3, val_fraction=0.0)

    def setup(self, stage: str | None = None) -> None:
        root = Path(self.hparams.root)
        self.train_files = [root / name for name in BUNDLED_TRAINING_PHOTOS]
        missing = [f for f in self.train_files if not f.is_file()]
        if missing:
            raise InputError(f"scikit-image lacks bundled photographs: {', '.join(map(str, missing))}")
        self.val_files = [root / self.hparams.val_file]


class BSDS500DataModule(ImageFolderDataModule):
    """BSDS500 (Martin et al. 2001) for the shipped natural-image prior: random ``resolution`` crops
    (flips in the model) of ``train/`` + ``val/`` rescaled by a random factor in ``scales``; the
    centre crops of the first ``val_count`` images of ``test/`` (at ``val_scale``) only monitor the
    loss. ``root`` holds the three split folders of the dataset."""

    def __init__(self, root: str, resolution: int = 64, scales: tuple[float, float] = (0.3, 1.0), val_count: int = 16,
                 val_scale: float = 0.5, batch_size: int = 16, repeat: int = 1, num_workers: int = 0, seed: int = 0):
        super().__init__(root, resolution=resolution, crop="random", val_fraction=0.0, batch_size=batch_size,
                         num_workers=num_workers, repeat=repeat, seed=seed)
        if not 0 < scales[0] <= scales[1]:
            raise InputError(f"scales must be 0 < low <= high, got {scales}")
        self.hparams.update(scales=tuple(scales), val_count=val_count, val_scale=val_scale, channels=3, resize=None)

    def setup(self, stage: str | None = None) -> None:
        root = Path(self.hparams.root)
        folders = [root / name for name in ("train", "val", "test")]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise InputError(f"BSDS500 root {root} lacks the split folders {', '.join(missing)}")
        self.train_files = list_images(folders[0]) + list_images(folders[1])
        self.val_files = list_images(folders[2])[: self.hparams.val_count]

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        data = ImageFiles(self.train_files, h.resolution, "random", h.channels, None, h.repeat, h.scales)
        return self._loader(data, True)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return self._loader(ScaledCentreCrops(self.val_files, h.resolution, h.val_scale, h.channels), False)


class ScaledCentreCrops(Dataset):
    """The central ``resolution`` square of each file after resizing it by ``scale``."""

    def __init__(self, files: list[Path], resolution: int, scale: float, channels: int):
        self.files, self.resolution, self.scale, self.channels = files, resolution, scale, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        img = random_rescale(load_image(self.files[index], self.channels), (self.scale, self.scale))
        return center_crop(img, self.resolution, upscale=True).contiguous() * 2 - 1
