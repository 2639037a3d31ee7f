"""`fdem deblur`: any image size and format in, outputs of the input's size, depth and alpha out;
folders, globs and .npy inputs; corrupt inputs skipped; padding; bad input refused before anything is made."""

import re
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from fdem.cli import main
from fdem.imageio import read_picture, save_picture
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
        assert im.size == (300, 200) and im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], np.asarray(Image.open(files / "photo.png"))[..., 3])
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
        assert im.size == (45, 37) and im.mode.startswith("I;16")  # 16-bit in, 16-bit out
    assert not (out / "gray16_kernel.npy").exists() and (out / "gray16_trace.png").is_file()


def test_diffusion_methods_default_to_the_photo_preset_and_given_flags_win(files, tmp_path, capsys, monkeypatch):
    """The photo preset: 25 DDIM steps from T/2 for ΠGDM methods (DPS ones: 1000 ancestral from noise),
    the alternation's kernel start for every blind method, the imputed border, tiles; a flag overrides one field."""
    import fdem.restorers
    from fdem.presets import PRESETS, resolve

    seen, build = [], fdem.restorers.build_restorer
    monkeypatch.setattr(fdem.restorers, "build_restorer", lambda m, d="cpu", **o: seen.append((o, build(m, d, **o))) or seen[-1][1])
    common = ["--sigma", "2", "--prior", str(files / "prior.pt"), "--prior-config", str(files / "prior.yaml"),
              "--kernel-size", "7", "--kernel-denoiser", str(files / "denoiser.pt")]
    main(["deblur", str(files / "gray16.png"), *common, "--out", str(tmp_path / "a")])
    plan = [line for line in capsys.readouterr().out.splitlines() if line.startswith("plan:")]
    assert len(plan) == 1 and "preset photo" in plan[0] and "25 steps" in plan[0], plan
    assert plan[0].endswith("; kernel started from the alternation (before the steps, not in the time)")
    main(["deblur", str(files / "gray16.png"), *common, "--steps", "3", "--out", str(tmp_path / "b")])
    main(["deblur", str(files / "gray16.png"), *common, "--method", "fastem-dps", "--steps", "3", "--out", str(tmp_path / "c")])
    (options, first), (_, given), (_, dps) = seen
    assert options["preset"] == "photo" and "steps" not in options  # the flags left out: the preset's
    photo = PRESETS["photo"]
    assert first.spec.options() == resolve("fastem-pigdm", "photo", kernel_size=7).options()
    assert first.spec.sampler == photo.sampler and first.spec.canvas == photo.canvas
    assert (first.spec.sampler.steps, first.spec.sampler.step_rule, first.spec.sampler.start) == (25, "ddim", 0.5)
    assert (first.spec.canvas.border, first.spec.canvas.tiled) == ("impute", True)
    assert (given.spec.sampler.steps, given.spec.sampler.step_rule, given.spec.sampler.start) == (3, "ddim", 0.5)
    assert (dps.spec.sampler.steps, dps.spec.sampler.step_rule, dps.spec.sampler.start) == (3, "ddpm", 1.0)
    assert first.spec.em.kernel_init == given.spec.em.kernel_init == dps.spec.em.kernel_init == "alternation"
    assert dps.spec.canvas.border == "impute" and dps.spec.preset == "photo"
    assert first.spec.em.kernel_relax == 1.0  # the paper's plain M-step unless asked (docs/design.md §12)
    main(["deblur", str(files / "gray16.png"), *common, "--steps", "3", "--kernel-init", "dirac", "--kernel-relax", "2",
          "--out", str(tmp_path / "d")])
    assert seen[-1][1].spec.em.kernel_init == "dirac" and seen[-1][1].spec.em.kernel_relax == 2.0
    main(["deblur", str(files / "gray16.png"), *common, "--steps", "3", "--preset", "paper", "--out", str(tmp_path / "e")])
    paper = seen[-1][1].spec
    assert (paper.preset, paper.sampler.step_rule, paper.em.kernel_init, paper.canvas.border) == ("paper", "ddpm", "dirac", "circular")
    assert "preset paper" in capsys.readouterr().out


