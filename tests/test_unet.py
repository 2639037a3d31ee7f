"""The ADM UNet: checkpoint layouts key for key, and forward-pass properties on tiny configs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from fdem.errors import InputError
from fdem.nets.unet import (
    NAMED_CONFIGS,
    ADMConfig,
    ADMUNet,
    build_unet,
    qkv_attention,
    timestep_embedding,
)

DATA = Path(__file__).parent / "data"
LAYOUTS = [
    ("ffhq256", "adm_ffhq256.tsv", 93_563_910, 362),
    ("kernel64", "adm_kernel64_gray.tsv", 17_057_474, 256),
    ("imagenet256", "adm_imagenet256_uncond.tsv", 552_814_086, 566),
]
TINY = ADMConfig(
    image_size=16,
    in_channels=3,
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(8,),
    num_head_channels=32,
)


def read_layout(name: str) -> dict[str, tuple[int, ...]]:
    """key → shape from a `key<TAB>(shape)` file."""
    layout = {}
    for line in (DATA / name).read_text().splitlines():
        key, shape = line.split("\t")
        layout[key] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return layout


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> torch.nn.Module:
    """Overwrite every parameter with N(0, std²) so zero-initialised branches are exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def tiny(seed: int = 0, **overrides) -> ADMUNet:
    return randomize(ADMUNet(dataclasses.replace(TINY, **overrides)), seed)


@pytest.mark.parametrize("name,tsv,n_params,n_tensors", LAYOUTS)
def test_checkpoint_layout_matches(name, tsv, n_params, n_tensors):
    expected = read_layout(tsv)
    with torch.device("meta"):
        model = build_unet(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(expected) == n_tensors
    assert set(got) == set(expected)
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == n_params


@pytest.mark.parametrize("name,tsv,n_params,n_tensors", LAYOUTS)
def test_random_checkpoint_loads_strictly(name, tsv, n_params, n_tensors):
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in read_layout(tsv).items()}
    with torch.device("meta"):
        model = build_unet(name)
    result = model.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.state_dict()["out.2.weight"], state["out.2.weight"])
    if name in ("kernel64", "imagenet256"):  # cheap enough to run once at 64×64 on a CPU
        channels = model.cfg.in_channels
        with torch.no_grad():
            out = model.eval()(torch.rand(1, channels, 64, 64) * 2 - 1, torch.tensor([999]))
        assert out.shape == (1, 2 * channels, 64, 64) and torch.isfinite(out).all()


def test_named_configs_and_errors():
    assert NAMED_CONFIGS["kernel64"].channel_mult == (1, 2, 3, 4)
    with pytest.raises(InputError, match="ffhq256.*kernel64"):
        build_unet("nope")
    with pytest.raises(InputError, match="bogus"):
        build_unet({"bogus": 1})
    with pytest.raises(InputError):
        ADMConfig(model_channels=48, channel_mult=(1,))  # 48 is not a multiple of 32
    model = build_unet({"image_size": 16, "model_channels": 32, "channel_mult": [1, 2], "attention_resolutions": [8]})
    assert model.cfg.channel_mult == (1, 2) and model.out_channels == 6


def test_fresh_model_outputs_zero():
    """The output conv is zero-initialised, as in the original training recipe."""
    model = ADMUNet(TINY).eval()
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([3, 500]))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"resblock_updown": False, "use_scale_shift_norm": False, "use_new_attention_order": True},
        {"resblock_updown": False, "conv_resample": False, "learn_sigma": False, "num_head_channels": -1, "num_heads": 2},
    ],
)
def test_tiny_forward_shape_and_determinism(overrides):
    model = tiny(**overrides)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([0, 999])
    with torch.no_grad():
        out = model(x, t)
        again = model(x, t)
    channels = 3 if overrides.get("learn_sigma") is False else 6
    assert out.shape == (2, channels, 16, 16)
    assert torch.isfinite(out).all() and out.abs().max() > 0
    assert torch.equal(out, again)


def test_batch_independence_and_float_timesteps():
    model = tiny()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([10, 700])
    with torch.no_grad():
        both = model(x, t)
        one_by_one = torch.cat([model(x[k : k + 1], t[k : k + 1]) for k in range(2)])
        as_float = model(x, t.float())
        scalar_t = model(x, torch.tensor(10))
    assert torch.allclose(both, one_by_one, atol=1e-5)
    assert torch.equal(both, as_float)
    assert torch.allclose(scalar_t[0], both[0], atol=1e-6)


def test_input_gradient_flows():
    model = tiny()
    x = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out, vjp = torch.func.vjp(lambda inp: model(inp, torch.tensor([250])), x)
    (grad,) = vjp(torch.randn_like(out))
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0
    (grad2,) = torch.autograd.grad(model(x, torch.tensor([250]))[:, :3].sum(), x)
    assert grad2.abs().sum() > 0


def test_channels_last_and_bf16_autocast():
    model = tiny()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([5, 400])
    with torch.no_grad():
        ref = model(x, t)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last), t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t)
    assert torch.allclose(cl, ref, atol=1e-5)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


def manual_attention(qkv: torch.Tensor, heads: int, legacy: bool) -> torch.Tensor:
    """softmax(QKᵀ/√d)V head by head, slicing the packed channels explicitly."""
    b, width, length = qkv.shape
    d = width // (3 * heads)
    outs = []
    for h in range(heads):
        if legacy:  # [q_h, k_h, v_h] blocks, one per head
            block = qkv[:, 3 * d * h : 3 * d * (h + 1)]
            q, k, v = block[:, :d], block[:, d : 2 * d], block[:, 2 * d :]
        else:  # [q of all heads | k | v]
            q, k, v = (qkv[:, part * heads * d + h * d : part * heads * d + (h + 1) * d] for part in range(3))
        weights = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(d), dim=-1)
        outs.append(torch.einsum("bts,bcs->bct", weights, v))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("legacy", [True, False])
def test_sdpa_attention_matches_manual(legacy):
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 3 * 3 * 8, 20, generator=gen)
    got = qkv_attention(qkv, num_heads=3, legacy=legacy)
    assert torch.allclose(got, manual_attention(qkv, 3, legacy), atol=1e-5)
    # The two layouts genuinely differ, so the flag matters for the public weights.
    assert not torch.allclose(got, manual_attention(qkv, 3, not legacy), atol=1e-3)


def test_timestep_embedding():
    t = torch.tensor([0.0, 7.0, 999.0])
    emb = timestep_embedding(t, 8)
    freqs = torch.tensor([10000.0 ** (-k / 4) for k in range(4)])
    assert torch.allclose(emb, torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1), atol=1e-5)
    odd = timestep_embedding(t, 9)
    assert odd.shape == (3, 9) and torch.equal(odd[:, -1], torch.zeros(3))


@pytest.mark.slow
def test_torch_compile_fullgraph():
    model = tiny()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([5, 400])
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(x, t), model(x, t), atol=1e-4)
