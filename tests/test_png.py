"""The PNG writer (pwfilter.png) and the quantization / Media layer that feeds it.

Every expected value comes from an independent reference: the decoders
imagecodecs (libpng) and Pillow, a PNG chunk parser and a reference of the PNG
row filters written here with struct, zlib and NumPy, zlib.adler32, and
hand-computed arithmetic. pwfilter's output is never its own oracle.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib

import imagecodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import ROOT, identity_matrix, run, write_png
from pwfilter import media, png
from pwfilter.media import Media, load_media, quantize, write_media

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # PNG specification, table 11.1
LEVELS = [None, 0, 1, 6, 9]
# (height, width): single pixel, single row, single column, odd widths, several rows.
SHAPES = [(1, 1), (1, 17), (23, 1), (6, 7), (31, 13)]
SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ test images


def top_of(dtype) -> int:
    return 65535 if np.dtype(dtype) == np.uint16 else 255


def random_image(h, w, c, dtype, seed=0) -> np.ndarray:
    """Uniform random samples with 0 and the maximum both present."""
    top = top_of(dtype)
    a = np.random.default_rng(seed).integers(0, top + 1, (h, w, c), dtype=np.int64)
    flat = a.reshape(-1)
    flat[0], flat[-1] = top, 0
    if flat.size > 2:
        flat[1] = 0
        flat[-2] = top
    return a.astype(dtype)


def smooth_image(h, w, c, dtype, seed=0) -> np.ndarray:
    """Three bands of rows, each made for one PNG filter to win:

    - rows equal to the row above (random across x): Up leaves zeros;
    - rows constant across x (random per row): Sub leaves zeros;
    - a plane a = base + s * (x - y): left = a - s and above = a + s, so their mean
      is a and Average leaves zeros while Sub and Up leave s (both bytes of 16-bit
      samples move by one step when s = 257).
    """
    rng = np.random.default_rng(seed)
    top = top_of(dtype)
    out = np.empty((h, w, c), np.int64)
    b1, b2 = h // 3, 2 * h // 3
    out[:b1] = rng.integers(0, top + 1, (1, w, c))
    # rows far apart (alternately low and high), so that Up and Average leave large values;
    # (differences of 31..95 in the high byte: never 0x80, see test_filter_rows_residual_0x80)
    low = rng.integers(0, (top + 1) // 8, (b2 - b1, 1, c))
    out[b1:b2] = low + (np.arange(b1, b2) % 2 * (top // 4))[:, None, None]
    y, x = np.mgrid[b2:h, 0:w]
    step = 257 if top == 65535 else 1
    plane = np.clip(40 + (x - y)[..., None] + 3 * np.arange(c), 0, 255)  # no clipping for
    out[b2:] = plane * step  # w <= 200 and h <= 30, as test_every_filter_is_chosen
    return out.astype(dtype)


def cumsum_image(h, w, c, dtype, seed=0) -> np.ndarray:
    """Cumulative sums of small random steps (wrapping), a smooth-ish texture."""
    top = top_of(dtype)
    steps = np.random.default_rng(seed).integers(-2, 3, (h, w, c)) * (1 if top == 255 else 37)
    return (np.cumsum(np.cumsum(steps, 0), 1) % (top + 1)).astype(dtype)


def photo_u8(h=300, w=400, seed=1) -> np.ndarray:
    """scripts/make_samples.py's photo-like picture as 8-bit RGB (as benchmarks/bench.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_samples import photo
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return np.rint(photo(h, w, seed=seed) * 255).astype(np.uint8)


def encode(arr, level=None, workers=1) -> bytes:
    return b"".join(png.encode(arr, level, workers))


# ------------------------------------------------------------------ independent references


