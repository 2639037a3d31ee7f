"""Why Fast EM loses, and what fixes it: variants of fastem-pigdm on photo crops, traced along the
trajectory (studies/fastem/NOTES.md)::

    python -m studies.fastem.fastem_study --images ../shared/data/bsds500/val --count 8 \\
        --variants "default; lam=0.1; lam=0.3; preset=paper" --trace trace.png

A variant is ``default`` or ``key=value`` pairs separated by spaces (``;`` between variants), in the
presets' own language: ``preset`` (default ``tuned``), any field a preset fixes (``steps``, ``start``,
``kernel_relax``, ``recenter``, ``lam``, …: ``fdem presets``), and ``method`` (default
``fastem-pigdm``; e.g. ``pigdm`` = non-blind with the true kernel). ``default`` is fastem-pigdm
under the ``tuned`` preset (the library default when the study began). Crops, kernels (seeded camera-shake) and noise are those
of :mod:`studies.priors.prior_eval` (:func:`studies.common.crops`); every variant sees the same problems and sampler seeds.
The blind sampler is chaotic (one crop can move by 10 dB with the sampler seed), so
``--sampler-seed 3,4,5`` runs every variant once per seed: its row is then the mean over the seeds
and a last column lists the mean PSNR of each seed, whose spread is the noise a difference between
variants has to beat.
Crops run ``--batch`` at a time (default 8: memory is bounded, the results do not depend on it).
The trace plot shows, per variant, the mean PSNR of x̂0 and the mean kernel MSE at every step;
the cost plot, PSNR and kernel MSE against seconds per image, one curve per step rule.
``--per-crop out.csv`` writes every crop's PSNR and kernel MSE per variant and seed, for paired
comparisons (which variant wins on how many crops).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fdem.baselines.alternation import wiener_alternation
from fdem.errors import InputError
from fdem.io_utils import atomic_write_text
from fdem.kernel_ops import dirac, kernel_mse
from fdem.metrics import psnr
from fdem.presets import OVERRIDES, resolve
from fdem.priors import load_prior
from fdem.problem import BlurProblem
from fdem.sampling.methods import run_method
from fdem.synthetic import blur_problems, camera_shake
from fdem.validate import check_float, check_int, check_sigma255
from studies.common import add_crop_arguments, crops, plot_costs, run_script, save_panels, two_panels

STUDY_PRESET = "tuned"  # what "default" means: fastem-pigdm as the study's earlier runs shipped it


@dataclass
class Variant:
    """One configuration: its label, method, preset and field overrides (checked when first resolved)."""

    label: str
    method: str = "fastem-pigdm"
    preset: str = STUDY_PRESET
    overrides: dict = field(default_factory=dict)

    def spec(self, kernel_size: int):
        """The variant's :class:`~fdem.presets.RunSpec` with the study's kernel size."""
        return resolve(self.method, self.preset, **{"kernel_size": kernel_size, **self.overrides})


def _value(text: str):
    """A token's value as an int, a float, a bool or the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_variant(text: str) -> Variant:
    """``"preset=few-step kernel_relax=2"`` → a :class:`Variant`; ``"default"`` → no overrides."""
    variant = Variant(text.strip())
    for token in text.split():
        if token == "default":
            continue
        key, sep, value = token.partition("=")
        if not sep or key not in ("method", "preset", *OVERRIDES):
            raise InputError(f"bad variant token {token!r}: use key=value with key method, preset or one of {', '.join(OVERRIDES)}")
        if key in ("method", "preset"):
            setattr(variant, key, value)
        else:
            variant.overrides[key] = _value(value)
    variant.spec(33)  # every value checked now, before any run
    return variant


class StepTrace:
    """Mean x̂0 PSNR and kernel MSE over the images (and over all chains, with restarts) after every
    step (a sampler callback)."""

    def __init__(self, x: torch.Tensor, k: torch.Tensor):
        self.x, self.k, self.psnr, self.kmse = x, k, [], []

    def __call__(self, u: torch.Tensor, kernel: torch.Tensor | None) -> None:
        chains = u.shape[0] // len(self.x)  # restarts run chain-major in one batch
        self.psnr.append(psnr(u.mean(dim=1), self.x.repeat(chains, 1, 1, 1)).mean())
        blind = kernel is not None and kernel.shape[-1] > 1
        self.kmse.append(kernel_mse(kernel, self.k.repeat(chains, 1, 1, 1)).mean() if blind else None)


