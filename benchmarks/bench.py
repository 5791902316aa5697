"""pwfilter's benchmark command: our methods against the reference libraries and tools.

    python benchmarks/bench.py                 # every section
    python benchmarks/bench.py engine blur     # some sections
    python benchmarks/bench.py --quick engine  # smaller sizes, fewer repeats

Sections
--------
engine  2000x1500 RGB 8-bit, k = 3..127 and Gaussian blurs: each forced
        method and auto (and scipy.signal.fftconvolve, cv2.filter2D for
        reference), in process; then audio lengths x kernel lengths likewise;
        auto's worst ratio to the fastest forced method.
blur    Gaussian blur of a 4000x3000 RGB float32 array at sigma 2, 20 and 50.
remix   RGB -> gray of a 12 MP float32 array vs numpy.copy; whole-command
        8 -> 2 channel remix of a 10-minute float WAV vs SoX.
stream  whole-command 10-minute stereo float WAV convolved with a 3 s IR vs
        ffmpeg afir, and peak memory of a 60-minute PCM_16 job.
images  whole commands on a 12 MP photo-like PNG (and its 3 MP crop, 200 small
        PNGs) against libvips and ImageMagick, paired runs, with peak memory
        and the import time of an image command.
big     a 20000x20000 RGB tiled TIFF (made here, 1.2 GB) blurred in chunks against
        vips gaussblur, with the peak memory of both; the same on a LocalCluster.
png     the PNG writer alone against libpng's fastest settings (imagecodecs:
        level 1, RLE, Average filter, pwfilter's previous default) and
        Pillow's default, on the 12 MP photo and on its blur.

Times are medians of repeated runs in the same process and the same run, so
ratios are comparable; absolute times drift on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import pwfilter
from pwfilter import engine, ops


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up: imports, FFT plans, page faults
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, repeat: int, best: bool = False, spend: float = 0.3) -> dict:
    """Median (or best) time of each function, the functions taking turns in an order
    that rotates every round (fair under drifting load and to memory effects of the
    previous run); fast functions get more rounds, until ``spend`` seconds."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict = {name: [] for name in fns}
    names = list(fns)
    rounds = 0
    while rounds < repeat or (sum(map(sum, times.values())) < spend and rounds < 50):
        for name in names[rounds % len(names):] + names[:rounds % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    pick = min if best else statistics.median
    return {name: pick(ts) for name, ts in times.items()}


def fmt(t: float | None) -> str:
    return "       -" if t is None else f"{t:8.3f}"


def try_cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def section_engine(quick: bool, repeat: int) -> None:
    from scipy.signal import fftconvolve, oaconvolve

    from pwfilter import costs

    cv2 = try_cv2()
    rng = np.random.default_rng(0)
    h, w = (750, 1000) if quick else (1500, 2000)
    x = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    xf = x * np.float32(1 / 255)
    print(f"\n## engine: {w}x{h} RGB 8-bit image (as the commands decode it), random k x k "
          "kernel, mode same, reflect boundary (seconds, best of interleaved runs: a shared "
          "machine only ever slows a run down)")
    print(f"cost model: {costs.current().source}")
    if cv2 is None:
        print("(OpenCV not installed: cv2.filter2D column skipped)")
    print(f"{'k':>4} {'direct':>8} {'fft':>8} {'auto':>8} {'chosen':>9} {'fftconv':>8} "
          f"{'filter2D':>8} {'auto/best':>9} {'choice/best':>11}")
    worst = worst_choice = 0.0
    for k in (3, 5, 7, 9, 11, 15, 21, 31, 45, 63, 95, 127):
        kern = rng.random((k, k)).astype(np.float32)
        kern /= kern.sum()
        fns = {}
        for m in ("direct", "fft"):
            if engine.plan(x, kern, method=m).costs.get(m, 0) <= 4.0:  # else: minutes
                fns[m] = lambda m=m: engine.convolve(x, kern, boundary="reflect", method=m,
                                                     scale=1 / 255)
        fns["auto"] = lambda: engine.convolve(x, kern, boundary="reflect", scale=1 / 255)
        fns["fftconvolve"] = lambda: fftconvolve(xf, kern[:, :, None], mode="same", axes=(0, 1))
        if cv2 is not None:
            flipped = kern[::-1, ::-1].copy()
            fns["filter2D"] = lambda: cv2.filter2D(xf, -1, flipped, borderType=cv2.BORDER_REFLECT)
        times = interleaved(fns, repeat, best=True)
        chosen = engine.plan(x, kern).method
        forced = {m: times.get(m) for m in ("direct", "fft")}
        best = min(t for t in forced.values() if t is not None)
        choice = forced.get(chosen) or times["auto"]
        worst, worst_choice = max(worst, times["auto"] / best), max(worst_choice, choice / best)
        print(f"{k:>4} {fmt(forced['direct'])} {fmt(forced['fft'])} {fmt(times['auto'])} "
              f"{chosen:>9} {fmt(times['fftconvolve'])} {fmt(times.get('filter2D'))} "
              f"{times['auto'] / best:9.2f} {choice / best:11.2f}")

    print("\n## engine: Gaussian blur of the same image, sigma 0.5-50 (seconds, best)")
    print(f"{'sigma':>6} {'separable':>9} {'fft':>8} {'auto':>8} {'chosen':>9} {'auto/best':>9} "
          f"{'choice/best':>11}")
    for sigma in (0.5, 1, 2, 3, 5, 8, 12, 20, 50):
        kern = ops.blur_kernel("gaussian", 2, sigma=sigma)
        fns = {m: (lambda m=m: engine.convolve(x, kern, boundary="reflect", method=m,
                                                scale=1 / 255)) for m in ("separable", "fft")}
        fns["auto"] = lambda: engine.convolve(x, kern, boundary="reflect", scale=1 / 255)
        times = interleaved(fns, repeat, best=True)
        best = min(times["separable"], times["fft"])
        chosen = engine.plan(x, kern).method
        choice = times.get(chosen, times["auto"])
        worst, worst_choice = max(worst, times["auto"] / best), max(worst_choice, choice / best)
        print(f"{sigma:>6} {fmt(times['separable'])} {fmt(times['fft'])} {fmt(times['auto'])} "
              f"{chosen:>9} {times['auto'] / best:9.2f} {choice / best:11.2f}")

    print("\n## engine: stereo float32 audio, mode full (seconds, best)")
    print(f"{'seconds':>8} {'taps':>7} {'direct':>8} {'fft':>8} {'oa':>8} {'auto':>8} "
          f"{'chosen':>7} {'fftconv':>8} {'oaconv':>8} {'auto/best':>9} {'choice/best':>11}")
    for secs in ((10, 60) if quick else (1, 10, 60, 600)):
        a = rng.standard_normal((48_000 * secs, 2), dtype=np.float32) * 0.1
        for taps in (31, 255, 1001, 4801, 48_000, 144_000):
            if taps > 48_000 * secs:
                continue
            ir = (rng.standard_normal(taps) * np.exp(-np.arange(taps) / (taps / 5))).astype(
                np.float32)
            fns = {}
            for m in ("direct", "fft", "oa"):
                if engine.plan(a, ir, mode="full", method=m).costs.get(m, 0) <= 4.0:
                    fns[m] = lambda m=m: engine.convolve(a, ir, mode="full", method=m)
            fns["auto"] = lambda: engine.convolve(a, ir, mode="full")
            if secs <= 60:
                fns["fftconvolve"] = lambda: fftconvolve(a, ir[:, None], mode="full", axes=0)
                fns["oaconvolve"] = lambda: oaconvolve(a, ir[:, None], mode="full", axes=0)
            times = interleaved(fns, repeat, best=True)
            chosen = engine.plan(a, ir, mode="full").method
            forced = {m: times.get(m) for m in ("direct", "fft", "oa")}
            best = min(t for t in forced.values() if t is not None)
            choice = forced.get(chosen) or times["auto"]
            worst, worst_choice = max(worst, times["auto"] / best), max(worst_choice, choice / best)
            print(f"{secs:>8} {taps:>7} {fmt(forced['direct'])} {fmt(forced['fft'])} "
                  f"{fmt(forced['oa'])} {fmt(times['auto'])} {chosen:>7} "
                  f"{fmt(times.get('fftconvolve'))} {fmt(times.get('oaconvolve'))} "
                  f"{times['auto'] / best:9.2f} {choice / best:11.2f}")
    print(f"\nworst over every row: auto/best {worst:.2f}, choice/best {worst_choice:.2f} "
          "(target <= 1.15; choice/best compares the forced run of auto's choice with the "
          "fastest forced run, free of the noise of timing the same work twice)")


def section_blur(quick: bool, repeat: int) -> None:
    from scipy import ndimage

    cv2 = try_cv2()
    rng = np.random.default_rng(1)
    h, w = (1500, 2000) if quick else (3000, 4000)
    x = rng.random((h, w, 3), dtype=np.float32)
    print(f"\n## blur: Gaussian, {w}x{h} RGB float32, reflect boundary (seconds, median)")
    print(f"{'sigma':>6} {'pwfilter':>9} {'method':>10} {'ndimage':>8} {'cv2':>8} {'/sigma2':>8}")
    kernels = {sigma: ops.blur_kernel("gaussian", 2, sigma=sigma) for sigma in (2, 20, 50)}
    fns = {sigma: (lambda k=k: pwfilter.convolve(x, k))
           for sigma, k in kernels.items()}
    times = interleaved(fns, repeat)
    for sigma, k in kernels.items():
        method = engine.plan(x, k.astype(np.float32)).method
        nd = None
        if sigma <= 20 and not quick:
            nd = median_time(lambda: ndimage.gaussian_filter(x, sigma, axes=(0, 1)), 1)
        cvt = None
        if cv2 is not None:
            cvt = median_time(lambda: cv2.GaussianBlur(x, (0, 0), sigma,
                                                       borderType=cv2.BORDER_REFLECT), repeat)
        print(f"{sigma:>6} {fmt(times[sigma])} {method:>10} {fmt(nd)} {fmt(cvt)} "
              f"{times[sigma] / times[2]:8.2f}")


def run_cmds(cmds: dict[str, tuple[list[str], str]], repeat: int) -> dict[str, list[float]]:
    """Wall times of whole commands, taking turns round by round (fair under drifting load).

    ``cmds`` maps a name to (argv, output file). Each output is removed before
    each run, so every command writes a new file, as in a script; a first,
    untimed round warms the page cache.
    """
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for rnd in range(repeat + 1):
        for name, (args, out) in cmds.items():
            if os.path.exists(out):
                os.unlink(out)
            t0 = time.perf_counter()
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if rnd:
                times[name].append(time.perf_counter() - t0)
    return times


def compare(times: dict[str, list[float]], ref_name: str, label: str) -> str:
    """pwfilter's and the reference tool's medians, their ratio and the range of the
    round-by-round ratios; a note instead where the tool is not installed."""
    ours = times["pwfilter"]
    if ref_name not in times:
        return f"pwfilter {statistics.median(ours):.3f} s   ({label} not installed: skipped)"
    ref = times[ref_name]
    per_round = sorted(a / b for a, b in zip(ours, ref))
    m_ours, m_ref = statistics.median(ours), statistics.median(ref)
    return (f"pwfilter {m_ours:.3f} s   {ref_name} {m_ref:.3f} s   pwfilter/{ref_name} "
            f"{m_ours / m_ref:.2f} (rounds {per_round[0]:.2f}-{per_round[-1]:.2f}, "
            f"{len(per_round)} rounds)")


def whole_repeat(quick: bool, repeat: int) -> int:
    """Rounds for whole-command comparisons: process start-up makes them noisier."""
    return repeat if quick else max(repeat, 9)


def peak_rss(args: list[str]) -> tuple[float, float] | None:
    if not os.path.exists("/usr/bin/time"):
        return None
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v", *args], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=True)
    secs = time.perf_counter() - t0
    for line in r.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split()[-1]) / 1024, secs
    return None


