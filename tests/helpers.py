"""Shared test helpers."""

from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"


def state_dict_from_tsv(name: str, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random tensors with the keys and shapes of a reference layout ``tests/data/<name>.tsv``."""
    state = {}
    for line in (DATA / f"{name}.tsv").read_text().splitlines():
        key, shape = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        state[key] = torch.randn(dims, generator=generator)
    return state


def sample(method, net, y, sigma, *, preset="tuned", kernel=None, seed=0, callback=None, trace_every=0,
           observed=None, mstep=None, noise=None, schedule=None, **overrides):
    """``run_method`` on a bare network: ``method`` under ``preset`` with field ``overrides``, the M-step
    replaced by ``mstep`` when given, ``schedule`` the prior's (default: the authors' T = 1000 linear)."""
    from dataclasses import replace

    from fdem.diffusion import ScheduleSpec
    from fdem.presets import resolve
    from fdem.priors import Prior
    from fdem.problem import BlurProblem
    from fdem.sampling.methods import run_method

    spec = resolve(method, preset, **overrides)
    if mstep is not None:
        spec = replace(spec, em=replace(spec.em, mstep=mstep))
    prior = Prior(net, schedule or ScheduleSpec())
    return run_method(spec, prior, BlurProblem(y, sigma, observed), kernel=kernel, seed=seed, callback=callback,
                      trace_every=trace_every, noise=noise)