def merge_traces(traces: list[StepTrace], sizes: list[int]) -> StepTrace:
    """One trace of all images from the traces of consecutive groups of ``sizes`` images (step means
    weighted by the group sizes)."""
    merged = StepTrace(torch.cat([t.x for t in traces]), torch.cat([t.k for t in traces]))
    total = sum(sizes)
    merged.psnr = [sum(t.psnr[i] * n for t, n in zip(traces, sizes)) / total for i in range(len(traces[0].psnr))]
    merged.kmse = [None if traces[0].kmse[i] is None else sum(t.kmse[i] * n for t, n in zip(traces, sizes)) / total
                   for i in range(len(traces[0].kmse))]
    return merged


def run_variant(variant: Variant, prior, x, k, y, sigma: float, kernel_size: int, seed: int, batch: int):
    """The variant's ``(image, kernel, seconds)`` and its :class:`StepTrace`, running at most ``batch``
    crops per call (memory: a call holds ``batch`` × restarts × particles images). Crop ``b`` has
    sampler seed ``seed + b`` whatever the batch, so the batch changes nothing but memory and time."""
    spec = variant.spec(kernel_size)
    images, kernels, traces, seconds = [], [], [], 0.0
    for first in range(0, len(x), batch):
        part = slice(first, first + batch)
        trace = StepTrace(x[part], k[part])
        out = run_method(spec, prior, BlurProblem(y[part], sigma), kernel=None if spec.blind else k[part],
                         seed=[seed + b for b in range(len(x))[part]], callback=trace)
        images.append(out.image)
        kernels.append(out.kernel)
        traces.append(trace)
        seconds += out.seconds
    kernel = None if kernels[0] is None else torch.cat(kernels)
    return (torch.cat(images), kernel, seconds), merge_traces(traces, [len(t.x) for t in traces])


def parse_seeds(text: str) -> list[int]:
    """``"3"`` or ``"3,4,5"`` → the sampler seeds (non-negative integers, no repeats)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise InputError(f"--sampler-seed must be distinct non-negative integers separated by commas, got {text!r}")
    return seeds


def seed_mean(values: list[list[float | None]]) -> list[float | None]:
    """Step-wise mean of several seeds' traces (None where a trace has no kernel)."""
    return [None if None in column else sum(column) / len(column) for column in zip(*values)]


