"""Image files in and out. Every image in fdem is a float32 ``(C, H, W)`` tensor in ``[0, 1]``.

Reading goes through Pillow (PNG, JPEG, TIFF, BMP and the rest of its formats), with two
exceptions where Pillow keeps only the high byte of each sample: 16-bit colour PNGs are
decoded by :mod:`fdem.png16`, 16-bit colour TIFFs by tifffile (a scikit-image
dependency). 16-bit gray PNG/TIFF goes through Pillow at full precision.

Conventions of the loader:
- alpha is dropped by :func:`load_image`, not composited over a background: the stored colour
  values are what a deblurring benchmark measures (FFHQ PNGs with an all-opaque alpha channel
  load as RGB); :func:`read_picture` returns it apart, with the file's bit depth;
- gray is replicated to three channels for ``channels=3``; ``channels=1`` turns RGB into
  luminance with the ITU-R BT.601 weights (0.299, 0.587, 0.114), in float;
- palette images are expanded through their palette; multi-frame files give their first
  frame; the EXIF orientation of a photograph is applied;
- float images (TIFF mode ``F``) are taken as already on the [0, 1] scale and clipped;
  32-bit integer images (Pillow mode ``I``) are read as 16-bit data, clipped to 65535.

Writers produce PNG only: 8-bit through Pillow, 16-bit through :mod:`fdem.png16`, because
Pillow cannot write 16-bit RGB; :func:`save_picture` adds an alpha channel. Every write goes to a temporary file in the
destination folder, then ``os.replace`` puts it in place, so an interrupted run never leaves
a half-written image under the final name.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from fdem.errors import InputError
from fdem.io_utils import atomic_path
from fdem.png16 import decode_png16, encode_png16, is_png16_colour

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

# Photographs that ship inside the scikit-image wheel (skimage/data/), so no download:
# (id, file name).
DEFAULT_IMAGES = (
    ("astronaut", "astronaut.png"),
    ("camera", "camera.png"),
    ("chelsea", "chelsea.png"),
    ("coffee", "coffee.png"),
    ("rocket", "rocket.jpg"),
    ("motorcycle", "motorcycle_left.png"),
)
# The built-in photographs that no shipped prior was trained on (evaluations and the demo use them).
HELD_OUT_IMAGES = ("coffee", "rocket", "motorcycle")

LUMA_BT601 = (0.299, 0.587, 0.114)

_GRAY_MODES = frozenset({"1", "L", "LA", "La"})
_FULL_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_TIFF_BITS_PER_SAMPLE = 258
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)


@dataclass(frozen=True)
class Picture:
    """An image file's content: ``colour (C, H, W)`` (C = 1 or 3) in [0, 1], ``alpha (1, H, W)``
    in [0, 1] or None, and ``bits``, the file's sample depth (8, or 16 for anything deeper)."""

    colour: torch.Tensor
    alpha: torch.Tensor | None
    bits: int


def load_image(path: str | os.PathLike, channels: int = 3) -> torch.Tensor:
    """Read an image file as a float32 ``(channels, H, W)`` tensor in [0, 1] (see the module notes).

    Raises InputError, naming the file, when it is missing, a folder, not an image or corrupt
    (a truncated file is caught here: the pixels are decoded before returning).
    """
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels} (loading {path})")
    return convert_channels(to_tensor(_drop_alpha(_decode(Path(path)))), channels)


def read_picture(path: str | os.PathLike) -> Picture:
    """Read an image file's colour, alpha and bit depth (errors as :func:`load_image`)."""
    array = _decode(Path(path))
    bits = 8 if array.dtype in (np.uint8, np.bool_) else 16
    has_alpha = array.ndim == 3 and array.shape[-1] in (2, 4)
    alpha = to_tensor(array[..., -1]) if has_alpha else None
    return Picture(to_tensor(_drop_alpha(array)), alpha, bits)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file or a ``.npy`` array ``(C, H, W)``, read from its header (nothing
    decoded, so it is cheap for any size); errors as :func:`load_image` for a bad header."""
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".npy":
        return tuple(_npy_shape(path)[-2:])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the caller checks sizes itself
            with Image.open(path) as im:
                width, height = im.size
    except Image.UnidentifiedImageError as exc:
        raise InputError(f"{path} is not an image file (unknown format or corrupt header)") from exc
    except _READ_ERRORS as exc:
        raise InputError(f"cannot read image {path}: {_reason(exc)}") from exc
    return height, width


def load_npy_image(path: str | os.PathLike) -> torch.Tensor:
    """A float ``(C, H, W)`` (C = 1 or 3) or ``(H, W)`` ``.npy`` array, as ``fdem blur`` writes its
    observations (unclipped: noise may leave [0, 1]), as a float32 ``(C, H, W)`` tensor."""
    path = Path(path)
    _npy_shape(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {_reason(exc)}") from exc
    if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
        raise InputError(f"{path}: expected finite numbers, got {array.dtype} with non-finite or non-numeric values")
    array = array[None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The shape of a ``.npy`` file from its header, checked to be ``(H, W)`` or ``(C, H, W)``, C = 1 or 3."""
    _check_file(path)
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape  # maps the file, reads the header
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise InputError(f"{path} is not a .npy array file: {_reason(exc)}") from exc
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] not in (1, 3)) or 0 in shape:
        raise InputError(f"{path}: expected an (H, W) or (C, H, W) array with C = 1 or 3, got shape {shape}")
    return shape


