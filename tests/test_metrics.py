"""fdem.metrics: fidelity metrics against references, FID algebra, and offline behaviour of the rest.

No test needs a weight file: missing ones must give NaN and one warning; where a package is
installed, small fake weight files (random tensors of the right shapes) exercise the loading path.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from fdem.errors import InputError
from fdem.metrics import (
    MetricSuite,
    MetricUnavailableWarning,
    availability,
    fid_from_features,
    frechet_distance,
    kernel_mse,
    metric_status,
    psnr,
    reblur_loss,
    ssim,
)
from fdem.cli.metrics import add_parsers
from fdem.physics import blur


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """Every test sees an empty ``$TORCH_HOME`` and a fresh once-per-process warning registry."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    availability.reset_reports()
    yield tmp_path / "torch_home" / "hub"
    availability.reset_reports()


def smooth_images(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random images with some spatial structure (blurred noise), in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    k = torch.ones(1, 1, 5, 5) / 25
    return blur(x, k).clamp(0, 1)


def unavailable_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, MetricUnavailableWarning)]


# ---------------------------------------------------------------- PSNR, SSIM, re-blur, kernel MSE


def test_psnr_per_image():
    a = torch.full((2, 3, 8, 8), 0.5)
    b = a.clone()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1] += 0.01  # MSE 1e-4 -> 40 dB
    torch.testing.assert_close(psnr(b, a), torch.tensor([20.0, 40.0]), atol=1e-4, rtol=0)
    assert psnr(a, a)[0] == float("inf")


def test_ssim_matches_scikit_image():
    a = smooth_images(2, 3, 40, 48, seed=1)
    b = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    ours = ssim(a, b)
    assert ours.shape == (2,)
    for i in range(2):
        ref = structural_similarity(
            a[i].numpy(), b[i].numpy(), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1, channel_axis=0,
        )
        assert abs(ours[i].item() - ref) < 1e-4
    torch.testing.assert_close(ssim(a, a), torch.ones(2))


def test_fidelity_rejects_bad_shapes():
    with pytest.raises(InputError, match="same shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(InputError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))


def test_reblur_loss_is_zero_mean_at_the_truth():
    x = smooth_images(2, 3, 64, 64)
    k = torch.rand(2, 1, 7, 7)
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    sigma = 10 / 255
    clean = blur(x, k)
    total, per_pixel = reblur_loss(x, k, clean, sigma)
    count = 3 * 64 * 64
    torch.testing.assert_close(total, torch.full((2,), -sigma**2 * count), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per_pixel, total / count)
    noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    _, per_pixel = reblur_loss(x, k, noisy, torch.tensor([sigma, sigma]))
    assert per_pixel.abs().max() < 0.05 * sigma**2  # the noise term cancels (std ≈ 0.013 σ²)


def test_kernel_mse_centres_by_centre_of_mass():
    g = torch.Generator().manual_seed(0)
    k = torch.zeros(1, 1, 33, 33)
    k[..., 12:20, 13:18] = torch.rand(8, 5, generator=g)
    shifted = torch.roll(k, shifts=(3, -4), dims=(-2, -1))  # same support, integer shift
    assert kernel_mse(shifted, k).item() < 1e-12
    other = torch.zeros(1, 1, 33, 33)
    other[..., 14:17, 10:22] = 1.0
    assert kernel_mse(other, k).item() > 1e-6


# ---------------------------------------------------------------- FID algebra


def test_fid_of_identical_features_is_zero():
    f = np.random.default_rng(0).normal(size=(300, 16))
    assert abs(fid_from_features(f, f)) < 1e-6


def test_fid_of_shifted_features_is_the_squared_shift():
    f = np.random.default_rng(1).normal(size=(200, 8))
    shift = np.arange(8) / 4
    assert fid_from_features(f, f + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 1.0 + 0.0 + 6.25 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0.0
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_general_covariances():
    rng = np.random.default_rng(2)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = m1 @ m1.T + 0.1 * np.eye(5), m2 @ m2.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    w, v = np.linalg.eigh(c1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ c2 @ root1)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2) - 2 * np.sum(np.sqrt(inner))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-8)


