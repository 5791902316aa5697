"""Resource limits (decoded pixels, working memory) and the one memory model.

Both limits are checked *before* the work that would exceed them (from a
file's header, from array shapes), so a hostile file fails fast with a clear
message instead of exhausting the machine. Every decision about memory —
refusing a job, streaming long audio — uses the named estimates below, each
with the measurement behind it.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

from pwfilter.errors import PwfilterError

DEFAULT_MAX_PIXELS = 250_000_000


@functools.lru_cache(maxsize=1)
def _default_max_memory() -> int:
    """The default budget: half of physical memory, lowered to 80 % of what the process
    may actually get where less — a container's memory limit (cgroup v2 or v1), or the
    room left under ``ulimit -v`` / ``-d``. 4 GiB where physical memory cannot be read.

    Half, because a job's estimate is its peak and the machine's other work and its
    file cache keep the other half: a job near the limit leaves the machine usable.
    """
    try:
        budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        budget = 4 << 30
    for cap in (_cgroup_limit(), _rlimit_room()):
        if cap:
            budget = min(budget, int(cap * 0.8))
    return max(budget, 64 << 20)


def _cgroup_limit() -> int:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return 0


def _rlimit_room() -> int:
    """Bytes left under the address-space or data-segment limit (0 when unlimited)."""
    try:
        import resource
    except ImportError:
        return 0
    room = 0
    for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", None)):
        if which is None:
            continue
        soft = resource.getrlimit(which)[0]
        if soft == resource.RLIM_INFINITY or soft <= 0:
            continue
        used = _vm_size() if which == resource.RLIMIT_AS else 0
        left = max(soft - used, 0)
        room = left if not room else min(room, left)
    return room


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class Limits:
    """Caps on decoded image size and on estimated working memory (bytes)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_memory: int = 0  # 0 means the default budget (see _default_max_memory)

    @property
    def memory(self) -> int:
        return self.max_memory or _default_max_memory()

    def check_pixels(self, width: int, height: int, what: str) -> None:
        pixels = int(width) * int(height)
        if pixels > self.max_pixels:
            raise PwfilterError(
                f"{what}: {width}x{height} = {pixels:,} pixels exceeds the limit of "
                f"{self.max_pixels:,} (raise it with --max-pixels)"
            )

    def check_memory(self, nbytes: int, what: str) -> None:
        if nbytes > self.memory:
            raise PwfilterError(
                f"{what}: needs about {format_bytes(nbytes)} of working memory, more than the "
                f"limit of {format_bytes(self.memory)} (raise it with --max-memory)"
            )


# ----------------------------------------------------------------- the memory model


def image_bytes(pixels: int, channels: int, itemsize: int = 4) -> int:
    """Working memory of an image job in memory: 4x its float image.

    Measured 2026-11-30 on 12 MP RGB (peak RSS less the interpreter's ~70 MB):
    blur sigma 2 1.8x, convolve k 63 2.3x, blur sigma 20 2.8x (FFT row blocks
    of at most ``engine.BLOCK_BYTES`` per thread), an RGBA blur 2.3x — the
    decoded samples, a float result, the method's buffers; 4x covers them.
    """
    return int(pixels) * int(channels) * itemsize * 4


def audio_bytes(frames: int, channels: int, taps: int = 1, itemsize: int = 4) -> int:
    """Working memory of an audio job in memory: 12x its float output.

    Measured for whole ``convolve`` commands (float32, peak RSS less the
    imports): about 7x the output's size for a 31-tap kernel and 10-12x for a
    3 s IR (the input, its working copy, the padded signal, the overlap-add
    batches, the output and its file encoding). Long audio whose estimate
    exceeds the streaming budget is streamed instead (``--stream-above``).
    """
    return 12 * (int(frames) + max(int(taps), 1) - 1) * int(channels) * itemsize


def audio_decode_bytes(frames: int, channels: int, itemsize: int = 4) -> int:
    """Memory to decode a whole audio file: the integers libsndfile returns (up to 4
    bytes a sample) and their float conversion."""
    return int(frames) * int(channels) * (itemsize + 4)


def kernel_file_bytes(shape: tuple[int, ...], text: bool, to_stdout: bool = False) -> int:
    """Memory to write a kernel of ``shape`` with ``pwfilter kernel``: its float64 values
    (written to a file as they are, text one row at a time), plus the whole encoding when
    it goes to standard output from memory (text: up to 25 bytes a value, ``%.17g``)."""
    values = math.prod(int(n) for n in shape)
    encoded = values * (25 if text else 8) if to_stdout else 0
    return values * 8 + encoded


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """Parse ``"512M"``, ``"8G"``, ``"1000000"`` (bytes) into an int."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    suffix = t[-1:] if t[-1:] in units else ""
    number = t[: len(t) - len(suffix)]
    try:
        value = float(number) * units[suffix]
    except ValueError:
        raise PwfilterError(f"not a size: {text!r} (use e.g. 512M, 8G)") from None
    if not math.isfinite(value) or value >= 1 << 62:
        raise PwfilterError(f"not a size: {text!r} is beyond any memory (use e.g. 512M, 8G)")
    if value < 1:
        raise PwfilterError(f"a size must be positive: {text!r}")
    return int(value)
