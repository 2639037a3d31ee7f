"""Blur benchmarks: sharp images × blur kernels × noise levels → (sharp, blurry, kernel, σ) samples.

Sample order. With N listed images, R = ``kernels_per_image`` and the σ list in the order given,
the *grid index* of (σ number s, image number i, repetition r) is ``(s·N + i)·R + r``: all images
at the first σ, then at the second, and so on. Image i gets kernel ``i·R + r`` at every σ. An image
skipped at setup (unreadable) leaves a hole: the others keep their index, kernel and noise, so a
damaged file changes nothing else. The dataset enumerates the remaining grid in the same order.

Observation. ``y = k ⊛ x + σ·n``: circular FFT blur (:func:`fdem.physics.blur`) of the crop
(``blur="circular"``, the default), or, with ``blur="scene"``, blur of a crop larger by the kernel's
radius ``k//2`` on every side whose centre is kept, as a camera's frame mixes in the scene beyond it
(no wrap-around: what a deblurring method meets in a photograph). Gaussian noise drawn from
``torch.Generator().manual_seed(seed + index)``, so a sample depends only on its index (1 and N
processes, any batch size or order give the same observations). The sharp image is
8-bit quantised first (``quantize``, as the authors did); the observation is not clipped, except with
``lights`` > 0: that many bright lamps (:func:`fdem.saturation.add_point_lights`, drawn from the
sample's generator before the noise) are added to the scene, the observation is clipped to ``[0, 1]``
as a camera clips it, and the sharp image is the clipped scene. With ``linear_light`` the scene is
blurred in linear light, as a camera blurs it (sRGB-decoded, blurred, encoded back, clipped to
``[0, 1]`` by the encoding; :mod:`fdem.linear_light`), and the noise is added to the encoded values.
With ``kernel_grid: GxG`` the blur varies across the frame: each sample's kernel is a camera-shake field
with roll (:class:`fdem.kernels_gen.field.CameraShakeField`, ``(G·G, k, k)``), applied by product
convolution (:mod:`fdem.kernel_field`) with the grid laid on the frame.

Images. Read once at setup to check them (a damaged file is skipped and listed in ``skipped``).
They stay in memory when small (at most ``CACHE_BYTES`` per process, as uint8 when quantised:
1000 FFHQ-256 images take 197 MB); otherwise each is decoded again in ``__getitem__``.
``size`` resizes the short side to ``size`` (bicubic, antialiased) and crops the centre square;
with ``scale`` the image is resized by that fixed factor instead, so that crops of photographs of
any size show the scene at one zoom (the crops of the studies, ``studies.common.crops``). With
``blur="scene"`` the crop kept is the scene, the frame plus the kernel's radius on every side.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fdem.datamodules.images import rescale, resize_short_side
from fdem.errors import InputError
from fdem.imageio import DEFAULT_IMAGES, HELD_OUT_IMAGES, builtin_image, center_crop, list_images, load_image
from fdem.kernel_field import parse_grid, scene_field_blur
from fdem.physics import add_noise, blur
from fdem.linear_light import to_linear, to_srgb
from fdem.saturation import add_point_lights
from fdem.testcases import open_testcases
from fdem.validate import check_float, check_sigma
from fdem.kernels_gen import GENERATORS, load_bank, make_generator
from fdem.kernels_gen.field import CameraShakeField

BUNDLED = "bundled"  # every built-in photograph (fdem.imageio.default_images)
BUNDLED_HELD_OUT = "bundled-held-out"  # only those no shipped prior was trained on (HELD_OUT_IMAGES)
BUNDLED_SIZE = 256  # the photographs bundled with scikit-image differ in size: crop them to this by default
PAPER_SIGMAS = (5.0, 10.0, 20.0)
DEFAULT_KERNEL_SIZE = 33
CACHE_BYTES = 256 * 2**20
BLURS = ("circular", "scene")  # how the observation is made (module notes)


def quantize8(img: Tensor) -> Tensor:
    """Round to the 8-bit grid (values in [0, 1] stay in [0, 1])."""
    return (img * 255).round() / 255


@dataclass
class ImageEntry:
    """One usable image: its id, its position in the listing, and its pixels or file. ``shape`` is the
    sample's (the frame's, without the scene's margin)."""

    image_id: str
    position: int
    shape: tuple[int, int]
    path: Path | None = None
    pixels: Tensor | None = None  # uint8 when quantised, else float32; None: decode from path


