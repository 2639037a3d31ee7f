"""The prediction-writer callback: every process appends its finished rows to its own CSV."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from fdem.benchmarks.rows import RANK_FOLDER, RowFile, row_key


class RowWriter(BasePredictionWriter):
    """Appends the rows returned by each predict step to ``out/rows/rank<r>.csv`` (flushed per
    sample) and marks them done in the module, so a sample repeated by the distributed sampler's
    padding is neither recomputed nor written twice."""

    def __init__(self, out: str | Path):
        super().__init__(write_interval="batch")
        self.out = Path(out)
        self.file: RowFile | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        self.file = RowFile(self.out / RANK_FOLDER / f"rank{trainer.global_rank}.csv")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        for row in prediction:
            key = row_key(row)
            if key not in pl_module.done:
                self.file.append(row)
                pl_module.done.add(key)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
