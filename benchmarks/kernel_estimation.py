"""The paper's Figure 4: kernel estimation when the sharp image is known.

For every noise level, each regulariser (ℓ1, ℓ2, PnP) estimates the kernel of ``y = k ⊛ x + σn``
from ``(y, x)`` with the HQS M-step run to convergence (100 iterations from a Dirac, β = 1e5);
the error is the kernel MSE of docs/design.md §1. Each
regulariser's weight λ is tuned per noise level on a validation split (other images, other
kernels) and written into the config; the test split then reports CSV rows, a Markdown table and
a plot of mean kernel MSE against σ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from itertools import takewhile
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from fdem.configio import load_yaml
from fdem.devices import resolve_device
from fdem.errors import InputError
from fdem.io_utils import atomic_path, atomic_write_text, ensure_writable_dir
from fdem.kernel_ops import kernel_mse
from fdem.kernels_gen import make_generator
from fdem.mstep import REGULARISERS, estimate_kernel
from fdem.synthetic import blur_problems
from fdem.validate import check_sigma

_LAMBDA_GRIDS = {
    "l1": [10.0 ** (e / 2) for e in range(0, 9)],  # threshold λ/β from 1e-5 to 1e-1
    "l2": [10.0**e for e in range(-1, 8)],
    "pnp": [10.0 ** (e / 4) for e in range(-8, 5)],  # σ_d = √(λ/β) from 3e-4 to 1e-2
}


@dataclass
class KernelBenchConfig:
    """Settings of the Figure-4 benchmark; ``lambdas[reg][sigma]`` is filled by ``--tune``."""

    images: str | None = None  # a folder of images; None: scikit-image's bundled photographs
    image_size: int = 256
    val_images: int = 3  # the first images (sorted) tune λ; the rest are the test split
    max_images: int = 0  # 0: all
    kernel_generator: str = "camera-shake"
    kernel_size: int = 33
    kernel_seed: int = 0  # test kernels; validation kernels use kernel_seed + 1
    kernels_per_image: int = 2
    sigmas: list[float] = field(default_factory=lambda: [0.0, 2.5, 5.0, 10.0, 15.0, 20.0])  # 255 scale
    beta: float = 1e5
    iters: int = 100  # HQS run to convergence (the authors' HQS default); Fast EM uses 10 per diffusion step
    device: str = "cpu"
    denoiser: str | None = None  # PnP denoiser state_dict (e.g. a `fdem fit` of another size); None: the shipped one
    lambda_grid: dict = field(default_factory=lambda: {k: list(v) for k, v in _LAMBDA_GRIDS.items()})
    lambdas: dict = field(default_factory=dict)
    out: str = "outputs/kernel_estimation"

    @classmethod
    def from_yaml(cls, path: str | Path) -> "KernelBenchConfig":
        data = load_yaml(path, "config file")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{path}: unknown keys {unknown}; valid keys: {sorted(known)}")
        cfg = cls(**data)
        cfg.validate(str(path))
        return cfg

    def validate(self, where: str = "config") -> None:
        """Check σ, the sizes and the device (an InputError naming ``where``)."""
        check_sigma(self.sigmas, f"{where}: sigmas")
        resolve_device(self.device, f"{where}: device")
        if self.kernel_size > self.image_size:
            raise InputError(f"{where}: kernel_size {self.kernel_size} is larger than image_size {self.image_size}")


@dataclass
class Cases:
    """Blur problems of one split: sharp images, true kernels and their ids (one row per case)."""

    sharp: torch.Tensor
    kernels: torch.Tensor
    image_ids: list[str]
    kernel_ids: list[int]


def load_split_images(cfg: KernelBenchConfig) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    """(validation, test) lists of ``(id, image)`` at ``image_size``."""
    from fdem.imageio import center_crop, default_images, list_images, load_image

    if cfg.images is None:
        images = default_images(size=cfg.image_size)
    else:
        images = [(p.stem, center_crop(load_image(p), cfg.image_size)) for p in list_images(cfg.images)]
    if cfg.max_images:
        images = images[: cfg.max_images]
    if len(images) <= cfg.val_images:
        raise InputError(f"need more than val_images={cfg.val_images} images, found {len(images)} in {cfg.images or 'the defaults'}")
    return images[: cfg.val_images], images[cfg.val_images :]


def make_cases(images: list[tuple[str, torch.Tensor]], cfg: KernelBenchConfig, seed: int) -> Cases:
    """Pair every image with ``kernels_per_image`` kernels of a seeded bank."""
    per = cfg.kernels_per_image
    bank = make_generator(cfg.kernel_generator, cfg.kernel_size).sample(len(images) * per, seed=seed)
    sharp = torch.stack([img for _, img in images for _ in range(per)])
    ids = [name for name, _ in images for _ in range(per)]
    return Cases(sharp, bank, ids, list(range(len(ids))))


def observe(cases: Cases, sigma255: float, split_seed: int) -> torch.Tensor:
    """Blurry, noisy observations; the noise depends only on the split and the value of σ."""
    return blur_problems(cases.sharp, cases.kernels, sigma255 / 255, noise_seed=split_seed + round(sigma255 * 1000))[2]


def errors_for(cases: Cases, y: torch.Tensor, sigma: float, reg: str, lam: float, cfg: KernelBenchConfig) -> torch.Tensor:
    """Kernel MSE of every case for one regulariser and weight."""
    dev = torch.device(cfg.device)
    est = estimate_kernel(y.to(dev), cases.sharp.to(dev), sigma, cfg.kernel_size, reg=reg, lam=lam,
                          beta=cfg.beta, iters=cfg.iters, denoiser=pnp_denoiser(cfg) if reg == "pnp" else None)
    return kernel_mse(est.cpu(), cases.kernels)


@lru_cache(maxsize=2)
def _denoiser(kernel_size: int, path: str | None, device: str):
    from fdem.nets.kernel_denoiser import denoiser_for_kernel

    return denoiser_for_kernel(kernel_size, path, torch.device(device))


def pnp_denoiser(cfg: KernelBenchConfig):
    """The PnP denoiser of the run: ``cfg.denoiser`` or the shipped one for the kernel size (loaded once)."""
    return _denoiser(cfg.kernel_size, cfg.denoiser, cfg.device)


def tune(cfg: KernelBenchConfig, val: Cases) -> dict:
    """λ minimising the mean validation kernel MSE, per regulariser and noise level."""
    tuned: dict = {reg: {} for reg in REGULARISERS}
    jobs = [(s, reg, lam) for s in cfg.sigmas for reg in REGULARISERS for lam in cfg.lambda_grid[reg]]
    scores: dict = {}
    with tqdm(total=len(jobs), desc="tuning λ", unit="run") as bar:
        for s in cfg.sigmas:
            y = observe(val, s, split_seed=1_000_000)
            for reg in REGULARISERS:
                for lam in cfg.lambda_grid[reg]:
                    scores[(s, reg, lam)] = errors_for(val, y, s / 255, reg, lam, cfg).mean().item()
                    bar.update()
                tuned[reg][float(s)] = min(cfg.lambda_grid[reg], key=lambda lam: scores[(s, reg, lam)])
    return tuned


def run(cfg: KernelBenchConfig, test: Cases) -> list[dict]:
    """Rows ``(regulariser, sigma, image, kernel, lambda, kernel_mse)`` of the test split."""
    rows = []
    with tqdm(total=len(cfg.sigmas) * len(REGULARISERS), desc="kernel estimation", unit="run") as bar:
        for s in cfg.sigmas:
            y = observe(test, s, split_seed=0)
            for reg in REGULARISERS:
                lam = lambda_for(cfg, reg, s)
                err = errors_for(test, y, s / 255, reg, lam, cfg)
                rows += [
                    dict(regulariser=reg, sigma=s, image=img, kernel=kid, lam=lam, kernel_mse=e)
                    for img, kid, e in zip(test.image_ids, test.kernel_ids, err.tolist())
                ]
                bar.update()
    return rows


def lambda_for(cfg: KernelBenchConfig, reg: str, sigma: float) -> float:
    table = cfg.lambdas.get(reg, {})
    for key, value in table.items():
        if math.isclose(float(key), sigma):
            return float(value)
    raise InputError(f"no tuned λ for {reg} at σ={sigma}: run `fdem kernel-bench --tune` first")


def summarise(rows: list[dict]):
    """Mean kernel MSE per noise level (rows) and regulariser (columns)."""
    import pandas as pd

    return pd.DataFrame(rows).pivot_table(index="sigma", columns="regulariser", values="kernel_mse", aggfunc="mean")


def plot(table, path: Path) -> None:
    """Mean kernel MSE against σ, one line per regulariser (log y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for reg, style in zip(REGULARISERS, ("o-", "s--", "^--")):
        if reg in table:
            ax.plot(table.index, table[reg], style, label={"pnp": "PnP (learned)"}.get(reg, reg.replace("l", "ℓ")))
    ax.set_yscale("log")
    ax.set_xlabel("noise level σ (×1/255)")
    ax.set_ylabel("mean kernel MSE")
    ax.set_title("Kernel estimation with known sharp image")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def write_config_with_lambdas(cfg: KernelBenchConfig, path: Path) -> None:
    """Rewrite the config file with the tuned λ table, keeping its leading comment lines."""
    old = Path(path).read_text().splitlines() if Path(path).is_file() else []
    header = list(takewhile(lambda line: line.startswith("#"), old)) or ["# Figure-4 kernel-estimation benchmark (fdem kernel-bench). `lambdas` written by --tune."]
    atomic_write_text(path, "\n".join(header) + "\n" + yaml.safe_dump(asdict(cfg), sort_keys=False))


def markdown_table(table) -> str:
    cols = [c for c in REGULARISERS if c in table]
    lines = ["| σ (/255) | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for s, row in table.iterrows():
        cells = [f"**{row[c]:.2e}**" if row[c] == row[cols].min() else f"{row[c]:.2e}" for c in cols]
        lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_benchmark(cfg: KernelBenchConfig, config_path: Path | None = None, retune: bool = False) -> Path:
    """Tune (if asked or if λ are missing), run the test split, write CSV / table / plot; return the table path."""
    import pandas as pd

    out = ensure_writable_dir(cfg.out)
    val_images, test_images = load_split_images(cfg)
    if retune or not cfg.lambdas:
        cfg.lambdas = tune(cfg, make_cases(val_images, cfg, seed=cfg.kernel_seed + 1))
        if config_path is not None:
            write_config_with_lambdas(cfg, config_path)
    rows = run(cfg, make_cases(test_images, cfg, seed=cfg.kernel_seed))
    with atomic_path(out / "kernel_estimation.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    table = summarise(rows)
    md = out / "kernel_estimation.md"
    atomic_write_text(md, markdown_table(table))
    plot(table, out / "kernel_estimation.png")
    return md
