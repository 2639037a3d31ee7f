"""The speed switches of :mod:`fdem.sampling.network_speed`: same results as fp32 eager (every switch that
exists on a CPU), fp32 output, TF32 flags scoped to the network's forward and VJP, no host sync,
clear errors for switches a device cannot honour."""

import pytest
import torch
import yaml

import fdem.sampling.network_speed as network_speed
from fdem.errors import InputError
from fdem.kernel_ops import kernel_mse
from fdem.metrics.fidelity import psnr
from fdem.physics import add_noise, blur
from fdem.mstep import MStepConfig
from fdem.problem import BlurProblem
from fdem.presets import SamplerSpec
from fdem.sampling import PiGDM, run_loop
from fdem.sampling.network_speed import (
    FastNet,
    SpeedOptions,
    accelerate,
    call_with_tf32,
    tf32_scope,
)
from fdem.sampling.loop import generator_noise
from fdem.sampling.methods import make_generators
from fdem.kernels_gen import make_generator
from tests.helpers import sample
from tests.test_sampling import IDENTITY_DENOISER, TINY_UNET, tiny_unet

EAGER = SpeedOptions("fp32", False, False)
COMPILED = SpeedOptions("fp32", False, True, backend="aot_eager")  # dynamo + AOTAutograd, no C++ build