def parse_chunks(blob: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC-32 checked; the file must end with the last."""
    assert blob[:8] == SIGNATURE
    chunks, pos = [], 8
    while pos < len(blob):
        assert pos + 12 <= len(blob), "truncated chunk"
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        kind = blob[pos + 4:pos + 8]
        data = blob[pos + 8:pos + 8 + length]
        assert len(data) == length, "chunk data runs past the end of the file"
        (crc,) = struct.unpack(">I", blob[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF, f"bad CRC in {kind!r} chunk"
        chunks.append((kind, data))
        pos += 12 + length
    assert pos == len(blob)
    return chunks


class Parsed:
    """A PNG file taken apart with struct and zlib only."""

    def __init__(self, blob: bytes):
        self.chunks = parse_chunks(blob)
        kinds = [k for k, _ in self.chunks]
        assert kinds[0] == b"IHDR" and len(self.chunks[0][1]) == 13
        assert kinds[-1] == b"IEND" and self.chunks[-1][1] == b""
        assert kinds.count(b"IHDR") == 1 and kinds.count(b"IEND") == 1
        idat = [i for i, k in enumerate(kinds) if k == b"IDAT"]
        assert idat, "no IDAT chunk"
        assert idat == list(range(idat[0], idat[-1] + 1)), "IDAT chunks must be consecutive"
        (self.width, self.height, self.depth, self.color, compression, filtering,
         interlace) = struct.unpack(">IIBBBBB", self.chunks[0][1])
        assert (compression, filtering, interlace) == (0, 0, 0)
        self.n_idat = len(idat)
        self.stream = b"".join(self.chunks[i][1] for i in idat)

    @property
    def channels(self) -> int:
        return {0: 1, 4: 2, 2: 3, 6: 4}[self.color]

    @property
    def bpp(self) -> int:
        return self.channels * self.depth // 8

    @property
    def stride(self) -> int:
        return 1 + self.width * self.bpp

    def inflate(self) -> bytes:
        """The filtered rows: IDAT data must be exactly one zlib stream with a right trailer."""
        s = self.stream
        cmf, flg = s[0], s[1]
        assert cmf & 0x0F == 8 and cmf >> 4 <= 7, "zlib: deflate with a window up to 32 KiB"
        assert (cmf * 256 + flg) % 31 == 0, "zlib header check bits"
        assert not flg & 0x20, "no preset dictionary"
        d = zlib.decompressobj()
        raw = d.decompress(s) + d.flush()
        assert d.eof, "zlib stream does not end"
        assert d.unused_data == b"", "bytes after the zlib stream"
        assert struct.unpack(">I", s[-4:])[0] == zlib.adler32(raw)
        assert len(raw) == self.height * self.stride
        return raw

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(filter types, residual rows) of the decompressed data."""
        raw = np.frombuffer(self.inflate(), np.uint8).reshape(self.height, self.stride)
        return raw[:, 0], raw[:, 1:]


def stored_blocks(stream: bytes) -> bytes:
    """Walk a zlib stream that must hold only stored (uncompressed) deflate blocks; return
    their contents. Fails on any compressed block (RFC 1950/1951 by hand)."""
    pos = 2  # zlib header
    out = bytearray()
    while True:
        header = stream[pos]
        assert header & 0b110 == 0, f"block at byte {pos} is compressed (BTYPE {header >> 1 & 3})"
        assert header >> 3 == 0, "padding bits after a stored block header are zero"
        length, nlength = struct.unpack("<HH", stream[pos + 1:pos + 5])
        assert length == nlength ^ 0xFFFF
        out += stream[pos + 5:pos + 5 + length]
        pos += 5 + length
        if header & 1:  # BFINAL
            break
    assert len(stream) == pos + 4, "only the Adler-32 trailer follows the final block"
    return bytes(out)


def ref_filter(kind: int, row: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter ``kind`` (specification section 9.2) of one row of bytes."""
    x = row.astype(np.int64)
    b = above.astype(np.int64)
    a = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])[:x.size]
    if kind == 0:
        pred = np.zeros_like(x)
    elif kind == 1:
        pred = a
    elif kind == 2:
        pred = b
    elif kind == 3:
        pred = (a + b) // 2
    else:
        raise AssertionError(f"filter type {kind} is not one the writer may choose")
    return ((x - pred) % 256).astype(np.uint8)


def ref_cost(residual: np.ndarray) -> int:
    """The documented heuristic: sum of |residual as a signed byte| over the row."""
    v = residual.astype(np.int64)
    return int(np.minimum(v, 256 - v).sum())  # |signed byte|: 0x80 counts 128


def image_bytes(arr: np.ndarray) -> np.ndarray:
    """(H, W*bpp) raw bytes of an image as PNG stores them (16-bit big-endian)."""
    a = arr if arr.ndim == 3 else arr[:, :, None]
    h = a.shape[0]
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder(">"))).view(np.uint8).reshape(h, -1)


def check_filtered(parsed: Parsed, arr: np.ndarray, allowed=(1, 2, 3)) -> np.ndarray:
    """Each row's residuals are exactly its filter of the image (the row above from the
    image itself, across strips); return the filter types."""
    types, residuals = parsed.rows()
    src = image_bytes(arr)
    assert set(types.tolist()) <= set(allowed), types
    zeros = np.zeros(src.shape[1], np.uint8)
    for i in range(src.shape[0]):
        above = src[i - 1] if i else zeros
        expected = ref_filter(int(types[i]), src[i], above, parsed.bpp)
        assert np.array_equal(residuals[i], expected), f"row {i}, filter {types[i]}"
    return types


def pillow_read(blob: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(blob)) as im:
        im.load()
        return im.mode, np.asarray(im)


def assert_decodes_to(blob: bytes, arr: np.ndarray) -> None:
    """imagecodecs and Pillow both read ``arr`` back (Pillow at the precision it reads)."""
    dec = imagecodecs.png_decode(blob)
    assert dec.dtype == arr.dtype
    np.testing.assert_array_equal(dec.reshape(arr.shape), arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        assert dec.ndim == 2 or dec.shape[2] == 1
    mode, pil = pillow_read(blob)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.dtype == np.uint8:
        assert mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        np.testing.assert_array_equal(pil.reshape(arr.shape), arr)
    elif channels == 1:
        assert mode in ("I;16", "I;16B", "I"), mode
        np.testing.assert_array_equal(pil.reshape(arr.shape).astype(np.int64),
                                      arr.astype(np.int64))
    else:
        # Pillow reads 16-bit LA/RGB/RGBA at 8 bits: it must read ours as it reads libpng's.
        ref_mode, ref_pil = pillow_read(imagecodecs.png_encode(arr))
        assert mode == ref_mode
        np.testing.assert_array_equal(pil, ref_pil)


# ------------------------------------------------------------------ 1. round trips


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_is_bit_exact(monkeypatch, dtype, mode, level, workers):
    """Every shape and kind of data, in one strip and in strips of one and of a few rows."""
    c = MODES[mode]
    for strip_bytes in (png.STRIP_BYTES, 1, 100):
        monkeypatch.setattr(png, "STRIP_BYTES", strip_bytes)
        for h, w in SHAPES:
            for make in (random_image, smooth_image, cumsum_image):
                arr = make(h, w, c, dtype, seed=h * 100 + w)
                if c == 1 and w % 2:
                    arr = arr[:, :, 0]  # 2-D input too
                blob = encode(arr, level, workers)
                assert_decodes_to(blob, arr)


@pytest.mark.parametrize("dtype, c", [(np.uint8, 3), (np.uint16, 4), (np.uint8, 1)])
def test_round_trip_of_an_image_spanning_several_strips(dtype, c):
    """Tall enough for several STRIP_BYTES strips: rows above come from the previous strip."""
    row_bytes = 401 * c * np.dtype(dtype).itemsize
    h = 3 * png.STRIP_BYTES // row_bytes + 57
    arr = cumsum_image(h, 401, c, dtype, seed=3)
    arr[::97] = random_image(len(arr[::97]), 401, c, dtype, seed=4)  # some noisy rows
    blobs = {}
    for level in (None, 0, 1, 9):
        for workers in (1, 2):
            blob = encode(arr, level, workers)
            p = Parsed(blob)
            assert p.n_idat >= 4, "premise: the image spans several strips"
            assert (p.width, p.height, p.depth) == (401, h, 8 * np.dtype(dtype).itemsize)
            if workers == 1:
                check_filtered(p, arr)
            assert_decodes_to(blob, arr)
            blobs[level, workers] = blob
        assert blobs[level, 1] == blobs[level, 2], "the number of workers changes nothing"


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("fdtype", [np.float32, np.float64])
def test_write_media_float_samples(tmp_path, bits, mode, fdtype):
    c = MODES[mode]
    top = 255 if bits == 8 else 65535
    rng = np.random.default_rng(bits + c)
    x = rng.random((17, 11, c)).astype(fdtype)
    x.reshape(-1)[:4] = [0.0, 1.0, 0.5, 1.0]
    x[5] = np.arange(11)[:, None] / 10.0  # a ramp through the range
    clipped = write_media(Media(x, "image", "PNG", bits=bits), tmp_path / "f.png", "PNG")
    assert clipped == 0
    expected = np.clip(np.rint(x * top), 0, top).astype(np.uint8 if bits == 8 else np.uint16)
    blob = (tmp_path / "f.png").read_bytes()
    assert Parsed(blob).depth == bits
    assert_decodes_to(blob, expected if c > 1 else expected[:, :, 0])


@pytest.mark.parametrize("mode", list(MODES))
def test_write_media_integer_samples(tmp_path, mode):
    c = MODES[mode]
    u8 = random_image(9, 14, c, np.uint8, seed=c)
    u16 = random_image(9, 14, c, np.uint16, seed=c)
    wide = u16.astype(np.int64)
    cases = [
        (u8, 8, u8),
        (u16, 16, u16),
        (u8, 16, (u8.astype(np.int64) * 257).astype(np.uint16)),  # 255 -> 65535
        (u16, 8, ((2 * wide + 257) // 514).astype(np.uint8)),  # round(x / 257)
    ]
    for samples, bits, expected in cases:
        buf = io.BytesIO()
        clipped = write_media(Media(samples, "image", "PNG", bits=bits), buf, "PNG")
        assert clipped == 0
        assert_decodes_to(buf.getvalue(), expected)


# ------------------------------------------------------------------ 2. file structure


@pytest.mark.parametrize("strip_bytes", [None, 1, 64])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_file_structure(monkeypatch, dtype, mode, level, strip_bytes):
    if strip_bytes is not None:
        monkeypatch.setattr(png, "STRIP_BYTES", strip_bytes)
    c = MODES[mode]
    arr = np.concatenate([smooth_image(12, 9, c, dtype, 1), random_image(7, 9, c, dtype, 2)])
    blob = encode(arr, level, workers=2)
    p = Parsed(blob)
    assert (p.width, p.height) == (9, 19)
    assert p.depth == 8 * np.dtype(dtype).itemsize
    assert p.color == COLOR_TYPES[c] == {"L": 0, "LA": 4, "RGB": 2, "RGBA": 6}[mode]
    assert p.bpp == c * np.dtype(dtype).itemsize
    types = check_filtered(p, arr)  # also: H*(1+W*bpp) bytes, valid stream, Adler-32
    assert set(types.tolist()) <= {1, 2, 3}
    if strip_bytes == 1:
        assert p.n_idat >= 19, "one strip per row"


def test_file_structure_through_write_media():
    arr = smooth_image(20, 15, 3, np.uint16, 5)
    buf = io.BytesIO()
    write_media(Media(arr, "image", "PNG", bits=16), buf, "PNG")
    p = Parsed(buf.getvalue())
    assert (p.width, p.height, p.depth, p.color) == (15, 20, 16, 2)
    check_filtered(p, arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_filter_is_chosen(dtype, mode):
    """With a compression level each row gets its best filter: Sub, Up and Average all
    occur where designed (and nothing else); the fast default uses Average alone."""
    arr = smooth_image(30, 200, MODES[mode], dtype, 7)
    default, _ = Parsed(encode(arr)).rows()
    assert set(default.tolist()) == {3}
    types, _ = Parsed(encode(arr, level=6)).rows()
    assert set(types.tolist()) == {1, 2, 3}
    third = 10
    assert (types[1:third] == 2).all(), "rows equal to the row above: Up"
    assert (types[third + 1:2 * third] == 1).all(), "rows constant across: Sub"
    assert (types[2 * third + 1:] == 3).all(), "plane with left + above = 2 x: Average"


# ------------------------------------------------------------------ 3. filter_rows


@st.composite
def filter_problems(draw, values="full"):
    bpp = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    pixels = draw(st.integers(1, 12))
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "smooth", "repeat"])) if values == "full" else "small"
    rng = np.random.default_rng(seed)
    shape = (n + 1, pixels * bpp)
    if kind == "random":
        rows = rng.integers(0, 256, shape)
    elif kind == "smooth":
        rows = np.cumsum(np.cumsum(rng.integers(-3, 4, shape), 0), 1) % 256
    elif kind == "repeat":
        rows = np.repeat(rng.integers(0, 256, (1, shape[1])), shape[0], 0)
        rows[rng.random(shape) < 0.2] = rng.integers(0, 256)
    else:  # 0..63: no residual can be 0x80
        rows = rng.integers(0, 64, shape)
    rows = rows.astype(np.uint8)
    prior = rows[0].copy() if draw(st.booleans()) else None
    return rows[1:].copy(), prior, bpp


def _check_residuals(rows, prior, bpp):
    before = rows.copy()
    prior_before = None if prior is None else prior.copy()
    out = png.filter_rows(rows, prior, bpp)
    assert out.shape == (rows.shape[0], rows.shape[1] + 1) and out.dtype == np.uint8
    assert np.array_equal(rows, before), "input rows changed"
    if prior is not None:
        assert np.array_equal(prior, prior_before), "prior row changed"
    above = np.zeros(rows.shape[1], np.uint8) if prior is None else prior
    costs = []
    for i in range(rows.shape[0]):
        kind = int(out[i, 0])
        assert kind in (1, 2, 3)
        assert np.array_equal(out[i, 1:], ref_filter(kind, rows[i], above, bpp)), (i, kind)
        costs.append((kind, {k: ref_cost(ref_filter(k, rows[i], above, bpp))
                             for k in (1, 2, 3)}))
        above = rows[i]
    return costs


@SETTINGS
@given(filter_problems())
def test_filter_rows_residuals_are_exact(problem):
    _check_residuals(*problem)


@SETTINGS
@given(filter_problems(values="small"))
def test_filter_rows_choice_minimises_cost_small_values(problem):
    """Samples 0..63: residuals lie in -63..63, where int8 and true |.| agree."""
    for kind, cost in _check_residuals(*problem):
        assert cost[kind] == min(cost.values()), (kind, cost)


@SETTINGS
@given(filter_problems())
def test_filter_rows_choice_minimises_cost(problem):
    for kind, cost in _check_residuals(*problem):
        assert cost[kind] == min(cost.values()), (kind, cost)


def test_filter_rows_residual_0x80_costs_128():
    """|-128| is 128: a Sub residual of 0x80 on every byte must lose to Up's zeros.

    Row 2 repeats row 1 (Up: all zeros, cost 0); alternating 0x00/0x80 bytes make
    Sub's residuals 0x80 (cost 128 each). In int8, abs(-128) stays -128 and the
    cost turns negative, so the worst filter would win.
    """
    row = np.array([0, 0x80] * 8, np.uint8)
    rows = np.stack([row, row])
    out = png.filter_rows(rows, None, 1)
    assert ref_cost(ref_filter(1, row, row, 1)) == 128 * 15  # byte 0 is 0, then 15 x 0x80
    assert ref_cost(ref_filter(2, row, row, 1)) == 0
    assert out[1, 0] == 2, f"chose filter {out[1, 0]} for a row equal to the row above"
    np.testing.assert_array_equal(out[1, 1:], 0)


def test_filter_rows_by_hand():
    """Two RGB pixels per row, bpp 3, worked out by hand."""
    rows = np.array([[10, 20, 30, 12, 22, 32],
                     [10, 20, 30, 12, 22, 32],
                     [200, 100, 0, 201, 101, 255]], np.uint8)
    out = png.filter_rows(rows, None, 3)
    # row 0, above zeros: Sub [10,20,30,2,2,2] (cost 10+30+2=42), Up = the row (10+30+22=62),
    # Average [10,20,30,12-5,22-10,32-15] = [10,20,30,7,12,17] (10+30+12=52): Sub.
    np.testing.assert_array_equal(out[0], [1, 10, 20, 30, 2, 2, 2])
    # row 1 repeats row 0: Up leaves zeros.
    np.testing.assert_array_equal(out[1], [2, 0, 0, 0, 0, 0, 0])
    # row 2: Sub [200,100,0,1,1,255] -> |-56|+0+1 = 57; Up [190,80,226,189,79,223]
    # -> 66+30+79 = 175; Average [195,90,241,(201-106)=95,(101-61)=40,(255-16)=239]
    # -> 61+15+40 = 116: Sub.
    np.testing.assert_array_equal(out[2], [1, 200, 100, 0, 1, 1, 255])


# ------------------------------------------------------------------ 4. adler32_combine


def _combine_all(parts: list[bytes]) -> int:
    check = 1
    for part in parts:
        check = png.adler32_combine(check, zlib.adler32(part), len(part))
    return check


@SETTINGS
@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_adler32_combine_two_parts(a, b):
    assert png.adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


@SETTINGS
@given(st.binary(max_size=5000), st.lists(st.integers(0, 5000), max_size=8))
def test_adler32_combine_random_splits(data, cuts):
    cuts = sorted(min(c, len(data)) for c in cuts)
    bounds = [0, *cuts, len(data)]
    parts = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    assert _combine_all(parts) == zlib.adler32(data)


def test_adler32_combine_long_and_edge_parts():
    rng = np.random.default_rng(9)
    long1 = rng.integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    long2 = rng.integers(0, 256, 5_000_001, dtype=np.uint8).tobytes()
    ones = b"\xff" * 4_000_000  # largest sums: both halves wrap many times
    a_zero = b"\xff" * 256 + bytes([240])  # 1 + sum = 65521: A is 0
    assert zlib.adler32(a_zero) & 0xFFFF == 0
    period = bytes(range(256)) * 256  # 65536 bytes
    cases = [(long1, long2), (long2, b""), (b"", long1), (b"", b""), (ones, ones),
             (a_zero, long1), (long1, a_zero), (a_zero, ones), (ones, b"\x00" * 65521),
             (period, period[:65521]), (b"x", b"\xff" * 65521 * 3)]
    for a, b in cases:
        assert png.adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == \
            zlib.adler32(a + b), (len(a), len(b))
    pieces = [long1[i:i + (1 << 20)] for i in range(0, len(long1), 1 << 20)]
    assert _combine_all(pieces) == zlib.adler32(long1)


# ------------------------------------------------------------------ 5. compression level


def test_level_0_writes_stored_blocks(monkeypatch):
    arr = photo_u8(60, 80)
    for strip_bytes in (png.STRIP_BYTES, 500):
        monkeypatch.setattr(png, "STRIP_BYTES", strip_bytes)
        p = Parsed(encode(arr, 0, 2))
        raw = p.inflate()
        assert stored_blocks(p.stream) == raw
        assert len(p.stream) >= len(raw) == 60 * (1 + 80 * 3)
        assert_decodes_to(encode(arr, 0, 2), arr)


def test_levels_order_sizes_and_differ():
    arr = photo_u8(150, 200)
    raw = 150 * (1 + 200 * 3)
    blobs = {level: encode(arr, level) for level in [None, *range(10)]}
    size = {level: len(Parsed(b).stream) for level, b in blobs.items()}
    assert size[0] >= raw
    for level in range(1, 10):
        assert size[level] <= size[0], (level, size)
    assert size[9] <= size[1], size
    assert size[None] < size[0]
    assert size[0] > 1.3 * size[9], "premise: the image compresses"
    for a, b in [(0, 1), (1, 9), (1, 6), (None, 1), (None, 9)]:
        assert blobs[a] != blobs[b], (a, b)
    for level, blob in blobs.items():
        assert_decodes_to(blob, arr)


@pytest.mark.parametrize("bits", [8, 16])
def test_cli_compression_option(tmp_path, bits):
    arr = photo_u8(90, 120)
    if bits == 16:
        arr = arr.astype(np.uint16) * 257
    src = write_png(tmp_path / "in.png", arr)
    matrix = identity_matrix(3)
    outs = {}
    for label, extra in (("default", []), ("0", ["--compression", "0"]),
                         ("9", ["--compression", "9"])):
        out = tmp_path / f"out_{label}.png"
        r = run("remix", src, "--matrix", matrix, "-o", out, *extra)
        assert r.code == 0, r.stderr
        blob = out.read_bytes()
        np.testing.assert_array_equal(imagecodecs.png_decode(blob), arr)
        assert Parsed(blob).depth == bits
        outs[label] = blob
    raw = 90 * (1 + 120 * 3 * bits // 8)
    assert len(outs["0"]) > len(outs["default"])
    assert len(outs["0"]) > raw
    p0 = Parsed(outs["0"])
    assert stored_blocks(p0.stream) == p0.inflate()
    assert len(outs["9"]) < len(outs["0"])
    assert outs["9"] != outs["default"]


# ------------------------------------------------------------------ 6. size


def _blurred(u8: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    b = gaussian_filter(u8.astype(np.float64), sigma=(2, 2, 0), mode="reflect")
    return np.clip(np.rint(b), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("blur", [False, True])
@pytest.mark.parametrize("deflate", ["isal", "zlib-ng RLE"])
def test_default_size_close_to_libpng_fastest(blur, deflate, monkeypatch):
    """Photographs: ISA-L's level 1 (the default) within 10 % of libpng's fastest mode,
    zlib-ng's RLE (the fallback) within 5 %."""
    if deflate != "isal":
        monkeypatch.setattr(png, "_isal", None)
    elif png._isal is None:
        pytest.skip("isal is not installed")
    arr = photo_u8(300, 400, seed=1)
    if blur:
        arr = _blurred(arr)
    ours = encode(arr, None, 2)
    ref = imagecodecs.png_encode(arr, level=1, strategy=3, filter=64)
    bound = 1.10 if deflate == "isal" else 1.05
    assert len(ours) <= bound * len(ref), (len(ours), len(ref), len(ours) / len(ref))
    assert_decodes_to(ours, arr)


def test_default_graphics_smaller_than_libpng_fastest():
    """Flat areas and gradients: the default's LZ77 matching beats runs alone."""
    if png._isal is None:
        pytest.skip("isal is not installed")
    y, x = np.mgrid[0:240, 0:320]
    arr = np.zeros((240, 320, 3), np.uint8)
    arr[..., 0] = (x * 255 // 319).astype(np.uint8)
    arr[60:180, 80:240, 1] = 200
    arr[(x // 20 + y // 20) % 2 == 0, 2] = 90
    ours = encode(arr, None, 2)
    ref = imagecodecs.png_encode(arr, level=1, strategy=3, filter=64)
    assert len(ours) < 0.9 * len(ref), (len(ours), len(ref))
    assert_decodes_to(ours, arr)


# ------------------------------------------------------------------ 7. quantize


def ref_quantize(x: np.ndarray, lo, hi, scale, dtype) -> tuple[np.ndarray, int]:
    """np.clip(np.rint(x * scale), lo, hi), NaN/Inf -> 0; clipped: moved by more than one
    step, plus every NaN/Inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        y = x.astype(np.float64 if x.dtype == np.float64 else np.float32) * scale
        bad = ~np.isfinite(y)
        moved = ((y < lo - 1) | (y > hi + 1)) & ~bad
    y = np.where(bad, 0, y)
    return np.clip(np.rint(y), lo, hi).astype(dtype), int(bad.sum() + moved.sum())


TARGETS = {"u8": (0, 255, 255.0, np.uint8), "u16": (0, 65535, 65535.0, np.uint16),
           "pcm16": (-32768, 32767, 32768.0, np.int16), "pcm8": (-128, 127, 128.0, np.int16),
           "pcm24": (-(2**23), 2**23 - 1, 2.0**23, np.int32),
           # as float_to_pcm: 32-bit PCM from float64 only (2**31 - 1 is not a float32)
           "pcm32": (-(2**31), 2**31 - 1, 2.0**31, np.int32)}


def _float_input(shape, fdtype, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.4, 1.4, shape).astype(fdtype)
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, 30, replace=False)
    flat[idx[:10]] = np.nan
    flat[idx[10:15]] = np.inf
    flat[idx[15:20]] = -np.inf
    flat[idx[20:25]] = 0.0
    flat[idx[25:]] = 1.0
    return x


@pytest.mark.parametrize("fdtype, target", [
    (f, t) for f in (np.float32, np.float64) for t in TARGETS
    if not (t == "pcm32" and f == np.float32)])  # 32-bit PCM is quantized from float64
def test_quantize_matches_reference(fdtype, target):
    lo, hi, scale, dtype = TARGETS[target]
    x = _float_input((41, 23, 3), fdtype, seed=hi % 97)
    before = x.tobytes()
    out, clipped = quantize(x, lo, hi, scale, dtype)
    expected, n = ref_quantize(x, lo, hi, scale, dtype)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(out, expected)
    assert clipped == n
    assert x.tobytes() == before, "input changed"


@pytest.mark.parametrize("fdtype", [np.float32, np.float64])
def test_quantize_by_hand(fdtype):
    """8-bit signed grid, scale 128 (exact in binary): the one-step tolerance at both ends."""
    x = np.array([1.0, 129 / 128, 130 / 128, -1.0, -129 / 128, -130 / 128, np.nan, np.inf,
                  -np.inf, 0.5 / 128, 1.5 / 128, -2.5 / 128, 127.4 / 128], fdtype)[:, None]
    out, clipped = quantize(x, -128, 127, 128, np.int16)
    np.testing.assert_array_equal(out[:, 0],
                                  [127, 127, 127, -128, -128, -128, 0, 0, 0, 0, 2, -2, 127])
    # moved by more than one step (beyond 128 or -129): 129/128, 130/128 and -130/128;
    # 1.0 (128) and -129/128 (-129) are one step out: rounding. Plus NaN, +Inf and -Inf.
    assert clipped == 6


def test_quantize_integer_input():
    """uint16 -> 8 bits with scale 255/65535: round(x / 257) for every 16-bit value."""
    x = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1)
    before = x.tobytes()
    out, clipped = quantize(x, 0, 255, 255 / 65535, np.uint8)
    exact = ((2 * x.astype(np.int64) + 257) // 514).astype(np.uint8)
    np.testing.assert_array_equal(out, exact)
    np.testing.assert_array_equal(
        out, np.clip(np.rint(x.astype(np.float32) * np.float32(255 / 65535)), 0, 255))
    assert clipped == 0 and x.tobytes() == before
    up, clipped = quantize(np.arange(256, dtype=np.uint8)[:, None], 0, 65535, 65535 / 255,
                           np.uint16)
    np.testing.assert_array_equal(up[:, 0], np.arange(256) * 257)
    assert clipped == 0


@pytest.mark.parametrize("kind", ["float32", "float64", "uint16", "audio"])
def test_quantize_strips_and_workers(kind):
    strip = media._QUANTIZE_STRIP
    if kind == "audio":
        x = _float_input((3 * strip + 11, 2), np.float32, 1)
        lo, hi, scale, dtype = -32768, 32767, 32768.0, np.int16
    elif kind == "uint16":
        x = np.random.default_rng(2).integers(0, 65536, (700, 401, 3), dtype=np.uint16)
        lo, hi, scale, dtype = 0, 255, 255 / 65535, np.uint8
    else:
        x = _float_input((700, 401, 3), np.dtype(kind).type, 3)
        lo, hi, scale, dtype = 0, 255, 255.0, np.uint8
    assert x.size > 3 * strip, "premise: several strips"
    before = x.tobytes()
    out1, c1 = quantize(x, lo, hi, scale, dtype, workers=1)
    out2, c2 = quantize(x, lo, hi, scale, dtype, workers=2)
    expected, n = ref_quantize(x, lo, hi, scale, dtype)
    np.testing.assert_array_equal(out1, expected)
    np.testing.assert_array_equal(out2, expected)
    assert c1 == c2 == n
    assert x.tobytes() == before, "input changed"


@pytest.mark.parametrize("fdtype", [np.float32, np.float64])
def test_quantize_huge_finite_values_clip_to_the_top(fdtype):
    """A finite value far above the range is clipped to ``hi`` (it is not NaN or Inf),
    even where value x scale overflows the float type."""
    big = np.finfo(fdtype).max / 2
    x = np.array([[big, -big, 0.5]], fdtype)
    with np.errstate(over="ignore"):
        out, clipped = quantize(x, 0, 255, 255.0, np.uint8)
    np.testing.assert_array_equal(out, [[255, 0, 128]])
    assert clipped == 2


def test_quantize_empty():
    out, clipped = quantize(np.zeros((0, 3), np.float32), 0, 255, 255.0, np.uint8)
    assert out.shape == (0, 3) and out.dtype == np.uint8 and clipped == 0


# ------------------------------------------------------------------ 8. Media samples


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_media_keeps_integer_samples(tmp_path, dtype, mode):
    c = MODES[mode]
    arr = random_image(13, 8, c, dtype, seed=c)
    src = write_png(tmp_path / "in.png", arr if c > 1 else arr[:, :, 0])
    m = load_media(src)
    assert m.samples.dtype == dtype and m.samples.shape == (13, 8, c)
    np.testing.assert_array_equal(m.samples, arr)
    top = top_of(dtype)
    assert m.scale == 1.0 / top and m.bits == 8 * np.dtype(dtype).itemsize
    data = m.data
    assert data.dtype == np.float32 and data.shape == arr.shape
    expected = arr.astype(np.float32) * np.float32(1.0 / top)
    assert data.tobytes() == expected.tobytes(), "samples x scale in float32"
    assert m.data is data, "made once"


def test_media_float_samples_are_their_own_data():
    x = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    m = Media(x, "image", "NPY")
    assert m.scale == 1.0 and m.data is x
