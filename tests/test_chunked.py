"""Images bigger than memory: chunked results equal whole-image results.

Two references: the whole-image path (itself checked against SciPy in
test_engine), and here directly ``scipy.ndimage.convolve`` with the matching
mode, so a chunking bug that the whole-image path shared could not hide.
Files are small; ``--chunk`` forces the chunked path, ``--max-memory`` makes
it the automatic choice.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from conftest import ROOT, rand_u8, rand_u16, run, snapshot
from pwfilter import chunked, engine, ops, regions
from pwfilter.stages import Chain, Stage

SCIPY_MODE = {"reflect": "reflect", "mirror": "mirror", "nearest": "nearest", "wrap": "wrap",
              "zero": "constant"}


def smooth(shape, seed=0) -> np.ndarray:
    """Values in [0, 1] with structure at every scale (edges matter for boundaries)."""
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32)


def kernel(shape, seed=1, normalized=True) -> np.ndarray:
    k = np.random.default_rng(seed).random(shape).astype(np.float32) - 0.2
    return k / k.sum() if normalized else k


def chunked_result(chain: Chain, image: np.ndarray, chunk, runner=None) -> np.ndarray:
    job = chunked.make_job(chain, regions.ArraySource(image), chunk, np.float32)
    runner = runner or chunked.LocalRunner(2)
    rows = [np.concatenate([p for _, _, p in pieces], axis=1)
            for _, _, pieces, _ in chunked.output_bands(job, runner)]
    return np.concatenate(rows, axis=0)


def whole_result(chain: Chain, image: np.ndarray) -> np.ndarray:
    y, _ = chain.run(image)
    return y


# ------------------------------------------------------------------ the index rule


@pytest.mark.parametrize("boundary", engine.BOUNDARIES)
@pytest.mark.parametrize("pad", [(0, 0), (2, 1), (7, 9), (12, 0)])
def test_padded_index_is_np_pad_of_the_whole_axis(boundary, pad):
    n = 5
    values = np.arange(10, 10 + n)
    mode = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
            "zero": "constant"}[boundary]
    want = np.pad(values, pad, mode=mode)
    idx = chunked.padded_index(n, pad, boundary)
    got = np.where(idx >= 0, values[np.clip(idx, 0, n - 1)], 0)
    assert np.array_equal(got, want)


def test_take_by_slices_equals_numpy_take():
    a = np.random.default_rng(0).random((40, 30, 3))
    rng = np.random.default_rng(1)
    cases = [np.r_[3, 2, 1, 0, 0, 1, 2, 3], np.r_[29, 29, 0, 1, 2], np.r_[27, 28, 29, 0, 1],
             np.r_[5], np.r_[2, 1, 0, 1, 2, 3, 3, 2]]
    cases += [rng.integers(0, 30, rng.integers(1, 25)) for _ in range(200)]
    for pos in cases:
        assert np.array_equal(chunked._take(a, pos, 1), a.take(pos, 1))
        assert np.array_equal(chunked._take(a, pos, 0), a.take(pos, 0))


# ------------------------------------------------------------------ every boundary x mode


@pytest.mark.parametrize("boundary", engine.BOUNDARIES)
@pytest.mark.parametrize("mode", ["same", "full", "valid"])
@pytest.mark.parametrize("kshape", [(5, 5), (4, 6), (2, 7)])
def test_every_boundary_and_mode_equals_the_whole_image(boundary, mode, kshape):
    image = smooth((37, 53, 3))
    chain = Chain((Stage("convolve", "image", 3, kernel=kernel(kshape), mode=mode,
                         boundary=boundary),))
    want = whole_result(chain, image)
    for chunk in (7, (16, 11), 100):  # chunks that do not divide the image, and one chunk
        got = chunked_result(chain, image, chunk)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"chunk {chunk}")


@pytest.mark.parametrize("boundary", engine.BOUNDARIES)
def test_same_mode_matches_scipy_directly(boundary):
    """Independent of the whole-image path: ndimage.convolve with the same extension
    (an odd kernel: ndimage's origin convention is then the same as ours)."""
    image = smooth((41, 29, 1))
    k = kernel((7, 5), seed=3)
    chain = Chain((Stage("convolve", "image", 1, kernel=k, boundary=boundary),))
    got = chunked_result(chain, image, 9)[:, :, 0]
    want = ndimage.convolve(image[:, :, 0].astype(np.float64), k.astype(np.float64),
                            mode=SCIPY_MODE[boundary], cval=0.0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_wrap_takes_the_opposite_edge_of_the_image_not_of_the_chunk():
    """dask-image's map_overlap wraps within the chunk (its issue #242): a bright column
    at the image's right edge must show up at the left edge's output, and nowhere
    inside the image's interior chunk borders."""
    image = np.zeros((24, 24, 1), np.float32)
    image[:, -1] = 1.0
    k = np.zeros((1, 3), np.float32)
    k[0, 2] = 1.0  # y[j] = x[j - 1]: the left edge reads the wrapped right column
    chain = Chain((Stage("convolve", "image", 1, kernel=k, boundary="wrap"),))
    got = chunked_result(chain, image, 8)[:, :, 0]
    assert np.all(got[:, 0] == 1.0)
    assert np.all(got[:, 8] == 0.0) and np.all(got[:, 16] == 0.0)


def test_kernel_larger_than_the_chunk_and_the_image():
    image = smooth((13, 17, 2))
    for boundary in engine.BOUNDARIES:
        chain = Chain((Stage("convolve", "image", 2, kernel=kernel((31, 40)),
                             boundary=boundary),))
        np.testing.assert_allclose(chunked_result(chain, image, 4), whole_result(chain, image),
                                   atol=1e-5, err_msg=boundary)


def test_per_channel_kernels_and_separable_blur():
    image = smooth((50, 45, 3))
    per_channel = np.stack([kernel((5, 5), seed=s) for s in range(3)])
    for k in (per_channel, ops.blur_kernel("gaussian", 2, sigma=2.5)):
        chain = Chain((Stage("c", "image", 3, kernel=k, boundary="mirror"),))
        np.testing.assert_allclose(chunked_result(chain, image, 12),
                                   whole_result(chain, image), atol=1e-5)


def test_remix_changing_the_channel_count_and_a_two_stage_chain():
    image = smooth((33, 47, 3))
    gray = ops.Remix(np.array([[0.299, 0.587, 0.114]], np.float32), None, False)
    remix = Chain((Stage("remix", "image", 3, remix=gray),))
    np.testing.assert_allclose(chunked_result(remix, image, 10), whole_result(remix, image),
                               atol=1e-6)
    two = Chain((Stage("blur", "image", 3, kernel=kernel((5, 4)), boundary="reflect"),
                 Stage("remix", "image", 3, remix=gray),
                 Stage("convolve", "image", 1, kernel=kernel((3, 6), seed=5),
                       boundary="wrap", mode="full")))
    got = chunked_result(two, image, (9, 13))
    assert got.shape == (33 + 2, 47 + 5, 1)
    np.testing.assert_allclose(got, whole_result(two, image), atol=1e-5)


def test_normalize_scales_by_the_whole_image_peak():
    image = smooth((30, 30, 1)) * 0.25
    chain = Chain((Stage("c", "image", 1, kernel=kernel((3, 3), normalized=False)),),
                  normalize=True)
    got = chunked_result(chain, image, 7)
    np.testing.assert_allclose(got, whole_result(chain, image), atol=1e-5)
    assert np.isclose(np.abs(got).max(), 1.0)


def test_on_a_local_dask_cluster():
    distributed = pytest.importorskip("distributed")
    image = smooth((40, 36, 3))
    chain = Chain((Stage("convolve", "image", 3, kernel=kernel((6, 5)), boundary="wrap"),))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        runner = chunked.ClusterRunner(lambda: contextlib.nullcontext(client))
        got = chunked_result(chain, image, 11, runner)
        ran_on = set(client.run(lambda: 1))
    assert len(ran_on) == 2
    np.testing.assert_allclose(got, whole_result(chain, image), atol=1e-5)


# ------------------------------------------------------------------ files, through the CLI


def tiled(path, arr, tile=(32, 32), **kw):
    tifffile.imwrite(path, arr, tile=tile, photometric="rgb" if arr.ndim == 3 and
                     arr.shape[2] >= 3 else "minisblack", **kw)
    return path


@pytest.mark.parametrize("kind", ["u8", "u16", "f32", "striped", "bigtiff"])
def test_chunked_tiff_equals_the_whole_image_run(tmp_path, kind):
    shape = (150, 170, 3)
    arr = {"u8": rand_u8(shape), "u16": rand_u16(shape), "f32": smooth(shape),
           "striped": rand_u8(shape, seed=4), "bigtiff": rand_u8(shape, seed=5)}[kind]
    src = tmp_path / "in.tif"
    if kind == "striped":
        tifffile.imwrite(src, arr, rowsperstrip=16, photometric="rgb")
    else:
        tiled(src, arr, bigtiff=kind == "bigtiff")
    assert tifffile.TiffFile(src).is_bigtiff == (kind == "bigtiff")
    whole = run("blur", src, "--sigma", "2", "-o", tmp_path / "whole.tif")
    parts = run("blur", src, "--sigma", "2", "-o", tmp_path / "parts.tif", "--chunk", "40",
                "-v")
    assert whole.code == 0 and parts.code == 0, parts.stderr
    assert "chunked (--chunk 40)" in parts.stderr
    a, b = tifffile.imread(tmp_path / "parts.tif"), tifffile.imread(tmp_path / "whole.tif")
    assert a.dtype == arr.dtype and a.shape == arr.shape
    assert tifffile.TiffFile(tmp_path / "parts.tif").pages.first.is_tiled
    if kind == "f32":
        np.testing.assert_allclose(a, b, atol=1e-5)
    else:
        assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 1
    ref = ndimage.gaussian_filter(arr.astype(np.float64), (2, 2, 0), mode="reflect",
                                  truncate=4.0)
    assert np.abs(a.astype(np.float64) - ref).max() <= (1e-4 if kind == "f32" else 1.0)


def test_memory_budget_chooses_chunks_and_says_why(tmp_path):
    src = tiled(tmp_path / "in.tif", rand_u8((200, 220, 3)))
    small = run("blur", src, "-o", tmp_path / "small.tif", "--max-memory", "1M", "-v")
    assert small.code == 0, small.stderr
    assert "chunked (in memory it would need about" in small.stderr
    assert "more than the limit of 1.0 MiB" in small.stderr
    roomy = run("blur", src, "-o", tmp_path / "roomy.tif", "-v")
    assert "in memory (about" in roomy.stderr
    a = tifffile.imread(tmp_path / "small.tif").astype(int)
    assert np.abs(a - tifffile.imread(tmp_path / "roomy.tif")).max() <= 1


def test_every_command_runs_chunked(tmp_path):
    src = tiled(tmp_path / "in.tif", rand_u8((90, 100, 3), seed=2))
    np.save(tmp_path / "k.npy", kernel((4, 5)))
    commands = {
        "convolve": ["convolve", src, tmp_path / "k.npy", "--boundary", "wrap"],
        "remix": ["remix", src, "--matrix", "0.299 0.587 0.114"],
        "dsconv": ["dsconv", src, "--depthwise", "box:1", "--pointwise", "0.5 0.5 0"],
        "chain": ["chain", src, "--", "blur", "--sigma", "1.5", "+", "remix", "--matrix",
                  "sepia"],
    }
    for name, args in commands.items():
        stages = args[args.index("--"):] if "--" in args else []
        args = args[:len(args) - len(stages)]
        whole = run(*args, "-o", tmp_path / f"{name}.w.tif", *stages)
        parts = run(*args, "-o", tmp_path / f"{name}.c.tif", "--chunk", "32", *stages)
        assert whole.code == 0 and parts.code == 0, (name, parts.stderr)
        a = tifffile.imread(tmp_path / f"{name}.c.tif").astype(int)
        b = tifffile.imread(tmp_path / f"{name}.w.tif").astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name


def test_npy_and_zarr_in_and_out(tmp_path):
    zarr = pytest.importorskip("zarr")
    arr = smooth((70, 80, 3))
    np.save(tmp_path / "in.npy", arr)
    whole = run("blur", tmp_path / "in.npy", "-o", tmp_path / "w.npy")
    parts = run("blur", tmp_path / "in.npy", "-o", tmp_path / "c.npy", "--chunk", "24")
    assert whole.code == 0 and parts.code == 0, parts.stderr
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), np.load(tmp_path / "w.npy"),
                               atol=1e-5)
    to_zarr = run("blur", tmp_path / "in.npy", "-o", tmp_path / "c.zarr", "--chunk", "24")
    assert to_zarr.code == 0, to_zarr.stderr
    z = zarr.open(str(tmp_path / "c.zarr"), mode="r")
    np.testing.assert_allclose(z[:], np.load(tmp_path / "w.npy"), atol=1e-5)
    back = run("blur", tmp_path / "c.zarr", "-o", tmp_path / "twice.npy")
    assert back.code == 0, back.stderr
    again = run("blur", tmp_path / "w.npy", "-o", tmp_path / "twice_ref.npy")
    assert again.code == 0, again.stderr
    np.testing.assert_allclose(np.load(tmp_path / "twice.npy"),
                               np.load(tmp_path / "twice_ref.npy"), atol=1e-5)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".pwfilter")]


