"""pwfilter: convolution, depthwise kernels and 1x1 channel remixing for images and audio.

The package root stays import-light (no NumPy) so that ``pwfilter --version``
starts fast; the array API lives in :mod:`pwfilter.engine`,
:mod:`pwfilter.ops` and :mod:`pwfilter.media`.
"""

__version__ = "0.1.0"
