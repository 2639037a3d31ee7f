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