def test_ome_zarr_full_resolution_level_channel_first(tmp_path):
    zarr = pytest.importorskip("zarr")
    arr = rand_u8((3, 60, 50), seed=7)  # OME-Zarr stores (c, y, x)
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=2)
    root.create_array("0", data=arr, chunks=(3, 32, 32))
    root.create_array("1", data=arr[:, ::2, ::2], chunks=(3, 32, 32))
    root.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
        {"name": "x", "type": "space"}], "datasets": [{"path": "0"}, {"path": "1"}]}]
    info = run("info", tmp_path / "img.zarr")
    assert info.code == 0 and "50x60 RGB 8-bit" in info.stdout.decode(), info.stderr
    out = run("remix", tmp_path / "img.zarr", "--matrix", "1 0 0", "-o", tmp_path / "r.npy")
    assert out.code == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "r.npy")[:, :, 0], arr[0] / 255, atol=1e-6)


def test_big_png_is_refused_with_the_tiled_tiff_advice(tmp_path):
    import imagecodecs

    (tmp_path / "big.png").write_bytes(imagecodecs.png_encode(rand_u8((400, 400, 3))))
    r = run("blur", tmp_path / "big.png", "--max-memory", "1M")
    assert r.code == 1
    [line] = r.stderr_lines
    assert "tiled TIFF" in line and "vips tiffsave" in line
    to_png = run("blur", tiled(tmp_path / "t.tif", rand_u8((64, 64, 3))), "--chunk", "32",
                 "-o", tmp_path / "out.png")
    assert to_png.code == 1 and "tiled TIFF, Zarr or .npy" in to_png.stderr
    assert not (tmp_path / "out.png").exists()


