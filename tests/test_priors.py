"""Prior loading: state_dict files and `fdem fit` checkpoints, configs by name or YAML, prefixes,
strict loading with readable mismatch reports, weights_only."""

import pytest
import torch
import yaml

from fdem.errors import InputError
from fdem.nets.unet import build_unet
from fdem.priors import find_prefix, load_prior
from tests.test_sampling import TINY_UNET, tiny_unet


@pytest.fixture
def tiny(tmp_path):
    net = tiny_unet(seed=3)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in TINY_UNET.items()}))
    return net, config


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_state_dict_with_yaml_config(tiny, tmp_path):
    net, config = tiny
    path = tmp_path / "prior.pt"
    torch.save(net.state_dict(), path)
    loaded = load_prior(path, config).net
    assert _same_weights(loaded, net)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_module_prefix_is_detected(tiny, tmp_path):
    net, config = tiny
    path = tmp_path / "prior.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    assert _same_weights(load_prior(path, config).net, net)


def test_fit_checkpoint_prefers_ema_and_reads_the_config_from_hparams(tiny, tmp_path):
    net, _ = tiny
    ema = tiny_unet(seed=4)
    state = {f"net.{k}": v for k, v in net.state_dict().items()} | {f"ema.module.{k}": v for k, v in ema.state_dict().items()}
    state["loss_weights"] = torch.ones(3)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"unet": dict(TINY_UNET)}, "epoch": 3}, path)
    assert _same_weights(load_prior(path).net, ema)
    assert _same_weights(load_prior(path, prefix="net.").net, net)


def test_several_unets_without_ema_are_ambiguous():
    with pytest.raises(InputError, match="several UNets"):
        find_prefix(["a.time_embed.0.weight", "b.time_embed.0.weight"])
    assert find_prefix(["x", "y"]) == ""


def test_mismatch_lists_missing_and_unexpected_keys_with_shapes(tiny, tmp_path):
    net, config = tiny
    state = net.state_dict()
    state.pop("out.2.bias")
    state.pop("time_embed.0.weight")
    state["extra.weight"] = torch.zeros(4, 2)
    for j in range(10):
        state[f"junk.{j}"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(InputError) as err:
        load_prior(path, config)
    message = str(err.value)
    assert "\n" not in message
    assert "2 missing keys" in message and "out.2.bias (6,)" in message and "time_embed.0.weight (128, 32)" in message
    assert "11 unexpected keys" in message and "extra.weight (4, 2)" in message and "and 5 more" in message


def test_wrong_architecture_reports_shape_mismatches(tiny, tmp_path):
    net, _ = tiny
    path = tmp_path / "prior.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(InputError, match=r"shape mismatches.*vs"):
        load_prior(path, dict(TINY_UNET, model_channels=64))


@pytest.mark.parametrize("content", ["garbage", "pickle"])
def test_unreadable_files_and_arbitrary_pickles_are_refused(tmp_path, content):
    path = tmp_path / "prior.pt"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save({"state_dict": {}, "callback": InputError("an arbitrary object")}, path)
    expected = "is not a PyTorch checkpoint" if content == "garbage" else "holds code or objects that are not weights"
    with pytest.raises(InputError, match=f"prior checkpoint .*{expected}"):
        load_prior(path, dict(TINY_UNET))


def test_missing_file_and_unknown_config(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_prior(tmp_path / "none.pt")
    path = tmp_path / "prior.pt"
    torch.save(build_unet(dict(TINY_UNET)).state_dict(), path)
    with pytest.raises(InputError, match="unknown UNet config"):
        load_prior(path, "ffhq512")
    with pytest.raises(InputError, match="not found"):
        load_prior(path, str(tmp_path / "missing.yaml"))


def test_schedule_comes_from_the_file_or_is_the_public_checkpoints(tiny, tmp_path):
    """A bare state_dict gets T = 1000 linear; a file with hyper-parameters (``fdem fit``/``fdem
    export``) its own; a prior in memory is returned as it is."""
    from fdem.diffusion import ScheduleSpec
    from fdem.priors import Prior

    net, config = tiny
    bare, exported = tmp_path / "bare.pt", tmp_path / "exported.pt"
    torch.save(net.state_dict(), bare)
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": {"unet": dict(TINY_UNET), "T": 40, "schedule": "cosine"}},
               exported)
    learned = bool(net.cfg.learn_sigma)
    assert load_prior(bare, config).schedule == ScheduleSpec(T=1000, kind="linear", learned_sigma=learned)
    prior = load_prior(exported)
    assert prior.schedule == ScheduleSpec(T=40, kind="cosine", learned_sigma=learned)
    assert load_prior(prior) == prior and isinstance(prior, Prior)
    assert prior.overriding(kind="linear").schedule == ScheduleSpec(T=40, kind="linear", learned_sigma=learned)
