"""Running a command over its inputs: load, process (in memory or streamed), save, report.

The CLI's commands each supply the work for one file; this module does the
rest the same way for all of them — output paths, the overwrite and
same-file rules, atomic writes, streaming of long audio, clipping notes,
``--json`` lines, and the rule that every input is attempted and failures
are summarised. It is the place where many-file (and later distributed)
execution lives.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import time
from dataclasses import dataclass

import click

from pwfilter.errors import PwfilterError, TruncatedFile, out_of_memory, printable


@dataclass
class Common:
    """The ``[common]`` options every processing command takes."""

    output: str | None = None
    format: str | None = None
    overwrite: bool = False
    json: bool = False
    jobs: int | None = None
    debug: bool = False
    quiet: bool = False
    verbose: bool = False
    quality: int = 92
    compression: int | None = None
    max_pixels: int | None = None
    max_memory: str | None = None
    stream_above: str | None = None
    skip_existing: bool = False
    scheduler: str | None = None
    chunk: int | None = None

    def processes(self, inputs: int) -> int:
        """Worker processes for ``inputs`` files: ``--jobs`` (default: the cores), at most
        one per file; 1 means in this process."""
        return max(1, min(self.jobs or os.cpu_count() or 1, inputs))

    def threads(self, processes: int) -> int | None:
        """Compute threads per file: all cores in this process, a share of them in each of
        several workers."""
        if processes <= 1:
            return None
        return max(1, (os.cpu_count() or 1) // processes)

    @functools.cached_property
    def limits(self):
        from pwfilter.limits import DEFAULT_MAX_PIXELS, Limits, parse_size

        try:
            memory = parse_size(self.max_memory) if self.max_memory else 0
        except PwfilterError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-memory") from None
        return Limits(max_pixels=self.max_pixels or DEFAULT_MAX_PIXELS, max_memory=memory)

    @functools.cached_property
    def stream_budget(self) -> int:
        """``--stream-above``: bytes of in-memory working set above which audio streams."""
        from pwfilter.limits import parse_size
        from pwfilter.stream import STREAM_BUDGET

        if self.stream_above is None:
            return STREAM_BUDGET
        if self.stream_above.strip() == "0":
            return 0
        try:
            return parse_size(self.stream_above)
        except PwfilterError as exc:
            raise click.BadParameter(str(exc), param_hint="--stream-above") from None

    def note(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"pwfilter: {printable(message)}", err=True)

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            click.echo(f"pwfilter: {printable(message)}", err=True)


def run_each(common: Common, inputs: tuple[str, ...], command: str, job) -> int:
    """Apply ``job`` (a :class:`pwfilter.steps.Job`) to every input; report; return the
    exit status.

    For each input the job is resolved into a chain of stages once (an impulse
    response is decoded once per job) and run in memory, or streamed for audio
    too large to hold in memory. Every input is attempted; failures are
    reported one line each and summarised. Several inputs go to ``--jobs`` worker
    processes (:mod:`pwfilter.workers`); ``--jobs 1`` runs them here in turn.
    """
    suffix = _check_usage(common, inputs)
    if common.output and common.output.endswith(("/", os.sep)):
        try:
            os.makedirs(common.output, exist_ok=True)
        except OSError as exc:
            raise PwfilterError(f"-o {common.output}: cannot create the folder ({exc.strerror})")
    processes = common.processes(len(inputs))
    if common.scheduler:
        from pwfilter import workers

        outcomes = workers.run_on_cluster(common, inputs, command, job, suffix,
                                          common.scheduler)
    elif processes > 1:
        from pwfilter import workers

        outcomes = workers.run_files(common, inputs, command, job, suffix, processes)
    else:
        outcomes = _run_here(common, inputs, command, job, suffix)
    failed = [name for name, outcome in outcomes if outcome == FAILED]
    skipped = sum(1 for _, outcome in outcomes if outcome == SKIPPED)
    if skipped:
        common.note(f"{skipped} of {len(inputs)} files skipped: their outputs exist "
                    "(--skip-existing)")
    if failed and len(inputs) > 1:
        click.echo(printable(f"pwfilter: error: {len(failed)} of {len(inputs)} files failed: "
                             + ", ".join(failed)), err=True)
    return 1 if failed else 0


DONE, FAILED, SKIPPED = "done", "failed", "skipped"


class FileState:
    """What processing the files of one call needs besides each file: the files the
    command reads, the decoding context, the save options (built once per process)."""

    def __init__(self, common: Common, inputs: tuple[str, ...], command: str, job, suffix):
        from pwfilter import media as m
        from pwfilter.output import ReadFiles
        from pwfilter.steps import Context

        self.common, self.inputs, self.command, self.job, self.suffix = \
            common, inputs, command, job, suffix
        self.options = m.SaveOptions(quality=common.quality, compression=common.compression)
        self.reads = ReadFiles((*inputs, *job.files()))
        self.ctx = Context(common.limits, lambda path: m.load_media(path, limits=common.limits))

    def attempt(self, name: str, written: dict, loaded=lambda: None) -> str:
        return _attempt(self.common, name, self.inputs, self.reads, self.command, self.job,
                        self.ctx, self.suffix, self.options, written, loaded)


def _run_here(common: Common, inputs, command: str, job, suffix) -> list[tuple[str, str]]:
    """Every input in this process, in order, the next image decoded ahead."""
    state = FileState(common, inputs, command, job, suffix)
    outcomes = []
    written: dict[str, str] = {}
    loader = Prefetch(inputs, common.limits)
    try:
        for i, name in enumerate(inputs):
            loader.ahead(i + 1)
            outcomes.append((name, state.attempt(name, written, lambda i=i: loader.take(i))))
            loader.drop(i)
    finally:
        loader.close()
    return outcomes


class Prefetch:
    """Decodes the next input in a background thread while the current one is processed.

    Decoders (imagecodecs, Pillow) release the GIL, so in a batch of small images
    reading and decoding the next file overlaps filtering and encoding this one
    (measured: 200 PNGs of 256x256 blurred in ~30 % less time). Only regular
    image and ``.npy`` files up to :data:`PREFETCH_BYTES` on disk are read ahead
    (at most one at a time); audio, standard input and anything else load when
    their turn comes. A file's load error is reported at its turn, as without
    read-ahead.
    """

    def __init__(self, inputs: tuple[str, ...], limits):
        self.inputs = inputs
        self.limits = limits
        self.pool = None
        self.futures: dict = {}

    def ahead(self, i: int) -> None:
        """Start loading input ``i`` if it qualifies."""
        if i >= len(self.inputs) or not self._eligible(self.inputs[i]):
            return
        from pwfilter import media as m

        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="pwfilter-read")
        self.futures[i] = self.pool.submit(m.load_media, self.inputs[i], limits=self.limits)

    def take(self, i: int):
        """Input ``i`` loaded ahead (its load error raised here), or None."""
        future = self.futures.pop(i, None)
        return None if future is None else future.result()

    def drop(self, i: int) -> None:
        future = self.futures.pop(i, None)
        if future is not None:
            future.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _eligible(name: str) -> bool:
        import stat

        from pwfilter import media as m

        if name == "-":
            return False
        try:
            st = os.stat(name)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= PREFETCH_BYTES:
            return False
        return _sniff(name, m) in m.IMAGE_FORMATS | {"NPY"}


#: Largest file (on disk) read ahead of its turn.
PREFETCH_BYTES = 64 << 20


def _attempt(common: Common, name: str, *args) -> str:
    """Run the job for one input; report its failure (one line). Returns DONE, FAILED or
    SKIPPED."""
    try:
        if _run_one(common, name, *args, time.perf_counter()) == SKIPPED:
            return SKIPPED
    except Exception as exc:  # noqa: BLE001 - the file's errors; anything else goes up
        if not isinstance(exc, PwfilterError) and not out_of_memory(exc):
            raise
        if common.debug:
            import traceback

            traceback.print_exc()
        message = str(exc) if isinstance(exc, PwfilterError) else \
            "out of memory (a smaller job, or a lower --max-memory to be refused early)"
        shown = "<stdin>" if name == "-" else name
        if shown not in message:
            message = f"{shown}: {message}"
        click.echo(f"pwfilter: error: {printable(message)}", err=True)
        return FAILED
    return DONE


def _check_usage(common: Common, inputs: tuple[str, ...]) -> str | None:
    """Usage errors (exit 2) found before any file is touched; return the --format suffix."""
    from pwfilter.output import STDOUT

    out = common.output
    if not inputs:
        raise click.UsageError("no INPUT given")
    if inputs.count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")
    if out == "":
        raise click.UsageError("-o needs a path (or - for standard output)")
    is_dir = out is not None and (out.endswith(("/", os.sep)) or os.path.isdir(out))
    if out and out != STDOUT and len(inputs) > 1 and not is_dir:
        raise click.UsageError(f"-o {out}: one output file for {len(inputs)} inputs "
                               "(end it with / to write into a folder)")
    if common.scheduler and (out == STDOUT or "-" in inputs):
        raise click.UsageError("--scheduler: workers read and write files, not standard "
                               "input or output")
    if out == STDOUT and len(inputs) > 1:
        raise click.UsageError("-o - writes one result; give one INPUT")
    if out == STDOUT and sys.stdout.isatty():
        raise click.UsageError("-o - would write binary data to the terminal; "
                               "redirect it to a file or a pipe")
    suffix = None
    if common.format:
        suffix = "." + common.format.lower().lstrip(".")
        given = os.path.splitext(out)[1].lower() if out and out != STDOUT and not is_dir else ""
        if given and given != suffix:
            raise click.UsageError(f"--format {common.format} contradicts the output name {out}")
    common.limits  # noqa: B018 - parse the sizes now: a bad SIZE is a usage error
    common.stream_budget  # noqa: B018
    return suffix


def _run_one(common: Common, name: str, inputs, reads, command: str, job, ctx, suffix,
             options, written: dict, loaded, start: float) -> None:
    """The whole job for one input (errors propagate to :func:`run_each`). ``loaded()``
    gives the input when it was loaded ahead."""
    from pwfilter import audiofile, limits
    from pwfilter import media as m
    from pwfilter.output import STDOUT, atomic_path, check_target, plan_output
    from pwfilter.steps import Input

    zarr = False
    if name != "-":
        zarr = os.path.isdir(name) and _is_zarr(name)
        if not zarr:
            m.read_source(name, name)  # a regular, readable file: nothing is opened before
    media = None
    if name == "-":  # the format (and so the suffix of a planned name) is known only now
        media = m.load_media(name, limits=common.limits)
        suffix = suffix or m.FORMAT_SUFFIX.get(media.format, "")
    target = plan_output(name, command, common.output, suffix, len(inputs) > 1)
    if target != STDOUT:
        key = os.path.realpath(target)
        if key in written:
            raise PwfilterError(f"{target}: already written by this run from {written[key]} "
                                "(inputs with the same name into one folder)")
    if common.skip_existing and target != STDOUT and os.path.lexists(target) \
            and target not in reads:
        common.detail(f"{name}: {target} exists: skipped")
        return SKIPPED
    check_target(target, reads, common.overwrite)
    chain = None
    sniffed = "ZARR" if zarr else None if name == "-" else _sniff(name, m)
    if sniffed in ("TIFF", "NPY", "ZARR"):
        done = _try_chunked(common, name, target, suffix, sniffed, job, ctx, options, m)
        if done is not None:
            if target != STDOUT:
                written[os.path.realpath(target)] = name
            report(common, name, target, *done, time.perf_counter() - start)
            return
    elif common.chunk and sniffed in m.IMAGE_FORMATS:
        common.detail(f"{name}: --chunk ignored: a {sniffed} is decoded whole (chunks need a "
                      "TIFF, Zarr or .npy input)")
    if media is None and sniffed in ("WAV", "FLAC", "OGG", "AIFF"):
        reader = audiofile.AudioReader(name, limits=common.limits)
        chain = job.resolve(Input.of(reader.meta(), reader.frames), ctx)  # also in memory
        if target != STDOUT:
            done = _try_stream(common, name, target, suffix, chain, reader, options, m)
            if done is not None:
                written[os.path.realpath(target)] = name
                report(common, name, target, *done, time.perf_counter() - start)
                return
    if media is None:
        media = loaded() or m.load_media(name, limits=common.limits)
    if chain is None:
        chain = job.resolve(Input.of(media), ctx)
    if media.kind == "image":
        need = limits.image_bytes(media.samples.size // media.channels,
                                  max(media.channels, chain.c_out))
    else:
        need = limits.audio_bytes(media.shape[0], max(media.channels, chain.c_out), chain.taps)
    common.limits.check_memory(need, name)
    stage = [0]
    fmt = _output_format(target, suffix, media, m)
    # 8 bits in and out: the result may come as 8-bit samples (no float image to quantize)
    to_uint8 = media.samples.dtype.str == "|u1" and (fmt in m.IMAGE_FORMATS or fmt == "ZARR")
    try:
        samples, plans = chain.run(media.samples, media.scale, to_uint8=to_uint8,
                                   on_stage=lambda i: stage.__setitem__(0, i))
    except PwfilterError as exc:
        raise job.stage_error(exc, stage[0]) from None
    result = media.replace(samples=samples)
    for note in m.save_notes(media, result, fmt):
        common.note(f"{name}: {note}")
    if target == STDOUT:
        buf = io.BytesIO()
        clipped = m.write_media(result, buf, fmt, options)
        write_stdout(buf.getvalue())
    elif fmt == "ZARR":
        clipped = _write_zarr(result, target, common.overwrite)
        written[os.path.realpath(target)] = name
    else:
        with atomic_path(target, common.overwrite) as tmp:
            clipped = m.write_media(result, tmp, fmt, options)
        written[os.path.realpath(target)] = name
    facts = {"plans": list(zip(chain.stages, plans)), "normalized": chain.normalize}
    report(common, name, target, result, facts, clipped, time.perf_counter() - start)


def write_stdout(data: bytes) -> None:
    """Write a result to standard output; a full disk is this command's error (a closed
    pipe stays BrokenPipeError: the reader has gone, nothing to report)."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise PwfilterError(f"standard output: cannot write ({exc.strerror or exc})") from None