@pytest.fixture(scope="module")
def problem():
    """Two smooth 16×16 images blurred by 5×5 camera-shake kernels, σ = 0.02."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 16, 16, generator=g), 3, 1, 1)
    k = make_generator("camera-shake", 5).sample(2, 0)
    return x, add_noise(blur(x, k), 0.02, generator=g), k


def _fastem(net, y, steps: int = 12):
    mstep = MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, recenter="bilinear")  # the old default re-centring
    return sample("fastem-pigdm", net, y, 0.02, mstep=mstep, steps=steps, seed=3, particles=2)


@pytest.mark.parametrize("options", [SpeedOptions("fp32", True, False), COMPILED], ids=["channels_last", "compile"])
def test_switched_path_matches_fp32_eager(problem, options):
    x, y, k = problem
    reference = _fastem(tiny_unet(), y)
    switched = _fastem(accelerate(tiny_unet(), options, "cpu"), y)
    assert (psnr(switched.image, x).mean() - psnr(reference.image, x).mean()).abs() < 0.1
    assert (kernel_mse(switched.kernel, k).mean() - kernel_mse(reference.kernel, k).mean()).abs() < 1e-6
    assert torch.allclose(switched.image, reference.image, atol=1e-4)


def test_bf16_runs_the_unet_in_bf16_and_returns_fp32():
    """bf16 autocast on a CPU: fp32 output at bf16 accuracy. Over a whole Fast EM run its rounding
    moves results past the 0.1 dB / 1e-6 equality bound (README, Speed), so it is never a default."""
    net = tiny_unet()
    fast = accelerate(tiny_unet(), SpeedOptions("bf16", True, False), "cpu")
    x, t = torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([400, 400])
    with torch.enable_grad():
        x_in = x.clone().requires_grad_()
        out = fast(x_in, t)
        (vjp,) = torch.autograd.grad(out[:, :3].sum(), x_in)
    ref = net(x, t)
    assert out.dtype == torch.float32 and vjp.dtype == torch.float32 and out.is_contiguous()
    assert (out - ref).norm() / ref.norm() < 2e-2


def test_compiled_vjp_matches_eager():
    net, compiled = tiny_unet(), accelerate(tiny_unet(), COMPILED, "cpu")
    x, t = torch.rand(2, 3, 16, 16) * 2 - 1, torch.tensor([10, 900])
    grads = []
    for model in (net, compiled):
        with torch.enable_grad():
            x_in = x.clone().requires_grad_()
            grads.append(torch.autograd.grad(model(x_in, t)[:, :3].square().sum(), x_in)[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_wrapper_keeps_the_network_interface():
    net = tiny_unet()
    fast = accelerate(net, SpeedOptions("fp32", True, False))
    assert isinstance(fast, FastNet) and fast.cfg is net.cfg
    assert net.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert sum(p.numel() for p in fast.parameters()) == sum(p.numel() for p in net.parameters())
    accelerate(net, EAGER)  # the layout follows the last wrapper
    assert net.input_blocks[0][0].weight.is_contiguous()


def test_loop_through_the_wrapper_never_syncs_with_the_host(monkeypatch):
    from fdem.diffusion import Schedule
    from fdem.kernel_ops import dirac

    net = accelerate(tiny_unet(), SpeedOptions("bf16", True, True, backend="aot_eager"), "cpu")
    sched = Schedule.make(1000, 3)
    guidance, start = PiGDM(sched), dirac(1, 5)
    y, sigma = torch.rand(1, 3, 16, 16), torch.tensor([0.05])
    mstep = MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, recenter="bilinear")
    problem = BlurProblem(y, sigma)
    hook = lambda u, k, i: mstep.update(problem, u, init=k, weighting="official", r2=0.0, recenter=True)

    def run():
        noise = generator_noise(make_generators(0, 1, y.device))
        return run_loop(net, sched, problem, guidance, start, noise, SamplerSpec(), particles=2, mstep=hook)

    run()  # compile both graphs (guided steps and the unguided last one) before watching

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation inside the sampler loop")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    particles, _ = run()
    monkeypatch.undo()
    assert particles.dtype == torch.float32 and particles.shape == (1, 2, 3, 16, 16)


class _Probe(torch.autograd.Function):
    """Identity that records the TF32 flags seen by its forward and its backward."""

    seen: list = []

    @staticmethod
    def forward(ctx, x):
        _Probe.seen.append(("forward", network_speed._read_tf32()))
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        _Probe.seen.append(("backward", network_speed._read_tf32()))
        return grad * 2


@pytest.mark.parametrize("enabled", [True, False])
def test_tf32_flags_hold_in_forward_and_vjp_only(enabled):
    outside = (not enabled, enabled)  # any mix the user may have set
    _Probe.seen = []
    with tf32_scope(False):
        network_speed._write_tf32(outside)
        with torch.enable_grad():
            x = torch.ones(3, requires_grad=True)
            out = call_with_tf32(_Probe.apply, x, enabled)
            assert network_speed._read_tf32() == outside
            torch.autograd.grad((out * 3).sum(), x)  # the ops after the network run outside the scope
        assert network_speed._read_tf32() == outside
    assert _Probe.seen == [("forward", (enabled, enabled)), ("backward", (enabled, enabled))]


def test_device_defaults_and_bad_options(monkeypatch):
    assert SpeedOptions().resolve("cpu") == SpeedOptions.defaults("cpu") == SpeedOptions("fp32", False, False)
    cuda = SpeedOptions.defaults(torch.device("cuda"))  # no CUDA device is touched
    assert (cuda.precision, cuda.channels_last) == ("tf32", True)  # bf16 fails the equality bound (README)
    with pytest.raises(InputError, match="unknown precision"):
        SpeedOptions("fp16")
    with pytest.raises(InputError, match="compile mode"):
        SpeedOptions(compile_mode="fastest")
    with pytest.raises(InputError, match="backend 'xla2'"):
        SpeedOptions(backend="xla2")
    with pytest.raises(InputError, match="tf32 needs a CUDA device"):
        SpeedOptions("tf32").resolve("cpu")
    monkeypatch.setattr(network_speed, "compile_problem", lambda device, backend="inductor": "no C++ compiler")
    with pytest.raises(InputError) as err:
        SpeedOptions(compile=True).resolve("cpu")
    assert "compile=True is not available on cpu: no C++ compiler" == str(err.value)
    assert SpeedOptions().resolve("cpu").compile is False  # the default never picks what cannot run


def test_diffusion_restorer_takes_and_records_the_switches(tmp_path, monkeypatch):
    from fdem.restorers import build_restorer

    torch.save(tiny_unet().state_dict(), tmp_path / "prior.pt")
    (tmp_path / "prior.yaml").write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY_UNET.items()}))
    files = dict(prior=str(tmp_path / "prior.pt"), prior_config=str(tmp_path / "prior.yaml"), steps=3)
    restorer = build_restorer("pigdm", "cpu", channels_last=True, **files)
    assert restorer.params() == {"preset": "paper", "steps": 3, "step_rule": "ddpm", "eta": 1.0, "start": 1.0,
                                 "r2_rule": "official", "sigma_floor": 0.0, "particles": 1, "restarts": 1,
                                 "border": "circular", "tiled": False, "tile": None, "overlap": None, "max_batch": 2,
                                 "saturation": None, "saturation_reach": 1, "linear_light": False,
                                 "prior": files["prior"], "prior_config": files["prior_config"],
                                 "precision": "fp32", "channels_last": True, "compiled": False}
    result = restorer.restore(torch.rand(1, 3, 16, 16), 0.02, kernel=torch.ones(1, 1, 3, 3))
    assert result.image.dtype == torch.float32
    with pytest.raises(InputError, match="tf32"):
        build_restorer("pigdm", "cpu", precision="tf32", **files)
