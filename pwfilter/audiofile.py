"""Audio files through libsndfile (soundfile): reading whole or by blocks, writing.

Integer PCM is converted to float here, not by libsndfile, so that load ->
save is bit-exact; a header that promises more frames than the file holds
(which libsndfile reads silently) is an error. Writers give libsndfile the
file's descriptor and close without syncing (:mod:`pwfilter.sndfile`).
"""

from __future__ import annotations

import io
import os
import re
from typing import BinaryIO

import numpy as np

from pwfilter.errors import PwfilterError
from pwfilter.limits import Limits
from pwfilter.media import Media, SaveOptions, quantize, read_source
from pwfilter.sndfile import close_without_sync, no_peak_chunk, raise_system_error

#: Integer PCM subtypes: (dtype read from libsndfile, scale to [-1, 1), float dtype kept).
_PCM = {
    "PCM_S8": ("int16", 2.0**-15, np.float32),
    "PCM_U8": ("int16", 2.0**-15, np.float32),
    "PCM_16": ("int16", 2.0**-15, np.float32),
    "PCM_24": ("int32", 2.0**-31, np.float32),
    "PCM_32": ("int32", 2.0**-31, np.float64),
}

#: libsndfile's report of a size field larger than the file holds, in any container:
#: ``data : 80000 (should be 26637)`` (WAV), ``SSND``/``FORM`` (AIFF), ``riff`` (W64),
#: ``Riff size`` (RF64), ``Data Size`` (AU)...
_TRUNCATED = re.compile(r"^\s*([A-Za-z][\w ]*?)\s*:\s*(\d+)\s*\(should be (\d+)\)",
                        re.MULTILINE)
#: Frame counts a header states (RF64's ds64, AIFF's COMM, FLAC's STREAMINFO, WAV's fact).
_FRAMES = re.compile(r"^\s*frames\s*:\s*(\d+)\s*$", re.MULTILINE | re.IGNORECASE)
#: CAF states its data chunk's size and the bytes and frames of a packet, not a count.
_CAF = re.compile(r"Bytes / packet\s*:\s*(\d+).*?Frames / packet\s*:\s*(\d+)"
                  r".*?^data\s*:\s*(\d+)", re.MULTILINE | re.DOTALL)
#: Size fields that streaming writers leave unknown.
_UNKNOWN = (0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFFFFFFFFFF)



def audio_info(source, name: str):
    """``soundfile.info`` with a check that the file holds the frames its header promises."""
    import soundfile as sf

    try:
        info = sf.info(source)
    except Exception as exc:  # noqa: BLE001 - libsndfile errors are RuntimeError/LibsndfileError
        raise PwfilterError(f"{name}: not a readable audio file ({_first_line(exc)})") from None
    if isinstance(source, io.IOBase):
        source.seek(0)
    check_complete(info, name)
    if info.frames <= 0 or info.channels <= 0:
        raise PwfilterError(f"{name}: audio file holds no samples")
    return info



#: The highest rate libvorbis encodes (above it, it crashes: checked before opening).
MAX_VORBIS_RATE = 200_000
#: Frame counts above this are no length at all (libsndfile's "unknown", or a forged header).
MAX_FRAMES = 1 << 53