def test_info_reads_no_pixels(tmp_path):
    """The tile data are garbage: info still gives shape, tiling and type; a filter names
    the corrupt tile in one line and leaves no output."""
    src = tiled(tmp_path / "in.tif", rand_u8((96, 64, 3)), compression="zlib")
    page = tifffile.TiffFile(src).pages.first
    offset, count = int(page.dataoffsets[4]), int(page.databytecounts[4])
    data = bytearray(src.read_bytes())
    data[offset:offset + count] = b"\x00" * count
    src.write_bytes(bytes(data))
    info = run("info", src, "--json")
    assert info.code == 0, info.stderr
    import json

    facts = json.loads(info.stdout)
    assert (facts["width"], facts["height"], facts["channels"]) == (64, 96, 3)
    assert facts["tiling"] == "tiles of 32x32" and facts["dtype"] == "uint8"
    (tmp_path / "out").mkdir()
    bad = run("blur", src, "--chunk", "32", "-o", tmp_path / "out" / "x.tif")
    assert bad.code == 1
    [line] = bad.stderr_lines
    assert line.startswith(f"pwfilter: error: {src}: corrupt TIFF tile 4"), line
    assert snapshot(tmp_path / "out") == {}


def test_interrupt_leaves_no_output_and_no_temporary(tmp_path):
    src = tiled(tmp_path / "in.tif", rand_u8((3000, 4000, 3)), tile=(256, 256))
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for target in ("x.tif", "x.zarr"):
        if target.endswith("zarr"):
            pytest.importorskip("zarr")
        proc = subprocess.Popen([sys.executable, "-m", "pwfilter", "blur", str(src), "--sigma",
                                 "8", "--chunk", "64", "-v", "-o", str(out / target)],
                                stderr=subprocess.PIPE, env=env)
        first = proc.stderr.readline().decode()
        assert "chunked (--chunk 64)" in first, first
        time.sleep(0.3)  # the job takes ~1.5 s from here
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert snapshot(out) == {}, target


