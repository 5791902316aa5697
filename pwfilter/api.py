"""pwfilter's Python API: the commands' operations on arrays, and files in and out.

Arrays have channels last, as everywhere in pwfilter: a signal ``(n, C)``
(a 1-D array is one channel), an image ``(H, W, C)``. Values are filtered as
the numbers they hold — :func:`load` gives normalized floats (images in
[0, 1], audio in [-1, 1]) — and results are new float arrays (float32, or
float64 for float64 input). A :class:`pwfilter.media.Media` from
:func:`load` may be given instead of an array: it knows its alpha channel and
sample rate, and the result is a Media that :func:`save` writes in the
input's format. Every function runs the same stages as the command line:
the same kernels and matrices by name, the same method choice, the same
results.

>>> import numpy as np, pwfilter
>>> x = np.zeros((5, 5, 1), np.float32); x[2, 2] = 1.0
>>> y = pwfilter.convolve(x, "1 2 1; 2 4 2; 1 2 1", normalize_kernel="sum")
>>> print(y[1:4, 1:4, 0].round(6))
[[0.0625 0.125  0.0625]
 [0.125  0.25   0.125 ]
 [0.0625 0.125  0.0625]]
"""

from __future__ import annotations

import os

import numpy as np

from pwfilter.errors import PwfilterError
from pwfilter.steps import (BlurStep, Context, ConvolveStep, DSConvStep, FilterOptions, Input,
                            Job, RemixStep, Step, with_workers)


def _filter_options(mode, boundary, method, correlate, scale, bias, dry, wet, normalize,
                    workers) -> FilterOptions:
    return FilterOptions(mode=mode, boundary=boundary, method=method, scale=scale, bias=bias,
                         dry=dry, wet=wet, normalize=normalize, correlate=correlate,
                         workers=workers)


def _run(x, steps: list[Step], *, alpha: bool, rate: int, name: str):
    """Resolve ``steps`` for ``x`` and run them in memory; an array or a Media back."""
    from pwfilter.media import Media, load_media

    if isinstance(x, Media):
        src, samples, scale = Input.of(x), x.samples, x.scale
    else:
        samples = np.asarray(x)
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim not in (2, 3) or samples.dtype.kind not in "fiub":
            raise PwfilterError(f"expected a real (n, C) signal or (H, W, C) image, got "
                                f"{samples.dtype} of shape {samples.shape}")
        kind = "image" if samples.ndim == 3 else "audio"
        src = Input(kind, samples.shape[-1], alpha and kind == "image", rate, samples.shape,
                    8 if samples.dtype == np.float64 else 4, "array")
        scale = 1.0
    job = Job(tuple(steps), name)
    chain = job.resolve(src, Context(load_audio=load_media))
    stage = [0]
    try:
        y, _ = chain.run(samples, scale, on_stage=lambda i: stage.__setitem__(0, i))
    except PwfilterError as exc:
        raise job.stage_error(exc, stage[0]) from None
    return x.replace(samples=y) if isinstance(x, Media) else y


def convolve(x, kernel, *, mode: str | None = None, boundary: str | None = None,
             method: str = "auto", correlate: bool = False, normalize_kernel: str | None = None,
             scale: float = 1.0, bias: float = 0.0, dry: float = 0.0, wet: float = 1.0,
             normalize: bool = False, alpha: bool = False, rate: int = 0,
             workers: int | None = None):
    """Convolve ``x`` with ``kernel``: ``dry·x + wet·(scale·(x ⊛ kernel) + bias)``.

    Parameters
    ----------
    x : array, channels last, or a Media from :func:`load`.
    kernel : an array — ``(M,)``/``(kh, kw)`` for every channel, ``(C, M)``/
        ``(C, kh, kw)`` one per channel — or text as on the command line: a
        name (``"gaussian:2"``, ``"sobel-x"``, ``"lowpass:1000"`` with
        ``rate``), inline rows (``"1 2 1; 2 4 2; 1 2 1"``) or a file.
    mode : ``"same"`` (images' default), ``"full"`` (signals' default; FIR
        designs keep ``"same"``) or ``"valid"``.
    boundary : ``reflect`` (images' default), ``mirror``, ``nearest``,
        ``wrap`` or ``zero`` (signals' default).
    method : ``"auto"`` (the fastest by the cost model), ``"direct"``,
        ``"fft"``, ``"oa"`` or ``"separable"``.
    correlate : apply the kernel unflipped, as OpenCV's ``filter2D`` does.
    normalize_kernel : divide the kernel by its ``"sum"``, ``"l1"`` norm,
        ``"energy"`` or ``"peak"`` first.
    normalize : scale the result to its peak (1 / max|y|).
    alpha : an image's last channel is alpha: filter premultiplied colour.
    rate : the sample rate of a signal (for FIR designs by name).
    workers : threads (default: all cores).

    Examples
    --------
    >>> import numpy as np, pwfilter
    >>> pwfilter.convolve(np.array([1.0, 2.0, 3.0]), [1.0, 1.0])[:, 0].round(9)
    array([1., 3., 5., 3.])
    >>> pwfilter.convolve(np.array([1.0, 2.0, 3.0]), [1.0, 1.0], mode="same")[:, 0].round(9)
    array([1., 3., 5.])
    """
    step = ConvolveStep(normalize=normalize, kernel=kernel, normalize_kernel=normalize_kernel,
                        opts=_filter_options(mode, boundary, method, correlate, scale, bias,
                                             dry, wet, normalize, workers))
    return _run(x, [step], alpha=alpha, rate=rate, name="convolve")


