"""Image files in and out. Every image in fdem is a float32 ``(C, H, W)`` tensor in ``[0, 1]``.

Reading goes through Pillow (PNG, JPEG, TIFF, BMP and the rest of its formats), with two
exceptions where Pillow keeps only the high byte of each sample: 16-bit colour PNGs are
decoded by the small PNG decoder below, 16-bit colour TIFFs by tifffile (a scikit-image
dependency). 16-bit gray PNG/TIFF goes through Pillow at full precision.

Conventions of the loader:
- alpha is dropped, not composited over a background: the stored colour values are what a
  deblurring benchmark measures (FFHQ PNGs with an all-opaque alpha channel load as RGB);
- gray is replicated to three channels for ``channels=3``; ``channels=1`` turns RGB into
  luminance with the ITU-R BT.601 weights (0.299, 0.587, 0.114), in float;
- palette images are expanded through their palette; multi-frame files give their first
  frame; the EXIF orientation of a photograph is applied;
- float images (TIFF mode ``F``) are taken as already on the [0, 1] scale and clipped;
  32-bit integer images (Pillow mode ``I``) are read as 16-bit data, clipped to 65535.

Writers produce PNG only: 8-bit through Pillow, 16-bit (gray or RGB) through the encoder
below, because Pillow cannot write 16-bit RGB. Every write goes to a temporary file in the
destination folder, then ``os.replace`` puts it in place, so an interrupted run never leaves
a half-written image under the final name.
"""

from __future__ import annotations

import os
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from fdem.errors import InputError
from fdem.io_utils import atomic_path

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
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG16_COLOUR_SAMPLES = {2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (RGB, gray+alpha, RGBA)
_TIFF_BITS_PER_SAMPLE = 258
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)


def load_image(path: str | os.PathLike, channels: int = 3) -> torch.Tensor:
    """Read an image file as a float32 ``(channels, H, W)`` tensor in [0, 1] (see the module notes).

    Raises InputError, naming the file, when it is missing, a folder, not an image or corrupt
    (a truncated file is caught here: the pixels are decoded before returning).
    """
    path = Path(path)
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels} (loading {path})")
    if not path.exists():
        raise InputError(f"image file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file")
    try:
        image = to_tensor(_drop_alpha(_read_array(path)))
    except Image.UnidentifiedImageError as exc:
        raise InputError(f"{path} is not an image file (unknown format or corrupt header)") from exc
    except _READ_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read image {path}: {reason}") from exc
    return convert_channels(image, channels)


def _read_array(path: Path) -> np.ndarray:
    """Decode a file to an (H, W) or (H, W, S) array of its native sample type."""
    with Image.open(path) as im:
        if im.format == "PNG" and _is_png16_colour(path):
            return _decode_png16(path.read_bytes())
        if im.format == "TIFF" and im.mode not in _FULL_DEPTH_MODES and _tiff_bits(im) > 8:
            return _read_tiff(path)
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in _GRAY_MODES:
            im = im.convert("L")
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


def _is_png16_colour(path: Path) -> bool:
    """Whether a PNG stores 16-bit colour samples (IHDR bit depth 16, colour type 2, 4 or 6)."""
    with open(path, "rb") as f:
        head = f.read(29)
    return len(head) == 29 and head[24] == 16 and head[25] in _PNG16_COLOUR_SAMPLES


def _decode_png16(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 16-bit colour PNG to an (H, W, S) big-endian uint16 array."""
    width, height, _, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if interlace:
        raise ValueError("interlaced 16-bit colour PNGs are not supported; save it without interlacing")
    chunks, pos = [], len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    samples = _PNG16_COLOUR_SAMPLES[colour]
    bpp = 2 * samples
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), np.uint8)
    if raw.size != height * (stride + 1):
        raise ValueError(f"PNG image data holds {raw.size} bytes, expected {height * (stride + 1)}")
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height + 1, stride), np.uint8)  # row 0: the zero row above the image
    for y in range(height):
        out[y + 1] = _unfilter(rows[y, 0], rows[y, 1:], out[y], bpp)
    return out[1:].view(">u2").reshape(height, width, samples)


def _unfilter(kind: int, line: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one PNG row filter (None, Sub, Up, Average, Paeth) given the decoded row above."""
    if kind == 0:
        return line
    if kind == 1:
        return np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
    if kind == 2:
        return line + up
    if kind in (3, 4):
        return _unfilter_sequential(kind == 4, line, up, bpp)
    raise ValueError(f"bad PNG filter type {kind}")


def _unfilter_sequential(paeth: bool, line: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    """Average or Paeth: each byte depends on the decoded byte to its left, so loop (pure Python)."""
    cur = bytearray(bpp + line.size)  # bpp zero bytes left of the row
    above = bytes(bpp) + up.tobytes()
    for i, byte in enumerate(line.tobytes()):
        a, b, c = cur[i], above[i + bpp], above[i]
        if paeth:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        else:
            pred = (a + b) >> 1
        cur[i + bpp] = (byte + pred) & 0xFF
    return np.frombuffer(bytes(cur[bpp:]), np.uint8)


def _encode_png16(array: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, 3) uint16 array as a 16-bit gray or RGB PNG (rows Sub-filtered)."""
    height, width = array.shape[:2]
    samples = 1 if array.ndim == 2 else array.shape[2]
    bpp = 2 * samples
    rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, width * bpp)
    filtered = rows.copy()
    filtered[:, bpp:] -= rows[:, :-bpp]
    data = np.hstack([np.ones((height, 1), np.uint8), filtered]).tobytes()  # 1 = Sub filter
    header = struct.pack(">IIBBBBB", width, height, 16, 0 if samples == 1 else 2, 0, 0, 0)
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(data)) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC of type and body."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


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
    folder = Path(str(resources.files("skimage"))) / "data"
    return [
        (name, center_crop(load_image(folder / file, channels), size, upscale=True).contiguous())
        for name, file in DEFAULT_IMAGES
    ]


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
    array = _quantise(path, img, np.uint8)

    def write(f: BinaryIO) -> None:
        Image.fromarray(array).save(f, format="PNG")

    _write_atomically(Path(path), write)


def save_image16(path: str | os.PathLike, img: torch.Tensor) -> None:
    """Like `save_image`, as a 16-bit gray or RGB PNG (values kept to 1/65535)."""
    data = _encode_png16(_quantise(path, img, np.uint16))
    _write_atomically(Path(path), lambda f: f.write(data))


def _quantise(path: str | os.PathLike, img: torch.Tensor, dtype: type) -> np.ndarray:
    """(C, H, W) or (H, W) float image -> (H, W) or (H, W, 3) integers of `dtype`, clamped and rounded."""
    img = torch.as_tensor(img).detach().cpu().float()
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
    elif img.ndim != 2:
        raise InputError(f"cannot save {path}: expected a (C, H, W) image with C = 1 or 3, or (H, W); got {tuple(img.shape)}")
    scale = float(np.iinfo(dtype).max)
    return torch.nan_to_num(img, nan=0.0).clamp(0.0, 1.0).mul(scale).round().numpy().astype(dtype)


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a PNG through ``write`` into a temporary sibling, then rename it into place."""
    if path.suffix.lower() != ".png":
        raise InputError(f"cannot save {path}: images are written as PNG, use a .png file name")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)