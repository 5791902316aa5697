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


def run_files(common, inputs: tuple[str, ...], command: str, job, suffix,
              processes: int) -> list[tuple[str, str]]:
    """Process ``inputs`` in ``processes`` workers; print each file's messages as it ends;
    return (input, outcome) pairs in the order of ``inputs``."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from pwfilter import batch
    from pwfilter.steps import Job, with_workers

    threads = common.threads(processes)
    job = Job(tuple(with_workers(step, threads) for step in job.steps), job.name)
    outcomes: dict[int, str] = {}
    todo = _unique_targets(common, inputs, command, suffix, outcomes)
    context = multiprocessing.get_context("fork" if "fork" in
                                          multiprocessing.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start,
                               initargs=(common, inputs, command, job, suffix))
    _pools.append(pool)
    try:
        futures = {pool.submit(_one, i): i for i in todo}
        with _progress(common, len(inputs), len(outcomes)) as advance:
            for future in as_completed(futures):
                outcome, out, err = future.result()
                outcomes[futures[future]] = outcome
                sys.stdout.write(out)
                sys.stdout.flush()
                sys.stderr.write(err)
                sys.stderr.flush()
                advance()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _pools.remove(pool)
    return [(name, outcomes.get(i, batch.FAILED)) for i, name in enumerate(inputs)]


def _unique_targets(common, inputs, command, suffix, outcomes: dict) -> list[int]:
    """The inputs to send to workers: those whose planned output no earlier input has;
    the others fail here, as they would in turn in one process."""
    import click

    from pwfilter import batch
    from pwfilter.errors import printable
    from pwfilter.output import plan_output

    seen: dict[str, str] = {}
    todo = []
    for i, name in enumerate(inputs):
        try:
            target = plan_output(name, command, common.output, suffix, len(inputs) > 1)
        except Exception:  # noqa: BLE001 - the worker reports it in the file's own line
            todo.append(i)
            continue
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
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _state = batch.FileState(common, inputs, command, job, suffix)


def _one(i: int) -> tuple[str, str, str]:
    """Process input ``i``; return its outcome and what it printed on stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        outcome = _state.attempt(_state.inputs[i], {})
    return outcome, out.getvalue(), err.getvalue()


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
    for pool in list(_pools):
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
