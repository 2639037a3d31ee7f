"""Kernels for training the kernel denoiser: generated on the fly for training, a fixed bank for validation."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from fdem.kernels_gen import make_generator


class KernelBatches(Dataset):
    """Item ``i`` is a whole batch ``(batch_size, 1, k, k)`` of kernels drawn with seed ``seed + i``.

    Generating a batch at a time keeps the (numpy) synthesis vectorised; the sampler of a DDP run
    shards the batch indices, so every process sees different kernels.
    """

    def __init__(self, generator: str, size: int, params: dict, batch_size: int, num_batches: int, seed: int,
                 transform=None):
        self.generator = make_generator(generator, size, **params)
        self.batch_size, self.num_batches, self.seed = batch_size, num_batches, seed
        self.transform = transform

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> torch.Tensor:
        kernels = self.generator.sample(self.batch_size, seed=self.seed + index)
        return kernels if self.transform is None else self.transform(kernels)


class KernelDataModule(L.LightningDataModule):
    """Camera-shake (or any ``kernels_gen``) kernels: ``num_batches`` fresh batches per epoch, each
    epoch with new seeds; validation on a fixed bank of ``val_count`` kernels drawn with ``val_seed``.
    Subclasses set ``transform`` to hand the kernels over in another form."""

    transform = None

    def __init__(
        self,
        generator: str = "camera-shake",
        size: int = 33,
        params: dict | None = None,
        batch_size: int = 64,
        num_batches: int = 200,
        val_count: int = 256,
        seed: int = 0,
        val_seed: int = 10_000_000,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        data = KernelBatches(h.generator, h.size, h.params or {}, h.batch_size, h.num_batches,
                             seed=h.seed + epoch * h.num_batches, transform=self.transform)
        return DataLoader(data, batch_size=None, shuffle=False, num_workers=h.num_workers,
                          persistent_workers=False)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        bank = make_generator(h.generator, h.size, **(h.params or {})).sample(h.val_count, seed=h.val_seed)
        return DataLoader(bank if self.transform is None else self.transform(bank), batch_size=h.batch_size, shuffle=False)
