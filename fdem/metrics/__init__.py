"""Image-restoration metrics: fidelity (PSNR, aligned PSNR, SSIM, re-blur, kernel MSE), FID, LPIPS, NIQE, BRISQUE.

PSNR (plain and aligned), SSIM, kernel MSE and the re-blur loss need nothing else. The others need an optional
package (``pip install 'fdem[metrics]'``) and weight files placed by hand under
``$TORCH_HOME/hub`` (``fdem metrics check`` lists them); when absent, their values are NaN.
Heavy packages are imported only when a metric is loaded.
"""

from fdem.metrics.availability import (
    MetricStatus,
    MetricUnavailableWarning,
    metric_status,
)
from fdem.metrics.fid import fid_from_features, frechet_distance
from fdem.metrics.fidelity import aligned_psnr, kernel_mse, psnr, reblur_loss, ssim
from fdem.metrics.suite import MetricSuite

__all__ = [
    "MetricStatus",
    "MetricSuite",
    "MetricUnavailableWarning",
    "aligned_psnr",
    "fid_from_features",
    "frechet_distance",
    "kernel_mse",
    "metric_status",
    "psnr",
    "reblur_loss",
    "ssim",
]
