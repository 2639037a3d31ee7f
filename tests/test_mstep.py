"""M-step: the Fourier data step against dense least squares, the authors' HQS, recovery, errors."""

import pytest
import torch

from fdem.errors import InputError
from fdem.kernel_ops import kernel_mse, normalize_kernel
from fdem.mstep import KernelDataTerm, estimate_kernel
from fdem.nets.kernel_denoiser import KernelDenoiser
from fdem.physics import add_noise, blur
from fdem.problem import BlurProblem


def _circulant_conv_matrix(img):
    """Dense (N, N) matrix of z -> img ⊛ z (circular, z's origin at pixel (0, 0))."""
    h, w = img.shape
    cols = []
    for idx in range(h * w):
        e = torch.zeros(h * w, dtype=img.dtype)
        e[idx] = 1
        spec = torch.fft.fft2(img) * torch.fft.fft2(e.reshape(h, w))
        cols.append(torch.fft.ifft2(spec).real.reshape(-1))
    return torch.stack(cols, dim=1)


def test_z_update_equals_dense_least_squares():
    g = torch.Generator().manual_seed(0)
    h = w = 6
    ks = 3
    n, c = 2, 3
    x = torch.rand(1, n, c, h, w, generator=g, dtype=torch.float64)
    y = torch.rand(1, c, h, w, generator=g, dtype=torch.float64)
    k = normalize_kernel(torch.rand(1, 1, ks, ks, generator=g, dtype=torch.float64))
    alpha = torch.tensor([0.3], dtype=torch.float64)
    ours = KernelDataTerm(BlurProblem(y, 0.0), x, alpha=alpha).solve(k)
    # dense: per channel, argmin_z Σ_p ||y_c − x_pc ⊛ z||² + α||z − k_full||², then average channels
    k_full = torch.zeros(h, w, dtype=torch.float64)
    for i in range(ks):
        for j in range(ks):
            k_full[(i - ks // 2) % h, (j - ks // 2) % w] = k[0, 0, i, j]
    zs = []
    for ch in range(c):
        mats = [_circulant_conv_matrix(x[0, p, ch]) for p in range(n)]
        lhs = sum(m.T @ m for m in mats) + alpha * torch.eye(h * w, dtype=torch.float64)
        rhs = sum(m.T @ y[0, ch].reshape(-1) for m in mats) + alpha * k_full.reshape(-1)
        zs.append(torch.linalg.solve(lhs, rhs).reshape(h, w))
    z_full = torch.stack(zs).mean(0)
    dense = torch.stack([torch.stack([z_full[(i - ks // 2) % h, (j - ks // 2) % w] for j in range(ks)]) for i in range(ks)])
    assert torch.allclose(ours[0, 0], dense, atol=1e-10)


def _authors_hqs(y, x, sigma, ksize, denoiser, lam, beta, iters):
    """The authors' M-step written out independently: full complex FFTs, roll-based placement,
    particles on the first axis, the denoiser called on [k, √(λ/β)] stacked as channels."""
    h, w = y.shape[-2:]

    def place(k):
        full = torch.zeros(k.shape[:-2] + (h, w), dtype=k.dtype)
        full[..., :ksize, :ksize] = k
        return torch.roll(full, (-(ksize // 2), -(ksize // 2)), dims=(-2, -1))

    def crop(full):
        return torch.roll(full, (ksize // 2, ksize // 2), dims=(-2, -1))[..., :ksize, :ksize]

    def project(k):
        k = torch.clamp(k, min=0)
        return k / k.sum(dim=(-2, -1), keepdim=True)

    alpha = sigma**2 * beta
    fx = torch.fft.fft2(x)  # (n, C, H, W)
    num = (fx.conj()).sum(0, keepdim=True) * torch.fft.fft2(y)  # the authors sum conj(X) before multiplying by Y
    den = (fx * fx.conj()).sum(0, keepdim=True)
    z = torch.zeros(1, 1, ksize, ksize, dtype=y.dtype)
    z[..., ksize // 2, ksize // 2] = 1
    for _ in range(iters):
        full = torch.fft.ifft2((num + torch.fft.fft2(alpha * place(z))) / (den + alpha)).real
        k = project(crop(full.mean(dim=1, keepdim=True)))
        level = torch.ones_like(k) * (lam / beta) ** 0.5
        z = project(project(denoiser.model(torch.cat([k, level], dim=1))))
    return z


def test_official_mode_reproduces_authors_hqs():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 3, 32, 32, generator=g, dtype=torch.float64)
    truth = normalize_kernel(torch.rand(1, 1, 7, 7, generator=g, dtype=torch.float64) ** 4)
    y = add_noise(blur(x[:, 0], truth), 0.02, generator=g)
    denoiser = KernelDenoiser(bias=True).double()
    with torch.no_grad():
        for p in denoiser.parameters():  # keep outputs positive-ish so the projection is meaningful
            p.copy_(p.abs() * 0.3)
    ours = estimate_kernel(y, x, 0.02, 7, reg="pnp", lam=1.0, beta=1e5, iters=5, denoiser=denoiser)
    ref = _authors_hqs(y[0:1], x[0], 0.02, 7, denoiser, 1.0, 1e5, 5)
    assert torch.allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("reg,lam", [("l1", 1.0), ("l2", 1e-4), ("pnp", 0.0)])
def test_known_image_recovers_kernel(reg, lam):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 48, 48, generator=g).repeat_interleave(1, 0)
    truth = torch.zeros(2, 1, 9, 9)
    truth[0, 0, 4, 2:7] = 1  # horizontal line
    truth[1, 0, 2:7, 4] = 1  # vertical line
    truth = normalize_kernel(truth)
    y = add_noise(blur(x, truth), 0.01, generator=g)
    est = estimate_kernel(y, x, 0.01, 9, reg=reg, lam=lam, iters=10)
    assert est.shape == (2, 1, 9, 9)
    assert torch.allclose(est.sum((-2, -1)), torch.ones(2, 1)) and (est >= 0).all()
    dirac = torch.zeros_like(truth)
    dirac[..., 4, 4] = 1
    assert (kernel_mse(est, truth) < 0.05 * kernel_mse(dirac, truth)).all()


def test_batch_and_particles_are_independent():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 1, 24, 24, generator=g, dtype=torch.float64)
    y = torch.rand(2, 1, 24, 24, generator=g, dtype=torch.float64)
    both = estimate_kernel(y, x, torch.tensor([0.01, 0.05]), 5, reg="l1", lam=1.0)
    one = estimate_kernel(y[1:], x[1:], 0.05, 5, reg="l1", lam=1.0)
    assert torch.allclose(both[1:], one, atol=1e-12)


def test_paper_weighting_differs_and_stays_on_simplex():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 4, 3, 24, 24, generator=g)
    y = torch.rand(1, 3, 24, 24, generator=g)
    off = estimate_kernel(y, x, 0.05, 5, reg="l1", lam=1.0)
    pap = estimate_kernel(y, x, 0.05, 5, reg="l1", lam=1.0, weighting="paper", r2=0.01)
    assert not torch.allclose(off, pap)
    assert torch.allclose(pap.sum(), torch.tensor(1.0))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(reg="tv"), "regulariser"),
        (dict(weighting="fast"), "weighting"),
        (dict(kernel_size=40), "larger than the image"),
        (dict(sigma=-1.0), "sigma"),
        (dict(reg="l1"), "lam must be given"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(sigma=0.01, kernel_size=5, reg="pnp", lam=1.0)
    args.update(kwargs)
    if kwargs.get("reg") == "l1":
        args.pop("lam")
    with pytest.raises(InputError, match=match):
        estimate_kernel(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), denoiser=lambda k, s: k, **args)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(reg="tv"), "regulariser"),
        (dict(kernel_size=0), "kernel_size"),
        (dict(reg="l2"), "lam must be given"),
        (dict(lam=-1.0), "lam >= 0"),
        (dict(beta=0.0), "beta > 0"),
        (dict(iters=-1), "iters"),
        (dict(kernel_size=True), "kernel_size"),
        (dict(recenter="cubic"), "unknown recenter rule 'cubic'"),
        (dict(missing="drop"), "missing pixels 'drop'"),
    ],
)
def test_mstep_config_is_validated_when_built(kwargs, match):
    from fdem.mstep import MStepConfig

    with pytest.raises(InputError, match=match):
        MStepConfig(**kwargs)


def test_mstep_config_recentres_by_spline_by_default_and_has_no_relax_or_recenter_rule():
    """The authors' spline re-centring is MStepConfig's default; relaxation lives in update(relax=) and
    EMSpec.kernel_relax, the rule in ``recenter`` (the old fields are gone, not silently ignored)."""
    from fdem.mstep import MStepConfig

    assert MStepConfig().recenter == "spline"
    for old in (dict(relax=2.0), dict(recenter_rule="bilinear")):
        with pytest.raises(TypeError):
            MStepConfig(**old)


def test_estimate_kernel_options_are_keyword_only():
    with pytest.raises(TypeError):
        estimate_kernel(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), 0.01, 5, "l1", 1.0)


@pytest.mark.parametrize("rule, recenter", [("bilinear", False), ("bilinear", True), ("spline", True)])
def test_over_relaxation_moves_the_centred_update_gamma_times_as_far(rule, recenter):
    """update(relax=γ): R(Π(k₀ + γ(R(HQS(k₀)) − k₀))) with R the config's re-centring (identity when
    off), Π the simplex clip; γ = 1 is the plain update."""
    from fdem.kernel_ops import recenter as centre
    from fdem.mstep import MStepConfig
    from fdem.spline_shift import recenter_spline

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 3, 24, 24, generator=g, dtype=torch.float64)
    truth = normalize_kernel(torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64) ** 4)
    problem = BlurProblem(blur(x[:, 0], truth), 0.02)
    start = normalize_kernel(torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64))
    run = dict(init=start, weighting="official", r2=0.0, recenter=recenter)
    config = MStepConfig(kernel_size=5, reg="l2", lam=0.01, iters=3, recenter=rule)
    plain = config.update(problem, x, **run)
    align = {"bilinear": centre, "spline": recenter_spline}[rule] if recenter else (lambda k: k)
    for gamma in (0.5, 2.0):
        expected = align(normalize_kernel(start + gamma * (plain - start)))  # plain is R(HQS(k₀))
        got = config.update(problem, x, **run, relax=gamma)
        assert torch.allclose(got, expected, atol=1e-12)
        assert not torch.allclose(got, plain, atol=1e-6)  # it does move the kernel
        if rule != "spline":  # the authors' spline shift neither clips nor renormalises (mass leaving the window is lost)
            assert torch.allclose(got.sum(dim=(-2, -1)), torch.ones(2, 1, dtype=torch.float64)) and (got >= 0).all()
    assert torch.equal(config.update(problem, x, **run, relax=1.0), plain)


@pytest.mark.parametrize("gamma", [0, -1, 4, 10, float("nan"), "2"])
def test_bad_over_relaxation_is_refused(gamma):
    """γ is EMSpec.kernel_relax now (MStepConfig has no relax): refused when the spec is built or resolved."""
    from fdem.presets import EMSpec, resolve

    with pytest.raises(InputError, match="kernel_relax must be a number in \\(0, 4\\)"):
        EMSpec(kernel_relax=gamma)
    with pytest.raises(InputError, match="kernel_relax must be a number in \\(0, 4\\)"):
        resolve("fastem-pigdm", "tuned", kernel_relax=gamma)
    assert EMSpec(kernel_relax=3.5).kernel_relax == 3.5 and resolve("fastem-pigdm", "relaxed").em.kernel_relax == 2.0


def test_fast_em_relaxes_every_m_step_but_the_last():
    """The hook over-relaxes at i > 0 by the spec's kernel_relax and fits plainly at i = 0 (nothing
    follows that could correct an overshoot)."""
    from fdem.diffusion import ScheduleSpec
    from fdem.presets import resolve
    from fdem.sampling.fast_em import fast_em_hook

    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 1, 3, 24, 24, generator=g, dtype=torch.float64)
    problem = BlurProblem(blur(x[:, 0], normalize_kernel(torch.rand(1, 1, 5, 5, generator=g, dtype=torch.float64) ** 4)), 0.02)
    start = normalize_kernel(torch.rand(1, 1, 5, 5, generator=g, dtype=torch.float64))
    # tuned: bilinear re-centring (the old default); a given λ of the ℓ2 M-step, so the λ rule is "fixed"
    config = dict(kernel_size=5, reg="l2", lam=0.01, iters=3, lam_rule="fixed")
    specs = {gamma: resolve("fastem-pigdm", "tuned", **config, kernel_relax=gamma) for gamma in (1.0, 2.0)}
    hooks = {gamma: fast_em_hook(problem, ScheduleSpec().build(2), spec) for gamma, spec in specs.items()}
    assert torch.equal(hooks[2.0](x, start, 0), hooks[1.0](x, start, 0))
    assert not torch.allclose(hooks[2.0](x, start, 1), hooks[1.0](x, start, 1), atol=1e-6)
    mstep = specs[2.0].em.mstep
    assert mstep.recenter == "bilinear"
    run = dict(init=start, weighting="official", r2=0.0, recenter=True)
    assert torch.equal(hooks[2.0](x, start, 1), mstep.update(problem, x, **run, relax=2.0))
    assert torch.equal(hooks[2.0](x, start, 0), mstep.update(problem, x, **run))
