"""What more than one study needs: the script runner, the problems they share and the two-panel plots.

A study imports another study's helpers only from here (``tests/test_layering.py`` checks it), and
nothing installed (``fdem``, ``fdem.benchmarks``, ...) imports :mod:`studies`.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from fdem.errors import InputError

Result = tuple  # a cost-plot point: (variant label, seconds per image, PSNR, kernel MSE or None)


def run_script(main: Callable[[], None]) -> None:
    """Run a study's ``main``: bad input (an :class:`InputError`) ends in one line on stderr and
    exit status 2, as in the ``fdem`` command, instead of a traceback."""
    try:
        main()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


# --- problems -------------------------------------------------------------------------------------

def crops(folder: str, count: int, size: int, scale: float) -> torch.Tensor:
    """``(count, 3, size, size)`` centre crops in [0, 1] of the first ``count`` images of ``folder``,
    each resized by ``scale`` first (the photo crops of prior_eval, fastem_study and deblur_check)."""
    from fdem.datamodules.images import ScaledCentreCrops
    from fdem.imageio import list_images

    files = list_images(folder)[:count]
    data = ScaledCentreCrops(files, size, scale, channels=3)
    return torch.stack([(data[j] + 1) / 2 for j in range(len(files))])


def protocol_samples(images: str, count: int, sigmas: list[float], size: int = 128, kernel_size: int = 33, **data):
    """The deblur check's samples (``configs/bench/deblur_check.yaml``: crops at scale 0.5, scene blur,
    seeded camera-shake kernels of seed 11, noise seed 0) for these σ (255 scale); ``data``: more
    data-module arguments (``lights``, ``linear_light``). A list of sample dicts."""
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule

    dm = BlurBenchmarkDataModule(images=images, num_images=count, size=size, scale=0.5, kernels="camera-shake",
                                 kernel_size=kernel_size, kernel_seed=11, sigmas=list(sigmas), blur="scene", seed=0, **data)
    dm.setup("predict")
    return [dm.dataset[i] for i in range(len(dm.dataset))]


def field_samples(images: str, count: int, size: int, kernel_size: int, grid: str, seed: int) -> list[dict]:
    """The kernel-field benchmark's samples (``configs/bench/kernel_field.yaml``'s data: scene blur through
    seeded camera-shake fields with roll, kernel seed ``seed``, σ = 5/255, noise seed 0) on ``images``."""
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule

    dm = BlurBenchmarkDataModule(images=images, num_images=count, size=size, kernels="camera-shake", kernel_size=kernel_size,
                                 kernel_seed=seed, kernel_grid=grid, sigmas=[5], blur="scene", seed=0)
    dm.setup("predict")
    return [dm.dataset[i] for i in range(len(dm.dataset))]


def config_samples(config: str):
    """The samples of a ``fdem bench`` config's ``data`` (the bench's observations and sampler seeds)."""
    from fdem.configio import load_yaml
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule

    data = load_yaml(config, "benchmark config").get("data")
    if not isinstance(data, dict):
        raise InputError(f"{config}: a benchmark config needs a data mapping")
    dm = BlurBenchmarkDataModule(**data)
    dm.setup("predict")
    return dm.dataset


def key_values(pairs: list[str]) -> dict:
    """``["preset=photo", "steps=2"]`` as options, each value read as YAML (numbers, null, true)."""
    import yaml

    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"bad option {pair!r}: use key=value")
        found[key] = yaml.safe_load(value)
    return found


def add_crop_arguments(parser, count: int, size: int, kernel_size: int) -> None:
    """The flags of the photo-crop problems (:func:`crops`, seeded camera-shake kernels, noise):
    ``--count``, ``--size``, ``--scale``, ``--kernel-size``, ``--sigma`` (255 scale), with these defaults."""
    parser.add_argument("--count", type=int, default=count)
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--scale", type=float, default=0.5, help="resize factor before cropping")
    parser.add_argument("--kernel-size", type=int, default=kernel_size)
    parser.add_argument("--sigma", type=float, default=5.0, help="255 scale")


def mstep_arguments(description: str, count: int = 12):
    """The parsed flags of the M-step-alone checks on the saturated-lamp scenes: ``--images``, ``--count``,
    ``--size``, ``--kernel-size``, ``--rounds``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, default=count)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--kernel-size", type=int, default=33)
    p.add_argument("--rounds", type=int, default=8, help="margin refills and M-steps")
    return p


