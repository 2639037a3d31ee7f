"""Reading weight files safely and explaining why they do not fit a network.

Every loader of the package (priors, kernel denoiser, MPRNet) reads with
``torch.load(..., weights_only=True)`` through :func:`read_weights`, and reports a mismatch with
:func:`mismatch_report`: missing keys, unexpected keys and differing shapes, each with shapes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from fdem.errors import InputError

LISTED = 6  # keys shown per kind of mismatch


def read_weights(path: str | Path, what: str) -> tuple[dict[str, Tensor], dict]:
    """(tensors, hyper-parameters) of a state_dict file or of a checkpoint holding ``state_dict``.

    ``what`` names the expected content in error messages ("prior checkpoint", ...).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, or a pickle that needs arbitrary objects
        raise InputError(f"cannot read {what} {path}: {str(err).splitlines()[0]}") from err
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
