"""The small bridge to libsndfile below soundfile's public API.

soundfile's ``close`` syncs the file to disk first, its error messages lose
the system's errno, and it offers no switch for libsndfile's PEAK chunk
(which scans every float sample written). These three helpers reach
libsndfile through soundfile's low-level handle (``sf._snd``, ``sf._ffi``,
a SoundFile's ``_file``); where those internals differ, each falls back to
soundfile's own behaviour. Nothing else in pwfilter touches them.
"""

from __future__ import annotations

import errno
import os


def raise_system_error(f) -> None:
    """Raise libsndfile's system error (disk full...) as the OSError it was, if it was one.

    ``f`` is the SoundFile that failed, or None when opening failed. libsndfile
    keeps the error as text, ``System error : <strerror>.``; the errno is found
    back by its message. Through soundfile's low-level handle; where that is
    missing, soundfile's own exception stands."""
    try:
        import soundfile as sf

        handle = sf._ffi.NULL if f is None else f._file
        text = sf._ffi.string(sf._snd.sf_strerror(handle)).decode(errors="replace")
    except (AttributeError, TypeError):
        return
    prefix = "System error : "
    if text.startswith(prefix):
        message = text[len(prefix):].rstrip(".")
        codes = [e for e in errno.errorcode if os.strerror(e) == message]
        raise OSError(codes[0] if codes else None, message) from None



def close_without_sync(f) -> None:
    """Close without the fsync that soundfile's ``close`` does first (sf_write_sync):
    libsndfile still writes the final header. Where soundfile's internals differ,
    its own close is used."""
    try:
        import soundfile as sf

        handle, close = f._file, sf._snd.sf_close
    except AttributeError:
        f.close()
        return
    if handle is None:
        return
    f._file = None
    if close(handle):
        raise OSError(None, "cannot finish the audio file")



def no_peak_chunk(sf, f) -> None:
    """Skip libsndfile's optional PEAK chunk for float files: keeping it scans every sample
    written, half the writer's time (ffmpeg and SoX write none). Through soundfile's
    low-level handle; where that is missing, the chunk is simply kept."""
    try:
        sf._snd.sf_command(f._file, 0x1050, sf._ffi.NULL, 0)  # SFC_SET_ADD_PEAK_CHUNK, off
    except (AttributeError, TypeError):
        pass
