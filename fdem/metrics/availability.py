"""Which metrics can run here: optional packages and weight files, checked without importing or downloading.

The learned and no-reference metrics need files the user places by hand (docs/design.md §7): nothing
here ever downloads. Folders follow ``torch.hub.get_dir()`` (``$TORCH_HOME/hub``, by default
``~/.cache/torch/hub``) and are resolved at call time, so setting ``TORCH_HOME`` takes effect.
A metric that cannot run is reported once per process by :func:`report_unavailable`.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fdem.metrics.registry import REGISTRY, checked_names

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
NIQE_FILE = "niqe_modelparameters.mat"
BRISQUE_FILE = "brisque_svm_weights.pth"

# Where the public copies live, so that the user can fetch them by hand.
SOURCES = {
    INCEPTION_FILE: "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE,
    ALEXNET_FILE: "https://download.pytorch.org/models/" + ALEXNET_FILE,
    NIQE_FILE: "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/" + NIQE_FILE,
    BRISQUE_FILE: "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/" + BRISQUE_FILE,
}

PACKAGES = {m.name: m.package for m in REGISTRY.values() if m.package}
INSTALL_HINT = "pip install 'fdem[metrics]'"


class MetricUnavailableWarning(UserWarning):
    """A metric's package or weight file is missing (or failed to load): its column is NaN."""


class MetricUnavailable(RuntimeError):
    """Raised by a metric loader; the message says what is missing and where to put it."""


def checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: torchvision-style weight files (AlexNet, FID Inception)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def pyiqa_dir() -> Path:
    """``$TORCH_HOME/hub/pyiqa``: pyiqa's parameter files (NIQE, BRISQUE)."""
    return Path(torch.hub.get_dir()) / "pyiqa"


def package_ok(module: str) -> bool:
    """Whether ``module`` is importable, found without importing it (fast, no side effects)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def lpips_linear_file() -> Path | None:
    """The LPIPS v0.1 AlexNet linear-layer weights shipped inside the ``lpips`` wheel."""
    spec = importlib.util.find_spec("lpips") if package_ok("lpips") else None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"


def required_files(name: str) -> list[Path]:
    """The weight files metric ``name`` reads (empty for the always-available ones)."""
    if name == "fid":
        return [checkpoint_dir() / INCEPTION_FILE]
    if name == "lpips":
        linear = lpips_linear_file()
        return [checkpoint_dir() / ALEXNET_FILE] + ([linear] if linear is not None else [])
    if name == "niqe":
        return [pyiqa_dir() / NIQE_FILE]
    if name == "brisque":
        return [pyiqa_dir() / BRISQUE_FILE]
    return []


@dataclass
class MetricStatus:
    """Readiness of one metric: its package, its files (path, present) and what to do if not ready."""

    name: str
    package_ok: bool
    files: list[tuple[Path, bool]] = field(default_factory=list)
    hint: str = ""

    @property
    def ready(self) -> bool:
        return self.package_ok and all(present for _, present in self.files)


def _hint(name: str, pkg_ok: bool, files: list[tuple[Path, bool]]) -> str:
    if not pkg_ok:
        return f"package {PACKAGES[name]!r} missing: {INSTALL_HINT}"
    missing = [path for path, present in files if not present]
    parts = []
    for path in missing:
        source = SOURCES.get(path.name)
        where = f"put {path.name} in {path.parent}"
        parts.append(f"{where} (from {source})" if source else f"{path} missing: reinstall {PACKAGES[name]}")
    return "; ".join(parts)


def status_of(name: str) -> MetricStatus:
    """:class:`MetricStatus` of one metric, from file presence only (nothing is loaded)."""
    if name not in checked_names():
        from fdem.errors import InputError

        raise InputError(f"unknown metric {name!r}: use one of {', '.join(checked_names())}")
    if not REGISTRY[name].weights:
        return MetricStatus(name, True, [], "")
    pkg_ok = package_ok(PACKAGES[name])
    files = [(path, path.is_file()) for path in required_files(name)]
    return MetricStatus(name, pkg_ok, files, _hint(name, pkg_ok, files))


def metric_status() -> list[MetricStatus]:
    """Readiness of every metric: the always-available ones first, then the optional ones."""
    return [status_of(name) for name in checked_names()]


def require(name: str) -> None:
    """Raise :class:`MetricUnavailable` naming what is missing unless metric ``name`` is ready."""
    status = status_of(name)
    if not status.ready:
        raise MetricUnavailable(status.hint)


_REPORTED: set[str] = set()


def report_unavailable(name: str, reason: str) -> bool:
    """Warn once per process that ``name`` gives NaN and why; returns whether a warning was issued."""
    if name in _REPORTED:
        return False
    _REPORTED.add(name)
    warnings.warn(f"metric {name} unavailable (NaN): {reason}", MetricUnavailableWarning, stacklevel=3)
    return True


def reset_reports() -> None:
    """Forget which metrics were reported (for tests and long-lived processes that want it again)."""
    _REPORTED.clear()
