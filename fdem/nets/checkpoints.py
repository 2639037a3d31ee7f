"""Reading weight files safely and explaining why they do not fit a network.

Every loader of the package (priors, kernel denoiser, MPRNet, ``fdem export``) reads with
``torch.load(..., weights_only=True)`` through :func:`load_checkpoint`: a file that is not a
checkpoint, a corrupt one and one holding code are told apart in words. Loaders report a mismatch with
:func:`mismatch_report`: missing keys, unexpected keys and differing shapes, each with shapes.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor

from fdem.errors import InputError

LISTED = 6  # keys shown per kind of mismatch
PICKLE_START = b"\x80"  # the PROTO opcode every torch.save pickle (protocol >= 2) begins with
ZIP_START = b"PK\x03\x04"  # a zip archive (torch.save's default format) begins with a local file header
REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def is_checkpoint_file(path: Path) -> bool:
    """Whether ``path`` begins like a ``torch.save`` file: a zip archive or a pickle."""
    with open(path, "rb") as f:
        start = f.read(len(ZIP_START))
    return start[:1] == PICKLE_START or start == ZIP_START


def refusal(path: Path, what: str, err: Exception) -> str:
    """In words, why ``torch.load`` could not read ``path`` (never how to disable its safety)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "weights only load failed" in text.lower():
        found = REFUSED_GLOBAL.search(text)
        named = f" ({found.group(1)})" if found else ""
        return (f"{what} {path} holds code or objects that are not weights{named}; "
                "it was not loaded (only tensors, numbers and containers are read)")
    return f"{what} {path} is a corrupt or truncated PyTorch checkpoint ({type(err).__name__})"


def load_checkpoint(path: str | Path, what: str) -> object:
    """The object of a ``torch.save`` file, read with ``weights_only=True``; a missing, foreign,
    corrupt or unsafe file is an :class:`InputError` that says which, naming ``what`` ("prior
    checkpoint", ...)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        readable = is_checkpoint_file(path)
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror or err}") from err
    if not readable:
        raise InputError(f"{what} {path} is not a PyTorch checkpoint (not a zip or pickle file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's notes on pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file, or a pickle that needs arbitrary objects
        raise InputError(refusal(path, what, err)) from err


def read_weights(path: str | Path, what: str) -> tuple[dict[str, Tensor], dict]:
    """(tensors, hyper-parameters) of a state_dict file or of a checkpoint holding ``state_dict``
    (read by :func:`load_checkpoint`)."""
    obj = load_checkpoint(path, what)
    if not isinstance(obj, dict):
        raise InputError(f"{path} holds a {type(obj).__name__}, not a state_dict or a checkpoint")
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}, dict(obj.get("hyper_parameters") or {})


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f", ... and {len(items) - LISTED} more" if len(items) > LISTED else "")


def mismatch_report(expected: dict[str, tuple[int, ...]], state: dict[str, Tensor]) -> str:
    """Empty when ``state`` has exactly the keys and shapes of ``expected``; else what differs."""
    missing = [f"{k} {shape}" for k, shape in expected.items() if k not in state]
    unexpected = [f"{k} {tuple(v.shape)}" for k, v in state.items() if k not in expected]
    wrong = [f"{k} {tuple(v.shape)} vs {expected[k]}" for k, v in state.items() if k in expected and tuple(v.shape) != expected[k]]
    groups = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches (file vs model)", wrong))
    return "; ".join(f"{len(items)} {what}: {_listing(items)}" for what, items in groups if items)


def shapes(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Key → shape of ``net``'s state_dict."""
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}
