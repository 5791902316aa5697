"""Where results go and how they are written: names, -o, overwrite, inputs, atomicity, streams.

Mostly through a real ``python -m pwfilter`` process; failure injection runs the
real entry point in-process so that a monkeypatch can break the writer.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys

import imagecodecs
import numpy as np
import pytest
import soundfile as sf

from conftest import (identity_matrix, invoke, rand_pcm, rand_u8, rand_u16, read_png, run,
                      run_main, snapshot, write_audio, write_png)
from pwfilter import imagefile
from pwfilter import media as media_mod
from pwfilter import output as output_mod
from pwfilter.errors import PwfilterError
from pwfilter.output import atomic_path, plan_output

ID3 = identity_matrix(3)


# ------------------------------------------------------------------ naming


def test_plan_output_names():
    assert plan_output(os.path.join("d", "photo.png"), "blur", None, None, False) == \
        os.path.join("d", "photo.blur.png")
    assert plan_output("photo.png", "blur", None, ".tif", False) == "photo.blur.tif"
    assert plan_output("a.b.wav", "remix", None, None, False) == "a.b.remix.wav"
    assert plan_output(os.path.join("d", "x.png"), "blur", "out/", None, True) == \
        os.path.join("out", "x.png")
    assert plan_output("x.png", "blur", "y.png", None, False) == "y.png"
    assert plan_output("x.png", "blur", "-", None, False) == "-"
    assert plan_output("-", "blur", None, None, False) == "-"
    with pytest.raises(PwfilterError):
        plan_output("x.png", "blur", "y.png", None, True)


def test_default_output_is_beside_the_input(tmp_path, rgb_png):
    src, arr = rgb_png
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    r = run("remix", src, "--matrix", ID3, cwd=elsewhere)
    assert r.code == 0, r.stderr
    out = tmp_path / "photo.remix.png"
    np.testing.assert_array_equal(read_png(out), arr)
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "photo.png", "photo.remix.png"]


def test_default_output_name_for_audio_and_blur(tmp_path, wav16):
    src, data = wav16
    r = run("blur", src, "--sigma", "1")
    assert r.code == 0, r.stderr
    info = sf.info(str(tmp_path / "voice.blur.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 2, "PCM_16")


def test_format_option_changes_the_suffix(tmp_path, rgb_png):
    src, arr = rgb_png
    r = run("remix", src, "--matrix", ID3, "--format", "npy")
    assert r.code == 0, r.stderr
    out = np.load(tmp_path / "photo.remix.npy")
    assert out.dtype == np.float32 and out.shape == arr.shape
    np.testing.assert_allclose(out, arr / 255.0, rtol=2**-23, atol=0)


def test_output_file(tmp_path, rgb_png):
    src, arr = rgb_png
    target = tmp_path / "sub" / "result.png"
    target.parent.mkdir()
    r = run("remix", src, "--matrix", ID3, "-o", target)
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(read_png(target), arr)
    assert not (tmp_path / "photo.remix.png").exists()
    assert sorted(os.listdir(target.parent)) == ["result.png"]


def test_output_suffix_picks_the_format(tmp_path):
    arr = rand_u16((6, 8, 3), seed=40)
    write_png(tmp_path / "in.png", arr)
    r = run("remix", tmp_path / "in.png", "--matrix", ID3, "-o", tmp_path / "out.tif")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(imagecodecs.tiff_decode((tmp_path / "out.tif").read_bytes()),
                                  arr)


@pytest.mark.parametrize("spelling", ["new/", "existing"])
def test_output_dir_for_several_inputs(tmp_path, spelling):
    a = rand_u8((5, 6, 3), seed=41)
    write_png(tmp_path / "a.png", a)
    pcm = rand_pcm(120, 2, 16, seed=42)
    write_audio(tmp_path / "b.wav", pcm, 8000, "PCM_16")
    if spelling == "existing":
        (tmp_path / "existing").mkdir()
    out_dir = tmp_path / spelling.rstrip("/")
    arg = str(out_dir) + ("/" if spelling.endswith("/") else "")
    r = run("blur", tmp_path / "a.png", tmp_path / "b.wav", "--sigma", "0.5", "-o", arg)
    assert r.code == 0, r.stderr
    assert sorted(os.listdir(out_dir)) == ["a.png", "b.wav"]
    assert read_png(out_dir / "a.png").shape == a.shape
    info = sf.info(str(out_dir / "b.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "PCM_16")
    # inputs untouched, no default-named outputs beside them
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a.png", "b.wav"]


def test_one_output_file_for_several_inputs_is_refused(tmp_path):
    write_png(tmp_path / "a.png", rand_u8((4, 4, 3)))
    write_png(tmp_path / "b.png", rand_u8((4, 4, 3), seed=1))
    before = snapshot(tmp_path)
    r = run("blur", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "c.png")
    assert r.code == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ overwrite rules


def test_existing_output_is_not_overwritten(tmp_path, rgb_png):
    src, _ = rgb_png
    existing = tmp_path / "photo.remix.png"
    existing.write_bytes(b"precious bytes")
    before = snapshot(tmp_path)
    r = run("remix", src, "--matrix", ID3)
    assert r.code == 1
    assert len(r.stderr_lines) == 1 and r.stderr_lines[0].startswith("pwfilter: error:")
    assert "photo.remix.png" in r.stderr and "--overwrite" in r.stderr
    assert snapshot(tmp_path) == before


def test_existing_output_named_with_o_is_not_overwritten(tmp_path, wav16):
    src, _ = wav16
    target = tmp_path / "keep.wav"
    target.write_bytes(b"RIFF old")
    before = snapshot(tmp_path)
    r = run("remix", src, "--matrix", identity_matrix(2), "-o", target)
    assert r.code == 1 and "Traceback" not in r.stderr
    assert snapshot(tmp_path) == before


def test_overwrite_replaces(tmp_path, rgb_png):
    src, arr = rgb_png
    existing = tmp_path / "photo.remix.png"
    existing.write_bytes(b"old bytes")
    r = run("remix", src, "--matrix", ID3, "--overwrite")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(read_png(existing), arr)
    assert sorted(os.listdir(tmp_path)) == ["photo.png", "photo.remix.png"]


def _refused_over_input(tmp_path, r, before, name):
    assert r.code == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("pwfilter: error:") and name in r.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_never_writes_over_the_input(tmp_path, rgb_png, overwrite):
    src, _ = rgb_png
    before = snapshot(tmp_path)
    r = run("remix", src, "--matrix", ID3, "-o", src, *overwrite)
    _refused_over_input(tmp_path, r, before, "photo.png")


@pytest.mark.parametrize("spelling", ["./photo.png", "sub/../photo.png"])
def test_never_writes_over_the_input_spelled_otherwise(tmp_path, rgb_png, spelling):
    src, _ = rgb_png
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path)
    r = run("remix", "photo.png", "--matrix", ID3, "-o", spelling, "--overwrite", cwd=tmp_path)
    _refused_over_input(tmp_path, r, before, "photo.png")


def test_never_writes_over_the_input_through_a_symlink(tmp_path, rgb_png):
    src, _ = rgb_png
    link = tmp_path / "link.png"
    link.symlink_to(src.name)
    before = snapshot(tmp_path)
    r = run("remix", src, "--matrix", ID3, "-o", link, "--overwrite")
    _refused_over_input(tmp_path, r, before, "link.png")
    assert link.is_symlink() and os.readlink(link) == src.name
    # and the other way round: the input is the link, the output the real file
    r = run("remix", link, "--matrix", ID3, "-o", src, "--overwrite")
    _refused_over_input(tmp_path, r, before, "photo.png")


def test_never_writes_over_the_input_through_a_hard_link(tmp_path, rgb_png):
    src, _ = rgb_png
    os.link(src, tmp_path / "hard.png")
    before = snapshot(tmp_path)
    r = run("remix", src, "--matrix", ID3, "-o", tmp_path / "hard.png", "--overwrite")
    _refused_over_input(tmp_path, r, before, "hard.png")


# ------------------------------------------------------------------ atomic writes


def _partial_writer(exc):
    def write_media(media, target, fmt, options=None):
        assert isinstance(target, str), "the CLI must write to a temporary path"
        with open(target, "wb") as fh:
            fh.write(b"\x89PNG\r\n\x1a\n partial")
        raise exc
    return write_media


@pytest.mark.parametrize("exc,code", [
    (OSError(28, "No space left on device"), 1),
    (PwfilterError("encoder failed"), 1),
    (KeyboardInterrupt(), 130),
])
def test_failed_write_leaves_nothing(tmp_path, rgb_png, monkeypatch, capsys, exc, code):
    src, _ = rgb_png
    before = snapshot(tmp_path)
    monkeypatch.setattr(media_mod, "write_media", _partial_writer(exc))
    status, _out, err = run_main(capsys, "remix", str(src), "--matrix", ID3)
    assert status == code
    assert "Traceback" not in err
    if code == 1:
        assert len(err.splitlines()) == 1 and err.startswith("pwfilter: error: ")
        assert "photo.remix.png" in err or "encoder failed" in err
    assert snapshot(tmp_path) == before, "no output and no temporary file may remain"


def test_disk_full_is_a_file_error_and_the_batch_goes_on(tmp_path, monkeypatch, capsys):
    """An OSError while writing one output names that file; the next input is still done."""
    a, b = rand_u8((5, 6, 3), seed=51), rand_u8((5, 6, 3), seed=52)
    write_png(tmp_path / "a.png", a)
    write_png(tmp_path / "b.png", b)
    real = media_mod.write_media
    calls = []

    def full_for_a(media, target, fmt, options=None):
        calls.append(target)
        if len(calls) == 1:  # inputs are processed in order: a.png first
            with open(target, "wb") as fh:
                fh.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(media, target, fmt, options)

    monkeypatch.setattr(media_mod, "write_media", full_for_a)
    status, _out, err = run_main(capsys, "remix", str(tmp_path / "a.png"),
                                 str(tmp_path / "b.png"), "--matrix", ID3, "--jobs", "1")
    assert status == 1 and "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith("pwfilter: error: ") and "a.remix.png" in first
    assert "No space left on device" in first and "internal error" not in first
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "b.remix.png"]
    np.testing.assert_array_equal(read_png(tmp_path / "b.remix.png"), b)


def test_failed_overwrite_keeps_the_old_file(tmp_path, rgb_png, monkeypatch, capsys):
    src, _ = rgb_png
    (tmp_path / "photo.remix.png").write_bytes(b"the old result")
    before = snapshot(tmp_path)
    monkeypatch.setattr(media_mod, "write_media", _partial_writer(OSError(5, "I/O error")))
    status, _out, err = run_main(capsys, "remix", str(src), "--matrix", ID3, "--overwrite")
    assert status == 1 and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_encoder_failure_through_the_runner(tmp_path, rgb_png, monkeypatch):
    """A failing codec inside the real write_media: nothing left behind."""
    src, _ = rgb_png
    before = snapshot(tmp_path)

    def broken_encode(*args, **kwargs):
        raise PwfilterError("simulated encoder failure")

    monkeypatch.setattr(imagefile, "encode_image", broken_encode)
    result = invoke("remix", src, "--matrix", ID3)
    assert result.return_value == 1
    assert result.stderr.startswith("pwfilter: error: ")
    assert str(src) in result.stderr and "simulated encoder failure" in result.stderr
    assert snapshot(tmp_path) == before


def test_atomic_path_keyboard_interrupt_leaves_nothing(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(target), False) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"half written")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


@pytest.fixture(params=["unnamed", "named"])
def temporaries(request, monkeypatch):
    """Both kinds of temporary file: unnamed (O_TMPFILE, where the system has it) and the
    named fallback."""
    if request.param == "unnamed":
        if not output_mod.unnamed_supported("."):
            pytest.skip("no O_TMPFILE here")
    else:
        def refuse(folder):
            raise OSError(95, "Operation not supported")
        monkeypatch.setattr(output_mod, "_open_unnamed", refuse)
    return request.param


def test_the_temporary_is_in_the_target_folder_and_unnamed_where_possible(tmp_path,
                                                                           temporaries):
    target = tmp_path / "out.bin"
    with atomic_path(str(target), False) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"data")
        during = os.listdir(tmp_path)
        assert os.stat(tmp).st_dev == os.stat(tmp_path).st_dev
    if temporaries == "unnamed":
        assert during == []
    else:
        assert len(during) == 1 and output_mod.TEMP_PATTERN.match(during[0])
        assert during[0].startswith(f".pwfilter-{os.getpid()}-")
    assert os.listdir(tmp_path) == ["out.bin"] and target.read_bytes() == b"data"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_254_byte_output_name_is_written(tmp_path, temporaries, overwrite):
    """The temporary's name must fit the 255-byte limit whatever the target's name."""
    target = tmp_path / ("n" * 250 + ".png")
    assert len(target.name.encode()) == 254
    if overwrite:
        target.write_bytes(b"old")
    with atomic_path(str(target), overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"new")
    assert os.listdir(tmp_path) == [target.name] and target.read_bytes() == b"new"


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path, temporaries):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".pwfilter-{pid}-abcd1234.tmp"
    alive = tmp_path / f".pwfilter-{os.getppid()}-abcd1234.tmp"  # a live process's
    other = tmp_path / f".photo.png.{pid}.tmp"  # not of pwfilter's pattern
    for p in (stale, alive, other):
        p.write_bytes(b"x")
    output_mod._swept.discard(os.path.realpath(tmp_path))
    with atomic_path(str(tmp_path / "out.bin"), False) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"data")
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, other.name, "out.bin"])


def test_atomic_path_keyboard_interrupt_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(str(target), True) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"new but unfinished")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["out.png"] and target.read_bytes() == b"old"


def test_the_interrupt_path_waits_for_a_folder_write_in_flight(tmp_path):
    """A folder output (Zarr) is written by another thread while the command waits: the
    interrupt path must not remove the folder while a write is under way, or the write
    recreates a part of it after the removal."""
    import threading

    target = str(tmp_path / "x.zarr")
    writing, removed = threading.Event(), threading.Event()
    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted), output_mod.atomic_dir(target, overwrite=False) as tmp:
        def write():
            with output_mod.folder_write():
                writing.set()
                removed.wait(0.5)  # a correct gate keeps the removal waiting this long
                os.makedirs(os.path.join(tmp, "c", "0"))
                with open(os.path.join(tmp, "c", "0", "0"), "wb") as fh:
                    fh.write(b"chunk")

        writer = threading.Thread(target=write)
        writer.start()
        writing.wait()
        remover = threading.Thread(target=lambda: (output_mod.remove_temporaries(),
                                                   removed.set()))
        remover.daemon = True
        remover.start()
        writer.join()
        remover.join(5)
        assert removed.is_set()
        assert os.listdir(tmp_path) == []
        # The interrupt path keeps the gate (its process exits): hand it back for the
        # tests that follow.
        output_mod._gate.release()
        raise Interrupted


def test_atomic_path_publishes_with_normal_permissions(tmp_path):
    target = tmp_path / "out.bin"
    old = os.umask(0o022)
    try:
        with atomic_path(str(target), False) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"complete")
    finally:
        os.umask(old)
    assert os.listdir(tmp_path) == ["out.bin"] and target.read_bytes() == b"complete"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_path_does_not_replace_a_file_that_appeared(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(PwfilterError, match="exists"):
        with atomic_path(str(target), False) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"mine")
            target.write_bytes(b"another writer's")
    assert os.listdir(tmp_path) == ["out.bin"] and target.read_bytes() == b"another writer's"


# ------------------------------------------------------------------ standard input and output


def test_stdin_to_stdout_png_blur(tmp_path, rgb_png):
    src, arr = rgb_png
    r = run("blur", "-", "--sigma", "1", "-o", "-", "--format", "png", stdin=src.read_bytes(),
            cwd=tmp_path)
    assert r.code == 0, r.stderr
    out = imagecodecs.png_decode(r.stdout)
    assert out.shape == arr.shape and out.dtype == np.uint8
    assert sorted(os.listdir(tmp_path)) == ["photo.png"]


def test_stdin_to_stdout_png_identity_is_exact(tmp_path):
    arr = rand_u16((7, 9, 4), seed=43)
    r = run("remix", "-", "--matrix", ID3, "-o", "-", "--format", "png",
            stdin=imagecodecs.png_encode(arr), cwd=tmp_path)
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(imagecodecs.png_decode(r.stdout), arr)
    assert os.listdir(tmp_path) == []


def test_stdin_without_o_goes_to_stdout(tmp_path):
    arr = rand_u8((5, 5, 3), seed=44)
    r = run("remix", "-", "--matrix", ID3, stdin=imagecodecs.png_encode(arr), cwd=tmp_path)
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(imagecodecs.png_decode(r.stdout), arr)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("subtype,bits", [("PCM_16", 16), ("PCM_24", 24)])
def test_stdin_to_stdout_wav(tmp_path, subtype, bits):
    data = rand_pcm(333, 2, bits, seed=45)
    buf = io.BytesIO()
    sf.write(buf, data, 12000, format="WAV", subtype=subtype)
    r = run("remix", "-", "--matrix", identity_matrix(2), "-o", "-", "--format", "wav",
            stdin=buf.getvalue(), cwd=tmp_path)
    assert r.code == 0, r.stderr
    info = sf.info(io.BytesIO(r.stdout))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == \
        ("WAV", subtype, 12000, 2, 333)
    out, _ = sf.read(io.BytesIO(r.stdout), dtype="int16" if bits == 16 else "int32",
                     always_2d=True)
    np.testing.assert_array_equal(out, data)
    assert os.listdir(tmp_path) == []


def test_stdin_wav_blur_to_stdout(tmp_path, wav16):
    src, data = wav16
    r = run("blur", "-", "--sigma", "2", "-o", "-", "--format", "wav", stdin=src.read_bytes())
    assert r.code == 0, r.stderr
    out, rate = sf.read(io.BytesIO(r.stdout), dtype="int16", always_2d=True)
    assert rate == 22050 and out.shape == data.shape


# ------------------------------------------------------------------ info


def test_info_json_image(tmp_path):
    write_png(tmp_path / "pic.png", rand_u16((5, 7, 4), seed=46))
    r = run("info", "--json", tmp_path / "pic.png")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["input"] == str(tmp_path / "pic.png")
    assert (d["kind"], d["format"], d["width"], d["height"], d["channels"], d["mode"],
            d["bits"]) == ("image", "PNG", 7, 5, 4, "RGBA", 16)


def test_info_json_wav(tmp_path):
    write_audio(tmp_path / "s.wav", rand_pcm(5513, 3, 24, seed=47), 22050, "PCM_24")
    r = run("info", "--json", tmp_path / "s.wav")
    assert r.code == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["kind"], d["format"], d["frames"], d["channels"], d["rate"], d["subtype"]) == \
        ("audio", "WAV", 5513, 3, 22050, "PCM_24")
    assert d["duration"] == pytest.approx(5513 / 22050, abs=1e-6)


def test_info_text_one_line_per_file(tmp_path):
    write_png(tmp_path / "g.png", rand_u8((30, 40), seed=48))
    write_audio(tmp_path / "t.wav", rand_pcm(4410, 2, 16, seed=49), 44100, "PCM_16")
    result = invoke("info", tmp_path / "g.png", tmp_path / "t.wav")
    assert result.return_value == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    img, snd = lines
    assert img.startswith(str(tmp_path / "g.png")) and "40x30" in img and " L " in img
    assert "8-bit" in img and "image" in img
    assert snd.startswith(str(tmp_path / "t.wav")) and "44100 Hz" in snd and "PCM_16" in snd
    assert "2 channel" in snd and "4,410" in snd and "0.100 s" in snd


def test_info_several_files_json_and_a_bad_one(tmp_path):
    write_png(tmp_path / "ok.png", rand_u8((3, 4, 3), seed=50))
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    r = run("info", "--json", tmp_path / "bad.png", tmp_path / "ok.png")
    assert r.code == 1
    objs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [(o["input"], o["width"], o["height"]) for o in objs] == \
        [(str(tmp_path / "ok.png"), 4, 3)]
    assert "bad.png" in r.stderr and "Traceback" not in r.stderr
