"""Blur-benchmark data: sample order and determinism, damaged images, the authors' pickles
(restricted unpickling), the exported folder format and the ``bench-data export`` command."""

import argparse
import collections
import os
import pickle

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fdem.datamodules import blur_benchmark
from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule
from fdem.cli.bench_data import add_parsers
from fdem.errors import InputError
from fdem.imageio import load_image
from fdem.physics import blur
from fdem.safe_pickle import safe_load
from fdem.testcases import (
    read_testcases,
    write_authors_pickle,
    write_testcase_folder,
)
from fdem.kernels_gen import make_generator, save_bank
from studies.common import crops

KEYS = {"index", "image_id", "sharp", "y", "kernel", "kernel_id", "sigma", "sigma255", "seed"}


def write_images(folder, names, size=(32, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


def make_dm(folder, **kwargs):
    args = {"images": str(folder), "kernels": "camera-shake", "kernel_size": 7, "sigmas": [5, 10]}
    dm = BlurBenchmarkDataModule(**{**args, **kwargs})
    dm.setup("predict")
    return dm


def samples(dm):
    return [dm.dataset[i] for i in range(len(dm.dataset))]


def assert_same_case(a, b):
    assert set(a) == set(b) == KEYS
    for key in ("sharp", "y", "kernel"):
        assert a[key].dtype == b[key].dtype == torch.float32 and torch.equal(a[key], b[key]), key
    for key in KEYS - {"sharp", "y", "kernel"}:
        assert a[key] == b[key], key


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench-data", *argv])
    args.func(args)


@pytest.fixture
def folder(tmp_path):
    return write_images(tmp_path / "imgs", [f"{j:05d}.png" for j in range(5)])


def test_sample_order_contents_and_summary(folder):
    dm = make_dm(folder, num_images=3, kernels_per_image=2, seed=7)
    assert len(dm.dataset) == 12 and dm.samples_summary() == "3 images × 2 kernels × 2 σ = 12 samples"
    bank = make_generator("camera-shake", 7).sample(6, seed=0)
    for i, s in enumerate(samples(dm)):
        sigma_idx, image_idx, rep = i // 6, (i // 2) % 3, i % 2  # σ outermost, then image, then kernel
        assert (s["index"], s["seed"], s["kernel_id"]) == (i, 7 + i, image_idx * 2 + rep)
        assert s["image_id"] == f"{image_idx:05d}" and s["sigma255"] == [5.0, 10.0][sigma_idx]
        assert s["sigma"] == s["sigma255"] / 255
        assert s["sharp"].shape == s["y"].shape == (3, 32, 32) and s["kernel"].shape == (1, 7, 7)
        assert torch.equal(s["kernel"], bank[s["kernel_id"]]) and abs(float(s["kernel"].sum()) - 1) < 1e-5
        assert torch.equal((s["sharp"] * 255).round() / 255, s["sharp"])  # 8-bit quantised
        noise = (s["y"] - blur(s["sharp"][None], s["kernel"][None])[0]) / s["sigma"]
        assert abs(float(noise.std()) - 1) < 0.1 and abs(float(noise.mean())) < 0.1
        g = torch.Generator().manual_seed(7 + i)
        assert torch.allclose(noise, torch.randn((1, 3, 32, 32), generator=g)[0], atol=1e-3)


def test_same_index_same_observation_any_instance_batch_or_order(folder, monkeypatch):
    one, two = make_dm(folder), make_dm(folder, batch_size=4)
    monkeypatch.setattr(blur_benchmark, "CACHE_BYTES", 0)  # too big to cache: decoded in __getitem__
    lazy = make_dm(folder)
    assert all(entry.pixels is None for entry in lazy.dataset.images)
    for i in reversed(range(len(one.dataset))):
        assert_same_case(one.dataset[i], two.dataset[i])
        assert_same_case(one.dataset[i], lazy.dataset[i])
    batches = list(two.predict_dataloader())
    assert [b["y"].shape[0] for b in batches] == [4, 4, 2]
    batch = batches[1]
    assert batch["image_id"] == ["00004", "00000", "00001", "00002"] and batch["index"].tolist() == [4, 5, 6, 7]
    assert batch["kernel"].shape == (4, 1, 7, 7) and batch["sigma255"].tolist() == [5, 10, 10, 10]
    assert torch.equal(batch["y"][2], one.dataset[6]["y"])
    assert torch.equal(next(iter(two.test_dataloader()))["y"], batches[0]["y"])


def test_trainer_predict_sees_every_sample_once(folder):
    class Echo(L.LightningModule):
        def predict_step(self, batch, batch_idx):
            return batch["index"]

    dm = BlurBenchmarkDataModule(images=str(folder), num_images=2, kernel_size=7, sigmas=[0], batch_size=2)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)
    out = trainer.predict(Echo(), datamodule=dm)
    assert torch.cat(out).tolist() == [0, 1]


def test_damaged_image_is_skipped_and_leaves_the_others_unchanged(folder, tmp_path):
    reference = samples(make_dm(folder))
    (folder / "00001.png").write_bytes((folder / "00001.png").read_bytes()[:60])  # truncated
    dm = make_dm(folder)
    assert [p for p, _ in dm.skipped] == [str(folder / "00001.png")] and "00001.png" in dm.skipped[0][1]
    assert "4 images" in dm.samples_summary() and "1 unreadable image skipped" in dm.samples_summary()
    kept = [s for s in reference if s["image_id"] != "00001"]
    assert len(dm.dataset) == len(kept) == 8
    for a, b in zip(samples(dm), kept):
        assert_same_case(a, b)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    (bad / "b.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="none of the 2 files"):
        make_dm(bad)


def test_bad_arguments_raise_input_error(folder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not found"):
        make_dm(tmp_path / "missing")
    with pytest.raises(InputError, match="no images"):
        make_dm(tmp_path / "empty")
    for sigmas in ([-5], [float("nan")], []):
        with pytest.raises(InputError, match="sigmas"):
            make_dm(folder, sigmas=sigmas)
    with pytest.raises(InputError, match="nor an existing kernel-bank"):
        make_dm(folder, kernels="no-such-generator")
    with pytest.raises(InputError, match="kernel_size: kernels of 33x33 are larger than image"):
        make_dm(folder, kernel_size=33)
    with pytest.raises(InputError, match="exactly one of images"):
        BlurBenchmarkDataModule(images=str(folder), testcases=str(folder))
    with pytest.raises(InputError, match="num_images"):
        make_dm(folder, num_images=0)
    write_images(folder, ["zz.png"], size=(40, 32))
    with pytest.raises(InputError, match="needs images of one size"):
        make_dm(folder, batch_size=2)
    assert len(make_dm(folder, size=16).dataset) == 12  # resized to one size: fine
    with pytest.raises(InputError, match="test cases not found"):
        BlurBenchmarkDataModule(testcases=str(tmp_path / "nothing")).setup("test")


def test_kernel_bank_file_and_bundled_photos(folder, tmp_path):
    bank = make_generator("gaussian", 5).sample(3, seed=2)
    save_bank(tmp_path / "bank.npz", bank)
    dm = make_dm(folder, kernels=str(tmp_path / "bank.npz"), kernel_size=None, sigmas=[1])
    assert [s["kernel_id"] for s in samples(dm)] == [0, 1, 2, 0, 1]  # reused cyclically
    assert torch.allclose(dm.dataset[4]["kernel"], bank[1])
    dm = BlurBenchmarkDataModule(images="bundled", num_images=2, size=24, kernel_size=5, sigmas=[10])
    dm.setup("predict")
    assert [s["image_id"] for s in samples(dm)] == ["astronaut", "camera"]
    assert dm.dataset[0]["sharp"].shape == (3, 24, 24)



def rescaled(path, factor):
    """The photo at ``path`` resized by ``factor`` (bicubic, antialiased), written out here rather than by fdem."""
    img = load_image(path)
    new = (round(img.shape[-2] * factor), round(img.shape[-1] * factor))
    return F.interpolate(img[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


@pytest.fixture
def photos(tmp_path):
    return write_images(tmp_path / "photos", ["a.png", "b.png"], size=(48, 64))


def test_scale_resizes_by_a_fixed_factor_then_crops_the_centre(photos):
    scaled = make_dm(photos, size=16, scale=0.5, quantize=False, sigmas=[5])
    short_side = make_dm(photos, size=16, quantize=False, sigmas=[5])
    for j, path in enumerate(sorted(photos.iterdir())):
        crop = scaled.dataset[j]["sharp"]
        assert torch.equal(crop, rescaled(path, 0.5)[:, 4:20, 8:24])  # 24x32, its central 16x16
        assert not torch.allclose(crop, short_side.dataset[j]["sharp"], atol=0.05)  # another view of the photo
    assert torch.allclose(scaled.dataset[1]["sharp"], crops(str(photos), 2, 16, 0.5)[1], atol=1e-6)


def test_scene_blur_blurs_a_larger_crop_and_keeps_its_centre(photos):
    scene = make_dm(photos, size=16, scale=0.5, blur="scene", quantize=False, sigmas=[5], seed=3)
    circular = make_dm(photos, size=16, scale=0.5, quantize=False, sigmas=[5], seed=3)
    for j, path in enumerate(sorted(photos.iterdir())):
        s, c = scene.dataset[j], circular.dataset[j]
        region = rescaled(path, 0.5)[None, :, 1:23, 5:27]  # the 16x16 frame and the 7x7 kernel's radius 3 around it
        k = s["kernel"][None]
        noise = s["sigma"] * torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(3 + j))[0]
        clean = s["y"] - noise
        assert torch.equal(s["sharp"], c["sharp"]) and torch.equal(s["sharp"], region[0, :, 3:19, 3:19])
        assert torch.allclose(clean, blur(region, k)[0, :, 3:19, 3:19], atol=1e-5)
        assert torch.allclose(clean, F.conv2d(region.transpose(0, 1), k.flip(-1, -2))[:, 0], atol=1e-5)  # no wrap-around
        wrapped = blur(s["sharp"][None], k)[0]  # circular blur of the frame: the same inside, not at the border
        assert torch.allclose(clean[:, 3:-3, 3:-3], wrapped[:, 3:-3, 3:-3], atol=1e-5)
        assert (clean - wrapped).abs()[:, :3].max() > 0.02
        assert torch.allclose(c["y"] - noise, wrapped, atol=1e-5)  # the default: circular, same noise


@pytest.mark.parametrize("options, message", [
    ({"scale": 0}, "scale must be a number in [0.05, 1], got 0"),
    ({"scale": 2}, "scale must be a number in [0.05, 1], got 2"),
    ({"scale": "half"}, "scale must be a number in [0.05, 1], got 'half'"),
    ({"blur": "gaussian"}, "blur must be one of circular, scene, got 'gaussian'"),
    ({"blur": "scene", "kernel_size": 21},  # 32x32 less 10 pixels on every side: 12x12, smaller than the kernel
     "kernel_size: kernels of 21x21 are larger than image"),
    ({"blur": "scene", "kernel_size": 21}, "00000.png (32x32, less the 10-pixel margin that blur 'scene' keeps"),
])
def test_bad_scale_or_blur_is_one_input_error(folder, options, message):
    with pytest.raises(InputError) as err:
        make_dm(folder, **options)
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1


def test_scale_and_blur_are_refused_for_test_cases(tmp_path):
    with pytest.raises(InputError, match="scale and blur apply to images"):
        BlurBenchmarkDataModule(testcases=str(tmp_path), blur="scene")

def test_authors_pickle_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    H = torch.rand(2, 3, 16, 16, generator=g)
    L_ = H + 0.05 * torch.randn(H.shape, generator=g)
    kernel = torch.rand(2, 1, 5, 5, generator=g)
    kernel /= kernel.sum(dim=(-2, -1), keepdim=True)
    write_authors_pickle(tmp_path / "10.pickle", H, L_, kernel, torch.tensor([0.02, 0.04]))
    with open(tmp_path / "2.pickle", "wb") as f:  # protocol 2 (bytes through _codecs.encode); σ on the 255 scale
        pickle.dump({"H": H[0:1], "L": L_[0:1], "kernel": kernel[0, 0], "sigma": 10.0}, f, protocol=2)
    np.save(tmp_path / "notes.npy", np.zeros(1))  # not a pickle suffix: ignored
    cases = read_testcases(tmp_path)
    assert [c["image_id"] for c in cases] == ["2", "10_0", "10_1"] and [c["index"] for c in cases] == [0, 1, 2]
    assert torch.equal(cases[0]["sharp"], H[0]) and torch.equal(cases[0]["kernel"], kernel[0])
    assert cases[0]["sigma"] == 10 / 255 and cases[0]["sigma255"] == 10.0
    for j in (0, 1):
        c = cases[1 + j]
        assert torch.equal(c["sharp"], H[j]) and torch.equal(c["y"], L_[j]) and torch.equal(c["kernel"], kernel[j])
        assert c["sigma"] == pytest.approx([0.02, 0.04][j]) and c["seed"] == -1
    torch.save({"H": H[0], "L": L_[0], "kernel": kernel[0, 0], "sigma": 0.01}, tmp_path / "saved.pt")
    (c,) = read_testcases(tmp_path / "saved.pt")
    assert torch.equal(c["y"], L_[0]) and c["sigma"] == 0.01
    Payload.marker = tmp_path / "pwned"
    torch.save({"H": H[0], "L": L_[0], "kernel": Payload(), "sigma": 0}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"evil.pt: refusing to unpickle (posix|nt|os)\.system"):
        read_testcases(tmp_path / "evil.pt")
    assert not Payload.marker.exists()
    os.remove(tmp_path / "evil.pt")
    dm = BlurBenchmarkDataModule(testcases=str(tmp_path / "10.pickle"))
    assert dm.samples_summary().startswith("2 test cases") and torch.equal(dm.dataset[1]["y"], L_[1])


class Payload:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class StoragePayload:
    """Smuggles a payload into the bytes that torch's storage loader decodes."""

    def __reduce__(self):
        return torch.storage._load_from_bytes, (pickle.dumps(Payload(), protocol=self.protocol),)


def test_malicious_or_foreign_pickles_are_refused(tmp_path):
    Payload.marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"H": Payload(), "L": 0, "kernel": 0, "sigma": 0}))
    with pytest.raises(InputError, match=r"evil.pickle: refusing to unpickle (posix|nt|os)\.system"):
        read_testcases(evil)
    for protocol in (2, 4):
        StoragePayload.protocol = protocol
        evil.write_bytes(pickle.dumps({"H": StoragePayload()}))
        with pytest.raises(InputError, match=r"evil.pickle: refusing (to unpickle (posix|nt|os)\.system|its content)"):
            read_testcases(evil)
    assert not Payload.marker.exists()
    counter = tmp_path / "counter.pkl"
    counter.write_bytes(pickle.dumps({"H": collections.Counter("ab")}))
    with pytest.raises(InputError, match="refusing to unpickle collections.Counter"):
        safe_load(counter)
    objects = tmp_path / "objects.pkl"
    objects.write_bytes(pickle.dumps(np.array([1, "x"], dtype=object)))
    with pytest.raises(InputError, match="objects.pkl"):
        safe_load(objects)
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04junk")
    with pytest.raises(InputError, match="junk.pkl"):
        safe_load(tmp_path / "junk.pkl")
    wrong = tmp_path / "wrong.pickle"
    write_authors_pickle(wrong, torch.rand(3, 8, 8), torch.rand(3, 8, 8), torch.ones(3, 3), [0.1])
    wrong.write_bytes(pickle.dumps({"H": torch.rand(3, 8, 8)}))
    with pytest.raises(InputError, match="missing key"):
        read_testcases(wrong)


@pytest.mark.parametrize("quantize", [True, False])
def test_export_folder_reads_back_identical(folder, tmp_path, quantize):
    out = tmp_path / "export"
    cfg = tmp_path / "bench.yaml"
    cfg.write_text("data:\n  class_path: fdem.datamodules.blur_benchmark.BlurBenchmarkDataModule\n  init_args:\n"
                   f"    images: {folder}\n    kernel_size: 7\n    sigmas: [5]\n    quantize: {quantize}\n")
    size = [] if quantize else ["--size", "24"]  # resized and not quantised: off the 8-bit grid
    run_cli("export", "--config", str(cfg), "--num-images", "3", "--sigmas", "5,20", "--seed", "3", "--out", str(out),
            *size)
    original = samples(make_dm(folder, num_images=3, sigmas=[5, 20], seed=3, quantize=quantize,
                               size=None if quantize else 24))
    back = read_testcases(out)
    assert len(back) == len(original) == 6 and (out / "blurry" / "00000.png").is_file()
    assert (out / "sharp" / "00000.npy").exists() != quantize  # exact copy only when not 8-bit
    for a, b in zip(back, original):
        assert_same_case(a, b)
    again = BlurBenchmarkDataModule(testcases=str(out), batch_size=3)
    assert torch.equal(next(iter(again.predict_dataloader()))["y"][2], original[2]["y"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_export_is_atomic_and_converts_pickles(folder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="kernel_size"):
        run_cli("export", "--images", str(folder), "--kernel-size", "33", "--out", str(out))
    with pytest.raises(SystemExit, match="2"):  # refused by the parser (fdem.cli.args.Checked)
        run_cli("export", "--images", str(folder), "--sigmas", "-1", "--out", str(out))
    bad = tmp_path / "bad.yaml"
    bad.write_text("images: x\ncolour: red\n")
    with pytest.raises(InputError, match="unknown argument.*colour"):
        run_cli("export", "--config", str(bad), "--out", str(out))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    def failing():
        yield from samples(make_dm(folder, num_images=1))
        raise InputError("disk full")
    with pytest.raises(InputError, match="disk full"):
        write_testcase_folder(out, failing())
    assert not out.exists()

    H = torch.rand(1, 3, 16, 16)
    write_authors_pickle(tmp_path / "0.pickle", H, H + 0.01, torch.full((1, 1, 3, 3), 1 / 9), 0.01)
    run_cli("export", "--from-pickle", str(tmp_path / "0.pickle"), "--out", str(out))
    (case,) = read_testcases(out)
    assert torch.equal(case["y"], H[0] + 0.01) and torch.equal(case["sharp"], H[0]) and case["sigma"] == 0.01
    with pytest.raises(InputError, match="not empty"):
        run_cli("export", "--from-pickle", str(tmp_path / "0.pickle"), "--out", str(out))
    run_cli("export", "--images", str(folder), "--num-images", "1", "--kernel-size", "5", "--sigmas", "5",
            "--out", str(out), "--force")
    assert [c["image_id"] for c in read_testcases(out)] == ["00000"]
