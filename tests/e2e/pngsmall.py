"""Make a browser screenshot small enough to commit: a 256-colour palette PNG, in pure Python.

Chromium writes 24/32-bit PNGs with fast compression. UI screenshots are mostly flat colours, so 256 of them
(the most frequent, and a few rarer ones far from those) with each other colour mapped to its nearest one
look the same at a third of the size.
Used for the README's screenshots only (`UPDATE_SCREENSHOTS=1`); the test artifacts stay as Chromium wrote them.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes):
    pos = len(SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    header, idat = b"", bytearray()
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError("only 8-bit RGB/RGBA, non-interlaced PNGs")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - bpp] if x >= bpp else 0
            up = previous[x]
            corner = previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                line[x] = (line[x] + _paeth(left, up, corner)) & 0xFF
        previous = line
        rows.append(bytes(line) if bpp == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
    return width, height, rows


def _distance(a: bytes | tuple[int, ...], b: bytes | tuple[int, ...]) -> int:
    return (a[0] - b[0]) ** 2 * 3 + (a[1] - b[1]) ** 2 * 4 + (a[2] - b[2]) ** 2 * 2


def palette_png(width: int, height: int, rows: list[bytes], colours: int = 256, distinct: int = 32) -> bytes:
    """A palette PNG: the most frequent colours, plus `distinct` picked for being both common and far from
    those (a small coloured dot must not turn grey), every other colour mapped to its nearest."""
    pixels = Counter()
    for row in rows:
        pixels.update(row[i : i + 3] for i in range(0, len(row), 3))
    frequent = max(1, colours - distinct) if len(pixels) > colours else colours
    palette = [colour for colour, _ in pixels.most_common(frequent)]
    rest = {c: n for c, n in pixels.items() if c not in set(palette)}
    nearest = {c: min(_distance(c, p) for p in palette) for c in rest}
    while rest and len(palette) < colours:
        pick = max(rest, key=lambda c: rest[c] * nearest[c])
        palette.append(pick)
        del rest[pick], nearest[pick]
        for c in rest:
            nearest[c] = min(nearest[c], _distance(c, pick))
    index = {colour: i for i, colour in enumerate(palette)}
    for colour in pixels:
        if colour not in index:
            index[colour] = min(range(len(palette)), key=lambda i: _distance(palette[i], colour))
    lines = bytearray()
    for row in rows:
        lines.append(0)
        lines += bytes(index[row[i : i + 3]] for i in range(0, len(row), 3))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (
        SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", b"".join(palette))
        + chunk(b"IDAT", zlib.compress(bytes(lines), 9))
        + chunk(b"IEND", b"")
    )


def shrink(path: Path) -> None:
    """Rewrite the PNG at `path` as a palette PNG when that is smaller."""
    data = path.read_bytes()
    small = palette_png(*read_rgb(data))
    if len(small) < len(data):
        path.write_bytes(small)
