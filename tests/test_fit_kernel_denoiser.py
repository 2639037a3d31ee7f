"""`fdem fit` trains the kernel denoiser from its config; `fdem export` turns the checkpoint into loadable weights."""

import shutil
from pathlib import Path

import torch

from fdem.cli import main
from fdem.nets.kernel_denoiser import load_kernel_denoiser

CONFIG = Path(__file__).parents[1] / "configs" / "kernel_denoiser33.yaml"


def test_fit_then_export(tmp_path):
    config = tmp_path / "config.yaml"  # a user's config named like LightningCLI's default output
    shutil.copy(CONFIG, config)
    main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path),
          "--trainer.enable_progress_bar", "false", "--data.init_args.num_batches", "4",
          "--data.init_args.batch_size", "8", "--data.init_args.val_count", "16", "--trainer.logger", "false"])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and config.read_text() == CONFIG.read_text()
    assert torch.load(ckpt, weights_only=True)["global_step"] == 8
    main(["export", str(ckpt), "--out", str(tmp_path / "d.pt")])
    net = load_kernel_denoiser(path=tmp_path / "d.pt")
    assert net.model[0].bias is None and net(torch.rand(1, 1, 33, 33), 0.01).shape == (1, 1, 33, 33)


def test_a_denoiser_fitted_at_another_size_is_tuned_by_the_figure4_benchmark(tmp_path):
    """The kernel size is one field of the config (issue 14 item 3): fit at 17, export, tune λ with it."""
    from fdem.benchmarks.kernel_estimation import KernelBenchConfig, pnp_denoiser, run_benchmark

    main(["fit", "--config", str(CONFIG), "--data.init_args.size", "17", "--trainer.max_epochs", "1",
          "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
          "--data.init_args.num_batches", "2", "--data.init_args.batch_size", "4", "--data.init_args.val_count", "8",
          "--trainer.logger", "false"])
    main(["export", str(tmp_path / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "d17.pt")])
    cfg = KernelBenchConfig(image_size=48, kernel_size=17, val_images=1, max_images=2, kernels_per_image=1,
                            sigmas=[5.0], out=str(tmp_path / "out"), denoiser=str(tmp_path / "d17.pt"),
                            lambda_grid={"l1": [100.0], "l2": [1.0], "pnp": [0.03, 0.3]})
    net = pnp_denoiser(cfg)
    shipped = load_kernel_denoiser(33)
    assert not torch.equal(net.model[0].weight, shipped.model[0].weight)  # the fitted file, not the shipped net
    run_benchmark(cfg, config_path=tmp_path / "bench.yaml", retune=True)
    assert KernelBenchConfig.from_yaml(tmp_path / "bench.yaml").lambdas["pnp"][5.0] in (0.03, 0.3)