def _check_file(path: Path) -> None:
    """InputError unless ``path`` is an existing file."""
    if not path.exists():
        raise InputError(f"image file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file")


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _decode(path: Path) -> np.ndarray:
    """:func:`_read_array` with every failure turned into an :class:`InputError` naming ``path``."""
    _check_file(path)
    try:
        return _read_array(path)
    except Image.UnidentifiedImageError as exc:
        raise InputError(f"{path} is not an image file (unknown format or corrupt header)") from exc
    except _READ_ERRORS as exc:
        raise InputError(f"cannot read image {path}: {_reason(exc)}") from exc


def _read_array(path: Path) -> np.ndarray:
    """Decode a file to an (H, W) or (H, W, S) array of its native sample type."""
    with Image.open(path) as im:
        if im.format == "PNG" and is_png16_colour(path):
            return decode_png16(path.read_bytes())
        if im.format == "TIFF" and im.mode not in _FULL_DEPTH_MODES and _tiff_bits(im) > 8:
            return _read_tiff(path)
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in _GRAY_MODES:
            im = im.convert("LA" if "A" in im.mode or "a" in im.mode else "L")  # alpha kept for read_picture
        elif im.mode in ("P", "PA"):
            im = im.convert("RGBA")  # through RGBA: Pillow warns on palette transparency otherwise
        elif im.mode not in _FULL_DEPTH_MODES | {"RGB", "RGBA"}:
            im = im.convert("RGB")
        array = np.asarray(im)
        return np.clip(array, 0, 65535).astype(np.uint16) if im.mode == "I" else array


def _drop_alpha(array: np.ndarray) -> np.ndarray:
    """Keep gray or RGB samples: (H, W, 2) -> (H, W), (H, W, 4) -> (H, W, 3)."""
    if array.ndim == 2 or array.shape[-1] == 3:
        return array
    if array.ndim == 3 and array.shape[-1] in (1, 2):
        return array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 4:
        return array[..., :3]
    raise ValueError(f"unsupported pixel layout {array.shape}")


def _tiff_bits(im: Image.Image) -> int:
    """Largest BitsPerSample of a TIFF (8 when the tag is absent)."""
    return int(np.max(im.tag_v2.get(_TIFF_BITS_PER_SAMPLE, 8)))


def _read_tiff(path: Path) -> np.ndarray:
    """First page of a TIFF through tifffile, samples last."""
    import tifffile  # installed with scikit-image; only needed for high-depth colour TIFFs

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        array = page.asarray()
        return np.moveaxis(array, 0, -1) if page.axes.startswith("S") else array


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) array -> float32 (C, H, W) in [0, 1].

    Unsigned integers are divided by their type's maximum (255, 65535), bools map to 0/1,
    floats are clipped to [0, 1].
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {array.shape}")
    if array.dtype == np.bool_:
        scaled = array.astype(np.float32)
    elif array.dtype.kind == "u":
        scaled = array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    elif array.dtype.kind == "f":
        scaled = np.clip(array, 0.0, 1.0).astype(np.float32)
    else:
        raise ValueError(f"unsupported pixel type {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def convert_channels(img: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., C, H, W) with C in {1, 3} -> `channels` channels: gray replicated, RGB to BT.601 luminance."""
    have = img.shape[-3]
    if have == channels:
        return img
    if have == 1 and channels == 3:
        return torch.cat([img] * 3, dim=-3)
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA_BT601, dtype=img.dtype, device=img.device).view(3, 1, 1)
        return (img * weights).sum(dim=-3, keepdim=True)
    raise ValueError(f"cannot convert {have} channels to {channels}")