class BlurBenchmarkDataset(Dataset):
    """The samples of a benchmark (see the module notes for the order and the noise). ``size`` and
    ``scale`` make the stored crop (:func:`prepare_image`); with ``blur="scene"`` it is larger than
    the sample's frame (``ImageEntry.shape``): blurred whole, then cut to the frame."""

    def __init__(self, images: list[ImageEntry], num_listed: int, kernels: Tensor, sigmas255: list[float],
                 kernels_per_image: int, seed: int, size: int | None, quantize: bool, scale: float | None = None,
                 lights: int = 0, linear_light: bool = False):
        self.images, self.num_listed, self.kernels, self.lights = images, num_listed, kernels, lights
        self.linear_light = linear_light
        self.sigmas255, self.reps, self.seed = list(sigmas255), kernels_per_image, seed
        self.size, self.quantize, self.scale = size, quantize, scale

    def __len__(self) -> int:
        return len(self.sigmas255) * len(self.images) * self.reps

    def locate(self, i: int) -> tuple[int, ImageEntry, int, int]:
        """Dataset position → (σ number, image entry, repetition, grid index)."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range (dataset of {len(self)})")
        s, rest = divmod(i, len(self.images) * self.reps)
        u, r = divmod(rest, self.reps)
        entry = self.images[u]
        return s, entry, r, (s * self.num_listed + entry.position) * self.reps + r

    def sharp(self, entry: ImageEntry) -> Tensor:
        if entry.pixels is not None:
            return entry.pixels.float() / 255 if entry.pixels.dtype == torch.uint8 else entry.pixels
        return prepare_image(load_image(entry.path), self.size, self.quantize, self.scale)

    @staticmethod
    def blur(scene: Tensor, kernel: Tensor, entry: "ImageEntry") -> Tensor:
        """``scene (C, S, S)`` blurred by ``kernel (1, k, k)``, or by a field ``(M, k, k)`` whose grid
        (square) is laid on the frame at the scene's centre (:func:`fdem.kernel_field.scene_field_blur`)."""
        if kernel.shape[0] == 1:
            return blur(scene[None], kernel[None])[0]
        side = math.isqrt(kernel.shape[0])
        margin = ((scene.shape[-2] - entry.shape[-2]) // 2, (scene.shape[-1] - entry.shape[-1]) // 2)
        return scene_field_blur(scene[None], kernel[None], (side, side), (margin, tuple(entry.shape[-2:])))[0]

    def __getitem__(self, i: int) -> dict:
        s, entry, r, index = self.locate(i)
        scene = self.sharp(entry)
        kernel_id = (entry.position * self.reps + r) % len(self.kernels)
        kernel = self.kernels[kernel_id]
        sigma255 = float(self.sigmas255[s])
        sigma = sigma255 / 255
        generator = torch.Generator().manual_seed(self.seed + index)
        if self.lights:
            margin = (scene.shape[-1] - entry.shape[-1]) // 2 + kernel.shape[-1] // 2
            scene = add_point_lights(scene, self.lights, margin, generator)
        blurred = to_srgb(self.blur(to_linear(scene), kernel, entry)) if self.linear_light else self.blur(scene, kernel, entry)
        sharp, blurred = (center_crop(t, entry.shape).contiguous() for t in (scene, blurred))  # the frame
        y = add_noise(blurred[None], sigma, generator=generator)[0]
        if self.lights:
            sharp, y = sharp.clamp(0, 1), y.clamp(0, 1)
        return {"index": index, "image_id": entry.image_id, "sharp": sharp, "y": y, "kernel": kernel,
                "kernel_id": kernel_id, "sigma": sigma, "sigma255": sigma255, "seed": self.seed + index}


class TestcaseDataset(Dataset):
    """Fixed test cases (:func:`fdem.testcases.open_testcases`) as benchmark samples."""

    __test__ = False  # not a pytest test class

    def __init__(self, cases):
        self.cases = cases

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict:
        return self.cases[i]


def prepare_image(img: Tensor, size: int | None, quantize: bool, scale: float | None = None) -> Tensor:
    """Resize and centre-crop to ``size`` (if given), then quantise (if asked). Without ``scale`` the
    short side is resized to ``size``; with it the image is resized by that factor and its centre
    ``size`` square kept (enlarged first if smaller, as ``studies.common.crops`` does)."""
    if scale is not None:
        img = rescale(img, scale)
        img = img if size is None else center_crop(img, size, upscale=True).contiguous()
    elif size is not None:
        img = center_crop(resize_short_side(img, size), size).contiguous()
    return quantize8(img) if quantize else img


def _check_int(value, name: str, low: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(f"{name} must be an integer >= {low}{' or null' if none_ok else ''}, got {value!r}")


def _check_sigmas(sigmas) -> list[float]:
    values = [sigmas] if isinstance(sigmas, (int, float)) else list(sigmas)
    if not values:
        raise InputError("sigmas must list at least one noise level (255 scale, e.g. [5, 10, 20])")
    check_sigma(values, "sigmas (255 scale)")
    return [float(v) for v in values]


class BlurBenchmarkDataModule(L.LightningDataModule):
    """A blur benchmark for ``trainer.predict`` / ``trainer.test``: images × kernels × σ, or fixed test cases.

    ``images``: a folder (every image under it, sorted by path), ``"bundled"`` (scikit-image's
    photographs, centre-cropped to ``size`` or 256) or ``"bundled-held-out"`` (only the three that
    no shipped prior saw in training); ``num_images`` keeps the first N (the FFHQ protocol:
    00000–00999). ``kernels``: a ``kernels_gen`` generator name (``kernel_size``, default 33,
    ``kernel_params``, ``kernel_seed``; kernel j of the bank depends only on (kernel_seed, j)) or a
    kernel-bank file or folder (:func:`fdem.kernels_gen.load_bank`, padded to ``kernel_size`` if given;
    a bank with too few kernels is reused cyclically). ``sigmas`` on the 255 scale (default
    5, 10, 20). ``scale`` in [0.05, 1]: resize each image by this factor and crop the centre ``size``
    square (default: resize the short side to ``size``), so that every crop shows the scene at one
    zoom. ``blur``: ``circular`` (default) or ``scene``, the camera's blur (module notes); the image
    must then hold the frame and the kernel's radius around it. ``testcases``: our exported folder
    or the authors' pickle(s) instead of images, kernels and σ. Each sample is a dict (see
    :class:`BlurBenchmarkDataset`), default-collated.
    """

    def __init__(
        self,
        images: str | None = None,
        num_images: int | None = None,
        size: int | None = None,
        scale: float | None = None,
        blur: str = "circular",
        kernels: str = "camera-shake",
        kernel_size: int | None = None,
        kernel_params: dict | None = None,
        kernel_seed: int = 0,
        kernels_per_image: int = 1,
        sigmas: list[float] | None = None,
        seed: int = 0,
        testcases: str | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        quantize: bool = True,
        lights: int = 0,
        linear_light: bool = False,
        kernel_grid: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if (images is None) == (testcases is None):
            raise InputError("give exactly one of images (a folder or 'bundled') and testcases")
        for name, value, low in (("num_images", num_images, 1), ("size", size, 1), ("kernel_size", kernel_size, 3)):
            _check_int(value, name, low, none_ok=True)
        for name, value, low in (("kernel_seed", kernel_seed, 0), ("kernels_per_image", kernels_per_image, 1), ("lights", lights, 0),
                                 ("seed", seed, 0), ("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            _check_int(value, name, low)
        self.sigmas255 = _check_sigmas(PAPER_SIGMAS if sigmas is None else sigmas)
        if scale is not None:
            check_float(scale, "scale", 0.05, 1)
        if blur not in BLURS:
            raise InputError(f"blur must be one of {', '.join(BLURS)}, got {blur!r}")
        if testcases is not None and (scale is not None or blur != "circular"):
            raise InputError("scale and blur apply to images: test cases bring their own observations")
        self.generator = None
        grid = None if kernel_grid is None else parse_grid(kernel_grid)
        if grid is not None and (grid[0] != grid[1] or kernels != "camera-shake" or size is None or testcases is not None):
            raise InputError(f"kernel_grid {kernel_grid!r}: kernel fields are square grids of the camera-shake generator "
                             "(kernels: camera-shake) on images of a given size")
        if grid is not None:
            self.generator = CameraShakeField(kernel_size or DEFAULT_KERNEL_SIZE, grid, (size, size), **(kernel_params or {}))
        elif testcases is None and kernels in GENERATORS:
            self.generator = make_generator(kernels, kernel_size or DEFAULT_KERNEL_SIZE, **(kernel_params or {}))
        elif testcases is None:
            if not isinstance(kernels, str) or not Path(kernels).exists():
                raise InputError(f"kernels: {kernels!r} is neither a kernel generator ({', '.join(GENERATORS)}) "
                                 "nor an existing kernel-bank file or folder")
            if kernel_params:
                raise InputError(f"kernel_params apply to a generator, not to the bank file {kernels}")
        self.dataset: Dataset | None = None
        self.skipped: list[tuple[str, str]] = []
        self.num_listed = 0

    # --- setup ---

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        h = self.hparams
        if h.testcases is not None:
            self.dataset = TestcaseDataset(open_testcases(h.testcases))
            return
        bank = None if self.generator is not None else load_bank(h.kernels, size=h.kernel_size)
        k = self.generator.size if bank is None else bank.shape[-1]
        margin = k // 2 if h.blur == "scene" else 0  # the scene around the frame that the kernel reaches
        side = None if h.size is None else h.size + 2 * margin  # of the crop kept: the frame and that margin
        entries = self._read_images(side, margin)
        kernels = self.generator.sample(self.num_listed * h.kernels_per_image, seed=h.kernel_seed) if bank is None else bank
        self._check_shapes(entries, k, margin)
        self.dataset = BlurBenchmarkDataset(entries, self.num_listed, kernels, self.sigmas255, h.kernels_per_image,
                                            h.seed, side, h.quantize, h.scale, h.lights, bool(h.linear_light))

    def _read_images(self, side: int | None, margin: int) -> list[ImageEntry]:
        """Read every listed image once: keep the good ones (in memory if small), record the bad.
        Each is cropped to ``side`` (the frame with ``margin`` pixels of scene around it, ``blur="scene"``)."""
        h = self.hparams
        frame = lambda img: (img.shape[-2] - 2 * margin, img.shape[-1] - 2 * margin)  # noqa: E731
        if h.images in (BUNDLED, BUNDLED_HELD_OUT):
            names = [name for name, _ in DEFAULT_IMAGES if h.images == BUNDLED or name in HELD_OUT_IMAGES][: h.num_images]
            side = side or BUNDLED_SIZE + 2 * margin  # these photos differ in size: always cropped
            photos = [builtin_image(name) for name in names]
            if h.scale is None:  # cropped, not resized (enlarged only if smaller than the crop)
                photos = [center_crop(img, side, upscale=True) for img in photos]
            photos = [prepare_image(img, side, h.quantize, h.scale) for img in photos]
            self.num_listed = len(names)
            return [ImageEntry(name, j, frame(img), pixels=img) for j, (name, img) in enumerate(zip(names, photos))]
        root = Path(h.images)
        try:
            files = list_images(root)
        except InputError as err:
            raise InputError(f"images: {err}") from err
        if h.num_images is not None and len(files) < h.num_images:
            rank_zero_warn(f"images: asked for {h.num_images} images, {root} holds {len(files)}")
        files = files[: h.num_images]
        self.num_listed = len(files)
        entries, self.skipped, nbytes, caching = [], [], 0, True
        for position, path in enumerate(files):
            try:
                img = prepare_image(load_image(path), side, h.quantize, h.scale)
            except InputError as err:
                self.skipped.append((str(path), str(err).splitlines()[0]))
                continue
            pixels = (img * 255).round().to(torch.uint8) if h.quantize else img
            nbytes += pixels.numel() * pixels.element_size()
            if caching and nbytes > CACHE_BYTES:  # too big to hold: decode in __getitem__ instead
                caching = False
                for entry in entries:
                    entry.pixels = None
            image_id = path.relative_to(root).with_suffix("").as_posix()
            entries.append(ImageEntry(image_id, position, frame(img), path=path,
                                      pixels=pixels if caching else None))
        if not entries:
            raise InputError(f"images: none of the {len(files)} files in {root} is readable "
                             f"(first: {self.skipped[0][1]})")
        if self.skipped:
            more = f" (and {len(self.skipped) - 1} more, listed in .skipped)" if len(self.skipped) > 1 else ""
            rank_zero_warn(f"skipping unreadable image {self.skipped[0][0]}: {self.skipped[0][1]}{more}")
        return entries

    def _check_shapes(self, entries: list[ImageEntry], k: int, margin: int) -> None:
        """Kernels must fit every frame (with ``blur="scene"``, the image less ``margin`` on every side);
        a batch needs images of one size."""
        shapes: dict[tuple[int, int], ImageEntry] = {}
        for entry in entries:
            shapes.setdefault(entry.shape, entry)
        for (height, width), entry in shapes.items():
            if k > min(height, width):
                where = entry.path or entry.image_id
                size = f"{height}x{width}"
                if margin:
                    size = (f"{height + 2 * margin}x{width + 2 * margin}, "
                            f"less the {margin}-pixel margin that blur 'scene' keeps on every side")
                raise InputError(f"kernel_size: kernels of {k}x{k} are larger than image {where} ({size})")
        if len(shapes) > 1 and self.hparams.batch_size > 1:
            listed = ", ".join(f"{e.path or e.image_id} {s[0]}x{s[1]}" for s, e in list(shapes.items())[:2])
            raise InputError(f"batch_size {self.hparams.batch_size} needs images of one size, found {listed}; "
                             "set size or batch_size 1")

    # --- loaders and summary ---

    def _loader(self) -> DataLoader:
        if self.dataset is None:
            self.setup("predict")
        h = self.hparams
        return DataLoader(self.dataset, batch_size=h.batch_size, shuffle=False, num_workers=h.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def samples_summary(self) -> str:
        """One line: how many images, kernels and noise levels make how many samples."""
        if self.dataset is None:
            self.setup("predict")
        h, n = self.hparams, len(self.dataset)
        if h.testcases is not None:
            return f"{n} test case{'s' * (n != 1)} from {h.testcases}"
        images, reps, sig = len(self.dataset.images), h.kernels_per_image, len(self.sigmas255)
        line = (f"{images} image{'s' * (images != 1)} × {reps} kernel{'s' * (reps != 1)} × "
                f"{sig} σ = {n} sample{'s' * (n != 1)}")
        return line + (f" ({len(self.skipped)} unreadable image{'s' * (len(self.skipped) != 1)} skipped)"
                       if self.skipped else "")
