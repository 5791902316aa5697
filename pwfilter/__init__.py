"""pwfilter: convolution, depthwise kernels and 1x1 channel remixing for images and audio.

The package root stays import-light (no NumPy until an operation is used), so
that ``pwfilter --version`` starts fast. The Python API — ``convolve``,
``blur``, ``remix``, ``dsconv``, ``chain``, ``load``, ``save`` — lives in
:mod:`pwfilter.api` and is reached from here on first use.
"""

__version__ = "0.1.0"

__all__ = ["blur", "chain", "convolve", "dsconv", "load", "remix", "save"]


def __getattr__(name: str):
    """The API's functions, imported from :mod:`pwfilter.api` on first use."""
    if name in __all__:
        from pwfilter import api

        return getattr(api, name)
    raise AttributeError(f"module 'pwfilter' has no attribute {name!r}")


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
