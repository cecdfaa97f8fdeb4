"""A tiny PNG plot for when matplotlib is not installed: two panels (failed %, then 180 p99 ms,
both on a log-like scale) against the asked rate, one coloured line per target, grid lines at
powers of ten. No text: bench/RESULTS.md says what the colours are. Pure Python (zlib)."""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

W, H = 640, 480
PAD = 30


def _write(path: Path, pixels: list[bytearray]) -> None:
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack("!I", len(data)) + kind + data
                + struct.pack("!I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack("!IIBBBBB", W, H, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def plot(data: dict[str, list[tuple[float, float, float]]], colors: dict, path: Path) -> None:
    px = [bytearray(b"\xff" * (W * 3)) for _ in range(H)]

    def dot(x: int, y: int, c, r: int = 1) -> None:
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if 0 <= x + dx < W and 0 <= y + dy < H:
                    px[y + dy][3 * (x + dx): 3 * (x + dx) + 3] = bytes(c)

    def line(x0, y0, x1, y1, c) -> None:
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(n + 1):
            dot(round(x0 + (x1 - x0) * i / n), round(y0 + (y1 - y0) * i / n), c, 0)

    rates = [p[0] for pts in data.values() for p in pts] or [1]
    xmax = max(rates) * 1.05
    panels = [(PAD, H // 2 - PAD // 2, 1), (H // 2 + PAD // 2, H - PAD, 2)]
    for top, bottom, idx in panels:
        values = [p[idx] for pts in data.values() for p in pts if not math.isnan(p[idx])]
        ymax = math.log10(max(values + [1.0]) + 1) * 1.1 or 1.0
        grey = (200, 200, 200)
        line(PAD, bottom, W - PAD, bottom, (0, 0, 0))
        line(PAD, top, PAD, bottom, (0, 0, 0))
        for decade in range(0, int(ymax) + 1):
            y = bottom - round((bottom - top) * decade / ymax)
            line(PAD + 1, y, W - PAD, y, grey)
        step = 10 ** int(math.log10(xmax)) if xmax >= 10 else 1
        for xv in range(0, int(xmax) + 1, step):
            x = PAD + round((W - 2 * PAD) * xv / xmax)
            line(x, bottom - 3, x, bottom + 3, (0, 0, 0))

        def at(rate: float, value: float) -> tuple[int, int]:
            return (PAD + round((W - 2 * PAD) * rate / xmax),
                    bottom - round((bottom - top) * math.log10(value + 1) / ymax))

        for key, pts in data.items():
            c = colors.get(key, (0, 0, 0))
            prev = None
            for p in pts:
                if math.isnan(p[idx]):
                    continue
                here = at(p[0], p[idx])
                dot(*here, c, 2)
                if prev:
                    line(*prev, *here, c)
                prev = here
    _write(path, px)
