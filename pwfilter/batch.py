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

from pwfilter.errors import PwfilterError


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

    @functools.cached_property
    def limits(self):
        from pwfilter.limits import DEFAULT_MAX_PIXELS, Limits, parse_size

        return Limits(max_pixels=self.max_pixels or DEFAULT_MAX_PIXELS,
                      max_memory=parse_size(self.max_memory) if self.max_memory else 0)

    def note(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"pwfilter: {message}", err=True)

    def detail(self, message: str) -> None:
        if self.verbose and not self.quiet:
            click.echo(f"pwfilter: {message}", err=True)


def run_each(common: Common, inputs: tuple[str, ...], command: str, process,
             stream=None, normalize: bool = False) -> int:
    """Load, process and save every input; report; return the exit status.

    ``process(media) -> (media, facts)`` does the work in memory; ``facts``
    (method, plan) are shown with ``-v`` and ``--json``. ``stream(reader)``,
    where given, returns a :class:`pwfilter.stream.StreamFilter` (or None)
    for audio too large to hold in memory. Every input is attempted;
    failures are reported one line each and summarised.
    """
    from pwfilter import media as m
    from pwfilter.output import STDOUT, atomic_path, check_target, plan_output

    if not inputs:
        raise click.UsageError("no INPUT given")
    if inputs.count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")
    if common.output and common.output != STDOUT and len(inputs) > 1 and \
            not (common.output.endswith(("/", os.sep)) or os.path.isdir(common.output)):
        raise click.UsageError(f"-o {common.output}: one output file for {len(inputs)} inputs "
                               "(end it with / to write into a folder)")
    if common.output == STDOUT and len(inputs) > 1:
        raise click.UsageError("-o - writes one result; give one INPUT")
    if common.output and common.output.endswith(("/", os.sep)):
        try:
            os.makedirs(common.output, exist_ok=True)
        except OSError as exc:
            raise PwfilterError(f"-o {common.output}: cannot create the folder ({exc.strerror})")
    suffix = None
    if common.format:
        suffix = "." + common.format.lower().lstrip(".")
    options = m.SaveOptions(quality=common.quality, compression=common.compression)
    failed: list[str] = []
    for name in inputs:
        start = time.perf_counter()
        try:
            target = plan_output(name, command, common.output, suffix, len(inputs) > 1)
            check_target(target, inputs, common.overwrite)
            if stream is not None and target != STDOUT and _is_audio_file(name, m):
                done = _try_stream(common, name, target, suffix, stream, normalize, options, m)
                if done is not None:
                    report(common, name, target, *done, time.perf_counter() - start)
                    continue
            media = m.load_media(name, limits=common.limits)
            result, facts = process(media)
            fmt = _output_format(target, suffix, result, m)
            if target == STDOUT:
                buf = io.BytesIO()
                clipped = m.write_media(result, buf, fmt, options)
                sys.stdout.buffer.write(buf.getvalue())
                sys.stdout.buffer.flush()
            else:
                with atomic_path(target, common.overwrite) as tmp:
                    clipped = m.write_media(result, tmp, fmt, options)
            report(common, name, target, result, facts, clipped, time.perf_counter() - start)
        except PwfilterError as exc:
            failed.append(name)
            message = str(exc)
            shown = "<stdin>" if name == "-" else name
            if shown not in message:
                message = f"{shown}: {message}"
            click.echo(f"pwfilter: error: {message}", err=True)
    if failed and len(inputs) > 1:
        click.echo(f"pwfilter: error: {len(failed)} of {len(inputs)} files failed: "
                   + ", ".join(failed), err=True)
    return 1 if failed else 0


def _is_audio_file(name: str, m) -> bool:
    if name == "-":
        return False
    try:
        with open(name, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return m.sniff_format(head, name) in ("WAV", "FLAC", "OGG", "AIFF")


def _try_stream(common: Common, name, target, suffix, stream, normalize, options, m):
    """Stream one audio file when it is too large for memory; None to use the in-memory path."""
    import numpy as np

    from pwfilter import stream as st
    from pwfilter.limits import parse_size
    from pwfilter.output import atomic_path

    reader = m.AudioReader(name, limits=common.limits)
    meta = reader.meta()
    job = stream(reader)
    if job is None:
        return None
    budget = st.STREAM_BUDGET
    if common.stream_above is not None:
        budget = 0 if common.stream_above.strip() == "0" else parse_size(common.stream_above)
    want, why = st.should_stream(reader.frames, reader.channels, job.m, budget)
    common.detail(f"{name}: {why}")
    if not want:
        return None
    result = meta.replace(data=np.zeros((0, job.c_out), meta.data.dtype))
    fmt = _output_format(target, suffix, result, m)
    subtype = m.audio_subtype_for(result, fmt)
    folder = os.path.dirname(target) or "."
    with atomic_path(target, common.overwrite) as tmp, _progress(common, reader) as progress:
        def open_writer():
            return m.AudioWriter(tmp, rate=reader.rate, channels=job.c_out, fmt=fmt,
                                 subtype=subtype, options=options)

        clipped = st.stream_file(reader.blocks(st.read_block_size(job)), job, open_writer,
                                 normalize=normalize, temp_dir=folder, on_progress=progress)
    how = (f"overlap-add steps of {job.conv.step:,} frames (FFT size {job.conv.nfft:,})"
           if job.conv else "blocks")
    facts = {"method": "stream", "shape": [job.emitted, job.c_out],
             "notes": [f"streamed {reader.frames:,} frames in {how}"]}
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
    if clipped:
        what = "pixel values" if result.kind == "image" else "samples"
        common.note(f"{name}: {clipped:,} {what} clipped to the output format's range "
                    "(use --normalize to scale to the peak instead)")
    plan = facts.get("plan")
    if plan is not None:
        common.detail(f"{name}: {plan.describe()}")
    for line in facts.get("notes", ()):
        common.detail(f"{name}: {line}")
    if common.json:
        obj = {"input": name, "output": target,
               "shape": facts.get("shape") or list(result.data.shape),
               "method": plan.method if plan is not None else facts.get("method"),
               "seconds": round(seconds, 4), "clipped": clipped}
        if plan is not None:
            obj["predicted"] = {k: round(v, 6) for k, v in plan.costs.items()}
        click.echo(json.dumps(obj))
    elif target != "-":
        common.detail(f"{name} -> {target} ({seconds:.3f} s)")
