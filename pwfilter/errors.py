"""The one exception type of pwfilter.

The core raises :class:`PwfilterError` with a message a user can act on; the
CLI prints it as one line ``pwfilter: error: <message>`` and exits with 1.
"""


class PwfilterError(Exception):
    """A problem with the user's input, options or files (not a bug)."""


class TruncatedFile(PwfilterError):
    """A file whose data ends before its header says: no decoder can read it whole."""


def printable(text: str) -> str:
    """``text`` on one line: control characters (a newline in a file name) escaped as
    Python writes them (``\\n``), so that an error stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: Python's MemoryError, or a native library's
    own (OpenCV raises ``cv2.error`` "Insufficient memory")."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__module__ == "cv2" and "Insufficient memory" in str(exc)
