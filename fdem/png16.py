"""16-bit PNG codec for what Pillow cannot do: decoding 16-bit colour PNGs (Pillow keeps only the
high byte of each sample) and writing 16-bit gray+alpha, RGB and RGBA PNGs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_SAMPLES = {2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (RGB, gray+alpha, RGBA)
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # samples per pixel -> PNG colour type


def is_png16_colour(path: Path) -> bool:
    """Whether a PNG stores 16-bit colour samples (IHDR bit depth 16, colour type 2, 4 or 6)."""
    with open(path, "rb") as f:
        head = f.read(29)
    return len(head) == 29 and head[24] == 16 and head[25] in COLOUR_SAMPLES


def decode_png16(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 16-bit colour PNG to an (H, W, S) big-endian uint16 array."""
    width, height, _, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if interlace:
        raise ValueError("interlaced 16-bit colour PNGs are not supported; save it without interlacing")
    chunks, pos = [], len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    samples = COLOUR_SAMPLES[colour]
    bpp = 2 * samples
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), np.uint8)
    if raw.size != height * (stride + 1):
        raise ValueError(f"PNG image data holds {raw.size} bytes, expected {height * (stride + 1)}")
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height + 1, stride), np.uint8)  # row 0: the zero row above the image
    for y in range(height):
        out[y + 1] = _unfilter(rows[y, 0], rows[y, 1:], out[y], bpp)
    return out[1:].view(">u2").reshape(height, width, samples)


def _unfilter(kind: int, line: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one PNG row filter (None, Sub, Up, Average, Paeth) given the decoded row above."""
    if kind == 0:
        return line
    if kind == 1:
        return np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
    if kind == 2:
        return line + up
    if kind in (3, 4):
        return _unfilter_sequential(kind == 4, line, up, bpp)
    raise ValueError(f"bad PNG filter type {kind}")


def _unfilter_sequential(paeth: bool, line: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    """Average or Paeth: each byte depends on the decoded byte to its left, so loop (pure Python)."""
    cur = bytearray(bpp + line.size)  # bpp zero bytes left of the row
    above = bytes(bpp) + up.tobytes()
    for i, byte in enumerate(line.tobytes()):
        a, b, c = cur[i], above[i + bpp], above[i]
        if paeth:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        else:
            pred = (a + b) >> 1
        cur[i + bpp] = (byte + pred) & 0xFF
    return np.frombuffer(bytes(cur[bpp:]), np.uint8)


def encode_png16(array: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, S) uint16 array (S = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as a
    16-bit PNG (rows Sub-filtered)."""
    height, width = array.shape[:2]
    samples = 1 if array.ndim == 2 else array.shape[2]
    bpp = 2 * samples
    rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, width * bpp)
    filtered = rows.copy()
    filtered[:, bpp:] -= rows[:, :-bpp]
    data = np.hstack([np.ones((height, 1), np.uint8), filtered]).tobytes()  # 1 = Sub filter
    header = struct.pack(">IIBBBBB", width, height, 16, COLOUR_TYPES[samples], 0, 0, 0)
    return SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(data)) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC of type and body."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
