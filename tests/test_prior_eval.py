"""The prior comparison command runs end to end on a tiny folder."""

import torch

from fdem.benchmarks.prior_eval import crops, main
from fdem.imageio import save_image


def test_prior_eval_prints_every_row(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    for j in range(2):
        save_image(tmp_path / f"{j}.png", torch.rand(3, 80, 96, generator=g))
    assert crops(str(tmp_path), 2, 32, 0.5).shape == (2, 3, 32, 32)
    main(["--images", str(tmp_path), "--priors", "small64", "--count", "2", "--size", "32", "--kernel-size", "5",
          "--steps", "2"])
    out = capsys.readouterr().out
    for name in ("blurry input", "alternation", "pigdm (true kernel)", "fastem-pigdm"):
        assert name in out
