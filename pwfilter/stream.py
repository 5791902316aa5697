"""Streaming audio: block-by-block filtering with memory bounded by the kernel, not the file.

Pure like the engine: :class:`StreamFilter` takes blocks of input samples
and returns blocks of output samples; the runner feeds it from
:class:`pwfilter.audiofile.AudioReader` and drains it into
:class:`pwfilter.audiofile.AudioWriter`, with reading, computing and writing in
three threads (libsndfile and pocketfft release the GIL).

Convolution is overlap-add: the input is cut into steps of
``nfft - M + 1`` samples, several steps are transformed in one batched real
FFT, multiplied by the kernel's spectrum and the overlapping tails are
added. The output is exactly the in-memory ``full`` convolution, trimmed as
``same`` or ``valid`` are.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from pwfilter import ops
from pwfilter.spectral import BlockConvolver

#: Audio whose in-memory working set would exceed this is streamed (about a minute
#: of stereo float at 48 kHz; streaming is as fast from there on, and its memory
#: does not grow with the file).
STREAM_BUDGET = 256 << 20

#: Input read ahead of the transforms, in bytes, so reading overlaps the FFTs.
READ_AHEAD = 16 << 20


def stream_nfft(m: int) -> int:
    """FFT size for streaming overlap-add: the power of two at or above 2·M, at least 2^15.

    Measured on this kind of machine for a 3 s IR at 48 kHz: 2^19 with four
    steps per batched call is fastest; one step per call is twice as slow
    (the FFT's threads split the batch, so a batch needs several transforms).
    """
    return 1 << max(15, math.ceil(math.log2(max(2 * m, 2))))


def should_stream(frames: int, channels: int, taps: int, budget: int = STREAM_BUDGET
                  ) -> tuple[bool, str]:
    """Stream when the in-memory working set (:func:`pwfilter.limits.audio_bytes`) would
    exceed ``budget``; say why."""
    from pwfilter.limits import audio_bytes

    need = audio_bytes(frames, channels, taps)
    mib = need / 2**20
    if need > budget:
        return True, (f"streaming: {frames:,} frames x {channels} ch would need ~{mib:.0f} MiB "
                      f"in memory, over the {budget >> 20} MiB budget")
    return False, (f"in memory: {frames:,} frames x {channels} ch need ~{mib:.0f} MiB, "
                   f"within the {budget >> 20} MiB streaming budget")


@dataclass
class StreamFilter:
    """The whole per-sample job of convolve/blur/remix/dsconv on a stream.

    out = dry·x + wet·(remix(scale·(x ⊛ k) + bias)), trimmed to the mode's
    output positions. ``kernel`` None means no convolution (remix only);
    ``matrix`` None means no remix.
    """

    channels: int
    frames: int
    kernel: np.ndarray | None = None
    mode: str = "full"
    scale: float = 1.0
    bias: float = 0.0
    dry: float = 0.0
    wet: float = 1.0
    matrix: np.ndarray | None = None
    matrix_bias: np.ndarray | None = None
    dtype: type = np.float32
    workers: int | None = None

    def __post_init__(self):
        m = 1 if self.kernel is None else self.kernel.shape[-1]
        self.m = m
        if self.mode == "full":
            self.start, self.count, dry_skip = 0, self.frames + m - 1, 0
        elif self.mode == "same":
            self.start, self.count, dry_skip = (m - 1) // 2, self.frames, 0
        else:
            self.start, self.count, dry_skip = m - 1, self.frames - m + 1, m // 2
        self.conv = (None if self.kernel is None else
                     BlockConvolver(self.kernel, self.channels, self.dtype,
                                    nfft=stream_nfft(self.kernel.shape[-1]),
                                    workers=self.workers))
        self.skipped = 0
        self.emitted = 0
        self.dry_fifo: list[np.ndarray] = []
        self.dry_skip = dry_skip

    @property
    def c_out(self) -> int:
        return self.channels if self.matrix is None else self.matrix.shape[0]

    def _dry(self, n: int) -> np.ndarray:
        """The next ``n`` dry samples aligned with the output (zeros past the input)."""
        parts, need = [], n
        while need and self.dry_fifo:
            head = self.dry_fifo[0]
            take = head[:need]
            parts.append(take)
            need -= take.shape[0]
            if take.shape[0] == head.shape[0]:
                self.dry_fifo.pop(0)
            else:
                self.dry_fifo[0] = head[take.shape[0]:]
        if need:
            parts.append(np.zeros((need, self.channels), self.dtype))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _finish(self, y: np.ndarray) -> np.ndarray:
        """Trim to the mode's positions, then scale, bias, remix and mix dry/wet (the
        post-processing of :mod:`pwfilter.ops`, in place: every block here is a buffer of
        this stream's own)."""
        if self.skipped < self.start:
            drop = min(self.start - self.skipped, y.shape[0])
            y = y[drop:]
            self.skipped += drop
        y = y[: max(0, self.count - self.emitted)]
        self.emitted += y.shape[0]
        if not y.shape[0]:
            return np.zeros((0, self.c_out), self.dtype)
        ops.affine(y, self.scale, self.bias)
        if self.matrix is not None:
            y = ops.remix_array(y, ops.Remix(self.matrix, self.matrix_bias, False), workers=1)
        ops.blend(y, self._dry(y.shape[0]) if self.dry else None, self.dry, self.wet)
        return y

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        """Take input samples; return the output blocks that are final so far."""
        block = block.astype(self.dtype, copy=False)
        if self.dry:
            skip = min(self.dry_skip, block.shape[0])
            self.dry_skip -= skip
            if block.shape[0] > skip:
                self.dry_fifo.append(block[skip:].copy())
        ys = [block] if self.conv is None else self.conv.push(block)
        return [z for z in map(self._finish, ys) if z.shape[0]]

    def flush(self) -> list[np.ndarray]:
        """The remaining output blocks at the end of the input."""
        if self.conv is None:
            return []
        return [z for z in map(self._finish, self.conv.flush()) if z.shape[0]]


def run_pipeline(blocks: Iterable[np.ndarray], f: StreamFilter,
                 write: Callable[[np.ndarray], None], on_progress: Callable[[int], None] | None
                 = None) -> None:
    """Read, filter and write in three threads; errors in any stage propagate here."""
    block_bytes = read_block_size(f) * f.channels * np.dtype(f.dtype).itemsize
    read_q: queue.Queue = queue.Queue(maxsize=max(1, READ_AHEAD // block_bytes))
    write_q: queue.Queue = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    stop = threading.Event()
    done = object()

    def reader():
        try:
            for b in blocks:
                while not stop.is_set():
                    try:
                        read_q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
        finally:
            _put(read_q, done, stop)

    def writer():
        try:
            while True:
                y = write_q.get()
                if y is done:
                    return
                if not stop.is_set():
                    write(y)
                del y  # the block's buffer is free for the convolver again
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()
            while write_q.get() is not done:
                pass

    threads = [threading.Thread(target=reader, daemon=True),
               threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    try:
        while True:
            b = read_q.get()
            if b is done or stop.is_set():
                break
            for y in f.push(b):
                _put(write_q, y, None)
            if on_progress:
                on_progress(b.shape[0])
        if not stop.is_set() and not errors:
            for y in f.flush():
                _put(write_q, y, None)
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set() if errors else None
        _put(write_q, done, None)
        threads[1].join()
        stop.set()
        threads[0].join(timeout=5)
    if errors:
        raise errors[0]


def _put(q: queue.Queue, item, stop: threading.Event | None) -> None:
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop is not None and stop.is_set():
                # Nobody reads any more: make room for the sentinel.
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass


def read_block_size(f: StreamFilter) -> int:
    """Frames per read: small, the convolver gathers its own batches."""
    return 1 << 18


def stream_file(blocks: Iterable[np.ndarray], f: StreamFilter, open_writer: Callable, *,
                normalize: bool = False, temp_dir: str = ".",
                on_progress: Callable[[int], None] | None = None) -> int:
    """Filter a stream of blocks into the writer ``open_writer()`` returns; return clipped count.

    ``--normalize`` needs the output's peak before the first sample is
    written: the filtered result goes to a float32 temporary file in
    ``temp_dir`` first (peak tracked on the way), then is scaled by 1/peak
    and written in a second pass.
    """
    import tempfile

    if not normalize:
        with open_writer() as w:
            run_pipeline(blocks, f, w.write, on_progress)
        return w.clipped
    channels = f.c_out
    peak = 0.0
    with tempfile.TemporaryFile(dir=temp_dir, prefix=".pwfilter-", suffix=".f32") as tmp:
        def spill(y: np.ndarray) -> None:
            nonlocal peak
            if y.size:
                peak = max(peak, float(np.max(np.abs(y))))
            tmp.write(np.ascontiguousarray(y, dtype=np.float32).tobytes())

        run_pipeline(blocks, f, spill, on_progress)
        tmp.seek(0)
        gain = np.float32(1.0 / peak) if peak > 0 else np.float32(1.0)
        step = (1 << 18) * channels * 4
        with open_writer() as w:
            while chunk := tmp.read(step):
                y = np.frombuffer(chunk, dtype=np.float32).reshape(-1, channels) * gain
                w.write(y)
    return w.clipped