def section_remix(quick: bool, repeat: int) -> None:
    import soundfile as sf

    from pwfilter.ops import Remix, remix_array

    rng = np.random.default_rng(2)
    x = rng.random((3000, 4000, 3), dtype=np.float32)
    gray = Remix(np.array([[0.299, 0.587, 0.114]]), None, False)
    t_remix = median_time(lambda: remix_array(x, gray), repeat * 3)
    t_copy = median_time(lambda: np.copy(x), repeat * 3)
    print("\n## remix: RGB -> gray, 12 MP float32, in process (seconds, median)")
    print(f"remix {t_remix:.4f}  numpy.copy {t_copy:.4f}  ratio {t_remix / t_copy:.2f}")

    secs = 60 if quick else 600
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in8.wav")
        a = (rng.standard_normal((48_000 * secs, 8)) * 0.05).astype(np.float32)
        sf.write(src, a, 48_000, subtype="FLOAT")
        del a
        ours = os.path.join(tmp, "ours.wav")
        matrix = "0.5 0 0.35 0.35 0.3 0 0.3 0; 0 0.5 0.35 0.35 0 0.3 0 0.3"
        cmds = {"pwfilter": ([sys.executable, "-m", "pwfilter", "remix", src, "--matrix", matrix,
                              "-o", ours, "-q"], ours)}
        sox = shutil.which("sox")
        if sox:
            out = os.path.join(tmp, "sox.wav")
            cmds["sox"] = ([sox, src, out, "remix", "1v0.5,3v0.35,4v0.35,5v0.3,7v0.3",
                            "2v0.5,3v0.35,4v0.35,6v0.3,8v0.3"], out)
        times = run_cmds(cmds, whole_repeat(quick, repeat))
        print(f"\n## remix: {secs // 60}-minute 8-channel float WAV -> stereo, whole command "
              "(seconds, median; commands take turns, each writes a new file)")
        print(compare(times, "sox", "SoX"))


