"""Shared test helpers."""

from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"


def state_dict_from_tsv(name: str, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random tensors with the keys and shapes of a reference layout ``tests/data/<name>.tsv``."""
    state = {}
    for line in (DATA / f"{name}.tsv").read_text().splitlines():
        key, shape = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        state[key] = torch.randn(dims, generator=generator)
    return state
