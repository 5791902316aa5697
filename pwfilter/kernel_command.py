"""``pwfilter kernel SPEC``: one kernel from any source — written to a file, described by
its response's numbers (a summary or ``--json``), drawn (``--plot``).

The numbers come from :mod:`pwfilter.response`, the pictures from
:mod:`pwfilter.plot` (which alone imports matplotlib); this module resolves
the kernel, checks the targets and limits before any work, and writes
atomically.
"""

from __future__ import annotations

import functools
import io
import json
import os

from pwfilter.errors import PwfilterError, printable


def kernel_command(spec: str, *, rate: int = 0, audio: bool = False, output: str | None = None,
                   plot: str | None = None, as_json: bool = False, overwrite: bool = False,
                   limits=None) -> tuple[str, bool]:
    """Run ``pwfilter kernel``; return the text to print and whether it goes to stderr
    (when the kernel itself goes to standard output).

    Everything that can fail early does, before anything is written: the plot's
    format and the matplotlib extra, the targets, the memory the work needs.
    """
    from pwfilter import limits as lim
    from pwfilter import plot as plotting
    from pwfilter import response, specs
    from pwfilter.media import load_media
    from pwfilter.output import ReadFiles, atomic_path, check_target, open_new

    limits = limits or lim.Limits()
    fmt = None
    if plot is not None:
        fmt = plotting.plot_format(plot)
        plotting.require_matplotlib()
        if output not in (None, "-") and os.path.realpath(output) == os.path.realpath(plot):
            raise PwfilterError(f"{plot}: -o and --plot name the same file")
    kernel = specs.standalone_kernel(spec, rate=rate, audio=audio,
                                     load_audio=functools.partial(load_media, limits=limits))
    reads = ReadFiles(specs.files_read(spec))
    if output is not None:
        _check_writable(kernel, output, limits)
        check_target(output, reads, overwrite)
    if plot is not None:
        check_target(plot, reads, overwrite)
    numbers = as_json or output is None
    if numbers or plot is not None:
        limits.check_memory(response.analysis_bytes(kernel),
                            f"the response of kernel {kernel.name}")
    lines = []
    if output is not None:
        lines.append(write_kernel(kernel, output, overwrite))
    report = response.describe(kernel) if numbers else None
    if plot is not None:
        with atomic_path(plot, overwrite) as tmp, open_new(tmp) as fh:
            plotting.draw(kernel, fh, fmt)
        lines.append(printable(f"{plot}: the response of {kernel.name} drawn ({fmt.upper()})"))
    to_stderr = output == "-"
    if as_json:
        report.update(output=output, plot=plot)
        return json.dumps(report), to_stderr
    if report is not None:
        lines.insert(0, response.summary(report))
    return "\n".join(lines), to_stderr


def _check_writable(kernel, output: str, limits) -> None:
    """The kernel's file fits the memory limit (checked before its dense values are made)
    and its shape fits the format (text rows hold 1-D and 2-D arrays)."""
    from pwfilter import limits as lim

    text = output.lower().endswith((".txt", ".csv"))
    shape = tuple(kernel.array.shape)
    limits.check_memory(lim.kernel_file_bytes(shape, text, output == "-"),
                        f"kernel {kernel.name} of shape {shape}")
    if text and len(shape) > 2:
        raise PwfilterError(f"{output}: text rows hold 1-D or 2-D kernels, not shape {shape} "
                            "(write .npy)")


def write_kernel(kernel, output: str, overwrite: bool) -> str:
    """Write the kernel as .npy or text rows (or .npy to standard output); return the line
    that describes it: shape, sum and rank."""
    import numpy as np

    from pwfilter import engine
    from pwfilter.batch import write_stdout
    from pwfilter.output import atomic_path, open_new

    text = output.lower().endswith((".txt", ".csv"))
    dense = np.asarray(kernel.array)

    def write(fh):
        if text:
            sep = "," if output.lower().endswith(".csv") else " "
            np.savetxt(fh, np.atleast_2d(dense), fmt="%.17g", delimiter=sep,
                       header=f"pwfilter kernel {kernel.name}", encoding="utf-8")
        else:
            np.save(fh, dense, allow_pickle=False)

    if output == "-":
        buf = io.BytesIO()
        write(buf)
        write_stdout(buf.getvalue())
    else:
        with atomic_path(output, overwrite) as tmp, open_new(tmp) as fh:
            write(fh)
    line = printable(f"{output}: {kernel.name} shape {dense.shape}, sum {dense.sum():.6g}")
    if kernel.axes == 2:
        return f"{line}, rank {engine.kernel_rank(kernel.array, 2)[0]}"
    return line if kernel.per_channel else f"{line}, rank 1"