def section_stream(quick: bool, repeat: int) -> None:
    import soundfile as sf

    rng = np.random.default_rng(3)
    secs = 60 if quick else 600
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.wav")
        ir = os.path.join(tmp, "ir.wav")
        sf.write(src, (rng.standard_normal((48_000 * secs, 2)) * 0.05).astype(np.float32),
                 48_000, subtype="FLOAT")
        n = 48_000 * 3
        irs = rng.standard_normal((n, 2)) * np.exp(-np.arange(n) / 20_000)[:, None] * 0.01
        sf.write(ir, irs.astype(np.float32), 48_000, subtype="FLOAT")
        ours = os.path.join(tmp, "ours.wav")
        cmds = {"pwfilter": ([sys.executable, "-m", "pwfilter", "convolve", src, ir, "-o", ours,
                              "-q"], ours)}
        ff = shutil.which("ffmpeg")
        if ff:
            out = os.path.join(tmp, "ff.wav")
            cmds["ffmpeg"] = ([ff, "-loglevel", "error", "-i", src, "-i", ir, "-filter_complex",
                               "[0:a][1:a]afir=gtype=none", "-c:a", "pcm_f32le", out], out)
        times = run_cmds(cmds, whole_repeat(quick, repeat))
        print(f"\n## stream: {secs // 60}-minute stereo float WAV (x) 3 s stereo IR, "
              "whole command (seconds, median; commands take turns, each writes a new file; "
              "pwfilter keeps the full tail and the exact gain, ffmpeg afir cuts the tail)")
        print(compare(times, "ffmpeg", "ffmpeg"))
        long_secs = 600 if quick else 3600
        src16 = os.path.join(tmp, "long16.wav")
        with sf.SoundFile(src16, "w", 48_000, 2, subtype="PCM_16") as f:
            block = (rng.standard_normal((48_000 * 60, 2)) * 0.05).astype(np.float32)
            for _ in range(long_secs // 60):
                f.write(block)
        r = peak_rss([sys.executable, "-m", "pwfilter", "convolve", src16, ir, "-o",
                      os.path.join(tmp, "long.out.wav"), "--overwrite", "-q"])
        if r:
            print(f"{long_secs // 60}-minute stereo PCM_16 (x) 3 s IR: peak RSS {r[0]:.0f} MB, "
                  f"{r[1]:.1f} s")
        else:
            print("(/usr/bin/time not installed: peak memory skipped)")


def photo_png(folder: str, name: str, h: int, w: int, seed: int) -> str:
    """A natural-looking RGB PNG made here (scripts/make_samples.py's photo)."""
    import imagecodecs

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    from make_samples import photo

    path = os.path.join(folder, name)
    img = np.rint(photo(h, w, seed=seed) * 255).astype(np.uint8)
    with open(path, "wb") as fh:
        fh.write(imagecodecs.png_encode(img))
    return path


def vips_matrix(path: str, k: np.ndarray) -> str:
    """A kernel as a libvips matrix file (header: width height scale offset)."""
    with open(path, "w") as fh:
        fh.write(f"{k.shape[1]} {k.shape[0]} 1 0\n")
        for row in k:
            fh.write(" ".join(f"{v:.10g}" for v in row) + "\n")
    return path


def paired(label: str, ours: list[str], ours_out: str, ref_name: str, ref: list[str] | None,
           ref_out: str, repeat: int, target: float | None = None) -> None:
    """One row: pwfilter and one anchor command taking turns; medians, ratio, target."""
    cmds = {"pwfilter": (ours, ours_out)}
    if ref is not None:
        cmds[ref_name] = (ref, ref_out)
    times = run_cmds(cmds, repeat)
    line = compare(times, ref_name, ref_name)
    if ref is not None and target is not None:
        ratio = statistics.median(times["pwfilter"]) / statistics.median(times[ref_name])
        line += f"   target <= {target:.2f}: {'met' if ratio <= target else 'MISSED'}"
    print(f"{label:34} {line}")


def section_images(quick: bool, repeat: int) -> None:
    pw = [sys.executable, "-m", "pwfilter"]
    vips, mogrify = shutil.which("vips"), shutil.which("mogrify")
    rounds = 3 if quick else 5
    rng = np.random.default_rng(4)
    with tempfile.TemporaryDirectory() as tmp:
        h, w = (1500, 2000) if quick else (3000, 4000)
        big = photo_png(tmp, "photo12.png", h, w, seed=7)
        crop = os.path.join(tmp, "photo3.png")
        import imagecodecs

        with open(big, "rb") as fh:
            full = imagecodecs.png_decode(fh.read())
        with open(crop, "wb") as fh:
            fh.write(imagecodecs.png_encode(np.ascontiguousarray(full[: h // 2, : w // 2])))
        out, ref_out = os.path.join(tmp, "out.png"), os.path.join(tmp, "ref.png")
        print(f"\n## images: whole commands, {w}x{h} RGB PNG (3 MP crop for convolve), "
              f"{rounds} rounds taking turns, medians (seconds)")
        for tool, name in ((vips, "libvips (vips)"), (mogrify, "ImageMagick (mogrify)")):
            if tool is None:
                print(f"({name} not installed: its rows are skipped)")
        for sigma, target in ((2, 0.5), (20, 0.6)):
            paired(f"blur sigma {sigma}",
                   pw + ["blur", big, "--sigma", str(sigma), "-o", out, "-q"],
                   out, "vips", vips and [vips, "gaussblur", big, ref_out, str(sigma)], ref_out,
                   rounds, target)
        for k, target in ((5, 0.7), (15, 0.4), (31, 0.2), (63, 0.06)):
            kern = rng.random((k, k))
            kern /= kern.sum()
            npy = os.path.join(tmp, f"k{k}.npy")
            np.save(npy, kern)
            mat = vips_matrix(os.path.join(tmp, f"k{k}.mat"), kern)
            paired(f"convolve k {k} (3 MP)", pw + ["convolve", crop, npy, "--correlate", "-o", out,
                                                  "-q"],
                   out, "vips", vips and [vips, "conv", crop, ref_out, mat, "--precision", "float"],
                   ref_out, rounds if k < 63 else max(3, rounds - 2), target)
        gray = os.path.join(tmp, "gray.mat")
        with open(gray, "w") as fh:
            fh.write("3 1\n0.299 0.587 0.114\n")
        paired("remix gray", pw + ["remix", big, "--matrix", "gray", "-o", out, "-q"], out,
               "vips", vips and [vips, "recomb", big, ref_out, gray], ref_out, rounds, 0.7)
        small = os.path.join(tmp, "small")
        os.makedirs(small)
        files = [photo_png(small, f"s{i:03d}.png", 256, 256, seed=100 + i) for i in range(200)]
        ours_dir, ref_dir = os.path.join(tmp, "ours") + os.sep, os.path.join(tmp, "mog")
        os.makedirs(ref_dir)
        times = {"pwfilter": [], "mogrify": []}
        for _ in range(rounds):
            shutil.rmtree(ours_dir, ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run(pw + ["blur", *files, "-o", ours_dir, "-q"], check=True)
            times["pwfilter"].append(time.perf_counter() - t0)
            if mogrify:
                t0 = time.perf_counter()
                subprocess.run([mogrify, "-path", ref_dir, "-blur", "0x2", *files], check=True)
                times["mogrify"].append(time.perf_counter() - t0)
        if not mogrify:
            del times["mogrify"]
        line = compare(times, "mogrify", "ImageMagick mogrify")
        if mogrify:
            ratio = statistics.median(times["pwfilter"]) / statistics.median(times["mogrify"])
            line += f"   target <= 0.10: {'met' if ratio <= 0.10 else 'MISSED'}"
        print(f"{'blur sigma 2, 200 PNGs 256x256':34} {line}")
        ours = peak_rss(pw + ["blur", big, "--sigma", "2", "-o", out, "--overwrite", "-q"])
        theirs = vips and peak_rss([vips, "gaussblur", big, ref_out, "2"])
        if ours:
            float_mb = h * w * 3 * 4 / 2**20
            print(f"{'peak RSS, blur sigma 2':34} pwfilter {ours[0]:.0f} MB"
                  + (f"   vips {theirs[0]:.0f} MB" if theirs else "")
                  + f"   (float32 image {float_mb:.0f} MB; target <= 400 MB: "
                  + ("met)" if ours[0] <= 400 else "MISSED)"))
        else:
            print("(/usr/bin/time not installed: peak memory skipped)")
        r = subprocess.run(pw[:1] + ["-X", "importtime"] + pw[1:] + ["blur", big, "-o", out,
                                                                   "--overwrite", "-q"],
                           capture_output=True, text=True, check=True)
        rows = [line.split("|") for line in r.stderr.splitlines()
                if line.startswith("import time:") and line.split("|")[1].strip().isdigit()]
        imported = [name.strip() for _, _, name in rows]
        # Top-level imports (one space of indentation) add up to the whole import time.
        total = sum(int(cum) for _, cum, name in rows if not name.startswith("  "))
        heavy = [m for m in ("scipy.ndimage", "scipy.signal", "scipy.fft") if m in imported]
        print(f"{'imports of a blur command':34} {total / 1e6:.3f} s"
              f"   scipy.ndimage/signal/fft imported: {', '.join(heavy) if heavy else 'none'}")


def section_png(quick: bool, repeat: int) -> None:
    import io

    import imagecodecs
    from PIL import Image

    from pwfilter import engine, ops, png

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    from make_samples import photo

    h, w = (1500, 2000) if quick else (3000, 4000)
    u8 = np.rint(photo(h, w, seed=7) * 255).astype(np.uint8)
    blurred = engine.convolve(u8, ops.blur_kernel("gaussian", 2, sigma=2), boundary="reflect",
                              scale=1 / 255)
    blurred = np.clip(np.rint(blurred * 255), 0, 255).astype(np.uint8)
    print(f"\n## png: encoding {w}x{h} RGB, 8- and 16-bit (seconds, median of {repeat}; MB)")
    print(f"{'image':8} {'encoder':44} {'s':>7} {'MB':>7} {'speed-up':>9} {'size':>6}")
    for label, img in (("photo", u8), ("blurred", blurred),
                       ("photo16", u8.astype(np.uint16) * 257)):
        def libpng():
            return imagecodecs.png_encode(img, level=1, strategy=3, filter=64)

        def pillow():
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            return buf.getvalue()

        def ours():
            return b"".join(png.encode(img, None, os.cpu_count() or 1))

        fns = {"libpng level 1, RLE, Average (imagecodecs)": libpng,
               "Pillow default": pillow, "pwfilter.png (default)": ours}
        if img.dtype != np.uint8:
            del fns["Pillow default"]  # Pillow writes 16-bit only for grayscale
        times = interleaved(fns, repeat)
        sizes = {name: len(fn()) for name, fn in fns.items()}
        ref = "libpng level 1, RLE, Average (imagecodecs)"
        for name in fns:
            print(f"{label:8} {name:44} {times[name]:7.3f} {sizes[name] / 1e6:7.2f} "
                  f"{times[ref] / times[name]:8.2f}x {sizes[name] / sizes[ref]:6.3f}")


def section_files(quick: bool, repeat: int) -> None:
    """Many files in one call: --jobs 2 against --jobs 1 (taking turns), and the same
    files on a Dask cluster of two single-threaded workers on this machine."""
    rounds = whole_repeat(quick, repeat)
    pw = [sys.executable, "-m", "pwfilter"]
    print(f"\n## files: 40 PNGs of 1000x750 blurred sigma 2 in one call, {rounds} rounds "
          "taking turns, medians (seconds)")
    with tempfile.TemporaryDirectory() as tmp:
        files = [photo_png(tmp, f"f{i:02d}.png", 750, 1000, seed=200 + i) for i in range(40)]
        outs = {j: os.path.join(tmp, f"out{j}") + os.sep for j in (1, 2)}
        times: dict[str, list[float]] = {"pwfilter": [], "jobs1": []}  # pwfilter: --jobs 2
        for _ in range(rounds):
            for j, key in ((1, "jobs1"), (2, "pwfilter")):
                shutil.rmtree(outs[j], ignore_errors=True)
                t0 = time.perf_counter()
                subprocess.run(pw + ["blur", *files, "-o", outs[j], "--jobs", str(j), "-q"],
                               check=True)
                times[key].append(time.perf_counter() - t0)
        line = compare(times, "jobs1", "--jobs 1")
        ratio = statistics.median(times["pwfilter"]) / statistics.median(times["jobs1"])
        print(f"{'--jobs 2 vs --jobs 1':34} {line}   target <= 0.60: "
              f"{'met' if ratio <= 0.6 else 'MISSED'}")
        same = all(open(os.path.join(outs[1], n), "rb").read()
                   == open(os.path.join(outs[2], n), "rb").read() for n in os.listdir(outs[1]))
        print(f"{'outputs byte-identical':34} {same}")
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            print("(Dask distributed not installed: the --scheduler row is skipped)")
            return
        sched = os.path.join(tmp, "scheduler.json")
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                   "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", sched], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)]
        try:
            while not os.path.exists(sched):
                time.sleep(0.1)
            import json

            address = json.load(open(sched))["address"]
            procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                        "--scheduler-file", sched, "--nthreads", "1",
                                        "--no-dashboard"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) for _ in range(2)]
            from distributed import Client

            with Client(address) as client:
                client.wait_for_workers(2, timeout=60)
            cluster = []
            for _ in range(rounds):
                out = os.path.join(tmp, "cluster") + os.sep
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                subprocess.run(pw + ["blur", *files, "-o", out, "--scheduler", address, "-q"],
                               check=True)
                cluster.append(time.perf_counter() - t0)
            t = statistics.median(cluster)
            print(f"{'--scheduler (2 workers, 127.0.0.1)':34} {t:.3f} s   "
                  f"vs --jobs 1 {t / statistics.median(times['jobs1']):.2f}   (a running "
                  "cluster: client connection and task scheduling included)")
        finally:
            for p in procs:
                p.kill()


def tree_rss_run(args: list[str]) -> tuple[float, float]:
    """Run a whole command; its wall time and the peak of the summed resident memory of
    the process and all its descendants (Dask workers included), sampled every 20 ms."""
    def tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as fh:
                        todo += [int(c) for c in fh.read().split()]
            except OSError:
                pass
        return out

    def rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(rss(p) for p in tree(proc.pid)))
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}")
    return seconds, peak / 2**20


