"""Where results go, and writing them so that nothing is ever lost.

Rules (see the README, "Output rules"):

- default: beside the input, ``<stem>.<command><suffix>``;
- ``-o FILE`` for one input, ``-o DIR/`` (or an existing directory) for many —
  the input's own file name inside DIR; ``-o -`` for standard output;
- an existing file is replaced only with ``--overwrite``; an input is never
  replaced, whatever the path spelling (symlinks, ``./``, hard links);
- writes are atomic: a temporary file in the target folder, renamed into place
  at the end, removed on any failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence

from pwfilter.errors import PwfilterError

STDOUT = "-"


def is_dir_target(output: str) -> bool:
    return output.endswith(("/", os.sep)) or os.path.isdir(output)


def plan_output(input_name: str, command: str, output: str | None, suffix: str | None,
                many: bool) -> str:
    """The output path for one input (``"-"`` for standard output).

    ``suffix`` replaces the input's suffix when the user asks for another
    format (``--format``); standard input without ``-o`` goes to standard output.
    """
    if output == STDOUT or (output is None and input_name == "-"):
        return STDOUT
    if output is not None and not is_dir_target(output):
        if many:
            raise PwfilterError(f"-o {output}: one output file for several inputs "
                                "(use -o DIR/ to write them into a folder)")
        return output
    if input_name == "-":
        base, old_suffix = "stdin", ""
    else:
        base, old_suffix = os.path.splitext(os.path.basename(input_name))
    new_suffix = suffix or old_suffix
    if output is None:
        return os.path.join(os.path.dirname(input_name), f"{base}.{command}{new_suffix}")
    return os.path.join(output, base + new_suffix)


class ReadFiles:
    """The files a command reads, by resolved path and by identity (device, inode): an
    output may be none of them, however it is spelled (``./``, symlinks, hard links).
    Built once per command, so checking an output costs two lookups, not one per input."""

    def __init__(self, paths: Sequence[str]):
        self.paths: set[str] = set()
        self.ids: set[tuple[int, int]] = set()
        for p in paths:
            if p == STDOUT:
                continue
            self.paths.add(os.path.realpath(p))
            try:
                st = os.stat(p)
            except OSError:
                continue
            self.ids.add((st.st_dev, st.st_ino))

    def __contains__(self, target: str) -> bool:
        if os.path.realpath(target) in self.paths:
            return True
        try:
            st = os.stat(target)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.ids


def check_target(target: str, reads: ReadFiles, overwrite: bool) -> None:
    """Refuse to write over a file the command reads, or over an existing file without
    ``overwrite``."""
    if target == STDOUT:
        return
    if target in reads:
        raise PwfilterError(f"{target}: refusing to write over an input file")
    if not target:
        raise PwfilterError("the output path is empty")
    if os.path.isdir(target):
        raise PwfilterError(f"{target}: is a directory")
    if os.path.exists(target) and not os.path.isfile(target):
        raise PwfilterError(f"{target}: not a regular file (a device, FIFO or socket); "
                            "pwfilter replaces only regular files")
    if os.path.lexists(target) and not overwrite:
        raise PwfilterError(f"{target}: exists (use --overwrite to replace it)")
    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        raise PwfilterError(f"{target}: folder {folder} does not exist")


@contextlib.contextmanager
def atomic_path(target: str, overwrite: bool) -> Iterator[str]:
    """Yield a temporary path beside ``target``; publish it there only on success.

    On any exception, KeyboardInterrupt included, the temporary file is
    removed and ``target`` is left as it was. Without ``overwrite`` the file
    is published with a hard link, which fails if ``target`` appeared
    meanwhile (no race with another writer).
    """
    folder = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part",
                                   dir=folder)
    except OSError as exc:
        raise PwfilterError(f"{target}: cannot write ({exc.strerror})") from None
    os.close(fd)
    try:
        yield tmp
        _publish(tmp, target, overwrite)
    except OSError as exc:
        # Disk full, permissions...: the file's own error, not an internal one (and the
        # other inputs of a batch are still attempted).
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise PwfilterError(f"{target}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish(tmp: str, target: str, overwrite: bool) -> None:
    mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise PwfilterError(f"{target}: exists (use --overwrite to replace it)") from None
    except OSError:
        # File systems without hard links: check, then rename.
        if os.path.lexists(target):
            raise PwfilterError(f"{target}: exists (use --overwrite to replace it)") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
