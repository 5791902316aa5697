"""The one exception type of pwfilter.

The core raises :class:`PwfilterError` with a message a user can act on; the
CLI prints it as one line ``pwfilter: error: <message>`` and exits with 1.
"""


class PwfilterError(Exception):
    """A problem with the user's input, options or files (not a bug)."""
