"""Score-prior training: the hybrid loss, `fdem fit` / resume / export / sample, and a CPU DDP run."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from fdem.cli import main
from fdem.diffusion import Schedule, ScheduleSpec, linear_betas
from fdem.diffusion_losses import hybrid_loss, vlb_term
from fdem.nets.unet import build_unet
from fdem.priors import load_prior
from fdem.restorers import build_restorer
from fdem.sampling.unconditional import sample_grid, sample_unconditional

REPO = Path(__file__).parents[1]
TINY = REPO / "configs" / "score_tiny_cpu.yaml"


def test_hybrid_loss_is_eps_mse_without_learned_sigma():
    g = torch.Generator().manual_seed(0)
    sched = Schedule.make(50)
    x0, noise, eps = (torch.randn(4, 3, 8, 8, generator=g) for _ in range(3))
    i = torch.tensor([0, 7, 20, 49])
    x_t = sched.q_sample(x0, i, noise)
    terms = hybrid_loss(sched, eps, x0, x_t, i, noise, hybrid_lambda=0.001)
    assert torch.equal(terms["loss"], ((eps - noise) ** 2).mean(dim=(1, 2, 3)))
    assert torch.equal(terms["vb"], torch.zeros(4))
    with_sigma = hybrid_loss(sched, torch.cat([eps, torch.zeros_like(eps)], 1), x0, x_t, i, noise, hybrid_lambda=0.0)
    assert torch.equal(with_sigma["loss"], terms["loss"])


def direct_vlb(x0, x_t, i, eps, v, T):
    """L_i in bits/dim, written out from the DDPM formulas in float64."""
    b = linear_betas(T)
    abar = torch.cumprod(1 - b, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    post_var = b * (1 - abar_prev) / (1 - abar)
    out = []
    for n, t in enumerate(i.tolist()):
        c1, c2 = b[t] * abar_prev[t].sqrt() / (1 - abar[t]), (1 - abar_prev[t]) * (1 - b[t]).sqrt() / (1 - abar[t])
        x0_hat = (x_t[n] - (1 - abar[t]).sqrt() * eps[n]) / abar[t].sqrt()
        mean_q, mean_p = c1 * x0[n] + c2 * x_t[n], c1 * x0_hat + c2 * x_t[n]
        log_post = math.log(post_var[max(t, 1)])
        logvar_p = (v[n] + 1) / 2 * math.log(b[t]) + (1 - v[n]) / 2 * log_post
        if t > 0:
            var_q, var_p = math.exp(log_post), logvar_p.exp()
            per_dim = 0.5 * (torch.log(var_p / var_q) + var_q / var_p + (mean_q - mean_p) ** 2 / var_p - 1)
        else:
            phi = lambda z: 0.5 * (1 + torch.erf(z / math.sqrt(2)))  # noqa: E731
            std = (0.5 * logvar_p).exp()
            hi, lo = phi((x0[n] + 1 / 255 - mean_p) / std), phi((x0[n] - 1 / 255 - mean_p) / std)
            prob = torch.where(x0[n] <= -1, hi, torch.where(x0[n] >= 1, 1 - lo, hi - lo))
            per_dim = -prob.log()
        out.append(per_dim.mean() / math.log(2))
    return torch.stack(out)


def test_vlb_term_matches_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    T, shape = 10, (3, 2, 3, 3)
    x0 = torch.randint(0, 256, shape, generator=g).double() / 255 * 2 - 1
    x0[0, 0, 0] = torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64)  # both edge bins at t = 0
    i = torch.tensor([0, 3, 9])
    abar = torch.cumprod(1 - linear_betas(T), 0)[i].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * torch.randn(shape, generator=g, dtype=torch.float64)
    eps = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    v = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    expected = direct_vlb(x0, x_t, i, eps, v, T)
    got = vlb_term(Schedule.make(T), x0.float(), x_t.float(), i, eps.float(), v.float())
    assert got.dtype == torch.float32 and (expected > 0).all()
    torch.testing.assert_close(got.double(), expected, rtol=2e-4, atol=1e-5)


def test_bound_term_trains_only_the_variance():
    g = torch.Generator().manual_seed(2)
    sched = Schedule.make(100)
    x0, noise = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1, torch.randn(2, 1, 4, 4, generator=g)
    i = torch.tensor([0, 60])
    out = torch.randn(2, 2, 4, 4, generator=g).requires_grad_()
    terms = hybrid_loss(sched, out, x0, sched.q_sample(x0, i, noise), i, noise, hybrid_lambda=0.001)
    (grad,) = torch.autograd.grad(terms["vb"].sum(), out)
    assert grad[:, 0].abs().max() == 0 and grad[:, 1].abs().max() > 0


def write_folder(folder: Path, count: int = 16, size: int = 24) -> Path:
    """Smooth random colour images (low-frequency noise, upsampled), a mix of RGB and gray."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for j in range(count):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        (img.convert("L") if j % 4 == 0 else img).save(folder / f"img{j:02d}.png")
    return folder