def blur(x, sigma: float = 2.0, *, kind: str = "gaussian", radius: int = 1,
         mode: str | None = None, boundary: str | None = None, method: str = "auto",
         scale: float = 1.0, bias: float = 0.0, dry: float = 0.0, wet: float = 1.0,
         normalize: bool = False, alpha: bool = False, workers: int | None = None):
    """Blur ``x``: a Gaussian of ``sigma`` (truncated at 4 sigma, as
    ``scipy.ndimage.gaussian_filter``) or, with ``kind="box"``, a box of
    ``2·radius + 1`` taps, along every signal axis. The output keeps the
    input's size unless ``mode`` says otherwise; other options as
    :func:`convolve`.

    Examples
    --------
    >>> import numpy as np, pwfilter
    >>> pwfilter.blur(np.zeros((8, 8, 3), np.float32), sigma=1).shape
    (8, 8, 3)
    >>> pwfilter.blur(np.array([0.0, 0.0, 3.0, 0.0, 0.0]), kind="box", radius=1)[:, 0].round(9)
    array([0., 1., 1., 1., 0.])
    """
    step = BlurStep(normalize=normalize, kind=kind, sigma=sigma, radius=radius,
                    opts=_filter_options(mode, boundary, method, False, scale, bias, dry, wet,
                                         normalize, workers))
    return _run(x, [step], alpha=alpha, rate=0, name="blur")


def remix(x, matrix, *, bias=None, groups: int = 1, shuffle: int = 0, dry: float = 0.0,
          wet: float = 1.0, normalize: bool = False, alpha: bool = False,
          workers: int | None = None):
    """Mix the channels of every sample or pixel: ``y[..., o] = Σ_i M[o, i] x[..., i] + b[o]``.

    ``matrix`` is an array ``(C_out, C_in)`` or text as ``--matrix``: rows
    (``"0.299 0.587 0.114"``), a file or a preset (``"gray"``, ``"sepia"``,
    ``"mid-side"``...). With ``groups`` G a 2-D matrix is a grouped
    convolution's weight ``(C_out, C_in/G)``; ``shuffle`` permutes the
    outputs as ShuffleNet does; ``bias`` is one number or one per output.
    With ``alpha``, an image's alpha passes through a matrix without a column
    for it.

    Examples
    --------
    >>> import numpy as np, pwfilter
    >>> pwfilter.remix(np.array([[1.0, 0.5], [0.0, -1.0]]), "mid-side")
    array([[ 0.75,  0.25],
           [-0.5 ,  0.5 ]])
    """
    step = RemixStep(normalize=normalize, matrix=matrix, bias=bias, groups=groups,
                     shuffle=shuffle, dry=dry, wet=wet, workers=workers)
    return _run(x, [step], alpha=alpha, rate=0, name="remix")


