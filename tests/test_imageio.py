"""fdem.imageio: loading every pixel layout, the writers, folder listing, built-in images, errors."""

import re
import socket
import struct
import warnings
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from fdem.errors import InputError
from fdem.imageio import (
    center_crop,
    convert_channels,
    default_images,
    list_images,
    load_image,
    save_image,
    save_image16,
    to_tensor,
)

RNG = np.random.default_rng(0)


def _rgb8(h=9, w=11):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _as_hwc(t):
    return t.permute(1, 2, 0).numpy()


def _png16_every_filter(array: np.ndarray, colour: int) -> bytes:
    """A 16-bit PNG whose rows cycle through filters None, Sub, Up, Average, Paeth (independent encoder)."""
    h, w, s = array.shape
    bpp = 2 * s
    rows = array.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int64)
    up = np.vstack([np.zeros((1, w * bpp), np.int64), rows[:-1]])
    left = np.hstack([np.zeros((h, bpp), np.int64), rows[:, :-bpp]])
    upleft = np.hstack([np.zeros((h, bpp), np.int64), up[:, :-bpp]])
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    predictions = [np.zeros_like(rows), left, up, (left + up) // 2, paeth]
    body = b"".join(
        bytes([y % 5]) + ((rows[y] - predictions[y % 5][y]) % 256).astype(np.uint8).tobytes() for y in range(h)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


# --- loading ---------------------------------------------------------------------------------


def test_rgb8_round_trip(tmp_path):
    a = _rgb8()
    save_image(tmp_path / "a.png", to_tensor(a))
    x = load_image(tmp_path / "a.png")
    assert x.dtype == torch.float32 and x.shape == (3, 9, 11)
    assert np.array_equal(np.round(_as_hwc(x) * 255).astype(np.uint8), a)


@pytest.mark.parametrize("ext", ["jpg", "bmp", "tif"])
def test_other_formats_load(tmp_path, ext):
    a = _rgb8()
    Image.fromarray(a).save(tmp_path / f"a.{ext}")
    x = load_image(tmp_path / f"a.{ext}")
    assert x.shape == (3, 9, 11) and 0 <= x.min() and x.max() <= 1
    if ext != "jpg":
        assert np.allclose(_as_hwc(x), a / 255, atol=1e-6)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray(_rgb8(4, 6))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    im.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (3, 6, 4)


def test_gray_is_replicated_and_round_trips(tmp_path):
    g = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (3, 6, 5) and torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    assert np.allclose(x[0].numpy(), g / 255, atol=1e-6)
    one = load_image(tmp_path / "g.png", channels=1)
    assert one.shape == (1, 6, 5) and torch.equal(one[0], x[0])
    save_image(tmp_path / "g2.png", one)
    assert Image.open(tmp_path / "g2.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g2.png")), g)


def test_rgba_and_gray_alpha_drop_alpha(tmp_path):
    a = _rgb8()
    alpha = RNG.integers(0, 256, a.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([a, alpha]), "RGBA").save(tmp_path / "rgba.png")
    assert np.allclose(_as_hwc(load_image(tmp_path / "rgba.png")), a / 255, atol=1e-6)
    Image.fromarray(np.dstack([a[..., 0], alpha]), "LA").save(tmp_path / "la.png")
    assert np.allclose(load_image(tmp_path / "la.png", channels=1)[0].numpy(), a[..., 0] / 255, atol=1e-6)


