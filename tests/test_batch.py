"""Many inputs in one call: read-ahead of the next file, errors in order, one check of the inputs.

The runner decodes the next image while the current one is filtered; none of
that may change what a user sees: every input loaded once, failures reported
in input order and at their turn, results identical to one-file calls.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage

from conftest import rand_u8, read_png, run, run_main, write_png


def _blur_ref(a: np.ndarray) -> np.ndarray:
    ref = ndimage.gaussian_filter(a.astype(np.float64) / 255, (1.5, 1.5, 0), mode="reflect",
                                  truncate=4.0)
    return np.clip(np.rint(ref * 255), 0, 255)


def test_batch_loads_each_input_once_and_matches_references(tmp_path, monkeypatch, capsys):
    from pwfilter import media

    arrays = [rand_u8((20 + i, 30, 3), seed=i) for i in range(6)]
    paths = [write_png(tmp_path / f"p{i}.png", a) for i, a in enumerate(arrays)]
    seen: list[str] = []
    real = media.load_media

    def counting(source, **kw):
        seen.append(os.path.basename(str(source)))
        return real(source, **kw)

    monkeypatch.setattr(media, "load_media", counting)
    status, _out, err = run_main(capsys, "blur", *paths, "--sigma", "1.5", "-o",
                                 str(tmp_path / "out") + "/", "--jobs", "1")  # in-process
    assert status == 0, err
    assert sorted(seen) == sorted(f"p{i}.png" for i in range(6))
    for i, a in enumerate(arrays):
        got = read_png(tmp_path / "out" / f"p{i}.png").astype(np.float64)
        assert np.abs(got - _blur_ref(a)).max() <= 1


def test_failures_are_reported_in_order_at_their_turn(tmp_path):
    """A corrupt file (read ahead) and an existing output (refused before reading) in the
    middle of a batch: both reported in input order, the others written, exit 1."""
    a = rand_u8((12, 14, 3), seed=1)
    good1 = write_png(tmp_path / "a.png", a)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    taken = write_png(tmp_path / "c.png", a)
    good2 = write_png(tmp_path / "d.png", a)
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.png").write_bytes(b"keep me")
    r = run("blur", good1, bad, taken, good2, "-o", str(out) + "/", "--sigma", "1.5")
    assert r.code == 1
    errors = [line for line in r.stderr_lines if line.startswith("pwfilter: error:")]
    assert "b.png" in errors[0] and "c.png" in errors[1] and "2 of 4" in errors[2], r.stderr
    assert (out / "c.png").read_bytes() == b"keep me"
    for name in ("a.png", "d.png"):
        got = read_png(out / name).astype(np.float64)
        assert np.abs(got - _blur_ref(a)).max() <= 1
    assert not (out / "b.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "d.png"]


def test_many_inputs_against_one_output_folder_checked_quickly(tmp_path):
    """Writing over an input is refused in a batch too (the inputs' identities are
    gathered once), here through a hard link in the output folder."""
    a = rand_u8((8, 9, 3), seed=2)
    paths = [write_png(tmp_path / f"i{i}.png", a) for i in range(30)]
    out = tmp_path / "o"
    out.mkdir()
    os.link(paths[7], out / "i7.png")
    r = run("blur", *paths, "-o", str(out) + "/", "--overwrite")
    assert r.code == 1
    assert any("i7.png: refusing to write over a file this command reads" in line
               for line in r.stderr_lines), r.stderr
    assert len(list(out.iterdir())) == 30
    np.testing.assert_array_equal(read_png(paths[7]), a)
