"""Figure-4 kernel-estimation benchmark: tuning writes the config, outputs are complete, PnP wins."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from fdem.benchmarks.kernel_estimation import KernelBenchConfig, load_split_images, make_cases, run, run_benchmark, summarise
from fdem.errors import InputError

CONFIG = Path(__file__).parents[1] / "configs" / "bench" / "kernel_estimation.yaml"


def test_tuning_writes_lambdas_and_outputs(tmp_path):
    cfg_path = tmp_path / "bench.yaml"
    cfg = KernelBenchConfig(image_size=48, kernel_size=9, val_images=2, max_images=4, kernels_per_image=1,
                            sigmas=[0.0, 10.0], out=str(tmp_path / "out"),
                            lambda_grid={"l1": [1.0, 100.0], "l2": [1.0, 1e4], "pnp": [0.1, 1.0]})
    md = run_benchmark(cfg, config_path=cfg_path, retune=True)
    written = yaml.safe_load(cfg_path.read_text())
    assert set(written["lambdas"]) == {"l1", "l2", "pnp"}
    assert written["lambdas"]["l1"][10.0] in (1.0, 100.0)
    rows = pd.read_csv(tmp_path / "out" / "kernel_estimation.csv")
    assert len(rows) == 2 * 3 * 2  # σ × regularisers × test cases
    assert rows.kernel_mse.notna().all() and (rows.kernel_mse >= 0).all()
    assert (tmp_path / "out" / "kernel_estimation.png").stat().st_size > 0 and "pnp" in md.read_text()
    again = KernelBenchConfig.from_yaml(cfg_path)  # the rewritten config loads back
    assert again.lambdas == written["lambdas"]


def test_bad_configs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sigmas: [-5]\n")
    with pytest.raises(InputError, match="sigmas"):
        KernelBenchConfig.from_yaml(bad)
    bad.write_text("sigma: [5]\n")
    with pytest.raises(InputError, match="unknown keys"):
        KernelBenchConfig.from_yaml(bad)
    with pytest.raises(InputError, match="not found"):
        KernelBenchConfig.from_yaml(tmp_path / "missing.yaml")


def test_pnp_beats_l1_and_l2_with_the_shipped_denoiser():
    """The paper's Figure-4 ordering on the shipped config's test split (tuned λ from the config).

    The issue also asks for PnP's error at σ = 20 to be under twice its error at σ = 5; that does
    not hold here (README, Figure 4), so it is not asserted.
    """
    cfg = KernelBenchConfig.from_yaml(CONFIG)
    cfg.sigmas = [5.0, 10.0, 20.0]
    _, test_images = load_split_images(cfg)
    table = summarise(run(cfg, make_cases(test_images, cfg, seed=cfg.kernel_seed)))
    for s in cfg.sigmas:
        assert table.loc[s, "pnp"] < table.loc[s, "l1"] and table.loc[s, "pnp"] < table.loc[s, "l2"]
