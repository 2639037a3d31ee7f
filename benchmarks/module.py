"""``BenchmarkModule``: a Lightning ``predict`` step that runs every configured method on a batch
of benchmark samples and returns one metrics row per (method, sample).

Restorers are built once per process on its device (:func:`fdem.restorers.build_restorer`); rows
whose key is already on disk are skipped, which is what makes a rerun resume. Seeds come from the
samples (``seed + index``), so results do not depend on how samples are split across processes.
The sample's seed drew its observation noise (:mod:`datamodules.blur_benchmark`); a sampler seeded
with it would start from that very noise (its first ``randn`` of the same shape), a chain
correlated with the observation. Samplers get :func:`sampler_seeds` instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from fdem.benchmarks.threads import check_threads, set_threads
from fdem.errors import InputError
from fdem.kernel_ops import kernel_mse
from fdem.method_table import lookup
from fdem.metrics.registry import METRICS, check_selection, selectable_names
from fdem.restorer_base import Restoration
from fdem.restorers import build_restorer, check_options

SIGMA_SOURCES = ("given", "auto")  # a method entry's noise level: the sample's, or estimated from y
FILE_OPTIONS = ("prior", "kernel_prior", "weights", "kernel_denoiser")  # options naming a file to load
PRIOR_OPTIONS = ("prior", "kernel_prior")  # these may also name a shipped prior (fdem.priors.SHIPPED_PRIORS)


@dataclass
class MethodSpec:
    """One column group of the tables: a method name, its options, the label rows carry (default: the
    name, plus the preset when it is not the default ``paper`` and ``n=<particles>`` when particles are
    set) and where its noise level comes from: ``sigma`` ``given`` (the sample's) or ``auto`` (estimated
    from the observation, :func:`fdem.noise_level.estimate_noise`, as ``fdem deblur`` does without ``--sigma``)."""

    method: str
    options: dict = field(default_factory=dict)
    label: str | None = None
    sigma: str = "given"

    def __post_init__(self) -> None:
        from fdem.priors import is_shipped_name

        if self.sigma not in SIGMA_SOURCES:
            raise InputError(f"method {self.method}: sigma must be one of {', '.join(SIGMA_SOURCES)}, got {self.sigma!r}")
        check_options(self.method, self.options)
        if lookup(self.method).guidance is not None:  # a diffusion method: its preset and fields checked now
            from fdem.presets import DEFAULT_PRESET, OVERRIDES, resolve

            resolve(self.method, self.options.get("preset", DEFAULT_PRESET),
                    **{k: v for k, v in self.options.items() if k in OVERRIDES})

        for key in FILE_OPTIONS:
            value = self.options.get(key)
            if value is not None and not Path(value).is_file() and not (key in PRIOR_OPTIONS and is_shipped_name(value)):
                raise InputError(f"method {self.method}: {key} file not found: {value}")
        if self.label is None:
            self.label = default_label(self.method, self.options)


def default_label(method: str, options: dict) -> str:
    """The label of a method entry that gives none: the name, `` (<preset>)`` unless the preset is
    ``paper``, `` n=<particles>`` when particles are set."""
    n, preset = options.get("particles"), options.get("preset", "paper")
    return method + ("" if preset == "paper" else f" ({preset})") + ("" if n is None else f" n={n}")


SAMPLER_SEED_OFFSET = 1_000_000_007  # far from every sample seed (seed + index) of a benchmark
SEEDING = f"sample seed + {SAMPLER_SEED_OFFSET}"  # recorded with an output folder's data settings


def sampler_seeds(sample_seeds: list[int]) -> list[int]:
    """The seeds a method samples with for samples of these seeds: independent of their observation noise."""
    return [s + SAMPLER_SEED_OFFSET for s in sample_seeds]


def _entry(entry) -> dict:
    """A config's method entry as a mapping (a bare name becomes ``{method: name}``), its keys checked."""
    if isinstance(entry, str):
        entry = {"method": entry}
    if not isinstance(entry, dict) or "method" not in entry or set(entry) - {"method", "options", "label", "sigma"}:
        raise InputError(f"a method entry is a name or a mapping with method, options, label, sigma; got {entry!r}")
    return entry


def entry_labels(entries: list) -> list[str]:
    """The label each method entry's rows will carry, as :func:`parse_methods` gives it, without
    checking options or files (for validating a config's references to its labels early)."""
    labels = []
    for entry in map(_entry, entries):
        label = entry.get("label")
        labels.append(default_label(entry["method"], entry.get("options") or {}) if label is None else label)
    return labels


