"""pwfilter: convolution, depthwise kernels and 1x1 channel remixing for images and audio.

The package root stays import-light (no NumPy) so that ``pwfilter --version``
starts fast; the array API lives in :mod:`pwfilter.engine`,
:mod:`pwfilter.ops` and :mod:`pwfilter.media`.
"""

__version__ = "0.1.0"


def main() -> None:
    """The ``pwfilter`` command. ``--version`` is answered here, before Click and the
    command definitions load (~15 ms of a 40 ms start); everything else goes to
    :func:`pwfilter.cli.main`."""
    import sys

    if sys.argv[1:] in (["--version"], ["-V"]):
        print(f"pwfilter, version {__version__}")  # Click's version_option wording
        return
    from pwfilter.cli import main as cli_main

    cli_main()