def _sniff(name: str, m) -> str | None:
    try:
        with open(name, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    return m.sniff_format(head, name)


def _is_zarr(name: str) -> bool:
    from pwfilter.regions import is_zarr

    return is_zarr(name)


def _try_chunked(common: Common, name, target, suffix, fmt, job, ctx, options, m):
    """Filter a TIFF, Zarr or .npy image chunk by chunk when it is too large for memory
    (or ``--chunk`` asks); None to use the in-memory path."""
    import numpy as np

    from pwfilter import chunked, limits, regions
    from pwfilter.output import STDOUT
    from pwfilter.steps import Input

    if fmt == "NPY" and _npy_ndim(name) != 3:
        return None  # a signal, or damage the in-memory loader names
    try:
        src = regions.open_source(name, name, fmt)
    except TruncatedFile:
        raise  # the whole-image decoder would fail too, less clearly
    except PwfilterError:
        if common.chunk or fmt == "ZARR":
            raise
        return None  # damage, or a layout only the whole-image decoder reads: its message
    h, w, c = src.shape
    # No shape: the whole image's memory check would refuse what chunks do within budget.
    chain = job.resolve(Input("image", c, src.has_alpha, 0, (), 4, name), ctx)
    need = limits.image_bytes(h * w, max(c, chain.c_out))
    budget = common.limits.memory
    if common.chunk:
        why = f"--chunk {common.chunk}"
    elif need > budget:
        why = (f"in memory it would need about {limits.format_bytes(need)}, more than the "
               f"limit of {limits.format_bytes(budget)}")
    else:
        common.detail(f"{name}: in memory (about {limits.format_bytes(need)} of working "
                      f"memory, within the limit of {limits.format_bytes(budget)})")
        return None
    if common.max_pixels:
        common.limits.check_pixels(w, h, name)
    if target == STDOUT:
        raise PwfilterError(f"{name}: a chunked image cannot go to standard output "
                            "(give -o FILE.tif, .zarr or .npy)")
    result = m.Media(np.zeros((0, 0, chain.c_out), np.uint8), "image", fmt, src.bits, name=name)
    out_fmt = _output_format(target, suffix, result, m)
    if out_fmt not in regions.REGION_FORMATS:
        raise PwfilterError(f"{name}: filtered in chunks, the result is written as tiled TIFF, "
                            f"Zarr or .npy, not {out_fmt} (name the output .tif, .zarr or .npy)")
    if out_fmt == "ZARR":
        regions.zarr_module(target)  # before any work: the extra is missing
    dtype = chunked.output_dtype(src, out_fmt)
    runner, workers = _chunk_runner(common, chain)
    work, per_chunk, held = chunked.fit(chain, src, common.chunk, dtype, workers, budget)
    if src.segment_bytes * workers > budget // 2:
        raise PwfilterError(f"{name}: its {'tiles' if src.layout == 'tiled' else 'strips'} of "
                            f"{src.tile[0]}x{src.tile[1]} pixels are decoded whole, "
                            f"{limits.format_bytes(src.segment_bytes)} each: too large to "
                            "filter in chunks within the memory limit; make it a tiled TIFF "
                            "(vips tiffsave IN OUT.tif --tile --bigtiff)")
    common.limits.check_memory(held, f"{name} (in chunks of {work.chunk[0]}x{work.chunk[1]})")
    common.detail(f"{name}: chunked ({why}): {chunked.describe(work)}, "
                  f"{limits.format_bytes(per_chunk)} each, "
                  + ("as Dask tasks on the cluster" if isinstance(runner, chunked.ClusterRunner)
                     else f"{workers} at a time on threads"))
    clipped = [0]

    def bands():
        for _, _, pieces, n in chunked.output_bands(work, runner):
            clipped[0] += n
            yield pieces

    shape = work.out_shape
    regions.write_output(out_fmt, target, common.overwrite, shape, dtype, bands(),
                         chunk=work.chunk, compression=options.compression,
                         has_alpha=chain.alpha_out)
    facts = {"plans": chunked.plans(work), "normalized": chain.normalize, "shape": list(shape)}
    return result.replace(format=out_fmt), facts, clipped[0]


def _write_zarr(result, target: str, overwrite: bool) -> int:
    """A whole image as a Zarr store (8/16-bit as the input's samples, else float32)."""
    from pwfilter import regions
    from pwfilter.imagefile import image_samples

    if result.kind != "image":
        raise PwfilterError(f"{target}: Zarr holds images here; write audio as .wav, .flac "
                            "or .npy")
    regions.zarr_module(target)
    samples, clipped = image_samples(result, result.bits if result.bits in (8, 16) else 32)
    h, w, _ = samples.shape
    regions.write_output("ZARR", target, overwrite, samples.shape, samples.dtype,
                         [[(0, w, samples)]], chunk=(min(h, 1024), min(w, 1024)))
    return clipped


def _npy_ndim(name: str) -> int:
    from pwfilter.regions import npy_header

    try:
        with open(name, "rb") as fh:
            shape, _, _ = npy_header(fh)
    except Exception:  # noqa: BLE001 - the loader reports damage
        return 0
    return len(shape)


def _chunk_runner(common: Common, chain):
    """Where chunks run: Dask tasks when this runs on a cluster's worker (``--scheduler``),
    else local threads, one chunk per core (this file's share of them under ``--jobs``)."""
    from pwfilter import chunked

    if common.scheduler:
        try:
            from distributed import get_worker, worker_client

            get_worker()
        except (ImportError, ValueError):
            pass
        else:
            return chunked.ClusterRunner(worker_client), 2  # memory: the writer's own two
    threads = chain.stages[0].workers or os.cpu_count() or 1
    return chunked.LocalRunner(threads), threads


def _try_stream(common: Common, name, target, suffix, chain, reader, options, m):
    """Stream one audio file through ``chain`` when it is too large for memory; None to
    use the in-memory path."""
    import numpy as np

    from pwfilter import audiofile
    from pwfilter import stream as st
    from pwfilter.output import atomic_path

    meta = reader.meta()
    job = chain.blocks(reader.frames, meta.samples.dtype.type)
    if job is None:
        return None
    want, why = st.should_stream(reader.frames, max(reader.channels, job.c_out), job.m,
                                 common.stream_budget)
    common.detail(f"{name}: {why}")
    if not want:
        return None
    result = meta.replace(samples=np.zeros((0, job.c_out), meta.samples.dtype))
    fmt = _output_format(target, suffix, result, m)
    if fmt == "NPY":  # one array written whole: computed in memory, within the limit
        common.detail(f"{name}: an .npy output is written whole: not streamed")
        return None
    subtype = audiofile.audio_subtype_for(result, fmt)
    folder = os.path.dirname(target) or "."
    with atomic_path(target, common.overwrite) as tmp, _progress(common, reader) as progress:
        def open_writer():
            return audiofile.AudioWriter(tmp, rate=reader.rate, channels=job.c_out, fmt=fmt,
                                 subtype=subtype, options=options)

        clipped = st.stream_file(reader.blocks(st.read_block_size(job)), job, open_writer,
                                 normalize=chain.normalize, temp_dir=folder,
                                 on_progress=progress)
    how = (f"overlap-add steps of {job.conv.step:,} frames (FFT size {job.conv.nfft:,})"
           if job.conv else "blocks")
    facts = {"method": "stream", "shape": [job.emitted, job.c_out], "normalized": chain.normalize,
             "notes": [f"streamed {reader.frames:,} frames in {how}"],
             "plans": [(stage, None) for stage in chain.stages]}
    return result, facts, clipped


class _progress:
    """A click progress bar on stderr for long jobs, only when stderr is a terminal."""

    def __init__(self, common: Common, reader):
        self.enabled = (not common.quiet and sys.stderr.isatty()
                        and reader.frames * reader.channels > 20_000_000)
        self.length = reader.frames
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        self.bar = click.progressbar(length=self.length, file=sys.stderr, label="pwfilter")
        self.bar.__enter__()
        return self.bar.update

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def _output_format(target, suffix, result, m) -> str:
    """By ``--format``, else the output name's suffix, else the input's own format."""
    if suffix:
        return m.format_for_suffix(suffix, result.kind)
    return m.format_for_path(target, result.kind, result.format) if target != "-" \
        else result.format


def report(common: Common, name, target, result, facts: dict, clipped: int, seconds: float):
    """Notes on stderr (clipping; with -v each stage's plan), and the ``--json`` line.

    With the result on standard output the JSON line goes to stderr, so the
    data stream stays clean.
    """
    if clipped:
        if result.kind == "image":
            what = "pixel value" if clipped == 1 else "pixel values"
        else:
            what = "sample" if clipped == 1 else "samples"
        hint = ("negative values clip at 0 in images" if facts.get("normalized") else
                "use --normalize to scale to the peak instead")
        common.note(f"{name}: {clipped:,} {what} clipped to the output format's range ({hint})")
    plans = facts.get("plans", [])
    chained = len(plans) > 1
    for i, (stage, plan) in enumerate(plans):
        where = f"stage {i + 1} ({stage.name}): " if chained else ""
        if plan is not None:
            common.detail(f"{name}: {where}{plan.describe()}")
        elif chained and stage.kernel is None:
            common.detail(f"{name}: {where}pointwise, {stage.channels} -> {stage.c_out} "
                          "channels")
    for line in facts.get("notes", ()):
        common.detail(f"{name}: {line}")
    if common.json:
        obj = {"input": name, "output": target,
               "shape": facts.get("shape") or list(result.shape)}
        described = [_stage_facts(stage, plan, facts) for stage, plan in plans]
        if chained:
            obj["stages"] = described
        elif described:
            obj.update({k: v for k, v in described[0].items() if k != "stage"})
        obj.update({"seconds": round(seconds, 4), "clipped": clipped})
        click.echo(json.dumps(obj), err=target == "-")
    elif target != "-":
        common.detail(f"{name} -> {target} ({seconds:.3f} s)")


def _stage_facts(stage, plan, facts: dict) -> dict:
    """A stage's method (and predicted costs) for ``--json``."""
    if plan is None:
        return {"stage": stage.name, "method": facts.get("method") or "pointwise"}
    return {"stage": stage.name, "method": plan.method,
            "predicted": {k: round(v, 6) for k, v in plan.costs.items()}}


def describe_each(inputs: tuple[str, ...], *, as_json: bool, max_pixels: int | None) -> int:
    """``pwfilter info``: one line (or JSON object) per input; failures summarised."""
    from pwfilter.limits import DEFAULT_MAX_PIXELS, Limits
    from pwfilter.media import describe_file

    limits = Limits(max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    failed = []
    for name in inputs:
        try:
            d = describe_file(name, limits=limits)
        except PwfilterError as exc:
            failed.append(name)
            click.echo(f"pwfilter: error: {printable(str(exc))}", err=True)
            continue
        if as_json:
            click.echo(json.dumps(d))
        elif d["kind"] == "image":
            more = "".join(f", {d[k]}" for k in ("dtype", "tiling")
                           if d.get(k) and not (k == "dtype" and d[k] in ("uint8", "uint16")))
            if d.get("compression"):
                more += (", uncompressed" if d["compression"] == "none"
                         else f", {d['compression']} compressed")
            big = ", BigTIFF" if d.get("bigtiff") else ""
            click.echo(f"{d['input']}: image {d['format']} {d['width']}x{d['height']} "
                       f"{d['mode']} {d['bits']}-bit, {d['channels']} channel(s){more}{big}")
        else:
            dur = f", {d['duration']:.3f} s" if d.get("duration") is not None else ""
            rate = f" {d['rate']} Hz" if d.get("rate") else ""
            click.echo(f"{d['input']}: {d['kind']} {d['format']}{rate} {d['subtype']}, "
                       f"{d['channels']} channel(s), {d['frames']:,} frames{dur}")
    if failed and len(inputs) > 1:
        click.echo(printable(f"pwfilter: error: {len(failed)} of {len(inputs)} files failed: "
                             + ", ".join(failed)), err=True)
    return 1 if failed else 0
