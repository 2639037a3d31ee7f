"""Lamps *in* the model instead of out of it, in the M-step alone: can the clipped streaks' halos be data?

The saturation mask leaves a kernel-sized box around every clipped pixel out of the data, because no
image in the prior's range [0, 1] explains a lamp's halo. The alternative is to model the lamps:
``y = clip(k ⊛ (x + L))`` with ``L`` a few bright points, so only the clipped pixels themselves are
missing and the halos (the best trace of the kernel) stay data. This check isolates the M-step: the
image it is given is the sharp scene *clipped to [0, 1]* (the best a sampler's x̂ can be), on the
benchmark's point-light scenes, 8 rounds of margin refill and M-step from a Dirac. Rows: every pixel
as data; the mask of ``fdem/saturation.py``; the lamps found from the streaks (each isolated clipped
component's intensity centroid in ``y``; its energy refitted every round by least squares on its
box's unclipped pixels, with the current kernel) added to the image as points, only the clipped
pixels masked (lamps whose box holds another lamp's light: their box masked); the true scene with its
lamps, only the clipped pixels masked (the bound). Printed: mean and median kernel MSE and the ratio
to every pixel as data; then the kernel read from the streaks alone
(:func:`fdem.light_streaks.streak_kernel`, no M-step) on the crops that have one.

    python -m studies.saturation.lamp_model --images ../shared/data/bsds500/val --count 12
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from studies.common import mstep_alone, mstep_arguments, print_against_first, protocol_samples, run_script

LEVEL = 0.98


def lamps(y: Tensor, kernel_size: int) -> tuple[list[tuple[int, int]], Tensor]:
    """The lamps of ``y (1, C, H, W)`` alone in their box (:func:`fdem.light_streaks.lamp_boxes`): their positions (the
    intensity centroid of the box in ``y`` less its median), and a mask (1: data) that leaves out the clipped
    pixels and the box of every other clipped component."""
    from fdem.light_streaks import lamp_boxes

    grey = y.mean(dim=1)[0].double().numpy()
    clipped = (y >= LEVEL).any(dim=1)[0].numpy()
    found, crowded = [], np.zeros_like(clipped)
    for _, box, alone, _ in lamp_boxes(clipped, kernel_size)[1]:
        if not alone:
            crowded[box] = True
            continue
        patch = np.clip(grey[box] - np.median(grey[box]), 0, None)
        rows, cols = np.indices(patch.shape)
        found.append((box[0].start + int(round((rows * patch).sum() / patch.sum())),
                      box[1].start + int(round((cols * patch).sum() / patch.sum()))))
    mask = torch.from_numpy(~(clipped | crowded)).to(y)[None, None]
    return found, mask


def with_lamps(x: Tensor, y: Tensor, kernel: Tensor, found: list[tuple[int, int]], seen: Tensor) -> Tensor:
    """``x`` with a point at each lamp, of the energy that best explains the unclipped pixels of its box
    given ``kernel`` (least squares on the grey residual, at least 0)."""
    from fdem.physics import blur

    k = kernel.shape[-1]
    residual = (y - blur(x, kernel)).mean(dim=1)[0]
    out = x.clone()
    for r, c in found:
        point = torch.zeros_like(residual)
        point[r, c] = 1
        footprint = blur(point[None, None], kernel)[0, 0] * seen[0, 0]
        box = (slice(max(r - k // 2, 0), r + k // 2 + 1), slice(max(c - k // 2, 0), c + k // 2 + 1))
        energy = (residual[box] * footprint[box]).sum() / footprint[box].pow(2).sum().clamp_min(1e-12)
        out[..., r, c] += energy.clamp_min(0)
    return out


def main(argv: list[str] | None = None) -> None:
    from fdem.kernel_ops import kernel_mse
    from fdem.light_streaks import streak_kernel
    from fdem.saturation import observed_mask

    args = mstep_arguments(__doc__.splitlines()[0]).parse_args(argv)
    k = args.kernel_size
    names = ("every pixel data", "mask (kernel box)", "lamps from the streaks, clipped pixels masked",
             "true scene with its lamps, clipped pixels masked")
    errors: dict[str, list[float]] = {name: [] for name in names}
    streaks: list[float] = []
    for sample in protocol_samples(args.images, args.count, [5], args.size, k, lights=4):
        y, sharp, truth = sample["y"][None], sample["sharp"][None], sample["kernel"][None]
        bounded = sharp.clamp(0, 1)
        found, lamp_mask = lamps(y, k)
        clipped_only = 1 - (y >= LEVEL).any(dim=1, keepdim=True).to(y)
        runs = {names[0]: (bounded, None, None), names[1]: (bounded, observed_mask(y, LEVEL, k), None),
                names[2]: (bounded, lamp_mask, lambda kernel: with_lamps(bounded, y, kernel, found, lamp_mask)),
                names[3]: (sharp, clipped_only, None)}
        for name, (image, seen, shown) in runs.items():
            errors[name].append(float(kernel_mse(mstep_alone(y, image, seen, k, args.rounds, shown), truth)[0]))
        read, found = streak_kernel(y, k, LEVEL)
        if bool(found[0]):
            streaks.append(float(kernel_mse(read, truth)[0]))
    print_against_first("the M-step's image and data", errors)
    mean = f", mean kernel MSE {sum(streaks) / len(streaks):.3g} there" if streaks else ""
    print(f"\nthe streaks' kernel alone (no M-step): found on {len(streaks)} of {len(errors[names[0]])} crops{mean}")


if __name__ == "__main__":
    run_script(main)
