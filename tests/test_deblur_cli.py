"""`fdem deblur`: any image size and format in, outputs of the input's size out; padding; errors."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from fdem.cli import main
from fdem.padding import reflect_pad
from fdem.nets.kernel_denoiser import KernelDenoiser, denoiser_state_for_export
from tests.test_sampling import tiny_unet

# four levels: the middle block (which always has attention) works at 1/8 of the image size
CLI_UNET = dict(image_size=32, model_channels=32, channel_mult=[1, 1, 1, 1], attention_resolutions=[], num_head_channels=32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("deblur")
    torch.save(tiny_unet(**CLI_UNET).state_dict(), root / "prior.pt")
    (root / "prior.yaml").write_text(yaml.safe_dump(CLI_UNET))
    torch.manual_seed(0)
    torch.save(denoiser_state_for_export(KernelDenoiser()), root / "denoiser.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 4), dtype=np.uint8), mode="RGBA").save(root / "photo.png")
    Image.fromarray(rng.integers(0, 65536, (37, 45), dtype=np.uint16)).save(root / "gray16.png")
    kernel = np.zeros((5, 5), np.float32)
    kernel[2, 1:4] = 1
    np.save(root / "kernel.npy", kernel)
    return root


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_blind_deblur_of_a_200x300_rgba_png(files, tmp_path, capsys):
    out = tmp_path / "out"
    main([
        "deblur", str(files / "photo.png"), "--sigma", "5", "--method", "fastem-pigdm",
        "--prior", str(files / "prior.pt"), "--prior-config", str(files / "prior.yaml"),
        "--kernel-size", "7", "--steps", "3", "--kernel-denoiser", str(files / "denoiser.pt"),
        "--true-kernel", str(files / "kernel.npy"), "--out", str(out), "--trace", "--trace-every", "2",
    ])
    with Image.open(out / "photo_restored.png") as im:
        assert im.size == (300, 200) and im.mode == "RGB"
    kernel = np.load(out / "photo_kernel.npy")
    assert kernel.shape == (7, 7) and kernel.sum() == pytest.approx(1.0, abs=1e-5) and (kernel >= 0).all()
    assert (out / "photo_kernel.png").is_file()
    with Image.open(out / "photo_trace.gif") as im:
        assert im.n_frames == 2 and im.size[1] == 200  # steps 0 and 2 (the last)
    assert "kernel MSE" in capsys.readouterr().out


def test_nonblind_deblur_of_a_16bit_gray_png_of_odd_size(files, tmp_path):
    out = tmp_path / "out"
    main([
        "deblur", str(files / "gray16.png"), "--sigma", "2", "--method", "pigdm", "--steps", "3",
        "--prior", str(files / "prior.pt"), "--prior-config", str(files / "prior.yaml"),
        "--true-kernel", str(files / "kernel.npy"), "--out", str(out), "--device", "cpu",
        "--trace", "--trace-format", "png",
    ])
    with Image.open(out / "gray16_restored.png") as im:
        assert im.size == (45, 37) and im.mode == "L"
    assert not (out / "gray16_kernel.npy").exists() and (out / "gray16_trace.png").is_file()


def test_reflect_padding_reaches_the_multiple_and_crops_back():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded, (top, left) = reflect_pad(x, 8)
    assert padded.shape[-2:] == (8, 8) and (top, left) == (1, 0)
    assert torch.equal(padded[..., top : top + 5, left : left + 7], x)
    assert torch.equal(padded[..., 0, :7], x[..., 1, :])  # reflection, edge not repeated
    tiny, _ = reflect_pad(torch.rand(1, 1, 2, 3), 16)  # margin wider than the image
    assert tiny.shape[-2:] == (16, 16)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--method": "fastem-foo"}, "unknown method"),
        ({"--kernel-size": "64"}, "larger than image"),
        ({"--sigma": "-1"}, "--sigma must be >= 0"),
        ({"--method": "dps"}, "needs the true kernel|give the true kernel"),
        ({"--prior-config": "MISMATCH"}, "missing keys: .*\\(.*\\).*unexpected keys"),
        ({"--prior": "MISSING"}, "prior checkpoint not found"),
        ({"--device": "toaster"}, "--device: unknown device 'toaster'"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_code_2(files, tmp_path, capsys, change, message):
    args = {
        "--sigma": "5", "--method": "fastem-pigdm", "--prior": str(files / "prior.pt"),
        "--prior-config": str(files / "prior.yaml"), "--kernel-size": "7", "--steps": "2", "--out": str(tmp_path),
        "--kernel-denoiser": str(files / "denoiser.pt"),
    } | change
    if args["--prior-config"] == "MISMATCH":  # a checkpoint with keys the architecture lacks, and vice versa
        state = torch.load(files / "prior.pt", weights_only=True)
        state["extra.weight"] = state.pop("input_blocks.0.0.weight")
        torch.save(state, tmp_path / "bad.pt")
        args["--prior"], args["--prior-config"] = str(tmp_path / "bad.pt"), str(files / "prior.yaml")
    if args["--prior"] == "MISSING":
        args["--prior"] = str(tmp_path / "none.pt")
    argv = ["deblur", str(files / "gray16.png")] + [item for pair in args.items() for item in pair]
    code, err = _run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdem: error:")
    assert __import__("re").search(message, lines[0]), lines[0]
