"""The blur problem of a kernel field, ``y = Σ_m k_m ⊛ (w_m ⊙ x) + σn`` (:mod:`fdem.kernel_field`, docs/design.md §19).

:class:`FieldProblem` is a :class:`~fdem.problem.BlurProblem` whose "kernel" is a field ``(B, M, k, k)``:
everything the sampler, the restarts and the imputed margin ask of a problem (forward, adjoint,
residual, misfit, ΠGDM's pseudo-inverse) is the product-convolution model's, so the loop runs unchanged.
ΠGDM's ``Aᵀ(r²AAᵀ + σ²I)⁻¹`` has no closed form for a field; it is taken cell by cell and blended,
``Σ_m w_m ⊙ K_mᵀ(r²K_mK_mᵀ + σ²I)⁻¹``: exact for one cell or equal kernels, and the local inverse where
the windows are wide against the kernel (the "efficient filter flow" approximation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.kernel_field import adjoint_of_spectrum, blend, blurred_spectrum, cell_axis, edge_taper, field_windows, parse_grid
from fdem.physics import psf2otf
from fdem.problem import BlurProblem


MIN_TAPER = 16  # px over which the cells' data fall to 0 at the canvas edge (at least the imputed margin)


class FieldProblem(BlurProblem):
    """Blurry ``y (B, C, H, W)`` seen through a ``grid = (G, H)`` kernel field laid on ``region``
    (``((top, left), (height, width))`` of the canvas, the image's place; None: the whole canvas);
    ``observed`` as for :class:`~fdem.problem.BlurProblem`. Kernels are fields ``(B, G·H, k, k)``.
    ``cell_weights`` are what the M-step windows each cell's data with: the windows, tapered to 0 at the
    canvas edge (:func:`~fdem.kernel_field.edge_taper`), where a window flat up to the edge would
    otherwise meet the opposite edge's zero across the FFT's wrap and draw a cross into the kernel."""

    def __init__(self, y: Tensor, sigma: float | Tensor, observed: Tensor | None = None, *, grid=(1, 1),
                 region: tuple[tuple[int, int], tuple[int, int]] | None = None):
        super().__init__(y, sigma, observed)
        self.grid, self.region = parse_grid(grid), region
        self.windows = field_windows(self.shape, self.grid, region, like=y)  # (M, H, W), once per run
        margin = min(region[0]) if region else 0
        self.cell_weights = self.windows * edge_taper(self.shape, max(margin, MIN_TAPER), like=y)

    @property
    def cells(self) -> int:
        return self.grid[0] * self.grid[1]

    def model(self) -> dict:
        return {"grid": self.grid, "region": self.region}

    def otf(self, kernel: Tensor) -> Tensor:
        """The cells' OTFs ``(B, M, H, W')``; recomputed only for a new field tensor."""
        if kernel.dim() != 4 or kernel.shape[1] != self.cells:
            raise InputError(f"a {self.grid[0]}x{self.grid[1]} field needs kernels (B, {self.cells}, k, k), got {tuple(kernel.shape)}")
        if kernel is not self._kernel:
            self._kernel, self._otf = kernel, psf2otf(kernel.to(self.y.dtype), self.shape)
        return self._otf

    def forward(self, u: Tensor, kernel: Tensor) -> Tensor:
        """``A u`` for ``u (B, C, H, W)`` or particles ``(B, n, C, H, W)``."""
        return self.image(blurred_spectrum(u, self.otf(kernel), self.windows))

    def adjoint(self, spectrum: Tensor, kernel: Tensor) -> Tensor:
        """``Aᵀ v`` of ``v`` given by its spectrum ``(B, [n,] C, H, W')``."""
        return adjoint_of_spectrum(spectrum, self.otf(kernel), self.windows)

    def residual_spectrum(self, u: Tensor, kernel: Tensor, u_hat: Tensor | None = None) -> Tensor:
        """The spectrum of ``y − A u_p`` for particles ``u (B, n, C, H, W)`` (``u_hat`` is not needed: each
        cell sees its own windowed image)."""
        return self.y_hat.unsqueeze(1) - blurred_spectrum(u, self.otf(kernel), self.windows)

    def pseudo_inverse(self, residual: Tensor, kernel: Tensor, r2: float, noise: Tensor) -> Tensor:
        """``Σ_m w_m ⊙ F⁻¹[conj(K_m)·V / (r²|K_m|² + noise)]`` (module notes)."""
        residual = residual.unsqueeze(-4)
        otf = cell_axis(self.otf(kernel), residual)
        noise = noise.unsqueeze(-4) if torch.is_tensor(noise) and noise.dim() == residual.dim() - 1 else noise
        return blend(self.image(otf.conj() * residual / (r2 * otf.abs().square() + noise)), self.windows)