@pytest.mark.parametrize("boundary", ["reflect", "wrap"])
def test_cluster_runs_the_chunks_through_the_cli(tmp_path, boundary):
    pytest.importorskip("distributed")
    src = tiled(tmp_path / "in.tif", rand_u8((120, 90, 3), seed=9))
    local = run("blur", src, "--sigma", "3", "--boundary", boundary, "--chunk", "32", "-o",
                tmp_path / "local.tif")
    remote = run("blur", src, "--sigma", "3", "--boundary", boundary, "--chunk", "32", "-o",
                 tmp_path / "remote.tif", "--scheduler", "local", "-v", timeout=180)
    assert local.code == 0 and remote.code == 0, remote.stderr
    assert "12 chunks of 32x32" in remote.stderr and "as Dask tasks on the cluster" in \
        remote.stderr
    assert np.array_equal(tifffile.imread(tmp_path / "local.tif"),
                          tifffile.imread(tmp_path / "remote.tif"))


def test_grid_of_boundaries_for_a_chain_of_two():
    image = smooth((21, 26, 1))
    k1, k2 = kernel((5, 4), seed=2), kernel((3, 7), seed=3)
    for b1, b2 in itertools.product(engine.BOUNDARIES, repeat=2):
        chain = Chain((Stage("a", "image", 1, kernel=k1, boundary=b1),
                       Stage("b", "image", 1, kernel=k2, boundary=b2)))
        np.testing.assert_allclose(chunked_result(chain, image, 6), whole_result(chain, image),
                                   atol=1e-5, err_msg=f"{b1} then {b2}")


