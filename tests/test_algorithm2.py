"""Algorithm 2 on one page (:func:`fdem.sampling.fast_em.fast_em_paper`) is the general loop under the
``paper`` preset: same particles and kernel from the same seeds, and short enough to read."""

import inspect

import torch
from torch import nn

from fdem.diffusion import ScheduleSpec
from fdem.kernel_ops import dirac
from fdem.nets.unet import build_unet
from fdem.presets import resolve
from fdem.priors import Prior
from fdem.problem import BlurProblem
from fdem.sampling.fast_em import fast_em_paper
from fdem.sampling.loop import generator_noise
from fdem.sampling.methods import make_generators, run_method, sampling_schedule


def tiny_unet() -> nn.Module:
    torch.manual_seed(3)
    net = build_unet(dict(image_size=16, model_channels=32, channel_mult=(1, 2), attention_resolutions=(8,), num_head_channels=32))
    nn.init.normal_(net.out[-1].weight, std=0.05)  # the zero-initialised output, made to matter
    return net.eval().requires_grad_(False)


def test_algorithm_2_equals_the_general_loop_on_the_paper_preset():
    spec = resolve("fastem-pigdm", "paper", steps=6, kernel_size=7)
    prior = Prior(tiny_unet(), ScheduleSpec())
    y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    problem = BlurProblem(y, torch.tensor([0.02, 0.05]))
    general = run_method(spec, prior, problem, seed=[11, 12])
    noise = generator_noise(make_generators([11, 12], 2, torch.device("cpu")))
    schedule = sampling_schedule(spec, prior, torch.device("cpu"))
    image, kernel = fast_em_paper(prior.net, schedule, BlurProblem(y, torch.tensor([0.02, 0.05])), spec.em.mstep, noise)
    assert torch.allclose(image, general.particles, atol=1e-6)
    assert torch.allclose(kernel, general.kernel, atol=1e-7)
    assert (kernel - dirac(2, 7)).abs().sum() > 0.1  # the kernel moved away from the Dirac start


def test_algorithm_2_fits_on_a_page():
    assert len(inspect.getsource(fast_em_paper).splitlines()) <= 60
