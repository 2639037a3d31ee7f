"""MPRNet: the released deblurring layout key for key, checkpoint loading, and a forward pass."""

from __future__ import annotations

import pytest
import torch

from fdem.errors import InputError
from fdem.nets.mprnet import MPRNet, load_mprnet
from tests.helpers import DATA, state_dict_from_tsv


@pytest.fixture(scope="module")
def net() -> MPRNet:
    torch.manual_seed(0)
    return MPRNet().eval()


def test_layout_matches_release(net):
    expected = [tuple(line.split("\t")) for line in (DATA / "mprnet_deblur.tsv").read_text().splitlines()]
    assert [(k, str(tuple(v.shape))) for k, v in net.state_dict().items()] == expected
    assert sum(p.numel() for p in net.parameters()) == 20_127_073  # the PReLU is shared


def test_restore_keeps_size_and_range(net):
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net.restore(x)
        stages = net(torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect"))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert 0 <= y.min() and y.max() <= 1
    assert [tuple(s.shape) for s in stages] == [(1, 3, 40, 48)] * 3
    torch.testing.assert_close(y, stages[0][..., :37, :45].clamp(0, 1))


def test_forward_rejects_sizes_off_the_grid(net):
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.rand(1, 3, 12, 16))


def test_load_wrapped_and_prefixed(tmp_path):
    state = state_dict_from_tsv("mprnet_deblur", torch.Generator().manual_seed(2))
    path = tmp_path / "mprnet.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    loaded = load_mprnet(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    got = loaded.state_dict()
    for key in ("shallow_feat1.0.weight", "stage2_encoder.csff_dec3.weight", "stage3_orsnet.orb3.body.8.weight", "tail.weight"):
        torch.testing.assert_close(got[key], state[key])


def test_load_mismatch_lists_keys(tmp_path):
    state = {k: v for k, v in state_dict_from_tsv("mprnet_deblur").items() if "stage3" not in k}
    state["extra.weight"] = torch.zeros(2)
    state["tail.weight"] = torch.zeros(3, 96, 3, 3)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(InputError) as err:
        load_mprnet(path)
    message = str(err.value)
    assert str(path) in message and "missing keys" in message and "... and" in message
    assert "extra.weight (2,)" in message
    assert "tail.weight (3, 96, 3, 3) vs (3, 128, 3, 3)" in message


def test_unreadable_or_absent_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pth"):
        load_mprnet(bad)
    with pytest.raises(InputError, match="not found"):
        load_mprnet(tmp_path / "absent.pth")


# --- training (fdem.lit.mprnet, fdem.datamodules.deblur_pairs) and the restorer ---------------------

TINY = dict(n_feat=16, scale_unetfeats=8, scale_orsnetfeats=8, num_cab=1)


def test_loss_terms():
    from fdem.lit.mprnet import charbonnier, edge_loss, laplacian

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert charbonnier(x, x).item() == pytest.approx(1e-3)
    torch.testing.assert_close(laplacian(torch.full((1, 3, 16, 16), 0.7)), torch.zeros(1, 3, 16, 16), atol=1e-6, rtol=0)
    smooth = torch.linspace(0, 1, 16).expand(1, 3, 16, 16)
    assert laplacian(x).abs().mean() > 10 * laplacian(smooth)[..., 2:-2, 2:-2].abs().mean()  # band-pass
    assert edge_loss(x, x + 0.1).item() == pytest.approx(1e-3, abs=1e-5)  # a constant offset has no edges


def test_blur_pairs_are_seeded_per_batch_and_hold_out_the_test_photos():
    from fdem.datamodules.deblur_pairs import BlurPairsDataModule

    dm = BlurPairsDataModule(crop=32, kernel_size=9, sigma_max=20.0, batch_size=3, num_batches=4, val_batches=1)
    dm.setup("fit")
    assert not {"coffee.png", "rocket.jpg", "motorcycle_left.png"} & {f.name for f in dm.images.train_files}
    data = dm.train_dataloader().dataset
    blurry, sharp = data[1]
    assert blurry.shape == sharp.shape == (3, 3, 32, 32) and 0 <= sharp.min() and sharp.max() <= 1
    again = dm.train_dataloader().dataset[1]
    assert torch.equal(blurry, again[0]) and torch.equal(sharp, again[1])
    assert not torch.equal(sharp, data[2][1])
    residual = (blurry - sharp).flatten(1).std(dim=1)
    assert (residual < 0.3).all() and (residual > 0).all()
    val = next(iter(dm.val_dataloader()))
    assert val[0].shape == (3, 3, 32, 32)
    with pytest.raises(InputError):
        BlurPairsDataModule(crop=30)
    with pytest.raises(InputError):
        BlurPairsDataModule(crop=16, kernel_size=33)


