"""Blocks of an extended image (pwfilter.blocks) and FFT row blocks (pwfilter.spectral).

References: ``numpy.pad`` for the boundary rules (repeated as far as needed),
``scipy.ndimage.convolve`` for block-wise FFT convolution.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pwfilter import engine, parallel, spectral
from pwfilter.blocks import boundary_index, fill_block

NUMPY_PAD = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
             "zero": "constant"}
NDIMAGE_MODE = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest", "wrap": "wrap",
                "zero": "constant"}


@pytest.mark.parametrize("boundary", sorted(NUMPY_PAD))
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_boundary_index_is_numpy_pad_repeated(n, boundary):
    """Positions far past both ends (pads of 4n) map as numpy.pad extends."""
    pad = 4 * n + 3
    values = np.arange(1, n + 1)  # 1-based, so that zero padding shows as 0
    want = np.pad(values, pad, mode=NUMPY_PAD[boundary])
    idx = boundary_index(np.arange(-pad, n + pad), n, boundary)
    got = np.where(idx >= 0, values[np.maximum(idx, 0)], 0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("boundary", sorted(NUMPY_PAD))
@pytest.mark.parametrize("first_row, rows", [(-5, 3), (-2, 9), (3, 4), (6, 8), (-20, 40)])
def test_fill_block_is_a_window_of_the_padded_image(first_row, rows, boundary):
    """A block is rows [first_row, first_row + rows) of the image padded by the rule,
    columns extended alike; integers are scaled on the way; the rest of the buffer
    is left alone."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    before, after = 3, 6
    pad = 40
    padded = np.pad(x.astype(np.float64) / 255, ((pad, pad), (before, after), (0, 0)),
                    mode=NUMPY_PAD[boundary])
    want = padded[pad + first_row: pad + first_row + rows]
    out = np.full((rows + 2, 5 + before + after + 3, 3), -7.0, np.float32)
    fill_block(x, first_row, rows, (before, after), boundary, 1 / 255, out)
    np.testing.assert_allclose(out[:rows, :5 + before + after], want, rtol=0, atol=1e-7)
    assert (out[rows:] == -7).all() and (out[:, 5 + before + after:] == -7).all()


@pytest.mark.parametrize("boundary", sorted(NDIMAGE_MODE))
@pytest.mark.parametrize("rows", [1, 4, 13, 100])
def test_fft_in_row_blocks_equals_ndimage(rows, boundary):
    """Any block height gives the whole image's result: blocks see real rows inside the
    image and the boundary rule only beyond it."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((29, 17, 2)).astype(np.float32)
    k = rng.standard_normal((5, 3)).astype(np.float32)
    g = engine.geometry(x.shape, k.shape, "same", 4)
    y = spectral.fft_image(x, k, g, boundary, 1.0, rows, 2, np.float32)
    ref = np.stack([ndimage.convolve(x[..., c].astype(np.float64), k.astype(np.float64),
                                     mode=NDIMAGE_MODE[boundary]) for c in range(2)], -1)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_image_block_rows_bounds_memory_and_covers_the_kernel():
    """Blocks are at least three kernel heights (or the whole image), and a block's
    buffers stay within engine.BLOCK_BYTES unless the kernel alone needs more."""
    for shape, k in (((3000, 4000, 3), 161), ((3000, 4000, 3), 15), ((50, 60, 1), 9)):
        g = engine.geometry(shape, (k, k), "same", 4)
        rows = engine.image_block_rows(g)
        assert rows == g.out_shape[0] or rows >= min(3 * (k - 1), g.out_shape[0]) // 2
        assert rows == g.out_shape[0] or \
            spectral.image_block_memory(rows, g) <= engine.BLOCK_BYTES


def test_parallel_run_keeps_order_and_propagates_errors():
    assert parallel.run(lambda i: i * i, range(50), 4) == [i * i for i in range(50)]
    assert parallel.run(lambda i: i + 1, [3], 4) == [4]

    def boom(i):
        if i == 7:
            raise ValueError("seven")
        return i

    with pytest.raises(ValueError, match="seven"):
        parallel.run(boom, range(20), 3)