def test_tiff_writer_tiles_and_bigtiff(tmp_path, monkeypatch):
    """Rows of chunks of any height become 256x256 tiles; past the 4 GB mark (lowered here)
    the file is a BigTIFF; the image reads back exactly."""
    arr = rand_u8((600, 530, 3), seed=11)

    def bands(rows):
        for r0 in range(0, 600, rows):
            band = arr[r0:r0 + rows]
            yield [(c0, min(c0 + 200, 530), band[:, c0:c0 + 200]) for c0 in range(0, 530, 200)]

    for rows, big in ((100, False), (512, True)):
        monkeypatch.setattr(regions, "BIGTIFF_ABOVE", 0 if big else 2 ** 32)
        path = tmp_path / f"{rows}.tif"
        regions.write_tiff(str(path), arr.shape, np.uint8, bands(rows), compression=None,
                           has_alpha=False)
        with tifffile.TiffFile(path) as tif:
            assert tif.is_bigtiff == big
            page = tif.pages.first
            assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
            assert np.array_equal(page.asarray(), arr)


def test_zarr_output_rules(tmp_path, capsys, monkeypatch):
    """A Zarr store is one output: an existing one is refused without --overwrite and
    replaced with it (never written into); an in-memory result can be a store too; without
    the zarr package the error names the extra."""
    import imagecodecs

    from conftest import run_main

    pytest.importorskip("zarr")
    import zarr

    src = tiled(tmp_path / "in.tif", rand_u8((70, 60, 3), seed=12))
    first = run("blur", src, "--chunk", "32", "-o", tmp_path / "o.zarr")
    assert first.code == 0, first.stderr
    again = run("blur", src, "--chunk", "32", "-o", tmp_path / "o.zarr", "--sigma", "1")
    assert again.code == 1 and "o.zarr: exists (use --overwrite" in again.stderr
    forced = run("blur", src, "--chunk", "32", "-o", tmp_path / "o.zarr", "--sigma", "1",
                 "--overwrite")
    assert forced.code == 0, forced.stderr
    assert sorted(os.listdir(tmp_path / "o.zarr")) == ["c", "zarr.json"]
    ref = run("blur", src, "--sigma", "1", "-o", tmp_path / "ref.tif")
    assert ref.code == 0
    assert np.array_equal(zarr.open(str(tmp_path / "o.zarr"), mode="r")[:],
                          tifffile.imread(tmp_path / "ref.tif"))
    png = tmp_path / "in.png"
    png.write_bytes(imagecodecs.png_encode(rand_u8((40, 30, 3), seed=13)))
    whole = run("blur", png, "-o", tmp_path / "p.zarr", "--chunk", "16", "-v")
    assert whole.code == 0 and "--chunk ignored: a PNG is decoded whole" in whole.stderr
    as_png = run("blur", png, "-o", tmp_path / "p.png")
    assert np.array_equal(zarr.open(str(tmp_path / "p.zarr"), mode="r")[:],
                          imagecodecs.png_decode((tmp_path / "p.png").read_bytes()))
    assert as_png.code == 0
    monkeypatch.setitem(sys.modules, "zarr", None)
    code, _, err = run_main(capsys, "blur", src, "--chunk", "32", "-o", tmp_path / "n.zarr")
    assert code == 1
    assert err.strip().endswith('Zarr needs the zarr package: pip install "pwfilter[zarr]"')
    assert not (tmp_path / "n.zarr").exists()


