"""Kernel banks on disk: write ours (``.npz``), read ours and the common third-party formats.

``save_bank`` writes an ``.npz`` holding ``kernels`` (float32 ``(n, k, k)``), ``generator`` (name,
``""`` if unknown), ``params`` (JSON) and ``seed`` (-1 if unknown), atomically.

``load_bank`` reads, into a float32 ``(n, 1, K, K)`` tensor:

- ``.npz``: the array ``kernels`` (ours); ``.npy``: a 2-D, 3-D ``(n, k, k)`` or ``(n, 1, k, k)`` array;
- a folder of kernel images (grey or RGB -> luma, 8/16-bit or float), sorted by file name;
  hidden files are skipped, any other non-image is an error;
- MATLAB ``.mat`` v5 or v7.3 (see ``matfile.py``).

Every kernel is clipped at 0 and normalised to sum 1, then zero-padded to ``K x K`` with its
index centre ``(h//2, w//2)`` on ``(K//2, K//2)``; ``K`` is ``size`` if given, else the largest
side.  Kernels are *not* re-centred on their centre of mass (that would resample them).
Every problem raises ``InputError`` naming the file and, where relevant, the kernel.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fdem.errors import InputError

from fdem.io_utils import atomic_path
from .matfile import read_mat

READERS = (".npz", ".npy", ".mat")
LUMA = np.array([0.299, 0.587, 0.114])


def save_bank(path, kernels, generator=None, seed: int | None = None) -> None:
    """Write ``kernels`` (``(n, 1, k, k)`` or ``(n, k, k)``) and their provenance to the ``.npz`` ``path``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"{path}: a kernel bank is written as .npz")
    if isinstance(kernels, torch.Tensor):
        kernels = kernels.detach().cpu().numpy()
    array = np.asarray(kernels, dtype=np.float32)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise InputError(f"{path}: kernels must be (n, 1, k, k) or (n, k, k), got shape {tuple(np.shape(kernels))}")
    fields = {
        "kernels": array,
        "generator": np.array(generator.name if generator is not None else ""),
        "params": np.array(json.dumps(generator.params() if generator is not None else {})),
        "seed": np.array(-1 if seed is None else int(seed), dtype=np.int64),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **fields)


def load_bank(path, size: int | None = None) -> torch.Tensor:
    """Kernels from a file or folder (see the module docstring) as float32 ``(n, 1, K, K)``."""
    path = Path(path)
    if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
        raise InputError(f"{path}: size must be a positive integer, got {size!r}")
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        labelled = _read_folder(path)
    elif path.suffix.lower() == ".mat":
        labelled = read_mat(path)
    elif path.suffix.lower() in (".npz", ".npy"):
        labelled = _read_numpy(path)
    else:
        raise InputError(f"{path}: unknown kernel bank format; use a folder of images or {', '.join(READERS)}")
    return _assemble(path, labelled, size)


def _read_numpy(path: Path) -> list[tuple[str, np.ndarray]]:
    try:
        content = np.load(path, allow_pickle=False)
        if isinstance(content, np.lib.npyio.NpzFile):
            with content:
                array = content["kernels"]
        else:
            array = content
    except KeyError as err:
        raise InputError(f"{path}: no array named 'kernels'") from err
    except (OSError, ValueError) as err:  # damaged, or would need unpickling
        raise InputError(f"{path}: not a readable numpy file ({err})") from err
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.dtype.kind not in "fiu":
        raise InputError(
            f"{path}: expected real kernels (k, k), (n, k, k) or (n, 1, k, k), got {array.dtype} {array.shape}"
        )
    return [(f"kernel {i} of {len(array)}", k) for i, k in enumerate(array)]


def _read_folder(path: Path) -> list[tuple[str, np.ndarray]]:
    files = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if not files:
        raise InputError(f"{path}: empty folder, no kernel images")
    return [(f"image {p.name}", _read_image(p)) for p in files]


def _read_image(path: Path) -> np.ndarray:
    """A grey float64 image: grey modes as stored, anything else through RGB to luma."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("L", "I", "F") or img.mode.startswith("I;16"):
                return np.asarray(img, dtype=np.float64)
            return np.asarray(img.convert("RGB"), dtype=np.float64) @ LUMA
    except (OSError, ValueError) as err:  # includes UnidentifiedImageError and folders
        raise InputError(f"{path}: not an image ({err.__class__.__name__})") from err


def _assemble(path: Path, labelled: list[tuple[str, np.ndarray]], size: int | None) -> torch.Tensor:
    """Check, clip, normalise and centre-pad the kernels into one ``(n, 1, K, K)`` tensor."""
    kernels = []
    for label, kernel in labelled:
        kernel = np.asarray(kernel, dtype=np.float64)
        if not np.isfinite(kernel).all():
            raise InputError(f"{path}: {label} contains NaN or inf")
        kernel = np.maximum(kernel, 0.0)
        total = kernel.sum()
        if total <= 0:
            raise InputError(f"{path}: {label} sums to zero (after clipping negatives)")
        kernels.append((label, kernel / total))
    if not kernels:
        raise InputError(f"{path}: holds no kernels")
    target = size if size is not None else max(max(k.shape) for _, k in kernels)
    out = np.zeros((len(kernels), 1, target, target), dtype=np.float32)
    for i, (label, kernel) in enumerate(kernels):
        h, w = kernel.shape
        if max(h, w) > target:
            raise InputError(f"{path}: {label} is {h}x{w}, larger than the requested size {target}")
        top, left = target // 2 - h // 2, target // 2 - w // 2
        out[i, 0, top : top + h, left : left + w] = kernel
    return torch.from_numpy(out)
