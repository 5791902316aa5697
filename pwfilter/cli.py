"""The command line: parse, dispatch, report. No math and no file formats here.

Heavy modules (NumPy, SciPy, Pillow, codecs) are imported inside the
commands, so ``pwfilter --help`` and ``--version`` start fast.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys

# pwfilter's only matrix products are channel remixes (K = a few channels), which
# are memory-bound: OpenBLAS's worker threads would only spin idle for ~0.1 s of
# CPU after loading, on the core the FFTs and codecs need (measured: 10 min of
# 8 -> 2 channel remix 0.33 -> 0.24 s). Set before NumPy loads; the user's own
# setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from pwfilter import __version__
from pwfilter.batch import Common, run_each
from pwfilter.errors import PwfilterError, out_of_memory, printable

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def common_options(fn):
    """Add the ``[common]`` options; the command receives them as one ``Common``."""
    options = [
        click.option("-o", "--output", metavar="PATH", shell_complete=complete_path,
                     help="Output file, DIR/ for many inputs, or - for stdout."),
        click.option("--format", "fmt", metavar="EXT",
                     help="Output format by extension (png, jpg, tif, wav, flac, npy...)."),
        click.option("--overwrite", is_flag=True, help="Replace existing output files."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print one JSON object per processed file on stdout."),
        click.option("--jobs", type=click.IntRange(1, 1024), metavar="N",
                     help="Files processed at once, in worker processes (default: the number "
                          "of cores; 1: one after another here, each with every core)."),
        click.option("--skip-existing", is_flag=True,
                     help="Leave outputs that already exist (a restarted batch does the rest)."),
        click.option("--scheduler", metavar="ADDRESS", envvar="PWFILTER_SCHEDULER",
                     help="Run one task per input on a Dask cluster (tcp://host:8786, or "
                          "local); needs pwfilter[dask]."),
        click.option("--debug", is_flag=True, help="Show tracebacks of errors."),
        click.option("-q", "--quiet", is_flag=True, help="No notes on stderr (errors only)."),
        click.option("-v", "--verbose", is_flag=True, help="Explain choices (method, costs)."),
        click.option("--quality", type=click.IntRange(1, 100), default=92, show_default=True,
                     help="JPEG/WebP quality."),
        click.option("--compression", type=click.IntRange(0, 9), metavar="N",
                     help="PNG/TIFF/FLAC compression level (default: fast PNG settings)."),
        click.option("--max-pixels", type=click.IntRange(1, 1 << 62), metavar="N",
                     help="Refuse images with more pixels (default 250,000,000)."),
        click.option("--max-memory", metavar="SIZE",
                     help="Refuse work needing more memory, e.g. 8G (default: half of RAM, less under a container or ulimit)."),
        click.option("--stream-above", metavar="SIZE",
                     help="Stream audio whose in-memory working set would exceed SIZE "
                          "(default 256M; 0 always streams)."),
        click.option("--chunk", type=click.IntRange(16, 1 << 20), metavar="N",
                     help="Filter TIFF, Zarr and .npy images in chunks of N x N pixels "
                          "(default: only when too large for memory, in chunks of 1024)."),
    ]

    @functools.wraps(fn)
    def wrapper(*args, output, fmt, overwrite, as_json, jobs, skip_existing, scheduler, debug,
                quiet, verbose, quality, compression, max_pixels, max_memory, stream_above,
                chunk, **kwargs):
        common = Common(output, fmt, overwrite, as_json, jobs, debug, quiet, verbose, quality,
                        compression, max_pixels, max_memory, stream_above, skip_existing,
                        scheduler, chunk)
        return fn(*args, common=common, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


class FiniteFloat(click.ParamType):
    """A float that must be finite (NaN and Inf are usage errors)."""

    name = "float"

    def __init__(self, positive: bool = False):
        self.positive = positive

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(value)
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not finite", param, ctx)
        if self.positive and number <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return number


FLOAT = FiniteFloat()


# ----------------------------------------------------------------- shell completion
# Click's own mechanism: `eval "$(_PWFILTER_COMPLETE=bash_source pwfilter)"` (zsh_source,
# fish_source). A "file" item asks the shell for its own file-name completion; bash uses it
# only when no name matches.


def complete_path(ctx, param, incomplete):
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


def _names(incomplete: str, words) -> list:
    from click.shell_completion import CompletionItem

    low = incomplete.lower()
    return [CompletionItem(incomplete, type="file")] + [
        CompletionItem(word, help=form) for word, form in words if word.startswith(low)]


def complete_kernel(ctx, param, incomplete):
    """Named kernels and FIR designs (``gaussian:``, ``sharpen``…), and files."""
    from pwfilter.specs import kernel_words

    return _names(incomplete, kernel_words())


def complete_matrix(ctx, param, incomplete):
    """Remix presets (``gray``, ``mid-side``…), and files. Once the inputs typed so far
    are all images (or all audio, by their suffixes), only that medium's presets."""
    from pwfilter.media import IMAGE_SUFFIXES
    from pwfilter.specs import AUDIO_PRESETS, IMAGE_PRESETS

    # While an option's value is completed, the inputs typed before it are still in args.
    typed = (*(ctx.params.get("inputs") or ()), *ctx.args)
    suffixes = {os.path.splitext(name)[1].lower() for name in typed}
    words = []
    if not suffixes or not suffixes <= _AUDIO_SUFFIXES:
        words += [(p, "image preset") for p in IMAGE_PRESETS]
    if not suffixes or not suffixes <= set(IMAGE_SUFFIXES):
        words += [(p, "audio preset") for p in AUDIO_PRESETS]
    return _names(incomplete, words)