def mstep_alone(y, image, seen, kernel_size: int, rounds: int, shown=None, missing: str = "impute"):
    """The ``(1, 1, k, k)`` kernel of ``rounds`` margin refills and M-steps (σ = 5/255, from a Dirac) with
    ``image`` as x̂ and ``seen`` the observed mask (None: every pixel); ``shown(kernel)`` replaces ``image``
    by what the M-step should see given the current kernel; ``missing``: the M-step's treatment of the
    unobserved pixels (:class:`fdem.mstep.MStepConfig`)."""
    from fdem.kernel_ops import dirac
    from fdem.mstep import MStepConfig
    from fdem.verdict import edge_pad, margin_problem

    mstep = MStepConfig(kernel_size=kernel_size, recenter="bilinear", missing=missing)
    problem, kernel = margin_problem(y, torch.tensor([5 / 255]), kernel_size, seen), dirac(1, kernel_size)
    for _ in range(rounds):
        particles = edge_pad(image if shown is None else shown(kernel), kernel_size // 2)[:, None]
        problem.impute(particles, kernel)
        kernel = mstep.update(problem, particles, init=kernel, weighting="official", r2=0.0, recenter=True)
    return kernel


def print_against_first(header: str, errors: dict[str, list[float]]) -> None:
    """A table of each row's mean and median kernel MSE and its mean over the first row's."""
    print(f"| {header} | mean kernel MSE | median | against {next(iter(errors))} |")
    print("|---|---|---|---|")
    base = torch.tensor(next(iter(errors.values()))).mean()
    for name, values in errors.items():
        v = torch.tensor(values)
        print(f"| {name} | {v.mean():.3g} | {v.median():.3g} | {float(v.mean() / base):.2f}× |")


def make_problems(size: int, kernel_size: int, per_image: int, sigma: float, seed: int = 0):
    """``(sharp, kernels, y)``: centre crops of the held-out photographs, seeded camera-shake kernels
    and noisy observations, deterministic from ``seed`` (prior_check, step_profile, equality_floor)."""
    from fdem.synthetic import blur_problems, camera_shake, held_out_crops

    sharp = held_out_crops(size, per_image)
    return blur_problems(sharp, camera_shake(len(sharp), kernel_size, seed), sigma, noise_seed=seed)


# --- two-panel plots (fastem_study's traces and the cost plot) ------------------------------------

def two_panels():
    """A headless figure with two side-by-side axes: ``(fig, left, right)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    return fig, left, right


def save_panels(fig, left, right, out: str) -> None:
    """Legends on both axes, then the figure written to ``out`` and closed."""
    import matplotlib.pyplot as plt

    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def steps_of(label: str) -> int:
    """The network calls of a variant label (``steps=N``; ``default`` and no ``steps``: 100)."""
    for token in label.split():
        if token.startswith("steps="):
            return int(token.partition("=")[2])
    return 100


def rule_of(label: str) -> str:
    """A variant's label without its step count: the curve it belongs to."""
    rest = [t for t in label.split() if not t.startswith("steps=")]
    return " ".join(rest) or "default"


def plot_costs(results: list[Result], out: str) -> None:
    """PSNR and kernel MSE (log) against seconds per image (log), one curve per step rule, each
    point labelled with its network calls (``fastem_study --cost-plot`` and ``cost_plot``)."""
    fig, left, right = two_panels()
    for rule in dict.fromkeys(rule_of(r[0]) for r in results):
        points = sorted((sec, p, m, steps_of(label)) for label, sec, p, m in results if rule_of(label) == rule)
        seconds = [q[0] for q in points]
        left.semilogx(seconds, [q[1] for q in points], "o-", label=rule)
        if all(q[2] is not None for q in points):
            right.loglog(seconds, [q[2] for q in points], "o-", label=rule)
        for sec, p, _, calls in points:
            left.annotate(str(calls), (sec, p), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set(xlabel="seconds per image (log)", ylabel="PSNR (dB)", title="quality against cost (labels: network calls)")
    right.set(xlabel="seconds per image (log)", ylabel="kernel MSE", title="kernel against cost")
    save_panels(fig, left, right, out)


STUDY_PRESET = "tuned"  # the studies' default sampler: fastem-pigdm as shipped when they were run


def run_preset(method: str, prior, y, sigma, *, preset: str = STUDY_PRESET, kernel=None, seed=0, callback=None,
            mstep=None, **overrides):
    """``method`` under ``preset`` with field ``overrides`` on a loaded :class:`~fdem.priors.Prior` (its
    network as it is); ``mstep`` replaces the M-step (e.g. a timed one). Returns the sampling result."""
    from dataclasses import replace

    from fdem.presets import resolve
    from fdem.problem import BlurProblem
    from fdem.sampling.methods import run_method

    spec = resolve(method, preset, **overrides)
    if mstep is not None:
        spec = replace(spec, em=replace(spec.em, mstep=mstep))
    return run_method(spec, prior, BlurProblem(y, sigma), kernel=kernel, seed=seed, callback=callback)