def plot_traces(traces: dict[str, list[StepTrace]], out: str) -> None:
    """x̂0 PSNR and kernel MSE (log) against the step, one line per variant (mean over its seeds)."""
    fig, left, right = two_panels()
    for label, runs in traces.items():
        left.plot(seed_mean([[float(p) for p in t.psnr] for t in runs]), label=label)
        kmse = seed_mean([[None if m is None else float(m) for m in t.kmse] for t in runs])
        if kmse and kmse[0] is not None:
            right.semilogy(kmse, label=label)
    left.set(xlabel="step (network call)", ylabel="PSNR of x̂0 (dB)", title="image along the trajectory")
    right.set(xlabel="step (network call)", ylabel="kernel MSE", title="kernel along the trajectory")
    save_panels(fig, left, right, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of photographs (tune on val, report on test)")
    parser.add_argument("--prior", default="bsds64", help="prior file or shipped name")
    parser.add_argument("--variants", default="default", help="';'-separated variants (see the module doc)")
    add_crop_arguments(parser, count=8, size=128, kernel_size=33)
    parser.add_argument("--seed", type=int, default=11, help="kernels and noise")
    parser.add_argument("--sampler-seed", default="3", help="one seed, or several separated by commas (rows average them)")
    parser.add_argument("--batch", type=int, default=8, help="crops per sampler call (memory grows with it, "
                        "times restarts and particles; results do not depend on it)")
    parser.add_argument("--trace", default=None, help="write the trace plot (PNG) here")
    parser.add_argument("--cost-plot", default=None, help="write PSNR and kernel MSE against seconds (PNG) here")
    parser.add_argument("--per-crop", default=None, help="write each crop's PSNR and kernel MSE per variant and seed (CSV) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sigma, ks = check_sigma255(args.sigma), check_int(args.kernel_size, "--kernel-size", 3)
    variants = [parse_variant(v) for v in args.variants.split(";") if v.strip()]
    seeds = parse_seeds(args.sampler_seed)
    batch = check_int(args.batch, "--batch", 1)
    for flag, path in (("--trace", args.trace), ("--cost-plot", args.cost_plot), ("--per-crop", args.per_crop)):
        if path and not Path(path).resolve().parent.is_dir():
            raise InputError(f"{flag} {path}: its folder does not exist")
    x = crops(args.images, check_int(args.count, "--count"), check_int(args.size, "--size", 8),
              check_float(args.scale, "--scale", 0.05, 1.0))
    x, k, y = blur_problems(x, camera_shake(len(x), ks, args.seed), sigma, noise_seed=args.seed)
    prior = load_prior(args.prior)
    print(f"{len(x)} crops of {args.images} ({args.size}², scale {args.scale}), {ks}² camera-shake kernels "
          f"(seed {args.seed}), σ = {args.sigma}/255, prior {args.prior}\n")
    by_seed = len(seeds) > 1
    print(f"sampler seed{'s' if by_seed else ''} {', '.join(map(str, seeds))}\n")
    print("| variant | PSNR | kernel MSE | s / image | per image |" + (" PSNR by seed |\n" if by_seed else "\n")
          + "|---|---|---|---|---|" + ("---|" if by_seed else ""))

    per_crop = ["variant,sampler_seed,crop,psnr,kernel_mse"]

    def row(label, outs) -> tuple[float, float | None, float]:
        """Print the mean over ``outs`` (one ``(image, kernel, seconds)`` per seed); return PSNR, kernel MSE, s / image."""
        per = torch.stack([psnr(image.clamp(0, 1), x) for image, _, _ in outs])
        kernels = [kernel for _, kernel, _ in outs]
        mse = None if kernels[0] is None else sum(kernel_mse(kk, k).mean().item() for kk in kernels) / len(kernels)
        seconds = sum(s for _, _, s in outs) / len(outs) / len(x)
        cells = [label, f"{per.mean():.2f}", "–" if mse is None else f"{mse:.2e}", f"{seconds:.1f}",
                 " ".join(f"{p:.1f}" for p in per.mean(dim=0).tolist())]
        if by_seed:
            cells.append(" ".join(f"{p:.2f}" for p in per.mean(dim=1).tolist()))
        print("| " + " | ".join(cells) + " |", flush=True)
        for seed, (psnrs, kernel) in zip(seeds if len(outs) == len(seeds) else [""], zip(per, kernels)):
            kmse = [None] * len(x) if kernel is None else kernel_mse(kernel, k).tolist()
            per_crop.extend(f'"{label}",{seed},{crop},{p:.4f},{"" if m is None else f"{m:.6g}"}'
                            for crop, (p, m) in enumerate(zip(psnrs.tolist(), kmse)))
        return per.mean().item(), mse, seconds

    row("blurry input (Dirac)", [(y, dirac(len(x), ks), 0.0)])
    row("Wiener + M-step alternation", [wiener_alternation(y, sigma, kernel_size=ks)])
    traces, results = {}, []
    for variant in variants:
        outs, traces[variant.label] = [], []
        for seed in seeds:
            out, trace = run_variant(variant, prior, x, k, y, sigma, ks, seed, batch)
            outs.append(out)
            traces[variant.label].append(trace)
        mean_psnr, mse, seconds = row(variant.label, outs)
        results.append((variant.label, seconds, mean_psnr, mse))
    for path, plot, data in ((args.trace, plot_traces, traces), (args.cost_plot, plot_costs, results)):
        if path:
            plot(data, path)
            print(f"\nplot: {path}")
    if args.per_crop:
        atomic_write_text(args.per_crop, "\n".join(per_crop) + "\n")
        print(f"\nper crop: {args.per_crop}")


if __name__ == "__main__":
    run_script(main)