def parse_methods(entries: list) -> list[MethodSpec]:
    """Config entries (a name, or a mapping with ``method``, ``options``, ``label``) → specs."""
    specs = [MethodSpec(e["method"], dict(e.get("options") or {}), e.get("label"), e.get("sigma", "given"))
             for e in map(_entry, entries)]
    labels = [s.label for s in specs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise InputError(f"several methods share the label(s) {repeated}: give each a distinct label")
    if not specs:
        raise InputError("the benchmark lists no methods")
    return specs


def _particles(result: Restoration) -> Tensor:
    return result.particles if result.particles is not None else result.image[:, None]


class BenchmarkModule(L.LightningModule):
    """Runs ``methods`` on each predict batch and returns the rows (see :mod:`fdem.benchmarks.rows`)."""

    def __init__(self, methods: list, out: str, metrics: tuple[str, ...] | None = None,
                 save_images: bool = False, done: set | None = None, threads: int = 1,
                 figure_samples: tuple[int, ...] = ()):
        super().__init__()
        self.threads = check_threads(threads)
        self.specs = parse_methods(methods)
        self.out = Path(out)
        self.metric_names = check_selection(selectable_names() if metrics is None else metrics)
        self.save_images = save_images
        self.done = set(done or ())
        self.figure_samples = frozenset(int(i) for i in figure_samples)  # grid indices comparison.png shows
        self.restorers: dict = {}
        self.suite = None

    def on_predict_start(self) -> None:
        from fdem.metrics import MetricSuite

        set_threads(self.threads)  # after Lightning's launcher, which sets cores / processes under DDP
        self.suite = MetricSuite(self.metric_names, device=self.device, fid="fid" in self.metric_names)
        self.restorers = {s.label: build_restorer(s.method, self.device, **s.options) for s in self.specs}

    @torch.no_grad()
    def predict_step(self, batch: dict, batch_idx: int = 0) -> list[dict]:
        rows = []
        indices = [int(i) for i in batch["index"]]
        for spec in self.specs:
            todo = [b for b, i in enumerate(indices) if (spec.label, i) not in self.done]
            if todo:
                rows += self._run(spec, batch, todo)
        return rows

    def _run(self, spec: MethodSpec, batch: dict, todo: list[int]) -> list[dict]:
        restorer = self.restorers[spec.label]
        pick = torch.tensor(todo)
        sub = {k: (v[pick] if isinstance(v, Tensor) else [v[b] for b in todo]) for k, v in batch.items()}
        sigma = sub["sigma"].to(self.device, torch.float32)
        if spec.sigma == "auto":
            from fdem.noise_level import estimate_noise

            sigma = estimate_noise(sub["y"].clamp(0, 1)).to(self.device)
        seeds = [int(s) for s in sub["seed"]]
        result = restorer.restore(sub["y"], sigma, kernel=sub["kernel"], seed=sampler_seeds(seeds))
        metrics = self._metrics(result, sub, sigma)
        rows = []
        for j, b in enumerate(todo):
            row = {
                "method": spec.label, "method_name": spec.method, "preset": restorer.params().get("preset", ""),
                "params": json.dumps(restorer.params(), sort_keys=True),
                "index": int(sub["index"][j]), "image_id": sub["image_id"][j], "kernel_id": int(sub["kernel_id"][j]),
                "sigma255": float(sub["sigma255"][j]), "seed": seeds[j], "threads": torch.get_num_threads(), "seconds": result.seconds / len(todo),
            }
            row.update({name: float(values[j]) for name, values in metrics.items()})
            rows.append(row)
            self._save_extras(spec.label, sub, j, result)
            self._keep_for_figure(spec.label, sub, j, result)
        return rows

    def _metrics(self, result: Restoration, sub: dict, sigma: Tensor) -> dict[str, Tensor]:
        from fdem.metrics import psnr, reblur_loss

        sharp = sub["sharp"].to(self.device)
        particles = _particles(result)
        n = particles.shape[1]
        per_particle = self.suite.image_metrics(particles.flatten(0, 1), sharp.repeat_interleave(n, dim=0))
        metrics = {name: v.reshape(-1, n).float().mean(dim=1).cpu() for name, v in per_particle.items()}
        metrics["psnr_sa"] = psnr(result.image, sharp).cpu()
        nan = torch.full((len(sharp),), float("nan"))
        metrics.update({c: nan for m in METRICS if m.source == "kernel" for c in m.columns})  # non-blind: NaN
        if result.kernel is not None:
            truth = sub["kernel"].to(self.device)
            metrics["kernel_mse"] = kernel_mse(result.kernel, truth).cpu()
            total, per_pixel = reblur_loss(result.image, result.kernel, sub["y"].to(self.device), sigma)
            metrics["reblur"], metrics["reblur_per_pixel"] = total.cpu(), per_pixel.cpu()
        return metrics

    def _keep_for_figure(self, label: str, sub: dict, j: int, result: Restoration) -> None:
        """Store image ``j``'s restoration and kernel (and the sample) on disk when comparison.png
        shows it (:mod:`fdem.benchmarks.figures`): only those few, so memory and disk stay bounded."""
        from fdem.benchmarks.figures import save_cell

        if int(sub["index"][j]) in self.figure_samples:
            sample = {k: sub[k][j] for k in ("index", "image_id", "y", "sharp", "kernel", "sigma255")}
            save_cell(self.out, label, sample, result.image[j], None if result.kernel is None else result.kernel[j])

    def _save_extras(self, label: str, sub: dict, j: int, result: Restoration) -> None:
        """Restored image and kernel (``save_images``) and FID features (when FID is available)."""
        from fdem.imageio import save_image
        from fdem.io_utils import atomic_path

        index = int(sub["index"][j])
        stem = f"{index:06d}_{sub['image_id'][j]}"
        if self.save_images:
            folder = self.out / "images" / label
            save_image(folder / f"{stem}.png", result.image[j].float().cpu())
            if result.kernel is not None:
                with atomic_path(folder / f"{stem}_kernel.npy") as tmp:
                    np.save(tmp, result.kernel[j, 0].float().cpu().numpy())
        if self.suite.has_fid:
            for name, image in ((label, result.image[j]), ("_sharp", sub["sharp"][j])):
                path = self.out / "features" / name / f"{index:06d}.npy"
                if not path.exists():
                    with atomic_path(path) as tmp:
                        np.save(tmp, self.suite.fid_features(image[None].to(self.device))[0])
