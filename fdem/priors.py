"""Load a diffusion prior, an ADM score UNet and the schedule it was trained with, strictly.

A :class:`Prior` is the network plus its :class:`~fdem.diffusion.ScheduleSpec` (T, betas, learned
σ, prediction type): samplers take the schedule from it. Three kinds of file are accepted, all
read with ``torch.load(..., weights_only=True)``:

* a guided-diffusion state_dict ``.pt`` (e.g. the public FFHQ-256 ``ffhq_10m.pt``), possibly with a
  ``module.`` prefix; without metadata it gets the public checkpoints' schedule, T = 1000 linear;
* a checkpoint written by ``fdem fit``: a dict with ``state_dict`` (UNet weights under a prefix
  such as ``net.`` or ``ema.``) and ``hyper_parameters`` (``unet``, ``T``, ``schedule``);
* a file written by ``fdem export``: the same dict with the bare UNet weights.

The architecture is a named config (``ffhq256``, ``kernel64``), a YAML file of
:class:`~fdem.nets.unet.ADMConfig` fields, or, for a checkpoint whose hyper-parameters hold a
``unet`` entry (a name or a field dict), that entry; the default is ``ffhq256``, the paper's
prior (``kernel64``, the authors' kernel prior, for a kernel prior). The UNet's prefix is found by looking for the key ``time_embed.0.weight`` (an ``ema``
copy wins over the raw weights); pass ``prefix`` to choose. Loading is strict: a mismatch raises
:class:`InputError` listing missing and unexpected keys and differing shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from fdem.configio import load_yaml
from fdem.diffusion import ScheduleSpec
from fdem.errors import InputError
from fdem.nets.checkpoints import mismatch_report, read_weights, shapes
from fdem.nets.unet import NAMED_CONFIGS, ADMConfig, ADMUNet, build_unet

# The architecture of a file that names none: the paper's image prior, the authors' kernel prior.
DEFAULT_CONFIGS = {"image": "ffhq256", "kernel": "kernel64"}
ANCHOR_KEY = "time_embed.0.weight"  # present in every ADM UNet
WEIGHTS = Path(__file__).parent / "nets" / "weights"
# The priors trained here and shipped with the package (README, "Shipped models"): name → file,
# architecture. A name is accepted wherever a prior file is (unless a file of that name exists).
SHIPPED_PRIORS = {
    "small64": (WEIGHTS / "prior_small64.pt", "small64"),
    "bsds64": (WEIGHTS / "prior_bsds64.pt", "small64"),  # small64 fine-tuned on BSDS500 train+val
    "kernel-small64": (WEIGHTS / "kernel_prior_small64.pt", "kernel-small64"),
    "kernel-small32": (WEIGHTS / "kernel_prior_small32.pt", "kernel-small32"),  # camera-shake kernels, 32×32
}
DEFAULT_PRIORS = {"image": "bsds64", "kernel": "kernel-small64"}  # what ``prior=None`` means


@dataclass(frozen=True)
class Prior:
    """A score network (eval mode, frozen) and the diffusion schedule it was trained with."""

    net: nn.Module
    schedule: ScheduleSpec

    @classmethod
    def of(cls, net: nn.Module, T: int = 1000, kind: str = "linear", prediction: str = "eps") -> "Prior":
        """``net`` with a ``T``-step ``kind`` schedule; whether it learns σ is read from its config."""
        return cls(net, replace(ScheduleSpec.assumed_for(net, T, kind), prediction=prediction))

    def accelerated(self, options, device: torch.device) -> nn.Module:
        """The network wrapped with the resolved :class:`~fdem.sampling.network_speed.SpeedOptions`
        ``options``, or as it is when it already is wrapped (the speed grid wraps it once for all methods)."""
        from fdem.sampling.network_speed import FastNet, accelerate

        return self.net if isinstance(self.net, FastNet) else accelerate(self.net, options, device)

    def overriding(self, T: int | None = None, kind: str | None = None) -> "Prior":
        """This prior with the schedule's ``T`` and/or ``kind`` replaced (None keeps them)."""
        return replace(self, schedule=replace(self.schedule, T=T or self.schedule.T, kind=kind or self.schedule.kind))