def big_tiff(path: str, h: int, w: int, tile: int = 256) -> None:
    """A photo-like RGB 8-bit tiled TIFF made tile row by tile row (never whole)."""
    import tifffile

    def tiles():
        rng = np.random.default_rng(0)
        x = np.arange(w, dtype=np.float32)
        for r0 in range(0, h, tile):
            y = np.arange(r0, r0 + tile, dtype=np.float32)[:, None]
            base = 128 + 60 * np.sin(x / 700 + y / 900) + 40 * np.cos(x / 130 - y / 170)
            band = np.empty((tile, w, 3), np.uint8)
            for c in range(3):
                band[..., c] = np.clip(base * (0.8 + 0.2 * c) + rng.normal(0, 12, (tile, w)),
                                       0, 255)
            for c0 in range(0, w, tile):
                yield band[:, c0:c0 + tile]

    tifffile.imwrite(path, tiles(), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile),
                     photometric="rgb", bigtiff=h * w * 3 > 2**32 - 2**25)


def section_big(quick: bool, repeat: int) -> None:
    """An image bigger than the in-memory budget: chunked pwfilter against vips gaussblur
    on the same tiled TIFF, paired; peak memory of each; then the same on a LocalCluster
    of two workers (--scheduler local)."""
    n = 8000 if quick else 20000
    rounds = 2 if quick else 5
    vips = shutil.which("vips")
    pw = [sys.executable, "-m", "pwfilter"]
    print(f"\n## big: {n}x{n} RGB 8-bit tiled TIFF ({n * n * 3 / 1e9:.1f} GB of samples, "
          f"{n * n * 3 * 4 / 1e9:.1f} GB as float32) blurred sigma 3, {rounds} rounds taking "
          "turns, medians (seconds; peak RSS of the process tree)")
    with tempfile.TemporaryDirectory(dir=os.environ.get("PWFILTER_BENCH_DIR")) as tmp:
        src = os.path.join(tmp, "big.tif")
        big_tiff(src, n, n)
        ours, theirs = os.path.join(tmp, "ours.tif"), os.path.join(tmp, "vips.tif")
        times: dict[str, list[float]] = {"pwfilter": [], "vips": []}
        peaks: dict[str, float] = {"pwfilter": 0.0, "vips": 0.0}
        for _ in range(rounds):
            runs = [("pwfilter", pw + ["blur", src, "--sigma", "3", "-o", ours, "-q"])]
            if vips:
                runs.append(("vips", [vips, "gaussblur", src, theirs, "3"]))
            for name, cmd in runs:
                for out in (ours, theirs):  # both write a new file (replacing one costs more)
                    if os.path.exists(out):
                        os.unlink(out)
                seconds, peak = tree_rss_run(cmd)
                times[name].append(seconds)
                peaks[name] = max(peaks[name], peak)
        if not vips:
            del times["vips"]
        line = compare(times, "vips", "libvips")
        ratio = (statistics.median(times["pwfilter"]) / statistics.median(times["vips"])
                 if vips else None)
        print(f"{'blur sigma 3, chunked':34} {line}" + (
            f"   target <= 1.0: {'met' if ratio <= 1.0 else 'MISSED'}" if ratio else ""))
        if vips:  # vips's default: 11 integer taps (min-ampl 0.2); pwfilter: 25 float taps
            if os.path.exists(theirs):
                os.unlink(theirs)
            same = tree_rss_run([vips, "gaussblur", src, theirs, "3", "--min-ampl", "0.001",
                                 "--precision", "float"])[0]
            print(f"{'vips at float, 23 taps (one run)':34} {same:.3f} s   pwfilter/vips "
                  f"{statistics.median(times['pwfilter']) / same:.2f}   (--min-ampl 0.001 "
                  "--precision float: about pwfilter's accuracy)")
        print(f"{'peak RSS':34} pwfilter {peaks['pwfilter']:.0f} MB"
              + (f"   vips {peaks['vips']:.0f} MB" if vips else "")
              + f"   target <= 1536 MB: {'met' if peaks['pwfilter'] <= 1536 else 'MISSED'}")
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            print("(Dask distributed not installed: the --scheduler row is skipped)")
            return
        if os.path.exists(ours):
            os.unlink(ours)
        seconds, peak = tree_rss_run(pw + ["blur", src, "--sigma", "3", "-o", ours, "-q",
                                           "--scheduler", "local", "--jobs", "2"])
        print(f"{'--scheduler local (2 workers)':34} {seconds:.3f} s, peak RSS of all its "
              f"processes {peak:.0f} MB (a LocalCluster started and stopped by the command)")


SECTIONS = {"engine": section_engine, "blur": section_blur, "remix": section_remix,
            "stream": section_stream, "images": section_images, "png": section_png,
            "files": section_files, "big": section_big}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="*", metavar="SECTION", help=", ".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()
    repeat = args.repeat or (2 if args.quick else 5)
    print(f"pwfilter benchmark, {os.cpu_count()} cores, numpy {np.__version__}")
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    # Whole commands are timed as installed: `pip install .` byte-compiles the
    # package, an editable checkout (with PYTHONDONTWRITEBYTECODE) may not.
    import compileall

    import pwfilter

    compileall.compile_dir(os.path.dirname(pwfilter.__file__), quiet=1)
    for name in args.sections or list(SECTIONS):
        SECTIONS[name](args.quick, repeat)


if __name__ == "__main__":
    main()
