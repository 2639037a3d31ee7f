"""Shape statistics of a kernel, used to calibrate generators against reference kernels.

For the kernel normalised to sum 1:

- ``bbox_rows``, ``bbox_cols``: bounding box (px) of the pixels above 1 % of the maximum;
- ``above_1pct``, ``above_10pct``: number of pixels above 1 % / 10 % of the maximum;
- ``max``: the largest value; ``entropy``: ``-sum p log p`` in nats;
- ``com_row``, ``com_col``: centre of mass in index coordinates.

Reference (the paper's three public 33x33 kernels): boxes 13x7, 12x9, 8x11; 29-48 pixels above 1 %,
18-26 above 10 %; maxima 0.067-0.133; entropy 3.0-3.4 nats; centre of mass (16, 16).
"""

from __future__ import annotations

import numpy as np
import torch


def kernel_stats(kernel) -> dict[str, float]:
    """The statistics above for one kernel (array or tensor of shape ``(k, k)``, ``(1, k, k)`` or ``(1, 1, k, k)``)."""
    if isinstance(kernel, torch.Tensor):
        kernel = kernel.detach().cpu().numpy()
    k = np.asarray(kernel, dtype=np.float64)
    k = k.reshape(k.shape[-2:])
    k = k / k.sum()
    peak = k.max()
    rows, cols = np.nonzero(k > 0.01 * peak)
    p = k[k > 0]
    grid_r, grid_c = np.indices(k.shape)
    return {
        "bbox_rows": float(rows.max() - rows.min() + 1),
        "bbox_cols": float(cols.max() - cols.min() + 1),
        "above_1pct": float(rows.size),
        "above_10pct": float(np.count_nonzero(k > 0.1 * peak)),
        "max": float(peak),
        "entropy": float(-(p * np.log(p)).sum()),
        "com_row": float((grid_r * k).sum()),
        "com_col": float((grid_c * k).sum()),
    }

