"""Kernel banks: our .npz, image folders, MATLAB v5 and v7.3 files, errors, previews."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from fdem.errors import InputError
from fdem.kernels_gen import load_bank, make_generator, save_bank, save_preview


def _random_kernels(sizes, seed=0):
    """Asymmetric positive kernels (to catch transpositions), each summing to 1."""
    rng = np.random.default_rng(seed)
    out = []
    for size in sizes:
        k = rng.random((size, size)) ** 4
        k[0, -1] += 1.0  # a marked corner
        out.append(k / k.sum())
    return out


def _padded(kernel, size):
    out = np.zeros((size, size))
    h, w = kernel.shape
    top, left = size // 2 - h // 2, size // 2 - w // 2
    out[top : top + h, left : left + w] = kernel
    return out


def _check(bank, expected):
    assert bank.dtype == torch.float32 and bank.shape == (len(expected), 1, *expected[0].shape)
    np.testing.assert_allclose(bank[:, 0].numpy(), np.stack(expected), atol=1e-6)


def test_npz_round_trip_keeps_kernels_and_provenance(tmp_path):
    g = make_generator("motion", 15, intensity=0.3)
    kernels = g.sample(5, seed=4)
    path = tmp_path / "sub" / "bank.npz"
    save_bank(path, kernels, generator=g, seed=4)
    assert torch.equal(load_bank(path), kernels)
    with np.load(path, allow_pickle=False) as content:
        assert content["kernels"].dtype == np.float32 and content["kernels"].shape == (5, 15, 15)
        assert str(content["generator"]) == "motion" and int(content["seed"]) == 4
        assert json.loads(str(content["params"])) == g.params()
    assert [p.name for p in path.parent.iterdir()] == ["bank.npz"]  # no temporary left behind


def test_npz_is_padded_to_a_larger_size(tmp_path):
    kernels = _random_kernels([5, 5])
    save_bank(tmp_path / "b.npz", np.stack(kernels))
    _check(load_bank(tmp_path / "b.npz", size=8), [_padded(k, 8) for k in kernels])


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "bank.npz"

    def broken_savez(f, **fields):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(InputError, match="bank.npz: disk full"):
        save_bank(path, torch.ones(2, 1, 3, 3) / 9)
    assert list(tmp_path.iterdir()) == []


def test_save_bank_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match="bank.txt"):
        save_bank(tmp_path / "bank.txt", torch.ones(1, 1, 3, 3))
    with pytest.raises(InputError, match="b.npz"):
        save_bank(tmp_path / "b.npz", torch.ones(2, 3, 4))


def test_image_folder_grey_16bit_and_rgb(tmp_path):
    kernels = _random_kernels([5, 7, 9])
    folder = tmp_path / "kernels"
    folder.mkdir()
    grey8 = np.round(255 * kernels[0] / kernels[0].max()).astype(np.uint8)
    Image.fromarray(grey8, mode="L").save(folder / "a.png")
    grey16 = np.round(65535 * kernels[1] / kernels[1].max()).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "b.png")
    rgb = np.repeat(grey8[..., None], 3, axis=2)
    rgb[..., 0] = 0  # luma of (0, g, g)
    Image.fromarray(np.pad(rgb, ((2, 2), (2, 2), (0, 0))), mode="RGB").save(folder / "c.png")
    (folder / ".DS_Store").write_bytes(b"hidden files are skipped")
    expected_rgb = np.pad(grey8.astype(float), 2) * (0.587 + 0.114)
    expected = [grey8 / grey8.sum(), grey16 / grey16.sum(), expected_rgb / expected_rgb.sum()]
    _check(load_bank(folder), [_padded(k, 9) for k in expected])


def test_mat_v5_stack_and_levin_style_cell(tmp_path):
    stack = _random_kernels([11] * 3)
    path = tmp_path / "stack.mat"
    scipy.io.savemat(path, {"blur": np.stack(stack, axis=-1), "note": "a string"})  # (k, k, n), MATLAB order
    _check(load_bank(path), stack)

    sizes = [19, 17, 15, 27, 13, 21, 23, 23]  # like Levin et al. 2009
    kernels = _random_kernels(sizes, seed=1)
    cell = np.empty((1, len(kernels)), dtype=object)
    for i, k in enumerate(kernels):
        cell[0, i] = k
    path = tmp_path / "Levin09.mat"
    scipy.io.savemat(path, {"kernels": cell, "x": np.random.default_rng(0).random((64, 64))})
    _check(load_bank(path), [_padded(k, 27) for k in kernels])
    _check(load_bank(path, size=32), [_padded(k, 32) for k in kernels])


def test_mat_v5_stack_in_python_order(tmp_path):
    stack = _random_kernels([9] * 4)
    scipy.io.savemat(tmp_path / "k.mat", {"psf": np.stack(stack)})  # (n, k, k)
    _check(load_bank(tmp_path / "k.mat"), stack)


def _write_v73(path, variables):
    """A MATLAB v7.3-style file: 512-byte user block, arrays transposed, cells as references in #refs#."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for name, value in variables.items():
            if isinstance(value, list):
                handles = []
                for i, k in enumerate(value):
                    ds = refs.create_dataset(f"{name}{i}", data=k.T)
                    ds.attrs["MATLAB_class"] = np.bytes_("double")
                    handles.append(ds.ref)
                cell = f.create_dataset(name, data=np.array(handles, dtype=h5py.ref_dtype).reshape(len(value), 1))
                cell.attrs["MATLAB_class"] = np.bytes_("cell")
            else:
                ds = f.create_dataset(name, data=value.T)
                ds.attrs["MATLAB_class"] = np.bytes_("double")