def test_strips_are_decoded_once_and_a_giant_strip_is_refused(tmp_path):
    """A striped TIFF is cut in bands of whole strips; a strip too large to decode within
    the budget (one deflated strip for the whole image) is refused up front with advice."""
    arr = rand_u8((300, 200, 3), seed=14)
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, arr, rowsperstrip=48, compression="zlib", photometric="rgb")
    ok = run("blur", src, "--chunk", "40", "-v", "-o", tmp_path / "o.tif")
    assert ok.code == 0 and "chunks of 48x200" in ok.stderr, ok.stderr
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, np.zeros((3000, 4000, 3), np.uint8), rowsperstrip=3000,
                     compression="zlib", photometric="rgb")
    bad = run("blur", one, "--chunk", "64", "--max-memory", "40M", "-o", tmp_path / "x.tif")
    assert bad.code == 1
    [line] = bad.stderr_lines
    assert "strips of 3000x4000 pixels are decoded whole" in line and "tiled TIFF" in line
    assert not (tmp_path / "x.tif").exists()


def _patch_tag(data: bytes, tag: int, value: int) -> bytes:
    """A classic little-endian TIFF with the first directory's ``tag`` set to ``value``."""
    import struct

    ifd = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd)[0]
    out = bytearray(data)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] == tag:
            kind = struct.unpack_from("<H", data, at + 2)[0]
            struct.pack_into("<H" if kind == 3 else "<I", out, at + 8, value)
            return bytes(out)
    raise AssertionError(f"no tag {tag}")


@pytest.mark.parametrize("tag, value", [(322, 0), (323, 0), (256, 0), (257, 0), (322, 65535),
                                        (277, 7), (284, 2), (258, 12)])
