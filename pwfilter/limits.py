"""Resource limits: decoded pixels (decompression bombs) and working memory.

Both limits are checked *before* the work that would exceed them (from a
file's header, from array shapes), so a hostile file fails fast with a clear
message instead of exhausting the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pwfilter.errors import PwfilterError

DEFAULT_MAX_PIXELS = 250_000_000


def _default_max_memory() -> int:
    """Three quarters of physical memory, or 4 GiB where it cannot be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 << 30
    return int(total * 0.75)


@dataclass(frozen=True)
class Limits:
    """Caps on decoded image size and on estimated working memory (bytes)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_memory: int = 0  # 0 means "75 % of physical memory"

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
    if value <= 0:
        raise PwfilterError(f"a size must be positive: {text!r}")
    return int(value)