def is_shipped_name(path: str | Path | None) -> bool:
    """Whether ``path`` names a shipped prior rather than a file."""
    return path is not None and str(path) in SHIPPED_PRIORS and not Path(path).is_file()


def resolve_prior(path: str | Path | None, config=None, kind: str = "image"):
    """``(path, config)``: a prior file as given, or a shipped prior's file and architecture (by
    name, or the ``kind`` default when ``path`` is None)."""
    if path is not None and not is_shipped_name(path):
        return path, config
    name = DEFAULT_PRIORS[kind] if path is None else str(path)
    shipped, shipped_config = SHIPPED_PRIORS[name]
    if not shipped.is_file():
        raise InputError(f"the shipped prior {name!r} ({shipped}) is missing from this installation: pass a prior file")
    return shipped, config or shipped_config


def unet_config(config: str | Path | ADMConfig | dict) -> ADMConfig | dict | str:
    """A named config, an ``ADMConfig``/dict, or the fields read from a YAML file."""
    if isinstance(config, (ADMConfig, dict)) or config in NAMED_CONFIGS:
        return config
    path = Path(config)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"unknown UNet config {str(config)!r}: use one of {', '.join(NAMED_CONFIGS)} or a .yaml file")
    return load_yaml(path, "UNet config file")


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """(tensors, hyper-parameters) of a state_dict file or a Lightning checkpoint."""
    return read_weights(path, "prior checkpoint")


def find_prefix(keys: list[str]) -> str:
    """The prefix of the UNet keys: the one before ``time_embed.0.weight``, preferring an EMA copy."""
    found = sorted(k[: -len(ANCHOR_KEY)] for k in keys if k.endswith(ANCHOR_KEY))
    found = [p for p in found if p == "" or p.endswith(".")]
    if len(found) <= 1:
        return found[0] if found else ""
    ema = [p for p in found if "ema" in p.lower()]
    if len(ema) == 1:
        return ema[0]
    raise InputError(f"the checkpoint holds several UNets (prefixes {', '.join(repr(p) for p in found)}); choose one with a prefix")


def check_state(net: ADMUNet, state: dict[str, Tensor], source: str) -> None:
    """Raise an InputError naming every difference between ``state`` and ``net``'s parameters."""
    problems = mismatch_report(shapes(net), state)
    if problems:
        raise InputError(f"{source} does not match the UNet architecture: {problems} (choose the architecture with a named config or a YAML)")


def load_prior(
    path: str | Path | Prior | None,
    config: str | Path | ADMConfig | dict | None = None,
    prefix: str | None = None,
    device: torch.device | str | None = None,
    kind: str = "image",
) -> Prior:
    """The prior of ``path`` (a file, a shipped prior's name, None: the shipped ``kind`` prior, or a
    :class:`Prior` already in memory) with its network in eval mode, frozen, on ``device``.

    ``kind`` (``image`` or ``kernel``) picks the shipped default and the architecture of a file
    that names none (``ffhq256``, ``kernel64``); ``config`` overrides the file's.
    """
    if isinstance(path, Prior):
        return replace(path, net=path.net.to(device))
    path, config = resolve_prior(path, config, kind)
    state, hparams = read_checkpoint(path)
    net = _load_unet(path, state, config or hparams.get("unet", DEFAULT_CONFIGS[kind]), prefix)
    return Prior.of(net.to(device).eval().requires_grad_(False), int(hparams.get("T", 1000)),
                    str(hparams.get("schedule", "linear")), str(hparams.get("prediction", "eps")))


def _load_unet(path: Path, state: dict[str, Tensor], config, prefix: str | None) -> ADMUNet:
    """The UNet of architecture ``config`` with the weights of ``state`` under ``prefix`` (strict)."""
    net = build_unet(unet_config(config))
    prefix = find_prefix(list(state)) if prefix is None else prefix
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise InputError(f"{path} has no keys under the prefix {prefix!r}")
    check_state(net, weights, f"{path}" + (f" (prefix {prefix!r})" if prefix else ""))
    net.load_state_dict(weights, strict=True)
    return net
