"""pwfilter's benchmark command: our methods against the reference libraries and tools.

    python benchmarks/bench.py                 # every section
    python benchmarks/bench.py engine blur     # some sections
    python benchmarks/bench.py --quick engine  # smaller sizes, fewer repeats

Sections
--------
engine  2000x1500 RGB float32, k = 3..127: each forced method, auto, and
        scipy.signal.fftconvolve (cv2.filter2D where OpenCV is installed),
        in process; then audio lengths x IR lengths likewise.
blur    Gaussian blur of a 4000x3000 RGB float32 array at sigma 2, 20 and 50.
remix   RGB -> gray of a 12 MP float32 array vs numpy.copy; whole-command
        8 -> 2 channel remix of a 10-minute float WAV vs SoX.
stream  whole-command 10-minute stereo float WAV convolved with a 3 s IR vs
        ffmpeg afir, and peak memory of a 60-minute PCM_16 job.

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

from pwfilter import engine, ops


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up: imports, FFT plans, page faults
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, repeat: int) -> dict:
    """Median time of each function, the functions taking turns (fair under drifting load)."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def fmt(t: float | None) -> str:
    return "       -" if t is None else f"{t:8.3f}"


def try_cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def section_engine(quick: bool, repeat: int) -> None:
    from scipy.signal import fftconvolve

    cv2 = try_cv2()
    rng = np.random.default_rng(0)
    h, w = (750, 1000) if quick else (1500, 2000)
    x = rng.random((h, w, 3), dtype=np.float32)
    print(f"\n## engine: {w}x{h} RGB float32, random normalized k x k kernel, mode same, "
          "zero boundary (seconds, median)")
    if cv2 is None:
        print("(OpenCV not installed: cv2.filter2D column skipped)")
    head = f"{'k':>4} {'direct':>8} {'fft':>8} {'oa':>8} {'auto':>8} {'chosen':>9} " \
           f"{'fftconv':>8} {'filter2D':>8} {'auto/best':>9} {'auto/fftc':>9}"
    print(head)
    for k in (3, 5, 7, 9, 11, 15, 21, 31, 45, 63, 95, 127):
        kern = rng.random((k, k)).astype(np.float32)
        kern /= kern.sum()
        fns = {}
        for m in ("direct", "fft", "oa"):
            if engine.plan(x, kern, method=m).costs.get(m, 0) <= 4.0:  # else: minutes
                fns[m] = lambda m=m: engine.convolve(x, kern, boundary="zero", method=m)
        fns["auto"] = lambda: engine.convolve(x, kern, boundary="zero")
        fns["fftconvolve"] = lambda: fftconvolve(x, kern[:, :, None], mode="same", axes=(0, 1))
        if cv2 is not None:
            flipped = kern[::-1, ::-1].copy()
            fns["filter2D"] = lambda: cv2.filter2D(x, -1, flipped,
                                                   borderType=cv2.BORDER_CONSTANT)
        times = interleaved(fns, repeat)
        chosen = engine.plan(x, kern).method
        auto, fc, cvt = times["auto"], times["fftconvolve"], times.get("filter2D")
        times = {m: times.get(m) for m in ("direct", "fft", "oa")}
        best = min(t for t in times.values() if t is not None)
        print(f"{k:>4} {fmt(times['direct'])} {fmt(times['fft'])} {fmt(times['oa'])} "
              f"{fmt(auto)} {chosen:>9} {fmt(fc)} {fmt(cvt)} {auto / best:9.2f} {auto / fc:9.2f}")

    print("\n## engine: stereo float32 audio, mode full (seconds, median)")
    print(f"{'seconds':>8} {'taps':>7} {'direct':>8} {'fft':>8} {'oa':>8} {'auto':>8} "
          f"{'chosen':>7} {'fftconv':>8} {'oaconv':>8} {'auto/best':>9}")
    from scipy.signal import oaconvolve

    for secs in ((10, 60) if quick else (10, 60, 600)):
        a = rng.standard_normal((48_000 * secs, 2), dtype=np.float32) * 0.1
        for taps in (31, 1001, 48_000, 144_000):
            ir = (rng.standard_normal(taps) * np.exp(-np.arange(taps) / (taps / 5))).astype(
                np.float32)
            fns = {}
            for m in ("direct", "fft", "oa"):
                if engine.plan(a, ir, mode="full", method=m).costs.get(m, 0) <= 4.0:
                    fns[m] = lambda m=m: engine.convolve(a, ir, mode="full", method=m)
            fns["auto"] = lambda: engine.convolve(a, ir, mode="full")
            fns["fftconvolve"] = lambda: fftconvolve(a, ir[:, None], mode="full", axes=0)
            fns["oaconvolve"] = lambda: oaconvolve(a, ir[:, None], mode="full", axes=0)
            times = interleaved(fns, repeat)
            chosen = engine.plan(a, ir, mode="full").method
            auto, fc, oc = times["auto"], times["fftconvolve"], times["oaconvolve"]
            times = {m: times.get(m) for m in ("direct", "fft", "oa")}
            best = min(t for t in times.values() if t is not None)
            print(f"{secs:>8} {taps:>7} {fmt(times['direct'])} {fmt(times['fft'])} "
                  f"{fmt(times['oa'])} {fmt(auto)} {chosen:>7} {fmt(fc)} {fmt(oc)} "
                  f"{auto / best:9.2f}")


def section_blur(quick: bool, repeat: int) -> None:
    from scipy import ndimage

    cv2 = try_cv2()
    rng = np.random.default_rng(1)
    h, w = (1500, 2000) if quick else (3000, 4000)
    x = rng.random((h, w, 3), dtype=np.float32)
    print(f"\n## blur: Gaussian, {w}x{h} RGB float32, reflect boundary (seconds, median)")
    print(f"{'sigma':>6} {'pwfilter':>9} {'method':>10} {'ndimage':>8} {'cv2':>8} {'/sigma2':>8}")
    kernels = {sigma: ops.blur_kernel("gaussian", 2, sigma=sigma) for sigma in (2, 20, 50)}
    fns = {sigma: (lambda k=k: ops.filter_array(x, k, kind="image"))
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


SECTIONS = {"engine": section_engine, "blur": section_blur, "remix": section_remix,
            "stream": section_stream}


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
