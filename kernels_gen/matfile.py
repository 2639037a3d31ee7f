"""Kernels out of MATLAB ``.mat`` files: v5/v7 through ``scipy.io.loadmat``, v7.3 (HDF5) through ``h5py``.

A variable is *kernel-like* if it is a real numeric 2-D array (one kernel, both sides >= 3), a
3-D array (a stack: ``(k, k, n)`` as MATLAB writes it, else ``(n, k, k)``), or a cell array whose
entries are all such 2-D arrays (e.g. the classic Levin et al. 2009 file, a 1x8 cell of kernels
of sizes 13-27).  Cells are read in MATLAB's column-major order.  The kernels are taken from the
only kernel-like variable or, if there are several, from the one named ``kernel*``, else
``psf*``, else ``k*`` (case-insensitive).

In v7.3 files every array is stored transposed (HDF5 is row-major) and a cell is a dataset of
object references into the ``#refs#`` group.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.io

from fdem.errors import InputError

NAME_PREFERENCE = ("kernel", "psf", "k")


def read_mat(path: Path) -> list[tuple[str, np.ndarray]]:
    """``[(label, 2-D kernel), ...]`` from the kernel-like variable of a ``.mat`` file."""
    variables = _read_hdf5(path) if h5py.is_hdf5(path) else _read_v5(path)
    name = _pick(path, variables)
    kernels = variables[name]
    return [(f"variable {name!r}, kernel {i} of {len(kernels)}", k) for i, k in enumerate(kernels)]


def _is_kernel(array) -> bool:
    return (
        isinstance(array, np.ndarray)
        and array.dtype.kind in "fiu"
        and array.ndim == 2
        and min(array.shape) >= 3
    )


def _split(array: np.ndarray) -> list[np.ndarray] | None:
    """The kernels of a numeric array (MATLAB orientation), or None if it is not kernel-like."""
    if array.dtype.kind not in "fiu":
        return None
    if array.ndim == 2:
        return [array] if _is_kernel(array) else None
    if array.ndim == 3 and min(array.shape[:2]) >= 3 and array.shape[0] == array.shape[1]:
        return [array[:, :, i] for i in range(array.shape[2])]
    if array.ndim == 3 and min(array.shape[1:]) >= 3 and array.shape[1] == array.shape[2]:
        return list(array)
    return None


def _cell(entries: list) -> list[np.ndarray] | None:
    """The kernels of a cell's entries (MATLAB order), or None unless every entry is a 2-D kernel."""
    return entries if entries and all(_is_kernel(e) for e in entries) else None


def _read_v5(path: Path) -> dict[str, list[np.ndarray] | None]:
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises ValueError, TypeError, ... on damaged files
        raise InputError(f"{path}: not a readable MATLAB file ({err})") from err
    variables = {}
    for name, value in content.items():
        if name.startswith("__"):
            continue
        if isinstance(value, np.ndarray) and value.dtype == object:
            variables[name] = _cell(list(value.ravel(order="F")))
        else:
            variables[name] = _split(value) if isinstance(value, np.ndarray) else None
    return variables


def _read_hdf5(path: Path) -> dict[str, list[np.ndarray] | None]:
    try:
        with h5py.File(path, "r") as f:
            return {name: _hdf5_variable(f, item) for name, item in f.items() if not name.startswith("#")}
    except (OSError, KeyError, ValueError) as err:  # damaged file or dangling reference
        raise InputError(f"{path}: not a readable MATLAB v7.3 file ({err})") from err


def _hdf5_variable(f: h5py.File, item) -> list[np.ndarray] | None:
    if not isinstance(item, h5py.Dataset) or item.attrs.get("MATLAB_empty", 0):
        return None
    matlab_class = item.attrs.get("MATLAB_class", b"")
    matlab_class = matlab_class.decode() if isinstance(matlab_class, bytes) else str(matlab_class)
    if matlab_class in ("char", "logical"):
        return None
    if h5py.check_dtype(ref=item.dtype) is h5py.Reference:
        # The stored (transposed) array in C order is the cell in MATLAB's column-major order.
        entries = [f[ref] for ref in item[()].ravel()]
        return _cell([e[()].T if isinstance(e, h5py.Dataset) else None for e in entries])
    return _split(item[()].T)


def _pick(path: Path, variables: dict[str, list[np.ndarray] | None]) -> str:
    """The name of the kernel variable (see the module docstring)."""
    candidates = sorted(name for name, kernels in variables.items() if kernels)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        found = ", ".join(sorted(variables)) or "none"
        raise InputError(
            f"{path}: no kernel-like variable (a 2-D or 3-D numeric array, or a cell of 2-D arrays); variables: {found}"
        )
    for prefix in NAME_PREFERENCE:
        named = [name for name in candidates if name.lower().startswith(prefix)]
        if len(named) == 1:
            return named[0]
        if named:
            candidates = named
            break
    raise InputError(f"{path}: several kernel-like variables ({', '.join(candidates)}); keep only one")
