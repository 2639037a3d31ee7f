"""FID: the Fréchet distance between Gaussian fits of Inception features, and the features themselves.

The distance is computed in float64 numpy with ``scipy.linalg.sqrtm`` as ``pytorch-fid`` does, so
that numbers compare with published ones. The features are the 2048-d pool features of the
TF-ported Inception (``pytorch-fid``'s ``InceptionV3([3])``) read from the user's local weight
file with ``weights_only=True``; nothing is downloaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.nets.checkpoints import load_checkpoint
from fdem.metrics.availability import (
    INCEPTION_FILE,
    MetricUnavailable,
    checkpoint_dir,
    require,
)

FEATURE_DIM = 2048


def _as_vector(mu, name: str) -> np.ndarray:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    if mu.ndim != 1:
        raise InputError(f"{name} must be a vector, got shape {mu.shape}")
    return mu


def _as_matrix(cov, dim: int, name: str) -> np.ndarray:
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    if cov.shape != (dim, dim):
        raise InputError(f"{name} must be {dim}x{dim}, got shape {cov.shape}")
    return cov


def frechet_distance(mu1, cov1, mu2, cov2, eps: float = 1e-6) -> float:
    """``‖μ1 − μ2‖² + tr(C1 + C2 − 2·(C1·C2)^{1/2})`` between two Gaussians, in float64.

    If ``sqrtm`` of the product is not finite (singular covariances), ``eps·I`` is added to both
    covariances and it is retried; a small imaginary part (round-off) is dropped, a large one is
    dropped with a warning.
    """
    mu1, mu2 = _as_vector(mu1, "mu1"), _as_vector(mu2, "mu2")
    if mu1.shape != mu2.shape:
        raise InputError(f"the means have different sizes: {mu1.size} and {mu2.size}")
    cov1, cov2 = _as_matrix(cov1, mu1.size, "cov1"), _as_matrix(cov2, mu1.size, "cov2")
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = np.eye(mu1.size) * eps
        covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(covmean.imag).max()
        if imaginary > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            warnings.warn(f"frechet_distance: dropped an imaginary part of {imaginary:.3g} in sqrtm", RuntimeWarning, stacklevel=2)
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def gaussian_fit(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(N, D)`` features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"features must be (N, D) with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def fid_from_features(f1, f2) -> float:
    """FID between two feature sets ``(N, D)`` and ``(M, D)`` (e.g. restored vs. sharp images)."""
    mu1, cov1 = gaussian_fit(f1)
    mu2, cov2 = gaussian_fit(f2)
    if mu1.shape != mu2.shape:
        raise InputError(f"feature sizes differ: {mu1.size} and {mu2.size}")
    return frechet_distance(mu1, cov1, mu2, cov2)


def inception_weights() -> Path:
    """Where the FID Inception weights must be: ``$TORCH_HOME/hub/checkpoints/pt_inception-...pth``."""
    return checkpoint_dir() / INCEPTION_FILE


def _inception_state(path: Path) -> object:
    """The Inception weights, read by the one safe loader; an unreadable file makes FID unavailable."""
    try:
        return load_checkpoint(path, "FID weight file")
    except InputError as err:
        raise MetricUnavailable(str(err)) from err


def _local_loader(path: Path):
    """Stand-in for ``load_state_dict_from_url``: reads ``path`` (tensors only), never downloads."""

    def load(*_args, **_kwargs):
        return _inception_state(path)

    return load


class InceptionFeatures:
    """The FID Inception network (eval, frozen, on ``device``): images ``[0, 1]`` → ``(B, 2048)`` numpy."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        require("fid")
        path = inception_weights()
        try:
            from pytorch_fid import inception as fid_inception

            # pytorch-fid fetches its weights through this module-level name; pointing it at the
            # local file makes construction offline and unpickling-free.
            with mock.patch.object(fid_inception, "load_state_dict_from_url", _local_loader(path)):
                net = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
        except MetricUnavailable:
            raise
        except Exception as err:  # a file of the wrong network: report, never crash the benchmark
            raise MetricUnavailable(f"could not load {path}: {type(err).__name__}: {err}") from err
        self.device = torch.device(device)
        self.net = net.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> np.ndarray:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise InputError(f"FID features need (B,1|3,H,W) images, got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32).clamp(0, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        pooled = self.net(x)[0]
        return pooled.reshape(pooled.shape[0], -1).cpu().numpy()