def check_complete(info, name: str) -> None:
    """Refuse a file whose header promises more than it holds: libsndfile reads such a
    file silently, up to its end. Every container libsndfile parses says so in its report
    (a size "should be" smaller, or a stated frame count above what the data holds)."""
    if info.frames >= MAX_FRAMES:
        raise PwfilterError(f"{name}: the header gives no usable length ({info.frames:,} "
                            "frames)")
    report = info.extra_info or ""
    for m in _TRUNCATED.finditer(report):
        claimed, actual = int(m.group(2)), int(m.group(3))
        if claimed > actual and claimed not in _UNKNOWN:
            raise PwfilterError(
                f"{name}: truncated audio ({m.group(1).strip()} promises {claimed:,} bytes, "
                f"the file holds {actual:,})")
    caf = _CAF.search(report)
    if caf and report.lstrip().startswith("File") and "\ncaff" in report:
        per_packet, frames_per, size = (int(v) for v in caf.groups())
        if per_packet and size not in _UNKNOWN and size > 4:
            promised = (size - 4) // per_packet * frames_per  # 4 bytes: the edit count
            if promised > info.frames:
                raise PwfilterError(f"{name}: truncated audio (the data chunk promises "
                                    f"{promised:,} frames, the file holds {info.frames:,})")
    for m in _FRAMES.finditer(report):
        promised = int(m.group(1))
        if promised > info.frames and promised not in _UNKNOWN:
            raise PwfilterError(f"{name}: truncated audio (the header promises {promised:,} "
                                f"frames, the file holds {info.frames:,})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__



def audio_read_dtype(subtype: str):
    """The dtype to ask libsndfile for, its scale to [-1, 1], and the float dtype kept."""
    if subtype in _PCM:
        return _PCM[subtype]
    if subtype == "DOUBLE":
        return "float64", 1.0, np.float64
    return "float32", 1.0, np.float32



def pcm_to_float(block: np.ndarray, subtype: str) -> np.ndarray:
    _, scale, out_dtype = audio_read_dtype(subtype)
    if block.dtype.kind == "f":
        return block.astype(out_dtype, copy=False)
    out = block.astype(out_dtype)
    out *= out_dtype(scale)
    return out



def load_audio(source, name: str, limits: Limits) -> Media:
    import soundfile as sf

    info = audio_info(source, name)
    read_dtype, _, out_dtype = audio_read_dtype(info.subtype)
    from pwfilter.limits import audio_decode_bytes

    limits.check_memory(audio_decode_bytes(info.frames, info.channels,
                                           np.dtype(out_dtype).itemsize), name)
    try:
        raw, rate = sf.read(source, dtype=read_dtype, always_2d=True)
    except Exception as exc:  # noqa: BLE001
        raise PwfilterError(f"{name}: cannot decode audio ({_first_line(exc)})") from None
    if raw.shape[0] == 0:
        raise PwfilterError(f"{name}: audio file holds no samples")
    if raw.shape[0] < info.frames:
        raise PwfilterError(f"{name}: truncated audio (the header promises {info.frames:,} "
                            f"frames, {raw.shape[0]:,} could be read)")
    return Media(pcm_to_float(raw, info.subtype), "audio", info.format, rate=int(rate),
                 subtype=info.subtype, name=name)



def audio_subtype_for(media: Media, fmt: str) -> str:
    """Keep the input's subtype where the output container supports it."""
    import soundfile as sf

    if media.subtype and sf.check_format(fmt, media.subtype):
        return media.subtype
    if fmt in ("WAV", "AIFF", "W64", "RF64", "CAF") and media.format == "NPY":
        return "FLOAT"
    return sf.default_subtype(fmt)



def float_to_pcm(data: np.ndarray, subtype: str) -> tuple[np.ndarray, int]:
    """Convert normalized float audio to what libsndfile writes bit-exactly for ``subtype``."""
    if subtype in ("PCM_16",):
        return quantize(data, -32768, 32767, 32768, np.int16)
    if subtype in ("PCM_S8", "PCM_U8"):
        q, clipped = quantize(data, -128, 127, 128, np.int16)
        return q * np.int16(256), clipped
    if subtype == "PCM_24":
        q, clipped = quantize(data, -(2**23), 2**23 - 1, 2**23, np.int32)
        return q << 8, clipped
    if subtype == "PCM_32":
        return quantize(data.astype(np.float64), -(2**31), 2**31 - 1, 2**31, np.int32)
    if subtype == "DOUBLE":
        return data.astype(np.float64, copy=False), 0
    return data.astype(np.float32, copy=False), 0



class AudioWriter:
    """Write float audio blocks to a file with the subtype's exact integer conversion.

    A path is opened by pwfilter itself (without truncating an empty file) and
    handed to libsndfile as a descriptor, so libsndfile writes straight from
    the sample buffers; it is closed without the fsync that soundfile's close
    does. Outputs are atomic through :func:`pwfilter.output.atomic_path` (a
    fresh temporary file, renamed), as images are, and a forced flush would
    only add the disk's latency to every command (ffmpeg and SoX do not sync
    either). A failing write (disk full) raises the system's OSError.
    """

    def __init__(self, target: str | BinaryIO, *, rate: int, channels: int, fmt: str,
                 subtype: str, options: SaveOptions):
        import soundfile as sf

        extra = {}
        if fmt == "FLAC" and options.compression is not None:
            extra["compression_level"] = min(max(options.compression, 0), 8) / 8
        if fmt == "OGG" and subtype == "VORBIS" and rate > MAX_VORBIS_RATE:
            # libvorbis's encoder crashes the process above this rate (measured: 200,001 Hz).
            raise PwfilterError(f"OGG Vorbis holds rates up to {MAX_VORBIS_RATE:,} Hz, not "
                                f"{rate:,} Hz (write FLAC, WAV or another container)")
        self.subtype, self.format, self.rate = subtype, fmt, rate
        self.clipped = 0
        self._fd = None
        if isinstance(target, (str, os.PathLike)):
            # Truncating a file on ext4 makes its close flush everything written.
            self._fd = target = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
            if os.fstat(self._fd).st_size:
                os.ftruncate(self._fd, 0)
        try:
            self._file = sf.SoundFile(target, "w", samplerate=rate, channels=channels,
                                      format=fmt, subtype=subtype, closefd=False, **extra)
        except BaseException as exc:
            self._close_own()
            if not isinstance(exc, Exception):
                raise
            raise_system_error(None)  # libsndfile writes the header when opening: disk full…
            raise PwfilterError(f"cannot write {fmt} {subtype} audio at {rate:,} Hz "
                                f"({_first_line(exc).split('Error : ')[-1]})") from None
        if subtype in ("FLOAT", "DOUBLE"):
            no_peak_chunk(sf, self._file)

    def write(self, block: np.ndarray) -> None:
        out, clipped = float_to_pcm(block, self.subtype)
        self.clipped += clipped
        try:
            self._file.write(out)
        except Exception as exc:  # noqa: BLE001 - libsndfile's errors
            raise_system_error(self._file)  # the system's own (disk full) when it has one
            raise PwfilterError(f"cannot write {self.format} {self.subtype} audio at "
                                f"{self.rate:,} Hz ({_first_line(exc).split('Error : ')[-1]})"
                                ) from None

    def close(self) -> None:
        try:
            close_without_sync(self._file)
        finally:
            self._close_own()

    def _close_own(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()



class AudioReader:
    """An audio file opened for block-by-block reading (streaming), header already checked."""

    def __init__(self, path: str, *, name: str | None = None, limits: Limits = Limits()):
        self.name = name or path
        self.path = path
        read_source(path, self.name)
        info = audio_info(path, self.name)
        self.frames = int(info.frames)
        self.channels = int(info.channels)
        self.rate = int(info.samplerate)
        self.subtype = info.subtype
        self.format = info.format

    def meta(self) -> Media:
        """A Media with no samples but the file's channels and metadata (for planning)."""
        _, _, dtype = audio_read_dtype(self.subtype)
        return Media(np.zeros((0, self.channels), dtype), "audio", self.format, rate=self.rate,
                     subtype=self.subtype, name=self.name)

    def blocks(self, size: int):
        """Yield normalized float blocks of ``size`` frames (the last may be shorter)."""
        import soundfile as sf

        read_dtype, _, _ = audio_read_dtype(self.subtype)
        try:
            read = 0
            with sf.SoundFile(self.path) as f:
                while True:
                    raw = f.read(size, dtype=read_dtype, always_2d=True)
                    if not raw.shape[0]:
                        break
                    read += raw.shape[0]
                    yield pcm_to_float(raw, self.subtype)
        except Exception as exc:  # noqa: BLE001 - libsndfile errors while decoding
            raise PwfilterError(f"{self.name}: cannot decode audio ({_first_line(exc)})") from None
        if read < self.frames:
            raise PwfilterError(f"{self.name}: truncated audio (the header promises "
                                f"{self.frames:,} frames, {read:,} could be read)")