_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".caf", ".w64",
                   ".mp3", ".rf64"}


def _register_bash_completion() -> None:
    """Click's bash script, except that a name ending in ``:`` (``gaussian:``, ``lowpass:``)
    is completed without the trailing space, so that its number follows at once."""
    from click.shell_completion import BashComplete, add_completion_class

    plain = "            COMPREPLY+=($value)\n"
    if plain not in BashComplete.source_template:  # another Click: its script as it is
        return

    class Bash(BashComplete):
        source_template = BashComplete.source_template.replace(
            plain, plain + "            [[ $value == *: ]] && compopt -o nospace\n")

    add_completion_class(Bash, "bash")


def complete_inputs(ctx, param, incomplete):
    """Files; for ``convolve``, once an input is given, the word may be the KERNEL too."""
    if ctx.command.name == "convolve" and (ctx.params.get("inputs") or ctx.params.get("kernel")):
        return complete_kernel(ctx, param, incomplete)
    return complete_path(ctx, param, incomplete)


def kernel_options(fn):
    """Options shaping a kernel (``convolve`` KERNEL, ``dsconv --depthwise``)."""
    options = [
        click.option("--correlate", is_flag=True,
                     help="Apply the kernel unflipped (as OpenCV filter2D)."),
        click.option("--normalize-kernel", type=click.Choice(["sum", "l1", "energy", "peak"]),
                     is_flag=False, flag_value="sum", default=None,
                     help="Divide the kernel by its sum (default), L1 norm, energy or peak."),
        click.option("--resample-ir", is_flag=True,
                     help="Resample an impulse response to the input's rate."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def filter_options(fn):
    """Add the ``[filter]`` options, passed on as one ``FilterOptions``."""
    options = [
        click.option("--method", type=click.Choice(["auto", "direct", "fft", "oa", "separable"]),
                     default="auto", show_default=True,
                     help="Evaluation method; auto picks the fastest by a cost model."),
        click.option("--mode", type=click.Choice(["same", "full", "valid"]),
                     help="Output size (default: same; convolve and dsconv on audio: full, "
                          "but same for FIR designs)."),
        click.option("--boundary",
                     type=click.Choice(["reflect", "mirror", "nearest", "wrap", "zero"]),
                     help="Edge rule (default: reflect for images, zero for audio)."),
        click.option("--scale", type=FLOAT, default=1.0, show_default=True,
                     help="Multiply the filtered result."),
        click.option("--bias", type=FLOAT, default=0.0, show_default=True,
                     help="Add to the filtered result (normalized units)."),
        click.option("--dry", type=FLOAT, default=0.0, show_default=True,
                     help="Amount of the unfiltered input mixed in."),
        click.option("--wet", type=FLOAT, default=1.0, show_default=True,
                     help="Amount of the filtered result."),
        click.option("--normalize", is_flag=True,
                     help="Scale the result to the format's peak (1/max|y|)."),
    ]

    @functools.wraps(fn)
    def wrapper(*args, method, mode, boundary, scale, bias, dry, wet, normalize, **kwargs):
        from pwfilter.steps import FilterOptions

        opts = FilterOptions(mode=mode, boundary=boundary, method=method, scale=scale, bias=bias,
                             dry=dry, wet=wet, normalize=normalize)
        return fn(*args, fopts=opts, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def blur_options(fn):
    for option in reversed([
        click.option("--kind", type=click.Choice(["gaussian", "box"]), default="gaussian",
                     show_default=True),
        click.option("--sigma", type=FiniteFloat(positive=True), default=2.0,
                     show_default=True, help="Gaussian standard deviation (pixels or samples)."),
        click.option("--radius", type=click.IntRange(0), default=1, show_default=True,
                     help="Box radius: 2R+1 taps per axis."),
    ]):
        fn = option(fn)
    return filter_options(fn)


def group_options(fn):
    for option in reversed([
        click.option("--groups", type=click.IntRange(1, 65536), default=1, show_default=True,
                     help="Grouped matrix: each group of channels mixed on its own."),
        click.option("--shuffle", type=click.IntRange(1, 65536), default=None, metavar="G",
                     help="Channel shuffle of the outputs over G groups."),
    ]):
        fn = option(fn)
    return fn


def remix_options(fn):
    for option in reversed([
        click.option("--matrix", "matrix", required=True, metavar="SPEC",
                     shell_complete=complete_matrix,
                     help="Rows (\"0.299 0.587 0.114\"), .npy/.txt file, or preset: gray, sepia, "
                          "bgr, invert (images); mono, stereo, swap, mid-side, side-mid (audio)."),
        click.option("--bias", metavar="SPEC",
                     help="Added per output channel: one value or one each."),
    ]):
        fn = option(fn)
    fn = group_options(fn)
    for option in reversed([
        click.option("--dry", type=FLOAT, default=0.0, show_default=True,
                     help="Amount of the input mixed in (needs C_out = C_in)."),
        click.option("--wet", type=FLOAT, default=1.0, show_default=True,
                     help="Amount of the remixed result."),
        click.option("--normalize", is_flag=True, help="Scale the result to the format's peak."),
    ]):
        fn = option(fn)
    return fn


def dsconv_options(fn):
    for option in reversed([
        click.option("--depthwise", "depthwise", required=True, metavar="KERNEL",
                     shell_complete=complete_kernel,
                     help="Per-channel kernel (as convolve's KERNEL)."),
        click.option("--pointwise", "pointwise", required=True, metavar="SPEC",
                     shell_complete=complete_matrix,
                     help="Channel matrix (as remix --matrix)."),
    ]):
        fn = option(fn)
    return filter_options(kernel_options(group_options(fn)))


# ----------------------------------------------------------------- steps


def convolve_step(kernel, correlate, normalize_kernel, resample_ir, fopts):
    from dataclasses import replace

    from pwfilter.steps import ConvolveStep

    return ConvolveStep(name="convolve", normalize=fopts.normalize, kernel=kernel,
                        normalize_kernel=normalize_kernel, resample_ir=resample_ir,
                        opts=replace(fopts, correlate=correlate))


def blur_step(kind, sigma, radius, fopts):
    from pwfilter.steps import BlurStep

    return BlurStep(name="blur", normalize=fopts.normalize, kind=kind, sigma=sigma,
                    radius=radius, opts=fopts)


def remix_step(matrix, bias, groups, shuffle, dry, wet, normalize):
    from pwfilter.steps import RemixStep

    return RemixStep(name="remix", normalize=normalize, matrix=matrix, bias=bias,
                     groups=groups, shuffle=shuffle or 0, dry=dry, wet=wet)


def dsconv_step(depthwise, pointwise, groups, shuffle, correlate, normalize_kernel, resample_ir,
                fopts):
    from dataclasses import replace

    from pwfilter.steps import DSConvStep

    return DSConvStep(name="dsconv", normalize=fopts.normalize, depthwise=depthwise,
                      pointwise=pointwise, groups=groups, shuffle=shuffle or 0,
                      normalize_kernel=normalize_kernel, resample_ir=resample_ir,
                      opts=replace(fopts, correlate=correlate))


def _run(common: Common, inputs, command: str, *steps) -> int:
    """Run ``steps`` on every input (in ``--jobs`` worker processes when there are several)."""
    from pwfilter.steps import Job

    try:
        job = Job(tuple(steps), command)
    except PwfilterError as exc:
        raise click.UsageError(str(exc)) from None
    return run_each(common, inputs, command, job)


# A stage of ``chain``: the command's own options, no inputs; the callback makes its step.
STAGES = {
    "blur": click.Command("blur", callback=blur_options(blur_step)),
    "convolve": click.Command("convolve", callback=kernel_options(filter_options(
        click.argument("kernel", metavar="KERNEL")(convolve_step)))),
    "remix": click.Command("remix", callback=remix_options(remix_step)),
    "dsconv": click.Command("dsconv", callback=dsconv_options(dsconv_step)),
}
for _name, _command in STAGES.items():
    _command.params = list(reversed(getattr(_command.callback, "__click_params__", [])))


def parse_stages(tokens: list[str]) -> list:
    """Steps from ``STAGE [options] + STAGE [options] ...`` (each stage's own options)."""
    groups: list[list[str]] = [[]]
    for token in tokens:
        if token == "+":
            groups.append([])
        else:
            groups[-1].append(token)
    steps = []
    for i, group in enumerate(groups):
        if not group:
            raise click.UsageError(f"stage {i + 1} is empty (STAGE [options] + STAGE ...)")
        command = STAGES.get(group[0])
        if command is None:
            raise click.UsageError(f"stage {i + 1}: unknown stage {group[0]!r} (one of: "
                                   f"{', '.join(STAGES)})")
        try:
            with command.make_context(f"pwfilter chain ... -- {group[0]}", group[1:]) as ctx:
                steps.append(command.invoke(ctx))
        except click.NoSuchOption as exc:
            if exc.option_name in _chain_options():
                raise click.UsageError(f"stage {i + 1} ({group[0]}): {exc.option_name} is an "
                                       f"option of the chain: give it before --") from None
            raise
    return steps


def _chain_options() -> set[str]:
    return {name for p in chain.params for name in (*p.opts, *p.secondary_opts)}


# ----------------------------------------------------------------- commands


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="pwfilter")
def cli():
    """Convolve, blur and remix the channels of images and audio.

    Images (PNG, JPEG, TIFF, BMP, WebP; 8/16-bit L, LA, RGB, RGBA), audio
    (WAV, FLAC, OGG, AIFF, ... any channel count) and .npy arrays. Results are
    written beside each input as STEM.COMMAND.EXT unless -o says otherwise;
    nothing is overwritten without --overwrite.
    """


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, metavar="INPUT...", shell_complete=complete_inputs)
@click.argument("kernel", metavar="KERNEL", shell_complete=complete_kernel)
@kernel_options
@filter_options
@common_options
def convolve(inputs, common, **options):
    """Convolve each INPUT with KERNEL.

    KERNEL: a .npy/.txt/.csv file, inline rows ("1 2 1; 2 4 2; 1 2 1"), an
    audio impulse response, or a name: gaussian:S, box:N, identity, sharpen,
    laplacian, sobel-x, sobel-y, emboss; for audio lowpass:HZ[:TAPS],
    highpass:HZ[:TAPS], bandpass:LO:HI[:TAPS]. Rows starting with a minus
    sign go after -- or with a leading space: " -1 2 -1".
    """
    if not inputs:
        raise click.UsageError("missing KERNEL (pwfilter convolve INPUT... KERNEL)")
    return _run(common, inputs, "convolve", convolve_step(**options))


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                shell_complete=complete_path)
@blur_options
@common_options
def blur(inputs, common, **options):
    """Blur each INPUT (Gaussian or box, separable, any size at about the same cost).

    Images and audio keep their size (mode same), unless --mode says otherwise.
    """
    return _run(common, inputs, "blur", blur_step(**options))


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                shell_complete=complete_path)
@remix_options
@common_options
def remix(inputs, common, **options):
    """Remix the channels of each INPUT by a matrix (a 1x1 pointwise convolution)."""
    return _run(common, inputs, "remix", remix_step(**options))


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                shell_complete=complete_path)
@dsconv_options
@common_options
def dsconv(inputs, common, **options):
    """Depthwise separable convolution: a depthwise kernel, then a pointwise matrix.

    --scale and --bias act on the depthwise result; --dry/--wet mix the input
    back in after the pointwise step (a residual connection).
    """
    return _run(common, inputs, "dsconv", dsconv_step(**options))


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                shell_complete=complete_path)
@common_options
@click.pass_obj
def chain(obj, inputs, common):
    """Several steps on each INPUT in one pass: INPUT... [options] -- STAGE [+ STAGE]...

    A STAGE is blur, convolve KERNEL, remix or dsconv with its own options
    and no inputs, e.g.

      pwfilter chain photo.png -o out.png -- blur --sigma 1.5 + remix --matrix sepia

    The steps work in float, one after another; the result is rounded to the
    output format once. Channel counts may change between stages; long audio
    streams through every stage. --normalize belongs to the last stage.
    """
    tokens = (obj or {}).get("stages")
    if not tokens:
        raise click.UsageError("no stages: pwfilter chain INPUT... [options] -- STAGE "
                               "[+ STAGE]...")
    return _run(common, inputs, "chain", *parse_stages(tokens))


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                shell_complete=complete_path)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--max-pixels", type=click.IntRange(1), metavar="N",
              help="Refuse images with more pixels (default 250,000,000).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def info(inputs, as_json, max_pixels, debug):
    """Describe each INPUT: size or rate, channels, depth or subtype, duration."""
    from pwfilter.batch import describe_each

    return describe_each(inputs, as_json=as_json, max_pixels=max_pixels)


