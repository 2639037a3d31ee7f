"""Turn a ``fdem fit`` checkpoint into the plain network state_dict that the library loads."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from fdem.errors import InputError
from fdem.io_utils import atomic_path


def module_from_checkpoint(path: str | Path):
    """Rebuild the LightningModule saved by ``fdem fit`` (class from the checkpoint's hyper-parameters)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, or a pickle carrying arbitrary objects
        raise InputError(f"cannot read checkpoint {path}: {err}") from err
    hparams = dict(ckpt.get("hyper_parameters", {}))
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if class_path is None or "state_dict" not in ckpt:
        raise InputError(f"{path} is not a checkpoint written by `fdem fit` (no model class or state_dict)")
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    module = cls(**hparams)
    module.load_state_dict(ckpt["state_dict"], strict=True)
    return module


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """Write ``module.export_state_dict()`` of ``checkpoint`` to ``out`` atomically."""
    module = module_from_checkpoint(checkpoint)
    if not hasattr(module, "export_state_dict"):
        raise InputError(f"{type(module).__name__} has nothing to export")
    with atomic_path(out) as tmp:
        torch.save(module.export_state_dict(), tmp)
    return Path(out)