def tiny_config(tmp: Path, images: Path, **trainer) -> Path:
    """The tiny CPU config pointed at ``images``, writing under ``tmp``, with trainer overrides."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["trainer"].update(default_root_dir=str(tmp), enable_progress_bar=False, enable_model_summary=False, **trainer)
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp)
    cfg["trainer"]["callbacks"][0]["init_args"].update(dirpath=str(tmp / "checkpoints"), every_n_train_steps=5)
    cfg["data"]["init_args"].update(root=str(images), batch_size=4)
    path = tmp / "score_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def losses(root: Path) -> pd.Series:
    """train/loss by step from every CSV log under ``root``."""
    frames = [pd.read_csv(p) for p in sorted(root.rglob("metrics.csv"))]
    rows = pd.concat(frames).dropna(subset=["train/loss"])
    return rows.set_index("step")["train/loss"].sort_index()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """20 steps of the tiny config, then a resume to 25 steps; returns (folder, checkpoint)."""
    tmp = tmp_path_factory.mktemp("fit")
    config = tiny_config(tmp, write_folder(tmp / "images"), max_steps=20)
    main(["fit", "--config", str(config)])
    ckpt = tmp / "checkpoints" / "last.ckpt"
    first = torch.load(ckpt, weights_only=True)
    main(["fit", "--config", str(config), "--trainer.max_steps", "25", "--ckpt_path", str(ckpt)])
    return tmp, ckpt, first["global_step"]


def test_fit_decreases_the_loss_and_resumes(trained):
    tmp, ckpt, first_step = trained
    assert first_step == 20 and torch.load(ckpt, weights_only=True)["global_step"] == 25
    loss = losses(tmp)
    assert list(loss.index) == list(range(25))  # the resumed run logs steps 20..24 only
    assert loss.iloc[15:20].mean() < 0.8 * loss.iloc[:5].mean()
    val = pd.concat(pd.read_csv(p) for p in tmp.rglob("metrics.csv"))["val/loss"].dropna()
    assert len(val) >= 1 and np.isfinite(val).all()  # validation ran on the EMA weights


def test_export_loads_strictly_into_the_adm_unet(trained):
    tmp, ckpt, _ = trained
    out = tmp / "tiny.pt"
    main(["export", str(ckpt), "--out", str(out)])
    exported = torch.load(out, weights_only=True)
    state = exported["state_dict"]
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert exported["hyper_parameters"] == {"unet": hparams["unet"], "T": 1000, "schedule": "linear"}
    net = build_unet(hparams["unet"])
    net.load_state_dict(state, strict=True)
    ema = {k[4:]: v for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items() if k.startswith("ema.")}
    assert state.keys() == net.state_dict().keys() and all(torch.equal(state[k], ema[k]) for k in state)
    for prior in (load_prior(out, config=hparams["unet"]), load_prior(out), load_prior(ckpt)):
        assert all(torch.equal(prior.net.state_dict()[k], state[k]) for k in state)
        assert prior.schedule == ScheduleSpec(T=1000, kind="linear", learned_sigma=True)


def test_a_cosine_prior_is_sampled_on_its_cosine_schedule(tmp_path, monkeypatch):
    """Trained 2 steps with ``schedule: cosine`` and T = 50, exported, loaded: the Prior carries the
    schedule, and the restorer and ``fdem sample`` build their respaced schedules from it."""
    config = tiny_config(tmp_path, write_folder(tmp_path / "images"), max_steps=2)
    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["init_args"].update(schedule="cosine", T=50)
    config.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(config)])
    out = tmp_path / "cosine.pt"
    main(["export", str(tmp_path / "checkpoints" / "last.ckpt"), "--out", str(out)])
    prior = load_prior(out)
    assert prior.schedule == ScheduleSpec(T=50, kind="cosine", learned_sigma=True, prediction="eps")

    built = []
    original = ScheduleSpec.build
    monkeypatch.setattr(ScheduleSpec, "build", lambda spec, *a, **k: built.append(original(spec, *a, **k)) or built[-1])
    restorer = build_restorer("pigdm", "cpu", prior=str(out), kernel_size=5, steps=4)
    restorer.restore(torch.rand(1, 3, 16, 16), 0.05, kernel=torch.ones(1, 1, 5, 5) / 25)
    main(["sample", "--prior", str(out), "--n", "1", "--steps", "3", "--out", str(tmp_path / "grid.png")])
    cosine = {steps: Schedule.make(50, steps, "cosine").alphas_cumprod for steps in (4, 3)}
    assert [s.num_steps for s in built] == [4, 3]
    for schedule in built:
        assert torch.equal(schedule.alphas_cumprod, cosine[schedule.num_steps])
        assert not torch.allclose(schedule.alphas_cumprod, Schedule.make(50, schedule.num_steps).alphas_cumprod)


def test_sample_writes_a_grid(trained, tmp_path):
    _, ckpt, _ = trained
    grid = tmp_path / "grid.png"
    main(["sample", "--prior", str(ckpt), "--n", "4", "--steps", "5", "--seed", "1", "--out", str(grid)])
    with Image.open(grid) as im:
        assert im.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2) and im.mode == "RGB"


def test_fixed_small_sampling_and_gray_grid():
    torch.manual_seed(0)
    net = build_unet(dict(image_size=8, in_channels=1, model_channels=32, channel_mult=[1, 2],
                          attention_resolutions=[4], num_head_channels=32, learn_sigma=False)).eval()
    spec = ScheduleSpec.assumed_for(net, T=100)
    samples = sample_unconditional(net, 3, steps=4, schedule=spec, seed=0, progress=False)
    again = sample_unconditional(net, 3, steps=4, schedule=spec, seed=0, progress=False)
    assert samples.shape == (3, 1, 8, 8) and torch.equal(samples, again) and samples.abs().max() <= 1
    grid = sample_grid(torch.tensor([-1.0, -0.5, 0.0]).view(3, 1, 1, 1).expand(3, 1, 2, 2), padding=0)
    assert grid.shape == (3, 4, 4) and grid[:, :2, :2].max() == 0 and (grid[:, :2, 2:] == 1).all()


def test_ddp_on_two_cpu_processes_writes_one_last_checkpoint(tmp_path):
    config = tiny_config(tmp_path, write_folder(tmp_path / "images", count=12), max_steps=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "fdem.cli", "fit", "--config", str(config), "--trainer.strategy", "ddp",
           "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    last = sorted(p.name for p in (tmp_path / "checkpoints").glob("last*.ckpt"))
    assert last == ["last.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