def test_mat_v73_numeric_and_cell(tmp_path):
    stack = _random_kernels([13] * 2)
    path = tmp_path / "stack73.mat"
    _write_v73(path, {"kernel": np.stack(stack, axis=-1), "image": np.random.default_rng(0).random((40, 30))})
    _check(load_bank(path), stack)

    kernels = _random_kernels([13, 27, 15], seed=2)
    path = tmp_path / "cell73.mat"
    _write_v73(path, {"kernels": kernels})
    _check(load_bank(path), [_padded(k, 27) for k in kernels])


def test_loaded_kernels_are_clipped_and_normalised(tmp_path):
    k = np.array([[0.0, -1.0, 0.0], [2.0, 4.0, 2.0], [0.0, 0.0, 0.0]])
    np.save(tmp_path / "k.npy", k)
    _check(load_bank(tmp_path / "k.npy"), [np.maximum(k, 0) / 8.0])


def _error_cases(tmp):
    (tmp / "empty").mkdir()
    (tmp / "mixed").mkdir()
    Image.fromarray(np.eye(5, dtype=np.uint8) * 255).save(tmp / "mixed" / "k1.png")
    (tmp / "mixed" / "readme.txt").write_text("not an image")
    (tmp / "bank.txt").write_text("?")
    scipy.io.savemat(tmp / "nokernel.mat", {"sigma": np.array([[0.5]]), "name": "levin"})
    cell = np.empty((1, 3), dtype=object)
    cell[0, 0], cell[0, 1], cell[0, 2] = np.ones((5, 5)), np.ones((5, 5)), np.full((5, 5), np.nan)
    scipy.io.savemat(tmp / "nan.mat", {"kernels": cell})
    zero = np.ones((3, 7, 7))
    zero[1] = -1.0
    np.savez(tmp / "zero.npz", kernels=zero)
    np.savez(tmp / "nokey.npz", other=np.ones((7, 7)))
    np.savez(tmp / "big.npz", kernels=np.ones((2, 9, 9)))
    (tmp / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file, but truncated")
    return [
        ("missing.npz", {}, "missing.npz"),
        ("bank.txt", {}, "bank.txt"),
        ("empty", {}, "empty"),
        ("mixed", {}, "readme.txt"),
        ("nokernel.mat", {}, "nokernel.mat.*no kernel-like variable"),
        ("nan.mat", {}, "nan.mat.*'kernels', kernel 2.*NaN"),
        ("zero.npz", {}, "zero.npz.*kernel 1.*zero"),
        ("nokey.npz", {}, "nokey.npz.*kernels"),
        ("big.npz", {"size": 7}, "big.npz.*kernel 0.*larger"),
        ("broken.mat", {}, "broken.mat"),
    ]


def test_load_errors_name_the_file(tmp_path):
    for name, kwargs, pattern in _error_cases(tmp_path):
        with pytest.raises(InputError, match=pattern):
            load_bank(tmp_path / name, **kwargs)


def test_ambiguous_mat_variables(tmp_path):
    scipy.io.savemat(tmp_path / "two.mat", {"a": np.ones((5, 5)), "b": np.ones((5, 5))})
    with pytest.raises(InputError, match="two.mat.*several"):
        load_bank(tmp_path / "two.mat")


def test_preview_png_size(tmp_path):
    kernels = make_generator("camera-shake", 15).sample(10, seed=0)
    path = tmp_path / "grid.png"
    save_preview(kernels, path, ncol=4)
    with Image.open(path) as img:
        scale, gap = 128 // 15, 2
        assert img.mode == "L"
        assert img.size == (4 * 15 * scale + 5 * gap, 3 * 15 * scale + 4 * gap)
        cells = np.asarray(img)
    assert cells.max() == 255  # each kernel scaled to its own maximum
