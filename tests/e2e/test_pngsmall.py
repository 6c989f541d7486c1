"""The README screenshots' shrinker (tests/e2e/pngsmall.py) keeps the picture: decode, palette, decode again."""

from __future__ import annotations

import struct
import zlib

from .pngsmall import SIGNATURE, palette_png, read_rgb


def rgb_png(width: int, height: int, pixel, *, alpha: bool = False, filters=(0, 1, 2, 3, 4)) -> bytes:
    bpp = 4 if alpha else 3
    rows = [bytes(c for x in range(width) for c in pixel(x, y)[:bpp]) for y in range(height)]
    # Encode each row with one of the PNG filters, so the decoder's every filter is exercised.
    raw, previous = bytearray(), bytes(width * bpp)
    for y, row in enumerate(rows):
        kind = filters[y % len(filters)]
        out = bytearray()
        for x, value in enumerate(row):
            left = row[x - bpp] if x >= bpp else 0
            up = previous[x]
            corner = previous[x - bpp] if x >= bpp else 0
            predicted = [0, left, up, (left + up) >> 1, _paeth(left, up, corner)][kind]
            out.append((value - predicted) & 0xFF)
        raw += bytes([kind]) + out
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def palette_pixels(data: bytes) -> list[tuple[int, int, int]]:
    """The pixels of a palette PNG written by palette_png (filter 0 rows)."""
    chunks, pos = {}, len(SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks[data[pos + 4 : pos + 8]] = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    width = struct.unpack(">I", chunks[b"IHDR"][:4])[0]
    palette = [tuple(chunks[b"PLTE"][i : i + 3]) for i in range(0, len(chunks[b"PLTE"]), 3)]
    raw = zlib.decompress(chunks[b"IDAT"])
    return [
        palette[i] for y in range(len(raw) // (width + 1)) for i in raw[y * (width + 1) + 1 : (y + 1) * (width + 1)]
    ]


def test_few_colours_survive_exactly_through_every_filter_and_alpha():
    def pixel(x, y):
        return ((x * 40) % 256, (y * 60) % 256, 200 if (x + y) % 2 else 10, 255)

    for alpha in (False, True):
        width, height, rows = read_rgb(rgb_png(7, 5, pixel, alpha=alpha))
        assert (width, height) == (7, 5)
        assert [rows[y][x * 3 : x * 3 + 3] for y in range(5) for x in range(7)] == [
            bytes(pixel(x, y)[:3]) for y in range(5) for x in range(7)
        ]
        assert palette_pixels(palette_png(width, height, rows)) == [pixel(x, y)[:3] for y in range(5) for x in range(7)]


def test_rare_colours_map_to_the_nearest_frequent_one():
    """A page is mostly a few colours; the rare ones (anti-aliased edges) take the nearest of them."""

    def pixel(x, y):
        if x == 0:
            return (235, 235, 240) if y % 2 else (40, 30, 30)  # rare shades near the two frequent colours
        return (250, 250, 250) if x < 10 else (20, 20, 20)

    width, height, rows = read_rgb(rgb_png(16, 8, pixel))
    small = palette_pixels(palette_png(width, height, rows, colours=2))
    assert set(small) == {(250, 250, 250), (20, 20, 20)}
    assert [small[y * 16] for y in range(8)] == [(20, 20, 20), (250, 250, 250)] * 4
