"""Fit a tiny Plug-and-Play kernel denoiser with Lightning, then use it in Fast EM's M-step.

    python examples/fit_kernel_denoiser.py [--steps 20] [--size 17] [--out denoiser.pt]

The same module and data as ``fdem fit --config configs/kernel_denoiser33.yaml``, shrunk to seconds:
camera-shake kernels, Gaussian noise of log-uniform level, an MSE loss. The exported state_dict loads
with ``weights_only=True`` wherever a ``kernel_denoiser`` file is accepted (``fdem deblur
--kernel-denoiser``, a bench config's options).
"""

import argparse

import lightning as L
import torch

from fdem.datamodules.kernels import KernelDataModule
from fdem.lit.kernel_denoiser import KernelDenoiserModule
from fdem.mstep import estimate_kernel
from fdem.nets.kernel_denoiser import load_kernel_denoiser
from fdem.kernel_ops import kernel_mse
from fdem.synthetic import blur_problems, camera_shake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps")
    parser.add_argument("--size", type=int, default=17, help="kernel side")
    parser.add_argument("--out", default="kernel_denoiser_tiny.pt", help="where to write the state_dict")
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    data = KernelDataModule(size=args.size, batch_size=16, num_batches=args.steps, val_count=32)
    model = KernelDenoiserModule()  # 32 channels: the layout load_kernel_denoiser reads
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    torch.save(model.export_state_dict(), args.out)

    denoiser = load_kernel_denoiser(args.size, path=args.out)  # weights_only=True, strict
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    truth = camera_shake(1, args.size, seed=3)
    _, _, y = blur_problems(x, truth, 2 / 255)
    kernel = estimate_kernel(y, x, 2 / 255, args.size, lam=0.1, denoiser=denoiser, iters=30)
    print(f"wrote {args.out}; M-step with it: kernel MSE {kernel_mse(kernel, truth).item():.3g} "
          f"(a Dirac: {kernel_mse(torch.nn.functional.pad(torch.ones(1, 1, 1, 1), (args.size // 2,) * 4), truth).item():.3g})")


if __name__ == "__main__":
    main()
