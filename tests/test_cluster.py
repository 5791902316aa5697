"""``--scheduler``: one task per input on a real Dask cluster (a scheduler and worker
processes started here on 127.0.0.1, torn down after). Outputs are compared byte for
byte with the in-process run (``--jobs 1``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import imagecodecs
import pytest

from conftest import ROOT, rand_u8, run, run_main, snapshot

pytest.importorskip("distributed")

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


class Cluster:
    """A Dask scheduler and ``workers`` single-threaded worker processes (no nanny, so
    that a killed worker stays dead)."""

    def __init__(self, folder, workers: int = 2):
        self.file = folder / "scheduler.json"
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)]
        deadline = time.time() + 60
        while not self.file.exists() and time.time() < deadline:
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
             str(self.file), "--nthreads", "1", "--no-nanny", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
            for _ in range(workers)]
        self.procs += self.workers
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)

    def close(self) -> None:
        for p in reversed(self.procs):
            p.kill()
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.close()


def make_inputs(folder, count: int, shape=(60, 80, 3), corrupt=()) -> list:
    folder.mkdir()
    paths = []
    for i in range(count):
        p = folder / f"p{i:02d}.png"
        p.write_bytes(b"\x89PNG\r\n\x1a\nbroken" if i in corrupt
                      else imagecodecs.png_encode(rand_u8(shape, seed=i)))
        paths.append(p)
    return paths


def test_thirty_inputs_on_the_cluster_equal_the_local_run(tmp_path, cluster):
    paths = make_inputs(tmp_path / "in", 30, corrupt=(3, 17))
    local = run("blur", *paths, "-o", f"{tmp_path / 'local'}/", "--jobs", "1")
    remote = run("blur", *paths, "-o", f"{tmp_path / 'remote'}/", "--scheduler",
                 cluster.address, "--json", timeout=120)
    assert local.code == 1 and remote.code == 1, remote.stderr
    assert snapshot(tmp_path / "local") == snapshot(tmp_path / "remote")
    assert len(os.listdir(tmp_path / "remote")) == 28
    lines = remote.stderr.splitlines()
    assert len(lines) == 3 and all(ln.startswith("pwfilter: error: ") for ln in lines)
    assert lines[2] == f"pwfilter: error: 2 of 30 files failed: {paths[3]}, {paths[17]}"
    objects = [json.loads(line) for line in remote.stdout.decode().splitlines()]
    assert sorted(o["input"] for o in objects) == sorted(
        str(p) for i, p in enumerate(paths) if i not in (3, 17))


def test_the_scheduler_address_from_the_environment(tmp_path, cluster):
    paths = make_inputs(tmp_path / "in", 3)
    proc = subprocess.run([sys.executable, "-m", "pwfilter", "remix", *map(str, paths),
                           "--matrix", "gray", "-o", f"{tmp_path / 'out'}/", "-v"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(ENV, PWFILTER_SCHEDULER=cluster.address))
    assert proc.returncode == 0, proc.stderr
    local = run("remix", *paths, "--matrix", "gray", "-o", f"{tmp_path / 'local'}/",
                "--jobs", "1")
    assert local.code == 0
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "local")


def test_a_worker_killed_mid_job_costs_no_file(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        paths = make_inputs(tmp_path / "in", 40, shape=(750, 1000, 3))
        out = tmp_path / "out"
        proc = subprocess.Popen([sys.executable, "-m", "pwfilter", "blur", *map(str, paths),
                                 "--sigma", "4", "-o", f"{out}/", "--scheduler", c.address],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=ENV)
        deadline = time.time() + 60
        while time.time() < deadline and not (out.exists() and len(os.listdir(out)) >= 4):
            time.sleep(0.005)
        c.workers[0].send_signal(signal.SIGKILL)
        err = proc.communicate(timeout=180)[1]
    finally:
        c.close()
    local = run("blur", *paths, "--sigma", "4", "-o", f"{tmp_path / 'local'}/", "--jobs", "1",
                timeout=120)
    assert local.code == 0
    expected = snapshot(tmp_path / "local")
    got = snapshot(out)
    for name, data in got.items():  # never a partial or temporary file
        assert data == expected[name], name
    if proc.returncode == 0:
        assert got == expected
    else:  # exit 1 naming exactly the files that are missing
        assert proc.returncode == 1, err
        missing = sorted(set(expected) - set(got))
        failed = err.splitlines()[-1].split("files failed: ")[1].split(", ")
        assert sorted(os.path.basename(f) for f in failed) == missing


def test_without_the_extra_one_line_names_the_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    paths = make_inputs(tmp_path / "in", 2)
    code, _out, err = run_main(capsys, "blur", *paths, "-o", f"{tmp_path / 'out'}/",
                               "--scheduler", "tcp://127.0.0.1:1")
    assert code == 1
    assert err.splitlines() == ['pwfilter: error: --scheduler needs Dask distributed: '
                                'pip install "pwfilter[dask]"']


def test_relative_paths_name_files_in_the_callers_folder(tmp_path, cluster):
    """Workers started elsewhere resolve the command's relative paths (inputs, output
    folder, a kernel file) in the folder the command was started from."""
    import numpy as np

    make_inputs(tmp_path / "in", 3)
    np.save(tmp_path / "k.npy", np.full((3, 3), 1 / 9, np.float32))
    local = run("convolve", "in/p00.png", "in/p01.png", "in/p02.png", "k.npy", "-o", "local/",
                "--jobs", "1", cwd=tmp_path)
    remote = run("convolve", "in/p00.png", "in/p01.png", "in/p02.png", "k.npy", "-o",
                 "remote/", "--scheduler", cluster.address, cwd=tmp_path, timeout=120)
    assert local.code == 0 and remote.code == 0, remote.stderr
    assert snapshot(tmp_path / "local") == snapshot(tmp_path / "remote")
    assert len(snapshot(tmp_path / "remote")) == 3
