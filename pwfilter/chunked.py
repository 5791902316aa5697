"""Images bigger than memory: a chain run chunk by chunk, each chunk exact.

An output chunk is computed from exactly the input it needs: for each stage,
its rows and columns widened by the stage's extent (the padding of its mode,
asymmetric for even kernels), mapped through the stage's boundary rule *on
the whole image's grid* — the same ``np.pad`` rule the whole-image path uses
— then the stage runs in ``valid`` mode on that region. So

- ``wrap`` takes its values from the opposite edge of the image, not of the
  chunk (dask-image's ``map_overlap`` takes them from the chunk: its issue
  #242), and reflect, mirror, nearest and zero likewise;
- a chunk smaller than the overlap is just a chunk (dask's ``map_overlap``
  refuses them: dask issues #6688, #11580);
- a chain widens stage by stage: stage 2's boundary applies to stage 1's
  output at the image's edge, as in memory;
- each chunk's method is chosen by the same chooser (:func:`engine.plan`).

Regions are read by :mod:`pwfilter.regions` (tiled or striped TIFF,
``.npy``, Zarr). Chunks run on local threads, or as Dask tasks on a
cluster: a chunk is a pure function of the plan and its position.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from pwfilter.errors import PwfilterError
from pwfilter.stages import Chain, Stage

#: The default chunk edge in pixels: a float32 RGB chunk with its working buffers stays
#: under ~60 MB, so two at a time and two output bands stay far below the budget.
DEFAULT_CHUNK = 1024
_PAD = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap"}


@functools.lru_cache(maxsize=64)
def padded_index(n: int, pad: tuple[int, int], boundary: str) -> np.ndarray:
    """Indices into a length-``n`` axis of the axis extended by ``pad`` with ``boundary``
    (-1 where it is zero): the rule of ``np.pad``, as the whole-image path extends."""
    idx = np.arange(n, dtype=np.int64)
    if pad != (0, 0):
        idx = (np.pad(idx, pad, mode="constant", constant_values=-1) if boundary == "zero"
               else np.pad(idx, pad, mode=_PAD[boundary]))
    idx.flags.writeable = False  # shared by every chunk (cached)
    return idx


def _clusters(idx: np.ndarray, gap: int = 64) -> list[tuple[int, int]]:
    """Contiguous ranges covering the non-negative values of ``idx`` (ranges split where
    the sorted values jump by more than ``gap``: wrap's far edge is read on its own)."""
    vals = np.unique(idx[idx >= 0])
    if not vals.size:
        return []
    cuts = np.nonzero(np.diff(vals) > gap)[0]
    starts = np.concatenate(([vals[0]], vals[cuts + 1]))
    ends = np.concatenate((vals[cuts], [vals[-1]])) + 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def _contiguous(idx: np.ndarray) -> bool:
    return bool(idx.size) and idx[0] >= 0 and idx[-1] - idx[0] == idx.size - 1 \
        and (idx.size < 2 or bool(np.all(np.diff(idx) == 1)))


@dataclass(frozen=True)
class Job:
    """A chain over a region source, cut into chunks of the output grid.

    ``grids[i]`` is the (height, width) stage ``i`` reads; ``grids[-1]`` the output's.
    Picklable: a Dask worker gets it once and computes any chunk of it.
    """

    chain: Chain
    source: object  # a pwfilter.regions.Source
    chunk: tuple[int, int]
    grids: tuple[tuple[int, int], ...]
    valid_stages: tuple[Stage, ...]
    out_dtype: np.dtype
    gain: float = 1.0

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (*self.grids[-1], self.chain.c_out)

    def chunks(self) -> list[tuple[int, int, int, int]]:
        """Every chunk (r0, r1, c0, c1) in row-major order."""
        (h, w), (ch, cw) = self.grids[-1], self.chunk
        return [(r, min(r + ch, h), c, min(c + cw, w))
                for r in range(0, h, ch) for c in range(0, w, cw)]

    def bands(self) -> list[list[tuple[int, int, int, int]]]:
        """The chunks by rows of chunks (a writer's unit: whole rows of the output)."""
        per_row = -(-self.grids[-1][1] // self.chunk[1])
        every = self.chunks()
        return [every[i:i + per_row] for i in range(0, len(every), per_row)]


def make_job(chain: Chain, source, chunk: int | tuple[int, int] | None,
             out_dtype) -> Job:
    """Plan ``chain`` over ``source`` in chunks of ``chunk`` pixels (square, or
    (rows, cols)); a row-major source (striped TIFF, ``.npy``) is cut in whole-width bands
    of about the same area, so no row is read twice."""
    for i, stage in enumerate(chain.stages):
        if (stage.dry or stage.wet != 1.0) and stage.kernel is not None and stage.mode != "same":
            raise PwfilterError(f"stage {i + 1}: --dry/--wet with mode {stage.mode!r} cannot run "
                                "in chunks (only mode 'same')")
    h, w, c = source.shape
    grids = [(h, w)]
    shape = (h, w, c)
    for stage in chain.stages:
        shape = stage.out_shape(shape)
        grids.append(shape[:2])
    n = chunk or DEFAULT_CHUNK
    size = (n, n) if isinstance(n, int) else tuple(n)
    oh, ow = grids[-1]
    if getattr(source, "layout", "tiled") == "rows" and isinstance(n, int):
        rows = max(16, n * n // max(ow, 1))
        strip = source.tile[0]  # whole strips per band: each strip is decoded once
        size = (min(oh, -(-rows // strip) * strip), ow)
    size = (max(1, min(size[0], oh)), max(1, min(size[1], ow)))
    valid = tuple(dataclasses.replace(s, mode="valid", workers=1) if s.kernel is not None
                  else dataclasses.replace(s, workers=1) for s in chain.stages)
    return Job(chain, source, size, tuple(grids), valid, np.dtype(out_dtype))


def fit(chain: Chain, source, chunk: int | None, out_dtype, workers: int,
        budget: int) -> tuple[Job, int, int]:
    """The job in chunks of ``chunk`` pixels, or without one the largest chunks (1024
    down to 16) whose memory fits ``budget``; with each chunk's bytes and all held at
    once: chunks at work, each with a decoded tile or strip, and three rows of output
    (one being written, two coming)."""
    edge = chunk or DEFAULT_CHUNK
    while True:
        job = make_job(chain, source, edge, out_dtype)
        per_chunk = chunk_memory(job)
        band = job.chunk[0] * job.grids[-1][1] * chain.c_out * np.dtype(out_dtype).itemsize
        held = (per_chunk + source.segment_bytes) * workers + 3 * band
        if held <= budget or chunk or edge <= 16:
            return job, per_chunk, held
        edge //= 2


def chunk_memory(job: Job) -> int:
    """Bytes one chunk holds at most: its widened input and output per stage, with the
    method's buffers (the in-memory estimate's factor 4 on the float region)."""
    from pwfilter.limits import image_bytes

    rows, cols = job.chunk
    widest = 0
    for stage in reversed(job.chain.stages):
        eh, ew = _extent(stage)
        rows, cols = rows + eh, cols + ew
        widest = max(widest, rows * cols * max(stage.channels, stage.c_out))
    return image_bytes(widest, 1)


def _extent(stage: Stage) -> tuple[int, int]:
    """Rows and columns a stage's output chunk reads beyond its own size (taps - 1)."""
    if stage.kernel is None:
        return (0, 0)
    kh, kw = stage.kernel.shape[-2:]
    return (int(kh) - 1, int(kw) - 1)


def _stage_pad(stage: Stage) -> tuple[tuple[int, int], tuple[int, int]]:
    from pwfilter.engine import mode_padding

    if stage.kernel is None:
        return ((0, 0), (0, 0))
    return mode_padding(tuple(stage.kernel.shape[-2:]), stage.mode)


# ----------------------------------------------------------------- computing a chunk


def compute(job: Job, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """The chain's float output over rows ``r0:r1`` and columns ``c0:c1`` of the output."""
    from pwfilter.spatial import single_threaded

    single_threaded()
    y = _box(job, len(job.chain.stages), r0, r1, c0, c1)
    if job.gain != 1.0 and y.dtype.kind == "f":
        color = y[..., :-1] if job.chain.alpha_out else y
        color *= color.dtype.type(job.gain)
    return y


def _box(job: Job, k: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """The output of the first ``k`` stages over a contiguous box of their output grid
    (for k = 0: the source's samples, as stored)."""
    if k == 0:
        return job.source.read(r0, r1, c0, c1)
    stage = job.chain.stages[k - 1]
    (ph, pw), (eh, ew) = _stage_pad(stage), _extent(stage)
    grid = job.grids[k - 1]
    # Output o reads the padded axis at o .. o + taps - 1 (valid convolution of the padding).
    rows = padded_index(grid[0], ph, stage.boundary)[r0:r1 + eh]
    cols = padded_index(grid[1], pw, stage.boundary)[c0:c1 + ew]
    region = _at(job, k - 1, rows, cols)
    scale = job.source.scale if k == 1 else 1.0
    # The last stage of a plain 8-bit job may hand back 8-bit samples (Stage.run).
    last = k == len(job.chain.stages) and job.gain == 1.0 and not job.chain.normalize
    y, _ = job.valid_stages[k - 1].run(region, scale,
                                       to_uint8=last and job.out_dtype == np.uint8)
    return y


def _at(job: Job, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The output of the first ``k`` stages at any rows x cols of its grid (-1: zero)."""
    if _contiguous(rows) and _contiguous(cols):
        return _box(job, k, int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    rbox, cbox = _clusters(rows), _clusters(cols)
    rpos, rsize = _positions(rows, rbox)
    cpos, csize = _positions(cols, cbox)
    store = None
    ro = 0
    for a, b in rbox:
        co = 0
        for c, d in cbox:
            piece = _box(job, k, a, b, c, d)
            if store is None:  # one zero row and column past the end: where -1 points
                store = np.zeros((rsize + 1, csize + 1, piece.shape[2]), piece.dtype)
            store[ro:ro + b - a, co:co + d - c] = piece
            co += d - c
        ro += b - a
    if store is None:  # every index is -1: zeros of the right channel count and type
        channels = job.source.shape[2] if k == 0 else job.chain.stages[k - 1].c_out
        dtype = job.source.dtype if k == 0 else np.float32
        return np.zeros((rows.size, cols.size, channels), dtype)
    return _take(_take(store, rpos, 0), cpos, 1)


def _take(a: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    """``a.take(pos, axis)`` by slices: positions run in steps of +1 (inside), -1
    (reflected) or 0 (repeated edge, the zero slot), so a few slice copies replace a
    gather element by element (measured ~10x faster on a 1024² RGB chunk's edges)."""
    n = pos.size
    if n == 0:
        return a.take(pos, axis)
    step = np.diff(pos)
    cuts = np.nonzero((step[1:] != step[:-1]) | (np.abs(step[1:]) > 1))[0] + 1
    starts = np.concatenate(([0], cuts))
    shape = list(a.shape)
    shape[axis] = n
    out = np.empty(shape, a.dtype)
    bounds = list(starts) + [n]
    for i, j in zip(bounds[:-1], bounds[1:]):
        first, last = int(pos[i]), int(pos[j - 1])
        d = 0 if j - i == 1 else int(pos[i + 1] - pos[i])
        if abs(d) > 1 or (j - i > 1 and last - first != d * (j - i - 1)):
            piece = a.take(pos[i:j], axis)
        elif d == 0:
            piece = np.take(a, [first], axis)
        else:
            stop = last + d if last + d >= 0 else None
            piece = a[(slice(None),) * axis + (slice(first, stop, d),)]
        out[(slice(None),) * axis + (slice(i, j),)] = piece
    return out


def _positions(idx: np.ndarray, boxes: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """Where each index lands in the boxes laid end to end (-1 to the zero slot)."""
    pos = np.empty(idx.size, np.int64)
    total = sum(b - a for a, b in boxes)
    pos[:] = total
    offset = 0
    for a, b in boxes:
        inside = (idx >= a) & (idx < b)
        pos[inside] = idx[inside] - a + offset
        offset += b - a
    return pos, total


def finish(job: Job, y: np.ndarray) -> tuple[np.ndarray, int]:
    """A float chunk as the output's samples, and how many values clipped."""
    from pwfilter.media import quantize

    if job.out_dtype.kind == "f" or y.dtype == job.out_dtype:  # (8-bit from the stage)
        return np.ascontiguousarray(y, dtype=job.out_dtype), 0
    top = 65535 if job.out_dtype == np.uint16 else 255
    return quantize(y, 0, top, float(top), job.out_dtype)


def run_chunk(job: Job, box: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """One chunk, computed and quantized: the task a thread or a Dask worker runs."""
    return finish(job, compute(job, *box))


def peak_of_chunk(job: Job, box: tuple[int, int, int, int]) -> float:
    y = compute(job, *box)
    color = y[..., :-1] if job.chain.alpha_out else y
    return float(np.max(np.abs(color))) if color.size else 0.0


# ----------------------------------------------------------------- running every chunk


class LocalRunner:
    """Chunks on local threads, a row of chunks ahead of the writer."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)

    def map_bands(self, fn, job: Job):
        """``[fn(job, box) for box in band]`` for each band in order, the next band
        already running while the caller uses this one."""
        from concurrent.futures import ThreadPoolExecutor

        bands = job.bands()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="pwfilter-chunk") as pool:
            pending = [pool.submit(fn, job, box) for box in bands[0]] if bands else []
            for i in range(len(bands)):
                ahead = [pool.submit(fn, job, box) for box in bands[i + 1]] \
                    if i + 1 < len(bands) else []
                try:
                    yield [f.result() for f in pending]
                except BaseException:
                    for f in ahead:
                        f.cancel()
                    raise
                pending = ahead


class ClusterRunner:
    """Chunks as Dask tasks on a cluster: the job is scattered once, results come back
    in order (the next row of chunks already submitted). ``connect()`` gives a client
    context (``distributed.worker_client`` inside a task)."""

    def __init__(self, connect):
        self.connect = connect

    def map_bands(self, fn, job: Job):
        bands = job.bands()
        with self.connect() as client:
            [shared] = client.scatter([job], broadcast=True)

            def start(band):
                return [client.submit(fn, shared, box, pure=False, retries=2) for box in band]

            pending = start(bands[0]) if bands else []
            for i in range(len(bands)):
                ahead = start(bands[i + 1]) if i + 1 < len(bands) else []
                try:
                    yield client.gather(pending)
                except BaseException:
                    client.cancel(ahead + pending)
                    raise
                pending = ahead


def output_bands(job: Job, runner):
    """Yield (r0, r1, pieces, clipped) for each row of chunks, in order: ``pieces`` lists
    (c0, c1, samples) across the row (:func:`joined` makes them one band)."""
    if job.chain.normalize:
        peak = max((p for band in runner.map_bands(peak_of_chunk, job) for p in band),
                   default=0.0)
        job = dataclasses.replace(job, gain=1.0 / peak if peak > 0 else 1.0)
    for boxes, results in zip(job.bands(), runner.map_bands(run_chunk, job)):
        pieces = [(c0, c1, samples) for (_, _, c0, c1), (samples, _) in zip(boxes, results)]
        yield boxes[0][0], boxes[0][1], pieces, sum(n for _, n in results)


def output_dtype(source, fmt: str) -> np.dtype:
    """The output's samples: ``.npy`` float32; TIFF and Zarr the input's 8/16-bit integers
    or float32."""
    if fmt == "NPY" or source.dtype.kind == "f":
        return np.dtype(np.float32)
    return source.dtype


def plans(job: Job) -> list:
    """Each stage with the method the chooser picks for an interior chunk."""
    from pwfilter.engine import plan_for

    out = []
    rows, cols = job.chunk
    shapes = []
    for stage in reversed(job.chain.stages):
        eh, ew = _extent(stage)
        rows, cols = rows + eh, cols + ew
        shapes.append((rows, cols, stage.channels))
    for stage, shape in zip(job.valid_stages, reversed(shapes)):
        out.append((stage, None if stage.kernel is None else
                    plan_for(shape, 4, stage.kernel, mode="valid", method=stage.method,
                             budget=stage.budget)))
    return out


def describe(job: Job) -> str:
    """How the job runs, for ``-v``."""
    h, w = job.grids[-1]
    ch, cw = job.chunk
    count = math.ceil(h / ch) * math.ceil(w / cw)
    return f"{count} chunk{'s' if count != 1 else ''} of {ch}x{cw}"