def test_fid_rejects_bad_features():
    with pytest.raises(InputError, match="feature sizes differ"):
        fid_from_features(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(InputError, match="N >= 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((4, 3)))


# ---------------------------------------------------------------- availability, CLI, suite without files


def test_metric_status_lists_ready_and_missing(empty_torch_home):
    statuses = {s.name: s for s in metric_status()}
    for name in ("psnr", "ssim", "kernel_mse", "reblur"):
        assert statuses[name].ready and statuses[name].hint == ""
    for name, file in (("lpips", "alexnet-owt-7be5be79.pth"), ("fid", "pt_inception-2015-12-05-6726825d.pth"),
                       ("niqe", "niqe_modelparameters.mat"), ("brisque", "brisque_svm_weights.pth")):
        status = statuses[name]
        assert not status.ready
        if status.package_ok:
            assert file in status.hint and str(empty_torch_home) in status.hint
            assert (empty_torch_home / ("pyiqa" if name in ("niqe", "brisque") else "checkpoints") / file, False) in status.files
        else:
            assert "fdem[metrics]" in status.hint


def test_missing_package_hint_names_the_extra(monkeypatch):
    monkeypatch.setattr(availability, "package_ok", lambda module: False)
    status = availability.status_of("lpips")
    assert not status.ready and "pip install 'fdem[metrics]'" in status.hint


def test_metrics_check_prints_a_table(capsys):
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["metrics", "check"])
    args.func(args)  # returns normally: exit status 0
    out = capsys.readouterr().out
    for name in ("psnr", "ssim", "kernel_mse", "reblur", "lpips", "fid", "niqe", "brisque"):
        assert f"| {name} |" in out
    assert "| psnr | yes |" in out and "| fid | no |" in out


def test_suite_without_files_gives_nan_and_one_warning_per_metric():
    x = smooth_images(2, 3, 32, 32)
    y = (x + 0.05).clamp(0, 1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        suite = MetricSuite(device=torch.device("cpu"))
        first = suite.image_metrics(x, y)
        suite.image_metrics(x, y)
        MetricSuite(names=("lpips", "niqe"))  # a second suite in the same process: no new message
        no_fid = MetricSuite(names=("psnr",), fid=False)
    messages = unavailable_warnings(record)
    for name in ("lpips", "niqe", "brisque", "fid"):
        assert sum(m.startswith(f"metric {name} ") for m in messages) == 1, messages
    assert len(messages) == 4
    assert set(first) == {"psnr", "ssim", "psnr_aligned", "lpips", "niqe", "brisque"}
    for name in ("psnr", "ssim"):
        assert first[name].shape == (2,) and torch.isfinite(first[name]).all()
    for name in ("lpips", "niqe", "brisque"):
        assert first[name].shape == (2,) and torch.isnan(first[name]).all()
    assert not suite.has_fid and suite.fid_features(x) is None
    assert not no_fid.has_fid and set(no_fid.image_metrics(x, y)) == {"psnr"}


def test_suite_rejects_unknown_names():
    with pytest.raises(InputError, match="valid names are psnr, ssim, psnr_aligned, lpips, niqe, brisque, fid"):
        MetricSuite(names=("psnr", "musiq"))


# ---------------------------------------------------------------- loading paths, with fake weight files


def fake_alexnet_features(path) -> None:
    """Random tensors with the shapes of torchvision AlexNet's conv layers (``features.*``)."""
    g = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    state = {}
    for i, shape in shapes.items():
        fan_in = shape[1] * shape[2] * shape[3]
        state[f"features.{i}.weight"] = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(shape[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_lpips_with_fake_trunk(empty_torch_home):
    pytest.importorskip("lpips")
    fake_alexnet_features(empty_torch_home / "checkpoints" / "alexnet-owt-7be5be79.pth")
    x = smooth_images(2, 3, 64, 64)
    y = x.flip(-1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        suite = MetricSuite(names=("lpips",), fid=False)
        same = suite.image_metrics(x, x)["lpips"]
        diff = suite.image_metrics(x, y)["lpips"]
    assert unavailable_warnings(record) == []
    assert same.abs().max() < 1e-6 and (diff > 0).all()


class _NotATensor:
    """A pickled object of this class must be refused (weights_only loading)."""


def test_niqe_brisque_with_fake_parameters_and_refused_pickle(empty_torch_home):
    pytest.importorskip("pyiqa")
    from scipy.io import savemat

    folder = empty_torch_home / "pyiqa"
    folder.mkdir(parents=True)
    savemat(folder / "niqe_modelparameters.mat", {"mu_prisparam": np.zeros((1, 36)), "cov_prisparam": np.eye(36)})
    torch.save((torch.rand(4), torch.rand(4, 36)), folder / "brisque_svm_weights.pth")
    x = smooth_images(2, 3, 96, 96)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        values = MetricSuite(names=("niqe", "brisque"), fid=False).image_metrics(x, x)
        assert unavailable_warnings(record) == []
        assert torch.isfinite(values["niqe"]).all() and torch.isfinite(values["brisque"]).all()
        small = MetricSuite(names=("niqe",), fid=False).image_metrics(x[..., :64, :64], x[..., :64, :64])["niqe"]
        torch.save(_NotATensor(), folder / "brisque_svm_weights.pth")
        refused = MetricSuite(names=("brisque",), fid=False).image_metrics(x, x)["brisque"]
    messages = unavailable_warnings(record)
    assert torch.isnan(small).all() and torch.isnan(refused).all()
    assert len(messages) == 2
    assert "at least 96x96" in messages[0] and "could not load" in messages[1]


def test_fid_with_a_foreign_weight_file_is_reported_not_raised(empty_torch_home):
    pytest.importorskip("pytorch_fid")
    path = empty_torch_home / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    path.parent.mkdir(parents=True)
    torch.save({"not.an.inception.weight": torch.zeros(1)}, path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        suite = MetricSuite(names=("psnr", "fid"))
    messages = unavailable_warnings(record)
    assert not suite.has_fid and len(messages) == 1
    assert "could not load" in messages[0] and path.name in messages[0]


def test_fid_features_with_random_inception_weights(empty_torch_home, monkeypatch):
    fid_inception = pytest.importorskip("pytorch_fid.inception")
    # The Inception layout with random weights: build it with every weight load disabled.
    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.Module, "load_state_dict", lambda self, *args, **kwargs: None)
        patch.setattr(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: None)
        layout = fid_inception.fid_inception_v3()
    path = empty_torch_home / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    path.parent.mkdir(parents=True)
    torch.save(layout.state_dict(), path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        suite = MetricSuite(names=("fid",))
    assert unavailable_warnings(record) == [] and suite.has_fid
    x = smooth_images(2, 3, 32, 32)
    features = suite.fid_features(torch.cat([x, x[:1]]))
    assert features.shape == (3, 2048) and np.isfinite(features).all()
    np.testing.assert_allclose(features[2], features[0], rtol=1e-5, atol=1e-6)


def test_kernel_mse_of_a_larger_estimate_is_taken_on_the_true_support():
    from fdem.kernel_ops import kernel_mse, pad_kernel
    from fdem.kernels_gen import make_generator

    truth = make_generator("camera-shake", 17).sample(2, seed=3)
    assert kernel_mse(pad_kernel(truth, 64), truth).max().item() < 1e-12  # same kernel on a wider canvas
    spread = pad_kernel(truth, 65) * 0.5 + 0.5 / 65**2  # half of the mass spread evenly over 65×65 (same centre)
    expected = ((pad_kernel(spread, 17) - truth) ** 2).mean(dim=(1, 2, 3))  # centred already: crop and compare
    assert torch.allclose(kernel_mse(spread, truth), expected, rtol=1e-3, atol=1e-12)
    assert (kernel_mse(spread, truth) > 1e-6).all()


def test_registry_drives_rows_tables_and_the_metric_list():
    from fdem.benchmarks.rows import COLUMNS
    from fdem.benchmarks.tables import TABLE1_COLUMNS
    from fdem.metrics.registry import REGISTRY, selectable_names

    assert COLUMNS[-10:] == ("psnr", "ssim", "psnr_aligned", "lpips", "niqe", "brisque", "kernel_mse", "reblur",
                             "reblur_per_pixel", "psnr_sa")
    assert [c for c, _, _ in TABLE1_COLUMNS] == ["seconds", "psnr", "ssim", "psnr_aligned", "lpips", "fid", "niqe",
                                                 "brisque", "kernel_mse", "reblur_per_pixel"]
    assert selectable_names() == ("psnr", "ssim", "psnr_aligned", "lpips", "niqe", "brisque", "fid")
    assert [m.name for m in REGISTRY.values() if m.weights] == ["lpips", "fid", "niqe", "brisque"]
    assert REGISTRY["psnr"].higher_is_better and not REGISTRY["lpips"].higher_is_better


def test_benchmark_warns_only_about_the_metrics_it_is_asked_for(tmp_path):
    """A config naming psnr and ssim loads (and warns about) nothing else, FID included."""
    from fdem.benchmarks.module import BenchmarkModule

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        module = BenchmarkModule(["alternation"], str(tmp_path), metrics=("psnr", "ssim"))
        module.on_predict_start()
    assert unavailable_warnings(record) == [] and not module.suite.has_fid
    with pytest.raises(InputError, match="unknown metric"):
        BenchmarkModule(["alternation"], str(tmp_path), metrics=("psnr", "musiq"))


def test_aligned_psnr_forgives_a_shift_that_plain_psnr_counts():
    """A sharp image moved by (2, -3) px: plain PSNR counts the move, the aligned one finds it back (the
    window inside the border matches exactly); no shift can make it worse than the unshifted interior."""
    from fdem.metrics.fidelity import aligned_psnr

    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(2, 3, 40, 40, generator=g, dtype=torch.float64)
    moved = torch.roll(sharp, shifts=(2, -3), dims=(-2, -1))
    assert (psnr(moved, sharp) < 15).all()
    assert torch.isinf(aligned_psnr(moved, sharp)).all()  # the same pixels: zero error
    noisy = (sharp + 0.05 * torch.randn(sharp.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    interior = psnr(noisy[..., 4:-4, 4:-4], sharp[..., 4:-4, 4:-4])
    assert (aligned_psnr(noisy, sharp) >= interior).all()
    with pytest.raises(InputError, match="larger than 8"):
        aligned_psnr(sharp[..., :8, :8], sharp[..., :8, :8])