@cli.command(context_settings=CONTEXT)
@click.argument("spec", metavar="SPEC", shell_complete=complete_kernel)
@click.option("--rate", type=click.IntRange(1), metavar="HZ",
              help="Sample rate (FIR designs need it): a 1-D kernel, frequencies in Hz.")
@click.option("--audio", "one_d", is_flag=True,
              help="Read it as 1-D (audio): gaussian/box/identity in 1-D, a 2-D array as one "
                   "1-D kernel per row (C, M).")
@click.option("-o", "--output", metavar="FILE", shell_complete=complete_path,
              help="Write it: .npy, .txt/.csv (text rows), or - (.npy on stdout).")
@click.option("--plot", metavar="FILE", shell_complete=complete_path,
              help="Draw its response: FILE.png or FILE.svg (needs pwfilter[plot]).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the response's numbers as one JSON object.")
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@click.option("--max-memory", metavar="SIZE",
              help="Refuse kernels needing more memory, e.g. 8G (default: half of RAM).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
def kernel(spec, rate, one_d, output, plot, as_json, overwrite, max_memory, debug):
    """Describe the kernel SPEC by its frequency response, write it, draw it.

    SPEC is any kernel convolve takes: a name (gaussian:S, box:N, sharpen...),
    an FIR design (lowpass:HZ[:TAPS], highpass:HZ[:TAPS], bandpass:LO:HI[:TAPS],
    with --rate), a .npy/.txt/.csv file, inline rows, or an audio impulse
    response. Without -o or --json it prints a summary of the response: gains
    at DC and Nyquist, -3/-6 dB frequencies, ripple and stopband attenuation of
    FIR designs, group delay, an impulse response's RT60; 2-D kernels their DC
    gain and rank.
    """
    from pwfilter.kernel_command import kernel_command

    if output == "-" and sys.stdout.isatty():
        raise click.UsageError("-o - would write binary data to the terminal")
    limits = Common(max_memory=max_memory).limits
    text, to_stderr = kernel_command(spec, rate=rate or 0, audio=one_d, output=output,
                                     plot=plot, as_json=as_json, overwrite=overwrite,
                                     limits=limits)
    click.echo(text, err=to_stderr)
    return 0


@cli.command(context_settings=CONTEXT)
@click.option("--cin", type=click.IntRange(1), required=True, help="Input channels.")
@click.option("--cout", type=click.IntRange(1), required=True, help="Output channels.")
@click.option("-k", "ksize", type=click.IntRange(1), required=True, help="Kernel size k (k x k).")
@click.option("--groups", type=click.IntRange(1), default=1, show_default=True,
              help="Groups of the pointwise part.")
@click.option("--height", type=click.IntRange(1), help="Image height (per-image totals).")
@click.option("--width", type=click.IntRange(1), help="Image width (per-image totals).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def cost(cin, cout, ksize, groups, height, width, as_json):
    """MACs and weights of a k x k convolution vs its depthwise separable form."""
    from pwfilter.cost import conv_cost, format_cost

    if (height is None) != (width is None):
        raise click.UsageError("--height and --width go together")
    if cin % groups or cout % groups:
        raise click.UsageError(f"--groups {groups} must divide --cin {cin} and --cout {cout}")
    c = conv_cost(cin, cout, ksize, groups=groups, height=height, width=width)
    click.echo(json.dumps(c) if as_json else format_cost(c))
    return 0


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the fitted constants as JSON.")
@click.option("--quick", is_flag=True, help="Fewer sizes and repeats (about half the time).")
def calibrate(as_json, quick):
    """Time the methods on this machine (10-30 s) and store the fitted cost model.

    --method auto then predicts each method's time with constants of this
    machine rather than the shipped ones (-v says which are used). They are
    stored in the user's cache folder ($XDG_CACHE_HOME/pwfilter/costs.json).
    Each line printed is a formula's constants and the worst relative error
    of its predictions over the problems timed. --json measures and stores
    the same way and prints the result as one JSON object.
    """
    import datetime

    from pwfilter import calibrate as cal
    from pwfilter import costs

    def progress(what):
        if not as_json:
            click.echo(f"pwfilter: timing: {what}", err=True)

    start = datetime.datetime.now()
    constants, errors = cal.calibrate(quick=quick, progress=progress)
    path = costs.store(constants, start.strftime("%Y-%m-%d %H:%M"))
    seconds = (datetime.datetime.now() - start).total_seconds()
    if as_json:
        click.echo(json.dumps({"path": path, "seconds": round(seconds, 1),
                               "backend": costs.backend(), "constants": constants,
                               "worst_relative_error": {k: round(v, 3)
                                                        for k, v in errors.items()}}))
        return 0
    for formula, values in constants.items():
        terms = ", ".join(f"{t} {v:.3g}" for t, v in values.items())
        worst = f" (worst fit error {errors[formula]:.0%})" if formula in errors else ""
        click.echo(f"{formula}: {terms}{worst}")
    click.echo(f"pwfilter: calibrated in {seconds:.1f} s; stored in {path}", err=True)
    return 0


# ----------------------------------------------------------------- entry point


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def _run_in_worker(args: list[str], obj: dict):
    """Run the command in a worker thread while this (the main) thread waits for it.

    Python runs signal handlers in the main thread only, between bytecodes: a
    long NumPy, SciPy or OpenCV call would delay Ctrl-C or SIGTERM until it
    returns (minutes). Waiting on the worker, the main thread is woken by the
    signal at once, so the interrupt path (:func:`_abandon`) acts within
    milliseconds, whatever the worker is computing.
    """
    import threading

    outcome: dict = {}

    def work():
        # Signals go to the main thread only (this thread's mask is inherited by the
        # threads it starts: readers, writers, OpenCV's and the FFT's pools). A signal
        # delivered to a worker would only set Python's flag, and the main thread, asleep
        # in join(), would notice it when the work is done.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            outcome["status"] = cli.main(args=args, prog_name="pwfilter", standalone_mode=False,
                                         obj=obj)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as is
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="pwfilter-command", daemon=True)
    worker.start()
    try:
        worker.join()
    except KeyboardInterrupt:
        _abandon()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("status")


