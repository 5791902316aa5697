"""Many files at once: each input processed in one of N worker processes.

A call with several inputs runs them in ``--jobs N`` worker processes (default:
one per core), each computing with its share of the cores' threads, so that
decoding and encoding — single-threaded per file — use every core. Every
worker runs exactly the in-process code for one file (:class:`batch.FileState`)
with its stdout and stderr captured; the parent prints each file's lines when
the file is done, so ``--json`` lines and errors come in the order files
finish. Workers write their outputs themselves, atomically; on Ctrl-C the
parent kills them (:func:`stop`), and their unnamed temporary files vanish
with them.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import sys

_state = None  # a worker's FileState, built once by its initializer
_pools: list = []  # the parent's running pools, for stop()
_clusters: list = []  # the parent's Dask clients, for stop()


def run_files(common, inputs: tuple[str, ...], command: str, job, suffix,
              processes: int) -> list[tuple[str, str]]:
    """Process ``inputs`` in ``processes`` workers; print each file's messages as it ends;
    return (input, outcome) pairs in the order of ``inputs``."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from pwfilter import batch
    from pwfilter.steps import Job, with_workers

    threads = common.threads(processes)
    job = Job(tuple(with_workers(step, threads) for step in job.steps), job.name)
    outcomes: dict[int, str] = {}
    targets: dict[int, str] = {}
    todo = _unique_targets(common, inputs, command, suffix, outcomes, targets)
    fresh = {i for i in todo if i in targets and not os.path.lexists(targets[i])}
    context = multiprocessing.get_context("fork" if "fork" in
                                          multiprocessing.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start,
                               initargs=(common, inputs, command, job, suffix))
    _pools.append(pool)
    # A few files per task when there are many: each task is a round trip to a worker
    # (measured: 200 small PNGs, ~0.5 ms a task of ~4 ms of work).
    size = max(1, min(8, len(todo) // (8 * processes)))
    try:
        futures = [pool.submit(_some, todo[a:a + size]) for a in range(0, len(todo), size)]
        with _progress(common, len(inputs), len(outcomes)) as advance:
            for future in as_completed(futures):
                try:
                    results = future.result()
                except BrokenProcessPool:  # a worker was killed (not by us): say which
                    results = [_lost(i, inputs[i], targets.get(i) if i in fresh else None)
                               for i in todo[futures.index(future) * size:][:size]]
                for i, outcome, out, err in results:
                    outcomes[i] = _finished(outcome, out, err, advance)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _pools.remove(pool)
    return [(name, outcomes.get(i, batch.FAILED)) for i, name in enumerate(inputs)]


def _finished(outcome: str, out: str, err: str, advance) -> str:
    """A file is done: print what its worker printed, move the bar on."""
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    sys.stderr.flush()
    advance()
    return outcome


def _lost(i: int, name: str, fresh: str | None) -> tuple[int, str, str, str]:
    """An input whose worker died: done if its output, absent at the start, exists (it
    was written whole before the worker died), failed otherwise."""
    from pwfilter import batch

    if fresh is not None and os.path.lexists(fresh):
        return i, batch.DONE, "", ""
    return i, batch.FAILED, "", f"pwfilter: error: {name}: its worker process died\n"


def run_on_cluster(common, inputs: tuple[str, ...], command: str, job, suffix,
                   address: str) -> list[tuple[str, str]]:
    """Process ``inputs`` as one Dask task each on the cluster at ``address`` (``local``:
    a LocalCluster on this machine). Workers read the inputs and write the outputs
    themselves (a file system they share with this machine), atomically; a worker that
    dies mid-task leaves no file, and Dask runs the task again elsewhere."""
    from pwfilter import batch
    from pwfilter.errors import PwfilterError

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise PwfilterError("--scheduler needs Dask distributed: pip install "
                            "\"pwfilter[dask]\"") from None
    outcomes: dict[int, str] = {}
    targets: dict[int, str] = {}
    todo = _unique_targets(common, inputs, command, suffix, outcomes, targets)
    # Outputs absent now: if one exists when its task starts, an earlier attempt of that
    # task wrote it whole (atomically) and its worker died before saying so.
    fresh = {i: targets[i] for i in todo if i in targets and not os.path.lexists(targets[i])}
    cluster = None
    try:
        if address == "local":
            cluster = LocalCluster(n_workers=common.jobs or os.cpu_count() or 1,
                                   threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(address, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise PwfilterError(f"--scheduler {address}: cannot connect ({exc})") from None
    with client:
        state = client.scatter((common, inputs, command, job, suffix, os.getcwd()),
                               broadcast=True)
        futures = {client.submit(_task, state, i, fresh.get(i),
                                 key=f"pwfilter-{os.getpid()}-{i}", pure=False, retries=2): i
                   for i in todo}
        _clusters.append((client, list(futures)))
        try:
            with _progress(common, len(inputs), len(outcomes)) as advance:
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        outcome, out, err = future.result()
                    except Exception as exc:  # noqa: BLE001 - the task's worker kept dying
                        outcome, out = batch.FAILED, ""
                        err = (f"pwfilter: error: {inputs[i]}: failed on the cluster "
                               f"({type(exc).__name__}: {exc})\n")
                    outcomes[i] = _finished(outcome, out, err, advance)
        finally:
            _clusters.pop()
    if cluster is not None:
        cluster.close()
    return [(name, outcomes.get(i, batch.FAILED)) for i, name in enumerate(inputs)]


_task_states: dict = {}  # a Dask worker's FileState of the call it works for


def _task(state, i: int, fresh: str | None = None) -> tuple[str, str, str]:
    """One input on a Dask worker: the same code as a local worker's. ``state`` is
    scattered once per call, so one FileState per worker and call is built. ``fresh``
    is the output's path when it did not exist as the call began: finding it means an
    earlier attempt of this task wrote it (then it is done, not "exists")."""
    import json

    from pwfilter import batch

    *state, folder = state
    # Relative paths (inputs, outputs, kernels) name files in the folder the command was
    # started from: the worker works there (the file system is shared, see the README).
    try:
        if os.getcwd() != folder:
            os.chdir(folder)
    except OSError as exc:
        return batch.FAILED, "", (f"pwfilter: error: {state[1][i]}: the worker cannot enter "
                                  f"{folder} ({exc.strerror}): the cluster's workers need the "
                                  "same file system at the same paths\n")
    if fresh is not None and os.path.lexists(fresh):
        common, inputs = state[0], state[1]
        out = json.dumps({"input": inputs[i], "output": fresh, "retried": True}) + "\n" \
            if common.json else ""
        return batch.DONE, out, ""

    key = id(state[1])
    if key not in _task_states:
        _task_states.clear()
        _task_states[key] = batch.FileState(*state)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        outcome = _task_states[key].attempt(state[1][i], {})
    return outcome, out.getvalue(), err.getvalue()


def _unique_targets(common, inputs, command, suffix, outcomes: dict,
                    targets: dict | None = None) -> list[int]:
    """The inputs to send to workers: those whose planned output no earlier input has;
    the others fail here, as they would in turn in one process. ``targets`` receives
    each input's planned output."""
    import click

    from pwfilter import batch
    from pwfilter.errors import printable
    from pwfilter.output import plan_output

    targets = {} if targets is None else targets
    seen: dict[str, str] = {}
    todo = []
    for i, name in enumerate(inputs):
        try:
            target = plan_output(name, command, common.output, suffix, len(inputs) > 1)
        except Exception:  # noqa: BLE001 - the worker reports it in the file's own line
            todo.append(i)
            continue
        targets[i] = target
        key = os.path.realpath(target)
        if key in seen:
            click.echo(printable(f"pwfilter: error: {name}: {target}: already written by this "
                                 f"run from {seen[key]} (inputs with the same name into one "
                                 "folder)"), err=True)
            outcomes[i] = batch.FAILED
            continue
        seen[key] = name
        todo.append(i)
    return todo


def _start(common, inputs, command, job, suffix) -> None:
    """A worker's start: Ctrl-C is the parent's to handle (it stops the workers); the
    signal mask inherited from the parent's command thread is lifted."""
    global _state
    from pwfilter import batch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _state = batch.FileState(common, inputs, command, job, suffix)


def _some(indices: list[int]) -> list[tuple[int, str, str, str]]:
    """Process inputs ``indices``; return each one's outcome and what it printed on stdout
    and stderr."""
    done = []
    for i in indices:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            outcome = _state.attempt(_state.inputs[i], {})
        done.append((i, outcome, out.getvalue(), err.getvalue()))
    return done


@contextlib.contextmanager
def _progress(common, total: int, done: int):
    """A bar over files on stderr (files done of total, rate, time left) when stderr is a
    terminal and not ``-q``; otherwise nothing."""
    if common.quiet or not sys.stderr.isatty():
        yield lambda: None
        return
    import time

    import click

    start = time.perf_counter()
    bar = click.progressbar(length=total, label="files", file=sys.stderr, show_pos=True,
                            show_eta=True)
    bar.item_show_func = lambda _: _rate(start, bar)
    with bar:
        bar.update(done)
        yield lambda: bar.update(1)


def _rate(start: float, bar) -> str:
    import time

    seconds = time.perf_counter() - start
    return f"{bar.pos / seconds:.1f} files/s" if seconds > 0 and bar.pos else ""


def stop() -> None:
    """Kill the workers of running pools (the interrupt path): their unnamed temporary
    files go with them; named ones are removed by the next run into that folder."""
    for client, futures in list(_clusters):
        with contextlib.suppress(Exception):
            client.cancel(futures, force=True)
    for pool in list(_pools):
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
