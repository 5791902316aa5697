"""Where results go, and writing them so that nothing is ever lost.

Rules (see the README, "Output rules"):

- default: beside the input, ``<stem>.<command><suffix>``;
- ``-o FILE`` for one input, ``-o DIR/`` (or an existing directory) for many —
  the input's own file name inside DIR; ``-o -`` for standard output;
- an existing file is replaced only with ``--overwrite``; an input is never
  replaced, whatever the path spelling (symlinks, ``./``, hard links);
- writes are atomic: an unnamed temporary file in the target folder, linked into
  place at the end (a named one where the file system has none, removed on any
  failure or Ctrl-C, and by the next run if the process was killed).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator, Sequence

from pwfilter.errors import PwfilterError

STDOUT = "-"


def is_dir_target(output: str) -> bool:
    """``-o`` names a folder to write into (not a Zarr store, a folder that is one output)."""
    return output.endswith(("/", os.sep)) or (os.path.isdir(output) and not _is_store(output))


def _is_store(path: str) -> bool:
    """An output that is a folder: a Zarr store (``.zarr``)."""
    return path.lower().endswith(".zarr")


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
        raise PwfilterError(f"{target}: refusing to write over a file this command reads")
    if not target:
        raise PwfilterError("the output path is empty")
    if os.path.isdir(target):
        from pwfilter.regions import is_zarr

        if not (_is_store(target) and is_zarr(target)):  # only a store is ours to replace
            raise PwfilterError(f"{target}: is a directory")
        if not overwrite:
            raise PwfilterError(f"{target}: exists (use --overwrite to replace it)")
        return
    if os.path.exists(target) and not os.path.isfile(target):
        raise PwfilterError(f"{target}: not a regular file (a device, FIFO or socket); "
                            "pwfilter replaces only regular files")
    if os.path.lexists(target) and not overwrite:
        raise PwfilterError(f"{target}: exists (use --overwrite to replace it)")
    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        raise PwfilterError(f"{target}: folder {folder} does not exist")


#: Named temporaries (where the file system has no unnamed ones): ``.pwfilter-PID-XXXXXXXX.tmp``.
#: Short, so that any valid output name still has a valid temporary beside it, and
#: recognisable, so that a later run can remove those of processes that died.
TEMP_PATTERN = re.compile(r"^\.pwfilter-(\d+)-[0-9a-z_]{8}\.tmp$")

#: Named temporaries of this process not yet published: the interrupt path removes them
#: (:func:`remove_temporaries`) when it cannot wait for the work to unwind.
_live: set[str] = set()
#: Held while a folder output is written to (:func:`folder_write`).
_gate = threading.Lock()
_swept: set[str] = set()


def unnamed_supported(folder: str) -> bool:
    """Whether ``folder``'s file system gives unnamed temporary files (Linux ``O_TMPFILE``)."""
    try:
        fd = _open_unnamed(folder)
    except OSError:
        return False
    os.close(fd)
    return True


def _open_unnamed(folder: str) -> int:
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        raise OSError(95, "unnamed temporary files are not supported")
    return os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o666)


@contextlib.contextmanager
def atomic_path(target: str, overwrite: bool) -> Iterator[str]:
    """Yield a temporary path for ``target``'s content; publish it there only on success.

    On Linux the temporary is an unnamed file in the target's folder (``O_TMPFILE``),
    reached through ``/proc/self/fd`` and linked into place at the end: a process that
    dies at any moment, even by SIGKILL, leaves no file behind. Elsewhere it is a named
    file ``.pwfilter-PID-XXXXXXXX.tmp``, removed on any exception (KeyboardInterrupt
    included); those of processes that died are removed by the next write into that
    folder.
    ``target`` is left as it was on failure. Without ``overwrite`` the file is published
    with a hard link, which fails if ``target`` appeared meanwhile (no race with another
    writer).
    """
    folder = os.path.dirname(target) or "."
    remove_stale(folder)
    try:
        fd = _open_unnamed(folder)
    except OSError:
        fd = None
    if fd is not None:
        try:
            yield f"/proc/self/fd/{fd}"
            _publish_unnamed(fd, target, overwrite)
        except OSError as exc:
            raise PwfilterError(f"{target}: cannot write ({exc.strerror or exc})") from None
        finally:
            os.close(fd)
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".pwfilter-{os.getpid()}-", suffix=".tmp",
                                   dir=folder)
    except OSError as exc:
        raise PwfilterError(f"{target}: cannot write ({exc.strerror})") from None
    os.close(fd)
    try:
        with _named(tmp):
            yield tmp
            _publish(tmp, target, overwrite)
    except OSError as exc:
        # Disk full, permissions...: the file's own error, not an internal one (and the
        # other inputs of a batch are still attempted).
        raise PwfilterError(f"{target}: cannot write ({exc.strerror or exc})") from None