def center_crop(img: torch.Tensor, size: int | tuple[int, int], upscale: bool = False) -> torch.Tensor:
    """Central ``size`` (int or (h, w)) window of a float (..., H, W) tensor, as a view.

    An image smaller than the window raises InputError, unless ``upscale``: then it is first
    enlarged (bicubic, aspect ratio kept, clamped to [0, 1]) until it covers the window.
    """
    h, w = (size, size) if isinstance(size, int) else size
    height, width = img.shape[-2:]
    if upscale and (height < h or width < w):
        scale = max(h / height, w / width)
        new_size = (max(h, round(height * scale)), max(w, round(width * scale)))
        flat = img.reshape(-1, 1, height, width).float()
        flat = F.interpolate(flat, size=new_size, mode="bicubic", align_corners=False).clamp(0.0, 1.0)
        img = flat.reshape(*img.shape[:-2], *new_size).to(img.dtype)
        height, width = new_size
    if height < h or width < w:
        raise InputError(f"cannot crop a {height}x{width} image to {h}x{w}")
    top, left = (height - h) // 2, (width - w) // 2
    return img[..., top:top + h, left:left + w]


def default_images(size: int = 256, channels: int = 3) -> list[tuple[str, torch.Tensor]]:
    """The built-in test photographs as (id, (channels, size, size) tensor), in a fixed order.

    They are files inside the installed scikit-image package, read directly (never
    downloaded); each is centre-cropped, after a bicubic enlargement if its short side is
    smaller than ``size``.
    """
    return [(name, center_crop(builtin_image(name, channels), size, upscale=True).contiguous()) for name, _ in DEFAULT_IMAGES]


def builtin_image(name: str, channels: int = 3) -> torch.Tensor:
    """The built-in photograph ``name`` (of :data:`DEFAULT_IMAGES`) at its full size, ``(channels, H, W)``."""
    files = dict(DEFAULT_IMAGES)
    if name not in files:
        raise InputError(f"unknown built-in image {name!r}: choose one of {', '.join(files)}")
    return load_image(Path(str(resources.files("skimage"))) / "data" / files[name], channels)


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files (by extension, any case) under ``folder``, sorted by relative path.

    Hidden files and folders (name starting with '.') are skipped. Raises InputError when the
    folder does not exist, is not a folder, or holds no image.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = [
        p for p in candidates
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    ]
    if not found:
        kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputError(f"no images ({kinds}) in folder {folder}" + ("" if recursive else " (not searching subfolders)"))
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def save_image(path: str | os.PathLike, img: torch.Tensor) -> None:
    """Write a (C, H, W) (C = 1 or 3) or (H, W) image in [0, 1] as an 8-bit PNG.

    Values are clamped to [0, 1] (NaN becomes 0) and rounded; parent folders are created;
    the write is atomic (see the module notes).
    """
    _write_png(Path(path), _quantise(path, img, np.uint8))


def save_image16(path: str | os.PathLike, img: torch.Tensor) -> None:
    """Like `save_image`, as a 16-bit gray or RGB PNG (values kept to 1/65535)."""
    _write_png(Path(path), _quantise(path, img, np.uint16))


def save_picture(path: str | os.PathLike, colour: torch.Tensor, alpha: torch.Tensor | None = None, bits: int = 8) -> None:
    """Like `save_image`, with an optional ``alpha (1, H, W)`` (gray+alpha or RGBA PNG) and ``bits``
    8 or 16: what :func:`read_picture` returns, written back."""
    if bits not in (8, 16):
        raise InputError(f"cannot save {path}: bits must be 8 or 16, got {bits}")
    samples = (1, 3)
    if alpha is not None:
        colour = torch.as_tensor(colour).detach().cpu().float()
        colour = torch.cat([colour, torch.as_tensor(alpha).detach().cpu().float().reshape(1, *colour.shape[-2:])])
        samples = (2, 4)
    _write_png(Path(path), _quantise(path, colour, np.uint8 if bits == 8 else np.uint16, samples))


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write quantised samples ``(H, W)`` or ``(H, W, S)``: 8-bit through Pillow, 16-bit through :mod:`fdem.png16`."""
    if array.dtype == np.uint16:
        data = encode_png16(array)
        _write_atomically(path, lambda f: f.write(data))
    else:
        _write_atomically(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def _quantise(path: str | os.PathLike, img: torch.Tensor, dtype: type, samples: tuple[int, ...] = (1, 3)) -> np.ndarray:
    """(C, H, W) (C in ``samples``) or (H, W) float image -> (H, W) or (H, W, C) integers of `dtype`,
    clamped and rounded."""
    img = torch.as_tensor(img).detach().cpu().float()
    if img.ndim == 3 and img.shape[0] in samples:
        img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
    elif img.ndim != 2 or 1 not in samples:
        allowed = " or ".join(map(str, samples))
        raise InputError(f"cannot save {path}: expected a (C, H, W) image with C = {allowed}, or (H, W); got {tuple(img.shape)}")
    scale = float(np.iinfo(dtype).max)
    return torch.nan_to_num(img, nan=0.0).clamp(0.0, 1.0).mul(scale).round().numpy().astype(dtype)


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a PNG through ``write`` into a temporary sibling, then rename it into place."""
    if path.suffix.lower() != ".png":
        raise InputError(f"cannot save {path}: images are written as PNG, use a .png file name")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)