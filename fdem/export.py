"""Turn a ``fdem fit`` checkpoint into the network file that the library loads.

A module's ``export_state_dict()`` is written as a plain state_dict, or, for a module that also
has ``export_hyper_parameters()`` (score priors: architecture and schedule), as
``{"state_dict": ..., "hyper_parameters": ...}``, which :func:`fdem.nets.checkpoints.read_weights`
reads like a checkpoint.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from fdem.errors import InputError
from fdem.io_utils import atomic_path
from fdem.nets.checkpoints import load_checkpoint


def module_from_checkpoint(path: str | Path):
    """Rebuild the LightningModule saved by ``fdem fit`` (class from the checkpoint's hyper-parameters)."""
    path = Path(path)
    ckpt = load_checkpoint(path, "checkpoint")
    if not isinstance(ckpt, dict):
        raise InputError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint written by `fdem fit`")
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
    """Write the exported weights (and metadata, if the module has any) of ``checkpoint`` to ``out`` atomically."""
    module = module_from_checkpoint(checkpoint)
    if not hasattr(module, "export_state_dict"):
        raise InputError(f"{type(module).__name__} has nothing to export")
    payload = module.export_state_dict()
    if hasattr(module, "export_hyper_parameters"):
        payload = {"state_dict": payload, "hyper_parameters": module.export_hyper_parameters()}
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return Path(out)
