"""MetricSuite: the benchmark's image metrics, each network loaded once, missing ones as NaN.

PSNR and SSIM always run. LPIPS, NIQE, BRISQUE and the FID features run when their package and
weight files are present; otherwise their column is NaN and one warning per process says which
file to put where (docs/design.md §7). Which metrics exist, and what each needs, is
:mod:`fdem.metrics.registry`. FID itself is a set statistic: collect
:meth:`MetricSuite.fid_features` of restored and sharp images and call
:func:`fdem.metrics.fid.fid_from_features`.
"""

from __future__ import annotations

import importlib
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.metrics.availability import MetricUnavailable, report_unavailable
from fdem.metrics.registry import REGISTRY, check_selection, suite_names

def _function(name: str):
    """The plain function of a metric that loads nothing (the registry's ``function``)."""
    module, _, attr = REGISTRY[name].function.partition(":")
    return getattr(importlib.import_module(module), attr)


def _load(name: str, device: torch.device):
    """The metric's callable, or ``None`` after one warning naming what is missing."""
    try:
        if name == "fid":
            from fdem.metrics.fid import InceptionFeatures

            return InceptionFeatures(device)
        from fdem.metrics.perceptual import LOADERS

        return LOADERS[name](device)
    except MetricUnavailable as err:
        report_unavailable(name, str(err))
    except Exception as err:  # a broken optional install must not stop a benchmark
        report_unavailable(name, f"{type(err).__name__}: {err}")
    return None


class MetricSuite:
    """Per-image metrics of restored vs. sharp batches, on ``device``; networks eval and frozen.

    ``names`` picks the per-image metrics; the FID network is loaded too unless ``fid=False``
    (naming ``"fid"`` in ``names`` is accepted and means the same as ``fid=True``).
    """

    def __init__(self, names: Iterable[str] | None = None, device: str | torch.device = "cpu", fid: bool = True) -> None:
        names = check_selection(suite_names() if names is None else names)
        self.names = tuple(n for n in dict.fromkeys(names) if REGISTRY[n].source == "suite")
        self.device = torch.device(device)
        networks = [n for n in self.names if REGISTRY[n].weights] + (["fid"] if fid or "fid" in names else [])
        self._functions = {n: _function(n) for n in self.names if REGISTRY[n].function is not None}
        self._metrics = {n: _load(n, self.device) for n in networks}

    @property
    def has_fid(self) -> bool:
        """Whether :meth:`fid_features` returns features (FID requested, the default, and its weights loaded)."""
        return self._metrics.get("fid") is not None

    def available(self, name: str) -> bool:
        """Whether metric ``name`` of this suite gives numbers (not NaN)."""
        if name in self._functions:
            return True
        return self._metrics.get(name) is not None

    @torch.no_grad()
    def image_metrics(self, restored: Tensor, sharp: Tensor) -> dict[str, Tensor]:
        """``{name: (B,) float32 CPU tensor}`` for the per-image metrics (FID excluded); NaN where unavailable.

        Both batches are clamped to ``[0, 1]``, as writing the restored image to a file would.
        """
        if restored.dim() != 4 or restored.shape != sharp.shape:
            shapes = f"{tuple(restored.shape)} and {tuple(sharp.shape)}"
            raise InputError(f"image_metrics needs two (B,C,H,W) batches of the same shape, got {shapes}")
        x = restored.detach().to(self.device, torch.float32).clamp(0, 1)
        ref = sharp.detach().to(self.device, torch.float32).clamp(0, 1)
        nan = torch.full((x.shape[0],), float("nan"))
        out: dict[str, Tensor] = {}
        for name in self.names:
            metric = self._functions.get(name) or self._metrics[name]
            if metric is None:
                out[name] = nan.clone()
            else:
                out[name] = (metric(x, ref) if REGISTRY[name].reference else metric(x)).float().cpu()
        return out

    @torch.no_grad()
    def fid_features(self, images: Tensor) -> np.ndarray | None:
        """``(B, 2048)`` Inception pool features of ``[0, 1]`` images, or ``None`` when FID is unavailable."""
        net = self._metrics.get("fid")
        return None if net is None else net(images.detach())
