"""A verdict on a blind restoration without ground truth: can the result be trusted?

A user of ``fdem deblur`` has no sharp image to compare with. What the data still say
(docs/design.md §17):

* **the residual** ``‖k̂ ⊛ x̂ − y‖ / σ`` per pixel over the observed pixels: about 1 when the model
  explains the photo down to its noise; well above, the model (one kernel, linear, noise σ) fails;
  well below, the result explains the noise too (σ too high, or texture invented to fit);
* **a near-Dirac kernel**: most of its mass in 3×3 pixels, the estimate did not find a blur (the
  photo is sharp, or the blind run failed);
* **a kernel at its border**: mass on the outer ring of its support, the blur may be larger;
* **kernels that disagree across the image**: one kernel re-estimated on each cell of a grid from
  ``x̂`` and ``y`` alone (the M-step's HQS with ``x̂`` fixed, the cell's margin as missing data).
  Where the blur is one kernel, a cell's own kernel explains the cell no better than the image's
  kernel; where it varies, it explains it better: the *gain* ``(‖r_image‖² − ‖r_cell‖²)/(Nσ²)``
  of the cell's residual, above :data:`GAIN_WARN`, flags blur that varies across the frame, which one
  kernel cannot fit. Chosen on 8 BSDS500 val images, 256², σ = 5/255, with the sharp image as ``x̂``:
  uniform blur gives gains of 0.00 to 0.01, two kernels blended across the frame 0.11 to 3.9
  (median 1.5; the kernels' relative ℓ2 spread separated the two far worse: 0.03–0.77 against
  0.41–1.49). The cells' kernels and their spread are reported; cells with little detail are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor
from torch.nn.functional import avg_pool2d, interpolate

from fdem.kernel_ops import normalize_kernel, recenter
from fdem.mstep import MStepConfig
from fdem.problem import BlurProblem
from fdem.sampling.kernel_window import gradient_energy

RESIDUAL_HIGH = 1.5  # residual over σ above which the model does not explain the photo
RESIDUAL_LOW = 0.7  # below which the result explains the noise as well
DIRAC_WARN = 0.75  # share of the kernel's mass in its brightest 3×3 from which it counts as near-Dirac
BORDER_WARN = 0.05  # share of the mass on the outer 2-pixel ring from which the kernel is cut by its support
GAIN_WARN = 0.5  # a cell's residual gain (σ² units) with its own kernel from which the blur counts as varying
REFIT_ROUNDS = 3  # margin refills and M-steps per cell
MIN_DETAIL = 0.25  # a cell whose gradient energy is under this share of the cells' median is left out


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge` found for one image (``sigma255`` the image's σ, ``sigma_source`` ``given`` or
    ``estimated``, ``model_sigma255`` the σ the sampler used and the residual is measured against); ``cells`` the grid's ``(rows, cols)``, ``cell_spread`` each cell's distance (None:
    left out) from the cells' mean kernel and ``cell_gain`` each cell's residual gain with its own
    kernel (σ² units, None: left out), ``warnings`` one sentence each."""

    sigma255: float
    sigma_source: str
    model_sigma255: float
    residual: float
    dirac_mass: float
    border_mass: float
    cells: tuple[int, int] | None
    cell_spread: tuple[float | None, ...] = ()
    cell_gain: tuple[float | None, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def trusted(self) -> bool:
        return not self.warnings

    @property
    def blur_varies(self) -> bool:
        """Some cell's own kernel explains it better than the image's kernel by more than :data:`GAIN_WARN`
        (``fdem deblur --kernel-grid auto`` then estimates a kernel field)."""
        return largest_gain(self.cell_gain) > GAIN_WARN

    def summary(self, name: str) -> str:
        """One line for the console (the warnings follow on their own lines)."""
        state = "no warning" if self.trusted else f"{len(self.warnings)} warning(s)"
        gains = [g for g in self.cell_gain if g is not None]
        cells = f", cell kernels gain at most {max(gains):.2f} sigma^2" if gains else ""
        used = f", sampled as {self.model_sigma255:.2f}" if self.model_sigma255 != self.sigma255 else ""
        return (f"verdict: {name}: residual {self.residual:.2f} sigma (sigma {self.sigma255:.2f}/255, {self.sigma_source}{used}), "
                f"kernel {100 * self.dirac_mass:.0f}% in 3x3 px, {100 * self.border_mass:.1f}% on its border{cells}; {state}")

    def record(self) -> dict:
        """Everything, for ``<stem>_verdict.json``."""
        return {**asdict(self), "trusted": self.trusted}


def largest_gain(gains: tuple[float | None, ...]) -> float:
    """The largest cell gain (cells left out, None, ignored; 0 without any)."""
    return max((g for g in gains if g is not None), default=0.0)


def dirac_mass(kernel: Tensor) -> Tensor:
    """``(B,)``: the largest share of a ``(B, 1, k, k)`` kernel's mass in any 3×3 box."""
    kernel = normalize_kernel(kernel.clamp_min(0))
    return (avg_pool2d(kernel, 3, stride=1, padding=1) * 9).flatten(1).max(dim=1).values


def border_mass(kernel: Tensor, ring: int = 2) -> Tensor:
    """``(B,)``: the share of the kernel's mass on its outer ``ring`` pixels."""
    kernel = normalize_kernel(kernel.clamp_min(0))
    inner = kernel[..., ring:-ring, ring:-ring].sum(dim=(-3, -2, -1))
    return 1 - inner


def residual_ratio(y: Tensor, x: Tensor, kernel: Tensor, sigma: Tensor, observed: Tensor | None) -> Tensor:
    """``(B,)``: root-mean-square of ``y − k ⊛ x`` over the observed pixels of the frame at least the
    kernel's radius inside it (where ``k ⊛ x`` depends on the frame's ``x`` alone), over σ."""
    pad = kernel.shape[-1] // 2
    inner = torch.zeros_like(y[:, :1])
    inner[..., pad:y.shape[-2] - pad, pad:y.shape[-1] - pad] = 1
    seen = inner if observed is None else inner * observed.to(y)
    problem = margin_problem(y, sigma, kernel.shape[-1], seen)
    return problem.misfit(edge_pad(x, pad), kernel).sqrt() / sigma


def margin_problem(y: Tensor, sigma: Tensor, kernel_size: int, observed: Tensor | None) -> BlurProblem:
    """``y`` padded by the kernel's radius, the margin (and pixels not ``observed``) missing data: the circular
    model on that canvas is exact for the observed pixels, given ``x`` on the whole canvas."""
    pad = kernel_size // 2
    mask = torch.ones_like(y[:, :1]) if observed is None else observed.to(y).expand(y.shape[0], 1, -1, -1)
    return BlurProblem(edge_pad(y, pad), sigma, torch.nn.functional.pad(mask, (pad,) * 4))


def edge_pad(image: Tensor, pad: int) -> Tensor:
    """Edge values continued ``pad`` pixels out (where the frame has no neighbours to show)."""
    return torch.nn.functional.pad(image, (pad,) * 4, mode="replicate")


def cell_grid(height: int, width: int, kernel_size: int) -> tuple[int, int] | None:
    """Rows and columns of cells: as many as keep each at least 4 kernel sizes a side, at most 3
    (None: the image is too small to compare regions)."""
    rows, cols = (min(3, side // (4 * kernel_size)) for side in (height, width))
    return None if rows * cols < 2 else (max(rows, 1), max(cols, 1))


@torch.no_grad()
def cell_kernels(y: Tensor, x: Tensor, sigma: Tensor, kernel: Tensor, grid: tuple[int, int],
                 mstep: MStepConfig, observed: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(kernels (B, G, 1, k, k), detail (B, G), gain (B, G))``: one kernel per cell of ``grid`` from ``x``
    and ``y`` (HQS with the M-step's prior from ``kernel`` on ``x`` around the cell, the cell's margin refilled with ``k ⊛ x``),
    the cell's mean gradient energy of ``y`` (how much it can tell) and how much better its own kernel
    explains it than ``kernel`` (mean squared residual difference over σ²)."""
    rows, cols = grid
    h, w = y.shape[-2:]
    pad = kernel.shape[-1] // 2
    energy, around = gradient_energy(y), edge_pad(x, pad)
    kernels, detail, gain = [], [], []
    for i in range(rows):
        for j in range(cols):
            top, bottom, left, right = i * h // rows, (i + 1) * h // rows, j * w // cols, (j + 1) * w // cols
            part = (..., slice(top, bottom), slice(left, right))
            problem = margin_problem(y[part], sigma, kernel.shape[-1], None if observed is None else observed[part])
            particles = around[..., top:bottom + 2 * pad, left:right + 2 * pad][:, None]  # the cell and its neighbours
            estimate = kernel
            for _ in range(REFIT_ROUNDS):
                problem.impute(particles, estimate)
                estimate = mstep.update(problem, particles, init=estimate, weighting="official", r2=0.0, recenter=True)
            kernels.append(estimate)
            detail.append(energy[part].mean(dim=(-3, -2, -1)))
            misfit = lambda k: problem.misfit(particles[:, 0], k)  # noqa: E731
            gain.append((misfit(kernel) - misfit(estimate)) / sigma**2)
    return torch.stack(kernels, dim=1), torch.stack(detail, dim=1), torch.stack(gain, dim=1)


def detailed(detail: Tensor) -> Tensor:
    """``(B, G)``: the cells with at least :data:`MIN_DETAIL` of the cells' median gradient energy."""
    return detail >= MIN_DETAIL * detail.median(dim=1, keepdim=True).values


def kernel_spread(kernels: Tensor, detail: Tensor) -> Tensor:
    """``(B, G)``: each cell kernel's relative ℓ2 distance from the mean of the detailed cells (all centred);
    NaN for cells with little detail."""
    centred = recenter(normalize_kernel(kernels.flatten(0, 1))).reshape(kernels.shape)
    used = detailed(detail)
    weights = used.to(kernels.dtype)[..., None, None, None]
    mean = (centred * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp_min(1)
    spread = (centred - mean).flatten(2).norm(dim=2) / mean.flatten(2).norm(dim=2)
    return spread.masked_fill(~used, float("nan"))


def judge(y: Tensor, x: Tensor, kernel: Tensor, sigma: float, sigma_source: str, mstep: MStepConfig,
          observed: Tensor | None = None, floor: float = 0.0) -> tuple[Verdict, Tensor | None]:
    """The :class:`Verdict` on one restoration (``y``, ``x`` ``(1, C, H, W)`` the frame, ``kernel``
    ``(1, 1, k, k)``, σ in ``[0, 1]`` units, ``observed`` its saturation mask or None, ``floor`` the
    sampler's floor under σ) and the cell kernels ``(G, 1, k, k)`` (None: the image is too small to
    compare regions)."""
    model_sigma = max(sigma, floor)
    sigma_t = torch.full((1,), max(model_sigma, 1e-4), dtype=y.dtype, device=y.device)
    ratio = float(residual_ratio(y, x, kernel, sigma_t, observed)[0])
    peak, edge = float(dirac_mass(kernel)[0]), float(border_mass(kernel)[0])
    warnings = []
    if ratio > RESIDUAL_HIGH:
        warnings.append(f"the result does not explain the photo: residual {ratio:.2f} sigma (one kernel, linear "
                        "light and noise sigma do not hold, or sigma is too low)")
    elif ratio < RESIDUAL_LOW and model_sigma == sigma:
        warnings.append(f"the result explains more than the noise allows: residual {ratio:.2f} sigma (sigma too "
                        "high, or detail invented to fit)")
    if peak >= DIRAC_WARN:
        warnings.append(f"the kernel is near a Dirac ({100 * peak:.0f}% of its mass in 3x3 px): the photo is barely "
                        "blurred, or the blind estimate failed and the image is close to the input")
    if edge >= BORDER_WARN:
        warnings.append(f"the kernel reaches the border of its support ({100 * edge:.1f}% of its mass on the outer "
                        "ring): the blur may be larger; try a larger --kernel-size or a downscaled photo")
    grid = cell_grid(*y.shape[-2:], kernel.shape[-1])
    cells, spread, gains = None, (), ()
    if grid is not None:
        found, detail, gain = cell_kernels(y, x, sigma_t, kernel, grid, mstep, observed)
        spread = _rounded(kernel_spread(found, detail)[0])
        gains = _rounded(gain[0].masked_fill(~detailed(detail)[0], float("nan")))
        cells = found[0]
        largest = largest_gain(gains)
        if largest > GAIN_WARN:
            warnings.append(f"kernels estimated on a {grid[0]}x{grid[1]} grid explain parts of the photo better than one "
                            f"kernel (residual gain up to {largest:.2f} sigma^2): the "
                            "blur varies across the photo (--kernel-grid auto restores it with a kernel field)")
    verdict = Verdict(round(255 * sigma, 3), sigma_source, round(255 * model_sigma, 3), round(ratio, 4), round(peak, 4), round(edge, 4), grid,
                      spread, gains, tuple(warnings))
    return verdict, cells


def _rounded(values: Tensor) -> tuple[float | None, ...]:
    """Per-cell values for the record: 4 decimals, None for NaN (a cell left out)."""
    return tuple(None if v != v else round(v, 4) for v in values.tolist())


def verdict_picture(y: Tensor, x: Tensor, kernel: Tensor, cells: Tensor | None, grid: tuple[int, int] | None) -> Tensor:
    """``(3, H, W')``: input | restored | the kernel enlarged to the image's height (scaled to its
    maximum) | the cell kernels in their grid, when estimated; 4-pixel white gaps."""
    height = y.shape[-2]
    panels = [y[0].clamp(0, 1), x[0].clamp(0, 1), _enlarged(kernel[0], height)]
    if cells is not None and grid is not None:
        rows, cols = grid
        side = height // rows
        tiles = [_enlarged(cells[g], side) for g in range(rows * cols)]
        panel = torch.cat([torch.cat(tiles[r * cols:(r + 1) * cols], dim=-1) for r in range(rows)], dim=-2)
        panels.append(torch.nn.functional.pad(panel, (0, 0, 0, height - panel.shape[-2]), value=1.0))
    gap = torch.ones(3, height, 4, dtype=y.dtype, device=y.device)
    pieces = []
    for panel in panels:
        pieces += [panel.expand(3, -1, -1), gap]
    return torch.cat(pieces[:-1], dim=-1)


def _enlarged(kernel: Tensor, side: int) -> Tensor:
    """``(1, side, side)``: a ``(1, k, k)`` kernel scaled to its maximum, nearest-neighbour enlarged, with a thin frame."""
    scaled = kernel / kernel.max().clamp_min(1e-12)
    big = interpolate(scaled[None], size=(side, side), mode="nearest")[0]
    big[..., :1, :] = big[..., -1:, :] = big[..., :, :1] = big[..., :, -1:] = 0.5
    return big
