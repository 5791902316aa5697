"""PNG encoding: pwfilter's media layer vs Pillow's default save, same 12 MP RGB image.

    python benchmarks/png_speed.py [--repeat 3]

Prints the median time and the file size of each, and the ratios
(acceptance: ours at least 4x faster, at most 5 % larger).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from make_samples import photo  # noqa: E402

from pwfilter.media import Media, SaveOptions, write_media  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        buf = io.BytesIO()
        t0 = time.perf_counter()
        fn(buf)
        times.append(time.perf_counter() - t0)
        size = buf.tell()
    return statistics.median(times), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rgb = photo(3000, 4000, seed=7).astype(np.float32)
    u8 = np.rint(rgb * 255).astype(np.uint8)
    media = Media(u8.astype(np.float32) / np.float32(255), "image", "PNG", bits=8)
    ours, ours_size = timed(lambda b: write_media(media, b, "PNG", SaveOptions()), args.repeat)
    pil_img = Image.fromarray(u8)
    pil, pil_size = timed(lambda b: pil_img.save(b, format="PNG"), args.repeat)
    print(f"{'encoder':40}{'median s':>10}{'MB':>10}")
    print(f"{'pwfilter media layer (quantize+encode)':40}{ours:>10.3f}{ours_size / 1e6:>10.2f}")
    print(f"{'Pillow default save':40}{pil:>10.3f}{pil_size / 1e6:>10.2f}")
    print(f"speed-up {pil / ours:.2f}x, size ratio {ours_size / pil_size:.3f}")


if __name__ == "__main__":
    main()