def test_palette_with_transparency(tmp_path):
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, (7, 8), dtype=np.uint8)
    im = Image.fromarray(index, "P")
    im.putpalette(palette.ravel().tolist())
    im.save(tmp_path / "p.png", transparency=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns on palette transparency unless handled
        x = load_image(tmp_path / "p.png")
    assert np.allclose(_as_hwc(x), palette[index] / 255, atol=1e-6)


def test_gray16_round_trip_is_exact(tmp_path):
    g = RNG.integers(0, 65536, (10, 13), dtype=np.uint16)
    g[0, :3] = [0, 1, 65535]
    save_image16(tmp_path / "g16.png", torch.from_numpy(g / 65535.0).float()[None])
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = load_image(tmp_path / "g16.png", channels=1)
    assert np.array_equal(np.round(x[0].double().numpy() * 65535).astype(np.uint16), g)
    Image.fromarray(g).save(tmp_path / "pillow16.png")  # a 16-bit gray PNG written by Pillow
    assert torch.equal(load_image(tmp_path / "pillow16.png", channels=1), x)


def test_rgb16_round_trip_is_exact(tmp_path):
    a = RNG.integers(0, 65536, (12, 7, 3), dtype=np.uint16)
    save_image16(tmp_path / "sub" / "rgb16.png", torch.from_numpy(a / 65535.0).permute(2, 0, 1))
    x = load_image(tmp_path / "sub" / "rgb16.png")
    assert np.array_equal(np.round(_as_hwc(x).astype(np.float64) * 65535).astype(np.uint16), a)
    # a viewer's decoder (Pillow, 8-bit) sees the same picture
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "rgb16.png")), (a >> 8).astype(np.uint8))


@pytest.mark.parametrize("colour,samples", [(2, 3), (6, 4), (4, 2)])
def test_png16_colour_every_filter(tmp_path, colour, samples):
    a = RNG.integers(0, 65536, (20, 9, samples), dtype=np.uint16)
    a[10:] = RNG.integers(0, 6, (10, 9, samples)) * 257  # few distinct bytes: Paeth ties are frequent
    (tmp_path / "f.png").write_bytes(_png16_every_filter(a, colour))
    x = load_image(tmp_path / "f.png", channels=3 if samples >= 3 else 1)
    expected = a[..., :3] if samples >= 3 else a[..., :1]
    assert np.array_equal(np.round(_as_hwc(x).astype(np.float64) * 65535).astype(np.uint16), expected)


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_tiff16_rgb_is_exact(tmp_path, planar):
    a = RNG.integers(0, 65536, (6, 8, 3), dtype=np.uint16)
    data = a if planar == "contig" else np.moveaxis(a, -1, 0)
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="rgb", planarconfig=planar)
    x = load_image(tmp_path / "a.tif")
    assert np.array_equal(np.round(_as_hwc(x).astype(np.float64) * 65535).astype(np.uint16), a)


