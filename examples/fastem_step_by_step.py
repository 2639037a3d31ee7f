"""Fast EM step by step: Algorithm 2's E-step, M-step and guidance written as a loop you can inspect.

    python examples/fastem_step_by_step.py [--steps 20] [--out trace.png]

Builds the ``paper`` preset's pieces (schedule, ΠGDM guidance, the M-step hook) and runs the general
loop's one step (:func:`fdem.sampling.loop.guided_step`) by hand, printing after every step how far the
kernel is from the truth and how well ``k ⊛ x̂0`` explains ``y``, and saving a trace of x̂0 and the kernel.
"""

import argparse

import torch

from fdem.kernel_ops import dirac, kernel_mse
from fdem.presets import resolve
from fdem.priors import load_prior
from fdem.problem import BlurProblem
from fdem.sampling.fast_em import fast_em_hook
from fdem.sampling.guidance import make_guidance
from fdem.sampling.loop import guided_step
from fdem.sampling.methods import make_generators, sampling_schedule
from fdem.sampling.result import TraceRecorder, save_trace
from fdem.imageio import default_images
from fdem.synthetic import blur_problems, camera_shake


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="diffusion steps (the paper's: 100)")
    parser.add_argument("--size", type=int, default=64, help="side of the centre crop")
    parser.add_argument("--out", default="fastem_trace.png", help="trace picture (.png grid or .gif)")
    args = parser.parse_args()

    sharp = default_images(args.size)[1][1][None]
    truth = camera_shake(1, 9, seed=2)
    sigma = 5 / 255
    _, _, y = blur_problems(sharp, truth, sigma)

    spec = resolve("fastem-pigdm", "paper", steps=args.steps, kernel_size=9)
    prior = load_prior(None, device="cpu")  # the shipped natural-image prior
    problem = BlurProblem(y, sigma)
    schedule = sampling_schedule(spec, prior, torch.device("cpu"))
    guidance = make_guidance("pigdm", schedule, spec.sampler)
    m_step = fast_em_hook(problem, schedule, spec)  # loads the shipped kernel denoiser on first use
    generator = make_generators(0, 1, torch.device("cpu"))[0]
    trace = TraceRecorder(every=max(1, args.steps // 10))

    x = torch.randn(y.shape, generator=generator)  # x_T
    kernel = dirac(1, 9)  # the Dirac start
    for i in reversed(range(schedule.num_steps)):
        noise = torch.randn(y.shape, generator=generator) if i > 0 else None
        # E-step (x̂0 and the ancestral step), M-step on x̂0 (re-centred), guidance with the new kernel
        x, kernel, u = guided_step(prior.net, schedule, x, i, problem, kernel, guidance, noise, mstep=m_step)
        trace(u, kernel)
        misfit = problem.misfit(u[:, 0], kernel).item() / sigma**2
        print(f"step {schedule.num_steps - i:3d}/{schedule.num_steps}  t={schedule.timesteps[i].item():4d}  "
              f"kernel MSE {kernel_mse(kernel, truth).item():.3g}  data misfit {misfit:.2f} σ²")
    print(f"trace: {save_trace(trace.trace(blind=True), args.out)}")


if __name__ == "__main__":
    main()
