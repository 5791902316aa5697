"""Make the small sample files in samples/ (deterministic; run from the repo root).

    python scripts/make_samples.py [--out samples]

Writes a photo-like RGB PNG, an RGBA PNG with soft transparent edges, 16-bit
grayscale and RGB PNGs, a short music-like WAV, a stereo hall impulse
response, a kernel as .npy and .txt, and a remix matrix.
"""

from __future__ import annotations

import argparse
import os

import imagecodecs
import numpy as np
import soundfile as sf


def photo(h: int = 360, w: int = 540, seed: int = 1) -> np.ndarray:
    """A landscape-like picture: sky gradient, sun, hills, textured ground."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    sky = np.stack([0.35 + 0.3 * y / h, 0.55 + 0.25 * y / h, 0.95 - 0.1 * y / h], -1)
    img = sky.copy()
    sun = np.exp(-(((x - 0.75 * w) ** 2 + (y - 0.25 * h) ** 2) / (2 * (0.06 * w) ** 2)))
    img += sun[..., None] * np.array([0.6, 0.45, 0.1])
    for i, (base, amp, col) in enumerate([(0.55, 0.08, (0.30, 0.45, 0.25)),
                                          (0.68, 0.06, (0.20, 0.38, 0.15))]):
        ridge = base * h + amp * h * np.sin(x / w * (3 + 2 * i) * np.pi + i)
        mask = 1 / (1 + np.exp(np.clip(-(y - ridge) / 1.5, -60, 60)))
        img = img * (1 - mask[..., None]) + mask[..., None] * np.array(col)
    texture = rng.normal(0, 1, (h // 4 + 1, w // 4 + 1))
    texture = np.kron(texture, np.ones((4, 4)))[:h, :w]
    ground = (y > 0.7 * h)[..., None]
    img += ground * 0.05 * texture[..., None]
    img += rng.normal(0, 0.01, img.shape)  # sensor noise
    return np.clip(img, 0, 1)


def logo(size: int = 256) -> np.ndarray:
    """A coloured ring on a transparent background, alpha fading softly at the edges."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(x - size / 2, y - size / 2) / (size / 2)
    alpha = np.clip((0.85 - r) / 0.15, 0, 1) * np.clip((r - 0.25) / 0.1, 0, 1)
    angle = np.arctan2(y - size / 2, x - size / 2)
    rgb = np.stack([0.5 + 0.5 * np.cos(angle), 0.5 + 0.5 * np.cos(angle - 2.1),
                    0.5 + 0.5 * np.cos(angle + 2.1)], -1)
    return np.concatenate([rgb, alpha[..., None]], -1)


def music(rate: int = 22050, seconds: float = 2.0) -> np.ndarray:
    """Four plucked notes with harmonics, slightly different in each ear."""
    t = np.arange(int(rate * seconds)) / rate
    out = np.zeros((t.size, 2))
    for i, f in enumerate([220.0, 277.2, 329.6, 440.0]):
        start = i * seconds / 4
        tt = np.clip(t - start, 0, None)
        env = (t >= start) * np.exp(-tt * 5)
        note = sum(np.sin(2 * np.pi * f * h * tt) / h for h in range(1, 6)) * env
        out[:, 0] += note * (0.8 if i % 2 else 0.5)
        out[:, 1] += note * (0.5 if i % 2 else 0.8)
    return 0.3 * out / np.abs(out).max()


def hall(rate: int = 22050, seconds: float = 0.6, seed: int = 2) -> np.ndarray:
    """A stereo room response: direct sound, early reflections, decaying diffuse tail."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    ir = rng.normal(0, 1, (n, 2)) * np.exp(-t * 9)[:, None] * 0.04
    ir[0] = 1.0
    for d, g in [(0.011, 0.5), (0.017, 0.35), (0.023, 0.3)]:
        ir[int(d * rate), 0] += g
        ir[int((d + 0.002) * rate), 1] += g
    return ir * 0.5  # direct sound at -6 dB, a diffuse tail of ~ the same energy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="samples")
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)

    def png(name, arr, bits=8):
        top = 65535 if bits == 16 else 255
        q = np.rint(arr * top).astype(np.uint16 if bits == 16 else np.uint8)
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(imagecodecs.png_encode(q.squeeze(), level=9))

    png("photo.png", photo())
    png("logo.png", logo())
    y, x = np.mgrid[0:192, 0:256]
    png("gray16.png", (x / 255.0 * 0.7 + y / 191.0 * 0.3)[..., None], bits=16)
    png("photo16.png", photo(192, 288, seed=3), bits=16)
    sf.write(os.path.join(out, "music.wav"), music(), 22050, subtype="PCM_16")
    sf.write(os.path.join(out, "hall.wav"), hall(), 22050, subtype="FLOAT")
    np.save(os.path.join(out, "edge5.npy"), np.array(
        [[0, 0, -1, 0, 0], [0, -1, -2, -1, 0], [-1, -2, 17, -2, -1], [0, -1, -2, -1, 0],
         [0, 0, -1, 0, 0]], dtype=np.float64) / 1.0)
    with open(os.path.join(out, "sharpen.txt"), "w") as fh:
        fh.write("# 3x3 sharpen: identity minus the 4-neighbour Laplacian (sum 1)\n"
                 "0, -1, 0\n-1, 5, -1\n0, -1, 0\n")
    with open(os.path.join(out, "warm.txt"), "w") as fh:
        fh.write("# remix matrix (C_out x C_in): warm the colours\n"
                 "1.08 0.02 0.00\n0.02 1.00 0.00\n0.00 0.02 0.85\n")


if __name__ == "__main__":
    main()
