"""``fdem deblur``'s outputs for one image: the restored picture, the kernel, the trace, and the verdict
without ground truth (:mod:`fdem.verdict`), each file added to a list as it is made."""

from __future__ import annotations

from pathlib import Path

from fdem.cli.deblur_inputs import Observation


def save_outputs(obs: Observation, result, out: Path, trace_format: str = "gif", written: list | None = None) -> list[Path]:
    """Write ``<stem>_restored.png`` (the input's bit depth, its alpha), for methods that estimate a
    kernel ``<stem>_kernel.png`` (scaled to its maximum, enlarged; a field as its grid) and ``<stem>_kernel.npy``
    (float32 k×k, sum 1; a field ``(G, H, k, k)``), and ``<stem>_trace.<gif|png>`` when the result carries a trace. Each file is added
    to ``written`` as it is made (so a failed call can remove them); returns ``written``."""
    import numpy as np

    from fdem.imageio import save_picture
    from fdem.io_utils import atomic_path
    from fdem.kernels_gen import save_preview
    from fdem.sampling.result import save_trace

    written = [] if written is None else written
    image = result.image[0].detach().float().cpu()
    if obs.gray and image.shape[0] == 3:
        image = image.mean(dim=0, keepdim=True)
    stem = out / obs.path.stem
    written.append(Path(f"{stem}_restored.png"))
    save_picture(written[-1], image, obs.alpha, obs.bits)
    if result.kernel is not None:  # one kernel (k, k), or a field (G, H, k, k) drawn as its grid
        kernel = result.kernel[0].detach().float().cpu()
        grid = result.extras.get("kernel_grid", (1, 1))
        written.append(Path(f"{stem}_kernel.png"))
        save_preview(kernel.unsqueeze(1), written[-1], ncol=grid[1])
        written.append(Path(f"{stem}_kernel.npy"))
        with atomic_path(written[-1]) as tmp:
            np.save(tmp, kernel[0].numpy() if grid == (1, 1) else kernel.reshape(*grid, *kernel.shape[-2:]).numpy())
    trace = result.extras.get("trace")
    if trace is not None:
        written.append(Path(f"{stem}_trace.{trace_format}"))
        save_trace(trace, written[-1])
    return written


def save_verdict(obs: Observation, result, sigma: float, source: str, restorer, out: Path, written: list[Path]):
    """Judge the result without ground truth (:mod:`fdem.verdict`), print the summary and its warnings,
    write ``<stem>_verdict.json`` and ``<stem>_verdict.png`` (input | restored | kernel | cell kernels)
    and return the :class:`~fdem.verdict.Verdict`."""
    import json

    from fdem.imageio import convert_channels, save_image
    from fdem.io_utils import atomic_path
    from fdem.mstep import MStepConfig
    from fdem.saturation import saturation_mask
    from fdem.verdict import judge, verdict_picture

    kernel = result.kernel[:1].detach().float().cpu()
    x = convert_channels(result.image[0].detach().float().cpu(), 3)[None]
    y = obs.image[None].clamp(0, 1)
    spec = getattr(restorer, "spec", None)
    mstep = spec.em.mstep if spec is not None and spec.blind else MStepConfig(kernel_size=kernel.shape[-1])
    observed = None if spec is None else saturation_mask(spec.canvas, y, str(obs.path))
    floor = spec.sampler.sigma_floor / 255 if spec is not None else 0.0
    verdict, cells = judge(y, x, kernel, sigma, source, mstep, observed, floor)
    print(verdict.summary(obs.path.name))
    for warning in verdict.warnings:
        print(f"  warning: {warning}")
    stem = out / obs.path.stem
    written.append(Path(f"{stem}_verdict.json"))
    with atomic_path(written[-1]) as tmp:
        Path(tmp).write_text(json.dumps({"input": str(obs.path), **verdict.record()}, indent=2))
    written.append(Path(f"{stem}_verdict.png"))
    save_image(written[-1], verdict_picture(y, x, kernel, cells, verdict.cells))
    return verdict
