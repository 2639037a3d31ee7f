"""Benchmark test cases on disk: the authors' pickles (read safely) and our plain folder format.

A *case* is the dict a :class:`fdem.datamodules.blur_benchmark.BlurBenchmarkDataModule` sample is::

    {"index": int, "image_id": str, "sharp": (C,H,W) float32, "y": (C,H,W) float32,
     "kernel": (1,k,k) float32, "kernel_id": int, "sigma": float ([0,1] units),
     "sigma255": float, "seed": int}

**The authors' format** (Fast Diffusion EM ``testset/*.pickle``): one ``pickle`` file per case
holding a dict with ``H`` (sharp), ``L`` (blurry, unclipped), ``kernel`` and ``sigma``, as torch
tensors pickled with the standard pickler (numpy arrays and plain numbers are accepted too).
Accepted shapes: ``H`` and ``L`` ``(C,H,W)`` or ``(N,C,H,W)`` with C = 1 or 3; ``kernel``
``(k,k)``, ``(N,k,k)`` or ``(N,1,k,k)``; ``sigma`` a number or ``N`` numbers, N = 1 or the
number of cases in the file. ``sigma`` is on the [0, 1] scale; a value above 1 is taken as the
255 scale (no noise level above 1 makes sense for images in [0, 1]). Kernels are kept as stored
(the observation was made with them). The ids are the file stem (``stem_j`` for case j of a
batched file), the seed is unknown (``-1``). A file written by ``torch.save`` is also accepted.

Unpickling is restricted (:mod:`fdem.safe_pickle`): only tensors, numeric numpy arrays and dicts
come out; anything else is refused with an :class:`InputError` naming the file, before it runs.

**Our folder format** (written by ``fdem bench-data export``), one entry per case id
(``id`` = the case index, zero-padded to 5 digits)::

    meta.csv             id, index, image_id, kernel_id, sigma255, sigma, seed (one row per case)
    sharp/<id>.png       8-bit PNG when the sharp image is 8-bit exact (the quantised default);
                         otherwise a 16-bit PNG plus sharp/<id>.npy (float32, exact, read first)
    blurry/<id>.npy      the observation, float32, unclipped (exact)
    blurry/<id>.png      an 8-bit preview of it (clipped; not read back)
    kernels/<id>.npy     float32 (k, k)

Reading it back gives cases identical to the ones written. The folder is written into a
temporary sibling and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import csv
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.imageio import load_image, save_image, save_image16
from fdem.io_utils import atomic_path, ensure_writable_dir
from fdem.safe_pickle import safe_load
from fdem.validate import check_sigma

AUTHORS_KEYS = ("H", "L", "kernel", "sigma")
PICKLE_SUFFIXES = (".pickle", ".pkl", ".pt", ".pth")
META_COLUMNS = ("id", "index", "image_id", "kernel_id", "sigma255", "sigma", "seed")
UNKNOWN_SEED = -1


# --- the authors' format -----------------------------------------------------------------------

def write_authors_pickle(path: str | os.PathLike, H, L, kernel, sigma) -> None:
    """Write one test case the way the authors did: ``pickle.dump({"H", "L", "kernel", "sigma"})``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump({"H": H, "L": L, "kernel": kernel, "sigma": sigma}, f)


def _tensor(value, path: Path, key: str, dtype: torch.dtype = torch.float32) -> Tensor:
    """A finite float CPU tensor (float32 by default) from a tensor, array or number."""
    try:
        exact = isinstance(value, (Tensor, np.ndarray, np.generic))
        t = (torch.as_tensor(value) if exact else torch.as_tensor(value, dtype=torch.float64)).detach()
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"{path}: {key} is not numeric ({type(value).__name__})") from err
    if not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)):
        raise InputError(f"{path}: {key} has unsupported type {t.dtype}")
    t = t.to("cpu", dtype)
    if not torch.isfinite(t).all():
        raise InputError(f"{path}: {key} contains NaN or inf")
    return t


def _images(t: Tensor, path: Path, key: str) -> Tensor:
    """(C,H,W) or (N,C,H,W) with C in {1, 3} -> (N,C,H,W)."""
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise InputError(f"{path}: {key} must be (C,H,W) or (N,C,H,W) with C = 1 or 3, got {tuple(t.shape)}")
    return t


def _kernels(t: Tensor, path: Path) -> Tensor:
    """(k,k), (N,k,k) or (N,1,k,k) -> (N,1,k,k), checked."""
    if t.ndim == 2:
        t = t[None]
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4 or t.shape[1] != 1:
        raise InputError(f"{path}: kernel must be (k,k), (N,k,k) or (N,1,k,k), got {tuple(t.shape)}")
    if (t.sum(dim=(-2, -1)) <= 0).any():
        raise InputError(f"{path}: a kernel sums to zero or less")
    return t


