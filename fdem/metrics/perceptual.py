"""Learned and no-reference metrics: LPIPS (AlexNet), NIQE and BRISQUE, from local files only.

Each loader checks the package and its files first (:func:`fdem.metrics.availability.require`)
and raises :class:`MetricUnavailable` with a one-line reason otherwise; weights are read with
``torch.load(weights_only=True)`` (or ``scipy.io.loadmat`` for NIQE's MATLAB parameters) and the
libraries' own download paths are never reached. The returned callables map ``[0, 1]`` images
to ``(B,)`` float32 CPU tensors.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.nets.checkpoints import load_checkpoint
from fdem.metrics.availability import (
    ALEXNET_FILE,
    BRISQUE_FILE,
    NIQE_FILE,
    MetricUnavailable,
    checkpoint_dir,
    lpips_linear_file,
    pyiqa_dir,
    report_unavailable,
    require,
)

NIQE_MIN_SIZE = 96  # NIQE's patch size: smaller images have no patch to fit


def _load_tensors(path) -> object:
    """The tensors of a metric's weight file, read by the one safe loader (its message in words)."""
    try:
        return load_checkpoint(path, "metric weight file")
    except InputError as err:
        raise MetricUnavailable(str(err)) from err


def _as_rgb(x: Tensor) -> Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _compute_device(device: torch.device) -> torch.device:
    """NIQE/BRISQUE use float64, which some accelerators (MPS) lack: run those on the CPU."""
    return torch.device("cpu") if device.type == "mps" else device


def _trunk_state(alexnet_state: dict, model: torch.nn.Module) -> dict:
    """Map torchvision AlexNet keys ``features.i.*`` onto LPIPS's ``net.sliceN.i.*``."""
    mapped = {}
    for key in model.net.state_dict():
        _, index, param = key.split(".", 2)  # "slice2.3.weight" -> ("slice2", "3", "weight")
        source = f"features.{index}.{param}"
        if source not in alexnet_state:
            raise MetricUnavailable(f"{checkpoint_dir() / ALEXNET_FILE} lacks {source}: not torchvision's AlexNet")
        mapped[f"net.{key}"] = alexnet_state[source]
    return mapped


def _linear_state(linear: dict) -> dict:
    """LPIPS's ``linN.*`` weights, also under ``lins.N.*`` (the same modules, listed twice in the network)."""
    state = dict(linear)
    for key, value in linear.items():
        head, rest = key.split(".", 1)  # "lin3.model.1.weight" -> ("lin3", "model.1.weight")
        state[f"lins.{head[3:]}.{rest}"] = value
    return state


class LPIPSMetric:
    """LPIPS v0.1 with the AlexNet trunk (Zhang et al. 2018), lower is closer: ``(restored, sharp) → (B,)``."""

    def __init__(self, device: torch.device) -> None:
        require("lpips")
        import lpips

        with warnings.catch_warnings():  # lpips builds torchvision's AlexNet with a deprecated argument
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        state = _trunk_state(_load_tensors(checkpoint_dir() / ALEXNET_FILE), model)
        state.update(_linear_state(_load_tensors(lpips_linear_file())))
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("scaling_layer.")})  # constants
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise MetricUnavailable(f"LPIPS weights do not match the network: {err}") from err
        self.device = device
        self.model = model.eval().requires_grad_(False).to(device)

    @torch.no_grad()
    def __call__(self, restored: Tensor, sharp: Tensor) -> Tensor:
        a = _as_rgb(restored.to(self.device, torch.float32))
        b = _as_rgb(sharp.to(self.device, torch.float32))
        return self.model(a, b, normalize=True).reshape(-1).float().cpu()


class NIQEMetric:
    """NIQE (Mittal et al. 2013) with pyiqa's default parameters, lower is better: ``images → (B,)``."""

    def __init__(self, device: torch.device) -> None:
        require("niqe")
        from pyiqa.archs.niqe_arch import NIQE

        path = pyiqa_dir() / NIQE_FILE
        try:
            net = NIQE(pretrained_model_path=str(path))  # scipy.io.loadmat: plain arrays, no pickle
        except Exception as err:
            raise MetricUnavailable(f"could not load {path}: {type(err).__name__}: {err}") from err
        self.device = _compute_device(device)
        self.net = net.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        if min(h, w) < NIQE_MIN_SIZE:
            report_unavailable("niqe", f"needs images of at least {NIQE_MIN_SIZE}x{NIQE_MIN_SIZE}, got {h}x{w}")
            return torch.full((images.shape[0],), float("nan"))
        return self.net(images.to(self.device, torch.float32)).reshape(-1).float().cpu()


class BRISQUEMetric:
    """BRISQUE (Mittal et al. 2012), pyiqa's 'original' SVM, lower is better: ``images → (B,)``.

    pyiqa's class unpickles its file without ``weights_only``; the tensors are read safely here
    and handed to pyiqa's functional form, whose defaults are that class's 'original' settings.
    """

    def __init__(self, device: torch.device) -> None:
        require("brisque")
        from pyiqa.archs.brisque_arch import brisque

        params = _load_tensors(pyiqa_dir() / BRISQUE_FILE)
        if not (isinstance(params, (tuple, list)) and len(params) == 2 and all(torch.is_tensor(p) for p in params)):
            raise MetricUnavailable(f"{pyiqa_dir() / BRISQUE_FILE} is not a (sv_coef, sv) pair of tensors")
        self.device = _compute_device(device)
        self.sv_coef, self.sv = (p.to(self.device) for p in params)
        self._brisque = brisque

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, torch.float32)
        return self._brisque(x, sv_coef=self.sv_coef, sv=self.sv).reshape(-1).float().cpu()


LOADERS: dict[str, Callable[[torch.device], object]] = {
    "lpips": LPIPSMetric,
    "niqe": NIQEMetric,
    "brisque": BRISQUEMetric,
}