def test_show_prints_the_resolved_options_and_makes_nothing(files, tmp_path, capsys):
    import json

    from fdem.presets import resolve

    main(["deblur", "--preset", "paper", "--show", "--prior", str(files / "prior.pt"), "--prior-config",
          str(files / "prior.yaml"), "--kernel-denoiser", str(files / "denoiser.pt"), "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'preset: "paper"' and 'recenter: "spline"' in lines and 'lam_rule: "fixed"' in lines
    shown = {k: json.loads(v) for k, v in (line.split(": ", 1) for line in lines)}
    assert {k: shown[k] for k in resolve("fastem-pigdm").options()} == resolve("fastem-pigdm").options()
    assert not (tmp_path / "out").exists()
    main(["deblur", "--show", "--steps", "7", "--recenter", "none", "--method", "pigdm", "--prior", str(files / "prior.pt"),
          "--prior-config", str(files / "prior.yaml")])
    shown = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert (shown["preset"], shown["steps"], shown["border"], shown["tiled"]) == ('"photo"', "7", '"impute"', "true")
    assert "recenter" not in shown and "kernel_init" not in shown  # non-blind: no kernel options
    main(["deblur", "--show", "--preset", "tuned", "--prior", str(files / "prior.pt"), "--prior-config",
          str(files / "prior.yaml"), "--kernel-denoiser", str(files / "denoiser.pt")])
    out = capsys.readouterr().out
    assert 'preset: "tuned"' in out and 'recenter: "bilinear"' in out and 'lam_rule: "noise"' in out


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
        ({"--sigma": "-1"}, "--sigma must be a number in \\[0, 255\\]"),
        ({"--sigma": "inf"}, "--sigma must be"),
        ({"--sigma": "1e6"}, "--sigma must be"),
        ({"--sigma": "1e6", "--method": "l0-anger"}, "--sigma must be"),
        ({"--steps": "0"}, "steps must be an integer in \\[2, 1000\\], got 0"),  # preset fields: named by the field
        ({"--particles": "0"}, "particles must be an integer >= 1"),
        ({"--kernel-size": "1"}, "kernel_size must be an integer >= 3"),
        ({"--em-iters": "0", "--method": "diffem-pigdm"}, "em_iters must be an integer >= 1"),
        ({"--iters": "0", "--method": "selfdeblur"}, "selfdeblur: iters must be an integer >= 1"),
        ({"--preset": "nope"}, "unknown preset 'nope': choose one of paper, tuned, few-step, photo, field, demo, relaxed"),
        ({"--step-rule": "x"}, "unknown step_rule 'x'"),
        ({"--step-rule": "mean", "--method": "fastem-dps"}, "step rule 'mean' needs ΠGDM guidance"),
        ({"--recenter": "cubic"}, "unknown recenter rule 'cubic'"),
        ({"--trace": None, "--trace-every": "0"}, "--trace-every must be"),
        ({"--max-memory": "0"}, "--max-memory must be"),
        ({"--prior": "NOTES"}, "notes.txt"),
        ({"--device": "cuda:7"}, "--device"),
        ({"--method": "dps"}, "needs the true kernel|give the true kernel"),
        ({"--prior-config": "MISMATCH"}, "missing keys: .*\\(.*\\).*unexpected keys"),
        ({"--prior": "MISSING"}, "prior checkpoint not found"),
        ({"--device": "toaster"}, "--device: unknown device 'toaster'"),
        ({"--kernel-relax": "0"}, "kernel_relax must be a number in \\(0, 4\\)"),
        ({"--kernel-relax": "4"}, "kernel_relax must be"),
        ({"--kernel-relax": "nan"}, "kernel_relax must be"),
        ({"--missing": "drop"}, "unknown treatment of missing pixels 'drop'"),
        ({"--saturation": "0.98", "--saturation-reach": "0"}, "saturation_reach must be"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_code_2(files, tmp_path, capsys, change, message):
    args = {
        "--sigma": "5", "--method": "fastem-pigdm", "--prior": str(files / "prior.pt"),
        "--prior-config": str(files / "prior.yaml"), "--kernel-size": "7", "--steps": "2", "--out": str(tmp_path / "out"),
        "--kernel-denoiser": str(files / "denoiser.pt"),
    } | change
    if args["--prior-config"] == "MISMATCH":  # a checkpoint with keys the architecture lacks, and vice versa
        state = torch.load(files / "prior.pt", weights_only=True)
        state["extra.weight"] = state.pop("input_blocks.0.0.weight")
        torch.save(state, tmp_path / "bad.pt")
        args["--prior"], args["--prior-config"] = str(tmp_path / "bad.pt"), str(files / "prior.yaml")
    if args["--prior"] == "MISSING":
        args["--prior"] = str(tmp_path / "none.pt")
    if args["--prior"] == "NOTES":
        (tmp_path / "notes.txt").write_text("my notes, not weights\n")
        args["--prior"] = str(tmp_path / "notes.txt")
    if args["--method"] in ("l0-anger", "selfdeblur"):  # the classical methods take none of the diffusion options
        args = {k: v for k, v in args.items() if k in ("--sigma", "--method", "--kernel-size", "--out", "--iters")}
    argv = ["deblur", str(files / "gray16.png")] + [item for pair in args.items() for item in pair if item is not None]
    _assert_refused(argv, capsys, tmp_path / "out", message)


def _assert_refused(argv, capsys, out, message):
    """Exit code 2, one stderr line naming the problem, no output folder."""
    code, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("fdem: error:"), err
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


def test_a_10000x10000_image_is_refused_from_its_header_quickly(files, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.new("L", (10000, 10000)).save(big)  # a few hundred KB on disk
    argv = ["deblur", str(big), "--sigma", "5", "--prior", str(files / "prior.pt"), "--prior-config",
            str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2", "--out", str(tmp_path / "out")]
    start = time.perf_counter()
    _assert_refused(argv, capsys, tmp_path / "out", r"big.png has 10000x10000 = 100,000,000 pixels, more than --max-pixels")
    argv += ["--max-pixels", "200000000"]  # allowed, but the tiled plan's full-size buffers do not fit
    _assert_refused(argv + ["--max-memory", "4"], capsys, tmp_path / "out",
                    r"big.png \(100\d\dx100\d\d after padding\) needs about .* GB .*limit of 4.0 GB .*would fit")
    assert time.perf_counter() - start < 10


def _photo(path, seed, bits=8, alpha=False, size=(40, 48)):
    rng = np.random.default_rng(seed)
    colour = torch.from_numpy(rng.random((3, *size), dtype=np.float32))
    save_picture(path, colour, torch.from_numpy(rng.random((1, *size), dtype=np.float32)) if alpha else None, bits)


L0 = ["--sigma", "5", "--method", "l0-anger", "--kernel-size", "5"]


def test_a_folder_with_one_corrupt_file_restores_the_others_and_lists_it(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _photo(folder / "a.png", 0)
    _photo(folder / "c.png", 1)
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="skipping .*b.png"):
        main(["deblur", str(folder), *L0, "--out", str(out)])
    assert (out / "a_restored.png").is_file() and (out / "c_restored.png").is_file()
    assert not (out / "b_restored.png").exists()
    rows = (out / "skipped.csv").read_text().splitlines()
    assert rows[0] == "path,reason" and len(rows) == 2 and "b.png" in rows[1]


def test_all_inputs_bad_is_refused_and_leaves_nothing(tmp_path, capsys):
    for name in ("x.png", "y.png"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.warns(UserWarning):
        _assert_refused(["deblur", str(tmp_path / "*.png"), *L0, "--out", str(tmp_path / "out")], capsys,
                        tmp_path / "out", "none of the 2 input")


def test_16bit_rgba_comes_back_16bit_with_its_alpha(tmp_path):
    _photo(tmp_path / "rgba16.png", 2, bits=16, alpha=True)
    main(["deblur", str(tmp_path / "rgba16.png"), *L0, "--out", str(tmp_path / "out")])
    given, back = read_picture(tmp_path / "rgba16.png"), read_picture(tmp_path / "out" / "rgba16_restored.png")
    assert back.bits == 16 and back.colour.shape == (3, 40, 48)
    assert torch.equal(back.alpha, given.alpha)


def test_npy_observations_through_a_glob(tmp_path):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "obs_blurry.npy", rng.normal(0.5, 0.3, (3, 36, 40)).astype(np.float32))  # unclipped
    main(["deblur", str(tmp_path / "*_blurry.npy"), *L0, "--out", str(tmp_path / "out")])
    back = read_picture(tmp_path / "out" / "obs_blurry_restored.png")
    assert back.bits == 16 and back.colour.shape == (3, 36, 40) and back.alpha is None


def test_out_of_memory_later_is_one_line_and_keeps_the_finished_images(tmp_path, capsys, monkeypatch):
    from fdem.baselines.l0_anger import L0AngerRestorer

    _photo(tmp_path / "a.png", 4)
    _photo(tmp_path / "b.png", 5)
    calls, run = [], L0AngerRestorer._restore

    def second_runs_out(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("simulated")
        return run(self, *args)

    monkeypatch.setattr(L0AngerRestorer, "_restore", second_runs_out)
    code, err = _run(["deblur", str(tmp_path / "a.png"), str(tmp_path / "b.png"), *L0, "--out", str(tmp_path / "out")], capsys)
    fdem_lines = [line for line in err.splitlines() if line.startswith("fdem:")]  # the rest: a's progress bar
    assert code == 2 and fdem_lines == [fdem_lines[0]] and "fdem: error: out of memory restoring" in fdem_lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_kernel.npy", "a_kernel.png", "a_restored.png",
                                                                    "a_verdict.json", "a_verdict.png"]


def test_max_side_downscales_a_large_photo_before_deblurring(files, tmp_path):
    out = tmp_path / "out"
    main(["deblur", str(files / "photo.png"), "--sigma", "5", "--method", "l0-anger", "--kernel-size", "5",
          "--max-side", "120", "--out", str(out)])
    with Image.open(out / "photo_restored.png") as im:
        assert im.size == (120, 80) and im.mode == "RGBA"  # 300x200 scaled by 0.4, alpha kept
    code_small = ["deblur", str(files / "photo.png"), "--sigma", "5", "--method", "l0-anger", "--kernel-size", "25",
                  "--max-side", "30", "--out", str(tmp_path / "small")]
    with pytest.raises(SystemExit) as exit_info:
        main(code_small)
    assert exit_info.value.code == 2 and not (tmp_path / "small").exists()
