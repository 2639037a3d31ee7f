"""Where the time of a Fast EM step goes on a CPU: the M-step's share and the FFTs' share.

Runs ``fastem-pigdm`` with the shipped prior on 64×64 held-out crops (camera-shake kernels,
σ = 10/255), once timing every M-step call and once under the torch profiler (the FFTs'
self time over the total self time)::

    python -m studies.fastem.step_profile [--kernel-size 33] [--images 4] [--steps 20] [--threads 1]

On a CPU only: the wall-clock timing of the M-step reads no device clock.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import torch

from fdem.mstep import MStepConfig
from fdem.priors import load_prior
from studies.common import make_problems, run_preset, run_script

SIGMA = 10 / 255


@dataclass(frozen=True)
class TimedMStep(MStepConfig):
    """The M-step, recording the wall-clock seconds of every call."""

    seconds: list = field(default_factory=list)

    def update(self, *args, **kwargs):
        start = time.perf_counter()
        kernel = super().update(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)
        return kernel


def step_shares(kernel_size: int = 33, images: int = 4, steps: int = 20) -> dict:
    """``{"mstep": share of the run in the M-step, "fft": FFT self time over all self time}``."""
    from torch.profiler import ProfilerActivity, profile

    per_image = -(-images // 3)
    _, _, y = make_problems(64, kernel_size, per_image, SIGMA)
    y, prior = y[:images], load_prior(None)
    run_preset("fastem-pigdm", prior, y, SIGMA, steps=2, kernel_size=kernel_size)  # warm-up
    mstep = TimedMStep(kernel_size=kernel_size, recenter="bilinear")
    start = time.perf_counter()
    run_preset("fastem-pigdm", prior, y, SIGMA, steps=steps, mstep=mstep)
    total = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_preset("fastem-pigdm", prior, y, SIGMA, steps=steps, kernel_size=kernel_size)
    events = prof.key_averages()
    fft = sum(e.self_cpu_time_total for e in events if "fft" in e.key)
    return {"mstep": sum(mstep.seconds) / total, "fft": fft / sum(e.self_cpu_time_total for e in events)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel-size", type=int, default=33)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shares = step_shares(args.kernel_size, args.images, args.steps)
    print(f"fastem-pigdm, small64 prior, {args.images} images 64x64, {args.kernel_size}x{args.kernel_size} kernels, "
          f"{args.steps} steps, {args.threads} thread(s): M-step {100 * shares['mstep']:.1f} % of the run, "
          f"FFTs {100 * shares['fft']:.2f} % of the CPU time")


if __name__ == "__main__":
    run_script(main)