def open_new(path: str, mode: str = "wb"):
    """Open an output's temporary (new and empty) for writing, without ``O_TRUNC``: on ext4
    truncating a file (even an empty one) makes its close flush everything written to
    disk (``auto_da_alloc``) — measured: a 1.2 GB TIFF written in 0.72 s instead of 0.35."""
    text = {} if "b" in mode else {"encoding": "utf-8"}
    try:
        fh = open(path, "r+b" if text == {} else "r+", **text)  # read-write: no O_TRUNC
    except FileNotFoundError:
        return open(path, "xb" if text == {} else "x", **text)
    if os.fstat(fh.fileno()).st_size:  # never the case for a temporary
        fh.truncate(0)
    return fh


@contextlib.contextmanager
def _named(tmp: str) -> Iterator[None]:
    """A named temporary: removed if anything fails before it is published, and known to
    the interrupt path (:func:`remove_temporaries`) meanwhile."""
    _live.add(tmp)
    try:
        yield
    except BaseException:
        _remove(tmp)
        raise
    finally:
        _live.discard(tmp)


def _remove(path: str) -> None:
    """Remove a temporary file, or a temporary folder with what is in it."""
    import shutil

    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


@contextlib.contextmanager
def atomic_dir(target: str, overwrite: bool) -> Iterator[str]:
    """Yield a new temporary folder for ``target`` (a folder output such as Zarr), renamed
    into place only on success; removed on any failure, by the interrupt path, and — if
    the process was killed — by the next run into that folder (:func:`remove_stale`).
    An existing ``target`` is replaced only with ``overwrite``."""
    folder = os.path.dirname(target) or "."
    remove_stale(folder)
    if os.path.lexists(target) and not overwrite:
        raise PwfilterError(f"{target}: exists (use --overwrite to replace it)")
    try:
        tmp = tempfile.mkdtemp(prefix=f".pwfilter-{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise PwfilterError(f"{target}: cannot write ({exc.strerror})") from None
    try:
        with _named(tmp):
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())
            old = None
            if os.path.lexists(target):
                if not overwrite:
                    raise PwfilterError(f"{target}: exists (use --overwrite to replace it)")
                old = os.path.join(folder, f".pwfilter-{os.getpid()}-{_random8()}.tmp")
                os.rename(target, old)
            os.rename(tmp, target)
            if old is not None:
                _remove(old)
    except OSError as exc:
        raise PwfilterError(f"{target}: cannot write ({exc.strerror or exc})") from None


def _link(source: str, target: str) -> None:
    """``linkat(source, target, AT_SYMLINK_FOLLOW)``: ``os.link`` calls plain ``link``, which
    does not follow ``/proc/self/fd``'s link, unless a directory descriptor is given."""
    folder = os.open(os.path.dirname(target) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(source, os.path.basename(target), dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def _publish_unnamed(fd: int, target: str, overwrite: bool) -> None:
    source = f"/proc/self/fd/{fd}"
    try:
        _link(source, target)
        return
    except FileExistsError:
        if not overwrite:
            raise PwfilterError(f"{target}: exists (use --overwrite to replace it)") from None
    # Replacing: a link cannot, so link under a temporary name and rename over the target
    # (the name exists for the two calls only; a later run removes it if killed between).
    folder = os.path.dirname(target) or "."
    for _ in range(100):
        tmp = os.path.join(folder, f".pwfilter-{os.getpid()}-{_random8()}.tmp")
        try:
            _link(source, tmp)
        except FileExistsError:
            continue
        with _named(tmp):
            os.replace(tmp, target)
        return
    raise PwfilterError(f"{target}: cannot write (no free temporary name)")


def _random8() -> str:
    return secrets.token_hex(4)


def remove_stale(folder: str) -> list[str]:
    """Remove the named temporaries that pwfilter processes no longer running left in
    ``folder`` (once per folder and process); return their names."""
    key = os.path.realpath(folder)
    if key in _swept:
        return []
    _swept.add(key)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = TEMP_PATTERN.match(name)
        if not m or _alive(int(m.group(1))):
            continue
        _remove(os.path.join(folder, name))
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process (or no way to tell): keep its file
    return True


def remove_temporaries() -> None:
    """Remove this process's unpublished named temporaries (for the interrupt path, which
    exits without unwinding the work). Writes into a folder output go through
    :func:`folder_write`: the gate is taken first (never given back: the process exits),
    so no write in flight recreates a part of a folder after it is removed."""
    _gate.acquire(timeout=30)
    for tmp in list(_live):
        _remove(tmp)


@contextlib.contextmanager
def folder_write() -> Iterator[None]:
    """Around each write into a folder output's temporary (a row of Zarr chunks, whose
    writes Zarr's own I/O thread performs while this one waits): the interrupt path waits
    for it to finish before removing the folder."""
    with _gate:
        yield


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