def _per_case(t: Tensor, n: int, path: Path, key: str) -> Tensor:
    """Broadcast a leading dimension of 1 to ``n`` cases."""
    if t.shape[0] not in (1, n):
        raise InputError(f"{path}: {key} holds {t.shape[0]} entries for {n} cases")
    return t.expand(n, *t.shape[1:]) if t.shape[0] == 1 else t


def cases_from_authors(obj: object, path: Path, start: int = 0) -> list[dict]:
    """The cases of one authors'-format dict; ``start`` is the index of its first case."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: expected a dict with keys {', '.join(AUTHORS_KEYS)}, got {type(obj).__name__}")
    missing = [k for k in AUTHORS_KEYS if k not in obj]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)} (expected {', '.join(AUTHORS_KEYS)})")
    sharp = _images(_tensor(obj["H"], path, "H"), path, "H")
    blurry = _images(_tensor(obj["L"], path, "L"), path, "L")
    if sharp.shape != blurry.shape:
        raise InputError(f"{path}: H {tuple(sharp.shape)} and L {tuple(blurry.shape)} differ in shape")
    n = sharp.shape[0]
    kernel = _per_case(_kernels(_tensor(obj["kernel"], path, "kernel"), path), n, path, "kernel")
    if kernel.shape[-1] > min(sharp.shape[-2:]) or kernel.shape[-2] > min(sharp.shape[-2:]):
        raise InputError(f"{path}: kernel {tuple(kernel.shape[-2:])} is larger than the images "
                         f"{tuple(sharp.shape[-2:])}")
    sigma = _per_case(_tensor(obj["sigma"], path, "sigma", torch.float64).reshape(-1), n, path, "sigma")
    check_sigma(sigma.tolist(), f"{path}: sigma")
    cases = []
    for j in range(n):
        s = float(sigma[j])
        sigma01, sigma255 = (s / 255, s) if s > 1 else (s, s * 255)
        cases.append({
            "index": start + j, "image_id": path.stem if n == 1 else f"{path.stem}_{j}",
            "sharp": sharp[j].contiguous(), "y": blurry[j].contiguous(), "kernel": kernel[j].contiguous(),
            "kernel_id": start + j, "sigma": sigma01, "sigma255": sigma255, "seed": UNKNOWN_SEED,
        })
    return cases


def _natural_key(path: Path) -> list:
    """Sort ``2.pickle`` before ``10.pickle``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_authors(path: Path) -> list[dict]:
    """Cases of one authors' file, or of every pickle file in a folder (natural name order)."""
    files = [path] if path.is_file() else sorted(
        (p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES and not p.name.startswith(".")),
        key=_natural_key)
    if not files:
        raise InputError(f"{path}: no meta.csv and no {'/'.join(PICKLE_SUFFIXES)} files: not a test-case folder")
    cases: list[dict] = []
    for file in files:
        cases += cases_from_authors(safe_load(file), file, start=len(cases))
    return cases


# --- our folder format ---------------------------------------------------------------------------

def case_id(index: int) -> str:
    return f"{index:05d}"


def _is_8bit(img: Tensor) -> bool:
    return bool(((img * 255).round() / 255 == img).all())


def _save_npy(path: Path, array: Tensor) -> None:
    np.save(path, array.detach().cpu().numpy().astype(np.float32), allow_pickle=False)


def _write_case(folder: Path, case: Mapping) -> dict:
    """Write one case's files; return its meta.csv row."""
    cid = case_id(int(case["index"]))
    sharp, y = case["sharp"].detach().cpu().float(), case["y"].detach().cpu().float()
    if _is_8bit(sharp):
        save_image(folder / "sharp" / f"{cid}.png", sharp)
    else:
        save_image16(folder / "sharp" / f"{cid}.png", sharp)
        _save_npy(folder / "sharp" / f"{cid}.npy", sharp)
    _save_npy(folder / "blurry" / f"{cid}.npy", y)
    save_image(folder / "blurry" / f"{cid}.png", y)
    _save_npy(folder / "kernels" / f"{cid}.npy", case["kernel"].reshape(case["kernel"].shape[-2:]))
    return {"id": cid, "index": int(case["index"]), "image_id": str(case["image_id"]),
            "kernel_id": int(case["kernel_id"]), "sigma255": repr(float(case["sigma255"])),
            "sigma": repr(float(case["sigma"])), "seed": int(case["seed"])}