def test_float_tiff_is_clipped(tmp_path):
    f = np.array([[-0.5, 0.25], [0.75, 2.0]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f)
    assert torch.allclose(load_image(tmp_path / "f.tif", channels=1)[0], torch.tensor([[0.0, 0.25], [0.75, 1.0]]))


def test_luminance_uses_bt601():
    rgb = torch.rand(3, 4, 5)
    y = convert_channels(rgb, 1)
    assert torch.allclose(y[0], 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    assert convert_channels(y, 3).shape == (3, 4, 5)


def test_channels_1_loads_luminance(tmp_path):
    a = _rgb8()
    Image.fromarray(a).save(tmp_path / "a.png")
    y = load_image(tmp_path / "a.png", channels=1)
    w = np.array([0.299, 0.587, 0.114])
    assert y.shape == (1, 9, 11) and np.allclose(y[0].numpy(), (a / 255) @ w, atol=1e-6)


# --- writing ---------------------------------------------------------------------------------


def test_save_image_clamps_rounds_and_creates_folders(tmp_path):
    img = torch.tensor([[[-1.0, 0.5, 2.0, float("nan")]]])
    path = tmp_path / "a" / "b" / "c.png"
    save_image(path, img)
    assert np.array_equal(np.asarray(Image.open(path)), [[0, 128, 255, 0]])
    save_image(path, img[0])  # (H, W) too, and overwriting
    assert [p.name for p in path.parent.iterdir()] == ["c.png"]  # no temporary file left


def test_save_rejects_bad_shape_and_suffix(tmp_path):
    with pytest.raises(InputError, match="x.png"):
        save_image(tmp_path / "x.png", torch.zeros(2, 4, 4))
    with pytest.raises(InputError, match="x.jpg"):
        save_image(tmp_path / "x.jpg", torch.zeros(3, 4, 4))


def test_save_into_unwritable_place_names_the_file(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    target = tmp_path / "file" / "x.png"
    with pytest.raises(InputError, match=re.escape(str(target))):
        save_image(target, torch.zeros(3, 2, 2))


# --- folders, crops, defaults ---------------------------------------------------------------


def test_list_images_order_recursion_and_filter(tmp_path):
    for rel in ["b.PNG", "a.jpg", "sub/c.tif", "sub/deeper/a.BMP", "z.txt", "sub/notes.md", ".hidden/x.png", ".y.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rel == ["a.jpg", "b.PNG", "sub/c.tif", "sub/deeper/a.BMP"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in list_images(str(tmp_path / "sub"))] == ["c.tif", "a.BMP"]


def test_center_crop():
    img = torch.arange(5 * 6, dtype=torch.float32).reshape(1, 5, 6)
    assert torch.equal(center_crop(img, 3), img[:, 1:4, 1:4])
    assert center_crop(img, (2, 4)).shape == (1, 2, 4)
    with pytest.raises(InputError):
        center_crop(img, 6)
    up = center_crop(torch.rand(3, 5, 8), 6, upscale=True)
    assert up.shape == (3, 6, 6) and 0 <= up.min() and up.max() <= 1


def test_default_images_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("default_images tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    images = default_images()
    assert len(images) >= 4
    names = [name for name, _ in images]
    assert len(set(names)) == len(names) and names == [name for name, _ in default_images()]
    for _, img in images:
        assert img.shape == (3, 256, 256) and img.dtype == torch.float32
        assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.05
    # a size larger than some photographs (chelsea is 300x451) upsamples them; gray on request
    assert all(img.shape == (1, 320, 320) for _, img in default_images(size=320, channels=1))


# --- errors name the path --------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_folder_given_as_image(tmp_path):
    with pytest.raises(InputError, match=re.escape(str(tmp_path))):
        load_image(tmp_path)


def test_not_an_image(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="text.png"):
        load_image(tmp_path / "text.png")


@pytest.mark.parametrize("bits", [8, 16])
def test_truncated_png(tmp_path, bits):
    path = tmp_path / "t.png"
    if bits == 8:
        Image.fromarray(_rgb8(64, 64)).save(path)
    else:
        save_image16(path, torch.rand(3, 64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="t.png"):
        load_image(path)


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match="missing"):
        list_images(tmp_path / "missing")
    (tmp_path / "only.txt").write_text("x")
    with pytest.raises(InputError, match=re.escape(str(tmp_path))):
        list_images(tmp_path)
    with pytest.raises(InputError, match="only.txt"):
        list_images(tmp_path / "only.txt")


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("colours", [1, 3])
def test_picture_round_trip_keeps_alpha_and_depth(tmp_path, bits, colours):
    from fdem.imageio import read_picture, save_picture

    scale = 255 if bits == 8 else 65535
    colour = torch.from_numpy(RNG.integers(0, scale + 1, (colours, 7, 9)).astype(np.float32) / scale)
    alpha = torch.from_numpy(RNG.integers(0, scale + 1, (1, 7, 9)).astype(np.float32) / scale)
    save_picture(tmp_path / "p.png", colour, alpha, bits)
    back = read_picture(tmp_path / "p.png")
    assert back.bits == bits and torch.equal(back.alpha, alpha) and torch.equal(back.colour, colour)
    assert read_picture(tmp_path / "p.png").bits == bits and load_image(tmp_path / "p.png").shape == (3, 7, 9)


def test_image_size_reads_headers_only(tmp_path):
    from fdem.imageio import image_size, load_npy_image

    Image.new("L", (12000, 9000)).save(tmp_path / "huge.png")  # over Pillow's bomb warning size: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_size(tmp_path / "huge.png") == (9000, 12000)
    np.save(tmp_path / "y.npy", np.full((3, 5, 6), 1.5, np.float32))
    assert image_size(tmp_path / "y.npy") == (5, 6)
    assert load_npy_image(tmp_path / "y.npy").max() == 1.5  # unclipped
    np.save(tmp_path / "bad.npy", np.zeros((4, 5, 6)))
    with pytest.raises(InputError, match="C = 1 or 3"):
        image_size(tmp_path / "bad.npy")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.png is not an image"):
        image_size(tmp_path / "junk.png")
