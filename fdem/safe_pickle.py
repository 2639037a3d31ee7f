"""Restricted unpickling of the authors' test-case pickles: only tensors, numeric numpy arrays,
numbers and (ordered) dicts come out; anything else is refused before it runs.

:class:`SafeUnpickler` resolves only the globals that those objects need; tensor storages are
decoded by ``torch.load(weights_only=True)``. A refused file is an :class:`InputError` naming the
file and the class.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fdem.errors import InputError

def _storage_from_bytes(data: bytes):
    """Replacement for ``torch.storage._load_from_bytes``: the same bytes, loaded weights-only on CPU."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not a byte string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation notices
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None) -> Tensor:
    """Replacement for ``torch._utils._rebuild_tensor(_v2)``: a plain tensor, no hooks, no grad."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("tensor data is not a torch storage")
    if backward_hooks:
        raise pickle.UnpicklingError("tensor carries backward hooks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Replacement for ``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected _codecs.encode call (encoding {encoding!r})")
    return text.encode("latin1")


def _numeric_dtype(*args) -> np.dtype:
    """``numpy.dtype`` restricted to types without Python objects."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy array of Python objects")
    return dtype


_NP_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_NP_SCALAR = np.float64(0).__reduce__()[0]
ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numeric_dtype,
    **{(mod, "_reconstruct"): _NP_RECONSTRUCT for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _NP_SCALAR for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds tensors, numeric arrays, numbers and containers, and nothing else."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise InputError(f"{self.path}: refusing to unpickle {module}.{name} "
                             "(only tensors, numeric arrays, numbers and dicts are allowed)") from None

    def persistent_load(self, pid):
        raise InputError(f"{self.path}: refusing a pickle with persistent ids (not a plain pickle)")


def safe_load(path: str | os.PathLike) -> object:
    """The object in a pickle or ``torch.save`` file, decoded without running foreign code."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=True)
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, path).load()
        if isinstance(obj, int) and obj == torch.serialization.MAGIC_NUMBER:  # legacy torch.save
            return torch.load(path, map_location="cpu", weights_only=True)
        return obj
    except InputError:
        raise
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from err
    except Exception as err:  # any decoding failure of a foreign file is bad input
        # torch.load(weights_only=True) names the global it refused
        refused = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(err), re.IGNORECASE)
        if refused:
            raise InputError(f"{path}: refusing to unpickle {refused.group(1)} (torch.load weights_only: "
                             "only tensors, numbers and containers are allowed)") from err
        if "weights only load failed" in str(err).lower():
            detail = re.search(r"Unsupported [^\n]*", str(err))
            raise InputError(f"{path}: refusing its content (torch.load weights_only: "
                             f"{detail.group(0) if detail else 'not only tensors'})") from err
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a readable test-case pickle ({reason})") from err