def write_testcase_folder(out: str | os.PathLike, cases: Iterable[Mapping], overwrite: bool = False) -> int:
    """Write ``cases`` in the folder format at ``out`` (atomically); return how many were written.

    An existing non-empty ``out`` is an error unless ``overwrite``, which replaces it whole.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out} exists and is not empty (use --force to replace it)")
    ensure_writable_dir(out.parent)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        for sub in ("sharp", "blurry", "kernels"):
            (tmp / sub).mkdir()
        rows, ids = [], set()
        for case in cases:
            row = _write_case(tmp, case)
            if row["id"] in ids:
                raise InputError(f"two cases share the index {row['index']}")
            ids.add(row["id"])
            rows.append(row)
        if not rows:
            raise InputError(f"no cases to write to {out}")
        with open(tmp / "meta.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=META_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        _replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(rows)


def _replace_folder(new: Path, out: Path) -> None:
    """Move the finished folder ``new`` to ``out``, replacing what was there."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / "content")
    try:
        os.replace(new, out)
    except OSError as err:
        if old is not None:
            os.replace(old / "content", out)
        raise InputError(f"cannot write {out}: {err.strerror or err}") from err
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _load_npy(path: Path) -> Tensor:
    if not path.is_file():
        raise InputError(f"test-case file missing: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {path}: {err}") from err
    if array.dtype.kind != "f" or not np.isfinite(array).all():
        raise InputError(f"{path}: expected finite float data, got {array.dtype}")
    return torch.from_numpy(array.astype(np.float32, copy=False))


class TestcaseFolder(Sequence):
    """Our folder format, read lazily: case ``i`` is decoded when it is asked for."""

    __test__ = False  # not a pytest test class

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta = self.path / "meta.csv"
        try:
            with open(meta, newline="") as f:
                reader = csv.DictReader(f)
                missing = set(META_COLUMNS) - set(reader.fieldnames or ())
                if missing:
                    raise InputError(f"{meta}: missing column(s) {', '.join(sorted(missing))}")
                self.rows = [self._parse(row, meta, n + 2) for n, row in enumerate(reader)]
        except OSError as err:
            raise InputError(f"cannot read {meta}: {err.strerror or err}") from err
        if not self.rows:
            raise InputError(f"{meta}: no test cases listed")

    @staticmethod
    def _parse(row: dict, meta: Path, line: int) -> dict:
        try:
            parsed = {"id": row["id"], "index": int(row["index"]), "image_id": row["image_id"],
                      "kernel_id": int(row["kernel_id"]), "sigma255": float(row["sigma255"]),
                      "sigma": float(row["sigma"]), "seed": int(row["seed"])}
        except (TypeError, ValueError) as err:
            raise InputError(f"{meta}, line {line}: bad value ({err})") from err
        if not re.fullmatch(r"[0-9]+", parsed["id"]):
            raise InputError(f"{meta}, line {line}: bad id {parsed['id']!r}")
        check_sigma(parsed["sigma"], f"{meta}, line {line}: sigma")
        return parsed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self.rows[i]
        cid = row["id"]
        y = _load_npy(self.path / "blurry" / f"{cid}.npy")
        if y.ndim != 3 or y.shape[0] not in (1, 3):
            raise InputError(f"{self.path / 'blurry' / cid}.npy: expected (C,H,W) with C = 1 or 3, "
                             f"got {tuple(y.shape)}")
        exact = self.path / "sharp" / f"{cid}.npy"
        sharp = _load_npy(exact) if exact.is_file() else load_image(self.path / "sharp" / f"{cid}.png", y.shape[0])
        kernel = _load_npy(self.path / "kernels" / f"{cid}.npy")
        if y.shape != sharp.shape or kernel.ndim != 2:
            raise InputError(f"{self.path}: case {cid} has sharp {tuple(sharp.shape)}, blurry {tuple(y.shape)}, "
                             f"kernel {tuple(kernel.shape)}")
        return {"index": row["index"], "image_id": row["image_id"], "sharp": sharp, "y": y,
                "kernel": kernel[None], "kernel_id": row["kernel_id"], "sigma": row["sigma"],
                "sigma255": row["sigma255"], "seed": row["seed"]}


# --- entry points ----------------------------------------------------------------------------------

def open_testcases(path: str | os.PathLike) -> Sequence[dict]:
    """Test cases from our folder (read lazily), an authors' pickle, or a folder of them (read now)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"test cases not found: {path}")
    if path.is_dir() and (path / "meta.csv").is_file():
        return TestcaseFolder(path)
    return read_authors(path)


def read_testcases(path: str | os.PathLike) -> list[dict]:
    """Every test case at ``path`` (see :func:`open_testcases`) as a list of case dicts."""
    return list(open_testcases(path))
