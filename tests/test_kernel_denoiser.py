"""Kernel denoiser: the authors' layout loads strictly, the bias-free net is homogeneous, shipped weights work."""

import pytest
import torch

from fdem.errors import InputError
from fdem.kernel_ops import normalize_kernel
from fdem.mstep import default_lambda
from fdem.nets.kernel_denoiser import KernelDenoiser, denoiser_state_for_export, load_kernel_denoiser
from tests.helpers import state_dict_from_tsv


def test_authors_layout_loads_strictly(tmp_path):
    state = state_dict_from_tsv("fdncnn_kernel_denoiser")
    KernelDenoiser(bias=True).load_state_dict(state, strict=True)
    torch.save(state, tmp_path / "authors.pt")
    net = load_kernel_denoiser(path=tmp_path / "authors.pt")
    assert net.model[0].bias is not None and not net.residual
    assert sum(p.numel() for p in net.parameters()) == 28641


def test_bias_free_is_positively_homogeneous():
    net = KernelDenoiser(bias=False)
    k = torch.rand(3, 1, 15, 15)
    assert torch.allclose(net(3.0 * k, 3.0 * 0.01), 3.0 * net(k, 0.01), atol=1e-6)
    assert all(m.bias is None for m in net.model if isinstance(m, torch.nn.Conv2d))


def test_export_round_trip(tmp_path):
    net = KernelDenoiser(residual=True)
    torch.save(denoiser_state_for_export(net), tmp_path / "d.pt")
    back = load_kernel_denoiser(path=tmp_path / "d.pt")
    k = torch.rand(2, 1, 9, 9)
    assert back.residual and torch.allclose(back(k, 0.01), net(k, 0.01))


def test_bad_weights_file(tmp_path):
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        load_kernel_denoiser(path=tmp_path / "bad.pt")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="missing"):
        load_kernel_denoiser(path=tmp_path / "other.pt")
    with pytest.raises(InputError, match="size 21"):
        load_kernel_denoiser(size=21)


@pytest.mark.parametrize("size,generator", [(33, "camera-shake"), (64, "motion")])
def test_shipped_denoisers_remove_noise(size, generator):
    """Around the M-step's level σ_d = √(λ/β): Gaussian noise, and clipped + renormalised noisy
    kernels (what the M-step feeds it, the level scaled alike) are both cleaned at least 2×."""
    from fdem.kernels_gen import make_generator

    net = load_kernel_denoiser(size)
    clean = make_generator(generator, size).sample(32, seed=123)
    g = torch.Generator().manual_seed(0)
    level_md = (default_lambda(size) / 1e5) ** 0.5
    for level in (level_md / 3, level_md, 3 * level_md):
        noisy = clean + level * torch.randn(clean.shape, generator=g)
        scale = noisy.clamp_min(0).sum(dim=(-2, -1), keepdim=True)
        projected = noisy.clamp_min(0) / scale
        with torch.no_grad():
            plain = normalize_kernel(net(noisy, level))
            from_projected = normalize_kernel(net(projected, level / scale.view(-1)))
        assert ((plain - clean) ** 2).mean() < 0.5 * ((normalize_kernel(noisy) - clean) ** 2).mean()
        assert ((from_projected - clean) ** 2).mean() < 0.5 * ((projected - clean) ** 2).mean()


def test_lambda_follows_the_denoiser(tmp_path):
    from fdem.mstep import default_lambda
    from fdem.nets.kernel_denoiser import SHIPPED_LAMBDA

    assert default_lambda(33) == SHIPPED_LAMBDA[33] == default_lambda(33, load_kernel_denoiser(33))
    torch.save(state_dict_from_tsv("fdncnn_kernel_denoiser"), tmp_path / "authors.pt")
    assert default_lambda(33, load_kernel_denoiser(path=tmp_path / "authors.pt")) == 1.0
    assert default_lambda(64, lambda k, s: k) == 0.2
