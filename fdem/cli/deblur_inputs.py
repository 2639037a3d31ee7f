"""``fdem deblur``'s inputs: files, folders and glob patterns expanded, headers probed, images decoded
(downscaled to ``--max-side`` when asked); an unreadable input is skipped with one warning line."""

from __future__ import annotations

import glob
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fdem.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

GLOB_CHARACTERS = frozenset("*?[")


@dataclass
class Observation:
    """A blurry input: ``image (3, H, W)`` (``.npy``: unclipped); ``gray`` if its channels are equal;
    the file's ``alpha (1, H, W)`` (or None) and ``bits`` (8 or 16), given back to the output."""

    path: Path
    image: Tensor
    gray: bool
    alpha: Tensor | None = None
    bits: int = 8


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given, folders as their images (sorted, not recursive), glob patterns as their sorted
    matches; each file once, in order. A pattern matching nothing is an :class:`InputError`."""
    from fdem.imageio import list_images

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += list_images(path, recursive=False)
        elif not path.exists() and GLOB_CHARACTERS & set(item):
            matches = sorted(Path(m) for m in glob.glob(item) if Path(m).is_file())
            if not matches:
                raise InputError(f"no file matches {item!r}")
            paths += matches
        else:
            paths.append(path)
    return list(dict.fromkeys(paths))


def probe_inputs(paths: list[Path], kernel_size: int) -> tuple[list[tuple[Path, tuple[int, int]]], list[tuple[str, str]]]:
    """``(readable, skipped)``: each input's ``(path, (H, W))`` read from its header, and the
    ``(path, reason)`` of those that are not images (one warning each). Outputs named alike, a kernel
    larger than an image or no readable input at all are an :class:`InputError`."""
    from fdem.imageio import image_size

    stems = [p.stem for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise InputError(f"several inputs are named {', '.join(duplicates)}: their outputs would overwrite each other")
    readable, skipped = [], []
    for path in paths:
        try:
            size = image_size(path)
        except InputError as err:
            skip(path, err, skipped)
            continue
        if kernel_size > min(size):
            raise InputError(f"kernel of size {kernel_size}x{kernel_size} is larger than image {path} ({size[0]}x{size[1]})")
        readable.append((path, size))
    if not readable:
        raise InputError(f"none of the {len(paths)} input(s) is a readable image (first: {skipped[0][1]})")
    return readable, skipped


def skip(path: Path, err: Exception, skipped: list[tuple[str, str]]) -> None:
    """Record an unreadable input and warn about it on one line."""
    skipped.append((str(path), str(err)))
    warnings.warn(f"skipping {path}: {err}", stacklevel=2)


def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The size an image is restored at: downscaled (aspect kept) so that no side exceeds ``max_side``."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def load_observation(path: Path, max_side: int | None = None) -> Observation:
    """Decode an input: an image file (RGB/RGBA/gray, 8/16-bit) or a ``.npy`` observation, downscaled
    (bicubic, antialiased) when a side exceeds ``max_side`` (it is then restored and saved at that size)."""
    import torch
    from torch.nn.functional import interpolate

    from fdem.imageio import convert_channels, load_npy_image, read_picture

    if path.suffix.lower() == ".npy":
        colour, alpha, bits = load_npy_image(path), None, 16
    else:
        picture = read_picture(path)
        colour, alpha, bits = picture.colour, picture.alpha, picture.bits
    size = fitted_size(*colour.shape[-2:], max_side)
    if size != tuple(colour.shape[-2:]):
        resize = lambda t: interpolate(t[None], size=size, mode="bicubic", antialias=True)[0].clamp(0, 1)  # noqa: E731
        colour, alpha = resize(colour), None if alpha is None else resize(alpha)
    image = convert_channels(colour, 3)
    gray = colour.shape[0] == 1 or bool(torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]))
    return Observation(path, image, gray, alpha, bits)