def test_short_training_run_lowers_the_loss(tmp_path):
    import lightning as L

    from fdem.datamodules.deblur_pairs import BlurPairsDataModule
    from fdem.lit.mprnet import MPRNetModule

    class Losses(L.Callback):
        def __init__(self):
            self.values = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.values.append(float(outputs["loss"]))

    L.seed_everything(0)
    losses = Losses()
    dm = BlurPairsDataModule(crop=32, kernel_size=9, batch_size=4, num_batches=20, val_batches=1)
    module = MPRNetModule(**TINY, lr=1e-3)
    trainer = L.Trainer(max_steps=20, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[losses],
                        default_root_dir=tmp_path)
    trainer.fit(module, dm)
    assert len(losses.values) == 20
    assert sum(losses.values[-5:]) < 0.8 * sum(losses.values[:5])
    torch.save(module.export_state_dict(), tmp_path / "tiny.pt")
    net = load_mprnet(tmp_path / "tiny.pt", widths=TINY)
    torch.testing.assert_close(net.state_dict()["tail.weight"], module.net.state_dict()["tail.weight"])


def test_restorer_with_user_weights_keeps_size(tmp_path):
    from fdem.restorers import build_restorer

    torch.manual_seed(0)
    torch.save(MPRNet(**TINY).state_dict(), tmp_path / "tiny.pt")
    restorer = build_restorer("mprnet", weights=str(tmp_path / "tiny.pt"), widths=TINY)
    assert not restorer.seeded and restorer.total_steps() == 1
    r = restorer.restore(torch.rand(2, 3, 21, 30), 0.05)
    assert r.image.shape == (2, 3, 21, 30) and r.kernel is None and 0 <= r.image.min() and r.image.max() <= 1
    assert restorer.restore(torch.rand(1, 1, 17, 9), 0.05).image.shape == (1, 1, 17, 9)
    with pytest.raises(InputError, match="not an MPRNet"):
        build_restorer("mprnet", weights=str(tmp_path / "tiny.pt"))  # the released widths do not fit


def test_shipped_small_mprnet_loads_and_keeps_odd_sizes():
    import yaml

    from fdem.baselines.mprnet_restorer import SHIPPED_MPRNET
    from fdem.restorers import build_restorer

    path, widths = SHIPPED_MPRNET
    config = yaml.safe_load((DATA.parent.parent / "configs" / "mprnet_small.yaml").read_text())
    assert {k: config["model"]["init_args"][k] for k in widths} == widths
    assert path.is_file() and path.stat().st_size < 20e6
    restorer = build_restorer("mprnet")
    for h, w in ((64, 64), (37, 45), (100, 13)):
        y = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        assert restorer.restore(y, 10 / 255).image.shape == (1, 3, h, w)


def test_fdem_fit_runs_the_small_config_shape(tmp_path):
    """``fdem fit`` (LightningCLI) instantiates the module and the datamodule from YAML and trains."""
    import yaml

    from fdem.cli import main

    config = yaml.safe_load((DATA.parent.parent / "configs" / "mprnet_small.yaml").read_text())
    config["trainer"].update(max_steps=2, max_time=None, val_check_interval=2, logger=False, callbacks=[],
                             default_root_dir=str(tmp_path), enable_progress_bar=False)
    config["model"]["init_args"].update(TINY)
    config["data"]["init_args"].update(crop=32, kernel_size=9, batch_size=2, num_batches=4, val_batches=1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    assert any(tmp_path.rglob("*.ckpt"))  # trained to the end and saved