def test_damaged_tiff_directories_are_one_line(tmp_path, tag, value):
    """Found by fuzzing the region reader: zero or absurd tile and image sizes, odd sample
    counts and layouts fail as one line, for info, the chunked and the in-memory path."""
    import io as _io

    buf = _io.BytesIO()
    tifffile.imwrite(buf, rand_u8((40, 36, 3)), tile=(16, 16), compression="zlib",
                     photometric="rgb")
    src = tmp_path / "bad.tif"
    src.write_bytes(_patch_tag(buf.getvalue(), tag, value))
    (tmp_path / "out").mkdir()
    for args in (["info", src], ["blur", src, "--chunk", "16", "-o", tmp_path / "out" / "c.tif"],
                 ["blur", src, "-o", tmp_path / "out" / "w.tif"]):
        r = run(*args)
        assert r.code in (0, 1), (args, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
        if r.code == 1:
            assert len(r.stderr_lines) == 1 and str(src) in r.stderr, r.stderr
    assert all(not n.startswith(".pwfilter") for n in os.listdir(tmp_path / "out"))


def test_threads_open_a_source_once(tmp_path):
    """Found by fuzzing: chunk threads racing to open a TIFF saw a half-opened source."""
    from concurrent.futures import ThreadPoolExecutor

    arr = rand_u8((64, 64, 3), seed=15)
    path = tiled(tmp_path / "t.tif", arr, tile=(16, 16), compression="zlib")
    for _ in range(20):
        src = regions.open_source(str(path), "t.tif", "TIFF")
        boxes = [(r, r + 16, c, c + 16) for r in range(0, 64, 16) for c in range(0, 64, 16)]
        with ThreadPoolExecutor(8) as pool:
            parts = list(pool.map(lambda b: src.read(*b), boxes))
        for (r0, r1, c0, c1), part in zip(boxes, parts):
            assert np.array_equal(part, arr[r0:r1, c0:c1])


def test_a_zarr_image_that_fits_is_filtered_in_memory_like_any_other(tmp_path):
    """A Zarr input within the memory limit runs whole, as a TIFF or .npy does: it may be
    written as PNG or to standard output, and its 8-bit result is the same whatever the
    container (Zarr, TIFF, PNG). Only --chunk (or the memory limit) chunks it."""
    zarr = pytest.importorskip("zarr")
    import imagecodecs

    arr = rand_u8((300, 400, 3), seed=21)
    z = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=arr.shape, dtype=arr.dtype,
                          chunks=(64, 64, 3))
    z[:] = arr
    tifffile.imwrite(tmp_path / "in.tif", arr)
    png = run("blur", tmp_path / "in.zarr", "--sigma", "2", "-o", tmp_path / "z.png", "-v")
    assert png.code == 0 and "in.zarr: in memory" in png.stderr, png.stderr
    ref = run("blur", tmp_path / "in.tif", "--sigma", "2", "-o", tmp_path / "t.png")
    assert ref.code == 0, ref.stderr
    expected = imagecodecs.png_decode((tmp_path / "t.png").read_bytes())
    assert np.array_equal(imagecodecs.png_decode((tmp_path / "z.png").read_bytes()), expected)
    exact = ndimage.gaussian_filter(arr.astype(np.float64), (2, 2, 0), mode="reflect",
                                    truncate=4.0)
    assert np.abs(expected - exact).max() <= 0.51 + 1e-6
    piped = run("blur", tmp_path / "in.zarr", "--sigma", "2", "-o", "-", "--format", "png")
    assert piped.code == 0 and imagecodecs.png_decode(piped.stdout).shape == arr.shape
    for source, target in (("in.zarr", "z.zarr"), ("in.tif", "t.zarr"),
                           ("in.zarr", "c.zarr")):
        extra = ["--chunk", "100"] if target == "c.zarr" else []
        r = run("blur", tmp_path / source, "--sigma", "2", "-o", tmp_path / target, *extra)
        assert r.code == 0, r.stderr
        assert np.array_equal(zarr.open(str(tmp_path / target), mode="r")[:], expected), target


def test_a_zarr_image_with_nan_is_refused_in_memory_and_in_chunks(tmp_path):
    zarr = pytest.importorskip("zarr")
    arr = smooth((40, 50, 3))
    arr[7, 9, 1] = np.nan
    z = zarr.create_array(store=str(tmp_path / "n.zarr"), shape=arr.shape, dtype=arr.dtype,
                          chunks=(16, 16, 3))
    z[:] = arr
    for extra in ([], ["--chunk", "16"]):
        r = run("blur", tmp_path / "n.zarr", "-o", tmp_path / "o.tif", *extra)
        assert r.code == 1 and r.stderr_lines == [
            f"pwfilter: error: {tmp_path / 'n.zarr'}: the array holds NaN or Inf values"]
        assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("layout", [{"tile": (64, 64)}, {"rowsperstrip": 32}])
def test_a_truncated_tiff_is_named_so_in_memory_as_in_chunks(tmp_path, layout):
    """The strip and tile table is checked against the file's size before any work, on
    both paths: a truncated TIFF is 'truncated', not a decoder's exception name."""
    src = tmp_path / "t.tif"
    tifffile.imwrite(src, rand_u8((300, 300, 3)), **layout)
    blob = src.read_bytes()
    src.write_bytes(blob[:len(blob) // 2])
    for extra in ([], ["--chunk", "128"]):
        r = run("blur", src, "-o", tmp_path / "o.tif", *extra)
        assert r.code == 1 and r.stderr_lines == [
            f"pwfilter: error: {src}: truncated TIFF (tile or strip data past the end of the "
            "file)"], (extra, r.stderr)
        assert sorted(os.listdir(tmp_path)) == ["t.tif"]
