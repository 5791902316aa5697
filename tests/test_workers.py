"""Many files at once: worker processes (``--jobs``), ``--skip-existing``, interrupts.

Outputs of worker processes are compared byte for byte with the in-process run
(``--jobs 1``), whose results the other tests check against SciPy and NumPy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import imagecodecs
import pytest

from conftest import ROOT, rand_u8, run, snapshot


def make_inputs(folder, count: int, shape=(60, 80, 3), corrupt=()) -> list:
    folder.mkdir()
    paths = []
    for i in range(count):
        p = folder / f"p{i:02d}.png"
        if i in corrupt:
            p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png" * (i + 1))
        else:
            p.write_bytes(imagecodecs.png_encode(rand_u8(shape, seed=i)))
        paths.append(p)
    return paths


def test_thirty_inputs_two_corrupt_in_two_workers(tmp_path):
    paths = make_inputs(tmp_path / "in", 30, corrupt=(7, 21))
    r = run("blur", *paths, "-o", f"{tmp_path / 'out'}/", "--jobs", "2", "--json")
    assert r.code == 1
    lines = r.stderr.splitlines()
    bad = [str(paths[7]), str(paths[21])]
    assert len(lines) == 3 and all(ln.startswith("pwfilter: error: ") for ln in lines), lines
    assert sorted(bad[0] in ln for ln in lines[:2]) == [False, True]  # one line each, as
    assert sorted(bad[1] in ln for ln in lines[:2]) == [False, True]  # the files finish
    assert lines[2] == f"pwfilter: error: 2 of 30 files failed: {bad[0]}, {bad[1]}"
    # --json: one parsable line per processed input, each input once
    objects = [json.loads(line) for line in r.stdout.decode().splitlines()]
    good = sorted(str(p) for i, p in enumerate(paths) if i not in (7, 21))
    assert sorted(o["input"] for o in objects) == good
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.path.basename(p) for p in good)


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_outputs_are_byte_identical_whatever_the_jobs(tmp_path, jobs):
    paths = make_inputs(tmp_path / "in", 12, shape=(90, 70, 3))
    one = run("convolve", *paths, "sharpen", "-o", f"{tmp_path / 'one'}/", "--jobs", "1")
    many = run("convolve", *paths, "sharpen", "-o", f"{tmp_path / 'many'}/", "--jobs", jobs)
    assert one.code == 0 and many.code == 0, (one.stderr, many.stderr)
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "many")
    assert len(os.listdir(tmp_path / "one")) == 12


def test_same_output_name_twice_is_refused_for_the_second(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.png").write_bytes(imagecodecs.png_encode(rand_u8((5, 6, 3))))
    r = run("blur", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "-o",
            f"{tmp_path / 'out'}/", "--jobs", "2")
    assert r.code == 1
    assert "already written by this run" in r.stderr and str(tmp_path / "b" / "x.png") in r.stderr
    assert os.listdir(tmp_path / "out") == ["x.png"]


def pwfilter_process(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pwfilter", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def interrupt_when(proc, folder, outputs: int, sig=signal.SIGINT) -> str:
    """Send ``sig`` once ``folder`` holds ``outputs`` files; return stderr."""
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if folder.exists() and len(os.listdir(folder)) >= outputs:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(sig)
    return proc.communicate(timeout=60)[1]


def test_sigint_in_two_workers_leaves_only_complete_outputs_then_skip_existing(tmp_path):
    paths = make_inputs(tmp_path / "in", 24, shape=(900, 1200, 3))
    reference = tmp_path / "ref"
    r = run("blur", *paths, "-o", f"{reference}/", "--jobs", "1", timeout=120)
    assert r.code == 0, r.stderr
    expected = snapshot(reference)
    out = tmp_path / "out"
    proc = pwfilter_process("blur", *paths, "-o", f"{out}/", "--jobs", "2")
    err = interrupt_when(proc, out, 3)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["pwfilter: interrupted"]
    done = snapshot(out)
    assert 3 <= len(done) < 24, "interrupted mid-run"
    for name, data in done.items():  # only complete outputs, no temporary file
        assert data == expected[name], name
    # The same command again with --skip-existing does only the rest.
    inodes = {n: os.stat(out / n).st_ino for n in done}
    r = run("blur", *paths, "-o", f"{out}/", "--jobs", "2", "--skip-existing", timeout=120)
    assert r.code == 0, r.stderr
    assert snapshot(out) == expected
    assert {n: os.stat(out / n).st_ino for n in done} == inodes  # left alone
    assert f"{len(done)} of 24 files skipped" in r.stderr


def test_skip_existing_in_one_process_counts_and_exits_0(tmp_path):
    paths = make_inputs(tmp_path / "in", 4)
    out = tmp_path / "out"
    out.mkdir()
    (out / "p01.png").write_bytes(b"kept as it is")
    r = run("blur", *paths, "-o", f"{out}/", "--jobs", "1", "--skip-existing")
    assert r.code == 0, r.stderr
    assert (out / "p01.png").read_bytes() == b"kept as it is"
    assert sorted(os.listdir(out)) == [f"p{i:02d}.png" for i in range(4)]
    assert "1 of 4 files skipped" in r.stderr
    r = run("blur", *paths, "-o", f"{out}/", "--skip-existing", "-q")
    assert r.code == 0 and r.stderr == ""


def test_sigterm_stops_the_workers(tmp_path):
    paths = make_inputs(tmp_path / "in", 16, shape=(900, 1200, 3))
    out = tmp_path / "out"
    proc = pwfilter_process("blur", *paths, "-o", f"{out}/", "--jobs", "2", "--sigma", "6")
    interrupt_when(proc, out, 1, signal.SIGTERM)
    assert proc.returncode == 130
    time.sleep(0.5)
    before = snapshot(out)
    time.sleep(1.0)  # no worker goes on writing after the parent has gone
    assert snapshot(out) == before


def test_a_progress_bar_over_files_on_a_terminal_only(tmp_path):
    import pty

    paths = make_inputs(tmp_path / "in", 8)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pwfilter", "blur", *map(str, paths), "-o",
                             f"{tmp_path / 'out'}/", "--jobs", "2"], stdout=subprocess.DEVNULL,
                            stderr=slave, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    assert b"files" in shown and b"8/8" in shown and b"files/s" in shown
    # Not a terminal (or -q): no bar at all.
    r = run("blur", *paths, "-o", f"{tmp_path / 'again'}/", "--jobs", "2")
    assert r.code == 0 and r.stderr == ""


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found += [int(c) for c in fh.read().split()]
    return found


def test_a_worker_killed_from_outside_leaves_complete_outputs_and_names_the_rest(tmp_path):
    paths = make_inputs(tmp_path / "in", 24, shape=(900, 1200, 3))
    reference = tmp_path / "ref"
    assert run("blur", *paths, "--sigma", "3", "-o", f"{reference}/", "--jobs", "1",
               timeout=120).code == 0
    out = tmp_path / "out"
    proc = pwfilter_process("blur", *paths, "--sigma", "3", "-o", f"{out}/", "--jobs", "2")
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and len(os.listdir(out)) >= 2):
        time.sleep(0.005)
    workers = children(proc.pid)
    assert workers, "no worker processes"
    os.kill(workers[0], signal.SIGKILL)
    err = proc.communicate(timeout=120)[1]
    expected, got = snapshot(reference), snapshot(out)
    for name, data in got.items():
        assert data == expected[name], name  # complete outputs only
    missing = sorted(set(expected) - set(got))
    if proc.returncode == 0:
        assert not missing
    else:
        assert proc.returncode == 1, err
        failed = err.splitlines()[-1].split("files failed: ")[1].split(", ")
        assert sorted(os.path.basename(f) for f in failed) == missing
