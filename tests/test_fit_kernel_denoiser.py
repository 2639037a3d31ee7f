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