def _abandon() -> None:
    """Interrupted while the worker computes: remove its named temporaries (unnamed ones
    vanish with the process), say so and exit 130 without waiting for it."""
    from pwfilter import output

    if "pwfilter.workers" in sys.modules:
        sys.modules["pwfilter.workers"].stop()
    output.remove_temporaries()
    try:
        sys.stderr.write("pwfilter: interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def _native_stderr_silenced() -> None:
    """Keep native libraries' own messages (libpng's "PNG warning: …", libjpeg's "Corrupt
    JPEG data", OpenCV's "[ WARN ]") off stderr: pwfilter reports every problem itself, in
    one line. Python's ``sys.stderr`` moves to a copy of the real stderr and descriptor 2
    (which those libraries write to) goes to /dev/null. Only for the process's own stderr
    (not under a test's capture) and not with ``--debug``."""
    if sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    except (OSError, ValueError):
        return
    sys.stderr = sys.__stderr__ = open(real, "w", buffering=1, encoding=sys.stderr.encoding,
                                       errors="backslashreplace")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI with pwfilter's error boundary (exit 1 errors, 2 usage, 130 Ctrl-C)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if not debug:
        import warnings

        # Libraries' warnings (NumPy's overflow, Pillow's "Invalid APNG", an old .npy
        # header) would break the one-line contract; results are checked (clipping is
        # counted, limits are enforced, damage is an error) instead. --debug shows them.
        warnings.simplefilter("ignore")
    signal.signal(signal.SIGTERM, _interrupted)
    if "_PWFILTER_COMPLETE" in os.environ:
        _register_bash_completion()
    if not debug:
        _native_stderr_silenced()
    if sys.stdout is sys.__stdout__ and sys.stdout is not None:
        sys.stdout = _CheckedStdout(sys.stdout)
    obj = {}
    if args[:1] == ["chain"] and "--" in args:
        # The stages follow the chain's own "--"; Click would drop that mark.
        cut = args.index("--")
        args, obj["stages"] = args[:cut], args[cut + 1:]
    try:
        status = _run_in_worker(args, obj)
        _flush_stdout()
    except click.exceptions.Abort:
        click.echo("pwfilter: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("pwfilter: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PwfilterError as exc:
        if debug:
            raise
        click.echo(f"pwfilter: error: {printable(str(exc))}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        _discard_stdout()
        sys.exit(1)
    except MemoryError:
        click.echo("pwfilter: error: out of memory (lower the work or --max-memory)", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the boundary: no traceback unless --debug
        if debug:
            raise
        if out_of_memory(exc):
            click.echo("pwfilter: error: out of memory (lower the work or --max-memory)",
                       err=True)
            sys.exit(1)
        click.echo(f"pwfilter: error: internal error: {type(exc).__name__}: "
                   f"{printable(str(exc))} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


def _flush_stdout() -> None:
    """Flush standard output now, so that a full disk or a closed pipe is this command's
    error rather than Python's message at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        _discard_stdout()
        raise PwfilterError(f"standard output: cannot write ({exc.strerror or exc})") from None


class _CheckedStdout:
    """Standard output whose write errors (a full disk) are pwfilter's one-line error, not
    an internal one; the rest is the real stream's."""

    def __init__(self, stream):
        self._stream = stream
        self.failed = False

    def write(self, text):
        if isinstance(text, str) and not text:
            return 0  # Click probes with empty writes; nothing to check
        return self._checked(self._stream.write, text)

    def flush(self):
        return self._checked(self._stream.flush)

    def _checked(self, call, *args):
        if self.failed:
            return None  # already reported; what is left is dropped
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.failed = True
            _discard_stdout()
            raise PwfilterError(f"standard output: cannot write ({exc.strerror or exc})") \
                from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _discard_stdout() -> None:
    """Point standard output at /dev/null so that the interpreter's final flush of what is
    left in its buffer cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
