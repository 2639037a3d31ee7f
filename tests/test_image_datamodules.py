"""Image-folder, FFHQ and kernel-image datamodules: splits, crops, value ranges, errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from fdem.datamodules.images import FFHQDataModule, ImageFolderDataModule, KernelImageDataModule, stem_number
from fdem.errors import InputError


def write_images(folder, names, size=(20, 28), mode="RGB"):
    """Small random images at ``folder/name`` (sub-folders created)."""
    rng = np.random.default_rng(0)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
        Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(path)


def test_ffhq_never_trains_on_the_evaluation_images(tmp_path):
    names = ["00000.png", "00007.png", "00999.png", "01000.png", "sub/01001.png", "00000/00500.png",
             "69999.png", "extra.png"]
    write_images(tmp_path, names)
    dm = FFHQDataModule(str(tmp_path), resolution=16, val_count=2, batch_size=2)
    dm.setup("fit")
    train = {p.relative_to(tmp_path).as_posix() for p in dm.train_files}
    assert train == {"01000.png", "sub/01001.png", "69999.png", "extra.png"}
    assert all(stem_number(p) is None or stem_number(p) >= 1000 for p in dm.train_files)
    assert [p.name for p in dm.val_files] == ["00000.png", "00007.png"]
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (2, 3, 16, 16) and batch.min() >= -1 and batch.max() <= 1


def test_image_folder_split_is_deterministic_and_disjoint(tmp_path):
    write_images(tmp_path, [f"a/{j}.png" for j in range(10)] + [f"b/{j}.jpg" for j in range(10)])
    splits = []
    for _ in range(2):
        dm = ImageFolderDataModule(str(tmp_path), resolution=8, val_fraction=0.2, seed=3)
        dm.setup("fit")
        splits.append((dm.train_files, dm.val_files))
    train, val = splits[0]
    assert splits[0] == splits[1] and len(val) == 4 and len(train) == 16 and not set(train) & set(val)
    dm = ImageFolderDataModule(str(tmp_path), resolution=8, val_files=["b/3.jpg"])
    dm.setup("fit")
    assert [p.relative_to(tmp_path).as_posix() for p in dm.val_files] == ["b/3.jpg"]
    with pytest.raises(InputError, match="val_files not found"):
        ImageFolderDataModule(str(tmp_path), val_files=["nope.png"]).setup("fit")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("crop", ["center", "random"])
def test_items_are_cropped_to_the_resolution_in_minus_one_one(tmp_path, mode, crop):
    write_images(tmp_path, ["x.png", "y.png"], size=(12, 30), mode=mode)
    dm = ImageFolderDataModule(str(tmp_path), resolution=16, crop=crop, val_fraction=0.0, batch_size=2, channels=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))  # short side 12 < 16: enlarged first
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1 and batch.min() < -0.5 and batch.max() > 0.5
    gray = ImageFolderDataModule(str(tmp_path), resolution=8, crop=crop, val_fraction=0.0, batch_size=2, channels=1)
    gray.setup("fit")
    assert next(iter(gray.train_dataloader())).shape == (2, 1, 8, 8)


def test_center_crop_resizes_the_short_side(tmp_path):
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, 40:] = 255  # left half black, right half white: the central square straddles both
    Image.fromarray(pixels).save(tmp_path / "half.png")
    dm = ImageFolderDataModule(str(tmp_path), resolution=20, val_fraction=0.0, batch_size=1)
    dm.setup("fit")
    img = next(iter(dm.train_dataloader()))[0]
    assert img.shape == (3, 20, 20)
    assert img[:, :, :8].max() < -0.9 and img[:, :, 12:].min() > 0.9


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        ImageFolderDataModule(str(tmp_path / "nope")).setup("fit")
    with pytest.raises(InputError, match="no images"):
        ImageFolderDataModule(str(tmp_path)).setup("fit")
    with pytest.raises(InputError, match="crop"):
        ImageFolderDataModule(str(tmp_path), crop="middle")


def test_kernel_images_are_scaled_by_their_max_to_minus_one_one():
    dm = KernelImageDataModule(generator="motion", size=32, batch_size=4, num_batches=2, val_count=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 1, 32, 32)
    assert torch.allclose(batch.amax(dim=(-2, -1)), torch.ones(4, 1)) and batch.min() >= -1
    val = next(iter(dm.val_dataloader()))
    assert val.shape == (3, 1, 32, 32) and torch.allclose(val.amax(dim=(-2, -1)), torch.ones(3, 1))
    kernels = (val + 1) / 2
    assert (kernels >= 0).all() and (kernels.sum(dim=(-2, -1)) > 1).all()


def test_bundled_photos_are_available_offline():
    from fdem.datamodules.images import BUNDLED_TRAINING_PHOTOS, BundledPhotosDataModule

    dm = BundledPhotosDataModule(resolution=32, batch_size=4, repeat=1)
    dm.setup("fit")
    assert len(dm.train_files) == len(BUNDLED_TRAINING_PHOTOS)
    assert not {"coffee.png", "rocket.jpg", "motorcycle_left.png"} & {f.name for f in dm.train_files}
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