def dsconv(x, depthwise, pointwise, *, groups: int = 1, shuffle: int = 0,
           mode: str | None = None, boundary: str | None = None, method: str = "auto",
           correlate: bool = False, normalize_kernel: str | None = None, scale: float = 1.0,
           bias: float = 0.0, dry: float = 0.0, wet: float = 1.0, normalize: bool = False,
           alpha: bool = False, rate: int = 0, workers: int | None = None):
    """Depthwise separable convolution: ``depthwise`` kernel per channel (as
    :func:`convolve`'s kernel), then the ``pointwise`` matrix (as :func:`remix`'s).
    ``scale``/``bias`` act on the depthwise result; ``dry``/``wet`` mix the
    input back in after the pointwise step (a residual connection).

    Examples
    --------
    >>> import numpy as np, pwfilter
    >>> x = np.ones((4, 4, 3), np.float32)
    >>> y = pwfilter.dsconv(x, "gaussian:1", "gray")
    >>> y.shape, float(round(y[0, 0, 0], 6))
    ((4, 4, 1), 1.0)
    """
    step = DSConvStep(normalize=normalize, depthwise=depthwise, pointwise=pointwise,
                      groups=groups, shuffle=shuffle, normalize_kernel=normalize_kernel,
                      opts=_filter_options(mode, boundary, method, correlate, scale, bias, dry,
                                           wet, normalize, workers))
    return _run(x, [step], alpha=alpha, rate=rate, name="dsconv")


def chain(x, *stages, alpha: bool = False, rate: int = 0, workers: int | None = None):
    """Several steps in one pass, in float: each stage as on the command line
    (``"blur --sigma 1.5"``, ``"remix --matrix sepia"``, stages may also be
    joined by ``+`` in one string) or a step from :mod:`pwfilter.steps`.

    Examples
    --------
    >>> import numpy as np, pwfilter
    >>> x = np.random.default_rng(0).random((6, 7, 3))
    >>> y = pwfilter.chain(x, "blur --sigma 1", "remix --matrix gray")
    >>> z = pwfilter.remix(pwfilter.blur(x, sigma=1), "gray")
    >>> y.shape, bool(np.allclose(y, z))
    ((6, 7, 1), True)
    """
    import shlex

    steps: list[Step] = []
    for stage in stages:
        if isinstance(stage, str):
            import click

            from pwfilter.cli import parse_stages

            try:
                steps += parse_stages(shlex.split(stage))
            except click.ClickException as exc:
                raise PwfilterError(f"stage {stage!r}: {exc.format_message()}") from None
        elif isinstance(stage, Step):
            steps.append(stage)
        else:
            raise PwfilterError(f"a stage is text or a step, not {type(stage).__name__}")
    if not steps:
        raise PwfilterError("chain: no stages")
    return _run(x, [with_workers(s, workers) for s in steps], alpha=alpha, rate=rate,
                name="chain")


def load(path: str | os.PathLike, *, max_pixels: int | None = None,
         max_memory: int = 0):
    """Read an image, audio file or ``.npy`` array as a :class:`pwfilter.media.Media`:
    ``.data`` holds normalized floats with channels last, ``.rate``, ``.kind``,
    ``.bits``... the rest of what :func:`save` needs to write it back alike."""
    from pwfilter.limits import DEFAULT_MAX_PIXELS, Limits
    from pwfilter.media import load_media

    return load_media(path, limits=Limits(max_pixels or DEFAULT_MAX_PIXELS, max_memory))


def save(data, path: str | os.PathLike, *, like=None, rate: int = 0, overwrite: bool = False,
         compression: int | None = None, quality: int = 92) -> int:
    """Write ``data`` (a Media, or an array of normalized floats) to ``path``, atomically;
    the format follows the file name. An array is written as ``like`` (a Media:
    its bit depth, sample rate and subtype) or with 8-bit images and float
    audio at ``rate`` (48000 Hz when 0). Returns how many values clipped.
    """
    from pwfilter.media import (FORMAT_SUFFIX, Media, SaveOptions, format_for_path,
                                write_media)
    from pwfilter.output import ReadFiles, atomic_path, check_target

    if not isinstance(data, Media):
        arr = np.asarray(data)
        arr = arr[:, None] if arr.ndim == 1 else arr
        kind = "image" if arr.ndim == 3 else "audio"
        if like is not None:
            data = like.replace(samples=arr, kind=kind)
        else:
            data = Media(arr, kind, "PNG" if kind == "image" else "WAV", bits=8, rate=rate,
                         subtype="FLOAT" if kind == "audio" else "")
    path = os.fspath(path)
    fmt = format_for_path(path, data.kind, data.format)
    if not os.path.splitext(path)[1]:
        path += FORMAT_SUFFIX.get(fmt, "")
    check_target(path, ReadFiles(()), overwrite)
    with atomic_path(path, overwrite) as tmp:
        return write_media(data, tmp, fmt, SaveOptions(quality=quality, compression=compression))
